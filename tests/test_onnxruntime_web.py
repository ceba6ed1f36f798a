"""The ``onnxruntime_web`` runtime: the ONNX artifacts on onnxruntime-web (wasm) in real headless Chromium.

Everything runs for real: the npm packages are installed once per session by the set-up step (``npm ci`` from the
lockfile) when absent, digits_cnn is exported once with ``-f onnx,onnx_int8``, and validate/bench run it through the
CLI. Chromium processes are found by the scratch folder (``$TMPDIR``) their profile is in.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import result_of, wait_for
from faults import _scale_onnx_weight

from deploytool import envs
from deploytool.browser import driver, npm
from deploytool.runtimes import RUNTIMES

FAST = ("--min-runs", "30", "--min-time", "0.3", "--warmup-time", "0.1", "--no-peak")
WEB = RUNTIMES["onnxruntime_web"]
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium: apt-get install chromium")


def _cli(env: dict, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploytool", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="session")
def npm_installed() -> None:
    """The set-up step, once a session, where the packages are not installed yet (CI's README command did it)."""
    from deploytool.commands import setup

    setup.run(skip=(*envs.ENVS, "aarch64"))  # the npm packages only


@pytest.fixture(scope="module")
def web_env(cli_env, npm_installed, tmp_path_factory) -> dict:
    """The CLI's environment with a $TMPDIR of its own: every Chromium it starts has its profile in there."""
    return {**cli_env, "TMPDIR": str(tmp_path_factory.mktemp("web_tmp"))}


@pytest.fixture(scope="module")
def web_bundle(web_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("web_bundle")
    proc = _cli(web_env, "export", "--model", "digits_cnn", "-f", "onnx,onnx_int8", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "digits_cnn"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    shutil.copytree(bundle, tmp_path / bundle.name)
    return tmp_path / bundle.name


def _stat(pid: str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...


def _chromiums(tmpdir: str) -> dict[int, int]:
    """Live (not zombie) processes of every Chromium whose profile is under ``tmpdir``: pid -> parent pid,
    found by process group (renderers do not name the profile)."""
    groups, live = set(), {}
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit():
                state, ppid, pgrp = _stat(p.name)[:3]
                live[int(p.name)] = (state, int(ppid), int(pgrp))
                # Chromium's own command line names its profile (the CLI's names the bundle under tmpdir too:
                # its group is the test runner's, which must never be taken for Chromium's)
                if f"--user-data-dir={tmpdir}" in (p / "cmdline").read_text(errors="replace").replace("\0", " "):
                    groups.add(int(pgrp))
        except OSError:
            continue
    return {pid: ppid for pid, (state, ppid, pgrp) in live.items() if pgrp in groups and state != "Z"}


def test_without_the_npm_packages_the_runtime_says_to_run_setup(tmp_path, monkeypatch):
    monkeypatch.setenv(npm.CACHE_ENV, str(tmp_path))
    (missing,) = [m for m in WEB.missing() if m.name.endswith("(npm)")]
    assert missing.name == f"onnxruntime-web {npm.pins()['onnxruntime-web']} (npm)" and missing.hint == npm.HINT
    assert "run `deploytool setup`" in WEB.unavailable()


def test_without_chromium_the_runtime_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "no program chromium, runs the page: apt-get install chromium" in WEB.unavailable()


def test_the_page_server_serves_only_its_routes(tmp_path):
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "ort.mjs").write_text("x")
    (tmp_path / "secret").write_text("s")
    routes = {"/ort/": tmp_path / "dist", "/artifact": tmp_path / "secret"}
    assert driver.resolve(routes, "/ort/ort.mjs") == (tmp_path / "dist" / "ort.mjs").resolve()
    assert driver.resolve(routes, "/artifact") == tmp_path / "secret"
    for outside in ("/ort/../secret", "/ort/%2e%2e/secret", "/ort/", "/secret", "/ort/nothing.mjs"):
        assert driver.resolve(routes, outside) is None, outside


@needs_chromium
def test_the_page_is_isolated_and_reaches_nothing_beyond_127_0_0_1(tmp_path):
    js = tmp_path / "probe.mjs"
    js.write_text("export async function probe(url) { try { await fetch(url, {mode: 'no-cors'}); return 'reached'; }"
                  " catch (e) { return 'blocked'; } }\n"
                  "export async function isolated() { return crossOriginIsolated; }\n")
    with driver.Page(tmp_path, js, {}) as page:
        assert page.call("isolated") is True  # COOP/COEP: performance.now() at µs resolution, wasm threads allowed
        for url in ("http://example.com/", "https://93.184.215.14/", "http://10.0.0.1/", "http://[2606:2800::1]/"):
            assert page.call("probe", url) == "blocked", url
        assert page.call("probe", "/index.html") == "reached"
        assert _chromiums(str(tmp_path))
    assert not _chromiums(str(tmp_path))  # close() ended every process of it


@pytest.mark.slow
def test_validate_on_onnxruntime_web_passes_both_onnx_artifacts(web_bundle, web_env, tmp_path):
    bundle = _copy(web_bundle, tmp_path)
    proc = _cli(web_env, "validate", bundle, "-f", "onnx,onnx_int8", "--runtime", "onnxruntime_web")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((bundle / "reports/validation.json").read_text())
    for fmt in ("onnx", "onnx_int8"):
        res = result_of(report, fmt, "onnxruntime_web")
        assert res["status"] == "pass", res
        assert res["runtime_version"].startswith(f"{npm.pins()['onnxruntime-web']} (Chromium ")
        assert res["settings"]["cross_origin_isolated"] is True
    assert result_of(report, "onnx", "onnxruntime_web")["max_abs"] < 1e-4
    assert not _chromiums(web_env["TMPDIR"])


@pytest.mark.slow
def test_a_planted_weight_change_fails_on_onnxruntime_web(web_bundle, web_env, tmp_path):
    bundle = _copy(web_bundle, tmp_path)
    _scale_onnx_weight(bundle, tmp_path)
    proc = _cli(web_env, "validate", bundle, "-f", "onnx", "--runtime", "onnxruntime_web")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    res = result_of(json.loads((bundle / "reports/validation.json").read_text()), "onnx", "onnxruntime_web")
    assert res["status"] == "fail" and res["max_abs"] > 0.1


def assert_timed_in_the_page(row: dict) -> None:
    """A browser runtime's bench row (shared with the other browser runtimes' tests): timed by the page itself, at
    bench's protocol, with µs-resolution samples."""
    assert row["status"] == "ok" and row["n"] == len(row["samples_ns"]) >= 30 and row["warmup_runs"] >= 10
    assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p99_ms"] and row["settings"]["threads"] == 1
    assert len(set(row["samples_ns"])) > 1  # performance.now() is fine-grained in an isolated page


@pytest.mark.slow
def test_bench_times_onnxruntime_web_in_the_page(web_bundle, web_env, tmp_path):
    bundle = _copy(web_bundle, tmp_path)
    proc = _cli(web_env, "bench", bundle, "-f", "onnx", "--threads", "1", "--no-source", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["runtime"]: r for r in json.loads((bundle / "reports/bench.json").read_text())["rows"]}
    web = rows["onnxruntime_web"]
    assert_timed_in_the_page(web)
    print(f"p50 onnxruntime {rows['onnxruntime']['p50_ms']:.4f} ms, onnxruntime_web {web['p50_ms']:.4f} ms")
    assert not _chromiums(web_env["TMPDIR"])


@pytest.mark.slow
def test_without_chromium_or_npm_packages_the_target_is_skipped_naming_what_to_install(web_bundle, web_env, tmp_path):
    bundle = _copy(web_bundle, tmp_path)
    shadow = tmp_path / "bin"
    shadow.mkdir()
    (shadow / "python").symlink_to(sys.executable)
    cases = {"apt-get install chromium": {**web_env, "PATH": str(shadow)},
             "run `deploytool setup`": {**web_env, npm.CACHE_ENV: str(tmp_path / "empty_cache")}}
    for hint, env in cases.items():
        proc = _cli(env, "validate", bundle, "-f", "onnx", "--runtime", "onnxruntime_web")
        res = result_of(json.loads((bundle / "reports/validation.json").read_text()), "onnx", "onnxruntime_web")
        assert res["status"] == "skipped" and hint in res["reason"], res
        assert hint in proc.stdout + proc.stderr
        assert _cli(env, "validate", bundle, "-f", "onnx", "--runtime", "onnxruntime_web", "--strict").returncode == 7
    doctor = json.loads(_cli(cases["apt-get install chromium"], "doctor", "--json").stdout)
    (chromium,) = [c for c in doctor["components"] if c["runtime"] == "onnxruntime_web" and c["name"] == "chromium"]
    assert chromium["installed"] is False and chromium["extra"] == "apt-get install chromium"


def _bench_in_background(env: dict, bundle: Path, fmt: str, runtime: str) -> subprocess.Popen:
    """A long bench of ``fmt`` on the browser ``runtime``, started; returns once its Chromium is running."""
    proc = subprocess.Popen([sys.executable, "-m", "deploytool", "bench", str(bundle), "-f", fmt, "--runtime", runtime,
                             "--threads", "1", "--no-source", "--no-peak", "--min-time", "120", "--max-time", "120"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for(lambda: _chromiums(env["TMPDIR"]) or proc.poll() is not None):
        proc.kill()
    assert proc.poll() is None, "the bench ended before its Chromium started"
    return proc


def assert_chromium_ends_with_its_worker_and_cli(env: dict, bundle: Path, tmp_path: Path, fmt: str,
                                                 runtime: str) -> None:
    """Shared by the browser runtimes' tests: a worker SIGKILLed mid-bench takes its Chromium with it, and a CLI
    given SIGTERM exits 143 leaving no Chromium."""
    env = {**env, "TMPDIR": str(tmp_path)}
    proc = _bench_in_background(env, bundle, fmt, runtime)
    try:
        browsers = _chromiums(str(tmp_path))
        workers = {ppid for pid, ppid in browsers.items() if int(_stat(str(pid))[2]) == pid}  # the leaders' parents
        assert workers and os.getpid() not in workers
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        assert wait_for(lambda: not _chromiums(str(tmp_path)), 10), "Chromium outlived its worker"
    finally:
        proc.kill()
        proc.wait()
    proc = _bench_in_background(env, bundle, fmt, runtime)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        assert wait_for(lambda: not _chromiums(str(tmp_path)), 10), "Chromium outlived the CLI"
    finally:
        proc.kill()


@pytest.mark.slow
def test_chromium_ends_when_its_worker_is_killed_and_when_the_cli_is_terminated(web_bundle, web_env, tmp_path):
    assert_chromium_ends_with_its_worker_and_cli(web_env, _copy(web_bundle, tmp_path), tmp_path, "onnx",
                                                 "onnxruntime_web")
