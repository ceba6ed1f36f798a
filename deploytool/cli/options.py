"""Options and helpers shared by the commands: --config and pyproject defaults, the display options, GitHub
output, and the tolerance / accuracy / runtime options with their parsing."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from deploytool.core.errors import DeployToolError, UsageError
from deploytool.runtimes import RUNTIMES

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
        ctx.default_map = {**(ctx.default_map or {}), **from_file}
    except ValueError as e:  # one line and exit 2, like every other usage error
        raise UsageError(str(e)) from None
    return value


def option_names(command: click.Command) -> dict[str, tuple[str, bool]]:
    """Long option name (no dashes, '_' for '-') -> (parameter name, repeatable): what a config table may set."""
    params = {}
    for p in command.params:
        longs = [o for o in getattr(p, "opts", []) if o.startswith("--")]
        if isinstance(p, click.Option) and longs and p.name not in ("config", "debug"):
            params[longs[0][2:].replace("-", "_")] = (p.name, p.multiple)
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
    return click.option("--accept-constant-output", "accept_constant", multiple=True, metavar="OUTPUT|*",
                        help="Accept a reference output that does not vary with the input across the golden samples "
                             "(repeatable; '*': all). Otherwise such a check is VACUOUS and fails (exit 5); accepted, "
                             "it is CONSTANT_ACCEPTED: not a failure, not a pass.")(f)


def tolerance_options(f):
    f = click.option("--rtol", multiple=True, metavar="[FMT[:OUTPUT]=]VALUE",
                     help="Relative tolerance override, as --atol.")(f)
    return click.option("--atol", multiple=True, metavar="[FMT[:OUTPUT]=]VALUE",
                        help="Absolute tolerance override, global or per format/output (repeatable). Makes the "
                             "check elementwise.")(f)


def runtime_option(verb: str):
    """--runtime NAME (repeatable), for the commands that run artifacts: ``verb`` is what they do ("Check")."""
    def decorate(f):
        return click.option("--runtime", "runtime", multiple=True, metavar="NAME",
                            help=f"{verb} only the targets on this runtime (repeatable or comma-separated; one of: "
                                 f"{', '.join(RUNTIMES)}). Default: every runtime installed here that runs each "
                                 "artifact; the others are reported SKIPPED with the extra that adds them.")(f)
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
