"""Test helper put on PYTHONPATH of every process a test starts: records any attempt to reach
the network to $DEPLOYTOOL_NETAUDIT_LOG. Installed at interpreter start-up, so it sees attempts
before deploytool's own guard (which then blocks them)."""
import os
import socket
import sys

_LOG = os.environ.get("DEPLOYTOOL_NETAUDIT_LOG")


def _local(host):
    return host in (None, "", "localhost", "::1") or (isinstance(host, str) and host.startswith("127."))


def _hook(event, args):
    if event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if _local(host):
            return
        what = f"getaddrinfo {host!r}"
    elif event == "socket.connect":
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) == socket.AF_UNIX or not isinstance(address, tuple) or _local(address[0]):
            return
        what = f"connect {address!r}"
    else:
        return
    with open(_LOG, "a") as f:
        f.write(f"{os.getpid()} {' '.join(sys.argv)[:200]}: {what}\n")


if _LOG:
    sys.addaudithook(_hook)
