"""One page in headless Chromium, served from 127.0.0.1 and driven over the DevTools protocol.

A browser runtime gives the page's JavaScript (an ES module, served as ``/runtime.mjs``; ``page.html`` imports it
as ``window.dt``) and what the page may fetch (``routes``: a URL path -> a file, or a URL prefix ending in ``/`` ->
a folder); nothing else is served. The server (``http.server`` in a thread of the worker) listens on 127.0.0.1 on
an ephemeral port and sends the cross-origin isolation headers (COOP/COEP), so ``performance.now()`` has
microsecond resolution and WebAssembly threads are allowed. ``Page.call`` runs ``dt.NAME(...args)`` in the page
and returns its (awaited) JSON value.

Chromium runs headless with a throwaway profile in the caller's scratch folder, talks DevTools over a pipe
(``--remote-debugging-pipe``: file descriptors 3 and 4, no port), and reaches nothing but 127.0.0.1: host names
resolve to nothing (``--host-resolver-rules``) and every other address goes to a proxy on 127.0.0.1's discard
port that refuses it (``--proxy-server``; loopback bypasses a proxy). ``--no-sandbox`` is passed only when
running as root, where Chromium refuses to start with its sandbox.

Lifecycle: Chromium starts in a process group of its own (its renderers and helpers join it); a watcher
(``sh``, in a session of its own, so a signal for the worker's group does not take it first) kills that group
when its stdin closes: when ``close()`` is done with the page, or when the worker dies however it dies (the
kernel closes the worker's end). ``close()`` also kills and reaps the group itself.
"""
from __future__ import annotations

import json
import mimetypes
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PAGE = Path(__file__).with_name("page.html")
HARNESS = Path(__file__).with_name("harness.mjs")  # what every runtime's page shares
CHROMIUM = "chromium"
START_TIMEOUT_S = 60.0
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store"}
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html"}
# Only the loopback server: no name resolves, every other address goes to a proxy that refuses it.
NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-domain-reliability", "--no-pings", "--dns-prefetch-disable"]
FLAGS = ["--headless", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-gpu", "--mute-audio", "--disable-dev-shm-usage", *NO_NETWORK]


class BrowserError(RuntimeError):
    """Chromium or the page failed: one line (the page's exception, or Chromium's exit and its log)."""


def _routes_handler(routes: dict[str, Path], served: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            file = resolve(routes, path)
            served.append(f"{'200' if file else '404'} {path}")
            if file is None:
                self.send_error(404)
                return
            data = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
                             or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for name, value in ISOLATION.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    return Handler


def resolve(routes: dict[str, Path], path: str) -> Path | None:
    """The file a URL path names: an exact route, or a file inside a prefix route's folder (never outside it)."""
    if path in routes and not path.endswith("/"):
        return routes[path] if routes[path].is_file() else None
    for prefix, folder in routes.items():
        if prefix.endswith("/") and path.startswith(prefix):
            file = (folder / path[len(prefix):]).resolve()
            if file.is_relative_to(folder.resolve()) and file.is_file():
                return file
    return None


class Page:
    """``page_js`` in a fresh headless Chromium; ``call`` runs its exports. Close it (or use ``with``)."""

    def __init__(self, scratch: Path, page_js: Path, routes: dict[str, Path]) -> None:
        self.scratch = Path(scratch)
        self.served: list[str] = []  # "STATUS PATH" of every request, in order
        routes = {"/index.html": PAGE, "/harness.mjs": HARNESS, "/runtime.mjs": page_js, **routes}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _routes_handler(routes, self.served))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/index.html"
        self.proc: subprocess.Popen | None = None
        self.watcher: subprocess.Popen | None = None
        self.pid = 0
        self._buffer, self._next_id, self._session = b"", 0, ""
        try:
            self._start()
            self._open()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        exe = shutil.which(CHROMIUM)
        if exe is None:
            raise BrowserError(f"no {CHROMIUM} on PATH: apt-get install chromium")
        profile = self.scratch / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        to_chromium, self._send_fd = os.pipe()
        self._recv_fd, from_chromium = os.pipe()
        self.log = self.scratch / "chromium.log"
        log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        args = [exe, *FLAGS, f"--user-data-dir={profile}", *(["--no-sandbox"] if os.geteuid() == 0 else []),
                "about:blank"]
        # The watcher first (forking this process can take a while), then Chromium, then its group to the watcher:
        # it kills that group when its stdin closes, at close() or when this process dies however it dies.
        self.watcher = subprocess.Popen(["sh", "-c", 'read -r group; cat >/dev/null; kill -KILL -- "-$group"'],
                                        stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        # posix_spawn: only these descriptors reach Chromium (Python's own are not inheritable), at 3 and 4.
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, log_fd, 1),
                   (os.POSIX_SPAWN_DUP2, log_fd, 2), (os.POSIX_SPAWN_DUP2, to_chromium, 3),
                   (os.POSIX_SPAWN_DUP2, from_chromium, 4)]
        try:
            self.pid = os.posix_spawn(exe, args, self._environment(), file_actions=actions, setpgroup=0)
        finally:
            for fd in (to_chromium, from_chromium, log_fd):
                os.close(fd)
        if self.watcher.stdin is None:
            raise RuntimeError("the watcher was started without a pipe")
        self.watcher.stdin.write(f"{self.pid}\n".encode())
        self.watcher.stdin.flush()

    def _environment(self) -> dict[str, str]:
        """Chromium's environment: its home, cache and configuration folders inside the scratch folder, so it
        writes nothing outside it (dconf's cache under $XDG_CACHE_HOME, NSS's database under ~/.pki, ...)."""
        env = dict(os.environ)
        for var, sub in (("HOME", "home"), ("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config"),
                         ("XDG_DATA_HOME", "data")):
            folder = self.scratch / "chromium-env" / sub
            folder.mkdir(parents=True, exist_ok=True)
            env[var] = str(folder)
        return env

    def _open(self) -> None:
        """A tab on the page, attached (flat sessions), and the runtime's module loaded."""
        target = self._send("Target.createTarget", {"url": self.url})["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        wait = ("new Promise((ok, no) => { const t0 = Date.now(); (function poll() { if (window.dt) ok(true); "
                "else if (window.dtError) no(new Error(window.dtError)); else if (Date.now() - t0 > %d) "
                "no(new Error('the page did not load')); else setTimeout(poll, 10); })(); })")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.evaluate(wait % (START_TIMEOUT_S * 1000), START_TIMEOUT_S + 5)
                return
            except BrowserError as e:  # the tab has no document yet: it is still navigating to the page
                if "execution context" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def call(self, name: str, *args: Any, timeout: float = 600.0) -> Any:
        """``await dt.NAME(...args)`` in the page; its JSON value."""
        return self.evaluate(f"dt.{name}(...{json.dumps(list(args))})", timeout)

    def evaluate(self, expression: str, timeout: float = 600.0) -> Any:
        reply = self._send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, timeout)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text") or "exception"
            raise BrowserError(f"in the page: {text.splitlines()[0][:400]}")
        return reply["result"].get("value")

    def _send(self, method: str, params: dict, timeout: float = START_TIMEOUT_S) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._send_fd, data):]
        while True:
            reply = self._receive(time.monotonic() + timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"Chromium: {method}: {reply['error'].get('message')}")
                return reply["result"]

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._recv_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self._recv_fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium ended unexpectedly (log: {self.log})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        """End Chromium and every process it started, stop the server. Safe to call twice."""
        if self.pid:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            for fd in (self._send_fd, self._recv_fd):
                os.close(fd)
            self.pid = 0
        if self.watcher is not None:
            self.watcher.communicate()  # its stdin closes: it ends (its kill finds the group gone)
            self.watcher = None
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
