"""Realistic architectures from `transformers` (random init, nothing downloaded), brought in as
factories with dynamic dims, exported through every format with parity.

TorchScript and ONNX keep the dims dynamic and pass at two shapes. onnx2tf 1.28.8 cannot convert
either dynamic graph (transformers' attention mask is an Expand of a bool tensor); the savedmodel
exporter then converts the graph with the dims fixed to the golden sizes, and the manifest and
the report say so per artifact (the second-shape set is not run on those artifacts)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TEST_MODELS, manifest_of, note_of

from deploytool.core import errors

HF = TEST_MODELS / "hf_models.py"
ALL = ("onnx", "torchscript", "savedmodel", "tflite_fp32", "tflite_fp16")
TF_SIDE = ("savedmodel", "tflite_fp32", "tflite_fp16")

CASES = {
    "bert_classifier": (["--input", "input_ids:batch x seq:int64", "--input-range", "input_ids:0:1000"],
                        {"batch": 3, "seq": 24}, {"batch": 1, "seq": 16}),
    "vit_classifier": (["--input", "pixel_values:batch x 3 x 32 x 32:float32"], {"batch": 3}, {"batch": 1}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def hf_bundle(request, run_cli, tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp(request.param)
    args, alt_dims, fixed = CASES[request.param]
    proc = run_cli("export", "--model", f"{HF}:{request.param}", *args, "--out", out)
    return request.param, out / "hf_models", proc, alt_dims, fixed


# TensorFlow.js has no kernel for exact GELU's Erf/Erfc (BERT, ViT): tfjs fails to export, naming them (a
# limitation of TF.js, said as such); every other format is made and passes.
TFJS_LACKS = "TensorFlow.js has no kernel for ops of this model: Erf"


def test_every_format_passes_parity(hf_bundle):
    name, bundle, proc, alt_dims, _ = hf_bundle
    m = manifest_of(bundle)
    failed = {n: r for n, r in m["artifacts"].items() if r["status"] not in ("ok", "needs_data")}  # int8: no calib
    assert set(failed) <= {"tfjs"} and all(r["error"].startswith(TFJS_LACKS) for r in failed.values()), failed
    assert proc.returncode == (errors.EXPORT if failed else 0), proc.stdout + proc.stderr
    assert m["model"]["source"]["kind"] == "factory" and m["model"]["source"]["factory"] == name
    assert m["golden"]["sets"]["alt"]["dims"] == alt_dims
    for fmt in ALL:
        rec = m["artifacts"][fmt]
        assert rec["status"] == "ok" and rec["check"]["status"] == "pass", (fmt, rec.get("check"), proc.stdout)
    ref = np.load(bundle / "golden/reference.npz")["output_0"]
    assert ref.std(axis=0).mean() > 1e-3  # the logits depend on the input


def test_torch_formats_stay_dynamic_and_pass_at_two_shapes(hf_bundle):
    _, bundle, _, _, _ = hf_bundle
    art = manifest_of(bundle)["artifacts"]
    for fmt in ("onnx", "torchscript"):
        assert not art[fmt]["check"]["skipped_sets"] and not art[fmt]["contract"].get("fixed_dims"), fmt


def test_dims_onnx2tf_fixed_are_recorded_and_reported_per_artifact(hf_bundle):
    _, bundle, proc, _, fixed = hf_bundle
    art = manifest_of(bundle)["artifacts"]
    text = ", ".join(f"{d}={v}" for d, v in fixed.items())
    for fmt in TF_SIDE:
        assert art[fmt]["contract"]["fixed_dims"] == fixed, fmt
        assert art[fmt]["check"]["skipped_sets"] == {"alt": f"artifact fixed {text}"}, fmt
    note = art["savedmodel"]["notes"][0]
    assert note.startswith(f"dims fixed: {text} (onnx2tf could not convert the dynamic graph: onnx2tf failed at "
                           "ONNX node "), note
    assert "(Expand): onnx2tf converts Expand as a multiplication, which TensorFlow refuses for a bool tensor" in note
    assert art["savedmodel"]["exporter"]["options"]["fixed_dims"] == fixed
    assert f"alt set not run: artifact fixed {text}" in note_of(proc.stdout, "tflite_fp16")
