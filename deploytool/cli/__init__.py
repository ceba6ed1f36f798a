"""Thin click commands: parse, call the API, print. One place maps DeployToolError to exit codes.

The group is here; each command is a module of this package and the options they share are in options.py."""
from __future__ import annotations

import signal
import sys
import threading
import traceback

import click

from deploytool import __version__
from deploytool.cli.bench import bench_command
from deploytool.cli.config import config_command
from deploytool.cli.device_copy import device_copy_command
from deploytool.cli.doctor import doctor_command
from deploytool.cli.export import export_command
from deploytool.cli.options import CONTEXT, checked_values, option_names
from deploytool.cli.recommend import recommend_command
from deploytool.cli.report import report_command
from deploytool.cli.setup import setup_command
from deploytool.cli.validate import validate_command
from deploytool.core.errors import EXIT_CODES, SIGNALLED, DeployToolError, UsageError, exit_codes_help
from deploytool.running import spawn


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: raised where the command was, so its clean-up runs as for Ctrl-C
    (a KeyboardInterrupt, so no ``except Exception`` takes it for a failure)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_interrupted = False  # a stop signal has been acted on in this invocation


def _on_signal(signum: int, frame: object) -> None:
    """Kill every worker first (their files stop changing, none is left behind), then unwind the command:
    its ``finally`` blocks remove the staging and scratch directories. A repeat during that clean-up is
    ignored, so it is never cut short."""
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    spawn.stop_all()
    raise Interrupted(signum)


def _install_handlers() -> dict:
    """SIGINT, SIGTERM and SIGHUP -> ``_on_signal`` (main thread only; a signal the caller ignores, as
    ``nohup`` does SIGHUP, stays ignored); returns the handlers they replace."""
    global _interrupted
    previous: dict = {}
    spawn.resume()  # an earlier interrupted command in this process (the API, a notebook) stopped workers
    if threading.current_thread() is not threading.main_thread():
        return previous
    _interrupted = False
    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if current is not None and current != signal.SIG_IGN:  # None: a handler set outside Python, kept
            previous[signum] = signal.signal(signum, _on_signal)
    return previous


class _Group(click.Group):
    def invoke(self, ctx):
        debug = "--debug" in sys.argv
        previous = _install_handlers()
        try:
            return super().invoke(ctx)
        except DeployToolError as e:
            if debug:
                traceback.print_exc()
                if e.detail:
                    click.echo(f"worker traceback:\n{e.detail}", err=True)
            click.echo(f"deploytool: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt as e:
            spawn.stop_all()  # already done by _on_signal; a KeyboardInterrupt from elsewhere leaves none either
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            what = "interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}"
            click.echo(f"deploytool: {what} (nothing half-written is left behind)", err=True)
            ctx.exit(SIGNALLED + signum)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


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
        defaults = checked_values(main.commands[name], config.load_pyproject(path, name,
                                                                         option_names(main.commands[name])),
                                  f"pyproject {path}")
    except ValueError as e:
        raise UsageError(str(e)) from None
    ctx.default_map = {**(ctx.default_map or {}), name: defaults}


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


for _command in (export_command, validate_command, bench_command, report_command, recommend_command, config_command,
                 doctor_command, device_copy_command, setup_command):
    main.add_command(_command)


__all__ = ["main", "EXIT_CODES"]
