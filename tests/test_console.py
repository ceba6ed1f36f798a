"""Console tables fit a 100-column terminal by default; progress goes to stderr (fast lane)."""
from __future__ import annotations

import io

from deploytool import progress as P
from deploytool.report.console import bench_table, fit


def _bench_row(fmt: str, **kw) -> dict:
    row = {"format": fmt, "runtime": "onnxruntime", "threads": 1, "batch": 1, "status": "ok", "p50_ms": 7.123,
           "p90_ms": 7.456, "p99_ms": 8.9, "cv": 0.031, "throughput_per_s": 140.0, "n": 700, "import_s": 0.41,
           "load_s": 0.052, "first_inference_ms": 30.2, "rss_peak_mb": 211.0, "size_bytes": 14_000_000,
           "warnings": []}
    return {**row, **kw}


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
    rows = [_bench_row("onnx", reason=note, status="failed")]
    out = bench_table(rows, width=100)
    lines = out.splitlines()
    assert all(len(ln) <= 100 for ln in lines), out
    assert lines[3] == "notes:" and lines[4].startswith("  onnx on onnxruntime (threads=1, batch=1): dims fixed")
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
