"""No network at run time."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest


def test_no_export_attempted_a_connection(zoo_bundles, netaudit_log):
    # mobilenet_v2 has one 4-D 3-channel input: exactly the case where onnx2tf 1.28 downloads
    # calibration images. The audit hook (tests/netaudit) logs any attempt by any process.
    assert zoo_bundles["mobilenet_v2"][1].returncode == 0
    attempts = netaudit_log.read_text().splitlines() if netaudit_log.exists() else []
    # `deploytool doctor` probes the guard on purpose (doctor._GUARD_PROBE, a `python -c` process that
    # tries pypi.org and 192.0.2.1 and must be blocked); every other attempt is a leak.
    leaks = [a for a in attempts if not re.fullmatch(r"\d+ -c: getaddrinfo '(pypi\.org|192\.0\.2\.1)'", a)]
    assert leaks == [], "\n".join(leaks)


@pytest.mark.slow  # imports onnx2tf and TensorFlow in a subprocess
def test_guard_blocks_onnx2tfs_download(tmp_path):
    code = (
        "from deploytool.running.offline import forbid_network; forbid_network()\n"
        "from onnx2tf.utils.common_functions import download_test_image_data\n"
        "download_test_image_data()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "NetworkBlocked: network access blocked: lookup of 'github.com'" in proc.stderr


def test_guard_allows_loopback():
    code = (
        "from deploytool.running.offline import forbid_network; forbid_network()\n"
        "import socket\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n"
        "c = socket.create_connection(srv.getsockname(), timeout=5); c.close(); print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
