"""``deploytool export``: export a model to every format into a verified bundle."""
from __future__ import annotations

import sys

import click

from deploytool.checking.golden import CALIB_RECOMMENDED
from deploytool.cli.options import (
    CONTEXT,
    Command,
    accept_constant_option,
    accuracy_option,
    config_option,
    format_option,
    gate_families_option,
    github_option,
    github_output,
    open_progress,
    parse_drops,
    parse_tolerances,
    progress_options,
    runtime_option,
    steps_gate_options,
    strict_option,
    tolerance_options,
)
from deploytool.core.errors import exit_codes_help
from deploytool.results import label
from deploytool.running.jobs import EXPORT_TIMEOUT_S, ArtifactStatus, CheckStatus
from deploytool.targets import split_names


def _formats_help() -> str:
    from deploytool.formats import FORMATS

    lines = [f"  {n:<12} {f.description}" for n, f in FORMATS.items()]
    for framework in sorted({fw for f in FORMATS.values() for fw in f.routes}):
        lines.append(f"  From a {framework} source:")
        lines += [f"  {n:<12} {f.routes[framework].description or f.routes[framework].exporter}"
                  for n, f in FORMATS.items() if framework in f.routes]
    return "\b\nFormats:\n" + "\n".join(lines)


def _models_help() -> str:
    from deploytool.sources import SOURCE_KINDS
    from deploytool.sources.zoo import zoo_names

    kinds = "\n".join(f"  {k.name:<12} {k.description}" for k in SOURCE_KINDS.values())
    return f"\b\nReference models: {', '.join(zoo_names())}\nKinds of --model:\n{kinds}"


@click.command("export", cls=Command, context_settings=CONTEXT,
              epilog=_formats_help() + "\n\n" + _models_help() + "\n\n" + exit_codes_help("export"))
@click.option("--model", "-m", default="digits_cnn", show_default=True,
              help="Reference-zoo name; a .py file written like a zoo module (models/digits_cnn.py); file.py:factory "
                   "or package.module:factory (returns an nn.Module or (module, example_inputs)); an .onnx file (ONNX "
                   "is the source); a .keras file or a SavedModel directory (TensorFlow is the source: ONNX via "
                   "tf2onnx, TorchScript not applicable).")
@format_option("Formats to export, with the parents they need")
@runtime_option("Besides each artifact's own runtime (always checked), check it only on these of the others "
                "that run it (the .onnx on OpenVINO too)")
@click.option("--out", "-o", default="bundles", show_default=True, type=click.Path(file_okay=False),
              help="Directory that receives the bundle (OUT/MODEL/).")
@click.option("--samples", default=16, show_default=True, type=click.IntRange(1, 10000),
              help="Golden samples to store and check every artifact on.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for golden inputs.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE:DTYPE",
              help="Declare a factory's input (repeatable), dims as sizes or names: 'ids:batch x seq:int64'.")
@click.option("--input-range", "input_ranges", multiple=True, metavar="NAME:LOW:HIGH",
              help="Value range [LOW, HIGH) of an input of a factory or model file (.onnx, .keras, SavedModel), "
                   "for golden data (HIGH itself left out; an integer input takes integer LOW and HIGH): "
                   "ids:0:30522.")
@click.option("--weights", type=click.Path(dir_okay=False), help="A state dict for a torch model, loaded with "
              "torch.load(weights_only=True) only; missing/unexpected keys are reported by name.")
@click.option("--keep-layout", is_flag=True,
              help="Keep NCHW inputs in TensorFlow artifacts (default: NHWC as onnx2tf makes them).")
@tolerance_options
@strict_option
@click.option("--calib-data", type=click.Path(dir_okay=False), metavar="FILE.npz",
              help="Calibration inputs for the int8 formats (names as in the contract, rows are samples; "
                   f">= {CALIB_RECOMMENDED} recommended; never the data you validate on). Zoo models bring their own; "
                   "without any, tflite_int8/onnx_int8 are reported NEEDS_DATA (not a failure).")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="onnx_int8's activation calibration (onnxruntime.quantization).")
@click.option("--int8-io", type=click.Choice(["float32", "int8", "uint8"]), default="float32", show_default=True,
              help="tflite_int8's input/output type; integer I/O records its scale and zero point in the contract.")
@click.option("--data", type=click.Path(dir_okay=False), metavar="FILE.npz",
              help="Labelled data for task accuracy: inputs as in the contract plus 'labels' (one class per "
                   "sample; 'labels:OUTPUT' names the output). Kept in the bundle; digits_cnn brings its own.")
@click.option("--families", "families", multiple=True, metavar="FAMILY[,FAMILY]",
              help="Input families to add to the golden data, each judged with its own verdict: 'perturbed' (the "
                   "model's own or --data inputs scaled, noised and, for images, contrast-changed and flipped, "
                   "clipped to the range) and 'edge' (zero or the range's midpoint, every range's ends, the largest "
                   "declared dims); 'all' "
                   "(repeatable or comma-separated). Off by default. See docs/families.md.")
@gate_families_option
@click.option("--freeze/--no-freeze", default=True, show_default=True,
              help="Save the TorchScript artifact frozen (torch.jit.freeze; falls back to unfrozen, with a note, "
                   "where freezing fails or changes the outputs).")
@click.option("--optimize/--no-optimize", default=True, show_default=True,
              help="Load the TorchScript artifact with torch.jit.optimize_for_inference (validate and bench too; "
                   "recorded in the manifest's load_settings after export checked it).")
@accuracy_option
@accept_constant_option
@click.option("--feedback", multiple=True, metavar="OUT->IN[:argmax]",
              help="Multi-step check of a stateful model (repeatable or comma-separated): step t+1's input IN is step "
                   "t's output OUT (same shape and dtype), or with :argmax the argmax over OUT's last axis (greedy "
                   "token). Each artifact runs --steps steps with its own outputs fed back and is compared with the "
                   "source's trajectory. A model file may declare FEEDBACK = {'OUT': 'IN[:argmax]'} instead (a "
                   "--config TOML takes that table form too).")
@click.option("--steps", type=int, default=None, metavar="N",
              help="Steps of the multi-step check (default 32, or the model file's STEPS).")
@steps_gate_options
@click.option("--oracle", type=click.Choice(["float64", "none"]), default=None,
              help="float64: also run the source in float64 on every golden set (torch and ONNX sources; stored "
                   "as golden/oracle*.npz) and judge the fp32 tier by each artifact's error against it, per sample "
                   "at most 10x the fp32 reference's own (docs/oracle.md). Default: the fixed fp32 tier "
                   "(atol=rtol=1e-4).")
@click.option("--sign", type=click.Path(dir_okay=False), metavar="KEY.pem",
              help="Sign the bundle's content (manifest, artifacts, golden data) with this EC private key "
                   "(OpenSSF model-signing, offline) into BUNDLE/signature.sig; check with validate --verify.")
@click.option("--timeout", type=float, default=EXPORT_TIMEOUT_S, show_default=True, metavar="SECONDS",
              help="Time limit for each worker step (loading the source, one format's conversion, one check): a "
                   "step still running is killed and reported as that step's failure; the others go on.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON instead of the table.")
@progress_options
@github_option
@config_option
@click.option("--debug", is_flag=True, help="Show tracebacks, where the worker logs are, and every step.")
def export_command(model, formats, atol, rtol, max_accuracy_drop, as_json, wide, quiet, github, debug, **options):
    """Export MODEL to every format into a verified bundle.

    Writes OUT/MODEL/ atomically (an interrupted export leaves the previous bundle or none),
    then loads each artifact on every runtime that runs it (TorchScript on torch, ONNX on
    onnxruntime and OpenVINO, SavedModel on TensorFlow, TFLite on the LiteRT interpreter, the
    OpenVINO IR on OpenVINO) and compares its outputs with the source model's on the golden
    inputs. Converter output goes to OUT/MODEL/logs/.
    """
    import json

    from deploytool import api

    # the other parameters are ExportOptions fields by name (out, samples, seed, inputs, ..., timeout)
    options["runtimes"] = split_names(options["runtimes"]) or None
    opts = api.ExportOptions(formats=split_names(formats) or None, tolerances=parse_tolerances(atol, rtol),
                             max_accuracy_drop=parse_drops(max_accuracy_drop), **options)
    with open_progress(debug, quiet) as progress:
        outcome = api.export(model, opts, progress=progress)
    if as_json:
        click.echo(json.dumps(outcome.manifest.to_json(), indent=2, default=str))
    else:
        from deploytool.report.console import export_table

        for msg in outcome.messages:
            click.echo(f"note: {msg}")
        click.echo(f"model {outcome.manifest.model.name}: bundle {outcome.bundle}  ({outcome.seconds:.1f} s)")
        click.echo(export_table(outcome.manifest, outcome.checks, wide))
    model = outcome.manifest.model.name
    for name, rec in outcome.manifest.artifacts.items():
        if rec.status == ArtifactStatus.FAILED:
            click.echo(f"deploytool: error: {model}/{name}: export failed: {rec.error}", err=True)
    for chk in outcome.checks.values():  # one line per target (an artifact on one of its runtimes)
        name = label(chk, outcome.checks)
        if chk.status in (CheckStatus.FAIL, CheckStatus.ERROR, CheckStatus.VACUOUS):
            click.echo(f"deploytool: error: {model}/{name}: {chk.reason}", err=True)
        elif chk.status == CheckStatus.CONSTANT_ACCEPTED:
            click.echo(f"deploytool: warning: {model}/{name}: {chk.reason}", err=True)
        elif chk.coverage:  # a PASS on weakly covered inputs (--strict: exit 7)
            click.echo(f"deploytool: warning: {model}/{name}: {chk.coverage}", err=True)
    if debug and outcome.exit_code:
        click.echo(f"[deploytool] worker logs: {outcome.bundle / 'logs'}", err=True)
    github_output(github, lambda gh: gh.check_annotations(model, outcome.manifest, outcome.checks), outcome.bundle,
                   err=as_json)
    sys.exit(outcome.exit_code)
