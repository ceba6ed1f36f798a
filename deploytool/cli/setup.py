"""``deploytool setup``: install what runtimes and converters need beyond pip (npm packages, other Python
environments, the aarch64 emulation)."""
from __future__ import annotations

import click

from deploytool.cli.options import CONTEXT, Command
from deploytool.commands.setup import parts
from deploytool.core.errors import exit_codes_help


@click.command("setup", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("setup"))
@click.option("--offline", is_flag=True, help="Install the npm packages from npm's own cache only (~/.npm): fail "
              "instead of reaching the registry (the other parts still reach theirs: --skip them).")
@click.option("--skip", "skip", multiple=True, type=click.Choice(parts()), metavar="|".join(parts()),
              help="Leave this part out (repeatable): its formats then fail to export, and its targets are SKIPPED, "
              "saying to run setup.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def setup_command(offline, skip, debug):
    """Install what deploytool's formats and runtimes need beyond `pip install`, each once per machine into
    $DEPLOYTOOL_CACHE (default ~/.cache/deploytool), so that nothing is fetched when export, validate or bench run:

    \b
    - npm: the browser runtimes' JavaScript packages (onnxruntime-web, TensorFlow.js) at the versions and
      integrity hashes deploytool/browser/package-lock.json pins, with `npm ci --ignore-scripts` (no package's
      scripts run), into npm/KEY (KEY hashes the lockfile);
    - tfjs: a Python environment for the TensorFlow.js converter (tensorflowjs 4.22 pins TensorFlow 2.19, which
      cannot share deploytool's own), made with `python -m venv` + `pip install` from the lock deploytool ships
      (deploytool/envs/tfjs.txt, every package pinned), into envs/tfjs-KEY (~3 GB);
    - aarch64: the emulation `validate --emulate aarch64` runs on: qemu-aarch64 (QEMU >= 10, Debian
      bookworm-backports), an arm64 Python 3.11 from Debian's arm64 packages and the aarch64 wheels of LiteRT,
      onnxruntime and numpy, every one pinned with its sha256 (deploytool/emulation/aarch64-*.txt), fetched
      through an apt configuration of its own (the system's is not changed; no root needed), into
      emulation/aarch64-KEY (~230 MB).

    Running it again changes nothing. Also lists the programs runtimes need that this machine lacks (e.g.
    chromium, g++), with the command that installs them."""
    from deploytool import api

    outcome = api.setup(offline=offline, skip=tuple(skip))
    for done in outcome.done:
        how = f"installed in {done.install_s:.1f} s" if done.install_s else "already installed"
        click.echo(f"{done.what}: {how}: {done.folder}")
    for name in outcome.skipped:
        if not any(w.startswith(f"{name}:") for w in outcome.warnings):
            click.echo(f"{name}: skipped (--skip)")
    for line in outcome.warnings:
        click.echo(f"deploytool: warning: {line}", err=True)
    for line in outcome.programs_missing:
        click.echo(f"deploytool: warning: not on PATH: {line}", err=True)
