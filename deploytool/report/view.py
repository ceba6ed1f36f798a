"""The facts a report and ``recommend`` show, gathered from the results (manifest, validation.json
and bench.json per machine), one record per target (an artifact on a runtime). Reads; computes
nothing new beyond picking the rows (batch 1) and the Pareto set of (p90, size). Result files of
earlier versions (keyed by format) read as each format on the runtime they name."""
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
    name: str  # the format
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
    several: bool = False  # its artifact is shown on several runtimes

    @property
    def key(self) -> str:
        """The target key, ``onnx@openvino``."""
        return f"{self.name}@{self.runtime}"

    @property
    def label(self) -> str:
        """How prose names it: the format on its default runtime, FORMAT@RUNTIME on another."""
        from deploytool.results import target_label

        return target_label(self.name, self.runtime)

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
    """One view per target: every (artifact, runtime) that export checked, a validation.json judged or a
    bench.json timed; an artifact with none of these, on its default runtime."""
    from deploytool.results import targets_of

    m = results.manifest
    views: dict[str, ArtifactView] = {}

    def view(fmt: str, runtime: str) -> ArtifactView | None:
        rec = m.artifacts.get(fmt)
        if rec is None:
            return None
        key = f"{fmt}@{runtime}"
        if key not in views:
            views[key] = ArtifactView(fmt, runtime, rec.precision, rec.chain, rec.size_bytes or None, str(rec.status),
                                      route=rec.route.text() if rec.route else "")
        return views[key]

    for name, rec in m.artifacts.items():
        for key in rec.checks or {f"{name}@{rec.runtime}": rec.check}:
            view(name, key.split("@")[1])
    for data in results.validations:
        machine = data["machine"]["name"]
        for a in targets_of(data).values():
            v = view(a.get("format", ""), a.get("runtime", ""))
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
    for key, v in views.items():  # not in any validation.json given: the check export made
        rec = m.artifacts[v.name]
        check = rec.checks.get(key) or (rec.check if v.runtime == rec.runtime else None)
        if not v.verdicts and check is not None:
            v.verdicts["export"] = str(check.status)
            v.max_abs, v.reason, v.hop_blamed = check.max_abs, check.reason or "", check.hop_blamed
    for data in results.benches:
        machine = data["machine"]["name"]
        for r in data["rows"]:
            if r.get("status") != "ok" or r.get("batch") != 1:
                continue
            v = view(r["format"], r["runtime"])
            if v is None:
                continue
            v.timings.setdefault(machine, []).append(Timing(
                r["threads"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["load_s"] * 1e3, r["first_inference_ms"],
                r["rss_peak_mb"], [s / 1e6 for s in r.get("samples_ns", [])]))
    order = list(m.artifacts)
    out = sorted(views.values(), key=lambda v: (order.index(v.name), v.runtime != m.artifacts[v.name].runtime,
                                                v.runtime))
    for v in out:
        v.several = sum(1 for w in out if w.name == v.name) > 1
    return out


def pareto(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names not dominated on (latency, size): nothing else is at least as good on both and better on one."""
    out = set()
    for n, (a, b) in points.items():
        if not any((a2 <= a and b2 <= b) and (a2 < a or b2 < b) for n2, (a2, b2) in points.items() if n2 != n):
            out.add(n)
    return out
