"""``deploytool recommend``: which target (an artifact on a runtime) to deploy, against a budget, from measured
results.

Only targets that passed their checks are candidates: one artifact on two runtimes (``onnx`` and
``onnx@openvino``) is two candidates, and ``runtimes`` narrows them. Each budget limit that one breaks is
named with by how much; the rest are ranked, the Pareto set on (p90 latency, size) first, then by p90.
Latency is only ever compared on one machine (the one named, or the only one benchmarked): every
figure is labelled with it, and ranking on another machine's figures needs ``allow_other_machine``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from deploytool.core import errors
from deploytool.core.errors import UsageError
from deploytool.report.view import ArtifactView, Timing, artifacts, pareto
from deploytool.results import Results, collect
from deploytool.targets import check_runtimes


@dataclass
class Budget:
    max_p90_ms: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float | None = None  # points, as the export/validate gate
    max_rss_mb: float | None = None
    runtimes: list[str] | str | None = None  # --runtime values (``targets.select``'s grammar); None: every one
    machine: str | None = None
    threads: int | None = None
    allow_other_machine: bool = False


@dataclass
class Candidate:
    target: str  # its label: the format on its default runtime, FORMAT@RUNTIME on another
    format: str
    runtime: str
    machine: str
    threads: int
    p90_ms: float
    p50_ms: float
    size_mb: float
    rss_mb: float
    accuracy: float | None
    accuracy_drop: float | None
    pareto: bool = False


@dataclass
class RecommendOutcome:
    bundle: Path
    machine: str
    budget: Budget
    ranked: list[Candidate]
    excluded: dict[str, list[str]] = field(default_factory=dict)  # target label -> the limits it broke
    confirm: str | None = None
    exit_code: int = errors.OK

    def to_json(self) -> dict:
        return {"bundle": str(self.bundle), "machine": self.machine, "budget": asdict(self.budget),
                "ranked": [asdict(c) for c in self.ranked], "excluded": self.excluded, "confirm": self.confirm,
                "exit_code": self.exit_code}


def _over(what: str, value: float, limit: float, unit: str) -> str:
    return f"{what} {value:.3g} {unit} > {limit:g} {unit} (by {value - limit:.3g} {unit}, +{(value / limit - 1):.0%})" \
        if limit > 0 else f"{what} {value:.3g} {unit} > {limit:g} {unit}"


def run(bundle_dir: Path | str, budget: Budget, extra: list[Path | str] | None = None) -> RecommendOutcome:
    for name in ("max_p90_ms", "max_size_mb", "max_accuracy_drop", "max_rss_mb"):
        value = getattr(budget, name)
        if value is not None and not value >= 0:
            raise UsageError(f"--{name.replace('_', '-')} {value}: must be >= 0")
    check_runtimes(budget.runtimes)  # a typo is said before the bundle is read
    return rank(collect(bundle_dir, extra), budget)


def _machine(results: Results, budget: Budget) -> str:
    """The machine whose latency the ranking is on."""
    benched = list(dict.fromkeys(d["machine"]["name"] for d in results.benches))
    if not benched:
        raise UsageError(f"bundle {results.root}: no bench results to rank on (run deploytool bench first, or pass "
                         "bench.json files made elsewhere)")
    machine = budget.machine
    if machine is None:
        if len(benched) > 1:
            raise UsageError(f"results from several machines ({', '.join(benched)}): name one with --machine")
        return benched[0]
    if machine not in benched:
        if not budget.allow_other_machine or len(benched) != 1:
            raise UsageError(f"no bench results measured on {machine!r} (measured on: {', '.join(benched)}); "
                             "latency from another machine says little about this one (--allow-other-machine to use "
                             "the only other one anyway)")
        return benched[0]
    return machine


def rank(results: Results, budget: Budget) -> RecommendOutcome:
    """Every target of ``results`` ranked against ``budget``, or excluded with why (the outcome's budget names
    its runtimes as ``check_runtimes`` reads them)."""
    budget = replace(budget, runtimes=check_runtimes(budget.runtimes))
    machine = _machine(results, budget)
    ranked, excluded = [], {}
    for v in artifacts(results):
        t, reasons = _judge(v, budget, machine)
        if t is None or reasons:
            excluded[v.label] = reasons
            continue
        ranked.append(Candidate(v.label, v.name, v.runtime, machine, t.threads, t.p90_ms, t.p50_ms,
                                (v.size_bytes or 0) / 2**20, t.rss_mb, v.accuracy["accuracy"] if v.accuracy else None,
                                v.accuracy["drop_points"] if v.accuracy else None))
    front = pareto({c.target: (c.p90_ms, c.size_mb) for c in ranked})
    for c in ranked:
        c.pareto = c.target in front
    ranked.sort(key=lambda c: (not c.pareto, c.p90_ms))
    outcome = RecommendOutcome(results.root, machine, budget, ranked, excluded)
    if ranked:
        best = ranked[0]
        outcome.confirm = (f"deploytool bench {results.root} -f {best.format} --runtime {best.runtime} "
                           f"--threads {best.threads} --no-source")
    else:
        outcome.exit_code = errors.NO_MATCH
    return outcome


def _judge(v: ArtifactView, budget: Budget, machine: str) -> tuple[Timing | None, list[str]]:
    """The row target ``v`` is ranked on, and why it is not a candidate: not passed, off the runtimes asked for,
    not benchmarked, or each budget limit it breaks (none: a candidate)."""
    if not v.passed:
        status = ", ".join(sorted(set(v.verdicts.values())))
        return None, [f"did not pass its checks ({status})" if status else
                      f"never checked (export status: {v.exported})"]
    if budget.runtimes and v.runtime not in budget.runtimes:
        wanted = budget.runtimes[0] if len(budget.runtimes) == 1 else f"one of {', '.join(budget.runtimes)}"
        return None, [f"runtime {v.runtime}, not {wanted}"]
    t = v.best(machine, budget.threads, budget.max_p90_ms, budget.max_rss_mb)
    if t is None:
        return None, [f"not benchmarked on {machine}" + (f" at {budget.threads} threads" if budget.threads else "")]
    reasons = []
    size_mb = (v.size_bytes or 0) / 2**20
    drop = v.accuracy["drop_points"] if v.accuracy else None
    if budget.max_p90_ms is not None and t.p90_ms > budget.max_p90_ms:
        reasons.append(_over("p90", t.p90_ms, budget.max_p90_ms, "ms"))
    if budget.max_size_mb is not None and size_mb > budget.max_size_mb:
        reasons.append(_over("size", size_mb, budget.max_size_mb, "MiB"))
    if budget.max_rss_mb is not None and t.rss_mb > budget.max_rss_mb:
        reasons.append(_over("peak RSS", t.rss_mb, budget.max_rss_mb, "MB"))
    if budget.max_accuracy_drop is not None:
        if drop is None:
            reasons.append("accuracy not measured (no labelled data): the accuracy budget cannot be confirmed")
        elif drop > budget.max_accuracy_drop:
            reasons.append(_over("accuracy drop", drop, budget.max_accuracy_drop, "points"))
    return t, reasons
