"""ExecuTorch int8 (``.pte``): pt2e post-training quantisation with the XNNPACK quantizer (symmetric int8,
per-channel weights, activations calibrated on the calibration data the other int8 formats use), then the
same lowering as ``executorch``. Inputs and outputs stay float, so it takes the ``executorch`` feeds."""
from __future__ import annotations

from deploytool.core.contract import Contract
from deploytool.formats import ExportContext, ExportResult, Format
from deploytool.formats.executorch import export_checked, exported, lowered, written


def _quantized_program(ctx: ExportContext, contract: Contract, feeds: list[dict]):
    """Export, insert observers, run the calibration samples, convert to int8, export again and lower."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(exported(ctx, ctx.model, contract).module(), quantizer)
    with torch.no_grad():
        for feed in feeds:
            prepared(*[torch.from_numpy(feed[name]) for name in contract.input_names])
    return lowered(exported(ctx, convert_pt2e(prepared), contract))


def convert(ctx: ExportContext) -> ExportResult:
    feeds = ctx.calibration_feeds(ctx.contract)
    program, contract, notes, options = export_checked(ctx, lambda c: _quantized_program(ctx, c, feeds))
    return written(ctx, program, contract, notes, {
        "quantizer": "XNNPACKQuantizer", "config": "symmetric int8, per-channel weights",
        "calibration_samples": len(feeds), **options})


FORMAT = Format(
    name="executorch_int8",
    description="ExecuTorch .pte int8 (pt2e, XNNPACK quantizer, calibrated), PyTorch's edge runtime",
    suffix="_int8.pte",
    parent=None,
    precision="int8",
    tier="int8",
    runtimes=("executorch",),
    stage="torch",
    exporter="torchao pt2e + executorch.exir.to_edge_transform_and_lower",
    requires=("torch", "executorch", "torchao"),
    convert=convert,
    needs_calibration=True,
    compare_to="executorch",
)
