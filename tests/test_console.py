"""Console tables fit a 100-column terminal by default; progress goes to stderr (fast lane)."""
from __future__ import annotations

import io
from dataclasses import replace

from deploytool import progress as P
from deploytool.measuring.timing import Summary
from deploytool.report.console import bench_table, compare_table, fit
from deploytool.results import BenchRow, Comparison
from deploytool.running.jobs import RowStatus


def _bench_row(fmt: str, **kw) -> BenchRow:
    summary = Summary(n=700, min_ms=7.0, p50_ms=7.123, p90_ms=7.456, p99_ms=8.9, mean_ms=7.14, std_ms=0.22,
                      iqr_ms=0.1, cv=0.031, throughput_per_s=140.0)
    row = BenchRow(fmt, "onnxruntime", 1, 1, 14_000_000, {"threads": 1}, RowStatus.OK, import_s=0.41, load_s=0.052,
                   first_inference_ms=30.2, rss_peak_mb=211.0, summary=summary)
    return replace(row, **kw)


def test_fit_leaves_out_optional_columns_until_the_table_fits_and_says_so():
    headers = ["name", "a_long_column", "another_long_one", "third_wide_column"]
    rows = [["x" * 20, "1" * 30, "2" * 30, "3" * 30]]
    out = fit(headers, rows, [("x" * 20, "")], ["third_wide_column", "another_long_one"], width=100)
    lines = out.splitlines()
    assert max(map(len, lines[:-1])) <= 100 and "third_wide_column" not in lines[0]
    assert "another_long_one" in lines[0]  # dropped only as far as needed
    assert lines[-1].startswith("(third_wide_column left out to fit 100 columns: --wide")
    wide = fit(headers, rows, [("x" * 20, "a note")], ["third_wide_column"], wide=True)
    assert wide.splitlines()[0].split() == headers + ["note"] and "a note" in wide


def test_notes_go_below_the_table_wrapped_to_the_width():
    note = "dims fixed: seq=16 (onnx2tf could not convert the dynamic graph: " + "very long reason " * 12
    rows = [_bench_row("onnx", reason=note, status=RowStatus.FAILED)]
    out = bench_table(rows, width=100)
    lines = out.splitlines()
    assert all(len(ln) <= 100 for ln in lines), out
    assert lines[3] == "notes:" and lines[4].startswith("  onnx (threads=1, batch=1): dims fixed")
    unwrapped = " ".join(ln.strip() for ln in lines[4:] if ln.startswith("  "))
    assert " ".join(note.split()) in unwrapped
    assert "note" not in lines[0].split()


def test_bench_table_keeps_the_columns_that_decide_at_100_columns():
    out = bench_table([_bench_row("onnx"), _bench_row("tflite_fp32", runtime="litert")], width=100)
    header = out.splitlines()[0].split()
    assert header[:7] == ["format", "runtime", "thr", "batch", "status", "p50_ms", "p90_ms"]
    assert {"load_ms", "rss_mb", "size", "GFLOP/s"} <= set(header)
    assert all(len(ln) <= 100 for ln in out.splitlines())
    assert "p99_ms" in bench_table([_bench_row("onnx")], width=120).splitlines()[0].split()
    assert len(bench_table([_bench_row("onnx")], wide=True).splitlines()[0].split()) == 18


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_a_log_gets_one_line_per_stage_and_debug_every_step():
    log = _Stream(tty=False)
    with P.for_stream(stream=log) as p:
        assert isinstance(p, P.Lines)
        p.stage("exporting onnx, torchscript (torch worker)")
        p.step("onnx", "exporting")
        p.stage("checking artifacts on their runtimes")
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[deploytool ") and lines[0].endswith("(torch worker)")
    debug = _Stream(tty=False)
    with P.for_stream(debug=True, stream=debug) as p:
        p.stage("s")
        p.step("onnx", "exporting")
    assert debug.getvalue().splitlines()[1].endswith("  onnx: exporting")
    quiet = _Stream(tty=True)
    with P.for_stream(quiet=True, stream=quiet) as p:
        p.stage("s")
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_live_display(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    tty = _Stream(tty=True)
    with P.for_stream(stream=tty) as p:
        assert isinstance(p, P.Live)
        p.stage("timing onnx on onnxruntime, threads=1, batch=1")
        p.step("onnx", "measuring")
        p.stage("timing tflite_fp32 on litert, threads=1, batch=1")
    out = tty.getvalue()
    assert "timing onnx on onnxruntime" in out and "timing tflite_fp32 on litert" in out
    assert "\x1b[" in out  # drawn with terminal control sequences, not plain lines
    assert "0:00:0" in out  # elapsed time


def test_the_api_still_takes_a_plain_callable():
    seen: list[str] = []
    p = P.as_progress(seen.append)
    p.stage("loading")
    p.step("onnx", "exporting")
    assert seen == ["loading", "  onnx: exporting"]
    assert type(P.as_progress(None)) is P.Progress


def test_a_note_several_rows_share_is_printed_once():
    note = "vacuous check: reference output 'y' is the same on the 16 main golden samples " * 2
    out = fit(["format"], [["onnx"], ["savedmodel"]], [("onnx", note), ("savedmodel", note)], [], width=100)
    assert out.count("vacuous check") == 2 and "  savedmodel: as onnx" in out.splitlines()


def test_bench_rows_keep_bench_json_shape():
    """bench.json's row keys: the first eight always; the measured figures and statistics (flat) only for a
    measured row; rounds / relative / GFLOP/s only where set. Nothing more."""
    from deploytool.measuring.timing import summarize
    from deploytool.results import NOT_IN_BASELINE, Relative

    base = ["format", "runtime", "threads", "batch", "size_bytes", "settings_requested", "status", "reason"]
    skipped = BenchRow("onnx", "openvino", 1, 2, None, {"threads": 1}, RowStatus.SKIPPED, "batch dim is static")
    assert list(skipped.to_dict()) == base
    measured = replace(_bench_row("onnx"), summary=summarize([1_000_000] * 100), samples_ns=[1_000_000] * 100)
    d = measured.to_dict()
    stats = ["n", "min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "iqr_ms", "cv", "throughput_per_s",
             "percentile_method", "warnings"]
    worker = ["settings", "runtime_version", "import_s", "load_s", "first_inference_ms", "rss_start_mb",
              "rss_after_load_mb", "rss_peak_mb", "warmup_runs", "capped", "samples_ns"]
    assert list(d) == base + worker + stats
    int8 = replace(measured, format="onnx_int8", rounds=2, relative=Relative("onnx", 0.5, None), gflops_per_s=3.0,
                   peak_note="int8: no peak")
    d = int8.to_dict()
    assert list(d)[-4:] == ["rounds", "relative", "gflops_per_s", "peak_note"] and "pct_of_peak" not in d
    assert d["relative"] == {"to": "onnx", "p50_ratio": 0.5, "size_ratio": None}
    assert "0.50x time of onnx" in bench_table([int8], wide=True)
    missing = Comparison("tflite_fp32", "litert", 1, 1, note=NOT_IN_BASELINE, in_baseline=False)
    assert missing.to_dict() == {"format": "tflite_fp32", "runtime": "litert", "threads": 1, "batch": 1,
                                 "ratio": None, "regression": False, "note": NOT_IN_BASELINE}
    slower = Comparison("onnx", "onnxruntime", 1, 1, 2.0, 1.0, 2.0, True)
    assert list(slower.to_dict()) == ["format", "runtime", "threads", "batch", "candidate_p50_ms", "baseline_p50_ms",
                                      "ratio", "regression", "note"]
    table = compare_table([slower, missing], 1.1)
    assert "REGRESSION" in table and NOT_IN_BASELINE in table
