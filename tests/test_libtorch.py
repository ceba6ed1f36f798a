"""The ``libtorch`` runtime: the TorchScript artifact run from C++ by a runner compiled against the torch wheel.

Everything here runs for real: the runner is compiled once per module (into a cache of its own), the digits_cnn
bundle is exported once with ``-f torchscript``, and validate/bench run it through the CLI.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import manifest_of, result_of, wait_for
from faults import rehash

from deploytool.runtimes import _libtorch_build

FAST = ("--min-runs", "30", "--min-time", "0.3", "--warmup-time", "0.1", "--no-peak")


def _cli(env: dict, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploytool", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def lt_env(cli_env, tmp_path_factory) -> dict:
    """The CLI's environment with a runner cache of this module's own: the first use compiles it."""
    return {**cli_env, _libtorch_build.CACHE_ENV: str(tmp_path_factory.mktemp("libtorch_cache"))}


@pytest.fixture(scope="module")
def lt_bundle(lt_env, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """digits_cnn exported as TorchScript only; its export check builds the runner (once for the module)."""
    out = tmp_path_factory.mktemp("libtorch_bundle")
    return out / "digits_cnn", _cli(lt_env, "export", "--model", "digits_cnn", "-f", "torchscript", "--out", out)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    shutil.copytree(bundle, tmp_path / bundle.name)
    return tmp_path / bundle.name


def scale_torchscript_weight(pt: Path, factor: float = 1.5) -> None:
    """Scale the largest frozen constant of a TorchScript archive in place (its entries are stored, not
    compressed), the zip's CRCs re-recorded: a weight changed as a tool editing the file would change it."""
    with zipfile.ZipFile(pt) as z:
        info = max((i for i in z.infolist() if "/constants/" in i.filename), key=lambda i: i.file_size)
        central = z.start_dir
    raw = bytearray(pt.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    data = (np.frombuffer(bytes(raw[start:start + info.file_size]), dtype="<f4") * factor).astype("<f4").tobytes()
    raw[start:start + info.file_size] = data
    crc = struct.pack("<I", zlib.crc32(data))
    raw[info.header_offset + 14:info.header_offset + 18] = crc
    entry = raw.index(b"PK\x01\x02", central)
    while raw[entry + 46:entry + 46 + len(info.filename)] != info.filename.encode():
        entry = raw.index(b"PK\x01\x02", entry + 4)
    raw[entry + 16:entry + 20] = crc
    pt.write_bytes(bytes(raw))
    with zipfile.ZipFile(pt) as z:
        assert z.testzip() is None  # a well-formed archive: only the numbers changed


def _runners(cache: str) -> list[int]:
    """Pids of live libtorch runners built in ``cache``."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and os.readlink(p / "exe").startswith(cache):
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


def test_a_failed_build_is_one_line_naming_the_first_error_and_the_log(tmp_path, monkeypatch):
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    bad = tmp_path / "broken.cpp"
    bad.write_text("int main( {\n")
    monkeypatch.setattr(_libtorch_build, "SOURCE", bad)
    folder = tmp_path / "build"
    folder.mkdir()
    build = _libtorch_build.Build(str(folder / "runner"), "k", "g++", "t", 0.0)
    with pytest.raises(_libtorch_build.BuildError) as e:
        _libtorch_build._compile(folder, build, ["-std=c++20"], 120)
    message = str(e.value)
    assert "\n" not in message and "failed to compile" in message and "error:" in message
    assert str(folder / "build.log") in message
    assert sorted(p.name for p in folder.iterdir()) == ["build.log"]  # no runner, no half-written temporary


def test_building_without_gxx_is_one_line_naming_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _libtorch_build.main() == 6
    err = capsys.readouterr().err
    assert err == "deploytool: error: no g++ on PATH to compile the libtorch runner: apt-get install g++\n"


@pytest.mark.slow
def test_validate_on_libtorch_passes_bit_identical_and_records_the_build(lt_bundle, lt_env, tmp_path):
    bundle, export = lt_bundle
    assert export.returncode == 0, export.stdout + export.stderr
    bundle = _copy(bundle, tmp_path)
    proc = _cli(lt_env, "validate", bundle, "-f", "torchscript", "--runtime", "libtorch")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((bundle / "reports/validation.json").read_text())
    res = result_of(report, "torchscript", "libtorch")
    assert res["status"] == "pass" and res["max_abs"] == 0.0  # bit-identical to Python TorchScript
    (built,) = Path(lt_env[_libtorch_build.CACHE_ENV]).glob("libtorch/*/build.json")
    record = json.loads(built.read_text())
    assert record["torch"] == manifest_of(bundle)["versions"]["torch"] and record["compiler"].startswith("g++ ")
    assert res["runtime_version"] == f"{record['torch']} (runner {record['key']}, {record['compiler']})"
    assert res["settings"]["runner"] == record["key"] and res["settings"]["runner_build_s"] == 0.0  # cached
    load_settings = manifest_of(bundle)["artifacts"]["torchscript"]["exporter"]["options"]["load_settings"]
    assert res["settings"]["optimize_for_inference"] is bool(load_settings.get("optimize_for_inference"))
    assert not _runners(lt_env[_libtorch_build.CACHE_ENV])


@pytest.mark.slow
def test_a_planted_weight_change_fails_on_libtorch(lt_bundle, lt_env, tmp_path):
    bundle = _copy(lt_bundle[0], tmp_path)
    scale_torchscript_weight(bundle / manifest_of(bundle)["artifacts"]["torchscript"]["path"])
    rehash(bundle)
    proc = _cli(lt_env, "validate", bundle, "-f", "torchscript", "--runtime", "libtorch")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    res = result_of(json.loads((bundle / "reports/validation.json").read_text()), "torchscript", "libtorch")
    assert res["status"] == "fail" and res["max_abs"] > 0.1


@pytest.mark.slow
def test_bench_times_libtorch_beside_python_torchscript(lt_bundle, lt_env, tmp_path):
    bundle = _copy(lt_bundle[0], tmp_path)
    proc = _cli(lt_env, "bench", bundle, "-f", "torchscript", "--threads", "1", "--no-source", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["runtime"]: r for r in json.loads((bundle / "reports/bench.json").read_text())["rows"]}
    assert set(rows) == {"torchscript", "libtorch"}
    lt = rows["libtorch"]
    assert lt["status"] == "ok" and lt["n"] == len(lt["samples_ns"]) >= 30 and lt["warmup_runs"] >= 10
    assert 0 < lt["min_ms"] <= lt["p50_ms"] <= lt["p99_ms"] and lt["settings"]["threads"] == 1
    print(f"p50 torchscript {rows['torchscript']['p50_ms']:.4f} ms, libtorch {lt['p50_ms']:.4f} ms, "
          f"ratio {lt['p50_ms'] / rows['torchscript']['p50_ms']:.2f}")


def _path_without_gxx(tmp_path: Path) -> str:
    """A PATH holding everything of this one but the C++ compilers."""
    shadow = tmp_path / "bin"
    shadow.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for exe in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if not exe.name.startswith(("g++", "c++", "x86_64-linux-gnu-g++")) and not (shadow / exe.name).exists():
                (shadow / exe.name).symlink_to(exe)
    return str(shadow)


@pytest.mark.slow
def test_without_gxx_the_target_is_skipped_and_doctor_says_what_to_install(lt_bundle, lt_env, tmp_path):
    bundle = _copy(lt_bundle[0], tmp_path)
    env = {**lt_env, "PATH": _path_without_gxx(tmp_path)}
    proc = _cli(env, "validate", bundle, "-f", "torchscript", "--runtime", "libtorch")
    res = result_of(json.loads((bundle / "reports/validation.json").read_text()), "torchscript", "libtorch")
    assert res["status"] == "skipped" and "apt-get install g++" in res["reason"], res
    assert "apt-get install g++" in proc.stdout + proc.stderr
    assert _cli(env, "validate", bundle, "-f", "torchscript", "--runtime", "libtorch", "--strict").returncode == 7
    doctor = json.loads(_cli(env, "doctor", "--json").stdout)
    (gxx,) = [c for c in doctor["components"] if c["runtime"] == "libtorch" and c["name"] == "g++"]
    assert gxx["installed"] is False and gxx["extra"] == "apt-get install g++"


def _bench_in_background(lt_env, bundle: Path) -> subprocess.Popen:
    """A long libtorch bench, started; returns once its runner is running."""
    proc = subprocess.Popen([sys.executable, "-m", "deploytool", "bench", str(bundle), "-f", "torchscript",
                             "--runtime", "libtorch", "--threads", "1", "--no-source", "--no-peak",
                             "--min-time", "120", "--max-time", "120"], env=lt_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_for(lambda: _runners(lt_env[_libtorch_build.CACHE_ENV]) or proc.poll() is not None):
        proc.kill()
    assert proc.poll() is None, "the bench ended before its runner started"
    return proc


@pytest.mark.slow
def test_the_runner_ends_when_its_worker_is_killed_and_when_the_cli_is_terminated(lt_bundle, lt_env, tmp_path):
    cache = lt_env[_libtorch_build.CACHE_ENV]
    bundle = _copy(lt_bundle[0], tmp_path)
    proc = _bench_in_background(lt_env, bundle)
    try:
        (runner,) = _runners(cache)
        worker = int(Path(f"/proc/{runner}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(worker, signal.SIGKILL)
        assert wait_for(lambda: not _runners(cache), 10), "the runner outlived its worker"
    finally:
        proc.kill()
        proc.wait()
    proc = _bench_in_background(lt_env, bundle)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        assert wait_for(lambda: not _runners(cache), 10), "the runner outlived the CLI"
    finally:
        proc.kill()
