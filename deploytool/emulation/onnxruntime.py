"""onnxruntime's aarch64 build under ``qemu-aarch64 -cpu CPU``: ONNX files on its CPU execution provider, as
``deploytool/runtimes/onnxruntime.py`` runs them (same session options, same load / run / describe / settings, same
output names, order and dtypes): ``emulated_runtime(cpu)`` is a ``Runtime`` named ``onnxruntime`` bound to one CPU
model. External data is read from beside the file, as natively. The process, its protocol and its lifecycle:
``session.py``.

One difference: inter-op threads are 1 unless asked (natively onnxruntime's default). Sequential execution, the
default, uses no inter-op pool, so the outputs are the same; it keeps an emulated thread from being started.
"""
from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

from deploytool.emulation import session as emulated
from deploytool.runtimes import Runtime, Settings
from deploytool.runtimes import onnxruntime as native

SPINNING = "session.intra_op.allow_spinning"


def session_options(settings: dict) -> tuple[dict, dict]:
    """(SessionOptions attributes, session config entries) for the requested ``settings``, as the native runtime
    sets them: quiet logs, intra-op threads as asked (else onnxruntime's default), spinning as asked."""
    options = {"log_severity_level": 3, "inter_op_num_threads": int(settings.get("inter_op_threads") or 1)}
    if settings.get("threads"):
        options["intra_op_num_threads"] = int(settings["threads"])
    config = {SPINNING: "1" if settings["spinning"] else "0"} if "spinning" in settings else {}
    return options, config


def load(path: Path, settings: dict, cpu: str) -> emulated.Session:
    """Start the emulated Python on ``cpu`` and load the ONNX file in it, as runtimes/onnxruntime.py loads it."""
    options, config = session_options(settings)
    session = emulated.start("onnxruntime", cpu, {"path": str(path), "options": options, "config": config})
    session.view["spinning"] = bool(settings["spinning"]) if "spinning" in settings else True  # its default: on
    return session


def describe(session: emulated.Session) -> dict:
    """The native runtime's describe, read from the NodeArgs the runner sent (name, type, shape)."""
    args = {k: [SimpleNamespace(**a) for a in session.view[k]] for k in ("inputs", "outputs")}
    sess = SimpleNamespace(get_inputs=lambda: args["inputs"], get_outputs=lambda: args["outputs"])
    return native.describe(SimpleNamespace(sess=sess))


def settings(session: emulated.Session) -> Settings:
    v = session.view
    return Settings(v["intra_op_num_threads"] or None, v["inter_op_num_threads"] or None, v["spinning"],
                    {"providers": v["providers"], **emulated.extras(session)})


def version() -> str:
    return emulated.version("onnxruntime")


def emulated_runtime(cpu: str) -> Runtime:
    """onnxruntime's aarch64 build on the emulated CPU model ``cpu``, as a Runtime the worker runs like the native
    one."""
    return Runtime("onnxruntime", f"onnxruntime's aarch64 build under QEMU, CPU {cpu}", (), native.RUNTIME.extra,
                   functools.partial(load, cpu=cpu), emulated.run, version, settings, describe,
                   programs=(emulated.ENVIRONMENT,))
