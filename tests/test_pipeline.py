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

from deploytool.checking import decisions
from deploytool.checking.decisions import OperatingPoint
from deploytool.checking.golden import GoldenSet
from deploytool.commands import pipeline
from deploytool.core import npz
from deploytool.core.contract import Contract
from deploytool.core.errors import UsageError
from deploytool.report import pipeline_section
from deploytool.results import ArtifactCheck
from deploytool.running import jobs
from deploytool.running.jobs import CheckStatus
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


def test_the_worker_passes_the_file_s_constants_as_they_are_and_refuses_bad_ones_before_timing(tmp_path):
    raw = _raw(tmp_path / "raw.npz", 3)
    odd = _file(tmp_path, "odd.py", "import numpy as np\nTHRESHOLD = np.float32(0.25)\nTOP_K = True\n"
                "NEAR_BAND = None\ndef preprocess(raw):\n    return raw\n")
    reply = _pre(tmp_path, odd, raw)
    assert reply.ok and reply.constants == {"THRESHOLD": 0.25, "TOP_K": True}  # a bool is kept, to be refused
    outs = tmp_path / "outs.npz"
    npz.save(outs, {"logits": np.zeros((3, 1, 10), np.float32)})

    def time(file: Path, op: dict | None = None) -> jobs.PipelineRan:
        return run_pipeline(jobs.RunPipeline(file=str(file), stage="time", input_names=["image"], raw=str(raw),
                                             outputs={"reference": str(outs)}, unbatch=["logits"],
                                             classifier_output="logits", operating_point=op))

    reply = time(odd)  # bench resolves the operating point as validate does: TOP_K = True is no number
    assert not reply.ok and reply.error == f"{odd}: TOP_K = True is not a number (a bool is not one either)"
    assert reply.pre_ms is None  # refused before anything was timed
    band0 = _file(tmp_path, "band0.py", "THRESHOLD = 1.5\ndef preprocess(raw):\n    return raw\n")
    assert time(band0).error == f"{band0}: THRESHOLD = 1.5: a threshold is a probability in (0, 1)"
    post = _file(tmp_path, "post.py", "import numpy as np\ndef preprocess(raw):\n    return raw\n"
                 "def postprocess(outputs):\n    return np.zeros(len(outputs['logits']), np.int64)\n")
    reply = time(post, {"kind": "threshold", "value": 0.5, "band": None})
    assert not reply.ok and reply.error.startswith(f"--operating-point threshold=0.5: {post} defines postprocess()")
    assert time(post).ok and time(DIGITS_PIPELINE).ok


def test_a_job_missing_its_paths_is_a_one_line_error_not_an_assert(tmp_path):
    for stage in ("pre", "time"):
        reply = run_pipeline(jobs.RunPipeline(file=str(DIGITS_PIPELINE), stage=stage))
        assert not reply.ok and reply.error == f"a '{stage}' pipeline job needs raw" + \
            (" and out" if stage == "pre" else "") + " (a deploytool bug)"


def test_raw_data_is_checked_alike_for_validate_and_bench(tmp_path):
    for arrays, says in (({"pixels": np.zeros((3, 8)), "n": np.array(3)}, "array 'n' is 0-d"),
                         ({"pixels": np.zeros((3, 8)), "ids": np.zeros(2)}, r"it holds \[2, 3\]"),
                         ({"pixels": np.zeros((0, 8))}, r"it holds \[0\]"), ({}, "holds no arrays")):
        path = tmp_path / "raw.npz"
        npz.save(path, arrays)
        with pytest.raises(UsageError, match=f"^--raw-data {path}: .*{says}"):
            pipeline.load_raw(path)
    # one unbatch rule: the outputs with a dynamic first dim lose their batch-1 axis, in validate and bench
    assert pipeline.unbatched(DIGITS_CONTRACT) == ["logits"]
    fixed = Contract.from_dict({**DIGITS_CONTRACT.to_dict(), "outputs": [
        {"name": "logits", "shape": [1, 10], "dtype": "float32"}]})
    assert pipeline.unbatched(fixed) == []


DIGITS_CONTRACT = Contract.from_dict({
    "inputs": [{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32", "layout": "NCHW"}],
    "outputs": [{"name": "logits", "shape": ["batch", 10], "dtype": "float32", "kind": "classifier"}],
    "dims": {"batch": {"example": 1, "alt": 2}}})


def test_preprocess_must_return_arrays_one_sample_per_raw_sample(tmp_path):
    """A list ([array(40, 1, 8, 8)]) was read as one sample of batch 40: refused in the worker, naming what it
    returned; arrays holding another sample count than the raw data, or of a shape taken neither way, are exit 2."""
    raw = _raw(tmp_path / "raw.npz", 5)
    listed = _file(tmp_path, "listed.py", "import numpy as np\ndef preprocess(raw):\n"
                   "    return [(np.asarray(raw, dtype=np.float32) / 16)[:, None]]\n")
    reply = _pre(tmp_path, listed, raw)
    assert not reply.ok and reply.error == f"preprocess() in {listed} returned a list of 1: expected a dict of the " \
        "model's inputs ['image'] (numpy arrays [N, ...], N the raw samples), or one numpy array"
    in_dict = _file(tmp_path, "in_dict.py", "def preprocess(raw):\n    return {'image': [1.0, 2.0]}\n")
    assert "returned a dict whose 'image' is a list, not a numpy array" in _pre(tmp_path, in_dict, raw).error
    opts = pipeline.PipelineOptions(DIGITS_PIPELINE, tmp_path / "raw.npz")
    image = np.zeros((5, 1, 8, 8), np.float32)
    what = "preprocess() in p.py"
    assert pipeline.checked_inputs(opts, DIGITS_CONTRACT, {"image": image}, 5, what)["image"].shape == (5, 1, 1, 8, 8)
    assert pipeline.checked_inputs(opts, DIGITS_CONTRACT, {"image": image[:, None]}, 5, what)["image"].shape == \
        (5, 1, 1, 8, 8)  # [N, batch, 1, 8, 8]: a batch per raw sample
    with pytest.raises(UsageError, match=r"^preprocess\(\) in p.py returned 1 sample\(s\) for the 5 raw samples of "):
        pipeline.checked_inputs(opts, DIGITS_CONTRACT, {"image": image[None]}, 5, what)
    with pytest.raises(UsageError) as e:
        pipeline.checked_inputs(opts, DIGITS_CONTRACT, {"image": image[:, 0]}, 5, what)
    assert str(e.value) == "preprocess() in p.py: input 'image' has shape [5, 8, 8]; expected [N, 1, 8, 8] (one " \
        "row per raw sample) or [N, batch, 1, 8, 8] (a batch per raw sample), N the raw samples"
    with pytest.raises(UsageError, match="dtype float64, the contract says float32"):
        pipeline.checked_inputs(opts, DIGITS_CONTRACT, {"image": image.astype(np.float64)}, 5, what)
    # a --max-decision-flips count above the samples gates nothing: said, not accepted silently
    counted = pipeline.PipelineOptions(DIGITS_PIPELINE, tmp_path / "raw.npz", gate=decisions.parse_gate("6samples"))
    with pytest.raises(UsageError, match="6samples: more than the 5 raw samples, so it gates nothing; give at most "
                       "5samples"):
        pipeline.checked_inputs(counted, DIGITS_CONTRACT, {"image": image}, 5, what)


def test_a_top_k_above_the_classes_is_refused_before_any_target_runs(tmp_path):
    with pytest.raises(UsageError, match=r"top-k=11 asks for more classes than the classifier output has \(10\)"):
        pipeline.check_operating_point(OperatingPoint("top-k", 11.0), DIGITS_CONTRACT)
    pipeline.check_operating_point(OperatingPoint("top-k", 10.0), DIGITS_CONTRACT)
    # a file's own postprocess decides: its TOP_K (e.g. the most detections kept) is its own business
    pipeline.check_operating_point(OperatingPoint("top-k", 100.0), DIGITS_CONTRACT, ["preprocess", "postprocess"])


def test_postprocess_errors_name_the_outputs_and_every_malformed_decision_is_one_line(tmp_path):
    outs = tmp_path / "outs.npz"
    npz.save(outs, {"logits": np.zeros((3, 1, 10), np.float32)})

    def post(body: str) -> jobs.PipelineRan:
        file = _file(tmp_path, "p.py", f"import numpy as np\ndef preprocess(raw):\n    return raw\n"
                     f"def postprocess(outputs):\n    return {body}\n")
        return run_pipeline(jobs.RunPipeline(file=str(file), stage="post", outputs={"r": str(outs)},
                                             decisions={"r": str(tmp_path / "d.npz")}, unbatch=["logits"]))

    file = tmp_path / "p.py"
    reply = post("outputs['logit']")
    assert reply.error == f"postprocess() in {file} raised KeyError: 'logit' (the outputs: logits)"
    reply = post("[{'cls': int(np.argmax(x))} for x in outputs['logits']]")  # crashed the worker before
    assert reply.error.startswith(f"postprocess() in {file} returned a list of 3 (the first a dict): item 0 is a "
                                  "dict, no detections array; expected class ids")
    assert post("[int(np.argmax(x)) for x in outputs['logits']]").ok  # a list of N ints: class ids
    reply = post("{'decisions': outputs['logits'].argmax(1), 'margins': [float('nan')] * 3}")
    assert "returned a non-finite margin (nan) for sample 0" in reply.error


def _judge_decisions(tmp_path: Path, logits: np.ndarray, op: OperatingPoint) -> ArtifactCheck:
    """judge_decisions on a target whose outputs are the source's own (0 flips), the workers real."""
    work = tmp_path / f"work-{op.text()}"
    work.mkdir()
    ref = work / "pipeline.reference.npz"
    npz.save(ref, {"logits": logits[:, None]})
    target = work / "target.npz"
    npz.save(target, {"logits": logits[:, None].copy()})
    opts = pipeline.PipelineOptions(DIGITS_PIPELINE, tmp_path / "raw.npz", op)
    prep = pipeline.Prepared(opts, [GoldenSet(pipeline.PIPELINE, work / "in.npz", ref, {}, len(logits))],
                             {pipeline.PIPELINE: {"logits": logits[:, None]}}, ["preprocess"], {}, len(logits),
                             ["logits"], 0.1, operating_point=op)
    chk = ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS, outputs={pipeline.PIPELINE: target})
    pipeline.judge_decisions(prep, {"onnx@onnxruntime": chk}, DIGITS_CONTRACT, work, work, 120)
    return chk


@pytest.mark.slow  # starts pipeline workers (numpy only, no runtime): a few seconds
def test_a_decision_check_no_wrong_output_could_fail_is_vacuous(tmp_path):
    """A threshold no raw sample reaches: 0 flips, but an artifact returning zeros decides alike, so the PASS is
    VACUOUS, said in the reason and in the pipeline result; decisions that span the threshold keep the PASS."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (16, 10)).astype(np.float32)  # softmax of N(0, 1): far below 0.9999
    chk = _judge_decisions(tmp_path, logits, OperatingPoint("threshold", 0.9999))
    p = chk.pipeline
    assert p["flips"] == 0 and p["gate"]["passed"] and p["decoys"]["zeros"] == {"flips": 0, "samples": 16}
    assert chk.status == CheckStatus.VACUOUS and p["uninformative"] in chk.reason
    assert chk.reason.startswith("decision parity is uninformative: an artifact returning all zeros")
    section = "\n".join(pipeline_section.lines(SimpleNamespace(validations=[{"machine": {"name": "m"}, "targets": {
        "onnx@onnxruntime": {"format": "onnx", "runtime": "onnxruntime", "pipeline": p}}}])))
    assert "pass (at most 0 sample(s)), VACUOUS: a trivial output passes too" in section
    spanning = logits.copy()
    spanning[::2, 3] += 8  # half the samples far above 0.5 on class 3, half below it everywhere
    chk = _judge_decisions(tmp_path, spanning, OperatingPoint("threshold", 0.5))
    assert chk.status == CheckStatus.PASS and chk.pipeline["uninformative"] is None and chk.reason == ""
    assert all(d["flips"] >= 8 for d in chk.pipeline["decoys"].values())


def test_the_report_section_is_absent_without_a_pipeline_and_says_each_target_s_agreement():
    assert pipeline_section.lines(SimpleNamespace(validations=[{"machine": {"name": "m"}, "targets": {
        "onnx@onnxruntime": {"format": "onnx", "runtime": "onnxruntime"}}}])) == []
    p = {"samples": 10, "kind": "class", "operating_point": "top-k=1", "flips": 1, "flip_rate": 0.1,
         "near": {"band": 0.1, "samples": 2, "flips": 1}, "margins": {"min": 0.01, "p5": 0.02, "median": 3.0},
         "gate": {"count": 0, "passed": False, "text": "0 sample(s)"}}
    text = "\n".join(pipeline_section.lines(SimpleNamespace(validations=[{"machine": {"name": "m"}, "targets": {
        "tflite_int8@litert": {"format": "tflite_int8", "runtime": "litert", "pipeline": {
            **p, "file": "/x/a.py", "raw_data": "/x/raw.npz"}},
        "onnx@onnxruntime": {"format": "onnx", "runtime": "onnxruntime", "pipeline": {**p, "file": "/x/b.py"}}}}])))
    assert "| `tflite_int8` | m | a.py (raw.npz) | class @ top-k=1 | 1/10 (10.00%) | 1 of 2 (margin < 0.1) | " \
        "0.01 / 0.02 / 3 | FAIL (at most 0 sample(s)) | - |" in text
    assert "| `onnx` | m | b.py | class @ top-k=1 |" in text  # rows of another run's file say which


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


def test_pipeline_errors_are_one_line_exit_2_before_any_target_runs(zoo_bundles, run_cli, tmp_path):
    raw = _raw(tmp_path / "raw.npz", 4)
    bundle = zoo_bundles["digits_cnn"][0]
    file = _file(tmp_path, "keys.py", "def preprocess(raw):\n    return {'image': raw['images']}\n")
    post = _file(tmp_path, "post.py", DIGITS_PIPELINE.read_text() + "\n\ndef postprocess(outputs):\n"
                 "    return outputs['logits'].argmax(axis=1)\n")
    top_k = _file(tmp_path, "top_k.py", DIGITS_PIPELINE.read_text().replace("THRESHOLD = 0.5", "TOP_K = True"))
    listed = _file(tmp_path, "listed.py", DIGITS_PIPELINE.read_text().replace('return {"image": ', "return [").replace(
        "[:, None]}", "[:, None]]"))  # [array(N, 1, 8, 8)]: once taken as one sample of batch N
    cases = [
        (file, [], f"preprocess() in {file} raised IndexError: "),
        (listed, [], f"preprocess() in {listed} returned a list of 1: expected a dict of the model's inputs"),
        (DIGITS_PIPELINE, ["--operating-point", "top-k=11"], "--operating-point / the pipeline file: output "
         "'logits': top-k=11 asks for more classes than the classifier output has (10)"),
        (top_k, [], f"{top_k}: TOP_K = True is not a number (a bool is not one either)"),
        (post, ["--operating-point", "threshold=0.5"], f"--operating-point threshold=0.5: {post} defines "
         "postprocess(), which makes the decisions"),
    ]
    for pipe, extra, says in cases:
        proc, _ = _validate(run_cli, bundle, tmp_path, "--pipeline", pipe, "--raw-data", raw, "-f", "onnx",
                            "--runtime", "onnxruntime", *extra)
        lines = [line for line in proc.stderr.splitlines() if not line.startswith("[deploytool")]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"deploytool: error: {says}"), lines[0]
        assert "target(s)" not in proc.stderr  # found in prepare, before any target ran ("checking 1 target(s)")
    assert lines[0].endswith("drop --operating-point (NEAR_BAND in the file sets the band for the margins "
                             "postprocess returns)")
    # bench resolves it as validate does, before it times any row
    proc = run_cli("bench", bundle, "-f", "tflite_fp32", "--runtime", "litert", "--no-source", "--no-peak",
                   "--pipeline", top_k, "--raw-data", raw, "--reports", tmp_path / "bench")
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("[deploytool")]
    assert proc.returncode == 2 and lines == [f"deploytool: error: {top_k}: TOP_K = True is not a number (a bool is "
                                              "not one either)"], proc.stderr
    assert "timing tflite_fp32" not in proc.stderr


def test_bench_checks_what_validate_checks_before_it_times(zoo_bundles, run_cli, tmp_path):
    """One check for both: a float64 preprocess, a list-of-dicts postprocess and a KeyError's hint, as validate says
    them, before any row is timed."""
    raw = tmp_path / "raw.npz"
    npz.save(raw, {"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(4, np.int64)})
    base = "import numpy as np\ndef preprocess(raw):\n    return {'image': (raw['images'] / 16.0)%s[:, None]}\n"
    f64 = _file(tmp_path, "f64.py", base % "")
    dicts = _file(tmp_path, "dicts.py", base % ".astype(np.float32)" + "def postprocess(outputs):\n"
                  "    return [{'cls': int(np.argmax(x))} for x in outputs['logits']]\n")
    keys = _file(tmp_path, "keys.py", "def preprocess(raw):\n    return {'image': raw['pixels']}\n")
    cases = [(f64, f"preprocess() in {f64}: input 'image' has dtype float64, the contract says float32"),
             (dicts, f"postprocess() in {dicts} returned a list of "),  # of the golden outputs: "(the first a dict)"
             (keys, f"preprocess() in {keys} raised KeyError: 'pixels' (the raw data's keys: images, labels, "
              "passed to it as a dict)")]
    for file, says in cases:
        proc = run_cli("bench", zoo_bundles["digits_cnn"][0], "-f", "tflite_fp32", "--runtime", "litert",
                       "--no-source", "--no-peak", "--pipeline", file, "--raw-data", raw, "--reports", tmp_path / "b")
        lines = [line for line in proc.stderr.splitlines() if not line.startswith("[deploytool")]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"deploytool: error: {says}"), \
            proc.stderr
        assert "timing tflite_fp32" not in proc.stderr
        if file is dicts:
            assert "(the first a dict): item 0 is a dict, no detections array; expected class ids" in lines[0]


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
    # what each median is over: the raw samples for preprocess, the golden outputs for postprocess
    assert f"preprocess over the 16 raw samples, postprocess over the {timing['post_samples']} samples of the " \
        "bundle's golden reference outputs" in proc.stdout
    assert 0 < timing["pre_ms"] < 100 and 0 < timing["post_ms"] < 100
    p50 = data["rows"][0]["p50_ms"]
    total = timing["pre_ms"] + p50 + timing["post_ms"]
    assert f"tflite_fp32 (threads=1, batch=1): {timing['pre_ms']:.4f} + {p50:.4f} + {timing['post_ms']:.4f} = " \
        f"{total:.4f} ms (pre + inference p50 + post)" in proc.stdout
