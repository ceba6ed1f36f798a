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

from deploytool.core.contract import Contract
from deploytool.core.errors import short_error
from deploytool.formats import ExportContext, ExportResult, Format

# Freezing and optimizing fold batch norms into convolutions: not bit-exact, so compared with
# eager at the fp32 tier's tolerances (parity.TIERS["fp32"]).
_ATOL, _RTOL = 1e-4, 1e-4
# optimize_for_inference moves convolutions to oneDNN (mkldnn) tensors: faster on real images
# (mobilenet_v2 at 224x224, 1 thread: 12.9 -> 10.3 ms), ~20x slower on tiny ones (digits_cnn, 8x8:
# 0.05 -> 1 ms), where converting to and from the oneDNN layout costs more than the convolution.
# Export times both on one sample of the example inputs (1 thread, interleaved) and keeps it only
# when it is not clearly slower.
_SLOWER = 1.2  # optimized / plain per-call time above which optimizing is dropped
_TIMING_S = 0.2  # per module, in 5 interleaved rounds (after a warm-up of >= 10 calls)


def _per_call_ms(modules: list, inputs) -> list[float]:
    """Median per-call time (ms) of each module on ``inputs``, interleaved, 1 thread."""
    import statistics
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for m in modules:  # warm-up: the profiling executor profiles, then specialises and fuses
                calls, t0 = 0, time.perf_counter()
                while calls < 10 or time.perf_counter() - t0 < _TIMING_S / 4:
                    m(*inputs)
                    calls += 1
            rounds: list[list[float]] = [[] for _ in modules]
            for _ in range(5):
                for m, sink in zip(modules, rounds):
                    calls, t0 = 0, time.perf_counter()
                    while calls < 2 or time.perf_counter() - t0 < _TIMING_S / 5:
                        m(*inputs)
                        calls += 1
                    sink.append((time.perf_counter() - t0) / calls * 1e3)
    finally:
        torch.set_num_threads(threads)
    return [statistics.median(r) for r in rounds]


def _mismatch(expected, candidate, inputs, atol: float, rtol: float, names: list[str]) -> str | None:
    """Why ``candidate`` does not compute ``expected`` (eager's outputs) on ``inputs`` (None when it does)."""
    import torch

    with torch.no_grad():
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


def _checked(ctx: ExportContext, eager: list, candidate, what: str) -> str | None:
    """Why ``candidate`` (frozen / optimized) differs from eager at the example or the alt shape."""
    names = ctx.contract.output_names
    for inputs, expected in zip((ctx.example_inputs, ctx.alt_inputs), eager):
        if not inputs:
            continue
        try:
            why = _mismatch(expected, candidate, inputs, _ATOL, _RTOL, names)
        except Exception as e:  # noqa: BLE001 - a failure to run is a reason to fall back
            why = f"raised {short_error(e, 200)}"
        if why:
            return f"{what} at inputs {_shapes(inputs)}: {why}"
    return None


def from_torch(ctx: ExportContext) -> ExportResult:
    import torch

    traced, notes, checked_at, eager = trace_checked(ctx)
    module, frozen = traced, False
    if ctx.options.get("freeze", True):
        try:
            candidate = torch.jit.freeze(traced.eval())
            why = _checked(ctx, eager, candidate, "the frozen module differs from eager")
        except Exception as e:  # noqa: BLE001 - freezing rejects some modules: fall back, say why
            why = f"torch.jit.freeze failed: {short_error(e, 200)}"
        if why:
            notes.append(f"not frozen (saved as traced): {why}")
        else:
            module, frozen = candidate, True
    module.save(str(ctx.out_path))
    optimize, timing = False, None
    if ctx.options.get("optimize", True):
        # What the runtime will do at load, on the saved file itself.
        try:
            optimized = torch.jit.optimize_for_inference(torch.jit.load(str(ctx.out_path), map_location="cpu").eval())
            why = _checked(ctx, eager, optimized, "the optimized module differs from eager")
        except Exception as e:  # noqa: BLE001 - fall back to the plain module at load, say why
            why = f"torch.jit.optimize_for_inference failed: {short_error(e, 200)}"
        if not why:
            plain = torch.jit.load(str(ctx.out_path), map_location="cpu").eval()  # as the runtime loads it
            # One sample, as bench and a serving process call it (a dynamic first dim is the batch).
            sample = tuple(t[:1] if spec.shape and isinstance(spec.shape[0], str) else t
                           for spec, t in zip(ctx.contract.inputs, ctx.example_inputs))
            plain_ms, optimized_ms = _per_call_ms([plain, optimized], sample)
            timing = {"plain_ms": round(plain_ms, 4), "optimized_ms": round(optimized_ms, 4)}
            if optimized_ms > _SLOWER * plain_ms:
                why = (f"torch.jit.optimize_for_inference made it slower here ({optimized_ms:.3g} vs {plain_ms:.3g} "
                       "ms per call on one example sample, 1 thread)")
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
                                 "frozen": frozen, "load_settings": {"optimize_for_inference": optimize},
                                 "optimize_timing": timing},
                        notes=notes)


def trace_checked(ctx: ExportContext):
    """``torch.jit.trace`` of the model, its tracer warnings as notes, the second input shape it was
    checked at against eager mode, and eager's outputs at both shapes (a trace that baked in a shape
    raises; the TorchScript-based ONNX exporter traces the same way and checks with this too)."""
    import torch

    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            traced = torch.jit.trace(ctx.model, ctx.example_inputs, check_trace=False, strict=False)
    notes += sorted({f"tracer: {str(w.message).splitlines()[0][:200]}" for w in caught
                     if issubclass(w.category, torch.jit.TracerWarning)})
    with torch.no_grad():  # eager's outputs at both shapes, computed once for every check below
        eager = [ctx.model(*inputs) if inputs else None for inputs in (ctx.example_inputs, ctx.alt_inputs)]
    checked_at = None
    if ctx.alt_inputs:
        try:
            why = _mismatch(eager[1], traced, ctx.alt_inputs, 1e-5, 1e-4, ctx.contract.output_names)
        except Exception as e:  # noqa: BLE001 - re-raised with the reason
            raise RuntimeError(f"trace fails at a second input shape {_shapes(ctx.alt_inputs)}: "
                               f"{str(e).splitlines()[0]}") from e
        if why:
            raise RuntimeError(f"trace baked in an input shape: at inputs {_shapes(ctx.alt_inputs)} {why}; the model "
                               "has shape-dependent Python logic that tracing froze")
        checked_at = [list(t.shape) for t in ctx.alt_inputs]
    return traced, notes, checked_at, eager


FORMAT = Format(
    name="torchscript",
    description="TorchScript (torch.jit.trace + torch.jit.freeze), for libtorch / PyTorch Mobile",
    suffix=".torchscript.pt",
    parent=None,
    precision="fp32",
    tier="fp32",
    runtimes=("torchscript",),
    stage="torch",
    exporter="torch.jit.trace",
    requires=("torch",),
    convert=from_torch,
)
