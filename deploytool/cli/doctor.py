"""``deploytool doctor``: check this machine for a role."""
from __future__ import annotations

import sys

import click

from deploytool import __version__
from deploytool.cli.options import CONTEXT, Command
from deploytool.core.errors import exit_codes_help


@click.command("doctor", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("doctor"))
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
