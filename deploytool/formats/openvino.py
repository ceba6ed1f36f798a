"""OpenVINO IR (``model.xml`` + ``model.bin``) converted from the ONNX artifact with
``openvino.convert_model``, for the OpenVINO runtime.

The artifact is a directory holding the two files, so the bundle records and hashes both (an
``.xml`` path alone would leave its weights file unhashed); the runtime loads the one ``*.xml``
inside. ``openvino.save_model`` compresses float weights to fp16 unless ``compress_to_fp16=False``
(its default is True, DESIGN.md's stack facts): this is the fp32 tier, so they are kept fp32 and
the saved IR is checked for fp16 constants the parent ONNX did not have. The IR keeps the ONNX
graph's tensor names, shapes (dynamic dims too) and dtypes: its contract is the parent's.
"""
from __future__ import annotations

import re
from pathlib import Path

from deploytool.core.contract import Contract
from deploytool.core.errors import short_error
from deploytool.formats import ExportContext, ExportResult, Format, Route

XML = "model.xml"  # inside the artifact directory; save_model writes model.bin beside it


def fp16_constants(xml_path: Path) -> int:
    """How many f16 Const layers the IR holds (what ``compress_to_fp16=True`` leaves: f16 Const + Convert)."""
    import xml.etree.ElementTree as ET

    layers = ET.parse(xml_path).getroot().iter("layer")
    return sum(1 for layer in layers if layer.get("type") == "Const"
               and any(d.get("element_type") == "f16" for d in layer.iter("data")))


def _onnx_has_fp16(path: Path) -> bool:
    """Whether the ONNX graph itself holds fp16 tensors (then f16 constants in the IR are faithful)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    fp16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == fp16 for t in model.graph.initializer):
        return True
    return any(a.t.data_type == fp16 for n in model.graph.node for a in n.attribute if a.HasField("t"))


def convert(ctx: ExportContext) -> ExportResult:
    from importlib.metadata import version

    import openvino as ov

    parent_path, parent_contract = ctx.parent()
    model = ov.convert_model(str(parent_path))
    ctx.out_path.mkdir(parents=True, exist_ok=True)
    xml = ctx.out_path / XML
    # save_model's compress_to_fp16 defaults to True: fp16 weights in an fp32-tier artifact.
    ov.save_model(model, str(xml), compress_to_fp16=False)
    if fp16_constants(xml) and not _onnx_has_fp16(parent_path):
        raise RuntimeError(f"the saved IR holds {fp16_constants(xml)} fp16 constants though the ONNX graph has "
                           "none (weights compressed to fp16 in an fp32 artifact)")
    _check_names(model, parent_contract)
    contract = Contract.from_dict(parent_contract.to_dict())  # same tensor names, shapes and dtypes as the ONNX
    return ExportResult(contract=contract, exporter_version=f"openvino {version('openvino')}",
                        options={"compress_to_fp16": False})


def _check_names(model, contract: Contract) -> None:
    """Every tensor the contract names is an input or output of the IR (OpenVINO keeps ONNX names)."""
    for what, ports, specs in (("input", model.inputs, contract.inputs), ("output", model.outputs, contract.outputs)):
        names = {n for p in ports for n in p.get_names()}
        missing = [s.feed_name for s in specs if s.feed_name not in names]
        if missing:
            raise RuntimeError(f"the IR has no {what} named {', '.join(missing)} (it has {sorted(names)})")


# openvino's OpConversionFailure: "... Failed operations detailed log:\n-- Resize-18 with a message:\n...\n
# Summary:\n-- Conversion is failed for: Resize-18\n" or "-- No conversion rule found for operations: a.Foo, b.Bar".
_FAILED_FOR = re.compile(r"-- (Conversion is failed for|No conversion rule found for operations): ([^\n]+)")
_NODE_MESSAGE = re.compile(r"While validating ONNX node '<Node\((\w+)\): ([^>]*)>'[:\s]*(?:Exception from [^\n]*\n)?"
                           r"(?:Check [^\n]*\n)?(?:FrontEnd API failed with \w+:\n)?([^\n]+)")


def explain(exc: BaseException, log: str, ctx: ExportContext) -> str:
    text = str(exc)
    summary = _FAILED_FOR.search(text)
    if summary is None:
        return f"openvino.convert_model: {short_error(exc)}"
    what, ops = summary.groups()
    if what.startswith("No conversion rule"):
        return f"openvino.convert_model has no conversion for ONNX op(s) {ops.strip()}"
    node = _NODE_MESSAGE.search(text)
    if node is None:
        return f"openvino.convert_model failed to convert {ops.strip()}"
    op, output, reason = node.groups()
    reason = reason.strip()
    reason = reason if len(reason) <= 240 else reason[:237] + "..."
    return f"openvino.convert_model cannot convert the ONNX {op} node writing {output!r}: {reason}"


FORMAT = Format(
    name="openvino",
    description="OpenVINO IR (openvino.convert_model from the ONNX artifact; fp32 weights), for OpenVINO",
    suffix="_openvino",
    parent="onnx",
    precision="fp32",
    tier="fp32",
    runtimes=("openvino",),
    stage="torch",  # beside the onnx artifact: no TensorFlow needed
    exporter="openvino.convert_model",
    requires=("openvino",),
    convert=convert,
    explain=explain,
    is_dir=True,
    # From an .onnx or a TensorFlow source the onnx artifact is made in that source's worker; so is this.
    routes={fw: Route(parent="onnx", stage=fw, exporter="openvino.convert_model", convert=convert,
                      requires=("openvino",), explain=explain) for fw in ("onnx", "tensorflow")},
)
