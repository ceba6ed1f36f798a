"""TensorFlow.js graph model (``model.json`` + weight shards), converted from the SavedModel artifact by the TF.js
converter; run by ``tfjs_wasm`` (TensorFlow.js's WebAssembly backend in headless Chromium).

The converter (``tensorflowjs`` 4.22) cannot share deploytool's own Python environment: it pins TensorFlow 2.19 and
older numpy/protobuf/packaging. Its stage ``tfjs`` therefore runs in a worker under the ``tfjs`` environment
(``deploytool/envs``: a venv ``deploytool setup`` creates from the requirements file shipped beside it), and the
versions of that environment are recorded in the manifest like every other stage's.

The graph model keeps the SavedModel's ``serving_default`` signature (``model.json``'s ``signature``), so it is fed
and read by the SavedModel's names, in its layout: the artifact's contract is its parent's, checked against the
signature the converter wrote.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

from deploytool.core.contract import Contract
from deploytool.formats import ExportContext, ExportResult, Format

SIGNATURE = "serving_default"
MODEL_JSON = "model.json"


def signature_keys(path: Path) -> tuple[list[str], list[str]]:
    """The (input, output) keys of the signature the converter wrote into ``model.json``."""
    signature = json.loads((Path(path) / MODEL_JSON).read_text()).get("signature") or {}
    return list(signature.get("inputs") or {}), list(signature.get("outputs") or {})


# The TF.js converter lets grappler's remapper fuse an activation into the conv/matmul before it (``_FusedConv2D``,
# ``FusedDepthwiseConv2dNative``, ``_FusedMatMul``'s ``fused_ops``), but tfjs-backend-wasm 4.22 runs only these fused
# (``FusableActivation`` in its kernels/types: linear, relu, relu6, prelu, leakyrelu, sigmoid, elu) and throws
# "tanh activation not yet supported for FusedConv2D" at the first call otherwise. Such an activation is split back
# out of the fused node into a node of its own (which every backend runs), and a note says which.
FUSED_OPS = ("_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul")
WASM_FUSABLE = {"BiasAdd", "Relu", "Relu6", "Prelu", "LeakyRelu", "Sigmoid", "Elu"}
STANDALONE = {"Tanh", "Relu", "Relu6", "Sigmoid", "Elu", "Softplus", "Selu"}  # unary ops TF.js runs on their own


# Likewise the remapper fuses ``a @ W + t`` into one ``_FusedMatMul`` with ``t`` as its "bias" whatever t's rank
# (``x @ W + h @ U``, a recurrent cell's gates), and tfjs-backend-wasm 4.22 throws "_FusedMatMul only supports rank-1
# bias" at the first call. Such a node is split back into its MatMul and an AddV2.


def _bias_is_vector(bias: str, weights: dict[str, list[int]]) -> bool:
    return len(weights.get(bias.split(":")[0], [0, 0])) == 1  # a computed tensor: its rank is unknown here


def unfuse_activations(path: Path) -> list[str]:
    """Split what the wasm backend cannot run fused out of its node in ``model.json``: an activation it has no fused
    kernel for, and a MatMul's "bias" that is not a vector. Returns what was split, as ``Tanh after NODE`` and
    ``AddV2 after NODE``."""
    model_json = Path(path) / MODEL_JSON
    model = json.loads(model_json.read_text())
    weights = {w["name"]: w.get("shape", []) for group in model.get("weightsManifest", []) for w in group["weights"]}
    split: list[str] = []
    out: list[dict] = []
    for node in model["modelTopology"]["node"]:
        fused = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
        names = [base64.b64decode(s).decode() for s in fused]
        if node.get("op") not in FUSED_OPS or not names:
            out.append(node)
            continue
        dtype = {"T": node["attr"].get("T", {"type": "DT_FLOAT"})}
        chain = [node]  # the node, then what is split out of it, each reading the one before; the last keeps its name
        if names[-1] not in WASM_FUSABLE and names[-1] in STANDALONE:
            fused.pop()
            chain.append({"name": node["name"], "op": names[-1], "attr": dict(dtype)})
            split.append(f"{names[-1]} after {node['name']}")
        if node["op"] == "_FusedMatMul" and names[:1] == ["BiasAdd"] and len(node["input"]) == 3 and \
                not _bias_is_vector(node["input"][2], weights):
            fused.pop(0)
            bias = node["input"].pop()
            node["op"] = "MatMul"
            node["attr"] = {k: v for k, v in node["attr"].items() if k in ("T", "transpose_a", "transpose_b")}
            chain.insert(1, {"name": node["name"], "op": "AddV2", "attr": dict(dtype), "bias": bias})
            split.append(f"AddV2 after {node['name']}")
        name = node["name"]
        for i, step in enumerate(chain[:-1]):  # every step but the last renamed; each next one reads it
            step["name"] = f"{name}/deploytool_unfused_{i}"
            nxt = chain[i + 1]
            nxt["input"] = [step["name"], *([nxt.pop("bias")] if "bias" in nxt else [])]
        chain[-1]["name"] = name  # every consumer and output reads the node's name as before
        out.extend(chain)
    if split:
        model["modelTopology"]["node"] = out
        model_json.write_text(json.dumps(model))
    return split


def tfjs_dtypes(contract: Contract) -> list[tuple[str, str, str]]:
    """TensorFlow.js computes in float32, int32 and bool only (its ``DataType``): every other integer tensor is int32
    in the artifact, every other float float32. Recorded as the tensor's artifact dtype, so feeds are narrowed
    (refused when a value does not fit) and integer outputs widened back losslessly (``core.contract``). Returns
    (name, dtype, artifact dtype) for each tensor narrowed."""
    import numpy as np

    narrowed = []
    for spec in contract.inputs + contract.outputs:
        dtype = np.dtype(spec.artifact_dtype or spec.dtype)
        want = "int32" if dtype.kind in "iu" else "float32" if dtype.kind == "f" else dtype.name
        if want != dtype.name:
            spec.artifact_dtype = want
            narrowed.append((spec.name, dtype.name, want))
    return narrowed


def restore_signature_keys(path: Path, inputs: list[str], outputs: list[str]) -> list[str]:
    """The TF.js converter names each signature entry by matching the frozen graph's tensors to the SavedModel's
    signature on dtype and shape (tensorflowjs 4.22, ``_find_signature_def_name``); two inputs or outputs alike in
    both get the frozen tensor's name instead (``x_y_2:0``, ``Identity_1:0``). The keys are restored here: an input's
    placeholder is named after its key, and the outputs are ``Identity``, ``Identity_1``, ... in the order of their
    sorted keys (how TensorFlow flattens the signature's dict). Only when that accounts for every key; a mapping
    that were wrong would swap tensors alike in shape, which the parity check fails. Returns ``old -> new``."""
    model_json = Path(path) / MODEL_JSON
    model = json.loads(model_json.read_text())
    signature = model.get("signature") or {}
    changes: list[str] = []
    for group, wanted in (("inputs", inputs), ("outputs", outputs)):
        entries = signature.get(group) or {}
        renamed = {}
        for key in entries:
            new = key
            if key not in wanted and group == "inputs" and key.endswith(":0"):
                new = key[:-2]
            elif key not in wanted and group == "outputs":
                found = re.fullmatch(r"Identity(?:_(\d+))?:0", key)
                index = int(found.group(1) or 0) if found else -1
                new = sorted(wanted)[index] if 0 <= index < len(wanted) else key
            renamed[key] = new
        if sorted(renamed.values()) != sorted(wanted) or all(k == v for k, v in renamed.items()):
            continue  # nothing to restore, or not accounted for: the caller's check says so
        signature[group] = {renamed[k]: v for k, v in entries.items()}
        changes += [f"{k} -> {v}" for k, v in renamed.items() if k != v]
    if changes:
        model_json.write_text(json.dumps(model))
    return changes


def convert(ctx: ExportContext) -> ExportResult:
    import tensorflow as tf
    import tensorflowjs
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as converter

    parent_path, parent_contract = ctx.parent()
    # The converter (TF 2.19 loading a SavedModel TF 2.21 wrote) rewrites its fingerprint.pb: it reads a copy, so the
    # SavedModel artifact stays as exported (its hashes are checked after every stage).
    source = Path(ctx.workdir) / "tfjs-input-saved-model"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(parent_path, source)
    # skip_op_check=False: an op TF.js has no kernel for fails here, naming it, rather than in the page
    converter.convert_tf_saved_model(str(source), str(ctx.out_path), signature_def=SIGNATURE,
                                     saved_model_tags="serve", skip_op_check=False, strip_debug_ops=True)
    shutil.rmtree(source, ignore_errors=True)
    unfused = unfuse_activations(ctx.out_path)
    contract = Contract.from_dict(parent_contract.to_dict())
    narrowed = tfjs_dtypes(contract)
    want_in = sorted(s.feed_name for s in contract.inputs)
    want_out = sorted(s.feed_name for s in contract.outputs)
    restored = restore_signature_keys(ctx.out_path, want_in, want_out)
    inputs, outputs = signature_keys(ctx.out_path)
    if sorted(inputs) != want_in or sorted(outputs) != want_out:
        raise RuntimeError(f"the converter wrote a signature with inputs {sorted(inputs)} and outputs "
                           f"{sorted(outputs)}; the SavedModel's are {want_in} and {want_out}")
    notes = [f"ops split out of fused nodes (tfjs-backend-wasm cannot run them fused): {', '.join(unfused)}"
             ] if unfused else []
    notes += [f"{n}: computed in {d} (TensorFlow.js has no {was})" for n, was, d in narrowed]
    if restored:
        notes.append(f"signature keys the converter replaced by tensor names, restored: {', '.join(restored)}")
    return ExportResult(contract=contract, options={"signature": SIGNATURE, "strip_debug_ops": True}, notes=notes,
                        exporter_version=f"tensorflowjs {tensorflowjs.__version__}, tensorflow {tf.__version__}")


def explain(exc: BaseException, log: str, ctx: ExportContext) -> str:
    """The converter's own reason: the ops TF.js cannot run, or its last error line."""
    # tensorflowjs 4.22: ValueError('Unsupported Ops in the model before optimization\n' + ', '.join(ops))
    unsupported = re.search(r"Unsupported Ops in the model (?:before|after) optimization\s*\n\s*([^\n]+)", str(exc))
    if unsupported:
        return f"TensorFlow.js has no kernel for ops of this model: {unsupported.group(1).strip()}"
    last = (str(exc).strip().splitlines() or [""])[-1][:300]
    return f"the TF.js converter failed: {type(exc).__name__}: {last}".rstrip(": ")


FORMAT = Format(
    name="tfjs",
    description="TensorFlow.js graph model (TF.js converter from the SavedModel), for the browser",
    suffix="_tfjs",
    parent="savedmodel",
    precision="fp32",
    tier="fp32",
    runtimes=("tfjs_wasm",),
    stage="tfjs",
    exporter="tensorflowjs_converter",
    requires=(),  # in the tfjs environment, not this one (deploytool/envs)
    convert=convert,
    explain=explain,
    is_dir=True,
)
