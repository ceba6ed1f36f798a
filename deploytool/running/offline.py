"""No network at run time: a process-wide guard installed first thing in every worker.

Converters phone home (onnx2tf 1.28 fetches calibration images from GitHub when every input is
4-D with 3 channels; see formats/savedmodel.py). deploytool promises air-gapped operation, so any
attempt to resolve a host or open a non-local socket raises NetworkBlocked naming the target.
An audit hook is used because it sees every socket call, including ones made through C
extensions' Python wrappers and libraries that captured ``socket.create_connection`` early.
"""
from __future__ import annotations

import socket
import sys

from deploytool.core.errors import NetworkBlocked

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "", None}
_installed = False


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    if isinstance(address, tuple) and address:
        host = address[0]
        return host in _LOCAL_HOSTS or (isinstance(host, str) and host.startswith("127."))
    return False


def _hook(event: str, args: tuple) -> None:
    if event == "socket.connect" or event == "socket.sendto":
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) == socket.AF_UNIX or _is_local(address):
            return
        raise NetworkBlocked(f"network access blocked: connect to {address!r} (deploytool runs offline)")
    if event == "socket.getaddrinfo" or event == "socket.gethostbyname":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        if host in _LOCAL_HOSTS or (isinstance(host, str) and host.startswith("127.")):
            return
        raise NetworkBlocked(f"network access blocked: lookup of {host!r} (deploytool runs offline)")


# Telemetry packages that phone home and write outside the bundle, kept from loading in workers. OpenVINO
# 2026.4's ``import openvino`` runs openvino.tools.ovc's telemetry (openvino_telemetry): a GA4 event and
# ~/intel/stats + ~/intel/openvino_ga_cid written in the user's home. With the package unimportable, ovc takes
# its own fallback (openvino/tools/ovc/telemetry_utils.py: ``except ImportError: telemetry_stub``).
TELEMETRY_MODULES = ("openvino_telemetry",)


def forbid_network() -> None:
    """Install the guard for the rest of this process (audit hooks cannot be removed), and keep the
    telemetry modules from loading."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        for name in TELEMETRY_MODULES:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: "import fails" (importlib docs)
        _installed = True
