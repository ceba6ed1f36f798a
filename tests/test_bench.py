"""deploytool bench: every row has every field, thread knobs are applied, failures stay in their row."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import HERE, flat, manifest_of

from deploytool.core import errors, records
from deploytool.formats import FORMATS
from deploytool.report import bench_files
from deploytool.store import bundle as B

FAST = ["--min-time", "0.2", "--min-runs", "30", "--warmup-runs", "2", "--warmup-time", "0"]
ROW_FIELDS = ["format", "runtime", "threads", "batch", "status", "settings_requested", "settings", "runtime_version",
              "import_s", "load_s", "first_inference_ms", "rss_after_load_mb", "rss_peak_mb", "size_bytes",
              "samples_ns", "n", "min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "iqr_ms", "cv",
              "throughput_per_s", "percentile_method", "warnings", "warmup_runs"]


@pytest.fixture(scope="module")
def digits_bench(zoo_bundles, run_cli, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("bench") / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    proc = run_cli("bench", bundle, "--threads", "1,2", *FAST)
    return bundle, proc


def test_bench_rows_have_every_field(digits_bench):
    bundle, proc = digits_bench
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((bundle / "reports/bench.json").read_text())
    assert report["schema_version"] == bench_files.SCHEMA_VERSION
    assert report["protocol"]["percentile_method"] == "linear" and report["protocol"]["min_runs"] == 30
    rows = report["rows"]
    assert {(r["format"], r["threads"]) for r in rows} == {(f, t) for f in ("source", *FORMATS) for t in (1, 2)}
    for r in rows:
        assert r["status"] == "ok", r
        for key in ROW_FIELDS:
            assert key in r, (r["format"], key)
        assert r["n"] == len(r["samples_ns"]) >= 30
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["rss_peak_mb"] >= r["rss_after_load_mb"] > 0 and r["load_s"] > 0 and r["import_s"] >= 0
        assert r["size_bytes"] is None if r["format"] == "source" else r["size_bytes"] > 0
    with open(bundle / "reports/bench.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    # console rows are sorted by p90
    table = [c for c in (ln.split() for ln in proc.stdout.splitlines()[3:]) if len(c) > 6 and c[4] == "OK"]
    p90s = [float(cols[6]) for cols in table]
    assert len(p90s) == len(rows)
    assert p90s == sorted(p90s)


def test_thread_settings_are_applied_through_each_runtimes_knob(digits_bench):
    bundle, _ = digits_bench
    for r in json.loads((bundle / "reports/bench.json").read_text())["rows"]:
        # every runtime reports its knobs read back under the same names (runtimes.Settings)
        # ...and a runtime that takes fewer threads than asked (TF.js wasm: half the cores) says so in the row
        took = r["settings"]["threads"]
        said = f"asked for {r['threads']} threads, the runtime runs {took}"
        assert took == r["threads"] or any(said in w for w in r["warnings"]), (r["runtime"], r["settings"])
        assert {"inter_op_threads", "spinning"} <= set(r["settings"]), r["settings"]
        if r["runtime"] == "litert":
            assert r["settings"]["xnnpack"] is True
        if r["runtime"] == "onnxruntime":  # onnxruntime's default, which bench keeps (docs/bench.md, "Threads")
            assert r["settings"]["spinning"] is True
        if r["runtime"] == "openvino":  # never bf16 for an fp32 model, whatever the CPU
            assert r["settings"]["inference_precision"] == "f32"


def test_failure_is_isolated_to_its_row_and_static_batch_is_skipped(zoo_bundles, run_cli, tmp_path):
    bundle = tmp_path / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    (bundle / "artifacts/digits_cnn_float32.tflite").write_bytes(b"\0" * 64)
    m = manifest_of(bundle)
    tflite = bundle / "artifacts/digits_cnn_float32.tflite"
    m["artifacts"]["tflite_fp32"]["files"] = records.dump(B.file_records(bundle, tflite))
    m["artifacts"]["tflite_fp16"]["contract"]["fixed_dims"] = {"batch": 1}  # as if the converter froze it
    (bundle / "manifest.json").write_text(json.dumps(m))
    proc = run_cli("bench", bundle, "-f", "tflite", "-f", "onnx", "--no-source", "--batch", "1,2", *FAST)
    assert proc.returncode == errors.RUNTIME, proc.stdout + proc.stderr
    rows = {(r["format"], r["batch"]): r for r in json.loads((bundle / "reports/bench.json").read_text())["rows"]}
    assert rows[("tflite_fp32", 1)]["status"] == "failed"
    assert "failed to load in litert" in rows[("tflite_fp32", 1)]["reason"]
    static = rows[("tflite_fp16", 2)]
    assert static["status"] == "skipped" and "batch dim is static" in static["reason"]
    assert rows[("tflite_fp16", 1)]["status"] == "ok"
    assert rows[("onnx", 1)]["status"] == "ok" and rows[("onnx", 2)]["status"] == "ok"
    assert "deploytool: error: tflite_fp32 (threads=1, batch=1): failed to load in litert" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_runtime_is_skipped_with_hint(zoo_bundles, tmp_path):
    bundle = tmp_path / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "blockimports"), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_BLOCK_IMPORTS"] = "onnxruntime"
    cmd = [sys.executable, "-m", "deploytool", "bench", str(bundle), "-f", "onnx", "--no-source", *FAST]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    assert "SKIPPED" in proc.stdout and "pip install" in flat(proc.stdout)
    assert subprocess.run(cmd + ["--strict"], env=env, capture_output=True, text=True).returncode == errors.SKIPPED


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "values must be integers >= 1"),
    (["--threads", "two"], "expected comma-separated integers"),
    (["--batch", "1,-8"], "values must be integers >= 1"),
    (["--threshold", "0.9"], "must be > 1.0"),
])
def test_invalid_settings_are_usage_errors(zoo_bundles, run_cli, args, message):
    proc = run_cli("bench", zoo_bundles["digits_cnn"][0], *args)
    assert proc.returncode == errors.USAGE
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_compare_flags_a_real_regression(zoo_bundles, run_cli, tmp_path):
    # mobilenet_v2 at 224x224 is far slower than digits_cnn: measured interleaved, it must be flagged.
    proc = run_cli("bench", zoo_bundles["mobilenet_v2"][0], "--compare", zoo_bundles["digits_cnn"][0], "-f", "onnx",
                   "--runtime", "onnxruntime", "--no-source", "--rounds", "2", "--reports", tmp_path, *FAST)
    assert proc.returncode == errors.REGRESSION, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    (row,) = report["compare"]
    assert row["regression"] and row["ratio"] > 10
    assert "REGRESSION" in proc.stdout and "x the baseline's" in proc.stderr
    assert report["rows"][0]["rounds"] == 2


def test_compare_against_itself_passes(zoo_bundles, run_cli, tmp_path):
    bundle = zoo_bundles["digits_cnn"][0]
    proc = run_cli("bench", bundle, "--compare", bundle, "-f", "tflite_fp32", "--no-source", "--threshold", "2.0",
                   "--rounds", "2", "--reports", tmp_path, *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads((tmp_path / "bench.json").read_text())["compare"]
    assert 0.5 < row["ratio"] < 2.0 and not row["regression"]


def test_bench_stats_units():
    from deploytool.measuring import timing as bench

    s = bench.summarize([1_000_000] * 10 + [3_000_000] * 10, batch=2)
    assert s.min_ms == 1.0 and s.p50_ms == 2.0 and s.n == 20
    assert s.throughput_per_s == pytest.approx(2 * 1000 / 2.0)
    assert any("p90 needs >= 64" in w for w in s.warnings) and any("noisy" in w for w in s.warnings)
    steady = bench.summarize([1_000_000] * 700)
    assert steady.warnings == [] and steady.cv == 0.0
    m = bench.measure(lambda i: None, bench.Protocol(warmup_runs=3, warmup_time=0, min_runs=50, min_time=0))
    assert m["warmup_runs"] == 3 and len(m["samples_ns"]) == 50 and not m["capped"]
    capped = bench.measure(lambda i: None, bench.Protocol(warmup_runs=0, warmup_time=0, min_runs=5, min_time=0,
                                                          max_runs=5))
    assert len(capped["samples_ns"]) == 5


def test_bench_rows_carry_gflops_and_percent_of_the_probed_peak(digits_bench):
    bundle, proc = digits_bench
    report = json.loads((bundle / "reports/bench.json").read_text())
    peak = report["machine"]["gemm_peak"]
    assert peak["fp32_gflops_1_thread"] > 1 and peak["fp32_gflops_all_threads"] > 1
    assert peak["all_threads"] == os.cpu_count() and "numpy" in str(peak["by_library"]) and peak["library"]
    flops = manifest_of(bundle)["flops"]["per_sample"]
    assert report["flops_per_sample"] == flops > 0
    for r in report["rows"]:
        assert r["gflops_per_s"] == pytest.approx(flops * r["batch"] / (r["p50_ms"] / 1e3) / 1e9)
        if FORMATS.get(r["format"]) is not None and FORMATS[r["format"]].precision.startswith("int8"):
            assert "pct_of_peak" not in r and "int8" in r["peak_note"]
        else:
            # measured at every core: that figure; fewer threads: scaled from one thread, capped by it
            one, every = peak["fp32_gflops_1_thread"], peak["fp32_gflops_all_threads"]
            # (one thread: its own peak, even where a loaded machine measured every core's below it)
            want = one if r["threads"] <= 1 else every if r["threads"] >= peak["all_threads"] else \
                min(every, one * r["threads"])
            assert r["peak_gflops"] == pytest.approx(want)
            assert r["pct_of_peak"] == pytest.approx(100 * r["gflops_per_s"] / r["peak_gflops"])
    header = next(ln for ln in proc.stdout.splitlines() if ln.startswith("format "))
    assert "peak fp32 GEMM:" in proc.stdout and "GFLOP/s" in header.split()
    # the TorchScript rows were loaded as the manifest says (optimized or not), and say so
    wanted = manifest_of(bundle)["artifacts"]["torchscript"]["exporter"]["options"]["load_settings"]
    ts = [r for r in report["rows"] if r["format"] == "torchscript"]
    assert ts and all(r["settings"]["optimize_for_inference"] is wanted["optimize_for_inference"] for r in ts)


@pytest.mark.parametrize("fields, message", [
    ({"threads": [0]}, "values must be integers >= 1"),
    ({"batches": []}, "values must be integers >= 1"),
    ({"threshold": 1.0}, "must be > 1.0"),
    ({"rounds": 0}, "--rounds 0: must be >= 1"),
    ({"timeout": 0}, "--timeout must be > 0"),
    ({"runtimes": ["nosuch"]}, "--runtime nosuch: no such runtime"),
])
def test_bench_options_are_checked_in_one_place_before_the_bundle_is_opened(fields, message, tmp_path):
    from deploytool.commands.bench import BenchOptions, run
    from deploytool.core.errors import UsageError
    from deploytool.measuring.timing import Protocol

    with pytest.raises(UsageError, match=message):
        BenchOptions(**fields).validate()
    with pytest.raises(UsageError, match="must be >= 0|hard cap"):
        BenchOptions(protocol=Protocol(min_time=5, max_time=1)).validate()
    with pytest.raises(UsageError, match=message):  # keywords build the options; the bundle is never read
        run(tmp_path / "no-such-bundle", **fields)
    with pytest.raises(UsageError, match=message):  # keywords override a given options object
        run(tmp_path / "no-such-bundle", BenchOptions(), **fields)
    assert BenchOptions(protocol=None).protocol == Protocol()  # None, as run(protocol=None) always took: the default
