"""Options and helpers shared by the commands: the command class (close option names on a typo), --config and
pyproject defaults, the display options, GitHub output, the --format / --runtime options (one grammar, read by
``targets.select``) and the tolerance / accuracy / strict / verify / reports options with their parsing."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from deploytool.core.errors import DeployToolError, UsageError, close_matches
from deploytool.formats import FORMATS
from deploytool.runtimes import RUNTIMES
from deploytool.targets import matches, prefixes

if TYPE_CHECKING:
    from deploytool.checking.parity import Tolerances

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def load_config(ctx: click.Context, _param, value):
    """Eager --config: the file's [COMMAND] table becomes this command's option defaults."""
    if value is None:
        return None
    from deploytool import config

    try:
        from_file = config.load(value, ctx.info_name or "", option_names(ctx.command))
        ctx.default_map = {**(ctx.default_map or {}), **checked_values(ctx.command, from_file, f"--config {value}")}
    except ValueError as e:  # one line and exit 2, like every other usage error
        raise UsageError(str(e)) from None
    return value


def checked_values(command: click.Command, values: dict, where: str) -> dict:
    """``values`` (a config table's, by parameter name) checked as the command line checks them (a choice, a number):
    a bad one is a ValueError naming the file and the option, not click's error later without the file."""
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for name, value in values.items():
        p = params.get(name)
        if p is None or isinstance(p.type, click.Path) or p.type is click.STRING:
            continue
        for v in value if isinstance(value, list) else [value]:
            try:
                p.type.convert(v, p, None)
            except click.BadParameter as e:
                long = next((o for o in p.opts if o.startswith("--")), name)
                raise ValueError(f"{where}: [{command.name}] {long[2:]} = {v!r}: {e.message}") from None
    return values


class Command(click.Command):
    """A command whose unknown-option error names the options closest to the typo (click compares the names with
    their dashes, so ``--fomat`` drew ``--atol`` and ``--data``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            raise closest_options(e, self) from None


def closest_options(error: click.NoSuchOption, command: click.Command) -> click.NoSuchOption:
    """``error`` suggesting ``command``'s long options closest to the unknown one instead."""
    longs = [o[2:] for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
    close = [f"--{o}" for o in close_matches(error.option_name.lstrip("-"), longs)]
    return click.NoSuchOption(error.option_name, possibilities=close, ctx=error.ctx)


def check_options(command: click.Command, name: str, args: list[str]) -> None:
    """Parse ``args`` as ``command``'s options, values unchecked: an unknown option is click's usage error (exit 2)
    naming the closest ones, as running the command would give (``deploytool config`` shows the options a command
    would run with)."""
    current = click.get_current_context(silent=True)
    ctx = click.Context(command, info_name=name, parent=current.find_root() if current else None)
    try:
        command.make_parser(ctx).parse_args(list(args))
    except click.NoSuchOption as e:
        raise closest_options(e, command) from None


def option_names(command: click.Command) -> dict[str, tuple[str, bool]]:
    """Long option name (no dashes, '_' for '-'; an alias too, as --formats) -> (parameter name, repeatable):
    what a config table may set."""
    params = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name not in ("config", "debug"):
            for long in (o for o in p.opts if o.startswith("--")):
                params[long[2:].replace("-", "_")] = (p.name, p.multiple)
    return params


def config_option(f):
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=load_config, metavar="FILE.toml",
                        help="Read this command's options from the [COMMAND] table of a TOML file (keys are long "
                             "option names; the command line wins; paths are relative to the file).")(f)


def wide_option(f):
    return click.option("--wide", is_flag=True, help="Show every column, notes as the last one (default: the table "
                        "fits the terminal, 100 columns in a log; notes below it).")(f)


def progress_options(f):
    f = click.option("--quiet", "-q", is_flag=True, help="No progress on stderr (default: a live display on a "
                     "terminal, one line per stage in a log).")(f)
    return wide_option(f)


def open_progress(debug: bool, quiet: bool):
    from deploytool.progress import for_stream

    return for_stream(debug=debug, quiet=quiet)


def github_option(f):
    return click.option("--github", is_flag=True, help="GitHub Actions output (on by itself when GITHUB_ACTIONS=true): "
                        "an ::error annotation per failing artifact (format, hop, metric) and the Markdown report "
                        "appended to $GITHUB_STEP_SUMMARY.")(f)


def github_output(flag: bool, annotations, bundle, results=(), err: bool = False) -> None:
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


def machine_option(f):
    return click.option("--machine-name", metavar="NAME", help="A label for this machine in the results (default: "
                        "a fingerprint of CPU, cores, OS and runtime versions); report and recommend use it.")(f)


def accuracy_option(f):
    return click.option("--max-accuracy-drop", multiple=True, metavar="[FMT=]POINTS",
                        help="With labelled data: fail an artifact whose task accuracy is more than POINTS below the "
                             "source's (repeatable, per format). The int8 tier defaults to 1.0 and is judged on it "
                             "instead of cosine/SQNR/top-1 when labels exist.")(f)


def accept_constant_option(f):
    return click.option("--accept-uninformative", "--accept-constant-output", "accept_constant", multiple=True,
                        metavar="OUTPUT|*",
                        help="Accept a check of this output that a trivial artifact would pass too (one returning "
                             "all zeros, the per-element mean over the golden samples, or another sample's output): "
                             "a reference constant across the samples, or too small or too uniform for its tolerance "
                             "(repeatable; '*': all). Otherwise such a check is VACUOUS and fails (exit 5); accepted, "
                             "it is CONSTANT_ACCEPTED: not a failure, not a pass. --accept-constant-output is the same "
                             "option.")(f)


def gate_families_option(f):
    return click.option("--gate-families", "gate_families", multiple=True, metavar="FAMILY[,FAMILY]",
                        help="Input families that gate where a tier only reports them: the int8 tier reports its "
                             "verdict on the edge family (values at the ranges' ends, outside the calibration "
                             "data: int8 saturates there by design) without failing on it; --gate-families edge "
                             "fails it there too. Takes only such families: edge ('all' is the same); every other "
                             "family is judged by its tier's rule already. Export stores it in the bundle, and "
                             "validate applies it (--tier-defaults ignores it). See docs/families.md.")(f)


def tolerance_options(f):
    f = click.option("--rtol", multiple=True, metavar="[FMT[:OUTPUT]=]VALUE",
                     help="Relative tolerance override, as --atol.")(f)
    return click.option("--atol", multiple=True, metavar="[FMT[:OUTPUT]=]VALUE",
                        help="Absolute tolerance override, global or per format/output (repeatable). Makes the "
                             "check elementwise.")(f)


def steps_gate_options(f):
    """--min-agree-steps / --max-step-error: the multi-step check's gates (checking/steps.py), export and validate."""
    f = click.option("--max-step-error", type=float, default=None, metavar="E",
                     help="Multi-step check: the largest error allowed at any step before the decisions diverge, "
                          "relative to the reference's largest magnitude at that step. Default by tier: fp32 1e-3, "
                          "fp16/int8 not gated (reported). Needs a feedback loop (exit 2 without one); given at "
                          "export, stored in the bundle and re-applied by validate unless it sets its own "
                          "(--tier-defaults: the tier's).")(f)
    return click.option("--min-agree-steps", type=int, default=None, metavar="K",
                        help="Multi-step check: the first K steps' greedy decisions (OUT->IN:argmax) must agree with "
                             "the source's. Default: every step for fp32 artifacts; fp16/int8 reported, not gated "
                             "(0). Needs a feedback loop and at most its --steps (exit 2 otherwise); stored at export "
                             "and re-applied by validate, as --max-step-error.")(f)


def _groups(names: list[str]) -> str:
    """How a prefix reads (``tflite`` = tflite_dynamic, ...), for the help."""
    return "".join(f"; {p} = {', '.join(matches(p, names))}" for p in prefixes(names))


def format_option(lead: str):
    """--format / -f NAME (repeatable or comma-separated; --formats is the same option): ``lead`` says what the
    command does with the formats chosen. Read by ``targets.select`` in every command."""
    def decorate(f):
        return click.option("--format", "-f", "--formats", "formats", multiple=True, metavar="NAME",
                            help=f"{lead} (repeatable or comma-separated; a name up to a '_' selects every format it "
                                 f"begins{_groups(list(FORMATS))}). Default: all.")(f)
    return decorate


def runtime_option(lead: str):
    """--runtime NAME (repeatable or comma-separated), for the commands that run artifacts: ``lead`` says which of
    an artifact's targets it keeps. Read by ``targets.select`` in every command."""
    def decorate(f):
        return click.option("--runtime", "runtimes", multiple=True, metavar="NAME",
                            help=f"{lead} (repeatable or comma-separated; one of: {', '.join(RUNTIMES)}). Default: "
                                 "every runtime that runs each artifact; one not installed here is reported SKIPPED "
                                 "with the extra that adds it.")(f)
    return decorate


def strict_option(f):
    return click.option("--strict", is_flag=True, help="Fail the run (exit 7) on an incomplete check: a target skipped "
                        "because its runtime is not installed here (when that runtime is its artifact's own or one "
                        "asked for with --runtime), a PASS on golden inputs that covered an integer input weakly "
                        "(no known range), or a multi-step check not run or stopped early (its time budget).")(f)


def verify_option(f):
    return click.option("--verify", "verify_key", type=click.Path(dir_okay=False), metavar="PUBKEY.pem",
                        help="Refuse the bundle (exit 8), before loading anything, unless its signature verifies "
                             "with this public key (see export --sign).")(f)


def reports_option(what: str):
    """--reports DIR: where ``what`` go (default: BUNDLE/reports)."""
    def decorate(f):
        return click.option("--reports", type=click.Path(file_okay=False),
                            help=f"Where {what} go (default: BUNDLE/reports).")(f)
    return decorate


def parse_drops(specs: tuple[str, ...]) -> dict[str, float]:
    from deploytool.checking.parity import parse_drop

    try:
        return dict(parse_drop(s) for s in specs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def parse_tolerances(atol: tuple[str, ...], rtol: tuple[str, ...]) -> Tolerances:
    """``--atol`` / ``--rtol`` as one ``parity.Tolerances`` (a malformed value: one line, exit 2)."""
    from deploytool.checking.parity import Tolerances

    try:
        return Tolerances.from_specs(atol, rtol)
    except ValueError as e:
        raise UsageError(str(e)) from None
