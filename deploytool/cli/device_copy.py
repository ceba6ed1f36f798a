"""``deploytool device-copy``: a copy of a bundle for a device, without what only the export machine needs."""
from __future__ import annotations

import click

from deploytool.cli.options import CONTEXT, Command
from deploytool.core.errors import exit_codes_help


@click.command("device-copy", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("device-copy"))
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.argument("dest", type=click.Path(path_type=str))
@click.option("--force", is_flag=True, help="Replace DEST if it is a bundle or an empty directory (anything else is "
              "refused).")
@click.option("--verify", "verify_key", type=click.Path(dir_okay=False), metavar="PUBKEY.pem",
              help="Refuse (exit 8) unless the signature verifies with this public key, on BUNDLE and on the copy.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def device_copy_command(bundle, dest, force, verify_key, debug):
    """Copy BUNDLE to DEST for a device: what validate and bench read, without what only export needs.

    \b
    Left out:
      golden/calibration.npz  the int8 formats' calibration data: only export reads it (the manifest keeps
                              its sha256; validate and bench do not need it)
      logs/                   the export machine's converter and worker logs
      reports/                the export machine's results and repro folders (validate writes its own)

    manifest.json and signature.sig are copied unchanged, so every hash and the signature still verify
    (`validate DEST --verify PUBKEY`). A bundle signed by a deploytool older than this command has its
    calibration data signed too: it is kept then, and the output says so. Nothing is followed through a
    link; DEST is staged beside itself, every hash of the copy is checked (and its signature, with
    --verify), and only then is it renamed into place: an interrupted copy leaves no DEST.
    """
    from deploytool import api
    from deploytool.report.console import human_size

    outcome = api.device_copy(bundle, dest, force=force, verify_key=verify_key)
    verified = ", signature verified" if outcome.verified else ""
    click.echo(f"device copy: {outcome.dest}  ({human_size(outcome.bytes_copied)} of "
               f"{human_size(outcome.bytes_full)}{verified}; {outcome.seconds:.1f} s)")
    for rel, (size, why) in outcome.left_out.items():
        click.echo(f"  left out {rel} ({human_size(size)}): {why}")
    for message in outcome.messages:
        click.echo(f"note: {message}")
