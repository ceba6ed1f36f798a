"""``deploytool config``: show the options a command would run with, and where each came from."""
from __future__ import annotations

import click

from deploytool.cli.options import CONTEXT, Command, check_options, checked_values, option_names
from deploytool.core.errors import UsageError, did_you_mean, exit_codes_help


@click.command("config", cls=Command, epilog=exit_codes_help("config"),
               context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_interspersed_args": False})
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
    from deploytool.cli import main
    from deploytool.report.console import table

    if command is not None and command not in config.TABLES:
        raise UsageError(f"config: {command!r} reads no config{did_you_mean(command, config.TABLES)}; one of: "
                         f"{', '.join(config.TABLES)}")
    if args and command is None:
        raise UsageError("config: options given without a COMMAND")
    pyproject = config.find_pyproject()
    result: dict = {"pyproject": str(pyproject) if pyproject else None, "config": config_file, "commands": {}}
    for name in [command] if command else config.TABLES:
        cmd = main.commands[name]
        check_options(cmd, name, list(args))
        params = option_names(cmd)
        try:
            from_pyproject = checked_values(cmd, config.load_pyproject(pyproject, name, params),
                                            f"pyproject {pyproject}") if pyproject else {}
            from_file = checked_values(cmd, config.load(config_file, name, params),
                                       f"--config {config_file}") if config_file else {}
        except ValueError as e:
            raise UsageError(str(e)) from None
        sub = cmd.make_context(name, list(args), default_map={**from_pyproject, **from_file}, resilient_parsing=True)
        options, shown = {}, set()
        for long_name, (param, _multiple) in params.items():
            if param in shown:
                continue  # an alias of an option shown (--formats: --format)
            shown.add(param)
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
