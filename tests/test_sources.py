"""Sources other than the reference zoo: an .onnx file (ONNX becomes the source)."""
from __future__ import annotations

import json

import pytest
from conftest import error_lines, manifest_of

from deploytool.core import errors
from deploytool.formats import FORMATS


@pytest.fixture(scope="module")
def onnx_source(tmp_path_factory):
    """An ONNX file exported here from a model outside the zoo (conv + BatchNorm + pooling, dynamic batch)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 5)).eval()
    path = tmp_path_factory.mktemp("onnx_src") / "small_cnn.onnx"
    torch.onnx.export(model, (torch.rand(2, 3, 32, 32),), str(path), input_names=["pixels"], output_names=["scores"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},), external_data=False,
                      dynamo=True)
    return path


# the formats VACUOUS without --accept-uninformative scores (see onnx_bundle): CONSTANT_ACCEPTED allowed there
ONNX_ACCEPTED = {"tflite_dynamic", "tflite_fp16"}


@pytest.fixture(scope="module")
def onnx_bundle(onnx_source, run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_bundle")
    # random weights: the output varies too little across samples for the reduced-precision tiers to tell a wrong
    # artifact (issue 22's informativeness rule); accepted explicitly (ONNX_ACCEPTED are then CONSTANT_ACCEPTED)
    proc = run_cli("export", "--model", onnx_source, "--out", out, "--accept-uninformative", "scores")
    return out / "small_cnn", proc


def test_onnx_file_exports_every_applicable_format_with_parity(onnx_bundle, onnx_source):
    bundle, proc = onnx_bundle
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(bundle)
    assert m["model"]["source"]["kind"] == "onnx" and m["golden"]["reference_runtime"] == "onnxruntime"
    assert [s["name"] for s in m["contract"]["inputs"]] == ["pixels"]
    assert m["contract"]["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    art = m["artifacts"]
    assert art["torchscript"]["status"] == "not_applicable" and "source is onnx" in art["torchscript"]["error"]
    assert art["onnx"]["exporter"]["name"] == "source file (onnx.checker)"
    # FLOPs counted from the graph at one sample: the 3x3 conv (3 -> 8 channels, 32x32) and the 8 -> 5 Gemm
    assert m["flops"]["per_sample"] == 2 * (32 * 32 * 8 * 3 * 9 + 8 * 5) and "ONNX graph" in m["flops"]["method"]
    assert (bundle / "artifacts/small_cnn.onnx").read_bytes() == onnx_source.read_bytes()
    for fmt in ("onnx", "savedmodel", "tflite_fp32", "tflite_fp16"):
        want = {"pass", "constant_accepted"} if fmt in ONNX_ACCEPTED else {"pass"}
        assert art[fmt]["status"] == "ok" and art[fmt]["check"]["status"] in want, (fmt, art[fmt]["check"])
    assert "NOT_APPLICABLE" in proc.stdout


def test_onnx_source_bundle_validates_and_benches(onnx_bundle, run_cli, tmp_path):
    bundle, _ = onnx_bundle
    proc = run_cli("validate", bundle, "--reports", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("bench", bundle, "--min-time", "0.1", "--min-runs", "20", "--warmup-runs", "1", "--warmup-time",
                   "0", "--reports", tmp_path, "-f", "onnx", "-f", "torchscript")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["format"]: r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert rows["onnx"]["status"] == "ok" and rows["torchscript"]["status"] == "not_applicable"
    assert "source" not in rows  # the ONNX source is the onnx row itself


def test_broken_onnx_file(run_cli, tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"definitely not protobuf")
    proc = run_cli("export", "--model", tmp_path / "broken.onnx", "--out", tmp_path)
    assert proc.returncode == errors.MODEL
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "broken.onnx: not a readable ONNX model" in lines[0]
    proc = run_cli("export", "--model", tmp_path / "missing.onnx", "--out", tmp_path)
    assert proc.returncode == errors.MODEL and "no such file" in proc.stderr


FACTORIES = '''
import torch
from torch import nn


class TextClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(500, 32)
        self.fc = nn.Linear(32, 3)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(dim=1))


def text_classifier():
    torch.manual_seed(0)
    return TextClassifier()


def mlp_with_examples():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 2)).eval(), (torch.rand(4, 6),)


def returns_int():
    return 42


def raises():
    raise ValueError("no weights for you")


not_callable = 42


def examples_mismatch():
    torch.manual_seed(0)
    return nn.Linear(6, 2).eval(), (torch.rand(4, 6),)


class Branchy(nn.Module):
    """Data-dependent control flow: which branch runs depends on the values, not the shapes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def branchy():
    torch.manual_seed(0)
    return Branchy().eval()
'''


@pytest.fixture(scope="module")
def factory_dir(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("factories")
    (d / "user_models.py").write_text(FACTORIES)
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_models_for_weights", d / "user_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    state = mod.text_classifier().state_dict()
    torch.save(state, d / "good.pt")
    bad = dict(state)
    bad["extra.weight"] = torch.zeros(1)
    del bad["fc.bias"]
    torch.save(bad, d / "bad.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("this pickle runs code",))

    torch.save({"x": Evil()}, d / "evil.pt")
    return d


def test_factory_with_input_spec_range_and_weights(factory_dir, run_cli, tmp_path):
    proc = run_cli("export", "--model", f"{factory_dir / 'user_models.py'}:text_classifier", "--input",
                   "ids:batch x seq:int64", "--input-range", "ids:0:500", "--weights", factory_dir / "good.pt",
                   "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(tmp_path / "user_models")
    assert m["model"]["source"]["kind"] == "factory" and m["model"]["source"]["weights"].endswith("good.pt")
    ids = m["contract"]["inputs"][0]
    assert ids == {"name": "ids", "shape": ["batch", "seq"], "dtype": "int64", "range": [0, 500]}
    assert m["contract"]["outputs"][0]["shape"] == ["batch", 3]
    assert m["golden"]["sets"]["alt"]["dims"] == {"batch": 3, "seq": 24}
    for name, rec in m["artifacts"].items():  # a factory brings no calibration data: int8 needs it
        want = "needs_data" if FORMATS[name].needs_calibration else "pass"
        assert rec["check"]["status"] == want, rec["check"]


def test_module_path_factory_with_example_inputs(factory_dir, run_cli, tmp_path):
    proc = run_cli("export", "--model", "user_models:mlp_with_examples", "--out", tmp_path, "-f", "onnx",
                   cwd=factory_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(tmp_path / "mlp_with_examples")
    # the example's batch (4) becomes a dynamic batch dim (issue 22 item 3); the feature size stays fixed
    assert m["contract"]["inputs"][0]["shape"] == ["batch", 6] and m["contract"]["inputs"][0]["name"] == "input"


@pytest.mark.parametrize("args, message", [
    (["{d}/user_models.py:text_classifier", "--input", "ids:batch,seq:int64", "--weights", "{d}/evil.pt"],
     "refused: not a plain state dict (loading with weights_only=True failed"),
    (["{d}/user_models.py:text_classifier", "--input", "ids:batch,seq:int64", "--weights", "{d}/bad.pt"],
     "does not fit the module: missing keys fc.bias; unexpected keys extra.weight"),
    (["{d}/user_models.py:text_classifier"], "the factory returned no example inputs; declare them with --input"),
    (["{d}/user_models.py:returns_int"], "the factory returned int, not a torch.nn.Module"),
    (["{d}/user_models.py:raises"], "factory raises() raised ValueError: no weights for you"),
    (["{d}/user_models.py:missing"], "has no 'missing'"),
    (["{d}/nowhere.py:build"], "no such file"),
    (["{d}/user_models.py:not_callable"], "'not_callable' is a int, not a callable factory"),
    (["{d}/user_models.py:examples_mismatch", "--input", "x:batch x 7:float32"],
     "example input 'x' has size 6 at axis 1, the contract fixes 7"),
])
def test_factory_errors(factory_dir, run_cli, tmp_path, args, message):
    proc = run_cli("export", "--model", *[a.format(d=factory_dir) for a in args], "--out", tmp_path)
    assert proc.returncode == errors.MODEL, proc.stdout + proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--input", "ids:batch x seq"], "expected NAME:SHAPE:DTYPE"),
    (["--input", "ids:batch x seq:int65"], "unknown dtype 'int65'"),
    (["--input-range", "ids:5:1"], "LOW must be below HIGH"),
])
def test_input_spec_usage_errors(factory_dir, run_cli, tmp_path, args, message):
    proc = run_cli("export", "--model", f"{factory_dir / 'user_models.py'}:text_classifier", *args, "--out", tmp_path)
    assert proc.returncode == errors.USAGE and message in proc.stderr


def test_converter_failure_names_the_onnx_op(run_cli, tmp_path):
    # nn.EmbeddingBag exports a Loop over sequences; onnx2tf 1.28.8 cannot convert SequenceEmpty.
    (tmp_path / "bag.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build():\n    torch.manual_seed(0)\n    return nn.Sequential(nn.EmbeddingBag(50, 8, mode='mean'))\n")
    proc = run_cli("export", "--model", f"{tmp_path / 'bag.py'}:build", "--input", "ids:batch x seq:int64",
                   "--input-range", "ids:0:50", "--out", tmp_path, "-f", "savedmodel",
                   "--runtime", "onnxruntime")  # OpenVINO cannot read this Loop either: not what is tested here
    assert proc.returncode == errors.EXPORT, proc.stdout + proc.stderr
    assert "bag/savedmodel: export failed: onnx2tf failed at ONNX node" in proc.stderr
    assert "(SequenceEmpty)" in proc.stderr


def test_onnx_source_with_integer_input_range(run_cli, tmp_path):
    import numpy as np
    import torch
    from torch import nn

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(300, 16), nn.Linear(16, 4)

        def forward(self, ids):
            return self.fc(self.emb(ids).mean(dim=1))

    torch.manual_seed(0)
    path = tmp_path / "bag.onnx"
    torch.onnx.export(Bag().eval(), (torch.randint(0, 300, (2, 8)),), str(path), input_names=["ids"],
                      output_names=["logits"], dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64),
                                       1: torch.export.Dim("seq", min=2, max=64)},))
    proc = run_cli("export", "--model", path, "--input-range", "ids:0:300", "--out", tmp_path, "-f", "onnx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(tmp_path / "bag")
    assert m["contract"]["inputs"][0]["range"] == [0, 300]
    ids = np.load(tmp_path / "bag/golden/inputs.npz")["ids"]
    assert ids.max() >= 2 and ids.max() < 300  # the range was used, not the default [0, 2)
    proc = run_cli("export", "--model", path, "--input-range", "tokens:0:300", "--out", tmp_path)
    assert proc.returncode == errors.MODEL and "--input-range names unknown inputs ['tokens']" in proc.stderr


def test_data_dependent_control_flow_names_the_construct(factory_dir, run_cli, tmp_path):
    proc = run_cli("export", "--model", f"{factory_dir / 'user_models.py'}:branchy", "--input", "x:batch x 4:float32",
                   "--out", tmp_path, "-f", "onnx,torchscript")
    assert proc.returncode != 0, proc.stdout
    art = json.loads((tmp_path / "user_models/manifest.json").read_text())["artifacts"]
    assert art["onnx"]["status"] == "failed", art["onnx"]
    assert art["onnx"]["error"].startswith("torch.export failed: ") and "data-dependent" in art["onnx"]["error"], \
        art["onnx"]["error"]
    assert "Traceback" not in proc.stderr
