"""Each format's ``explain`` (exception + worker log -> one line naming the cause), on real converter
failures recorded once by hand under tests/data/converter_messages/ (each file says at its top
which command, model and versions produced it).

A recording is: '#' header lines, then ``@@ exception <type name>``, the exception's str() verbatim,
then ``@@ log`` and the log excerpt the worker would hand to explain (trimmed to the relevant
lines). The exception is rebuilt as an instance of a class with the recorded name, so neither torch
nor TensorFlow is imported; onnx is, to write the parent ONNX file whose op types
savedmodel.explain looks up.
"""
from __future__ import annotations

import builtins
import re
from pathlib import Path

import pytest

from deploytool.formats import ExportContext, _tflite, savedmodel
from deploytool.formats import onnx as onnx_format

DATA = Path(__file__).resolve().parent / "data" / "converter_messages"
RECORDING = re.compile(r"(?:#[^\n]*\n)+@@ exception (\w+)\n(.*?)\n@@ log\n(.*)", re.S)


def recorded(name: str) -> tuple[BaseException, str]:
    """(the exception, rebuilt with its recorded type name and message; the log excerpt)."""
    m = RECORDING.fullmatch((DATA / name).read_text(encoding="utf-8"))
    assert m, f"{name} is not a '#' header, '@@ exception TYPE', message, '@@ log', log"
    type_name, message, log = m.groups()
    cls = getattr(builtins, type_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = type(type_name, (Exception,), {})
    return cls(message), log


def context(tmp_path: Path, nodes: dict[str, str] | None = None) -> ExportContext:
    """An ExportContext whose parent_path is an ONNX file holding ``nodes`` (name -> op type), as the
    ONNX artifact onnx2tf failed on did (only names and op types matter to the lookup)."""
    parent = None
    if nodes is not None:
        import onnx
        from onnx import helper

        graph = helper.make_graph([helper.make_node(op, [], [f"{name}_out"], name=name) for name, op in nodes.items()],
                                  "recorded", [], [])
        parent = tmp_path / "parent.onnx"
        onnx.save(helper.make_model(graph), str(parent))
    # contract is unused by the explain functions
    return ExportContext(model_name="recorded", contract=None, out_path=tmp_path / "artifact",
                         workdir=tmp_path / "work", parent_path=parent)


# Nodes around the failing one in the real ONNX artifacts (names and op types as they were there).
BAG_NODES = {"n14_n1_3": "Identity", "node_Identity_19": "Identity", "n16": "SequenceEmpty", "n18": "Less",
             "n19_2": "Loop"}
BERT_NODES = {"node_expand_1": "Expand", "node_ge": "GreaterOrEqual", "node_Concat_48": "Concat",
              "node_expand_2": "Expand", "node_MatMul_50": "MatMul"}

# id -> (recording, explain function, parent ONNX nodes or None, the one line explain gives)
CASES = {
    "torch.export non-strict data-dependent guard": (
        "torch_export_nonstrict_data_dependent.txt", onnx_format.explain, None,
        "GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(u0, 1) (unhinted: Eq(u0, 1)).  "
        "(Size-like symbols: none)"),
    "torch.export strict data-dependent branching": (
        "torch_export_strict_data_dependent.txt", onnx_format.explain, None,
        "Unsupported: does not support tracing dynamic control flow."),
    "torch.onnx wrapping torch.export (<class 'X'>: msg)": (
        "torch_onnx_wrapped_data_dependent.txt", onnx_format.explain, None,
        "torch.export failed: GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(u0, 1) "
        "(unhinted: Eq(u0, 1)).  (Size-like symbols: none)"),
    "onnx: other error (specialised dim)": (
        "torch_onnx_specialised_dim.txt", onnx_format.explain, None,
        "RuntimeError: torch.export specialised dynamic dim 'batch' to 2 (shape-dependent Python logic, e.g. "
        "int()/float() of a size, fixes it); the ONNX graph would only accept that size"),
    "tf2onnx unmapped op named from the log": (
        "tf2onnx_unmapped_op_and_handler_error.txt", onnx_format.explain_tf2onnx, None,
        "tf2onnx has no ONNX mapping for TF op(s) MatrixInverse: ValueError: make_sure failure: "
        "Can only convert Roll is axis is const"),
    "tf2onnx handler error, no unmapped op": (
        "tf2onnx_handler_error.txt", onnx_format.explain_tf2onnx, None,
        "tf2onnx: ValueError: make_sure failure: Can only convert Roll is axis is const"),
    "tf2onnx message passed through": (
        "tf2onnx_no_mapping_passthrough.txt", onnx_format.explain_tf2onnx, None,
        "tf2onnx has no ONNX mapping for TF op(s) MatrixInverse"),
    "onnx2tf names the node and its op": (
        "onnx2tf_sequence_empty.txt", savedmodel.explain, BAG_NODES,
        "onnx2tf failed at ONNX node 'n16' (SequenceEmpty): TypeError: 'dict' object is not callable"),
    "onnx2tf bool Expand": (
        "onnx2tf_bool_expand.txt", savedmodel.explain, BERT_NODES,
        "onnx2tf failed at ONNX node 'node_expand_2' (Expand): onnx2tf converts Expand as a multiplication, "
        "which TensorFlow refuses for a bool tensor (TypeError)"),
    "onnx2tf shape mismatch detail": (
        "onnx2tf_shape_mismatch.txt", savedmodel.explain, {"node_add": "Add"},
        "onnx2tf failed at ONNX node 'node_add' (Add): ValueError: Exception encountered when calling layer "
        "\"tf.math.add\" (type TFOpLambda). (Dimensions must be equal, but are 4 and 5 for '{{node tf.math.add/Add}} "
        "= AddV2[T=DT_FLOAT](Placeholder, Placeholder_1)' with input shapes: [1,4,5,3], [1,5,4,3].)"),
    "onnx2tf with no node in the log": (
        "onnx2tf_exit_no_node.txt", savedmodel.explain, {},
        "onnx2tf failed: RuntimeError: onnx2tf exited with status 1 (see the log)"),
    "TFLite unsupported ops": (
        "tflite_flex_op.txt", _tflite.explain, None,
        "TFLiteConverter: ops not supported by TFLite built-ins: tf.MatrixDeterminant"),
    "TFLite other error": (
        "tflite_invalid_signature.txt", _tflite.explain, None,
        "TFLiteConverter: ValueError: Invalid signature key 'serving_default' found. Valid keys are ''."),
}


def _explain(case: str, tmp_path: Path) -> str:
    name, explain, nodes, _ = CASES[case]
    exc, log = recorded(name)
    return explain(exc, log, context(tmp_path, nodes))


@pytest.mark.parametrize("case", CASES)
def test_explain_names_the_cause(case, tmp_path):
    assert _explain(case, tmp_path) == CASES[case][3]


@pytest.mark.parametrize("case", CASES)
def test_explanation_is_one_short_line(case, tmp_path):
    line = _explain(case, tmp_path)
    assert line.strip() == line and 0 < len(line) < 400, line
    assert not any(ord(c) < 32 or ord(c) == 127 for c in line), repr(line)  # no newline, tab or ANSI escape


def test_onnx2tf_node_missing_from_the_onnx_file_is_named_without_an_op(tmp_path):
    # Without the op type there is no bool-Expand special case: the exception's first line is reported.
    exc, log = recorded("onnx2tf_bool_expand.txt")
    expected = ("onnx2tf failed at ONNX node 'node_expand_2': TypeError: Exception encountered when calling layer "
                "\"tf.math.multiply_588\" (type TFOpLambda).")
    assert savedmodel.explain(exc, log, context(tmp_path, {"node_expand_1": "Expand"})) == expected
    assert savedmodel.explain(exc, log, context(tmp_path / "none")) == expected  # no parent ONNX path at all


def test_onnx2tf_names_the_last_node_the_log_reports(tmp_path):
    # The recorded log holds the dynamic attempt and the fixed-dims retry, each naming n16.
    exc, log = recorded("onnx2tf_sequence_empty.txt")
    assert re.findall(r"onnx_op_name:\s*(\S+)", log) == ["n16", "n16"]
    first_differs = log.replace("onnx_op_name: n16", "onnx_op_name: n18", 1)
    expected = "onnx2tf failed at ONNX node 'n16' (SequenceEmpty): TypeError: 'dict' object is not callable"
    assert savedmodel.explain(exc, first_differs, context(tmp_path, BAG_NODES)) == expected


def test_every_recording_is_used_and_says_where_it_came_from():
    files = sorted(p.name for p in DATA.glob("*.txt"))
    used = {name for name, *_ in CASES.values()}
    assert files == sorted(used)
    for name in files:
        text = (DATA / name).read_text(encoding="utf-8")
        assert text.startswith("# ") and "versions: " in text.split("@@ exception", 1)[0], name
        assert len(text.encode()) < 8 * 1024, name
