"""ONNX files on onnxruntime-web's WebAssembly backend in headless Chromium, as a web page would run them.

The page (``deploytool/browser/onnxruntime_web.mjs``) loads onnxruntime-web from the npm packages ``deploytool
setup`` installed (the version ``package-lock.json`` pins), creates an ``InferenceSession`` on the ``wasm``
execution provider with ``ort.env.wasm.numThreads`` set to ``threads``, runs the golden inputs and times its own
calls with ``performance.now()`` (``deploytool/browser``: the page, its server and Chromium's lifecycle). Its
verdicts can differ from native onnxruntime's: the wasm kernels are not the native ones (int8 above all).
"""
from __future__ import annotations

from pathlib import Path

from deploytool.browser import npm
from deploytool.browser import runtime as browser
from deploytool.browser.runtime import chromium_program, npm_program
from deploytool.runtimes import Runtime

PAGE_JS = Path(browser.__file__).with_name("onnxruntime_web.mjs")
PACKAGE = "onnxruntime-web"


def _external_data(path: Path) -> list[str]:
    """The external data files (sidecars) the .onnx names, relative to it: served to the page one by one and
    handed to onnxruntime-web as ``externalData`` (it cannot read them beside the file as native onnxruntime
    does). Reading them needs the onnx package; a device install without it serves none (a model that has
    them then fails to load, saying which file it missed)."""
    try:
        from deploytool.store.bundle import onnx_external_data

        return onnx_external_data(Path(path))
    except ImportError:
        return []


def load(path, settings):
    dist = npm.package_dir(PACKAGE) / "dist"
    sidecars = _external_data(Path(path))
    routes = {"/ort/": dist, **{f"/data/{name}": Path(path).parent / name for name in sidecars}}
    external = [{"path": name, "data": f"/data/{name}"} for name in sidecars]
    return browser.open_session(PAGE_JS, path, routes, int(settings.get("threads") or 0) or None, external)


def version():
    """onnxruntime-web's pinned version and the Chromium it runs in: recorded with every check."""
    return f"{npm.pins()[PACKAGE]} ({browser.chromium_version()}, wasm)"


RUNTIME = Runtime("onnxruntime_web", "onnxruntime-web (WebAssembly) in headless Chromium", ("numpy",),
                  "browser", load, browser.run, version, browser.settings, browser.describe,
                  runs=("onnx", "onnx_int8"), programs=(chromium_program(), npm_program(PACKAGE)), time=browser.time)
