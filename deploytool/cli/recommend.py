"""``deploytool recommend``: pick the target (an artifact on a runtime) to deploy within a budget."""
from __future__ import annotations

import sys

import click

from deploytool.cli.options import CONTEXT, Command, config_option, wide_option
from deploytool.core.errors import exit_codes_help
from deploytool.runtimes import RUNTIMES


@click.command("recommend", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("recommend"))
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--max-p90-ms", type=float, help="Latency budget: p90 per call, in ms.")
@click.option("--max-size-mb", type=float, help="Artifact size budget, MiB.")
@click.option("--max-accuracy-drop", type=float, help="Task accuracy budget: points below the source's (as the "
              "export/validate gate; needs labelled data).")
@click.option("--max-rss-mb", type=float, help="Peak resident memory budget of the runtime process, MB.")
@click.option("--runtime", "runtimes", metavar="NAME", multiple=True, help="Only targets on these runtimes "
              "(repeatable or comma-separated, e.g. litert on a device; default: every runtime; one of: "
              f"{', '.join(RUNTIMES)}).")
@click.option("--machine", help="Rank on the latency measured on this machine (its --machine-name or fingerprint).")
@click.option("--threads", type=click.IntRange(1), help="Only rows measured at this thread count.")
@click.option("--allow-other-machine", is_flag=True, help="Rank on the only benchmarked machine even when --machine "
              "names another.")
@click.option("--json", "as_json", is_flag=True, help="Print the recommendation as JSON.")
@wide_option
@config_option
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def recommend_command(bundle, results, max_p90_ms, max_size_mb, max_accuracy_drop, max_rss_mb, runtimes, machine,
                      threads, allow_other_machine, as_json, wide, debug):
    """Pick the target to deploy (an artifact on a runtime: onnx and onnx@openvino are two): those
    that passed their checks, filtered by the budget, ranked (Pareto set on p90 latency and size
    first, then by p90), with every excluded target's broken limit and by how much, and the command
    to confirm the choice on the device. Exit 10 when no target meets the budget."""
    import json

    from deploytool import api
    from deploytool.commands.recommend import Budget
    from deploytool.report.console import fit

    budget = Budget(max_p90_ms, max_size_mb, max_accuracy_drop, max_rss_mb, list(runtimes), machine, threads,
                    allow_other_machine)
    outcome = api.recommend(bundle, budget, list(results))
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=2))
        sys.exit(outcome.exit_code)
    click.echo(f"bundle {outcome.bundle}: latency measured on {outcome.machine}")
    rows = [[str(i + 1), c.target, c.runtime, "yes" if c.pareto else "", str(c.threads), f"{c.p90_ms:.3f}",
             f"{c.p50_ms:.3f}", f"{c.size_mb:.2f}", f"{c.rss_mb:.0f}",
             "-" if c.accuracy is None else f"{c.accuracy:.2%} ({-(c.accuracy_drop or 0):+.2f})"]
            for i, c in enumerate(outcome.ranked)]
    if rows:
        click.echo(fit(["rank", "target", "runtime", "pareto", "thr", f"p90_ms@{outcome.machine}", "p50_ms",
                        "size_mb", "rss_mb", "accuracy"], rows, [], ["rss_mb", "p50_ms"], wide))
    for name, reasons in outcome.excluded.items():
        click.echo(f"excluded {name}: {'; '.join(reasons)}")
    if outcome.confirm:
        click.echo(f"recommended: {outcome.ranked[0].target}; confirm on the device: {outcome.confirm}")
    else:
        click.echo("deploytool: error: no artifact meets the budget", err=True)
    sys.exit(outcome.exit_code)

