"""What the reports say about failures (issue 21): the step summary, report.md/.html, validation.json and JUnit
read for a never-exported artifact, a full run, and a partial run (``validate -f``) on top of it. Every failure
has its reason and says what kind it is; counts tell this run's checks from earlier results (with their dates);
every verdict carries its basis; the HTML holds no Markdown."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from conftest import result_of

from deploytool.core import errors
from deploytool.report.markdown import verdict_line
from deploytool.report.view import ArtifactView, Checked, artifacts
from deploytool.results import Results, earlier_targets
from deploytool.targets import targets_of

PLANTED = "converter crashed: planted fault"


def _never_exported(bundle, fmt: str = "tflite_dynamic") -> None:
    """``fmt`` as export leaves an artifact whose conversion failed: no file, status failed, its error."""
    m = json.loads((bundle / "manifest.json").read_text())
    rec = m["artifacts"][fmt]
    (bundle / rec["path"]).unlink()
    rec.update(status="failed", error=PLANTED, path=None, files=[], size_bytes=0, checks={}, golden_outputs={},
               check={"status": "not_exported", "reason": PLANTED})
    (bundle / "manifest.json").write_text(json.dumps(m, indent=1))


def _validate(cli_env, bundle, summary, *args) -> subprocess.CompletedProcess:
    env = {**cli_env, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    return subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "-q", *args],
                          capture_output=True, text=True, env=env, timeout=900)


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text: list[str] = []

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
def test_failures_partial_runs_and_bases_in_every_output(zoo_bundles, cli_env, run_cli, tmp_path):
    bundle = tmp_path / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    _never_exported(bundle)

    # a full run: the only failure is the artifact that was never exported, and it is said as such
    proc = _validate(cli_env, bundle, tmp_path / "full.md")
    assert proc.returncode == errors.EXPORT, proc.stdout + proc.stderr
    md = (tmp_path / "full.md").read_text()
    head = md.splitlines()[2]
    assert head.startswith("**FAIL**: `tflite_dynamic` (failed to export).") and "match the reference" not in head
    assert f"- `tflite_dynamic` on litert, failed to export: {PLANTED}" in md
    first = json.loads((bundle / "reports/validation.json").read_text())
    for key, entry in first["targets"].items():  # every verdict on numbers says what it was judged on
        assert entry["checked"] == first["created"]
        assert entry["basis"].startswith("judged on ") or entry["status"] == "not_exported", (key, entry)
    assert result_of(first, "tflite_int8")["basis"].startswith("judged on task accuracy on the labelled set: drop ")
    assert result_of(first, "tflite_fp16")["basis"] == "judged on cosine/SQNR/top-1 (fp16 tier)"
    suite = ET.parse(bundle / "reports/validation.junit.xml").getroot()
    outs = {c.get("classname"): c.findtext("system-out") for c in suite.iter("testcase") if c.get("name") == "logits"}
    assert outs["digits_cnn.tflite_int8@litert"] == result_of(first, "tflite_int8")["basis"]
    assert "| PASS | judged on task accuracy on the labelled set: drop " in md  # the int8 row says why it passed

    # a partial run with a failure: the other targets' results stay, marked as earlier, and count apart
    proc = _validate(cli_env, bundle, tmp_path / "partial.md", "-f", "onnx", "--atol", "onnx=0", "--rtol", "onnx=0")
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    data = json.loads((bundle / "reports/validation.json").read_text())
    assert set(data["targets"]) == set(first["targets"])  # nothing discarded
    assert result_of(data, "onnx")["status"] == "fail" and result_of(data, "onnx")["checked"] == data["created"]
    assert result_of(data, "tflite_int8") == result_of(first, "tflite_int8")  # kept as it was, with its date
    md = (tmp_path / "partial.md").read_text()
    head = md.splitlines()[2]
    date = lambda iso: f"{iso[:10]} {iso[11:16]} UTC"  # noqa: E731
    onnx_keys = [t.label("onnxruntime") for t in sorted(targets_of("onnx"))]  # every runtime of onnx: OpenVINO, ...
    failing = ", ".join(f"`{k}` (does not match the reference)" for k in onnx_keys)
    assert head.startswith(f"**FAIL**: {failing}, `tflite_dynamic` (failed to export).")
    n = len(onnx_keys)
    assert f"Checked in the latest run ({date(data['created'])}): {n} targets, {n} failing" in head
    earlier = len(first["targets"]) - n
    assert f"from earlier results ({date(first['created'])}): {earlier} targets, 1 failing." in head
    failures = md.split("## Failures", 1)[1].split("<details>", 1)[0]
    onnx_line = next(ln for ln in failures.splitlines() if ln.startswith("- `onnx` on onnxruntime"))
    assert "of elements outside atol=0 rtol=0" in onnx_line
    assert "judged on elementwise atol/rtol (override)" in onnx_line
    assert f"failed to export (earlier: {date(first['created'])}): {PLANTED}" in failures
    row = next(ln for ln in md.splitlines() if ln.startswith("| `tflite_fp32` |"))
    assert f"| PASS (earlier: {date(first['created'])}) |" in row  # not passed off as checked in this run
    assert md.count("- validate on ") == 1  # the environment, once per machine

    # the HTML page: the same facts, no Markdown syntax in its text
    assert run_cli("report", bundle).returncode == 0
    parser = _Text()
    parser.feed((bundle / "reports/report.html").read_text())
    text = "".join(parser.text)
    assert "`" not in text and "**" not in text
    assert "FAIL: onnx (does not match the reference)" in text and PLANTED in text
    assert (bundle / "reports/report.md").read_text().splitlines()[2] == head


# ---- in process: the typed view, the headline and the merge, without a runtime --------------------------------

def _view(name: str, status: str, now: bool, exported: str = "ok", date: str = "2026-01-02T03:04:05+00:00"):
    return ArtifactView(name, "litert", "fp32", [], 1, exported, {"ci": status}, checked={"ci": Checked(date, now)})


def test_the_headline_tells_this_runs_checks_from_earlier_ones_and_each_failure_by_kind():
    views = [_view("tflite_fp32", "fail", True), _view("tflite_fp16", "pass", False),
             _view("tflite_int8", "not_exported", True, exported="failed"), _view("onnx", "error", False)]
    line = verdict_line(views, markdown=False)
    assert line == ("FAIL: tflite_fp32 (does not match the reference), tflite_int8 (failed to export), onnx@litert "
                    "(failed to load or run). Checked in the latest run (2026-01-02 03:04 UTC): 2 targets, 2 failing; "
                    "from earlier results (2026-01-02 03:04 UTC): 2 targets, 1 failing.")
    assert "`" not in line and "*" not in line and "`tflite_fp32`" in verdict_line(views)
    assert verdict_line([_view("tflite_fp16", "pass", False)], markdown=False) == (
        "PASS: no target (artifact on runtime) fails on any machine that checked it. From earlier results "
        "(2026-01-02 03:04 UTC): 1 target, none failing.")


def test_a_machines_newest_results_win_and_a_failure_keeps_its_reason(tmp_path):
    """Two validation.json of one machine (the bundle's own and a later run's elsewhere): per target, the newest
    entry; its reason is the one shown, and the environment is said once."""
    from types import SimpleNamespace

    from deploytool.report import markdown

    rec = SimpleNamespace(precision="fp32", chain=["source", "onnx"], size_bytes=1, status="ok", route=None,
                          checks={}, check=None, runtime="onnxruntime")
    model = SimpleNamespace(name="m", description="d", source={"kind": "zoo"}, framework="torch")
    manifest = SimpleNamespace(artifacts={"onnx": rec}, created="2026-01-01T00:00:00+00:00", model=model, tool={},
                               versions={})
    machine = {"name": "ci", "cpu": "x", "cores": 2, "os": "linux"}
    old = {"created": "2026-01-02T00:00:00+00:00", "machine": machine, "targets": {"onnx@onnxruntime": {
        "format": "onnx", "runtime": "onnxruntime", "status": "pass", "reason": "", "max_abs": 1e-6,
        "basis": "judged on elementwise atol/rtol (fp32 tier)"}}}
    new = {"created": "2026-01-03T00:00:00+00:00", "machine": machine, "targets": {"onnx@onnxruntime": {
        "format": "onnx", "runtime": "onnxruntime", "status": "fail", "reason": "logits: 3% of elements outside",
        "max_abs": 1e-2, "basis": "judged on elementwise atol/rtol (fp32 tier)"}}}
    results = Results(tmp_path, manifest, "sha", validations=[old, new])
    (v,) = artifacts(results)
    assert v.verdicts == {"ci": "fail"} and v.reason == "logits: 3% of elements outside" and v.now
    assert v.basis == "judged on elementwise atol/rtol (fp32 tier)"
    assert [ln for ln in markdown.environment(results) if ln.startswith("validate on")] == [
        "validate on `ci`: x, 2 cores, linux, runtimes "]


def test_a_partial_run_keeps_earlier_results_of_the_same_bundle_and_machine_only(tmp_path):
    path = tmp_path / "validation.json"
    earlier = {"schema_version": 3, "created": "2026-01-02T00:00:00+00:00", "manifest_sha256": "abc",
               "machine": {"name": "ci"}, "targets": {"onnx@onnxruntime": {"format": "onnx", "status": "fail"},
                                                     "tflite_fp32@litert": {"format": "tflite_fp32", "status": "pass"}}}
    path.write_text(json.dumps(earlier))
    kept = earlier_targets(path, "abc", "ci", {"onnx@onnxruntime"})
    assert kept == {"tflite_fp32@litert": {"format": "tflite_fp32", "status": "pass",
                                           "checked": "2026-01-02T00:00:00+00:00"}}
    assert earlier_targets(path, "another bundle", "ci", set()) == {}
    assert earlier_targets(path, "abc", "another machine", set()) == {}
    assert earlier_targets(tmp_path / "absent.json", "abc", "ci", set()) == {}
    path.write_text("{")
    assert earlier_targets(path, "abc", "ci", set()) == {}
    # a schema-2 file (keyed by format) still reads, as each format on the runtime it names
    schema2 = {k: v for k, v in earlier.items() if k != "targets"}
    path.write_text(json.dumps({**schema2, "schema_version": 2, "artifacts": {"tflite_fp32": {
        "runtime": "litert", "status": "pass"}}}))
    assert earlier_targets(path, "abc", "ci", set()) == {"tflite_fp32@litert": {
        "runtime": "litert", "status": "pass", "format": "tflite_fp32", "checked": "2026-01-02T00:00:00+00:00"}}
