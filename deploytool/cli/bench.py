"""``deploytool bench``: time a bundle's artifacts on their runtimes."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from deploytool.cli.options import (
    CONTEXT,
    Command,
    config_option,
    format_option,
    github_option,
    github_output,
    machine_option,
    open_progress,
    progress_options,
    reports_option,
    runtime_option,
    strict_option,
    verify_option,
)
from deploytool.core.errors import exit_codes_help
from deploytool.running.jobs import BENCH_MARGIN_S, RowStatus
from deploytool.targets import split_names

if TYPE_CHECKING:
    from deploytool.commands.bench import BenchOptions


@click.command("bench", cls=Command, context_settings=CONTEXT, epilog=exit_codes_help("bench"))
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@format_option("Artifacts to time, after the source model (torch eager, or Keras for a .keras source) as the "
               "baseline unless --no-source")
@runtime_option("Time only the targets on these runtimes")
@click.option("--emulate", "emulate", multiple=True, hidden=True, expose_value=True, metavar="ARCH[:CPU,...]",
              help="Refused: emulated CPUs are never timed.")
@click.option("--threads", default=("1",), multiple=True, show_default=True, metavar="N",
              help="Intra-op thread counts (repeatable or comma-separated), set through each runtime's own knob.")
@click.option("--batch", default=("1",), multiple=True, show_default=True, metavar="N",
              help="Batch sizes (repeatable or comma-separated; above 1 only where the batch dim is dynamic).")
@click.option("--min-time", default=5.0, show_default=True, type=click.FloatRange(0),
              help="Measure at least this long (s).")
@click.option("--min-runs", default=200, show_default=True, type=click.IntRange(1),
              help="Measure at least this many calls.")
@click.option("--warmup-runs", default=10, show_default=True, type=click.IntRange(0), help="Warm-up calls (at least).")
@click.option("--warmup-time", default=0.5, show_default=True, type=click.FloatRange(0),
              help="Warm-up time (s, at least).")
@click.option("--max-time", default=60.0, show_default=True, type=click.FloatRange(0), help="Hard cap per row (s).")
@click.option("--no-source", is_flag=True, help="Do not time the source model baseline.")
@click.option("--source", metavar="MODEL", help="Allow running the bundle's source model where it is Python (a "
              "model .py file or file.py:factory / package.module:factory) to time it as the baseline row; named as "
              "export's --model, it must be the one the manifest records (else exit 2). Without it no code a bundle "
              "names is run (that row is SKIPPED).")
@click.option("--pipeline", type=click.Path(dir_okay=False), help="A pipeline file (as validate --pipeline takes: "
              "preprocess, optionally postprocess; checked as validate checks them, exit 2): also time preprocess "
              "on each --raw-data sample and postprocess on each golden reference output (batches of one, medians) "
              "and print pre + inference + post per row.")
@click.option("--raw-data", type=click.Path(dir_okay=False), help="Raw samples for --pipeline (.npz).")
@click.option("--operating-point", metavar="threshold=P|top-k=K", help="The built-in postprocess --pipeline times "
              "where the file has none (default: the file's THRESHOLD / TOP_K, else top-k=1; refused, exit 2, where "
              "the file defines postprocess).")
@click.option("--no-peak", is_flag=True, help="Do not probe this machine's fp32 GEMM peak (no % of peak per row).")
@click.option("--compare", type=click.Path(file_okay=False), help="Baseline bundle: time both interleaved (A B A B) "
              "and flag rows whose p50 is slower than the baseline's by more than --threshold (exit 9).")
@click.option("--threshold", default=1.10, show_default=True, type=float,
              help="p50 ratio (candidate/baseline) that flags a regression.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Interleaved rounds per side with --compare.")
@strict_option
@verify_option
@click.option("--timeout", type=float, metavar="SECONDS", help="Time limit for each row's worker (default: "
              f"--max-time + {BENCH_MARGIN_S:g} s); a row still running is killed and reported as failed.")
@reports_option("bench.json and bench.csv")
@machine_option
@progress_options
@github_option
@config_option
@click.option("--debug", is_flag=True, help="Show tracebacks and every step.")
def bench_command(wide: bool, quiet: bool, github: bool, debug: bool, **kw) -> None:
    """Time every artifact of BUNDLE on its own runtime: import, load, first inference, steady state, memory.

    Each (artifact, threads, batch) row runs in a fresh process fed the bundle's golden inputs;
    steady state is timed one call at a time (perf_counter_ns) after a warm-up, until both
    --min-runs and --min-time are reached (hard cap --max-time). Reports p50/p90/p99 (numpy
    'linear' percentiles), min, mean, std, IQR, CV, throughput, peak RSS after load and during
    inference, and warns when there are too few samples for a p90/p99 claim (64 / 662, MLPerf) or
    when IQR/median >= 0.10. Rows are sorted by p90. Writes BUNDLE/reports/bench.json (with raw
    samples) and bench.csv.
    """
    from deploytool import api
    from deploytool.commands.bench import sorted_rows
    from deploytool.core.errors import UsageError
    from deploytool.report.console import bench_table, compare_table

    if kw.pop("emulate"):  # validate checks emulated CPUs; their latency would say nothing about a device's
        raise UsageError("--emulate: bench does not time emulated CPUs: QEMU runs ARM code ~70-900x slower than a "
                         "device would, so its latency says nothing about the device's; `validate --emulate` checks "
                         "their numbers")
    bundle, options = kw.pop("bundle"), bench_options(kw)
    with open_progress(debug, quiet) as progress:
        outcome = api.bench(bundle, options, progress)
    click.echo(f"model {outcome.manifest.model.name}: bundle {outcome.bundle}")
    if outcome.peak:
        from deploytool.report.console import peak_line

        click.echo(peak_line(outcome.manifest, outcome.peak))
    click.echo(bench_table(sorted_rows(outcome.rows), wide))
    if outcome.compare is not None:
        click.echo("")
        click.echo(compare_table(outcome.compare, options.threshold, wide))
    if outcome.pipeline:
        from deploytool.commands.pipeline import bench_lines

        click.echo("\n".join(bench_lines(outcome.pipeline, sorted_rows(outcome.rows))))
    click.echo(f"reports: {outcome.reports['json']}, {outcome.reports['csv']}")
    for r in outcome.rows:
        if r.status in (RowStatus.FAILED, RowStatus.CORRUPT):
            click.echo(f"deploytool: error: {r.label}: {r.reason}", err=True)
    for c in outcome.compare or []:
        if c.regression:
            click.echo(f"deploytool: error: {c.label}: p50 "
                       f"{c.ratio:.2f}x the baseline's (threshold {options.threshold:g})", err=True)
    github_output(github, lambda gh: gh.bench_annotations(outcome.manifest.model.name, outcome.rows, outcome.compare,
                                                          options.threshold), outcome.bundle, [outcome.reports["json"]])
    sys.exit(outcome.exit_code)


def bench_options(kw: dict) -> BenchOptions:
    """The one ``BenchOptions`` the command's parameters (click's names) describe."""
    from deploytool.commands.bench import BenchOptions, parse_int_list
    from deploytool.measuring.timing import Protocol

    protocol = Protocol(warmup_runs=kw["warmup_runs"], warmup_time=kw["warmup_time"], min_runs=kw["min_runs"],
                        min_time=kw["min_time"], max_time=max(kw["max_time"], kw["min_time"]))
    return BenchOptions(formats=split_names(kw["formats"]) or None, runtimes=split_names(kw["runtimes"]) or None,
                        threads=parse_int_list(",".join(kw["threads"]), "threads"),
                        batches=parse_int_list(",".join(kw["batch"]), "batch"),
                        protocol=protocol, compare=kw["compare"], threshold=kw["threshold"], rounds=kw["rounds"],
                        strict=kw["strict"], with_source=not kw["no_source"], source=kw["source"],
                        reports_dir=kw["reports"], verify_key=kw["verify_key"], timeout=kw["timeout"],
                        machine_name=kw["machine_name"], gemm_peak=not kw["no_peak"],
                        pipeline=kw.get("pipeline"), raw_data=kw.get("raw_data"),
                        operating_point=kw.get("operating_point"))
