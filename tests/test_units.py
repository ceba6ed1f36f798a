"""Pure-numpy pieces: parity metrics, verdicts, contract generation and layout adaptation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deploytool.checking import parity
from deploytool.core import contract as C
from deploytool.core import npz
from deploytool.formats import FORMATS, lineage, resolve


def test_elementwise_rule_and_smallest_passing_tolerance():
    ref = np.array([[1.0, -2.0, 0.0]], dtype=np.float32)
    got = ref + np.array([[1e-5, 3e-4, 0.0]], dtype=np.float32)
    v = parity.check(got, ref, parity.TIERS["fp32"])
    assert not v.passed and "outside atol" in v.reason
    m = v.metrics
    assert m.max_abs == pytest.approx(3e-4, rel=1e-3)
    assert m.frac_out_of_tol == pytest.approx(1 / 3)
    loose = parity.TIERS["fp32"].with_overrides(atol=m.min_atol)
    assert parity.check(got, ref, loose).passed
    assert parity.check(got, ref, parity.TIERS["fp32"].with_overrides(atol=m.min_atol * 0.9)).passed is False


def test_statistical_tier_metrics():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(16, 1, 10))
    noisy = ref + rng.normal(scale=1e-3, size=ref.shape)
    m = parity.compare(noisy, ref, parity.TIERS["fp16"], classifier=True)
    assert m.cosine > 0.9999 and 50 < m.sqnr_db < 70 and m.top1_agreement == 1.0
    assert parity.judge(m, parity.TIERS["fp16"]).passed
    bad = parity.check(ref[:, :, ::-1].copy(), ref, parity.TIERS["fp16"], classifier=True)
    assert not bad.passed and "cosine" in bad.reason


def test_nan_in_candidate_fails_even_when_tolerances_are_huge():
    ref = np.ones((2, 3))
    got = ref.copy()
    got[1, 2] = np.nan
    tier = parity.TIERS["fp32"].with_overrides(atol=1e9)
    v = parity.check(got, ref, tier)
    assert not v.passed and "NaN/Inf" in v.reason and v.metrics.nonfinite_new == 1


def test_shape_mismatch_fails():
    v = parity.check(np.zeros((2, 3)), np.zeros((3, 2)), parity.TIERS["fp32"])
    assert not v.passed and "shape" in v.reason and math.isnan(v.metrics.max_abs)


def _contract():
    return C.Contract.from_dict({
        "inputs": [{"name": "img", "shape": ["batch", 3, 4, 5], "dtype": "float32", "range": [0, 1]},
                   {"name": "ids", "shape": ["batch", 7], "dtype": "int64", "range": [3, 9]}],
        "outputs": [{"name": "fmap", "shape": ["batch", 2, 4, 5], "dtype": "float32"}],
        "dims": {"batch": {"example": 2, "alt": 3}},
    })


def test_generate_inputs_seeded_and_in_range():
    c = _contract()
    a = C.generate_inputs(c, 8, 0, c.dim_sizes(batch_one=True))
    b = C.generate_inputs(c, 8, 0, c.dim_sizes(batch_one=True))
    assert a["img"].shape == (8, 1, 3, 4, 5) and a["ids"].shape == (8, 1, 7)
    assert np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["img"], b["img"])
    assert a["ids"].min() >= 3 and a["ids"].max() < 9 and a["ids"].dtype == np.int64
    assert 0 <= a["img"].min() and a["img"].max() < 1


def test_layout_adaptation_is_explicit_and_reversible():
    c = _contract()
    c.inputs[0].perm = C.channels_last_perm(4)
    c.inputs[0].artifact_name = "img_nhwc"
    c.outputs[0].perm = C.channels_last_perm(4)
    c.outputs[0].artifact_name = "output_0"
    x = np.arange(60, dtype=np.float32).reshape(1, 3, 4, 5)
    feeds = C.to_artifact(c, {"img": x, "ids": np.zeros((1, 7), np.int64)})
    assert feeds["img_nhwc"].shape == (1, 4, 5, 3)
    back = C.from_artifact(c, {"output_0": feeds["img_nhwc"][..., :2]})
    assert back["fmap"].shape == (1, 2, 4, 5)
    assert np.array_equal(back["fmap"], x[:, :2])
    with pytest.raises(KeyError, match="no output 'output_0'"):
        C.from_artifact(c, {"Identity": x})


def test_contract_validation_errors():
    with pytest.raises(ValueError, match="not declared in dims"):
        C.Contract.from_dict({"inputs": [{"name": "x", "shape": ["n"], "dtype": "float32"}],
                              "outputs": [{"name": "y", "shape": [1], "dtype": "float32"}]})
    with pytest.raises(ValueError, match="unknown dtype"):
        C.TensorSpec.from_dict({"name": "x", "shape": [1], "dtype": "float128"})


def test_check_inputs_names_shapes_dtypes():
    c = _contract()
    good = C.generate_inputs(c, 2, 0, c.dim_sizes(batch_one=True))
    C.check_inputs(c, good, "data")
    with pytest.raises(ValueError, match="missing \\['ids'\\]"):
        C.check_inputs(c, {"img": good["img"]}, "data")
    with pytest.raises(ValueError, match="dtype int32"):
        C.check_inputs(c, {**good, "ids": good["ids"].astype(np.int32)}, "data")
    with pytest.raises(ValueError, match="fixes it to 3"):
        C.check_inputs(c, {**good, "img": np.zeros((2, 1, 4, 4, 5), np.float32)}, "data")


def test_npz_refuses_pickles(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(npz.NpzError, match="pickled Python objects; refused"):
        npz.load(p)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(npz.NpzError, match="not a readable .npz"):
        npz.load(tmp_path / "junk.npz")


def test_registry_resolution_adds_parents():
    names, added = resolve(["tflite_fp16"])
    assert names == ["onnx", "savedmodel", "tflite_fp16"] and added == ["onnx", "savedmodel"]
    assert lineage("tflite_fp32") == ["onnx", "savedmodel", "tflite_fp32"]
    for name, fmt in FORMATS.items():
        assert fmt.tier in parity.TIERS
        assert fmt.parent is None or list(FORMATS).index(fmt.parent) < list(FORMATS).index(name)
    with pytest.raises(KeyError):
        resolve(["nope"])


def test_cli_module_does_not_import_frameworks():
    import subprocess
    import sys

    code = ("import sys, deploytool.cli, deploytool.api; "
            "print([m for m in ('torch','tensorflow','onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("make", [
    lambda: np.arange(33, dtype=np.float32)[1:].reshape(4, 8),  # an offset view
    lambda: np.arange(32, dtype=np.int64).reshape(8, 4).T,  # not C-contiguous
    lambda: np.arange(12, dtype=">f4").reshape(3, 4),  # byte-swapped
    lambda: np.frombuffer(np.ones(6, np.float16).tobytes(), np.float16),  # read-only
    lambda: np.array(True),
])
def test_aligned_copies_keep_values_and_start_on_64_bytes(make):
    from deploytool.core import buffers

    a = make()
    out = buffers.aligned(a)
    assert out.ctypes.data % 64 == 0 and out.flags.c_contiguous and out.dtype.isnative
    assert out.shape == a.shape and out.dtype == a.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, a)
    assert buffers.aligned(out) is out, "an array already aligned is not copied again"


def test_aligned_leaves_strings_and_empty_arrays_alone():
    from deploytool.core import buffers

    for a in (np.array(["a", "bc"]), np.zeros((0, 3), np.float32)):
        assert buffers.aligned(a) is a
