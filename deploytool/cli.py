"""Thin click commands: parse, call the API, print. One place maps DeployToolError to exit codes."""
from __future__ import annotations

import sys
import traceback

import click

from deploytool import __version__
from deploytool.checking.golden import CALIB_RECOMMENDED
from deploytool.core.errors import EXIT_CODES, DeployToolError, UsageError, exit_codes_help
from deploytool.running.jobs import (
    BENCH_MARGIN_S,
    CHECK_TIMEOUT_S,
    EXPORT_TIMEOUT_S,
    FAILING_CHECKS,
    ArtifactStatus,
    CheckStatus,
    RowStatus,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


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


class _Group(click.Group):
    def invoke(self, ctx):
        debug = "--debug" in sys.argv
        try:
            return super().invoke(ctx)
        except DeployToolError as e:
            if debug:
                traceback.print_exc()
                if e.detail:
                    click.echo(f"worker traceback:\n{e.detail}", err=True)
            click.echo(f"deploytool: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("deploytool: interrupted (nothing half-written is left behind)", err=True)
            ctx.exit(130)


def _load_config(ctx: click.Context, _param, value):
    """Eager --config: the file's [COMMAND] table becomes this command's option defaults."""
    if value is None:
        return None
    from deploytool import config

    try:
        from_file = config.load(value, ctx.info_name or "", _option_names(ctx.command))
        ctx.default_map = {**(ctx.default_map or {}), **from_file}
    except ValueError as e:  # one line and exit 2, like every other usage error
        raise UsageError(str(e)) from None
    return value


def _option_names(command: click.Command) -> dict[str, tuple[str, bool]]:
    """Long option name (no dashes, '_' for '-') -> (parameter name, repeatable): what a config table may set."""
    params = {}
    for p in command.params:
        longs = [o for o in getattr(p, "opts", []) if o.startswith("--")]
        if isinstance(p, click.Option) and longs and p.name not in ("config", "debug"):
            params[longs[0][2:].replace("-", "_")] = (p.name, p.multiple)
    return params


def _load_pyproject(ctx: click.Context) -> None:
    """The invoked command's [tool.deploytool.COMMAND] table (the nearest pyproject.toml that has one) becomes
    its defaults, under --config and the command line (click passes default_map[COMMAND] to the command)."""
    from deploytool import config

    name = ctx.invoked_subcommand
    if name not in config.TABLES:
        return
    path = config.find_pyproject()
    if path is None:
        return
    try:
        defaults = config.load_pyproject(path, name, _option_names(main.commands[name]))
    except ValueError as e:
        raise UsageError(str(e)) from None
    ctx.default_map = {**(ctx.default_map or {}), name: defaults}


def _config_option(f):
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_load_config, metavar="FILE.toml",
                        help="Read this command's options from the [COMMAND] table of a TOML file (keys are long "
                             "option names; the command line wins; paths are relative to the file).")(f)


def _wide_option(f):
    return click.option("--wide", is_flag=True, help="Show every column, notes as the last one (default: the table "
                        "fits the terminal, 100 columns in a log; notes below it).")(f)


def _progress_options(f):
    f = click.option("--quiet", "-q", is_flag=True, help="No progress on stderr (default: a live display on a "
                     "terminal, one line per stage in a log).")(f)
    return _wide_option(f)


def _progress(debug: bool, quiet: bool):
    from deploytool.progress import for_stream

    return for_stream(debug=debug, quiet=quiet)


def _github_option(f):
    return click.option("--github", is_flag=True, help="GitHub Actions output (on by itself when GITHUB_ACTIONS=true): "
                        "an ::error annotation per failing artifact (format, hop, metric) and the Markdown report "
                        "appended to $GITHUB_STEP_SUMMARY.")(f)


def _github_output(flag: bool, annotations, bundle, results=(), err: bool = False) -> None:
    """When on (see report/github.py): print annotations(the github module) and append the step summary."""
    from deploytool.report import github

    if not github.enabled(flag):
        return
    for line in annotations(github):
        click.echo(line, err=err)
    try:
        github.append_summary(github.summary(bundle, list(results)))
    except (OSError, DeployToolError) as e:
        click.echo(f"deploytool: warning: no step summary written: {e}", err=True)


def _machine_option(f):
    return click.option("--machine-name", metavar="NAME", help="A label for this machine in the results (default: "
                        "a fingerprint of CPU, cores, OS and runtime versions); report and recommend use it.")(f)


def _accuracy_option(f):
    return click.option("--max-accuracy-drop", multiple=True, metavar="[FMT=]POINTS",
                        help="With labelled data: fail an artifact whose task accuracy is more than POINTS below the "
                             "source's (repeatable, per format). The int8 tier defaults to 1.0 and is judged on it "
                             "instead of cosine/SQNR/top-1 when labels exist.")(f)


def _accept_constant_option(f):
    return click.option("--accept-constant-output", "accept_constant", multiple=True, metavar="OUTPUT|*",
                        help="Accept a reference output that does not vary with the input across the golden samples "
                             "(repeatable; '*': all). Otherwise such a check is VACUOUS and fails (exit 5); accepted, "
                             "it is CONSTANT_ACCEPTED: not a failure, not a pass.")(f)


def _tolerance_options(f):
    f = click.option("--rtol", multiple=True, metavar="[FMT[:OUTPUT]=]VALUE",
                     help="Relative tolerance override, as --atol.")(f)
    return click.option("--atol", multiple=True, metavar="[FMT[:OUTPUT]=]VALUE",
                        help="Absolute tolerance override, global or per format/output (repeatable). Makes the "
                             "check elementwise.")(f)


@click.group(cls=_Group, context_settings=CONTEXT, epilog=exit_codes_help())
@click.version_option(__version__, prog_name="deploytool")
@click.pass_context
def main(ctx: click.Context) -> None:
    """deploytool: export a model to TorchScript, ONNX, SavedModel and TFLite, and prove each artifact.

    Every artifact is loaded on its own runtime in its own process and compared with the
    source model's outputs; a mismatch fails the command.

    Options can also come from a [tool.deploytool.COMMAND] table in the nearest pyproject.toml that has
    one (walking up from the working directory) and from --config FILE; the command line wins, then
    --config, then pyproject.toml. `deploytool config` shows the result.
    """
    _load_pyproject(ctx)


@main.command("export", context_settings=CONTEXT,
              epilog=_formats_help() + "\n\n" + _models_help() + "\n\n" + exit_codes_help())
@click.option("--model", "-m", default="digits_cnn", show_default=True,
              help="Reference-zoo name; a .py file written like a zoo module (models/digits_cnn.py); file.py:factory "
                   "or package.module:factory (returns an nn.Module or (module, example_inputs)); an .onnx file (ONNX "
                   "is the source); a .keras file or a SavedModel directory (TensorFlow is the source: ONNX via "
                   "tf2onnx, TorchScript not applicable).")
@click.option("--formats", "-f", default="all", show_default=True,
              help="Comma-separated formats to export (parents they need are added), or 'all'.")
@click.option("--out", "-o", default="bundles", show_default=True, type=click.Path(file_okay=False),
              help="Directory that receives the bundle (OUT/MODEL/).")
@click.option("--samples", default=16, show_default=True, type=click.IntRange(1, 10000),
              help="Golden samples to store and check every artifact on.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for golden inputs.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE:DTYPE",
              help="Declare a factory's input (repeatable), dims as sizes or names: 'ids:batch x seq:int64'.")
@click.option("--input-range", "input_ranges", multiple=True, metavar="NAME:LOW:HIGH",
              help="Value range [LOW, HIGH) of an input of a factory or model file (.onnx, .keras, SavedModel), "
                   "for golden data (integers stay inside it): ids:0:30522.")
@click.option("--weights", type=click.Path(dir_okay=False), help="A state dict for a torch model, loaded with "
              "torch.load(weights_only=True) only; missing/unexpected keys are reported by name.")
@click.option("--keep-layout", is_flag=True,
              help="Keep NCHW inputs in TensorFlow artifacts (default: NHWC as onnx2tf makes them).")
@_tolerance_options
@click.option("--strict", is_flag=True, help="Treat a check skipped for a missing runtime as a failure (exit 7).")
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
@click.option("--freeze/--no-freeze", default=True, show_default=True,
              help="Save the TorchScript artifact frozen (torch.jit.freeze; falls back to unfrozen, with a note, "
                   "where freezing fails or changes the outputs).")
@click.option("--optimize/--no-optimize", default=True, show_default=True,
              help="Load the TorchScript artifact with torch.jit.optimize_for_inference (validate and bench too; "
                   "recorded in the manifest's load_settings after export checked it).")
@_accuracy_option
@_accept_constant_option
@click.option("--sign", type=click.Path(dir_okay=False), metavar="KEY.pem",
              help="Sign the bundle's content (manifest, artifacts, golden data) with this EC private key "
                   "(OpenSSF model-signing, offline) into BUNDLE/signature.sig; check with validate --verify.")
@click.option("--timeout", type=float, default=EXPORT_TIMEOUT_S, show_default=True, metavar="SECONDS",
              help="Time limit for each worker step (loading the source, one format's conversion, one check): a "
                   "step still running is killed and reported as that step's failure; the others go on.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON instead of the table.")
@_progress_options
@_github_option
@_config_option
@click.option("--debug", is_flag=True, help="Show tracebacks, where the worker logs are, and every step.")
def export_command(model, formats, out, samples, seed, inputs, input_ranges, weights, keep_layout, atol, rtol, strict,
                   calib_data, calib_method, int8_io, data, freeze, optimize, max_accuracy_drop, accept_constant,
                   sign, timeout, as_json, wide, quiet, github, debug):
    """Export MODEL to every format into a verified bundle.

    Writes OUT/MODEL/ atomically (an interrupted export leaves the previous bundle or none),
    then loads each artifact on its runtime (TorchScript on torch, ONNX on onnxruntime,
    SavedModel on TensorFlow, TFLite on the LiteRT interpreter) and compares its outputs with
    the source model's on the golden inputs. Converter output goes to OUT/MODEL/logs/.
    """
    import json

    from deploytool import api

    requested = None if formats.strip().lower() == "all" else [f.strip() for f in formats.split(",") if f.strip()]
    tolerances, drops = _tolerances(atol, rtol), _drops(max_accuracy_drop)
    with _progress(debug, quiet) as progress:
        outcome = api.export(model, requested, out, samples=samples, seed=seed, keep_layout=keep_layout,
                             strict=strict, inputs=list(inputs), input_ranges=list(input_ranges), weights=weights,
                             tolerances=tolerances, sign=sign, timeout=timeout, calib_data=calib_data, data=data,
                             calib_method=calib_method, int8_io=int8_io, freeze=freeze, optimize=optimize,
                             max_accuracy_drop=drops,
                             accept_constant=list(accept_constant), progress=progress)
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
        chk = outcome.checks.get(name)
        if rec.status == ArtifactStatus.FAILED:
            click.echo(f"deploytool: error: {model}/{name}: export failed: {rec.error}", err=True)
        elif chk is not None and chk.status in (CheckStatus.FAIL, CheckStatus.ERROR, CheckStatus.VACUOUS):
            click.echo(f"deploytool: error: {model}/{name}: {chk.reason}", err=True)
        elif chk is not None and chk.status == CheckStatus.CONSTANT_ACCEPTED:
            click.echo(f"deploytool: warning: {model}/{name}: {chk.reason}", err=True)
    if debug and outcome.exit_code:
        click.echo(f"[deploytool] worker logs: {outcome.bundle / 'logs'}", err=True)
    _github_output(github, lambda gh: gh.check_annotations(model, outcome.manifest, outcome.checks), outcome.bundle,
                   err=as_json)
    sys.exit(outcome.exit_code)


def _drops(specs: tuple[str, ...]) -> dict[str, float]:
    from deploytool.checking.parity import parse_drop

    try:
        return dict(parse_drop(s) for s in specs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _tolerances(atol: tuple[str, ...], rtol: tuple[str, ...]) -> dict:
    from deploytool.checking.parity import parse_tolerance

    out: dict = {}
    for field_name, specs in (("atol", atol), ("rtol", rtol)):
        for spec in specs:
            try:
                key, value = parse_tolerance(spec, field_name)
            except ValueError as e:
                raise UsageError(str(e)) from None
            out.setdefault(key, {})[field_name] = value
    return out


@main.command("validate", context_settings=CONTEXT, epilog=exit_codes_help())
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.option("--format", "-f", "formats", multiple=True,
              help="Artifact to check (repeatable); a prefix selects several (-f tflite). Default: all.")
@click.option("--data", type=click.Path(dir_okay=False), help="Your own inputs: .npz with the contract's input names "
              "(rows of a dynamic first dim are samples). Needs the source model to compute references.")
@click.option("--samples", type=click.IntRange(1), help="Use the first N golden samples (default: all stored).")
@_tolerance_options
@click.option("--strict", is_flag=True,
              help="A runtime that is not installed fails the run (exit 7) instead of a skip.")
@_accuracy_option
@_accept_constant_option
@click.option("--tier-defaults", is_flag=True, help="Ignore the tolerance overrides stored in the bundle at export "
              "(they are shown as overrides in the table and report otherwise).")
@click.option("--verify", "verify_key", type=click.Path(dir_okay=False), metavar="PUBKEY.pem",
              help="Refuse the bundle (exit 8), before loading anything, unless its signature verifies with this "
                   "public key (see export --sign).")
@click.option("--timeout", type=float, default=CHECK_TIMEOUT_S, show_default=True, metavar="SECONDS",
              help="Time limit for each artifact's run; a run still going is killed and reported as an error.")
@click.option("--reports", type=click.Path(file_okay=False), help="Where reports and repro folders go "
              "(default: BUNDLE/reports).")
@_machine_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Also write the JUnit XML here.")
@_progress_options
@_github_option
@_config_option
@click.option("--debug", is_flag=True, help="Show tracebacks and every step.")
def validate_command(bundle, formats, data, samples, atol, rtol, strict, max_accuracy_drop, accept_constant,
                     tier_defaults, verify_key, timeout, reports, machine_name, json_path, junit_path, wide, quiet,
                     github, debug):
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
    from deploytool.report.console import validate_table

    tolerances, drops = _tolerances(atol, rtol), _drops(max_accuracy_drop)
    with _progress(debug, quiet) as progress:
        outcome = api.validate(bundle, list(formats) or None, data, samples, tolerances, strict, reports, json_path,
                               junit_path, progress, verify_key=verify_key, tier_defaults=tier_defaults,
                               timeout=timeout, max_accuracy_drop=drops, machine_name=machine_name,
                               accept_constant=list(accept_constant))
    stored = outcome.manifest.tolerances
    if stored:
        applied = "ignored (--tier-defaults)" if tier_defaults else "applied; --tier-defaults ignores them"
        click.echo("note: the bundle stores tolerance overrides from its export: "
                   + ", ".join(f"{k} {n}={v:g}" for k, vals in stored.items() for n, v in vals.items())
                   + f" ({applied})")
    if outcome.manifest.accepted_constant:
        click.echo("note: the bundle accepts constant reference outputs from its export (--accept-constant-output): "
                   + ", ".join(outcome.manifest.accepted_constant))
    model = outcome.manifest.model.name
    sets = ", ".join(f"{s.name} ({s.samples} x {', '.join(f'{k}={v}' for k, v in s.dims.items()) or 'static'})"
                     for s in outcome.sets)
    click.echo(f"model {model}: bundle {outcome.bundle}  sets: {sets}  ({outcome.seconds:.1f} s)")
    click.echo(validate_table(outcome.manifest, outcome.checks, wide))
    click.echo(f"reports: {outcome.reports['json']}, {outcome.reports['junit']}")
    for name, chk in outcome.checks.items():
        if chk.status in FAILING_CHECKS:
            extra = f" (repro: {outcome.reports[f'repro:{name}']})" if f"repro:{name}" in outcome.reports else ""
            click.echo(f"deploytool: error: {model}/{name}: {chk.reason}{extra}", err=True)
        elif chk.status == CheckStatus.SKIPPED:
            click.echo(f"deploytool: warning: {model}/{name}: skipped: {chk.reason}", err=True)
        elif chk.status == CheckStatus.CONSTANT_ACCEPTED:
            click.echo(f"deploytool: warning: {model}/{name}: {chk.reason}", err=True)
    _github_output(github, lambda gh: gh.check_annotations(model, outcome.manifest, outcome.checks), outcome.bundle,
                   [outcome.reports["json"]])
    sys.exit(outcome.exit_code)


@main.command("bench", context_settings=CONTEXT, epilog=exit_codes_help())
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.option("--format", "-f", "formats", multiple=True, help="Artifact to time (repeatable; a prefix selects "
              "several). Default: all, plus the source model (torch eager, or Keras for a .keras source) as the "
              "baseline.")
@click.option("--threads", default="1", show_default=True,
              help="Comma-separated intra-op thread counts, set through each runtime's own knob.")
@click.option("--batch", default="1", show_default=True,
              help="Comma-separated batch sizes (above 1 only where the batch dim is dynamic).")
@click.option("--min-time", default=5.0, show_default=True, type=click.FloatRange(0),
              help="Measure at least this long (s).")
@click.option("--min-runs", default=200, show_default=True, type=click.IntRange(1),
              help="Measure at least this many calls.")
@click.option("--warmup-runs", default=10, show_default=True, type=click.IntRange(0), help="Warm-up calls (at least).")
@click.option("--warmup-time", default=0.5, show_default=True, type=click.FloatRange(0),
              help="Warm-up time (s, at least).")
@click.option("--max-time", default=60.0, show_default=True, type=click.FloatRange(0), help="Hard cap per row (s).")
@click.option("--no-source", is_flag=True, help="Do not time the source model baseline.")
@click.option("--no-peak", is_flag=True, help="Do not probe this machine's fp32 GEMM peak (no %% of peak per row).")
@click.option("--compare", type=click.Path(file_okay=False), help="Baseline bundle: time both interleaved (A B A B) "
              "and flag rows whose p50 is slower than the baseline's by more than --threshold (exit 9).")
@click.option("--threshold", default=1.10, show_default=True, type=float,
              help="p50 ratio (candidate/baseline) that flags a regression.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Interleaved rounds per side with --compare.")
@click.option("--strict", is_flag=True, help="A runtime that is not installed fails the run (exit 7).")
@click.option("--verify", "verify_key", type=click.Path(dir_okay=False), metavar="PUBKEY.pem",
              help="Refuse the bundle (exit 8) unless its signature verifies with this public key.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Time limit for each row's worker (default: "
              f"--max-time + {BENCH_MARGIN_S:g} s); a row still running is killed and reported as failed.")
@click.option("--reports", type=click.Path(file_okay=False),
              help="Where bench.json / bench.csv go (default: BUNDLE/reports).")
@_machine_option
@_progress_options
@_github_option
@_config_option
@click.option("--debug", is_flag=True, help="Show tracebacks and every step.")
def bench_command(bundle, formats, threads, batch, min_time, min_runs, warmup_runs, warmup_time, max_time, no_source,
                  no_peak, compare, threshold, rounds, strict, verify_key, timeout, reports, machine_name, wide, quiet,
                  github, debug):
    """Time every artifact of BUNDLE on its own runtime: import, load, first inference, steady state, memory.

    Each (artifact, threads, batch) row runs in a fresh process fed the bundle's golden inputs;
    steady state is timed one call at a time (perf_counter_ns) after a warm-up, until both
    --min-runs and --min-time are reached (hard cap --max-time). Reports p50/p90/p99 (numpy
    'linear' percentiles), min, mean, std, IQR, CV, throughput, peak RSS after load and during
    inference, and warns when there are too few samples for a p90/p99 claim (64 / 662, MLPerf) or
    when IQR/median >= 0.10. Rows are sorted by p90. Writes BUNDLE/reports/bench.json (with raw
    samples) and bench.csv.
    """
    from deploytool import api
    from deploytool.commands.bench import parse_int_list, sorted_rows
    from deploytool.measuring.timing import Protocol
    from deploytool.report.console import bench_table, compare_table

    protocol = Protocol(warmup_runs=warmup_runs, warmup_time=warmup_time, min_runs=min_runs, min_time=min_time,
                        max_time=max(max_time, min_time))
    thread_list, batch_list = parse_int_list(threads, "threads"), parse_int_list(batch, "batch")
    with _progress(debug, quiet) as progress:
        outcome = api.bench(bundle, list(formats) or None, thread_list, batch_list, protocol, compare, threshold,
                            rounds, strict, not no_source, reports, progress, verify_key=verify_key, timeout=timeout,
                            machine_name=machine_name, gemm_peak=not no_peak)
    click.echo(f"model {outcome.manifest.model.name}: bundle {outcome.bundle}")
    if outcome.peak:
        from deploytool.report.console import peak_line

        click.echo(peak_line(outcome.manifest, outcome.peak))
    click.echo(bench_table(sorted_rows(outcome.rows), wide))
    if outcome.compare is not None:
        click.echo("")
        click.echo(compare_table(outcome.compare, threshold, wide))
    click.echo(f"reports: {outcome.reports['json']}, {outcome.reports['csv']}")
    for r in outcome.rows:
        if r["status"] in (RowStatus.FAILED, RowStatus.CORRUPT):
            click.echo(f"deploytool: error: {r['format']} (threads={r['threads']}, batch={r['batch']}): {r['reason']}",
                       err=True)
    for c in outcome.compare or []:
        if c["regression"]:
            click.echo(f"deploytool: error: {c['format']} (threads={c['threads']}, batch={c['batch']}): p50 "
                       f"{c['ratio']:.2f}x the baseline's (threshold {threshold:g})", err=True)
    _github_output(github, lambda gh: gh.bench_annotations(outcome.manifest.model.name, outcome.rows, outcome.compare,
                                                          threshold), outcome.bundle, [outcome.reports["json"]])
    sys.exit(outcome.exit_code)


@main.command("report", context_settings=CONTEXT, epilog=exit_codes_help())
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Where report.md / report.html go (default: "
              "BUNDLE/reports).")
@_config_option
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def report_command(bundle, results, out, debug):
    """One page per model: report.md and report.html from BUNDLE's manifest, validation.json and
    bench.json, plus RESULTS (validation.json / bench.json files made elsewhere from the same
    bundle: one column group per machine). Computes nothing new; plots need matplotlib."""
    from deploytool import api

    outcome = api.report(bundle, list(results), out)
    click.echo(f"report: {outcome.files['md']}, {outcome.files['html']}  (machines: "
               f"{', '.join(outcome.results.machines()) or 'none'})")
    if not outcome.plots:
        from deploytool.install import hint

        click.echo(f"note: no plots in the HTML: matplotlib is not installed ({hint('report')})")


@main.command("recommend", context_settings=CONTEXT, epilog=exit_codes_help())
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--max-p90-ms", type=float, help="Latency budget: p90 per call, in ms.")
@click.option("--max-size-mb", type=float, help="Artifact size budget, MiB.")
@click.option("--max-accuracy-drop", type=float, help="Task accuracy budget: points below the source's (as the "
              "export/validate gate; needs labelled data).")
@click.option("--max-rss-mb", type=float, help="Peak resident memory budget of the runtime process, MB.")
@click.option("--runtime", help="Only artifacts for this runtime (e.g. litert on a device).")
@click.option("--machine", help="Rank on the latency measured on this machine (its --machine-name or fingerprint).")
@click.option("--threads", type=click.IntRange(1), help="Only rows measured at this thread count.")
@click.option("--allow-other-machine", is_flag=True, help="Rank on the only benchmarked machine even when --machine "
              "names another.")
@click.option("--json", "as_json", is_flag=True, help="Print the recommendation as JSON.")
@_wide_option
@_config_option
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def recommend_command(bundle, results, max_p90_ms, max_size_mb, max_accuracy_drop, max_rss_mb, runtime, machine,
                      threads, allow_other_machine, as_json, wide, debug):
    """Pick the artifact to deploy: those that passed their checks, filtered by the budget, ranked
    (Pareto set on p90 latency and size first, then by p90), with every excluded artifact's broken
    limit and by how much, and the command to confirm the choice on the device. Exit 10 when no
    artifact meets the budget."""
    import json

    from deploytool import api
    from deploytool.commands.recommend import Budget
    from deploytool.report.console import fit

    budget = Budget(max_p90_ms, max_size_mb, max_accuracy_drop, max_rss_mb, runtime, machine, threads,
                    allow_other_machine)
    outcome = api.recommend(bundle, budget, list(results))
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
        sys.exit(outcome.exit_code)
    click.echo(f"bundle {outcome.bundle}: latency measured on {outcome.machine}")
    rows = [[str(i + 1), c.format, c.runtime, "yes" if c.pareto else "", str(c.threads), f"{c.p90_ms:.3f}",
             f"{c.p50_ms:.3f}", f"{c.size_mb:.2f}", f"{c.rss_mb:.0f}",
             "-" if c.accuracy is None else f"{c.accuracy:.2%} ({-(c.accuracy_drop or 0):+.2f})"]
            for i, c in enumerate(outcome.ranked)]
    if rows:
        click.echo(fit(["rank", "format", "runtime", "pareto", "thr", f"p90_ms@{outcome.machine}", "p50_ms",
                        "size_mb", "rss_mb", "accuracy"], rows, [], ["rss_mb", "p50_ms"], wide))
    for name, reasons in outcome.excluded.items():
        click.echo(f"excluded {name}: {'; '.join(reasons)}")
    if outcome.confirm:
        click.echo(f"recommended: {outcome.ranked[0].format}; confirm on the device: {outcome.confirm}")
    else:
        click.echo("deploytool: error: no artifact meets the budget", err=True)
    sys.exit(outcome.exit_code)


@main.command("config", context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_interspersed_args": False},
              epilog=exit_codes_help())
@click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE.toml",
              help="A --config file to take into account, as COMMAND --config FILE would.")
@click.option("--json", "as_json", is_flag=True, help="Print the options as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.argument("command", required=False, metavar="[COMMAND [OPTIONS]...]")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def config_command(config_file, as_json, debug, command, args):
    """Show the options COMMAND (default: every command that reads a config) would run with, and where each
    came from: the command line (OPTIONS given here after COMMAND), --config FILE, the [tool.deploytool.COMMAND]
    table of the nearest pyproject.toml that has one (walking up from the working directory; set
    DEPLOYTOOL_NO_PYPROJECT=1 to turn the search off), or the built-in default. Nothing is run.
    Options of config itself go before COMMAND."""
    import json

    from click.core import ParameterSource

    from deploytool import config
    from deploytool.report.console import table

    if command is not None and command not in config.TABLES:
        raise UsageError(f"config: {command!r} reads no config (one of: {', '.join(config.TABLES)})")
    if args and command is None:
        raise UsageError("config: options given without a COMMAND")
    pyproject = config.find_pyproject()
    result: dict = {"pyproject": str(pyproject) if pyproject else None, "config": config_file, "commands": {}}
    for name in [command] if command else config.TABLES:
        cmd = main.commands[name]
        params = _option_names(cmd)
        try:
            from_pyproject = config.load_pyproject(pyproject, name, params) if pyproject else {}
            from_file = config.load(config_file, name, params) if config_file else {}
        except ValueError as e:
            raise UsageError(str(e)) from None
        sub = cmd.make_context(name, list(args), default_map={**from_pyproject, **from_file}, resilient_parsing=True)
        options = {}
        for long_name, (param, _multiple) in params.items():
            source = sub.get_parameter_source(param)
            origin = "command line" if source == ParameterSource.COMMANDLINE else \
                f"--config {config_file}" if param in from_file else \
                f"pyproject {pyproject}" if param in from_pyproject else "default"
            value = sub.params.get(param)
            options[long_name.replace("_", "-")] = {"value": list(value) if isinstance(value, tuple) else value,
                                                    "from": origin}
        result["commands"][name] = options
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    where = (f"pyproject: {pyproject}" if pyproject else f"pyproject: none ({config.NO_PYPROJECT_ENV} is set)"
             if config.pyproject_disabled() else "pyproject: none with a [tool.deploytool] table from here up")
    click.echo(where + (f"; --config {config_file}" if config_file else ""))
    for name, options in result["commands"].items():
        click.echo(f"\n[{name}]")
        click.echo(table(["option", "value", "from"],
                         [[k, json.dumps(v["value"], default=str), v["from"]] for k, v in options.items()]))


@main.command("doctor", context_settings=CONTEXT, epilog=exit_codes_help())
@click.option("--for", "role", type=click.Choice(["export", "device"]), default="export", show_default=True,
              help="The job to judge this machine for: export (the whole export stack: frameworks, converters, every "
                   "runtime) or device (what validate and bench of a bundle need).")
@click.option("--bundle", type=click.Path(file_okay=False), help="With --for device: check the runtimes this bundle's "
              "artifacts need.")
@click.option("--import-check", is_flag=True, help="Also import each installed package, in a subprocess of its own "
              "(slow: seconds per framework), to catch installs that are present but broken.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def doctor_command(role, bundle, import_check, as_json, debug):
    """Check this machine for a role: Python and platform; each framework, converter and runtime (installed or
    not, its version, whether it is the version this release was verified with, i.e. pyproject.toml's pins);
    the CPU features the runtimes use (AVX2, AVX-512, VNNI; NEON on ARM); whether the network guard blocks.
    Exit 11 when the role's stack is unusable, with the pip command that fixes it. Imports no framework."""
    import json

    from deploytool import doctor
    from deploytool.report.console import table

    outcome = doctor.run(role, bundle, check_imports=import_check)
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
        sys.exit(outcome.exit_code)
    click.echo(f"deploytool {__version__} on Python {outcome.python}, {outcome.platform}")
    rows = []
    for c in outcome.components:
        verified = "-" if c.verified_ok is None else ("yes" if c.verified_ok else f"no (verified {c.verified})")
        state = ("broken" if c.import_error else "installed") if c.installed else "missing"
        rows.append([c.kind + (f" {c.runtime}" if c.runtime else ""), c.distribution, state, c.version or "-",
                     verified, c.extra or "core", "yes" if c.needed else ""])
    click.echo(table(["what", "package", "state", "version", "verified", "extra", f"needed ({role})"], rows))
    click.echo("cpu: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in outcome.cpu.items())
               + f" ({outcome.machine})")
    guard = outcome.network_guard
    click.echo(f"network guard: {'works' if guard['works'] else 'NOT WORKING'} ({guard['detail']})")
    for w in outcome.warnings:
        click.echo(f"deploytool: warning: {w}", err=True)
    for p in outcome.problems:
        click.echo(f"deploytool: error: {p}", err=True)
    if outcome.problems:
        click.echo(f"{role}: unusable here; to fix: " + "; ".join(outcome.install or ["see the errors above"]))
    else:
        click.echo(f"{role}: ready")
    sys.exit(outcome.exit_code)


__all__ = ["main", "EXIT_CODES"]
