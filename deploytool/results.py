"""Results, typed and read: what the judge decides (``ArtifactCheck`` per target, ``Checks`` keyed by
target) and what a bundle's result files hold (``Results``: the manifest, validation.json and
bench.json per machine, ``collect``). Renderers (``report/``), ``recommend`` and the pytest plugin
read results here; none of them imports a command or an engine. Nothing here computes a verdict.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from deploytool.core.errors import UsageError
from deploytool.core.target import NATIVE, Target
from deploytool.formats import plan
from deploytool.measuring.timing import Summary
from deploytool.running.jobs import CheckStatus, RowStatus
from deploytool.store import bundle
from deploytool.store import manifest as manifest_io
from deploytool.store.manifest import FILENAME, Manifest

# validation.json: 2: machine fingerprint and the sha256 of the manifest it checked; 3: results per target
# ("targets", keyed FORMAT@RUNTIME, each naming its format and runtime) instead of per artifact ("artifacts",
# keyed by format). Both are read (``targets_of``). Added within 3, absent in older files: each target's
# "checked" (when; earlier than "created" for a target kept from an earlier run) and "basis".
VALIDATION_SCHEMA = 3
VALIDATION_READS = (2, 3)
# bench.json: 2: machine fingerprint and the sha256 of the manifest it measured (rows name format and runtime)
BENCH_SCHEMA = 2


@dataclass
class ArtifactCheck:
    """The verdict on one target: an artifact (``format``) on one ``runtime`` (and ``platform``)."""

    format: str
    runtime: str
    status: CheckStatus
    reason: str = ""
    sets: dict = field(default_factory=dict)  # set -> output -> verdict vs reference
    hop: dict = field(default_factory=dict)  # set -> output -> verdict vs parent artifact
    hop_blamed: str | None = None  # "onnx -> savedmodel": where the error first appears
    skipped_sets: dict = field(default_factory=dict)  # set -> why not run
    max_abs: float | None = None
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    runtime_version: str | None = None
    outputs: dict = field(default_factory=dict)  # set -> path of the artifact's outputs
    overrides: dict = field(default_factory=dict)  # output -> tolerance overrides applied instead of the tier's
    accuracy: dict | None = None  # task accuracy on a labelled set, against the source's
    notes: list[str] = field(default_factory=list)  # how the verdict was reached, where it is not the usual way
    first_diverging: dict | None = None  # localise.Finding of the blamed hop (commands/localising.py)
    platform: str = NATIVE
    # The blamed hop as target keys ("source" for the source model): what localising runs on each side.
    hop_from: str | None = None
    hop_to: str | None = None
    # What the verdict was decided on, one phrase (``judged on cosine/SQNR/top-1 (int8 tier)``): set where the
    # judge decides it (judge.py), printed as it is by every renderer. Empty: no verdict on the outputs (not run).
    basis: str = ""
    # Why the golden inputs it ran on exercised the model weakly (golden.weak_text: an integer input drawn with no
    # known range); empty: they covered it. A PASS with it is not a plain PASS; --strict fails it (exit 7).
    coverage: str = ""
    # The precision the target really computed in (``platforms.executed_precision``): the format's, or, for a format
    # asking for fp16 arithmetic, whether this CPU ran it ("fp16 arithmetic") or computed in fp32.
    executed: str = ""
    # The multi-step check of a stateful model (checking/steps.py, commands/stepping.py): steps, the first step whose
    # greedy decision differs, the error per step, the gates; None when the bundle declares no feedback loop.
    steps: dict | None = None
    # validate --pipeline: decision agreement with the source on the raw samples, the gate, the deployed
    # preprocessing's finding (commands/pipeline.py); None: no pipeline was checked.
    pipeline: dict | None = None
    # Per input family (checking/families.py: seeded, data, perturbed, edge), this target's verdict on that family's
    # golden sets: {"status": "pass"/"fail", "sets": [...], "reason": the first failure, "gating": bool}
    families: dict = field(default_factory=dict)
    # The float64 oracle rule's figures (checking/oracle.py, --oracle float64): per set and output the reference's
    # noise floor, the artifact's error against the float64 result, their ratio, and both verdicts side by side.
    oracle: dict | None = None

    @property
    def target(self) -> Target:
        return Target(self.format, self.runtime, self.platform)

    @property
    def key(self) -> str:
        return self.target.key

    def overrides_text(self) -> str:
        """The overrides applied, for a table's note (empty when the tier's defaults were used)."""
        seen = sorted({f"{k}={v:g}" for values in self.overrides.values() for k, v in values.items()})
        return f"tolerance override {', '.join(seen)} (not the {self.format} tier's)" if seen else ""

    def to_dict(self) -> dict:
        return asdict(self)


def target_label(fmt: str, runtime: str, platform: str = NATIVE) -> str:
    """How prose, table notes, error lines and hops name a target: the bare format on its default runtime
    (natively), ``FORMAT@RUNTIME`` on any other (``onnx`` vs ``onnx@openvino``). One rule, everywhere."""
    formats = plan()
    default = formats[fmt].runtime if fmt in formats else None
    return Target(fmt, runtime, platform).label(default)


def label(chk: ArtifactCheck, checks: dict[str, ArtifactCheck] | None = None) -> str:
    """How a message names a check (``target_label``)."""
    return target_label(chk.format, chk.runtime, chk.platform)


class Checks(dict[str, ArtifactCheck]):
    """Checks by target key (``onnx@openvino``). A bare format name reads that artifact's check on its
    default runtime (or its only check), so ``checks["onnx"]`` keeps meaning what it meant before
    artifacts had several runtimes."""

    def __missing__(self, key: str) -> ArtifactCheck:
        if "@" not in key:
            mine = [c for c in self.values() if c.format == key]
            formats = plan()
            default = formats[key].runtime if key in formats else None
            found = next((c for c in mine if c.runtime == default and c.platform == NATIVE), None)
            if found is not None or len(mine) == 1:
                return found or mine[0]
        raise KeyError(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def __delitem__(self, key) -> None:
        super().__delitem__(self[key].key)


def worst_sample(chk: ArtifactCheck) -> tuple[str, str, int] | None:
    """(set, output, sample index) of the largest out-of-tolerance error among failing outputs."""
    best = None
    for set_name, per_out in chk.sets.items():
        for out, v in per_out.items():
            if not v["passed"]:
                m = v["metrics"]["max_abs"] or 0.0
                if best is None or m > best[0]:
                    best = (m, set_name, out, v["metrics"]["worst_sample"])
    return None if best is None else (best[1], best[2], best[3])


@dataclass
class Results:
    """A bundle and every result that belongs to it, by machine."""

    root: Path
    manifest: Manifest
    manifest_sha256: str
    validations: list[dict] = field(default_factory=list)
    benches: list[dict] = field(default_factory=list)

    def machines(self) -> list[str]:
        names = [d["machine"]["name"] for d in self.validations + self.benches]
        return list(dict.fromkeys(names))


def collect(bundle_dir: Path | str, extra: list[Path | str] | None = None) -> Results:
    root = Path(bundle_dir)
    manifest = manifest_io.read(root)
    results = Results(root, manifest, bundle.sha256_file(root / FILENAME))
    own = [p for n in ("validation.json", "bench.json") if (p := root / bundle.REPORTS / n).is_file()]
    for path in [*own, *map(Path, extra or [])]:
        _add(results, path)
    return results


def _add(results: Results, path: Path) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"results {path}: unreadable ({e})") from None
    if not isinstance(data, dict) or not {"rows", "artifacts", "targets"} & set(data):
        raise UsageError(f"results {path}: neither a validation.json nor a bench.json")
    kind, schemas = ("bench", (BENCH_SCHEMA,)) if "rows" in data else ("validation", VALIDATION_READS)
    if data.get("schema_version") not in schemas:
        raise UsageError(f"results {path}: {kind} schema_version {data.get('schema_version')!r}, this deploytool reads "
                         f"{', '.join(map(str, schemas))} (rerun deploytool {kind} with this version)")
    if data.get("manifest_sha256") != results.manifest_sha256:
        theirs = str(data.get("manifest_sha256"))[:12]
        raise UsageError(f"results {path}: from another bundle (its manifest sha256 {theirs} is not this bundle's "
                         f"{results.manifest_sha256[:12]})")
    if not isinstance(data.get("machine"), dict) or "name" not in data["machine"]:
        raise UsageError(f"results {path}: no machine block")
    target = results.benches if kind == "bench" else results.validations
    # the same machine twice (the bundle's own report given again as a file): keep one
    if not any(d["machine"]["name"] == data["machine"]["name"] and d.get("created") == data.get("created")
               for d in target):
        target.append(data)




def targets_of(data: dict) -> dict[str, dict]:
    """A validation.json's results by target key, whatever version wrote it: schema 3 keeps them under
    "targets"; schema 2 under "artifacts", keyed by format (each checked on its one runtime, which the
    entry names)."""
    if "targets" in data:
        return dict(data["targets"])
    return {f"{name}@{a.get('runtime', '')}": {**a, "format": a.get("format", name)}
            for name, a in (data.get("artifacts") or {}).items()}


def earlier_targets(path: Path, manifest_sha256: str | None, machine: str, replaced: set[str]) -> dict[str, dict]:
    """The results an earlier validation.json at ``path`` holds for targets a run does not check again
    (``replaced``: the target keys it checks), each with the date it was checked (``checked``), so a partial
    run (``validate -f onnx``) adds to them instead of discarding them. Only results of the same bundle
    (``manifest_sha256``) on the same ``machine`` are kept; anything else there (unreadable, another bundle,
    another machine, a schema this version does not read) is replaced, as before."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("schema_version") not in VALIDATION_READS \
            or data.get("manifest_sha256") != manifest_sha256 or (data.get("machine") or {}).get("name") != machine:
        return {}
    created = data.get("created")
    return {key: {**entry, "checked": entry.get("checked") or created} for key, entry in targets_of(data).items()
            if key not in replaced and isinstance(entry, dict)}


# ---- bench (commands/bench.py decides these; report/console.py, bench_files.py and github.py render them) ----

_MEASURED = {"json": "measured"}  # in bench.json only for a row that was measured
_IF_SET = {"json": "if_set"}  # in bench.json only when not None


@dataclass
class Relative:
    """A row's p50 and size as ratios of its full-precision sibling's (``Format.compare_to``) at the same
    runtime, threads and batch."""

    to: str
    p50_ratio: float
    size_ratio: float | None


@dataclass
class BenchRow:
    """One bench row: an artifact (``format``; ``source`` for the source model) on one ``runtime`` at
    ``threads`` and ``batch``. ``to_dict`` is its bench.json form: the first eight keys always; the
    worker's figures and the statistics (``summary``, flat) only for a measured row; the rest where set."""

    format: str
    runtime: str
    threads: int
    batch: int
    size_bytes: int | None
    settings_requested: dict
    status: RowStatus = RowStatus.OK
    reason: str = ""
    settings: dict | None = field(default=None, metadata=_MEASURED)  # what the runtime reported it is set to
    runtime_version: str | None = field(default=None, metadata=_MEASURED)
    import_s: float | None = field(default=None, metadata=_MEASURED)
    load_s: float | None = field(default=None, metadata=_MEASURED)
    first_inference_ms: float | None = field(default=None, metadata=_MEASURED)
    rss_start_mb: float | None = field(default=None, metadata=_MEASURED)
    rss_after_load_mb: float | None = field(default=None, metadata=_MEASURED)
    rss_peak_mb: float | None = field(default=None, metadata=_MEASURED)
    warmup_runs: int | None = field(default=None, metadata=_MEASURED)
    capped: bool | None = field(default=None, metadata=_MEASURED)
    samples_ns: list[int] | None = field(default=None, metadata=_MEASURED)
    summary: Summary | None = None  # timing.summarize of samples_ns; None: not measured
    rounds: int | None = field(default=None, metadata=_IF_SET)  # --compare: interleaved rounds pooled
    relative: Relative | None = field(default=None, metadata=_IF_SET)
    gflops_per_s: float | None = field(default=None, metadata=_IF_SET)  # achieved (GOP/s for int8)
    peak_note: str | None = field(default=None, metadata=_IF_SET)  # why there is no % of peak
    peak_gflops: float | None = field(default=None, metadata=_IF_SET)  # the fp32 GEMM peak at the row's threads
    pct_of_peak: float | None = field(default=None, metadata=_IF_SET)

    @property
    def measured(self) -> bool:
        return self.summary is not None

    @property
    def p50_ms(self) -> float | None:
        return self.summary.p50_ms if self.summary else None

    @property
    def p90_ms(self) -> float | None:
        return self.summary.p90_ms if self.summary else None

    @property
    def warnings(self) -> list[str]:
        return self.summary.warnings if self.summary else []

    @property
    def label(self) -> str:
        """How messages name the row."""
        return f"{target_label(self.format, self.runtime)} (threads={self.threads}, batch={self.batch})"

    def to_dict(self) -> dict:
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            when = f.metadata.get("json")
            if f.name == "summary":
                out.update(value.to_dict() if value is not None else {})
            elif not ((when == "measured" and not self.measured) or (when == "if_set" and value is None)):
                out[f.name] = asdict(value) if isinstance(value, Relative) else value
        return out


NOT_IN_BASELINE = "not in the baseline bundle"


@dataclass
class Comparison:
    """One ``--compare`` entry: a target's pooled p50 against the baseline bundle's, measured interleaved."""

    format: str
    runtime: str
    threads: int
    batch: int
    candidate_p50_ms: float | None = None
    baseline_p50_ms: float | None = None
    ratio: float | None = None  # candidate / baseline p50; None: not both measured
    regression: bool = False
    note: str = ""
    in_baseline: bool = True  # False: the baseline bundle has no such target (no p50s compared; not in JSON)

    @property
    def label(self) -> str:
        return f"{target_label(self.format, self.runtime)} (threads={self.threads}, batch={self.batch})"

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["in_baseline"]
        if not self.in_baseline:
            del out["candidate_p50_ms"], out["baseline_p50_ms"]
        return out


def newest_per_machine(files: list[dict]) -> list[dict]:
    """One result file per machine (its newest by ``created``): what a report says once per machine."""
    newest: dict[str, dict] = {}
    for data in files:
        name = data["machine"]["name"]
        if name not in newest or str(data.get("created") or "") > str(newest[name].get("created") or ""):
            newest[name] = data
    return list(newest.values())
