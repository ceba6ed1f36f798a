"""The facts a report and ``recommend`` show, gathered from the results (manifest, validation.json
and bench.json per machine), one record per target (an artifact on a runtime). Reads; computes
nothing new beyond picking the rows (batch 1), the Pareto set of (p90, size) and laying the targets
out as the "where it runs" matrix (``matrix``). Result files of earlier versions (keyed by format)
read as each format on the runtime they name.

Each verdict keeps where it comes from (``Checked``): the newest results of a machine hold the targets
checked in its latest run and, after a partial ``validate -f``, those kept from earlier runs, each with
its own date; a target no validation.json names shows the check export made (``EXPORT``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from deploytool import platforms
from deploytool.core.target import NATIVE, Target
from deploytool.formats import FORMATS
from deploytool.results import targets_of
from deploytool.running.jobs import FAILING_CHECKS
from deploytool.targets import runtimes_of

FAILURES = tuple(str(s) for s in FAILING_CHECKS)
EXPORT = "export"  # the machine name of a verdict taken from the manifest (the check export made)
# What a failing status means, for a headline (a failed export is said from the manifest's status instead)
FAILURE_KIND = {"fail": "does not match the reference", "vacuous": "vacuous: a trivial artifact would pass its check",
                "error": "failed to load or run", "corrupt": "refused: its files do not match their hashes",
                "not_exported": "not exported"}
EXPORT_KIND = {"failed": "failed to export", "skipped": "not exported: the artifact it is made from failed"}


@dataclass
class Checked:
    """Where one machine's verdict on a target comes from."""

    date: str  # when it was checked (ISO 8601, UTC)
    now: bool  # in the latest run of that machine's results (False: kept from an earlier run, or export's check)


def when(date: str) -> str:
    """``2026-12-03 12:18 UTC`` from an ISO 8601 time (as the result files hold it)."""
    return f"{date[:10]} {date[11:16]} UTC" if len(date) >= 16 and date[10] == "T" else date


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
    basis: str = ""  # what the verdict shown was decided on (``ArtifactCheck.basis``)
    checked: dict[str, Checked] = field(default_factory=dict)  # machine -> where its verdict comes from
    platform: str = NATIVE  # an emulated CPU (deploytool.platforms), else native
    executed: str = ""  # the precision it computed in, where a check said (``ArtifactCheck.executed``)
    steps: dict | None = None  # the multi-step check shown (``ArtifactCheck.steps``)
    families: dict = field(default_factory=dict)  # input family -> its verdict (``ArtifactCheck.families``)

    @property
    def key(self) -> str:
        """The target key, ``onnx@openvino`` (``tflite_int8@litert@aarch64-cortex-a55`` on an emulated CPU)."""
        return Target(self.name, self.runtime, self.platform).key

    @property
    def column(self) -> str:
        """Where it runs, as the matrix's column names it: the runtime (and the emulated CPU)."""
        return Target(self.name, self.runtime, self.platform).where

    @property
    def label(self) -> str:
        """How prose names it: the format on its default runtime, FORMAT@RUNTIME on another."""
        from deploytool.results import target_label

        return target_label(self.name, self.runtime, self.platform)

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and all(v == "pass" for v in self.verdicts.values())

    @property
    def failed(self) -> bool:
        """A verdict that is a failure (not needs_data, not_applicable or a skip for a missing runtime)."""
        return any(v in FAILURES for v in self.verdicts.values())

    @property
    def now(self) -> bool:
        """Checked in the latest run of some machine's results (a verdict of unknown origin counts as such)."""
        return any(m not in self.checked or self.checked[m].now for m in self.verdicts)

    @property
    def failure(self) -> str:
        """What its failure is, in words (empty when it did not fail)."""
        bad = next((s for s in self.verdicts.values() if s in FAILURES), None)
        if bad is None:
            return ""
        return EXPORT_KIND.get(self.exported, FAILURE_KIND[bad]) if bad == "not_exported" else FAILURE_KIND[bad]

    def origin(self, machine: str) -> str:
        """``earlier: 2026-12-03 12:18 UTC`` for a verdict not reached in the latest run (empty otherwise)."""
        c = self.checked.get(machine)
        if c is None or c.now:
            return ""
        return f"{'export' if machine == EXPORT else 'earlier'}: {when(c.date)}"

    def best(self, machine: str, threads: int | None = None, max_p90_ms: float | None = None,
             max_rss_mb: float | None = None) -> Timing | None:
        """The fastest row (p90) on ``machine``, among those within the limits when any of them is; else
        the fastest of all (so a breach can be reported with its figures)."""
        rows = [t for t in self.timings.get(machine, []) if threads is None or t.threads == threads]
        fits = [t for t in rows if (max_p90_ms is None or t.p90_ms <= max_p90_ms)
                and (max_rss_mb is None or t.rss_mb <= max_rss_mb)]
        return min(fits or rows, key=lambda t: t.p90_ms) if rows else None

    def single(self, machine: str) -> Timing | None:
        """The row the matrix compares runtimes on: at 1 thread (batch 1), else the fastest at any thread count."""
        return self.best(machine, threads=1) or self.best(machine)


@dataclass
class Matrix:
    """Where each artifact runs: a row per artifact (manifest order), a column per runtime that runs any of
    them (each artifact's runtimes as the registries order them, its default first), the target's view in a
    cell. A runtime absent from a row does not run that artifact; None: it does, but nothing checked it."""

    runtimes: list[str]
    rows: dict[str, dict[str, ArtifactView | None]]
    exported: dict[str, str]  # format -> the manifest's status


def matrix(manifest, views: list[ArtifactView]) -> Matrix:
    """The "where it runs" matrix of ``views`` (``artifacts``); a runtime a result names that the registries
    do not (a plugin not installed here) is a column too."""
    rows: dict[str, dict[str, ArtifactView | None]] = {}
    for name in manifest.artifacts:
        runs = {r: None for r in runtimes_of(name)}
        rows[name] = {**runs, **{v.column: v for v in views if v.name == name}}
    runtimes = list(dict.fromkeys(r for cells in rows.values() for r in cells))
    return Matrix(runtimes, rows, {name: str(rec.status) for name, rec in manifest.artifacts.items()})


def artifacts(results) -> list[ArtifactView]:
    """One view per target: every (artifact, runtime) that export checked, a validation.json judged or a
    bench.json timed; an artifact with none of these, on its default runtime."""
    m = results.manifest
    views: dict[str, ArtifactView] = {}

    def view(fmt: str, runtime: str, platform: str = NATIVE) -> ArtifactView | None:
        rec = m.artifacts.get(fmt)
        if rec is None:
            return None
        key = Target(fmt, runtime, platform).key
        if key not in views:
            views[key] = ArtifactView(fmt, runtime, rec.precision, rec.chain, rec.size_bytes or None, str(rec.status),
                                      route=rec.route.text() if rec.route else "", platform=platform)
        return views[key]

    for name, rec in m.artifacts.items():
        for key in rec.checks or {f"{name}@{rec.runtime}": rec.check}:
            t = Target.parse(key, rec.runtime)
            view(name, t.runtime, t.platform)
    for (machine, _key), (entry, checked) in _newest(results.validations).items():
        v = view(entry.get("format", ""), entry.get("runtime", ""), entry.get("platform") or NATIVE)
        if v is not None:
            _take(v, machine, entry, checked)
            v.executed = entry.get("executed") or v.executed
    for v in views.values():  # a view from export's checks alone: what it computed in, as the judge decides it
        if not v.executed and v.name in FORMATS:
            v.executed = platforms.executed_precision(v.precision, FORMATS[v.name].compute, v.platform)
    for key, v in views.items():  # not in any validation.json given: the check export made
        rec = m.artifacts[v.name]
        check = rec.checks.get(key) or (rec.check if v.runtime == rec.runtime else None)
        if not v.verdicts and check is not None:
            # ``basis`` in the manifest's checks is newer than some bundles: absent there, none is shown
            _take(v, EXPORT, {"status": str(check.status), "max_abs": check.max_abs, "reason": check.reason,
                              "hop_blamed": check.hop_blamed, "basis": check.basis},
                  Checked(m.created, False))
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
                                                v.runtime, v.platform != NATIVE, v.platform))
    for v in out:
        v.several = sum(1 for w in out if w.name == v.name) > 1
    return out


def _newest(validations: list[dict]) -> dict[tuple[str, str], tuple[dict, Checked]]:
    """Per (machine, target key), the entry checked last, and where it comes from: a machine's results may
    come in several files (its own report and one given again, an older one beside a partial run's)."""
    latest: dict[str, str] = {}
    for data in validations:
        name = data["machine"]["name"]
        latest[name] = max(latest.get(name, ""), str(data.get("created") or ""))
    out: dict[tuple[str, str], tuple[dict, Checked]] = {}
    for data in validations:
        name = data["machine"]["name"]
        for key, entry in targets_of(data).items():
            date = str(entry.get("checked") or data.get("created") or "")
            if (name, key) not in out or date > out[(name, key)][1].date:
                out[(name, key)] = entry, Checked(date, date == latest[name])
    return out


def _take(v: ArtifactView, machine: str, entry: dict, checked: Checked) -> None:
    """One machine's verdict on the view's target; its details are the ones shown unless another
    machine's are already, and that one is not a failure where this one is."""
    v.verdicts[machine] = entry["status"]
    v.checked[machine] = checked
    shown = [s for mach, s in v.verdicts.items() if mach != machine]
    if shown and (entry["status"] not in FAILURES or any(s in FAILURES for s in shown)):
        return
    v.max_abs, v.accuracy, v.reason = entry.get("max_abs"), entry.get("accuracy"), entry.get("reason") or ""
    v.families = entry.get("families") or {}
    v.basis, v.hop_blamed, v.repro = entry.get("basis") or "", entry.get("hop_blamed"), entry.get("repro")
    v.steps = entry.get("steps")
    v.hop_errors = {}
    for set_name, per_out in (entry.get("hop") or {}).items():
        errs = [x["metrics"]["max_abs"] for x in per_out.values() if x["metrics"].get("max_abs") is not None]
        if errs:
            v.hop_errors[set_name] = max(errs)


def pareto(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names not dominated on (latency, size): nothing else is at least as good on both and better on one."""
    out = set()
    for n, (a, b) in points.items():
        if not any((a2 <= a and b2 <= b) and (a2 < a or b2 < b) for n2, (a2, b2) in points.items() if n2 != n):
            out.add(n)
    return out
