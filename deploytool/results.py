"""Results, typed and read: what the judge decides (``ArtifactCheck`` per target, ``Checks`` keyed by
target) and what a bundle's result files hold (``Results``: the manifest, validation.json and
bench.json per machine, ``collect``). Renderers (``report/``), ``recommend`` and the pytest plugin
read results here; none of them imports a command or an engine. Nothing here computes a verdict.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploytool.core.errors import UsageError
from deploytool.core.target import NATIVE, Target
from deploytool.formats import plan
from deploytool.running.jobs import CheckStatus
from deploytool.store import bundle
from deploytool.store import manifest as manifest_io
from deploytool.store.manifest import FILENAME, Manifest

# validation.json: 2: machine fingerprint and the sha256 of the manifest it checked; 3: results per target
# ("targets", keyed FORMAT@RUNTIME, each naming its format and runtime) instead of per artifact ("artifacts",
# keyed by format). Both are read (``targets_of``).
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


def label(chk: ArtifactCheck, checks: dict[str, ArtifactCheck]) -> str:
    """How a message names a check: its format where it is the artifact's only check, else its target key."""
    return chk.key if sum(1 for c in checks.values() if c.format == chk.format) > 1 else chk.format


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
