"""Fault injection: every class of corrupt or hostile bundle (tests/faults.py) gets its documented
exit code and one error line, no traceback, no hang, and nothing outside the bundle is read or
written (a canary directory beside it is watched with inotify). Structural faults are refused by
the bundle reader before any runtime starts, so they run in process; the few that only a runtime
can catch run through the CLI."""
from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import note_of
from faults import FAULTS, Fault
from inotify import Watch

from deploytool.cli import main

STRUCTURAL = [f for f in FAULTS if not f.needs_runtime]
RUNTIME = [f for f in FAULTS if f.needs_runtime]
HANG_LIMIT_S = 60


def _prepare(fault: Fault, zoo_bundles, tmp_path: Path) -> tuple[Path, Path]:
    bundle = tmp_path / "bundles" / fault.base
    shutil.copytree(zoo_bundles[fault.base][0], bundle, symlinks=True)
    canary = tmp_path / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "f.bin").write_bytes(b"canary")
    (canary / "sub" / "g.txt").write_text("canary")
    fault.edit(bundle, canary)
    return bundle, canary


def _alarm(signum, frame):
    raise TimeoutError(f"hung for {HANG_LIMIT_S} s")


def _one_error_line(output: str) -> str:
    errors = [ln for ln in output.splitlines() if ln.startswith("deploytool: error:")]
    assert len(errors) == 1, output
    assert "Traceback" not in output, output
    return errors[0]


@pytest.mark.parametrize("fault", STRUCTURAL, ids=[f.name for f in STRUCTURAL])
def test_structural_fault_is_refused(fault, zoo_bundles, tmp_path):
    bundle, canary = _prepare(fault, zoo_bundles, tmp_path)
    commands = [["validate", str(bundle), *fault.args]]
    if fault.expect == 8:
        commands.append(["bench", str(bundle), "--min-time", "0", "--min-runs", "1"])
    for command in commands:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HANG_LIMIT_S)
        try:
            with Watch(canary) as watch:
                result = CliRunner().invoke(main, command)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        assert result.exit_code == fault.expect, (command[0], result.output, result.exception)
        line = _one_error_line(result.output)
        assert fault.message in line, line
        assert watch.events == [], f"{command[0]} touched the canary: {watch.events}"
    assert (canary / "f.bin").read_bytes() == b"canary" and (canary / "sub" / "g.txt").exists()


def _artifact_error_lines(output: str) -> list[str]:
    """The error lines of one faulty artifact: one per target that caught it (an artifact fault is seen on
    every runtime that runs it: onnx on onnxruntime and on OpenVINO), all naming the same artifact."""
    errors = [ln for ln in output.splitlines() if ln.startswith("deploytool: error:")]
    assert errors and "Traceback" not in output, output
    artifacts = {ln.split()[2].rstrip(":").split("/")[-1].split("@")[0] for ln in errors}
    assert len(artifacts) == 1, output
    return errors


@pytest.mark.parametrize("fault", RUNTIME, ids=[f.name for f in RUNTIME])
def test_fault_only_a_runtime_can_catch(fault, zoo_bundles, run_cli, tmp_path):
    bundle, canary = _prepare(fault, zoo_bundles, tmp_path)
    with Watch(canary) as watch:
        proc = run_cli("validate", bundle, *fault.args, timeout=300)
    assert proc.returncode == fault.expect, proc.stdout + proc.stderr
    assert all(fault.message in line for line in _artifact_error_lines(proc.stderr)), proc.stderr
    assert watch.events == [], watch.events


def test_a_stored_override_is_shown_and_tier_defaults_ignores_it(zoo_bundles, run_cli, tmp_path):
    fault = next(f for f in FAULTS if f.name == "stored-override-hides-it")
    bundle, _ = _prepare(fault, zoo_bundles, tmp_path)
    proc = run_cli("validate", bundle, "-f", "onnx")
    # the bundle's own override would admit it, but an override that loose admits an artifact returning zeros
    # too: the check proves nothing (VACUOUS, exit 5), and the note names the override
    assert proc.returncode == 5, proc.stderr
    assert "note: the bundle stores tolerance overrides from its export: onnx:* atol=100" in proc.stdout
    assert "VACUOUS" in next(ln for ln in proc.stdout.splitlines() if ln.startswith("onnx "))
    assert "tolerance override atol=100 (not the onnx tier's)" in note_of(proc.stdout, "onnx")
    assert run_cli("validate", bundle, "-f", "onnx", "--tier-defaults").returncode == 5
