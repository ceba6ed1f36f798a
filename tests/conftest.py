"""Shared fixtures: every reference-zoo model is exported once per test session, through the
real CLI in a subprocess, with a network audit hook recording any connection attempt."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TEST_MODELS = HERE / "models"
NETAUDIT = HERE / "netaudit"


@pytest.fixture(scope="session")
def netaudit_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("netaudit") / "attempts.log"


@pytest.fixture(scope="session")
def cli_env(netaudit_log) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETAUDIT), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_NETAUDIT_LOG"] = str(netaudit_log)
    return env


@pytest.fixture(scope="session")
def run_cli(cli_env):
    def run(*args, cwd=None, timeout=900) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "deploytool", *map(str, args)], capture_output=True, text=True,
                              env=cli_env, cwd=cwd, timeout=timeout)
    return run


@pytest.fixture(scope="session")
def zoo_bundles(tmp_path_factory, run_cli) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """name -> (bundle dir, CLI result), for every reference-zoo model (exported once)."""
    from deploytool.sources.zoo import zoo_names

    out = tmp_path_factory.mktemp("bundles")
    results = {}
    for name in zoo_names():
        proc = run_cli("export", "--model", name, "--out", out)
        results[name] = (out / name, proc)
    return results


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())
