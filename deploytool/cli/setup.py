"""``deploytool setup``: install what the runtimes need beyond pip (the browser runtimes' npm packages)."""
from __future__ import annotations

import click

from deploytool.cli.options import CONTEXT, Command
from deploytool.core.errors import exit_codes_help


@click.command("setup", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("setup"))
@click.option("--offline", is_flag=True, help="Install from npm's own cache only (~/.npm): fail instead of "
              "reaching the registry.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def setup_command(offline, debug):
    """Install the browser runtimes' JavaScript packages (onnxruntime-web) at the versions and integrity hashes
    deploytool/browser/package-lock.json pins, with `npm ci --ignore-scripts` (no package's scripts run), into
    $DEPLOYTOOL_CACHE/npm/KEY (default ~/.cache/deploytool/npm/KEY; KEY hashes the lockfile). Run once per
    machine; running it again changes nothing. Nothing is fetched when export, validate or bench run: without
    this, the browser targets are SKIPPED saying to run it. Also lists the programs runtimes need that this
    machine lacks (e.g. chromium), with the command that installs them."""
    from deploytool import api

    outcome = api.setup(offline=offline)
    what = ", ".join(f"{name} {version}" for name, version in outcome.npm_packages.items())
    how = f"installed in {outcome.install_s:.1f} s" if outcome.install_s else "already installed"
    click.echo(f"npm packages {what}: {how}: {outcome.npm_folder}")
    for line in outcome.programs_missing:
        click.echo(f"deploytool: warning: not on PATH: {line}", err=True)
