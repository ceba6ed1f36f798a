"""An export killed at any moment leaves the previous bundle or none, never half of one."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from deploytool.store import bundle as B
from deploytool.store import manifest as M


def _start_export(out, env):
    return subprocess.Popen([sys.executable, "-m", "deploytool", "export", "--model", "digits_cnn", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def _kill_when(proc, out, marker: str, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(p.name.startswith(".digits_cnn.partial-") and (p / marker).exists() for p in out.iterdir()):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail("export finished before it could be killed")
        time.sleep(0.05)
    pytest.fail(f"{marker} never appeared")


# Markers: the torch worker has loaded the source; the TensorFlow stage has been handed its first job;
# the checks are running (the onnx artifact's outputs exist).
@pytest.mark.parametrize("marker", [".work/export-torch.1.reply.json", ".work/export-tensorflow.1.job.json",
                                    ".work/onnx@onnxruntime.main.npz"])
def test_killed_export_keeps_previous_bundle(tmp_path, zoo_bundles, cli_env, marker):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(zoo_bundles["digits_cnn"][0], out / "digits_cnn")
    before = (out / "digits_cnn" / "manifest.json").read_bytes()
    proc = _start_export(out, cli_env)
    _kill_when(proc, out, marker)
    assert (out / "digits_cnn" / "manifest.json").read_bytes() == before
    visible = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert visible == ["digits_cnn"]
    for rec in M.read(out / "digits_cnn").artifacts.values():
        B.verify_files(out / "digits_cnn", rec.files, rec.format)


def test_killed_first_export_leaves_nothing_and_next_run_cleans_up(tmp_path, cli_env):
    out = tmp_path / "out"
    out.mkdir()
    proc = _start_export(out, cli_env)
    _kill_when(proc, out, "logs/export-torch.log")
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
    stale = [p for p in out.iterdir() if p.name.startswith(".digits_cnn.")]
    assert stale  # the killed run's staging directory, hidden
    B.staging_dir(out, "digits_cnn")  # what the next export does first
    assert not any(p.exists() for p in stale)


def test_publish_replaces_whole_directory(tmp_path):
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    staging = B.staging_dir(tmp_path, "m")
    (staging / "new.txt").write_text("new")
    B.publish(staging, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
