"""ONNX files on onnxruntime's CPU execution provider."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploytool.runtimes import Runtime, Settings


@dataclass
class Session:
    sess: Any  # onnxruntime.InferenceSession
    outputs: list[str]  # asked once: get_outputs() builds its NodeArgs anew on every call
    settings: Settings


def load(path, settings):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if settings.get("threads"):
        opts.intra_op_num_threads = int(settings["threads"])
    if settings.get("inter_op_threads"):
        opts.inter_op_num_threads = int(settings["inter_op_threads"])
    if "spinning" in settings:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings["spinning"] else "0")
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    # 0 threads: onnxruntime's default (one per physical core); spinning is on unless turned off.
    reported = Settings(opts.intra_op_num_threads or None, opts.inter_op_num_threads or None,
                        bool(settings["spinning"]) if "spinning" in settings else True,
                        {"providers": sess.get_providers()})
    return Session(sess, [o.name for o in sess.get_outputs()], reported)


def run(session, feeds):
    return dict(zip(session.outputs, session.sess.run(session.outputs, feeds)))


def describe(session):
    sess = session.sess
    def spec(v):
        dtype = v.type[len("tensor("):-1] if v.type.startswith("tensor(") else v.type
        return {"name": v.name, "dtype": _DTYPES.get(dtype, dtype),
                "shape": [d if isinstance(d, int) else None for d in v.shape]}

    return {"inputs": [spec(v) for v in sess.get_inputs()], "outputs": [spec(v) for v in sess.get_outputs()],
            "ordered": True}


_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "int64": "int64", "int32": "int32",
           "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
           "uint64": "uint64", "bool": "bool"}


def version():
    import onnxruntime

    return onnxruntime.__version__


RUNTIME = Runtime("onnxruntime", "onnxruntime CPU execution provider", ("onnxruntime",),
                  "onnxruntime", load, run, version, lambda session: session.settings, describe)
