"""The facts a report and ``recommend`` show, gathered from the results (manifest, validation.json
and bench.json per machine), one record per artifact. Reads; computes nothing new beyond picking
the rows (batch 1) and the Pareto set of (p90, size)."""
from __future__ import annotations

from dataclasses import dataclass, field

from deploytool.running.jobs import FAILING_CHECKS

FAILURES = tuple(str(s) for s in FAILING_CHECKS)


@dataclass
class Timing:
    threads: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    load_ms: float
    first_ms: float
    rss_mb: float
    samples_ms: list[float]


@dataclass
class ArtifactView:
    name: str
    runtime: str
    precision: str
    chain: list[str]
    size_bytes: int | None
    exported: str  # the manifest's status
    verdicts: dict[str, str] = field(default_factory=dict)  # machine -> pass/fail/...
    max_abs: float | None = None
    accuracy: dict | None = None
    reason: str = ""
    hop_blamed: str | None = None
    repro: str | None = None
    hop_errors: dict[str, float] = field(default_factory=dict)  # set -> max abs error vs the parent
    timings: dict[str, list[Timing]] = field(default_factory=dict)  # machine -> rows at batch 1
    route: str = ""  # the fallback route that made it and why earlier ones failed (empty: the first route)

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and all(v == "pass" for v in self.verdicts.values())

    @property
    def failed(self) -> bool:
        """A verdict that is a failure (not needs_data, not_applicable or a skip for a missing runtime)."""
        return any(v in FAILURES for v in self.verdicts.values())

    def best(self, machine: str, threads: int | None = None, max_p90_ms: float | None = None,
             max_rss_mb: float | None = None) -> Timing | None:
        """The fastest row (p90) on ``machine``, among those within the limits when any of them is; else
        the fastest of all (so a breach can be reported with its figures)."""
        rows = [t for t in self.timings.get(machine, []) if threads is None or t.threads == threads]
        fits = [t for t in rows if (max_p90_ms is None or t.p90_ms <= max_p90_ms)
                and (max_rss_mb is None or t.rss_mb <= max_rss_mb)]
        return min(fits or rows, key=lambda t: t.p90_ms) if rows else None


def artifacts(results) -> list[ArtifactView]:
    m = results.manifest
    views = {}
    for name, rec in m.artifacts.items():
        views[name] = ArtifactView(name, rec.runtime, rec.precision, rec.chain, rec.size_bytes or None, str(rec.status),
                                   route=rec.route.text() if rec.route else "")
    for data in results.validations:
        machine = data["machine"]["name"]
        for name, a in data["artifacts"].items():
            v = views.get(name)
            if v is None:
                continue
            v.verdicts[machine] = a["status"]
            if v.max_abs is None:
                v.max_abs, v.accuracy, v.reason = a.get("max_abs"), a.get("accuracy"), a.get("reason") or ""
                v.hop_blamed, v.repro = a.get("hop_blamed"), a.get("repro")
                for set_name, per_out in (a.get("hop") or {}).items():
                    errs = [x["metrics"]["max_abs"] for x in per_out.values()
                            if x["metrics"].get("max_abs") is not None]
                    if errs:
                        v.hop_errors[set_name] = max(errs)
    for name, v in views.items():  # not in any validation.json given: the check export made
        check = m.artifacts[name].check
        if not v.verdicts and check is not None:
            v.verdicts["export"] = str(check.status)
            v.max_abs, v.reason, v.hop_blamed = check.max_abs, check.reason or "", check.hop_blamed
    for data in results.benches:
        machine = data["machine"]["name"]
        for r in data["rows"]:
            v = views.get(r["format"])
            if v is None or r.get("status") != "ok" or r.get("batch") != 1:
                continue
            v.timings.setdefault(machine, []).append(Timing(
                r["threads"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["load_s"] * 1e3, r["first_inference_ms"],
                r["rss_peak_mb"], [s / 1e6 for s in r.get("samples_ns", [])]))
    return list(views.values())


def pareto(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names not dominated on (latency, size): nothing else is at least as good on both and better on one."""
    out = set()
    for n, (a, b) in points.items():
        if not any((a2 <= a and b2 <= b) and (a2 < a or b2 < b) for n2, (a2, b2) in points.items() if n2 != n):
            out.add(n)
    return out
