"""ONNX files on onnxruntime's CPU execution provider."""
from __future__ import annotations

from deploytool.runtimes import Runtime


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
    sess._deploytool_settings = {"intra_op_threads": opts.intra_op_num_threads,
                                 "inter_op_threads": opts.inter_op_num_threads,
                                 "providers": sess.get_providers()}
    return sess


def run(sess, feeds):
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def version():
    import onnxruntime

    return onnxruntime.__version__


RUNTIME = Runtime("onnxruntime", "onnxruntime CPU execution provider", ("onnxruntime",),
                  "pip install 'deploytool[onnx]'", load, run, version,
                  lambda sess: dict(sess._deploytool_settings))
