"""checking/decisions.py and checking/preprocessing.py: decision parity and the deployed preprocessing's diagnosis
(pure, fast lane)."""
from __future__ import annotations

import numpy as np
import pytest

from deploytool.checking import decisions, preprocessing
from deploytool.checking.decisions import Decisions, OperatingPoint


def _logits(n: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (n, 10)).astype(np.float32)


def test_identical_outputs_give_no_flips_and_a_wrong_output_gives_many():
    x = _logits()
    op = OperatingPoint("threshold", 0.5)
    ref = decisions.builtin(x, op)
    assert decisions.compare(ref, decisions.builtin(x.copy(), op), op.near_band)["flips"] == 0
    # the decoys a PASS must tell apart: zeros, the mean, another sample's output
    for wrong in (np.zeros_like(x), np.broadcast_to(x.mean(axis=0), x.shape), np.roll(x, 1, axis=0)):
        assert decisions.compare(ref, decisions.builtin(wrong, op), op.near_band)["flips"] > 10


def test_threshold_margins_and_near_flips():
    # sample 0 sits just above the threshold, sample 1 far above; a small nudge flips only sample 0
    x = np.log(np.array([[0.51, 0.49], [0.95, 0.05]]))
    op = OperatingPoint("threshold", 0.5)
    ref = decisions.builtin(x, op)
    assert ref.kind == decisions.LABELS and ref.margins is not None
    np.testing.assert_allclose(ref.margins, [0.01, 0.45], atol=1e-9)
    got = decisions.builtin(np.log(np.array([[0.49, 0.51], [0.94, 0.06]])), op)
    result = decisions.compare(ref, got, 0.05)
    assert result["flips"] == 1 and result["flipped"] == [0]
    assert result["near"] == {"band": 0.05, "samples": 1, "flips": 1, "flip_rate": 1.0, "far_flips": 0}
    assert result["margins"]["min"] == pytest.approx(0.01)


def test_top_k_is_a_set_and_its_margin_the_gap():
    x = np.array([[5.0, 4.0, 1.0, 0.0], [3.0, 2.95, 2.9, 0.0]])
    ref = decisions.builtin(x, OperatingPoint("top-k", 2))
    assert ref.kind == decisions.TOP_K
    np.testing.assert_allclose(ref.margins, [3.0, 0.05])
    swapped = decisions.builtin(x[:, [1, 0, 2, 3]], OperatingPoint("top-k", 2))  # same set, other order
    assert decisions.compare(ref, swapped, 0.1)["flips"] == 0
    top1 = decisions.builtin(x, OperatingPoint("top-k", 1))
    assert top1.kind == decisions.CLASS and list(top1.values) == [0, 0]


def test_detections_matched_by_iou_and_class():
    ref = [np.array([[0, 0, 10, 10, 0.9, 1], [20, 20, 30, 30, 0.8, 2]]), np.zeros((0, 6))]
    same = [np.array([[20.2, 20, 30, 30, 0.79, 2], [0.1, 0, 10, 10, 0.91, 1]]), np.zeros((0, 6))]
    r = decisions.normalise(ref, 2, "postprocess()")
    assert decisions.compare(r, decisions.normalise(same, 2, "postprocess()"), None)["flips"] == 0
    moved = [np.array([[0, 0, 10, 10, 0.9, 1], [26, 26, 36, 36, 0.8, 2]]), np.array([[0, 0, 5, 5, 0.5, 3]])]
    result = decisions.compare(r, decisions.normalise(moved, 2, "postprocess()"), None)
    assert result["flips"] == 2
    assert result["detections"] == {"matched": 1, "missing": 0, "extra": 1, "moved": 1}
    other_class = [np.array([[0, 0, 10, 10, 0.9, 7], [20, 20, 30, 30, 0.8, 2]]), np.zeros((0, 6))]
    result = decisions.compare(r, decisions.normalise(other_class, 2, "postprocess()"), None)
    assert result["detections"]["missing"] == 1 and result["detections"]["extra"] == 1


def test_encode_decode_round_trip():
    d = decisions.normalise({"decisions": [np.ones((2, 6)), np.zeros((0, 6))], "margins": [0.1, 0.2]}, 2, "p")
    back = decisions.decode(decisions.encode(d))
    assert back.kind == decisions.DETECTIONS and [len(b) for b in back.values] == [2, 0]
    np.testing.assert_allclose(back.margins, [0.1, 0.2])
    c = decisions.decode(decisions.encode(Decisions(decisions.CLASS, np.array([3, 1]))))
    assert list(c.values) == [3, 1] and c.margins is None


@pytest.mark.parametrize("bad, says", [
    (np.zeros((3, 4), dtype=np.float32), "expected class ids"),
    (np.array([1, 2]), "decisions for 2 samples"),
    ([np.zeros((1, 5))] * 3, "expected [k, 6]"),
    ({"labels": 1}, "without a 'decisions' key"),
])
def test_normalise_refuses_what_is_no_decision(bad, says):
    with pytest.raises(ValueError, match=says.replace("[", r"\[")):
        decisions.normalise(bad, 3, "postprocess() in p.py")


def test_gate_grammar():
    assert decisions.parse_gate("0.02").fraction == 0.02
    assert decisions.parse_gate("2%").fraction == pytest.approx(0.02)
    assert decisions.parse_gate("3samples").count == 3
    assert decisions.parse_gate("0").allows(0, 10) and not decisions.parse_gate("0").allows(1, 10)
    assert decisions.parse_gate("10%").allows(1, 10) and not decisions.parse_gate("10%").allows(2, 10)
    for bad in ("1.5", "x", "-1samples"):
        with pytest.raises(ValueError, match="--max-decision-flips"):
            decisions.parse_gate(bad)


def test_operating_point_grammar():
    op = decisions.parse_operating_point("threshold=0.3,band=0.02")
    assert (op.kind, op.value, op.near_band) == ("threshold", 0.3, 0.02)
    assert decisions.parse_operating_point("top-k=5").near_band == decisions.DEFAULT_BAND["top-k"]
    for bad, says in (("threshold=2", "probability"), ("top-k=1.5", "whole number"), ("foo=1", "unknown key"),
                      ("band=0.1", "names no threshold")):
        with pytest.raises(ValueError, match=says):
            decisions.parse_operating_point(bad)


# ---- the deployed preprocessing ------------------------------------------------------------------

def _images(n: int = 6, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, c, 8, 8)).astype(np.float32)


def test_same_preprocessing_matches():
    x = _images()
    assert preprocessing.compare({"image": x.copy()}, {"image": x})["match"]


@pytest.mark.parametrize("deployed, says", [
    (lambda x: x[:, ::-1], "channel order swapped"),
    (lambda x: x.transpose(0, 2, 3, 1), "layout: deployed is NHWC"),
    (lambda x: x * 16.0, "normalisation: deployed = reference*16+0 (missing normalisation)"),
    (lambda x: x * 255.0, "x255"),
    (lambda x: x * 0.229 + 0.485, "deployed = reference*0.229+0.485"),
    (lambda x: (x * np.array([0.229, 0.224, 0.225], np.float32)[None, :, None, None]
                + np.array([0.485, 0.456, 0.406], np.float32)[None, :, None, None]), "normalisation per channel"),
    (lambda x: x.transpose(0, 2, 3, 1)[..., ::-1], "NHWC, the reference NCHW; channel order swapped"),
])
def test_a_deployed_preprocessing_mismatch_is_named(deployed, says):
    x = _images()
    found = preprocessing.compare({"image": np.ascontiguousarray(deployed(x))}, {"image": x}, {"image": "NCHW"})
    assert not found["match"]
    assert says in found["finding"], found["finding"]


def test_an_unexplained_mismatch_names_the_largest_error_and_where():
    x = _images()
    y = x.copy()
    y[2, 1, 3, 4] += 0.5
    found = preprocessing.compare({"image": y}, {"image": x}, {"image": "NCHW"})
    assert "max error 0.5 at sample 2, index [1, 3, 4]" in found["finding"]


def test_a_one_channel_missing_normalisation_is_named():
    x = np.random.default_rng(1).integers(0, 17, (5, 1, 8, 8)).astype(np.float32) / 16
    found = preprocessing.compare({"image": x * 16}, {"image": x}, {"image": "NCHW"})
    assert "missing normalisation" in found["finding"] and "reference*16" in found["finding"]
