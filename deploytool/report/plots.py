"""The report's plots, drawn with matplotlib (the ``report`` extra) as inline SVG text: latency
distribution per artifact from bench's raw samples, latency vs size with the Pareto set marked,
and per-hop error along each export chain. ``available()`` says whether matplotlib is installed."""
from __future__ import annotations

import importlib.util
import io

from deploytool.install import hint
from deploytool.report.view import ArtifactView, pareto

INSTALL_HINT = hint("report")


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue and DOCTYPE: the SVG goes inline


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: no embedded font, nothing fetched
    import matplotlib.pyplot as plt

    return plt


def latency(views: list[ArtifactView], machine: str) -> str | None:
    rows = [(v.label, t) for v in views if (t := v.best(machine)) is not None and t.samples_ms]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    ax.boxplot([t.samples_ms for _, t in rows], vert=False, showfliers=False)
    ax.set_yticks(range(1, len(rows) + 1), [f"{n} ({t.threads}t)" for n, t in rows])
    lo = min(min(t.samples_ms) for _, t in rows)
    hi = max(max(t.samples_ms) for _, t in rows)
    if lo > 0 and hi / lo > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency per call, ms (box: quartiles, whiskers: 1.5 IQR)")
    ax.set_title(f"Latency distribution @ {machine}")
    return _svg(fig)


def latency_vs_size(views: list[ArtifactView], machine: str) -> str | None:
    pts = {v.label: (t.p90_ms, v.size_bytes / 2**20) for v in views
           if v.passed and v.size_bytes and (t := v.best(machine)) is not None}
    if not pts:
        return None
    front = pareto(pts)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (x, y) in pts.items():
        ax.scatter([x], [y], marker="*" if name in front else "o", s=120 if name in front else 40)
        acc = next((v.accuracy for v in views if v.label == name and v.accuracy), None)
        ax.annotate(name + (f" {acc['accuracy']:.1%}" if acc else ""), (x, y), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    xs = [x for x, _ in pts.values()]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("p90 latency, ms")
    ax.set_ylabel("size, MiB")
    ax.set_title(f"Latency vs size @ {machine} (stars: Pareto-optimal)")
    return _svg(fig)


def hop_errors(views: list[ArtifactView]) -> str | None:
    rows = [(" → ".join(v.chain[-2:]), max(v.hop_errors.values())) for v in views if v.hop_errors]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    ax.barh([r[0] for r in rows], [max(r[1], 1e-12) for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("largest absolute error against the parent artifact (per hop)")
    ax.set_title("Per-hop error along each export chain")
    return _svg(fig)


def step_errors(views: list[ArtifactView]) -> str | None:
    """The multi-step check's error per step, one line per target, the first diverging decision marked."""
    rows = [(v.label, v.steps) for v in views if v.steps and v.steps.get("step_error")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rec in rows:
        errs = [max(e, 1e-12) for e in rec["step_error"]]
        line, = ax.plot(range(1, len(errs) + 1), errs, label=name)
        first = rec.get("first_diverging_step")
        if first:
            ax.plot([first], [errs[first - 1]], marker="x", color=line.get_color(), markersize=9)
    ax.set_yscale("log")
    ax.set_xlabel("step (x: first step whose greedy decision differs)")
    ax.set_ylabel("error relative to the reference's magnitude")
    ax.set_title("Multi-step parity: error growth over the steps")
    ax.legend(fontsize=7)
    return _svg(fig)
