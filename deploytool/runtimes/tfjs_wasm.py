"""TensorFlow.js graph models on TensorFlow.js's WebAssembly backend in headless Chromium, as a web page would run
them.

The page (``deploytool/browser/tfjs_wasm.mjs``) loads ``@tensorflow/tfjs`` and ``@tensorflow/tfjs-backend-wasm``
from the npm packages ``deploytool setup`` installed (the versions ``package-lock.json`` pins), sets the backend's
threads (``setThreadsCount``, read back with ``getThreadsCount``) before ``tf.setBackend("wasm")``, loads the
artifact folder (``model.json`` + weight shards, served under ``/artifact/``) with ``tf.loadGraphModel`` and feeds
and reads it by the keys of its signature. TensorFlow.js has no 64-bit, 16-bit or 8-bit dtypes: integer inputs go
in as int32 (a value outside int32's range is refused, never wrapped), float inputs as float32, and outputs come
back in the dtype TensorFlow.js computed them in (an int64 output is int32 there, and its check says so).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deploytool.browser import npm
from deploytool.browser import runtime as browser
from deploytool.browser.runtime import chromium_program, npm_program
from deploytool.runtimes import Runtime, Timed

PAGE_JS = Path(browser.__file__).with_name("tfjs_wasm.mjs")
PACKAGE = "@tensorflow/tfjs"
BACKEND = "@tensorflow/tfjs-backend-wasm"
INT32 = (-(2**31), 2**31 - 1)


def load(path: Path, settings: dict) -> browser.Session:
    routes = {"/tfjs/": npm.package_dir(PACKAGE) / "dist", "/tfjs-wasm/": npm.package_dir(BACKEND) / "dist",
              "/artifact/": Path(path).resolve()}  # a folder: model.json and the shards it names
    return browser.open_session(PAGE_JS, path, routes, int(settings.get("threads") or 0) or None)


def as_tfjs(feeds: dict) -> dict:
    """The feeds in the dtypes TensorFlow.js has: integers as int32 (refused when a value does not fit), floats as
    float32; bool and int32 as they are."""
    import numpy as np

    out = {}
    for name, value in feeds.items():
        a = np.asarray(value)
        if a.dtype.kind in "iu" and a.dtype != np.int32:
            if a.size and (int(a.min()) < INT32[0] or int(a.max()) > INT32[1]):
                raise ValueError(f"input {name!r} ({a.dtype}) holds {int(a.min())}..{int(a.max())}: TensorFlow.js "
                                 f"computes integers in int32, which holds {INT32[0]}..{INT32[1]}")
            a = a.astype(np.int32)
        elif a.dtype.kind == "f" and a.dtype != np.float32:
            a = a.astype(np.float32)
        out[name] = a
    return out


# tfjs-backend-wasm registers fewer kernels than TensorFlow.js's cpu/webgl backends (no Einsum in 4.22): the graph
# converts and loads, and the first call fails with "Kernel 'Einsum' not registered for backend 'wasm'".
MISSING_KERNEL = re.compile(r"Kernel '([^']+)' not registered for backend 'wasm'")


def run(session: browser.Session, feeds: dict) -> dict:
    try:
        return browser.run(session, as_tfjs(feeds))
    except Exception as e:  # said as what it is: the backend lacks a kernel, not a wrong model
        missing = MISSING_KERNEL.search(str(e))
        if missing is None:
            raise
        raise RuntimeError(f"TensorFlow.js's wasm backend has no kernel for {missing.group(1)} (tfjs-backend-wasm "
                           f"{npm.pins()[BACKEND]}); the graph itself converted") from None


def time(session: browser.Session, feeds: list[dict], protocol: Any) -> Timed:
    return browser.time(session, [as_tfjs(f) for f in feeds], protocol)


def version() -> str:
    """TensorFlow.js's pinned version and the Chromium it runs in: recorded with every check."""
    return f"{npm.pins()[PACKAGE]} ({browser.chromium_version()}, wasm)"


RUNTIME = Runtime("tfjs_wasm", "TensorFlow.js (WebAssembly backend) in headless Chromium", ("numpy",), "browser", load,
                  run, version, browser.settings, browser.describe,
                  programs=(chromium_program(), npm_program(PACKAGE), npm_program(BACKEND)), time=time)
