"""``deploytool report``: one page per model from a bundle's results."""
from __future__ import annotations

import click

from deploytool.cli.options import CONTEXT, Command, config_option
from deploytool.core.errors import exit_codes_help


@click.command("report", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("report"))
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Where report.md / report.html go (default: "
              "BUNDLE/reports).")
@config_option
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
