"""``deploytool validate``: re-check a bundle's artifacts on their runtimes, fail closed."""
from __future__ import annotations

import sys

import click

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
    machine_option,
    open_progress,
    parse_drops,
    parse_tolerances,
    progress_options,
    reports_option,
    runtime_option,
    steps_gate_options,
    strict_option,
    tolerance_options,
    verify_option,
)
from deploytool.core.errors import exit_codes_help
from deploytool.results import label
from deploytool.running.jobs import CHECK_TIMEOUT_S, FAILING_CHECKS, CheckStatus
from deploytool.targets import split_names


@click.command("validate", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("validate"))
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@format_option("Artifacts to check")
@runtime_option("Check only the targets on these runtimes")
@click.option("--emulate", "emulate", multiple=True, metavar="ARCH[:CPU,...]",
              help="Also check on emulated CPUs, under user-mode QEMU (repeatable): `aarch64` checks every .tflite "
              "on LiteRT's aarch64 build and every onnx/onnx_int8 on onnxruntime's, for cortex-a72 (plain NEON), "
              "cortex-a55 (fp16 arithmetic, dotprod) and neoverse-v1 (SVE, i8mm); `aarch64:cortex-a76,neoverse-n1` "
              "names the CPUs. Each is a target of its own (onnx_int8@onnxruntime@aarch64-cortex-a55), judged like "
              "the others and never timed. Needs `deploytool setup` (its aarch64 part); else SKIPPED, saying so.")
@click.option("--data", type=click.Path(dir_okay=False), help="Your own inputs: .npz with the contract's input names "
              "(rows of a dynamic first dim are samples). Needs the source model to compute references.")
@click.option("--source", metavar="MODEL", help="Allow running the bundle's source model where it is Python (a "
              "model .py file or file.py:factory / package.module:factory), for --data and for localising a hop "
              "from the source; named as export's --model, it must be the one the manifest records (else exit 2). "
              "Without it no code a bundle names is run.")
@click.option("--samples", type=click.IntRange(1), help="Use the first N golden samples (default: all stored).")
@click.option("--pipeline", type=click.Path(dir_okay=False), help="A Python file defining preprocess(raw) -> "
              "inputs and optionally postprocess(outputs) -> decisions, preprocess_deployed(raw), THRESHOLD or TOP_K: "
              "every target runs the whole pipeline on --raw-data and its decisions are compared with the source's "
              "(docs/pipeline.md). A --source model file defining preprocess serves as one. Needs the source model "
              "(a Python source: --source).")
@click.option("--raw-data", type=click.Path(dir_okay=False), help="Raw samples for --pipeline (.npz; each array's "
              "first axis is the samples; a single array is passed to preprocess as it is, several as a dict).")
@click.option("--operating-point", metavar="threshold=P|top-k=K[,band=B]", help="The built-in postprocess where "
              "the pipeline has none: softmax + threshold P on the first classifier output, or the K best classes "
              "(default: the file's THRESHOLD / TOP_K, else top-k=1); band: what counts as near it (default: the "
              "file's NEAR_BAND, else 0.05 for a threshold, 0.1 score gap for top-k). One of threshold and top-k; "
              "refused (exit 2) where the file defines postprocess.")
@click.option("--max-decision-flips", metavar="FRACTION|N%|Nsamples", help="Fail a target whose pipeline decisions "
              "differ from the source's on more than this share of the raw samples (0.02, 2%) or this many "
              "(3samples, at most the raw samples; a bare number >= 1 is refused). Default: 0 for fp32/fp16 "
              "targets, 2% for int8 and fp16-arithmetic ones.")
@tolerance_options
@strict_option
@accuracy_option
@accept_constant_option
@steps_gate_options
@gate_families_option
@click.option("--oracle", type=click.Choice(["float64", "none"]), default=None,
              help="float64: judge the fp32 tier against the float64 oracle stored at export (--oracle float64 "
                   "there; exit 2 when the bundle has none, naming why); none: the fixed fp32 tier. Default: as "
                   "the bundle was exported.")
@click.option("--tier-defaults", is_flag=True, help="Ignore the tolerance overrides, the --gate-families and the "
              "multi-step gates stored in the bundle at export (the overrides are shown in the table and report "
              "otherwise).")
@verify_option
@click.option("--timeout", type=float, default=CHECK_TIMEOUT_S, show_default=True, metavar="SECONDS",
              help="Time limit for each artifact's run; a run still going is killed and reported as an error.")
@reports_option("validation.json, validation.junit.xml and the repro folders")
@machine_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Also write the JUnit XML here.")
@progress_options
@github_option
@config_option
@click.option("--debug", is_flag=True, help="Show tracebacks and every step.")
def validate_command(bundle, formats, runtimes, emulate, atol, rtol, max_accuracy_drop, tier_defaults, reports, wide,
                     quiet, github, debug, **options):
    """Re-check every artifact of BUNDLE on its own runtime, fail closed.

    Each artifact runs in its own process on the golden inputs stored in the bundle (and on a
    second shape where dims are dynamic, and on --data), and is compared with the stored
    reference outputs and with its parent artifact, so a failure names the conversion hop
    (torch -> onnx -> savedmodel -> tflite) where the error appears; a failing hop between two
    artifacts is then localised to the first op of the parent whose output the child does not
    reproduce (its type, name and error in the note, or why it could not). Needs only the bundle and
    the runtime of the artifacts checked: `validate BUNDLE -f tflite` runs with numpy, click, rich and
    ai-edge-litert alone (pip install 'deploytool[litert]'); others are skipped, naming their extra.
    Artifact files are checked against their sha256 before loading.
    Writes BUNDLE/reports/validation.json, validation.junit.xml and, per failing artifact,
    reports/repro/FORMAT/ (inputs, expected, actual, worst sample, hashes, versions).
    """
    from deploytool import api
    from deploytool.checking import oracle as oracle_rule
    from deploytool.checking.parity import Tolerances
    from deploytool.report.console import validate_table

    # the other parameters are ValidateOptions fields by name (data, samples, strict, ..., junit_path)
    opts = api.ValidateOptions(formats=split_names(formats) or None, runtimes=split_names(runtimes) or None,
                               emulate=list(emulate) or None,
                               tolerances=parse_tolerances(atol, rtol),
                               max_accuracy_drop=parse_drops(max_accuracy_drop), tier_defaults=tier_defaults,
                               reports_dir=reports, **options)
    with open_progress(debug, quiet) as progress:
        outcome = api.validate(bundle, opts, progress=progress)
    stored = Tolerances.from_dict(outcome.manifest.tolerances, "manifest.tolerances")
    if stored:
        applied = "ignored (--tier-defaults)" if tier_defaults else "applied; --tier-defaults ignores them"
        click.echo(f"note: the bundle stores tolerance overrides from its export: {stored.describe()} ({applied})")
    if oracle_note := oracle_rule.note(outcome.manifest, opts.oracle):  # export --oracle float64 (docs/oracle.md)
        click.echo(oracle_note)
    if outcome.manifest.gate_families:  # export --gate-families (docs/families.md)
        applied = "ignored (--tier-defaults)" if tier_defaults else "applied; --tier-defaults ignores them"
        click.echo("note: the bundle gates on these input families from its export (--gate-families): "
                   f"{', '.join(outcome.manifest.gate_families)} ({applied})")
    if outcome.manifest.accepted_constant:
        click.echo("note: the bundle accepts uninformative checks of these outputs from its export "
                   "(--accept-uninformative): " + ", ".join(outcome.manifest.accepted_constant))
    model = outcome.manifest.model.name
    sets = ", ".join(f"{s.name} ({s.samples} x {', '.join(f'{k}={v}' for k, v in s.dims.items()) or 'static'})"
                     for s in outcome.sets)
    click.echo(f"model {model}: bundle {outcome.bundle}  sets: {sets}  ({outcome.seconds:.1f} s)")
    click.echo(validate_table(outcome.manifest, outcome.checks, wide))
    click.echo(f"reports: {outcome.reports['json']}, {outcome.reports['junit']}")
    for key, chk in outcome.checks.items():
        name = label(chk, outcome.checks)
        if chk.status in FAILING_CHECKS:
            extra = f" (repro: {outcome.reports[f'repro:{key}']})" if f"repro:{key}" in outcome.reports else ""
            click.echo(f"deploytool: error: {model}/{name}: {chk.reason}{extra}", err=True)
        elif chk.status == CheckStatus.SKIPPED:
            click.echo(f"deploytool: warning: {model}/{name}: skipped: {chk.reason}", err=True)
        elif chk.status == CheckStatus.CONSTANT_ACCEPTED:
            click.echo(f"deploytool: warning: {model}/{name}: {chk.reason}", err=True)
        elif chk.coverage:  # a PASS on weakly covered inputs (--strict: exit 7)
            click.echo(f"deploytool: warning: {model}/{name}: {chk.coverage}", err=True)
    github_output(github, lambda gh: gh.check_annotations(model, outcome.manifest, outcome.checks), outcome.bundle,
                   [outcome.reports["json"]])
    sys.exit(outcome.exit_code)
