"""Lint and type checks, configured in pyproject.toml: ruff on the code and tests, mypy on deploytool/."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # mypy takes tens of seconds cold


@pytest.mark.parametrize("tool, args", [
    ("ruff", ["check", "deploytool", "tests", "scripts", "models"]),
    ("mypy", []),  # files and settings from [tool.mypy]
])
def test_passes(tool, args):
    proc = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
