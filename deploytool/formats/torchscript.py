"""TorchScript via ``torch.jit.trace``, checked at a second input shape.

Tracing records the ops run for the example inputs; Python control flow and shape arithmetic
turn into constants. Re-running the trace at the contract's ``alt`` dim sizes and comparing with
eager mode catches a trace that baked in a shape (torch.jit.trace is deprecated in torch 2.x in
favour of torch.export, but it is still the only way to produce a TorchScript file).
"""
from __future__ import annotations

import warnings

from deploytool.contract import Contract
from deploytool.formats import ExportContext, ExportResult, Format


def from_torch(ctx: ExportContext) -> ExportResult:
    import torch

    traced, notes, checked_at = trace_checked(ctx)
    traced.save(str(ctx.out_path))
    # Same names, order, layout and dtypes as the source; a traced module takes inputs by
    # position and returns outputs by position, which the runtime names output_0..N.
    contract = Contract.from_dict(ctx.contract.to_dict())
    for i, spec in enumerate(contract.outputs):
        spec.artifact_name = f"output_{i}"
    return ExportResult(contract=contract, exporter_version=torch.__version__,
                        options={"method": "trace", "strict": False, "checked_at_shapes": checked_at}, notes=notes)


def trace_checked(ctx: ExportContext):
    """``torch.jit.trace`` of the model, its tracer warnings as notes, and the second input shape it was
    checked at against eager mode (a trace that baked in a shape raises; the TorchScript-based ONNX
    exporter traces the same way and checks with this too)."""
    import torch

    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            traced = torch.jit.trace(ctx.model, ctx.example_inputs, check_trace=False, strict=False)
    notes += sorted({f"tracer: {str(w.message).splitlines()[0][:200]}" for w in caught
                     if issubclass(w.category, torch.jit.TracerWarning)})
    checked_at = None
    if ctx.alt_inputs:
        with torch.no_grad():
            expected = ctx.model(*ctx.alt_inputs)
            try:
                got = traced(*ctx.alt_inputs)
            except Exception as e:  # noqa: BLE001 - re-raised with the reason
                raise RuntimeError(f"trace fails at a second input shape "
                                   f"{[tuple(t.shape) for t in ctx.alt_inputs]}: {str(e).splitlines()[0]}") from e
        exp = expected if isinstance(expected, (tuple, list)) else (expected,)
        act = got if isinstance(got, (tuple, list)) else (got,)
        for name, e_t, a_t in zip(ctx.contract.output_names, exp, act):
            if tuple(e_t.shape) != tuple(a_t.shape):
                diff = f"shape {tuple(a_t.shape)} where eager gives {tuple(e_t.shape)}"
            elif not torch.allclose(e_t, a_t, rtol=1e-4, atol=1e-5):
                diff = f"values off by up to {float((e_t - a_t).abs().max()):.3g}"
            else:
                continue
            raise RuntimeError(
                f"trace baked in an input shape: at inputs {[tuple(t.shape) for t in ctx.alt_inputs]} output "
                f"{name!r} has {diff}; the model has shape-dependent Python logic that tracing froze")
        checked_at = [list(t.shape) for t in ctx.alt_inputs]
    return traced, notes, checked_at


FORMAT = Format(
    name="torchscript",
    description="TorchScript (torch.jit.trace), for libtorch / PyTorch Mobile",
    suffix=".torchscript.pt",
    parent=None,
    precision="fp32",
    tier="fp32",
    runtime="torchscript",
    stage="torch",
    exporter="torch.jit.trace",
    requires=("torch",),
    convert=from_torch,
)
