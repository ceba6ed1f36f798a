"""What a browser runtime is made of, so each one (``runtimes/onnxruntime_web.py``) is its page's JavaScript and
a few lines: its requirements (``CHROMIUM_PROGRAM``, ``npm_program``: the npm packages ``deploytool setup``
installs, and says so when they are missing) and the session that loads an artifact in a fresh page, feeds it
golden inputs (raw little-endian files served under ``/feeds/``, typed arrays in the page; int64 as
BigInt64Array), reads its outputs back and has it time itself (``harness.mjs``).
"""
from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploytool.browser import npm
from deploytool.browser.driver import CHROMIUM, Page

if TYPE_CHECKING:  # deploytool.runtimes imports the runtime files, which import this module: imported late
    from deploytool.runtimes import Program, Settings, Timed


def chromium_program() -> Program:
    """Chromium, which runs the page, as a runtime's requirement."""
    from deploytool.runtimes import Program

    return Program(CHROMIUM, "runs the page", "apt-get install chromium")


def npm_program(package: str) -> Program:
    """An npm package of ``deploytool/browser/package-lock.json`` a page loads, as a runtime's requirement (doctor
    and a SKIPPED target name ``deploytool setup`` when it is not installed)."""
    from deploytool.runtimes import Program

    return Program(f"{package} {npm.pins()[package]} (npm)", "loaded by its page", npm.HINT, present=npm.installed)


@dataclass
class Session:
    page: Page
    scratch: Path  # Chromium's profile, its log and the feeds; removed with the session
    loaded: dict  # what the page's load() said
    settings: Settings
    closer: Any = field(default=None, repr=False)


def _close(page: Page, scratch: Path) -> None:
    page.close()
    shutil.rmtree(scratch, ignore_errors=True)


def open_session(page_js: Path, artifact: Path, routes: dict[str, Path], threads: int | None,
                 *load_args: Any) -> Session:
    """``page_js`` in a fresh page that may fetch ``routes``, the artifact (``/artifact``) and the feeds
    (``/feeds/``), its ``load(threads)`` called. Raises RuntimeError naming what to install when it cannot run."""
    if not npm.installed():
        raise RuntimeError(f"the browser runtimes' npm packages are not installed: {npm.HINT}")
    scratch = Path(tempfile.mkdtemp(prefix="deploytool-browser-"))
    (scratch / "feeds").mkdir()
    try:
        page = Page(scratch, page_js, {"/artifact": Path(artifact).resolve(), "/feeds/": scratch / "feeds", **routes})
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        loaded = page.call("load", threads, *load_args)
    except BaseException:
        _close(page, scratch)
        raise
    from deploytool.runtimes import Settings

    settings = Settings(loaded.get("threads"), extras={"cross_origin_isolated": loaded.get("isolated"),
                                                       "simd": loaded.get("simd"), "browser": loaded.get("browser")})
    session = Session(page, scratch, loaded, settings)
    session.closer = weakref.finalize(session, _close, page, scratch)  # when dropped, or at the worker's exit
    return session


def write_feeds(session: Session, feeds: dict, tag: str) -> list[dict]:
    """The feeds as files the page fetches: [{name, dtype, shape, url}] in order."""
    import numpy as np

    specs = []
    for i, (name, value) in enumerate(feeds.items()):
        a = np.asarray(value)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        a.tofile(session.scratch / "feeds" / f"{tag}_{i}.bin")
        specs.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "url": f"/feeds/{tag}_{i}.bin"})
    return specs


def run(session: Session, feeds: dict) -> dict:
    """One call of the page's ``run``; its outputs ([{name, dtype, shape, data: base64}]) as arrays."""
    import numpy as np

    outputs = {}
    for out in session.page.call("run", write_feeds(session, feeds, "run")):
        dtype = np.dtype("uint8" if out["dtype"] == "bool" else out["dtype"]).newbyteorder("<")
        data = np.frombuffer(base64.b64decode(out["data"]), dtype=dtype).reshape(out["shape"])
        outputs[out["name"]] = data.astype(np.dtype(out["dtype"]), copy=True)
    return outputs


def time(session: Session, feeds: list[dict], protocol: Any) -> Timed:
    """The page times its own calls (``harness.mjs``'s ``timeCalls``, bench's protocol) with performance.now()."""
    sets = [write_feeds(session, f, f"time{k}") for k, f in enumerate(feeds)]
    p = protocol.to_dict()
    got = session.page.call("time", sets, p, timeout=p["warmup_time"] + p["max_time"] + 600)
    from deploytool.runtimes import Timed

    return Timed([round(ms * 1e6) for ms in got["samples_ms"]], got["warmup_runs"], got["measure_s"], got["capped"])


def settings(session: Session) -> Settings:
    return session.settings


def describe(session: Session) -> dict | None:
    return session.loaded.get("describe")


@cache
def chromium_version() -> str:
    """``Chromium 156.0.8078.114`` (``chromium --version``), or "unknown"."""
    exe = shutil.which(CHROMIUM)
    if exe is None:
        return "unknown"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, check=False).stdout
    words = out.split()
    return " ".join(words[:2]) if len(words) >= 2 else "unknown"
