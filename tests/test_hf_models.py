"""Realistic architectures from `transformers` (random init, nothing downloaded), brought in as
factories: TorchScript and ONNX must pass parity at two shapes; onnx2tf 1.28.8 cannot convert
either model (see README, "Bring your own model"), and that must be reported per format with the
ONNX node and op, while the other formats are still exported and checked."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TEST_MODELS, manifest_of
from deploytool import errors

HF = TEST_MODELS / "hf_models.py"

CASES = {
    "bert_classifier": (["--input", "input_ids:batch x seq:int64", "--input-range", "input_ids:0:1000"],
                        {"batch": 3, "seq": 24}),
    "vit_classifier": (["--input", "pixel_values:batch x 3 x 32 x 32:float32"], {"batch": 3}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def hf_bundle(request, run_cli, tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp(request.param)
    args, alt_dims = CASES[request.param]
    proc = run_cli("export", "--model", f"{HF}:{request.param}", *args, "--out", out)
    return request.param, out / "hf_models", proc, alt_dims


def test_torch_formats_pass_parity_at_two_shapes(hf_bundle):
    name, bundle, proc, alt_dims = hf_bundle
    m = manifest_of(bundle)
    assert m["model"]["source"]["kind"] == "factory" and m["model"]["source"]["factory"] == name
    assert m["golden"]["sets"]["alt"]["dims"] == alt_dims
    for fmt in ("torchscript", "onnx"):
        rec = m["artifacts"][fmt]
        assert rec["status"] == "ok" and rec["check"]["status"] == "pass", (fmt, rec.get("check"), proc.stdout)
        assert not rec["check"]["skipped_sets"]  # checked on both golden sets
        assert rec["contract"]["inputs"][0]["shape"][0] == "batch" and not rec["contract"].get("fixed_dims")
    ref = np.load(bundle / "golden/reference.npz")["output_0"]
    assert ref.std(axis=0).mean() > 1e-3  # the logits depend on the input


def test_onnx2tf_failure_is_reported_and_the_rest_goes_on(hf_bundle):
    _, bundle, proc, _ = hf_bundle
    assert proc.returncode == errors.EXPORT, proc.stdout + proc.stderr
    art = manifest_of(bundle)["artifacts"]
    assert art["savedmodel"]["status"] == "failed"
    assert art["savedmodel"]["error"].startswith("onnx2tf failed at ONNX node ")
    assert "(Expand): onnx2tf converts Expand as a multiplication, which TensorFlow refuses for a bool tensor" \
        in art["savedmodel"]["error"]
    for fmt in ("tflite_fp32", "tflite_fp16"):
        assert art[fmt]["status"] == "skipped" and "parent savedmodel failed" in art[fmt]["error"]
    assert "savedmodel: export failed: onnx2tf failed at ONNX node" in proc.stderr
    assert "Traceback" not in proc.stderr
