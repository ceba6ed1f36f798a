"""validate --pipeline: the whole pipeline's decisions on every target against the source's, and the deployed
preprocessing checked against the reference one (docs/pipeline.md).

Fast lane: the options' refusals and the pipeline worker's one-line errors, in-process. Slow: digits_cnn's zoo bundle
(``zoo_bundles``) on real runtimes, raw samples scikit-learn's held-out 8x8 digits as uint8 0..16."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deploytool.commands import pipeline
from deploytool.core import npz
from deploytool.core.errors import UsageError
from deploytool.report import pipeline_section
from deploytool.running import jobs
from deploytool.running.pipeline_worker import run_pipeline

HERE = Path(__file__).resolve().parent
DIGITS_PIPELINE = HERE / "models" / "digits_pipeline.py"
FP32 = ("torchscript", "onnx", "savedmodel", "tflite_fp32", "openvino")
INT8 = ("onnx_int8", "tflite_int8")


def _raw(path: Path, n: int = 64) -> Path:
    """The first ``n`` held-out digits (the split digits_cnn was trained on keeps them out), as uint8 0..16."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    held_out = np.random.default_rng(0).permutation(len(images))[:int(round(len(images) * 0.25))]
    npz.save(path, {"pixels": images[held_out[:n]].astype(np.uint8)})
    return path


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- fast: refusals ------------------------------------------------------------------------------

def test_options_refuse_with_one_line(tmp_path):
    raw = _raw(tmp_path / "raw.npz", 4)
    cases = [
        ((tmp_path / "missing.py", raw), "--pipeline .*missing.py: no such file"),
        ((_file(tmp_path, "nopre.py", "def postprocess(o):\n    return o\n"), raw), "defines no preprocess"),
        ((_file(tmp_path, "bad.py", "def preprocess(raw:\n"), raw), "not valid Python"),
        ((DIGITS_PIPELINE, None), "needs --raw-data"),
        ((None, raw), "--raw-data needs --pipeline"),
        ((DIGITS_PIPELINE, tmp_path / "none.npz"), "--raw-data .*none.npz: no such file"),
    ]
    for (file, data), says in cases:
        with pytest.raises(UsageError, match=says):
            pipeline.options_of(file, data, None, None, None)
    with pytest.raises(UsageError, match="--max-decision-flips"):
        pipeline.options_of(DIGITS_PIPELINE, raw, None, "many", None)
    with pytest.raises(UsageError, match="--operating-point"):
        pipeline.options_of(DIGITS_PIPELINE, raw, "threshold=5", None, None)
    assert pipeline.options_of(None, None, None, None, None) is None
    opts = pipeline.options_of(DIGITS_PIPELINE, raw, "top-k=3", "2%", None)
    assert opts is not None and opts.operating_point.value == 3 and opts.gate.fraction == pytest.approx(0.02)


def test_a_source_model_file_defining_preprocess_is_the_pipeline(tmp_path):
    raw = _raw(tmp_path / "raw.npz", 4)
    model = _file(tmp_path, "my_model.py", "INPUTS = OUTPUTS = []\ndef build():\n    pass\n"
                  "def preprocess(raw):\n    return raw\n")
    for source in (str(model), f"{model}:build"):
        opts = pipeline.options_of(None, raw, None, None, source)
        assert opts is not None and opts.file == model.resolve()
    plain = _file(tmp_path, "plain.py", "def build():\n    pass\n")
    with pytest.raises(UsageError, match="--raw-data needs --pipeline"):
        pipeline.options_of(None, raw, None, None, str(plain))


def _pre(tmp_path: Path, file: Path, raw: Path) -> jobs.PipelineRan:
    return run_pipeline(jobs.RunPipeline(file=str(file), stage="pre", input_names=["image"], raw=str(raw),
                                         out=str(tmp_path / "out.npz"), deployed=str(tmp_path / "dep.npz")))


def test_user_code_errors_are_one_line_naming_the_function_and_the_file(tmp_path):
    raw = _raw(tmp_path / "raw.npz", 4)
    raises = _file(tmp_path, "raises.py", "def preprocess(raw):\n    raise RuntimeError('boom')\n")
    reply = _pre(tmp_path, raises, raw)
    assert not reply.ok and reply.error == f"preprocess() in {raises} raised RuntimeError: boom (the raw data " \
        "holds one array, 'pixels' uint8[4, 8, 8], passed to it as an array)"
    keys = _file(tmp_path, "keys.py", "def preprocess(raw):\n    return {'image': raw['images']}\n")
    two = tmp_path / "two.npz"
    npz.save(two, {"pixels": np.zeros((2, 8, 8)), "ids": np.zeros(2)})
    reply = _pre(tmp_path, keys, two)
    assert not reply.ok and reply.error == f"preprocess() in {keys} raised KeyError: 'images' (the raw data's " \
        "keys: ids, pixels, passed to it as a dict)"
    imports = _file(tmp_path, "imports.py", "import not_a_module_anywhere\ndef preprocess(raw):\n    return raw\n")
    reply = _pre(tmp_path, imports, raw)
    assert not reply.ok and "importing" in reply.error and "not_a_module_anywhere" in reply.error
    assert "\n" not in reply.error


def test_the_worker_runs_preprocess_and_reports_the_operating_point(tmp_path):
    raw = _raw(tmp_path / "raw.npz", 5)
    reply = _pre(tmp_path, DIGITS_PIPELINE, raw)
    assert reply.ok, reply.error
    assert reply.functions == ["preprocess"] and reply.constants == {"THRESHOLD": 0.5} and reply.samples == 5
    image = npz.load(tmp_path / "out.npz")["image"]
    assert image.shape == (5, 1, 8, 8) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1


def test_postprocess_returning_no_decision_is_named(tmp_path):
    post = _file(tmp_path, "post.py", "def preprocess(raw):\n    return raw\ndef postprocess(outputs):\n"
                 "    return outputs['logits']\n")
    outs = tmp_path / "outs.npz"
    npz.save(outs, {"logits": np.zeros((3, 1, 10), np.float32)})
    reply = run_pipeline(jobs.RunPipeline(file=str(post), stage="post", outputs={"r": str(outs)},
                                          decisions={"r": str(tmp_path / "d.npz")}, unbatch=["logits"]))
    assert not reply.ok and reply.error.startswith(f"postprocess() in {post} returned a float32 array of shape "
                                                   "[3, 10]")


def test_the_report_section_is_absent_without_a_pipeline_and_says_each_target_s_agreement():
    assert pipeline_section.lines(SimpleNamespace(validations=[{"machine": {"name": "m"}, "targets": {
        "onnx@onnxruntime": {"format": "onnx", "runtime": "onnxruntime"}}}])) == []
    p = {"samples": 10, "kind": "class", "operating_point": "top-k=1", "flips": 1, "flip_rate": 0.1,
         "near": {"band": 0.1, "samples": 2, "flips": 1}, "margins": {"min": 0.01, "p5": 0.02, "median": 3.0},
         "gate": {"count": 0, "passed": False, "text": "0 sample(s)"}}
    text = "\n".join(pipeline_section.lines(SimpleNamespace(validations=[{"machine": {"name": "m"}, "targets": {
        "tflite_int8@litert": {"format": "tflite_int8", "runtime": "litert", "pipeline": p}}}])))
    assert "| `tflite_int8` | m | class @ top-k=1 | 1/10 (10.00%) | 1 of 2 (margin < 0.1) | 0.01 / 0.02 / 3 | " \
        "FAIL (at most 0 sample(s)) | - |" in text


# ---- slow: real runtimes -------------------------------------------------------------------------

def _validate(run_cli, bundle: Path, tmp_path: Path, *args):
    out = tmp_path / "reports"
    proc = run_cli("validate", bundle, "--reports", out, *args)
    report = json.loads((out / "validation.json").read_text()) if (out / "validation.json").is_file() else None
    return proc, report


def _targets(report: dict, formats: tuple[str, ...]) -> dict[str, dict]:
    return {k: t for k, t in report["targets"].items() if t["format"] in formats}


def test_a_correct_pipeline_gives_no_flips_on_fp32_targets_and_int8_reports_its_rate(zoo_bundles, run_cli,
                                                                                        tmp_path):
    bundle = zoo_bundles["digits_cnn"][0]
    raw = _raw(tmp_path / "raw.npz", 64)
    proc, report = _validate(run_cli, bundle, tmp_path, "--pipeline", DIGITS_PIPELINE, "--raw-data", raw,
                             "-f", ",".join(FP32 + INT8), "--runtime", "torchscript,onnxruntime,tensorflow,litert,"
                             "openvino")
    assert proc.returncode == 0, proc.stderr
    fp32 = _targets(report, FP32)
    assert len(fp32) >= len(FP32)
    for key, t in fp32.items():
        p = t["pipeline"]
        assert t["status"] == "pass", (key, t["reason"])
        assert (p["samples"], p["kind"], p["operating_point"], p["flips"]) == (64, "labels", "threshold=0.5", 0), key
        assert p["gate"] == {"count": 0, "given": False, "passed": True, "text": "0 sample(s)"}
        assert "pipeline" in t["sets"]  # tensor parity on the pipeline's inputs too
        # the reference decides most samples far from the threshold: a wrong artifact moves them (test_decisions)
        assert p["margins"]["median"] > 0.3 and p["near"]["band"] == 0.05
    for key, t in _targets(report, INT8).items():
        p = t["pipeline"]
        assert 0 <= p["flip_rate"] <= 0.02 and p["gate"]["fraction"] == 0.02 and p["gate"]["passed"], key
    section = "\n".join(pipeline_section.lines(SimpleNamespace(validations=[report])))
    assert "## Pipeline decisions" in section and "| `onnx` |" in section and "0/64 (0.00%)" in section


def test_a_deployed_preprocessing_without_normalisation_is_caught_and_named(zoo_bundles, run_cli, tmp_path):
    bundle = zoo_bundles["digits_cnn"][0]
    raw = _raw(tmp_path / "raw.npz", 64)
    file = _file(tmp_path, "deployed.py", DIGITS_PIPELINE.read_text() + "\n\ndef preprocess_deployed(raw):\n"
                 "    return {'image': np.asarray(raw, dtype=np.float32)[:, None]}  # forgot / 16\n")
    proc, report = _validate(run_cli, bundle, tmp_path, "--pipeline", file, "--raw-data", raw, "-f",
                             "onnx,tflite_fp32", "--runtime", "onnxruntime,litert")
    assert proc.returncode == 5, proc.stderr
    targets = _targets(report, ("onnx", "tflite_fp32"))
    assert len(targets) == 2
    for t in targets.values():
        assert t["status"] == "fail"
        dep = t["pipeline"]["preprocess_deployed"]
        assert not dep["match"] and dep["finding"] == "input 'image': normalisation: deployed = reference*16+0 " \
            "(missing normalisation)"
        assert "preprocess_deployed differs from preprocess: input 'image': normalisation" in t["reason"]
        assert "tensor parity on identical inputs passes" in t["reason"]
        # the artifact itself matches the source on both sets of inputs: the fault is named where it is
        assert all(v["passed"] for s in ("pipeline", "pipeline_deployed") for v in t["sets"][s].values())
        assert t["pipeline"]["flips"] == 0 and dep["decisions"]["samples"] == 64
    section = "\n".join(pipeline_section.lines(SimpleNamespace(validations=[report])))
    assert "DIFFERS: input 'image': normalisation: deployed = reference*16+0 (missing normalisation)" in section
    errors = [line for line in proc.stderr.splitlines() if line.startswith("deploytool: error:")]
    assert len(errors) == 2 and all("missing normalisation" in line for line in errors)


def test_a_user_postprocess_whose_decisions_move_fails_the_gate(zoo_bundles, run_cli, tmp_path):
    """A postprocess that reads the logits below fp32 rounding (their 8th digit): the onnx artifact, within 1e-5 of
    the source, decides otherwise on most samples, and the default fp32 gate (0 flips) fails it."""
    raw = _raw(tmp_path / "raw.npz", 16)
    file = _file(tmp_path, "fragile.py", DIGITS_PIPELINE.read_text() + "\n\ndef postprocess(outputs):\n"
                 "    return np.floor(outputs['logits'][:, 0].astype(np.float64) * 1e7).astype(np.int64) % 7\n")
    proc, report = _validate(run_cli, zoo_bundles["digits_cnn"][0], tmp_path, "--pipeline", file, "--raw-data", raw,
                             "-f", "onnx", "--runtime", "onnxruntime")
    assert proc.returncode == 5, proc.stderr
    t = report["targets"]["onnx@onnxruntime"]
    p = t["pipeline"]
    assert (p["kind"], p["operating_point"], p["margins"]) == ("class", "postprocess()", None)
    assert t["status"] == "fail" and p["flips"] > 8 and p["gate"]["passed"] is False
    assert all(v["passed"] for v in t["sets"]["pipeline"].values())  # the tensors themselves match
    assert f"pipeline: {p['flips']}/16 decisions differ" in t["reason"]
    assert "more than --max-decision-flips allows (0 sample(s))" in t["reason"]


def test_preprocess_raising_is_one_line_and_exit_2(zoo_bundles, run_cli, tmp_path):
    raw = _raw(tmp_path / "raw.npz", 4)
    file = _file(tmp_path, "keys.py", "def preprocess(raw):\n    return {'image': raw['images']}\n")
    proc, _ = _validate(run_cli, zoo_bundles["digits_cnn"][0], tmp_path, "--pipeline", file, "--raw-data", raw,
                        "-f", "onnx")
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("[deploytool")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"deploytool: error: preprocess() in {file} raised IndexError: ")
    assert lines[0].endswith("(the raw data holds one array, 'pixels' uint8[4, 8, 8], passed to it as an array)")


def test_bench_reports_pre_inference_and_post_time_apart(zoo_bundles, run_cli, tmp_path):
    raw = _raw(tmp_path / "raw.npz", 16)
    out = tmp_path / "bench"
    proc = run_cli("bench", zoo_bundles["digits_cnn"][0], "-f", "tflite_fp32", "--runtime", "litert", "--no-source",
                   "--no-peak", "--min-time", "0.2", "--min-runs", "20", "--pipeline", DIGITS_PIPELINE,
                   "--raw-data", raw, "--reports", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "bench.json").read_text())
    timing = data["pipeline"]
    assert timing["samples"] == 16 and timing["postprocess"] == "built-in"
    assert 0 < timing["pre_ms"] < 100 and 0 < timing["post_ms"] < 100
    p50 = data["rows"][0]["p50_ms"]
    total = timing["pre_ms"] + p50 + timing["post_ms"]
    assert f"tflite_fp32 (threads=1, batch=1): {timing['pre_ms']:.4f} + {p50:.4f} + {timing['post_ms']:.4f} = " \
        f"{total:.4f} ms (pre + inference p50 + post)" in proc.stdout
