"""The "where it runs" matrix (every artifact × every runtime that runs it) and ``recommend`` choosing among
targets, from synthetic results (a manifest, validation.json and bench.json as dicts): no runtime, in process."""
from __future__ import annotations

from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from deploytool.commands.recommend import Budget, rank
from deploytool.core import errors
from deploytool.core.errors import UsageError
from deploytool.report import html, markdown
from deploytool.report.view import artifacts
from deploytool.results import Results
from deploytool.targets import runtimes_of

ORDER = ["onnx", "savedmodel", "torchscript", "tflite_int8", "tflite_fp16"]
DATE = "2026-01-02T00:00:00+00:00"


def _manifest(failed: str = "tflite_fp16"):
    def rec(name: str):
        return SimpleNamespace(precision="fp32", chain=["source", name], size_bytes=2**20, route=None, checks={},
                               check=None, runtime=runtimes_of(name)[0], status="failed" if name == failed else "ok")

    model = SimpleNamespace(name="m", description="d", source={"kind": "zoo"}, framework="torch")
    return SimpleNamespace(artifacts={n: rec(n) for n in ORDER}, created=DATE, model=model, tool={}, versions={},
                           golden=SimpleNamespace(sets={}))


def _entry(fmt: str, runtime: str, max_abs: float, accuracy: dict | None = None) -> dict:
    return {"format": fmt, "runtime": runtime, "status": "pass", "max_abs": max_abs, "accuracy": accuracy}


# onnx on two runtimes; savedmodel on its only one; torchscript on torchscript but not on libtorch (unchecked)
VALIDATION = {"created": DATE, "machine": {"name": "ci"}, "targets": {
    "onnx@onnxruntime": _entry("onnx", "onnxruntime", 1e-6), "onnx@openvino": _entry("onnx", "openvino", 3e-6),
    "savedmodel@tensorflow": _entry("savedmodel", "tensorflow", 2e-6),
    "torchscript@torchscript": _entry("torchscript", "torchscript", 0.0),
    "tflite_int8@litert": _entry("tflite_int8", "litert", 0.1, {"accuracy": 0.9866, "drop_points": 0.22})}}


def _row(fmt: str, runtime: str, threads: int, p50: float) -> dict:
    return {"status": "ok", "batch": 1, "format": fmt, "runtime": runtime, "threads": threads, "p50_ms": p50,
            "p90_ms": p50 * 1.5, "p99_ms": p50 * 2, "load_s": 0.01, "first_inference_ms": p50, "rss_peak_mb": 100.0}


def _bench(machine: str, scale: float = 1.0) -> dict:
    rows = [_row("onnx", "onnxruntime", 1, 2.0 * scale), _row("onnx", "onnxruntime", 2, 0.5 * scale),
            _row("onnx", "openvino", 1, 0.4 * scale), _row("savedmodel", "tensorflow", 1, 12.5 * scale),
            _row("tflite_int8", "litert", 1, 0.9 * scale),
            {**_row("onnx", "openvino", 1, 0.01), "batch": 8}]  # not batch 1: not in the matrix
    return {"machine": {"name": machine}, "rows": rows}


def _results(tmp_path, *benches: dict) -> Results:
    return Results(tmp_path, _manifest(), "sha", validations=[VALIDATION], benches=list(benches))


def _matrix(results: Results) -> tuple[list[str], dict[str, dict[str, str]]]:
    headers, rows = markdown.matrix_table(results, artifacts(results))
    return headers, {cells[0]: dict(zip(headers[1:], cells[1:])) for cells in rows}


def test_the_matrix_has_a_row_per_artifact_and_a_column_per_runtime_that_runs_any(tmp_path):
    headers, rows = _matrix(_results(tmp_path, _bench("ci")))
    assert list(rows) == ORDER  # manifest order
    assert headers == ["artifact", *dict.fromkeys(r for f in ORDER for r in runtimes_of(f))]  # each default first
    assert {"onnxruntime", "openvino", "tensorflow", "torchscript", "libtorch", "litert"} <= set(headers)
    # one artifact on two runtimes: each its own verdict, error and p50 at 1 thread (not the faster 2-thread row)
    assert rows["onnx"]["onnxruntime"] == "PASS · 1.00e-06 · p50 2.000 ms"
    assert rows["onnx"]["openvino"] == "PASS · 3.00e-06 · p50 0.400 ms"
    # a format no other runtime runs: a dash there, its own cell on its runtime
    assert rows["savedmodel"]["tensorflow"] == "PASS · 2.00e-06 · p50 12.5 ms"
    assert rows["savedmodel"]["openvino"] == rows["savedmodel"]["libtorch"] == markdown.NOT_RUN
    # a runtime that runs the artifact, but no result says so: not checked (and not a dash)
    assert rows["torchscript"]["libtorch"] == "not checked"
    assert rows["torchscript"]["torchscript"] == "PASS · 0.00e+00"  # checked, never benched: no p50
    assert rows["tflite_int8"]["litert"] == "PASS · 1.00e-01 · 98.66% (-0.22) · p50 0.900 ms"  # and accuracy
    assert set(rows["tflite_fp16"].values()) == {"failed to export", markdown.NOT_RUN}


def test_two_benched_machines_are_named_in_the_cell(tmp_path):
    _, rows = _matrix(_results(tmp_path, _bench("ci"), _bench("pi5", scale=4)))
    assert rows["onnx"]["openvino"] == "PASS · 3.00e-06 · p50 0.400 ms @ ci, 1.600 ms @ pi5"


def test_only_rows_at_other_thread_counts_say_theirs(tmp_path):
    bench = {"machine": {"name": "ci"}, "rows": [_row("onnx", "openvino", 4, 0.3), _row("onnx", "openvino", 2, 0.2)]}
    _, rows = _matrix(_results(tmp_path, bench))
    assert rows["onnx"]["openvino"] == "PASS · 3.00e-06 · p50 0.200 ms (2t)"  # the fastest row, its threads said


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: list[str] = []

    def handle_data(self, data):
        self.cells.append(data)


def test_the_markdown_and_html_pages_show_the_matrix(tmp_path):
    results = _results(tmp_path, _bench("ci"))
    md = markdown.render(results)
    section = md.split("## Where it runs", 1)[1].split("<details>", 1)[0]
    assert markdown.MATRIX_KEY in section
    onnx = next(ln for ln in section.splitlines() if ln.startswith("| `onnx` |"))
    assert "| PASS · 3.00e-06 · p50 0.400 ms |" in onnx
    assert next(ln for ln in section.splitlines() if ln.startswith("|")).startswith("| artifact | onnxruntime |")
    page, _ = html.render(results)
    parser = _Text()
    parser.feed(page.split("<h2>Where it runs</h2>", 1)[1])
    assert "PASS · 3.00e-06 · p50 0.400 ms" in parser.cells and "not checked" in parser.cells
    assert "onnx" in parser.cells and "`onnx`" not in page


def test_recommend_picks_the_fastest_passing_target_on_a_non_default_runtime(tmp_path):
    outcome = rank(_results(tmp_path, _bench("ci")), Budget(threads=1))
    assert outcome.exit_code == errors.OK
    best = outcome.ranked[0]
    assert (best.target, best.format, best.runtime, best.p50_ms) == ("onnx@openvino", "onnx", "openvino", 0.4)
    assert "--runtime openvino" in outcome.confirm
    out = outcome.to_json()
    assert out["ranked"][0]["target"] == "onnx@openvino"
    assert {c["target"] for c in out["ranked"]} == {"onnx", "onnx@openvino", "savedmodel", "tflite_int8"}
    assert out["excluded"]["torchscript"] == ["not benchmarked on ci at 1 threads"]  # keyed by target label
    assert out["excluded"]["tflite_fp16"] == ["never checked (export status: failed)"]


def test_recommend_runtime_takes_several_in_the_shared_grammar(tmp_path):
    results = _results(tmp_path, _bench("ci"))
    outcome = rank(results, Budget(runtimes=["tensorflow,litert"]))
    assert [c.target for c in outcome.ranked] == ["tflite_int8", "savedmodel"]
    assert outcome.budget.runtimes == ["litert", "tensorflow"]  # as check_runtimes reads them (registry order)
    assert outcome.excluded["onnx@openvino"] == ["runtime openvino, not one of litert, tensorflow"]
    outcome = rank(results, Budget(runtimes="openvino"))
    assert [c.target for c in outcome.ranked] == ["onnx@openvino"]
    assert outcome.excluded["onnx"] == ["runtime onnxruntime, not openvino"]
    with pytest.raises(UsageError, match="--runtime openvin0: no such runtime.*openvino"):
        rank(results, Budget(runtimes=["openvin0"]))


def test_an_emulated_cpu_is_a_column_of_its_own_and_says_what_it_computed_in(tmp_path):
    """Emulated targets (validate --emulate) are their own rows, keys and matrix columns, never mixed with the
    native runtime's; the per-target table says the precision each really computed in."""
    emulated = {f"tflite_int8@litert@aarch64-{cpu}": {**_entry("tflite_int8", "litert", 0.2),
                                                      "platform": f"aarch64-{cpu}", "executed": "int8"}
                for cpu in ("cortex-a72", "cortex-a55")}
    validation = {**VALIDATION, "targets": {**VALIDATION["targets"], **emulated}}
    results = Results(tmp_path, _manifest(), "sha", validations=[validation], benches=[_bench("ci")])
    views = artifacts(results)
    assert [v.key for v in views if v.name == "tflite_int8"] == [
        "tflite_int8@litert", "tflite_int8@litert@aarch64-cortex-a55", "tflite_int8@litert@aarch64-cortex-a72"]
    headers, rows = _matrix(results)
    assert rows["tflite_int8"]["litert"].startswith("PASS · 1.00e-01")  # native: its own verdict and p50
    assert rows["tflite_int8"]["litert (aarch64-cortex-a55)"] == "PASS · 2.00e-01"  # never timed: no p50
    assert "litert (aarch64-cortex-a72)" in headers
    table_headers, table_rows = markdown.table(results, views)
    computes = {(r[0], r[1]): r[table_headers.index("computes in")] for r in table_rows}
    assert computes[("tflite_int8", "litert (aarch64-cortex-a55)")] == "int8"
