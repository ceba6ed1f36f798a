"""A validation touches nothing outside its bundle and its scratch directory (issue 21, item 8).

The bundle's surroundings are watched with inotify while ``validate`` runs, on a good bundle and on one
only a runtime can refuse (its failing hop is localised too, by the tensor exposers): the folder holding
the bundle, a directory beside the bundle, and the cache directory (``$XDG_CACHE_HOME``, beside the
bundle's folder as on a CI runner whose caches live in its workspace). onnxruntime's telemetry kept a
SQLite store there (``Microsoft/DeveloperTools/.onnxruntime``, its directory opened on every run) and a
session file in ``$TMPDIR``: workers run with it switched off (``running/spawn.WORKER_ENV``).

The SavedModel is left out: a TensorFlow worker's first run on a machine writes Keras' and matplotlib's
own configuration and font cache into the user's home and cache directories (once, not per run).
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from faults import FAULTS
from inotify import Watch

FORMATS = "onnx,onnx_int8,openvino,tflite_fp32,tflite_int8,torchscript"  # onnxruntime, OpenVINO, LiteRT, torch


@pytest.mark.parametrize("fault", [None, "onnx-weight-x1.5"])
def test_validate_touches_nothing_beside_its_bundle(fault, zoo_bundles, cli_env, tmp_path):
    workspace = tmp_path / "workspace"
    bundle = workspace / "bundles" / "digits_cnn"
    shutil.copytree(zoo_bundles["digits_cnn"][0], bundle)
    (workspace / "bundles" / "beside").mkdir()
    (workspace / "bundles" / "beside" / "file.txt").write_text("not the bundle's")
    (workspace / "cache").mkdir()
    expected = 0
    if fault is not None:
        found = next(f for f in FAULTS if f.name == fault)
        found.edit(bundle, tmp_path)
        expected = found.expect
    env = {**cli_env, "XDG_CACHE_HOME": str(workspace / "cache")}
    with Watch(workspace) as watch:  # the working directory (tmp_path) is not watched: `python -m` lists it
        proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "-f", FORMATS],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == expected, proc.stdout + proc.stderr
    outside = sorted({(path, what) for path, what in watch.events
                      if path != str(bundle) and not path.startswith(f"{bundle}/")})
    assert outside == [], f"validate touched the bundle's surroundings: {outside}"
    assert not any((workspace / "cache").iterdir())
