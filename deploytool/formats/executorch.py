"""ExecuTorch (``.pte``), PyTorch's own edge runtime: ``torch.export`` of the model, then
``executorch.exir.to_edge_transform_and_lower`` with the XNNPACK partitioner (the CPU backend
ExecuTorch ships for Arm and x86), then ``to_executorch()`` and its buffer written as the file.

Dynamic dims: torch.export specialises a dim whose example size is 0 or 1, so a dim is exported
dynamic only where its example size is at least 2; the others are fixed at their example size
(``contract.fixed_dims``, with a note). Where torch.export refuses the dynamic dims, the route
``static`` exports every dim at the main golden set's size (batch 1). Export runs the program at the
alt inputs: exir can plan an op's output static at the example size while the input stays dynamic,
which fails at any other size (then ``static`` too). ExecuTorch plans memory for a dynamic dim up to
an upper bound, which may be below the contract's ``max`` (executorch 1.5.1 with torch 2.13 bounds
digits_cnn's batch at 15 whatever ``max`` says): the planned bound is read back from the program
and recorded as the artifact's ``max`` for that dim, with a note, since a larger size fails to run.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from deploytool.core.contract import Contract
from deploytool.formats import ConversionRoute, ExportContext, ExportResult, Format, convert_by_routes
from deploytool.formats.onnx import _dynamic_shapes
from deploytool.formats.savedmodel import fixed_dims_note

MIN_DYNAMIC = 2  # torch.export specialises a dim whose example size is 0 or 1 (its "0/1 specialisation")


def _with_fixed(contract: Contract, fixed: dict[str, int]) -> Contract:
    """A copy of ``contract`` with ``fixed`` added to its fixed dims."""
    out = Contract.from_dict(contract.to_dict())
    out.fixed_dims = {**out.fixed_dims, **fixed}
    return out


def exported(ctx: ExportContext, model: Any, contract: Contract):
    """``torch.export`` of ``model`` at the example inputs (cut to the sizes ``contract`` fixed), with
    ``contract``'s dynamic dims dynamic."""
    import torch

    shapes = _dynamic_shapes(dataclasses.replace(ctx, contract=contract))
    with torch.no_grad():
        return torch.export.export(model, example_inputs(ctx, contract), dynamic_shapes=shapes)


def example_inputs(ctx: ExportContext, contract: Contract) -> tuple:
    """The example inputs, each dim ``contract`` fixed below its example size cut to that size."""
    out = []
    for spec, t in zip(contract.inputs, ctx.example_inputs):
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, str) and contract.fixed_dims.get(dim, t.shape[axis]) < t.shape[axis]:
                t = t.narrow(axis, 0, contract.fixed_dims[dim])
        out.append(t)
    return tuple(out)


def _runs_at_alt(ctx: ExportContext, program, contract: Contract) -> None:
    """Raise where the program does not run at the alt inputs: exir can leave an op's output planned static at
    the example size (tiny_transformer's mean: (2, 64)), so an input that takes any size fails at run time."""
    if not ctx.alt_inputs or not contract.dynamic_dims():
        return
    from executorch.runtime import Runtime

    try:
        Runtime.get().load_program(program.buffer).load_method("forward").execute(list(ctx.alt_inputs))
    except RuntimeError as e:
        raise RuntimeError(f"the program does not run at the alt inputs {[list(t.shape) for t in ctx.alt_inputs]} "
                           f"({e}); ExecuTorch's log says which op") from e


def export_checked(ctx: ExportContext, to_program) -> tuple[Any, Contract, list[str], dict]:
    """``to_program(contract)`` (an ExecuTorch program manager) through the routes ``dynamic`` then ``static``:
    (the program, the artifact's contract, notes, options). The contract has the source's names and order;
    outputs are positional (``output_0``..), as the runtime returns them."""
    sizes = ctx.contract.dim_sizes("example")
    too_small = {d: sizes[d] for d in ctx.contract.dynamic_dims() if sizes[d] < MIN_DYNAMIC}
    dynamic = _with_fixed(ctx.contract, too_small)
    golden = ctx.contract.dim_sizes("example", batch_one=True)  # the main golden set's sizes
    static = _with_fixed(ctx.contract, {d: golden[d] for d in ctx.contract.dynamic_dims()})

    def checked(contract: Contract):
        program = to_program(contract)
        _runs_at_alt(ctx, program, contract)
        return program, contract

    routes = [ConversionRoute("dynamic", "dynamic dims kept", lambda: checked(dynamic))]
    if dynamic.dynamic_dims():
        routes.append(ConversionRoute("static", "every dim fixed at the golden inputs' size",
                                      lambda: checked(static)))
    (program, contract), route = convert_by_routes(routes, lambda e, printed: f"{type(e).__name__}: {e}")
    notes = []
    if too_small:
        notes.append(fixed_dims_note(too_small, f"torch.export keeps a dim dynamic only from an example size of "
                                                f"{MIN_DYNAMIC}; export with a larger example to keep it dynamic"))
    if route.failed:
        newly = {d: v for d, v in contract.fixed_dims.items() if d not in dynamic.fixed_dims}
        notes.append(fixed_dims_note(newly, f"the dynamic export failed: {route.failed[0]}"))
    notes += _record_bounds(program, contract)
    for i, spec in enumerate(contract.outputs):
        spec.artifact_name = f"output_{i}"
    return program, contract, notes, {"route": route.name, "fixed_dims": dict(contract.fixed_dims)}


def _record_bounds(program, contract: Contract) -> list[str]:
    """Set each dynamic dim's ``max`` to the size ExecuTorch planned memory for (read from the program's
    input specs); a note where that is below what the contract allowed."""
    placeholders = [n for n in program.exported_program().graph.nodes if n.op == "placeholder"]
    planned = dict(zip(contract.input_names, [n.meta.get("spec") for n in placeholders[-len(contract.inputs):]]))
    notes = []
    for spec in contract.inputs:
        tensor = planned.get(spec.name)
        for dim, bound in zip(spec.shape, getattr(tensor, "shape", None) or ()):
            if not isinstance(dim, str) or dim in contract.fixed_dims:
                continue
            allowed = contract.dims[dim].get("max")
            if allowed is None or int(bound) < int(allowed):
                contract.dims[dim]["max"] = int(bound)
                notes.append(f"dim {dim} up to {int(bound)}: ExecuTorch planned its memory for that size"
                             + (f" (the source allows {allowed})" if allowed is not None else ""))
    return sorted(set(notes))


def lowered(exported_program):
    """The XNNPACK-lowered ExecuTorch program of a ``torch.export`` program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(exported_program, partitioner=[XnnpackPartitioner()]).to_executorch()


def written(ctx: ExportContext, program, contract: Contract, notes: list[str], options: dict) -> ExportResult:
    """Write ``program``'s buffer to the artifact path and say what was made."""
    from importlib.metadata import version

    import torch

    ctx.out_path.write_bytes(program.buffer)
    return ExportResult(contract=contract, notes=notes, options={"partitioner": "XnnpackPartitioner", **options},
                        exporter_version=f"executorch {version('executorch')}, torch {torch.__version__}")


def convert(ctx: ExportContext) -> ExportResult:
    program, contract, notes, options = export_checked(ctx, lambda c: lowered(exported(ctx, ctx.model, c)))
    return written(ctx, program, contract, notes, options)


FORMAT = Format(
    name="executorch",
    description="ExecuTorch .pte (torch.export, XNNPACK delegate), PyTorch's edge runtime",
    suffix=".pte",
    parent=None,
    precision="fp32",
    tier="fp32",
    runtimes=("executorch",),
    stage="torch",
    exporter="executorch.exir.to_edge_transform_and_lower",
    requires=("torch", "executorch"),
    convert=convert,
)
