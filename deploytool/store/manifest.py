"""The manifest as typed records, validated on read.

One writer (the export command) and several readers (validate, bench, the renderers, users'
code) share these records. ``read`` refuses any manifest that does not have this shape with a
``BundleError`` (exit 8) naming the field, so no command ever fails deep inside with a
``KeyError``. The JSON layout is unchanged from schema 1 (``dump`` writes the same keys).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool import __version__
from deploytool.checking.parity import check_overrides
from deploytool.checking.steps import StepsRecord
from deploytool.core import records
from deploytool.core.contract import Contract
from deploytool.core.errors import BundleError
from deploytool.running.jobs import ArtifactStatus, CheckStatus, RouteTaken

SCHEMA_VERSION = 1
FILENAME = "manifest.json"
MAX_BYTES = 64 << 20  # a manifest is kilobytes; anything this large is not one


@dataclass
class FileRecord:
    path: str  # relative to the bundle
    sha256: str
    size: int


@dataclass
class ExporterInfo:
    name: str
    version: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckSummary:
    """The result of the check export ran on the artifact."""

    status: CheckStatus
    reason: str = ""
    max_abs: float | None = None
    hop_blamed: str | None = None
    skipped_sets: dict[str, str] = field(default_factory=dict)
    basis: str = ""  # what the verdict was judged on, in one phrase (ArtifactCheck.basis)


@dataclass
class ArtifactRecord:
    format: str
    status: ArtifactStatus
    precision: str
    tier: str
    runtime: str
    parent: str | None = None
    path: str | None = None  # file or directory under artifacts/, when exported
    files: list[FileRecord] = field(default_factory=list)
    size_bytes: int = 0
    chain: list[str] = field(default_factory=list)  # e.g. ["source (torch)", "onnx", "savedmodel"]
    exporter: ExporterInfo = field(default_factory=lambda: ExporterInfo(name=""))
    export_seconds: float | None = None
    contract: Contract | None = None  # the artifact's own I/O contract
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    check: CheckSummary | None = None  # the check on its format's default runtime
    # Every target export checked it on, by target key (``onnx@openvino``); absent in older bundles.
    checks: dict[str, CheckSummary] = field(default_factory=dict)
    golden_outputs: dict[str, str] = field(default_factory=dict)  # set -> its outputs, for per-hop checks
    route: RouteTaken | None = None  # the fallback route that made it (absent in older bundles: the first)

    def load_settings(self) -> dict[str, Any]:
        """How its runtime must load it, as the exporter verified (e.g. TorchScript's
        ``optimize_for_inference``); every load (export's check, validate, bench) passes these."""
        value = self.exporter.options.get("load_settings")
        return dict(value) if isinstance(value, dict) else {}


@dataclass
class GoldenSetRecord:
    inputs: str
    reference: str
    dims: dict[str, int]
    samples: int
    labels: str | None = None  # a labelled set: its labels (.npz, key "labels"), for task accuracy
    labelled_output: str | None = None
    # per input: {"range": [min, max], "distinct": n, "range_from": ..., "weak": true} (golden.coverage); absent
    # in older bundles
    coverage: dict[str, dict] = field(default_factory=dict)
    family: str | None = None  # its input family (checking/families.py); absent in older bundles: by its name
    note: str | None = None  # how a family set was made, where that needs saying
    oracle: str | None = None  # the float64 oracle's outputs (.npz, float64; export --oracle float64)


@dataclass
class CalibrationRecord:
    """The calibration inputs the int8 formats were made from (also hashed in golden.files)."""

    path: str
    sha256: str
    samples: int
    origin: str  # "the source's own calibration data" or "--calib-data FILE"


@dataclass
class GoldenData:
    seed: int
    sets: dict[str, GoldenSetRecord]
    files: list[FileRecord]
    reference_runtime: str | None = None
    calibration: CalibrationRecord | None = None
    # export --oracle float64: {"kind": "float64", "why_not": "" or why the source has none, "seconds": time the
    # float64 runs took}; absent: not asked for (checking/oracle.py)
    oracle: dict | None = None


@dataclass
class FlopsRecord:
    """The source model's work per sample (deploytool.measuring.flops), for achieved GFLOP/s in bench."""

    per_sample: float | None  # None: not counted (method says why)
    method: str
    dims: dict[str, int] = field(default_factory=dict)  # the dynamic dims it was counted at (the main set's)


@dataclass
class ModelInfo:
    name: str
    source: dict[str, Any]  # sources.SourceRef.to_dict(): kind, ref, name, framework and the kind's details
    description: str = ""

    @property
    def framework(self) -> str:
        return str(self.source.get("framework", "torch"))


@dataclass
class Manifest:
    schema_version: int
    created: str
    tool: dict[str, Any]
    model: ModelInfo
    seed: int
    platform: dict[str, Any]
    versions: dict[str, str | None]
    formats_requested: list[str]
    formats_added: list[str]
    contract: Contract
    golden: GoldenData
    artifacts: dict[str, ArtifactRecord]
    tolerances: dict[str, dict[str, float]] = field(default_factory=dict)  # overrides export was judged with
    # outputs export accepted as constant (--accept-constant-output); later validate runs accept them too
    accepted_constant: list[str] = field(default_factory=list)
    # families export gated where the tier only reports them (--gate-families edge); later validate runs gate too
    gate_families: list[str] = field(default_factory=list)
    flops: FlopsRecord | None = None  # absent in bundles made before it was counted
    steps: StepsRecord | None = None  # the multi-step check's loop (checking/steps.py); absent: none declared

    def to_json(self) -> dict:
        return records.dump(self)

    def export_only(self) -> list[str]:
        """The hashed files only export reads (the int8 formats' calibration data). A device copy leaves them
        out (``deploytool device-copy``); the reader accepts their absence, theirs only, and checks them when
        present; a signature made by ``export --sign`` does not cover them (this signed manifest holds their
        sha256)."""
        return [self.golden.calibration.path] if self.golden.calibration is not None else []


def load(data: Any, where: str = FILENAME) -> Manifest:
    """Parsed JSON -> Manifest; RecordError naming the field when anything is malformed."""
    if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION and "schema_version" in data:
        raise records.RecordError(f"schema_version {data['schema_version']!r} is not supported (this deploytool "
                                  f"{__version__} reads {SCHEMA_VERSION})")
    m = records.load(Manifest, data, "manifest")
    for key, value in m.model.source.items():
        if key in ("kind", "ref", "name", "framework") and not isinstance(value, str):
            raise records.RecordError(f"manifest.model.source.{key}: expected a string, got {value!r}")
    try:
        check_overrides(m.tolerances, "manifest.tolerances")
    except ValueError as e:
        raise records.RecordError(str(e)) from None
    unknown = [n for n in m.accepted_constant if n != "*" and n not in m.contract.output_names]
    if unknown:
        raise records.RecordError(f"manifest.accepted_constant: {unknown} name no output of the contract")
    for name, rec in m.artifacts.items():
        where_a = f"manifest.artifacts.{name}"
        if rec.format != name:
            raise records.RecordError(f"{where_a}.format: {rec.format!r} under the key {name!r}")
        if rec.status == ArtifactStatus.OK:
            if rec.path is None or rec.contract is None or not rec.files:
                fields = (("path", rec.path), ("contract", rec.contract), ("files", rec.files))
                missing = [k for k, v in fields if not v]
                raise records.RecordError(f"{where_a}: an exported artifact needs {', '.join(missing)}")
    return m


def read(bundle: Path) -> Manifest:
    """The manifest of a bundle directory; BundleError (exit 8, one line) for anything unreadable or malformed."""
    bundle = Path(bundle)
    if not bundle.exists():
        raise BundleError(f"bundle {bundle}: no such directory")
    path = bundle / FILENAME
    if not path.is_file():
        raise BundleError(f"bundle {bundle}: no {FILENAME} (not a deploytool bundle, or an unfinished one)")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise BundleError(f"bundle {bundle}: {FILENAME} is larger than {MAX_BYTES >> 20} MiB (refused)")
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"bundle {bundle}: {FILENAME} is unreadable ({e})") from None
    try:
        return load(data)
    except records.RecordError as e:
        raise BundleError(f"bundle {bundle}: {FILENAME} is malformed: {e}") from None
