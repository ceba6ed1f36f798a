"""ONNX via ``torch.onnx.export`` (the dynamo exporter; where it fails, the TorchScript-based one),
checked with ``onnx.checker``. Routes: from
an ``.onnx`` source, the file itself; from a TensorFlow source, tf2onnx from the SavedModel artifact.

Dynamic dims of the contract are declared with ``torch.export.Dim``; their example sizes must
be >= 2 because torch.export specialises dims of size 0/1. Models under 2 GB are written as one
file (``external_data=False``; torch 2.x otherwise writes weights to a side file).

External data: an ONNX file over 2 GB (torch writes ``model.onnx.data`` beside it), and an ``.onnx``
source that keeps its tensors in files beside it, are kept as they are: the files its tensors name go
beside the artifact in ``artifacts/`` (``_place``; locations stay relative and inside the directory)
and are listed under ``options["sidecar_files"]``, so export hashes them with the artifact.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from deploytool.core.contract import Contract
from deploytool.core.errors import short_error
from deploytool.formats import ConversionRoute, ExportContext, ExportResult, Format, Route, convert_by_routes
from deploytool.formats.torchscript import trace_checked
from deploytool.store.bundle import SIDECARS, onnx_external_data

TWO_GB = 2 * 1024**3


def _dynamic_shapes(ctx: ExportContext) -> tuple | None:
    import torch

    dims = {}
    for name in ctx.contract.dynamic_dims():
        spec = ctx.contract.dims[name]
        kwargs = {k: int(spec[k]) for k in ("min", "max") if k in spec}
        dims[name] = torch.export.Dim(name, **kwargs)
    # Positional, not keyed by name: torch.export wants forward()'s own parameter names as keys,
    # and the contract's input names need not be those.
    specs = tuple({i: dims[d] for i, d in enumerate(s.shape) if isinstance(d, str) and d in dims} or None
                  for s in ctx.contract.inputs)
    return specs if any(specs) else None


def onnx_contract(ctx: ExportContext, path, by_name: Contract | None = None) -> Contract:
    """The graph's own view of its I/O, checked against the source contract (names, order, rank).
    With ``by_name`` (the parent artifact's contract), graph tensors are matched by the parent's
    artifact names instead of by position."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    contract = Contract.from_dict(ctx.contract.to_dict())
    inits = {i.name for i in graph.initializer}
    graph_inputs = [i for i in graph.input if i.name not in inits]
    graph_outputs = list(graph.output)
    if by_name is not None:
        graph_inputs, graph_outputs = (_by_names(values, [s.feed_name for s in specs])
                                       for values, specs in ((graph_inputs, by_name.inputs),
                                                             (graph_outputs, by_name.outputs)))
    for group, values in ((contract.inputs, graph_inputs), (contract.outputs, graph_outputs)):
        if len(group) != len(values):
            raise RuntimeError(f"ONNX graph has {len(values)} tensors where the contract names {len(group)}: "
                               f"{[v.name for v in values]}")
        for spec, value in zip(group, values):
            dims = value.type.tensor_type.shape.dim
            spec.artifact_name = value.name
            spec.artifact_dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
            if len(dims) != len(spec.shape):
                raise RuntimeError(f"ONNX {value.name!r} has rank {len(dims)}, contract {spec.name!r} "
                                   f"rank {len(spec.shape)}")
    fixed = {}
    for spec, value in zip(contract.inputs, graph_inputs):
        for d, dim in zip(spec.shape, value.type.tensor_type.shape.dim):
            if isinstance(d, str) and dim.HasField("dim_value"):
                fixed[d] = int(dim.dim_value)
    contract.fixed_dims = fixed
    return contract


def _by_names(values, names: list[str]) -> list:
    found = {v.name: v for v in values}
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError(f"ONNX graph has no tensor {missing} (it has {sorted(found)})")
    return [found[n] for n in names]


def _order_io(graph, inputs: list[str], outputs: list[str]) -> None:
    """Reorder the graph's inputs and outputs to these names (others, e.g. initializers, after them)."""
    for field, names in ((graph.input, inputs), (graph.output, outputs)):
        values = list(field)
        rank = {n: i for i, n in enumerate(names)}
        values.sort(key=lambda v: rank.get(v.name, len(names)))  # stable: unnamed ones keep their order
        del field[:]
        field.extend(values)


def rename_io(graph, mapping: dict[str, str]) -> None:
    """Rename graph inputs and outputs (``mapping``: old -> new) everywhere they are used, in subgraphs (If/Loop
    bodies) too; an internal value already holding a wanted name is renamed first."""
    taken = {o for n in graph.node for o in n.output} | {i.name for i in graph.initializer} | \
        {i.name for i in graph.input}
    clashes = {new: f"{new}__internal" for old, new in mapping.items() if new in taken and new != old}
    rename = {**clashes, **mapping}

    def sub(name: str) -> str:
        return rename.get(name, name)

    for node in _nodes(graph):
        node.input[:] = [sub(x) for x in node.input]
        node.output[:] = [sub(x) for x in node.output]
    for coll in (graph.output, graph.value_info, graph.input):
        for v in coll:
            v.name = sub(v.name)
    for init in graph.initializer:
        init.name = sub(init.name)


def _nodes(graph):
    """Every node of ``graph`` and of the subgraphs its nodes hold (outer-scope names are used there too)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _nodes(sub)


# The TorchScript-based exporter's opset: the one torch.export writes in torch 2.13. At 17 it writes exact GELU
# as Erf, which onnx2tf turns into tf.Erf, which TFLite's built-ins lack; from 20 it is an ONNX Gelu op, which
# onnx2tf converts with built-in ops (transformers' Swin: every TFLite format failed at 17).
LEGACY_OPSET = 20


def from_torch(ctx: ExportContext) -> ExportResult:
    """torch.export (the dynamo exporter) first; where it fails (e.g. "Cannot view a tensor with shape
    ... and strides ...": a view that eager strides allow but torch.export's decomposed attention does
    not, as in transformers' Swin), the TorchScript-based exporter, which traces the eager strides.
    Both declare the contract's dynamic dims, and the artifact is checked at the second shape either way."""
    # Written in a scratch directory first: over 2 GB, the exporter writes external data beside the .onnx, and
    # only the files the graph names are moved into the bundle (a failed route leaves nothing there).
    scratch = ctx.workdir / "onnx-export"

    def clear() -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)

    clear()
    local = dataclasses.replace(ctx, out_path=scratch / ctx.out_path.name)
    routes = [ConversionRoute("dynamo", "torch.onnx.export(dynamo=True)", lambda: _export_torch(local, dynamo=True)),
              ConversionRoute("torchscript", "the TorchScript-based exporter, torch.onnx.export(dynamo=False)",
                              lambda: _export_torch(local, dynamo=False), ruled_out=_branches_on_values)]
    result, route = convert_by_routes(routes, lambda e, log: explain(e, log, ctx), before_retry=clear)
    result.route = route
    _with_sidecars(result, _place(local.out_path, ctx, move=True))
    return result


def _place(src: Path, ctx: ExportContext, move: bool) -> list[str]:
    """The ONNX file ``src`` and the external data files its tensors name, moved or copied to
    ``ctx.out_path`` and beside it (the same relative locations); returns those locations. A location
    outside ``src``'s directory, a missing file, or one that would take an artifact's name is refused;
    on failure nothing placed is left behind."""
    from deploytool.formats import FORMATS

    try:
        sidecars = onnx_external_data(src)
    except ValueError as e:
        raise RuntimeError(f"ONNX file {src.name}: {e}") from None
    artifacts = {f.artifact_name(ctx.model_name) for f in FORMATS.values()}
    for rel in sidecars:
        if PurePosixPath(rel).parts[0] in artifacts:
            raise RuntimeError(f"ONNX file {src.name}: external data file {rel!r} would take the place of an "
                               "artifact in the bundle (refused; save it under another name)")
    put = shutil.move if move else shutil.copyfile
    try:
        for rel in sidecars:
            (ctx.out_path.parent / rel).parent.mkdir(parents=True, exist_ok=True)
            put(str(src.parent / rel), str(ctx.out_path.parent / rel))
        put(str(src), str(ctx.out_path))  # the .onnx last: it is there only when its data is
    except BaseException:
        _remove_sidecars(ctx, sidecars)
        raise
    return sidecars


def _remove_sidecars(ctx: ExportContext, sidecars: list[str]) -> None:
    """What ``_place`` put beside the artifact (a failed export leaves no file in the bundle)."""
    for rel in sidecars:
        path = ctx.out_path.parent / rel
        path.unlink(missing_ok=True)
        for d in path.parents[:len(PurePosixPath(rel).parts) - 1]:  # directories made for nested locations
            if d.is_dir() and not any(d.iterdir()):
                os.rmdir(d)


def _with_sidecars(result: ExportResult, sidecars: list[str]) -> None:
    if sidecars:
        result.options[SIDECARS] = sidecars
        result.notes.append(f"external data kept beside the .onnx file: {', '.join(sidecars)}")


def _dynamic_axes(ctx: ExportContext, output_names: list[str]) -> dict[str, dict[int, str]]:
    """The contract's dynamic dims as the TorchScript-based exporter declares them (by tensor name)."""
    dynamic = set(ctx.contract.dynamic_dims())
    axes = {}
    for name, spec in [*zip(ctx.contract.input_names, ctx.contract.inputs), *zip(output_names, ctx.contract.outputs)]:
        named = {i: d for i, d in enumerate(spec.shape) if isinstance(d, str) and d in dynamic}
        if named:
            axes[name] = named
    return axes


def _export_torch(ctx: ExportContext, dynamo: bool) -> ExportResult:
    import onnx
    import torch

    n_params = sum(p.numel() * p.element_size() for p in ctx.model.parameters())
    options = {
        "dynamo": dynamo,
        "opset_version": None,
        "external_data": n_params >= TWO_GB,
        "input_names": ctx.contract.input_names,
        "output_names": ctx.contract.output_names,
        "dynamic_dims": ctx.contract.dynamic_dims(),
    }
    # The dynamo exporter writes an invalid graph when an output name equals a name it
    # generates for an internal value (e.g. an output called "embedding" next to an
    # aten.embedding node: "Graph must be in SSA form"; pytorch/pytorch#158094, #168211).
    # Export under collision-proof placeholder names and rename afterwards (both routes, so the
    # renaming, and what the graph calls its outputs, is the same whichever route made it).
    placeholders = [f"deploytool_output_{i}" for i in range(len(options["output_names"]))]
    if dynamo:
        torch.onnx.export(
            ctx.model, ctx.example_inputs, str(ctx.out_path),
            input_names=options["input_names"], output_names=placeholders,
            dynamic_shapes=_dynamic_shapes(ctx), external_data=options["external_data"],
            dynamo=True, verbose=False,
        )
    else:
        # It traces as torch.jit.trace does, so it can freeze shape arithmetic just as silently: the
        # same trace, checked at the second input shape, refuses such a model before exporting it.
        options["checked_at_shapes"] = trace_checked(ctx)[2]
        torch.onnx.export(
            ctx.model, ctx.example_inputs, str(ctx.out_path),
            input_names=options["input_names"], output_names=placeholders,
            dynamic_axes=_dynamic_axes(ctx, placeholders), opset_version=LEGACY_OPSET,
            dynamo=False, verbose=False,
        )
    model = onnx.load(str(ctx.out_path), load_external_data=False)
    rename_io(model.graph, dict(zip(placeholders, options["output_names"])))
    onnx.save(model, str(ctx.out_path))
    options["opset_version"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    onnx.checker.check_model(str(ctx.out_path), full_check=True)
    contract = onnx_contract(ctx, ctx.out_path)
    if contract.fixed_dims:
        fixed = ", ".join(f"{d!r} to {v}" for d, v in contract.fixed_dims.items())
        which = "torch.export" if dynamo else "the TorchScript-based exporter"
        raise RuntimeError(f"{which} specialised dynamic dim {fixed} (shape-dependent Python logic, e.g. "
                           "int()/float() of a size, fixes it); the ONNX graph would only accept that size")
    exporter = None if dynamo else "torch.onnx.export (TorchScript-based, dynamo=False)"
    return ExportResult(contract=contract, exporter_version=f"torch {torch.__version__}, onnx {onnx.__version__}",
                        options=options, exporter=exporter)


def from_onnx_file(ctx: ExportContext) -> ExportResult:
    """The source is an .onnx file: the artifact is that file, checked, byte for byte (its external data
    files too, copied beside it)."""
    import onnx

    sidecars = _place(ctx.source_file(), ctx, move=False)
    try:
        onnx.checker.check_model(str(ctx.out_path), full_check=True)
        model = onnx.load(str(ctx.out_path), load_external_data=False)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        result = ExportResult(contract=onnx_contract(ctx, ctx.out_path), exporter_version=f"onnx {onnx.__version__}",
                              options={"copied_from": str(ctx.source_path), "opset_version": opset},
                              exporter="source file (onnx.checker)")
    except BaseException:
        _remove_sidecars(ctx, sidecars)  # export removes the .onnx itself
        raise
    _with_sidecars(result, sidecars)
    return result


TF2ONNX_OPSET = 17


def from_savedmodel(ctx: ExportContext) -> ExportResult:
    """tf2onnx from the SavedModel artifact's serving signature (a TensorFlow source).

    This is what ``python -m tf2onnx.convert --saved-model`` does (tf2onnx 1.17 has no public
    from_saved_model function); its public ``from_function`` sets continue_on_error=True, which
    would write TF ops it cannot map into the ONNX graph instead of failing.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    graph_def, inputs, outputs, tables, rename = tf_loader.from_saved_model(
        str(ctx.parent_path), None, None, None, ["serving_default"], None, False,
        return_initialized_tables=True, return_tensors_to_rename=True)
    with tf.device("/cpu:0"):
        model, _ = _convert_common(graph_def, name=ctx.model_name, opset=TF2ONNX_OPSET, input_names=inputs,
                                   output_names=outputs, tensors_to_rename=rename, initialized_tables=tables,
                                   continue_on_error=False)
    # tf2onnx only logs TF ops it has no mapping for ("Unsupported ops: ...") and leaves them in.
    unknown = sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and
                      not onnx.defs.has(n.op_type)})
    if unknown:
        raise RuntimeError(f"tf2onnx has no ONNX mapping for TF op(s) {', '.join(unknown)}")
    # tf2onnx lists a signature's inputs and outputs by name (a signature is a dict); the graph must
    # list them in the contract's order, which positional consumers rely on (validate checks it).
    parent = ctx.parent()[1]
    _order_io(model.graph, [s.feed_name for s in parent.inputs], [s.feed_name for s in parent.outputs])
    onnx.save(model, str(ctx.out_path))
    onnx.checker.check_model(str(ctx.out_path), full_check=True)
    contract = onnx_contract(ctx, ctx.out_path, by_name=parent)
    return ExportResult(contract=contract, exporter_version=f"tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}",
                        options={"from": "saved_model", "signature": "serving_default", "opset_version": TF2ONNX_OPSET},
                        notes=[f"fixed dim {d!r} = {v}" for d, v in contract.fixed_dims.items()])


def explain_tf2onnx(exc: BaseException, log: str, ctx: ExportContext) -> str:
    if str(exc).startswith("tf2onnx"):
        return str(exc)[:300]
    ops = re.findall(r"Tensorflow op \[[^:\]]+: (\w+)\] is not supported", log)
    if ops:
        return f"tf2onnx has no ONNX mapping for TF op(s) {', '.join(sorted(set(ops)))}: {short_error(exc)}"
    return f"tf2onnx: {short_error(exc)}"


def _branches_on_values(dynamo_error: BaseException) -> str | None:
    """torch.export refuses a branch on tensor values; the TorchScript-based exporter would trace it
    instead and freeze the branch the example inputs take: an ONNX file that is wrong for other data,
    which a check passes whenever the golden samples all take that branch. Not a fallback."""
    if re.search(r"GuardOnDataDependentSymNode|data-dependent", str(dynamo_error)):
        return ("the model branches on tensor values (data-dependent control flow), which tracing would freeze "
                "into the branch the example inputs take")
    return None


def explain(exc: BaseException, log: str, ctx: ExportContext) -> str:
    # torch.onnx wraps torch.export's failure; the underlying cause is quoted as "<class 'X'>: msg".
    text = str(exc)
    cause = re.search(r"<class '([\w.]+)'>: ([^\n]+)", text)
    if cause:
        return f"torch.export failed: {cause.group(1).rsplit('.', 1)[-1]}: {cause.group(2)[:300]}"
    m = re.search(r"(Unsupported|GuardOnDataDependentSymNode|Could not guard on data-dependent[^\n]*|"
                  r"Constraints violated[^\n]*|No decompositions registered[^\n]*|"
                  r"does not support[^\n]*)", text)
    if m:
        return f"{type(exc).__name__}: {m.group(0)[:300]}"
    return short_error(exc)


FORMAT = Format(
    name="onnx",
    description="ONNX (torch.onnx.export: dynamo, else TorchScript-based), for onnxruntime and most inference engines",
    suffix=".onnx",
    parent=None,
    precision="fp32",
    tier="fp32",
    runtimes=("onnxruntime",),
    stage="torch",
    exporter="torch.onnx.export",
    requires=("onnx",),
    convert=from_torch,
    explain=explain,
    routes={"onnx": Route(parent=None, stage="onnx", exporter="source file (onnx.checker)", convert=from_onnx_file,
                          description="ONNX (the source .onnx file itself, checked with onnx.checker)"),
            "tensorflow": Route(parent="savedmodel", stage="tensorflow", exporter="tf2onnx", convert=from_savedmodel,
                                requires=("tf2onnx", "onnx", "tensorflow"), explain=explain_tf2onnx,
                                description="ONNX (tf2onnx from the SavedModel), for onnxruntime")},
)
