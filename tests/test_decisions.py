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
    ([np.zeros((1, 5))] * 3, "not [k, 6]; expected class ids"),
    ([{"cls": 1}] * 3, "returned a list of 3 (the first a dict): item 0 is a dict, no detections array; expected "
     "class ids"),
    ({"decisions": [{"cls": 1}] * 3}, "item 0 is a dict"),
    ([None] * 3, "(the first a NoneType): item 0 (detections of sample 0) has shape [], not [k, 6]"),
    ("cat", "returned a str: expected class ids"),
    ({"decisions": np.array([1, 2, 3]), "margins": [0.1, float("nan"), 0.2]}, "non-finite margin (nan) for sample 1"),
    ({"decisions": np.array([1, 2, 3]), "margins": ["a", "b", "c"]}, "margins that are no numbers"),
    ({"labels": 1}, "without a 'decisions' key"),
])
def test_normalise_refuses_what_is_no_decision(bad, says):
    with pytest.raises(ValueError, match=__import__("re").escape(says)) as e:
        decisions.normalise(bad, 3, "postprocess() in p.py")
    assert str(e.value).startswith("postprocess() in p.py returned ") and "\n" not in str(e.value)


def test_a_list_of_python_ints_is_class_ids():
    d = decisions.normalise([3, 1, 4], 3, "postprocess() in p.py")
    assert d.kind == decisions.CLASS and list(d.values) == [3, 1, 4]


def test_gate_grammar():
    assert decisions.parse_gate("0.02").fraction == 0.02
    assert decisions.parse_gate("2%").fraction == pytest.approx(0.02)
    assert decisions.parse_gate("3samples").count == 3
    assert decisions.parse_gate("0").allows(0, 10) and not decisions.parse_gate("0").allows(1, 10)
    assert decisions.parse_gate("10%").allows(1, 10) and not decisions.parse_gate("10%").allows(2, 10)
    for bad in ("1.5", "x", "-1samples", "101%"):
        with pytest.raises(ValueError, match="--max-decision-flips"):
            decisions.parse_gate(bad)
    # a bare 1 is not 100 % (the gate off) nor a guessed count: refused, saying how to write either
    for bare, count in (("1", "1"), ("1.0", "1"), ("3", "3")):
        with pytest.raises(ValueError, match=f"write {count}samples for a count, or {bare}% for a percentage"):
            decisions.parse_gate(bare)
    # what an error suggests is itself taken: no "1.5samples", no "infsamples"
    for bad in ("1.5", "inf", "nan", "250.5"):
        with pytest.raises(ValueError) as e:
            decisions.parse_gate(bad)
        assert f"{bad}samples" not in str(e.value)
        for suggested in __import__("re").findall(r"write (\S+)", str(e.value)):
            if suggested.endswith(("samples", "%")):
                decisions.parse_gate(suggested)
    assert decisions.parse_gate("100%").fraction == 1.0 and decisions.parse_gate("0.99").fraction == 0.99


def test_operating_point_grammar():
    op = decisions.parse_operating_point("threshold=0.3,band=0.02")
    assert (op.kind, op.value, op.near_band) == ("threshold", 0.3, 0.02)
    assert decisions.parse_operating_point("top-k=5").near_band == decisions.DEFAULT_BAND["top-k"]
    for bad, says in (("threshold=2", "probability"), ("top-k=1.5", "whole number"), ("foo=1", "unknown key"),
                      ("band=0.1", "names no threshold"),
                      ("threshold=0.5,top-k=2", "gives threshold and top-k; give one operating point"),
                      ("top-k=2,top-k=3", "gives top-k and top-k")):
        with pytest.raises(ValueError, match=says):
            decisions.parse_operating_point(bad)


def test_the_operating_point_is_resolved_once_and_the_file_s_constants_checked():
    resolve = decisions.resolve_operating_point
    op = resolve(None, {"THRESHOLD": 0.3, "NEAR_BAND": 0}, False, "p.py")
    assert (op.kind, op.value, op.near_band) == ("threshold", 0.3, 0.0)  # NEAR_BAND = 0 is a band, not unset
    op = resolve(None, {"TOP_K": 3, "NEAR_BAND": 0.2}, False, "p.py")
    assert (op.kind, op.value, op.near_band) == ("top-k", 3.0, 0.2)
    assert resolve(None, {}, False, "p.py").text() == "top-k=1"
    # --operating-point wins; its band= first, else the file's NEAR_BAND
    given = decisions.parse_operating_point("top-k=2")
    assert resolve(given, {"THRESHOLD": 0.5, "NEAR_BAND": 0.3}, False, "p.py").text() == "top-k=2,band=0.3"
    given = decisions.parse_operating_point("threshold=0.4,band=0.01")
    assert resolve(given, {"NEAR_BAND": 0.3}, False, "p.py").near_band == 0.01
    for constants, says in (({"THRESHOLD": 1.5}, "THRESHOLD = 1.5: a threshold is a probability in"),
                            ({"TOP_K": True}, "TOP_K = True is not a number"),
                            ({"THRESHOLD": True}, "THRESHOLD = True is not a number"),
                            ({"TOP_K": 0}, "TOP_K = 0: top-k takes a whole number"),
                            ({"TOP_K": 2.5}, "TOP_K = 2.5: top-k takes a whole number"),
                            ({"NEAR_BAND": -1}, "NEAR_BAND = -1: a band is a number >= 0"),
                            ({"NEAR_BAND": "'wide'"}, "NEAR_BAND = 'wide' is not a number"),
                            ({"NEAR_BAND": float("nan")}, "NEAR_BAND = nan is not a number")):
        with pytest.raises(ValueError, match=f"^p.py: {says}"):
            resolve(None, constants, False, "p.py")
    # the file's postprocess makes the decisions: a threshold given beside it would be ignored, so it is refused
    with pytest.raises(ValueError, match="--operating-point threshold=0.4,band=0.01: p.py defines postprocess()"):
        resolve(given, {}, True, "p.py")
    assert resolve(None, {"THRESHOLD": 0.5}, True, "p.py").near_band == 0.05  # the band for its own margins


def test_a_top_k_of_more_classes_than_the_output_has_is_refused():
    with pytest.raises(ValueError, match=r"top-k=11 asks for more classes than the classifier output has \(10\)"):
        decisions.check_classes(OperatingPoint("top-k", 11.0), 10, "x")
    decisions.check_classes(OperatingPoint("top-k", 10.0), 10, "x")
    decisions.check_classes(OperatingPoint("top-k", 11.0), None, "x")  # not known: the worker's builtin refuses
    with pytest.raises(ValueError, match="more classes than the classifier output has"):
        decisions.builtin(_logits(4), OperatingPoint("top-k", 11.0))


def _decoy_flips(x: np.ndarray, op: OperatingPoint) -> dict:
    ref = decisions.builtin(x, op)
    made = decisions.decoy_outputs({"logits": x})
    return decisions.decoy_flips(ref, {d: decisions.builtin(o["logits"], op) for d, o in made.items()})


def test_decisions_no_wrong_output_can_change_are_uninformative():
    x = _logits()  # softmax of N(0, 3) logits: no sample reaches 0.9999
    op = OperatingPoint("threshold", 0.9999)
    flips = _decoy_flips(x, op)
    assert set(flips) == {"zeros", "mean", "shuffled"} and all(f["flips"] == 0 for f in flips.values())
    why = decisions.uninformative(flips, decisions.Gate(count=0))
    assert why is not None and why.startswith("decision parity is uninformative: an artifact returning all zeros, "
                                              "the mean output over the raw samples or another sample's output "
                                              "would pass --max-decision-flips too (0/40 decisions differ)")
    assert "--raw-data whose decisions span the operating point" in why
    # a gate that allows every sample to flip claims nothing, so nothing is vacuous; no gate likewise
    assert decisions.uninformative(flips, decisions.Gate(fraction=1.0)) is None
    assert decisions.uninformative(flips, None) is None
    # decisions that span the threshold: every decoy flips more than the gates allow
    spanning = _decoy_flips(x, OperatingPoint("threshold", 0.5))
    assert decisions.uninformative(spanning, decisions.Gate(count=0)) is None
    assert decisions.uninformative(spanning, decisions.Gate(fraction=0.02)) is None
    # top-1 always the same class: the mean decoy decides alike
    same = x.copy()
    same[:, 3] += 50
    flips = _decoy_flips(same, OperatingPoint("top-k", 1))
    assert flips["mean"]["flips"] == 0 and flips["zeros"]["flips"] == 40
    why = decisions.uninformative(flips, decisions.Gate(count=0))
    assert why is not None and "returning the mean output over the raw samples or another sample's output would " \
        "pass" in why
    # one raw sample: only the zeros decoy can be made
    assert set(decisions.decoy_outputs({"logits": x[:1]})) == {"zeros"}


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
