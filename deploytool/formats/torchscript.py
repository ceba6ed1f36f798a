"""TorchScript via ``torch.jit.trace``, checked at a second input shape, frozen for inference.

Tracing records the ops run for the example inputs; Python control flow and shape arithmetic
turn into constants. Re-running the trace at the contract's ``alt`` dim sizes and comparing with
eager mode catches a trace that baked in a shape (torch.jit.trace is deprecated in torch 2.x in
favour of torch.export, but it is still the only way to produce a TorchScript file).

The saved module is frozen (``torch.jit.freeze``: parameters and attributes inlined as constants,
submodules gone), checked against eager mode at both shapes like the trace. The runtime applies
``torch.jit.optimize_for_inference`` at load (conv-bn folding, oneDNN layouts): an optimized
module cannot be saved and reloaded (pytorch/pytorch#69608), so it is freeze at export, optimize
at load; export verifies that optimizing works here and records it in ``load_settings``, which
every later load (validate, bench) follows. Where freezing or optimizing fails or changes the
outputs, the artifact falls back (saved unfrozen / loaded unoptimized) and a note says why.
"""
from __future__ import annotations

import warnings

from deploytool.contract import Contract
from deploytool.formats import ExportContext, ExportResult, Format

# Freezing and optimizing fold batch norms into convolutions: not bit-exact, so compared with
# eager at the fp32 tier's tolerances (parity.TIERS["fp32"]).
_ATOL, _RTOL = 1e-4, 1e-4


def _mismatch(model, candidate, inputs, atol: float, rtol: float, names: list[str]) -> str | None:
    """Why ``candidate`` does not compute what ``model`` does on ``inputs`` (None when it does)."""
    import torch

    with torch.no_grad():
        expected = model(*inputs)
        got = candidate(*inputs)
    exp = expected if isinstance(expected, (tuple, list)) else (expected,)
    act = got if isinstance(got, (tuple, list)) else (got,)
    if len(exp) != len(act):
        return f"{len(act)} outputs where eager gives {len(exp)}"
    for name, e_t, a_t in zip(names, exp, act):
        if tuple(e_t.shape) != tuple(a_t.shape):
            return f"output {name!r} has shape {tuple(a_t.shape)} where eager gives {tuple(e_t.shape)}"
        if not torch.allclose(e_t, a_t, rtol=rtol, atol=atol):
            return f"output {name!r} values off by up to {float((e_t - a_t).abs().max()):.3g}"
    return None


def _shapes(inputs) -> list:
    return [tuple(t.shape) for t in inputs]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _checked(ctx: ExportContext, candidate, what: str) -> str | None:
    """Why ``candidate`` (frozen / optimized) differs from eager at the example or the alt shape."""
    names = ctx.contract.output_names
    for inputs in (ctx.example_inputs, ctx.alt_inputs):
        if not inputs:
            continue
        try:
            why = _mismatch(ctx.model, candidate, inputs, _ATOL, _RTOL, names)
        except Exception as e:  # noqa: BLE001 - a failure to run is a reason to fall back
            why = f"raised {type(e).__name__}: {_first_line(e)}"
        if why:
            return f"{what} at inputs {_shapes(inputs)}: {why}"
    return None


def from_torch(ctx: ExportContext) -> ExportResult:
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
        try:
            why = _mismatch(ctx.model, traced, ctx.alt_inputs, 1e-5, 1e-4, ctx.contract.output_names)
        except Exception as e:  # noqa: BLE001 - re-raised with the reason
            raise RuntimeError(f"trace fails at a second input shape {_shapes(ctx.alt_inputs)}: "
                               f"{str(e).splitlines()[0]}") from e
        if why:
            raise RuntimeError(f"trace baked in an input shape: at inputs {_shapes(ctx.alt_inputs)} {why}; the model "
                               "has shape-dependent Python logic that tracing froze")
        checked_at = [list(t.shape) for t in ctx.alt_inputs]
    module, frozen = traced, False
    if ctx.options.get("freeze", True):
        try:
            candidate = torch.jit.freeze(traced.eval())
            why = _checked(ctx, candidate, "the frozen module differs from eager")
        except Exception as e:  # noqa: BLE001 - freezing rejects some modules: fall back, say why
            why = f"torch.jit.freeze failed: {_first_line(e)}"
        if why:
            notes.append(f"not frozen (saved as traced): {why}")
        else:
            module, frozen = candidate, True
    module.save(str(ctx.out_path))
    optimize = False
    if ctx.options.get("optimize", True):
        # What the runtime will do at load, on the saved file itself.
        try:
            optimized = torch.jit.optimize_for_inference(torch.jit.load(str(ctx.out_path), map_location="cpu").eval())
            why = _checked(ctx, optimized, "the optimized module differs from eager")
        except Exception as e:  # noqa: BLE001 - fall back to the plain module at load, say why
            why = f"torch.jit.optimize_for_inference failed: {_first_line(e)}"
        if why:
            notes.append(f"not optimized at load: {why}")
        else:
            optimize = True
    # Same names, order, layout and dtypes as the source; a traced module takes inputs by
    # position and returns outputs by position, which the runtime names output_0..N.
    contract = Contract.from_dict(ctx.contract.to_dict())
    for i, spec in enumerate(contract.outputs):
        spec.artifact_name = f"output_{i}"
    return ExportResult(contract=contract, exporter_version=torch.__version__,
                        options={"method": "trace", "strict": False, "checked_at_shapes": checked_at,
                                 "frozen": frozen, "load_settings": {"optimize_for_inference": optimize}},
                        notes=notes)


FORMAT = Format(
    name="torchscript",
    description="TorchScript (torch.jit.trace + torch.jit.freeze), for libtorch / PyTorch Mobile",
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
