"""The coordinator-worker protocol: typed jobs, typed replies, and every status vocabulary.

A worker process (``worker.py``) is handed jobs one at a time as JSON files (``spawn.Worker``)
and answers each with one reply file. Both sides build and read them only through these
records, so a field is spelled once. Decisions are made on the coordinator side: which formats
to export and which to skip, which golden sets exist (``golden.plan_sets``), which sets an
artifact runs on. A worker does what a job says and reports what happened.

Jobs and their replies:

  LoadSource     -> SourceLoaded     load the source model, report its contract
  WriteGolden    -> GoldenWritten    draw the planned golden inputs, write them and the reference outputs
  ExportFormat   -> FormatExported   make one artifact (from the loaded source or a parent artifact)
  RunArtifact    -> ArtifactRan      run an artifact on golden sets, write its outputs
  TimeArtifact   -> ArtifactTimed    time an artifact (bench)
  ExposeTensors  -> TensorsExposed   run an artifact on one sample, write its intermediate tensors (localise)
  WriteSteps     -> StepsWritten     run the source N steps with its outputs fed back, write the trajectory
  RunPipeline    -> PipelineRan      run a user's pre/postprocess functions (validate --pipeline)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from deploytool.checking.golden import GoldenSetPlan
from deploytool.core import records
from deploytool.core.contract import Contract
from deploytool.core.target import NATIVE

# Default time limits per worker job, in seconds (--timeout sets them). A worker still busy when its
# limit runs out is killed and that step reported as failed with the limit it hit.
EXPORT_TIMEOUT_S = 1800.0  # loading the source, writing the golden data, or converting one format
CHECK_TIMEOUT_S = 600.0  # loading one artifact and running it on every golden set
BENCH_MARGIN_S = 300.0  # a bench row: --max-time plus this (import, load, warm-up)


class ArtifactStatus(StrEnum):
    """An artifact record in the manifest: what export did."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted: a parent it is converted from failed
    NOT_APPLICABLE = "not_applicable"  # cannot be made from this kind of source (TorchScript from .onnx)
    NEEDS_DATA = "needs_data"  # needs calibration data the source does not have (--calib-data); not a failure


class RunStatus(StrEnum):
    """A run or timing worker's reply."""

    OK = "ok"
    LOAD_FAILED = "load_failed"
    RUN_FAILED = "run_failed"
    SKIPPED = "skipped"  # its runtime is not installed here (decided by the coordinator)
    CONTRACT_MISMATCH = "contract_mismatch"  # the artifact's declared I/O does not honour its contract
    CRASHED = "crashed"  # the worker died without a reply (or was killed at its time limit)


class CheckStatus(StrEnum):
    """The verdict on one artifact (export's check and validate)."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # failed to load or run
    SKIPPED = "skipped"  # runtime not installed
    NOT_EXPORTED = "not_exported"
    CORRUPT = "corrupt"  # refused before loading (hash mismatch)
    NOT_APPLICABLE = "not_applicable"
    NEEDS_DATA = "needs_data"  # not made: needs calibration data (not a failure)
    # The check passed, but a trivial artifact would pass it too (all zeros, the mean over the samples, another
    # sample's output: checking/informative.py), as against a reference that does not vary with the input or one
    # too small or too uniform for its tolerance: the comparison proves nothing. A failure (exit 5) unless
    # accepted (--accept-uninformative, alias --accept-constant-output), then CONSTANT_ACCEPTED: not a failure,
    # and not a pass either.
    VACUOUS = "vacuous"
    CONSTANT_ACCEPTED = "constant_accepted"


# The checks that fail a run (each has its exit code in judge.EXIT_CODE_OF): an error line, a GitHub
# annotation, a failure in the report.
FAILING_CHECKS = (CheckStatus.FAIL, CheckStatus.ERROR, CheckStatus.CORRUPT, CheckStatus.NOT_EXPORTED,
                  CheckStatus.VACUOUS)


class RowStatus(StrEnum):
    """One bench row."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"
    CORRUPT = "corrupt"  # refused before loading: its files do not match their hashes


# ---- jobs -------------------------------------------------------------------------------------

R = TypeVar("R", bound="Reply")


@dataclass
class Job(Generic[R]):
    """A job; ``R`` is the reply type it is answered with (``REPLY_OF``)."""

    MODE: ClassVar[str] = ""


@dataclass
class LoadSource(Job["SourceLoaded"]):
    MODE: ClassVar[str] = "load"
    source: dict[str, Any]  # sources.SourceRef.to_dict()


@dataclass
class WriteGolden(Job["GoldenWritten"]):
    MODE: ClassVar[str] = "golden"
    root: str  # the bundle (staging) directory the plan's relative paths are under
    sets: list[GoldenSetPlan]
    calibration: str | None = None  # write the source's own calibration inputs here (relative to root)
    calibration_samples: int = 0
    calibration_seed: int = 0


@dataclass
class ExportFormat(Job["FormatExported"]):
    MODE: ClassVar[str] = "export"
    format: str
    framework: str  # the source's: which route of the format to take
    model_name: str
    contract: Contract  # the source contract
    out: str  # artifact path to write
    workdir: str  # scratch
    parent_path: str | None = None
    parent_contract: Contract | None = None
    calibration: str | None = None  # calibration inputs (.npz, source layout), for the formats that need them
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSet:
    name: str
    inputs: str  # .npz of golden inputs in the source layout
    outputs: str  # where the artifact's outputs go (source names and layout)


# The share of a run's timeout by which its multi-step loop (after the golden sets) must have stopped: a slow loop
# (an emulated CPU) stops early, its steps so far compared, instead of the whole run timing out (docs/steps.md).
STEPS_SHARE = 0.75


@dataclass
class StepsPlan:
    """A multi-step run (checking/steps.py): from the reference trajectory's step-1 inputs, ``steps`` steps with
    the outputs fed back as ``feedback`` says; the trajectory goes to ``out``."""

    reference: str  # the reference trajectory (.npz; its step-1 inputs are the initial inputs)
    feedback: list[str]
    steps: int
    out: str
    # the loop's time budget: the wall-clock time (time.time()) by which it must have stopped, set by the pool when
    # the run starts (a share of the run's timeout); the loop stops before a step that would end after it
    stop_at: float | None = None
    timeout: float | None = None  # the run's timeout (for the reason given when the loop stops)


@dataclass
class RunArtifact(Job["ArtifactRan"]):
    MODE: ClassVar[str] = "run"
    runtime: str
    artifact: str
    contract: Contract  # the artifact's contract (how to feed it and read it)
    sets: list[RunSet]
    settings: dict[str, Any] = field(default_factory=dict)
    platform: str = NATIVE  # or an emulated CPU (deploytool.platforms)
    steps: StepsPlan | None = None  # then, on the same session, the multi-step run


@dataclass
class TimeArtifact(Job["ArtifactTimed"]):
    MODE: ClassVar[str] = "bench"
    runtime: str
    artifact: str
    contract: Contract
    inputs: str
    batch: int
    protocol: dict[str, Any]  # timing.Protocol fields
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExposeTensors(Job["TensorsExposed"]):
    MODE: ClassVar[str] = "expose"
    runtime: str
    artifact: str
    contract: Contract  # the artifact's contract (how to feed it)
    inputs: str  # .npz of one sample's inputs in the source layout
    out: str  # where the intermediate tensors go (.npz, names as the runtime has them, its own layout)
    limits: dict[str, Any] = field(default_factory=dict)  # localise.Limits fields


@dataclass
class WriteSteps(Job["StepsWritten"]):
    MODE: ClassVar[str] = "steps"
    inputs: str  # the main golden inputs: the first ``samples`` are the initial inputs
    samples: int
    feedback: list[str]
    steps: int
    out: str  # the reference trajectory (.npz)


@dataclass
class RunPipeline(Job["PipelineRan"]):
    """Run a user's pipeline functions (``validate --pipeline``: ``running/pipeline_worker.py``). ``stage`` "pre":
    ``preprocess`` (and ``preprocess_deployed``) on the raw samples of ``raw``, written to ``out`` (and
    ``deployed``); "post": ``postprocess`` (or the built-in ``operating_point``) on each outputs .npz of
    ``outputs`` (name -> path), the decisions written to ``decisions`` (name -> path)."""

    MODE: ClassVar[str] = "pipeline"
    file: str
    stage: str  # "pre" or "post"
    input_names: list[str] = field(default_factory=list)
    raw: str | None = None
    out: str | None = None
    deployed: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)
    unbatch: list[str] = field(default_factory=list)  # outputs stored [samples, 1, ...]: given as [samples, ...]
    classifier_output: str | None = None  # the built-in postprocess's output
    operating_point: dict[str, Any] | None = None  # decisions.OperatingPoint fields (None: the file's own)


@dataclass
class Exit(Job["Reply"]):
    MODE: ClassVar[str] = "exit"


# ---- replies ----------------------------------------------------------------------------------

@dataclass
class Reply:
    @classmethod
    def crashed(cls, why: str) -> Reply:
        raise NotImplementedError


@dataclass
class SourceLoaded(Reply):
    ok: bool
    contract: Contract | None = None
    description: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    labelled: bool = False  # the source ships labelled data (task accuracy)
    calibration: bool = False  # the source has calibration data of its own (int8 formats)
    error: str | None = None  # one line
    exit_code: int = 3
    traceback: str | None = None
    golden_data: bool = False  # its golden inputs are its own data (input family 'data', not 'seeded')

    @classmethod
    def crashed(cls, why: str) -> SourceLoaded:
        return cls(ok=False, error=f"loading the model crashed: {why}")


@dataclass
class GoldenWritten(Reply):
    ok: bool
    samples: dict[str, int] = field(default_factory=dict)  # set -> samples written
    calibration_samples: int = 0  # written to WriteGolden.calibration (0: none)
    labelled_output: str | None = None  # the output the labelled set's labels are for
    flops_per_sample: float | None = None  # counted on the main set's first sample (deploytool.measuring.flops)
    flops_method: str = ""  # how, or why they were not counted
    error: str | None = None
    exit_code: int = 3
    traceback: str | None = None
    oracle: dict = field(default_factory=dict)  # the float64 oracle written (sources/_float64.Writer.result)

    @classmethod
    def crashed(cls, why: str) -> GoldenWritten:
        return cls(ok=False, error=f"computing the reference outputs crashed: {why}")


@dataclass
class RouteTaken:
    """Which of a format's ordered conversion routes made an artifact, and why each earlier one failed
    (e.g. ONNX by the TorchScript-based exporter after torch.export failed). A format with a single
    route records none."""

    name: str  # the route that made it, e.g. "dynamo", "torchscript", "direct", "folded", "fixed-dims"
    failed: list[str] = field(default_factory=list)  # "ROUTE: one-line reason", for each route tried before

    def text(self) -> str:
        """``route torchscript (dynamo failed: ...)``; empty when the first route made it."""
        if not self.failed:
            return ""
        return f"route {self.name} ({'; '.join(f.replace(': ', ' failed: ', 1) for f in self.failed)})"


@dataclass
class FormatExported(Reply):
    status: ArtifactStatus  # OK or FAILED
    seconds: float = 0.0
    contract: Contract | None = None
    exporter: str | None = None  # when it differs from the format's usual exporter
    exporter_version: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    route: RouteTaken | None = None  # which conversion route made it, for formats with fallback routes

    @classmethod
    def crashed(cls, why: str) -> FormatExported:
        return cls(status=ArtifactStatus.FAILED, error=why)


@dataclass
class ArtifactRan(Reply):
    status: RunStatus
    runtime: str = ""
    version: str | None = None
    worker_start_s: float | None = None
    import_s: float | None = None
    load_s: float | None = None
    first_inference_s: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # set -> outputs .npz
    error: str | None = None
    traceback: str | None = None
    steps: str | None = None  # the multi-step trajectory (.npz), when the job asked for one
    steps_error: str | None = None  # why the multi-step run failed (the sets' outputs still stand)
    steps_stopped: str | None = None  # why the multi-step run stopped before its last step (its time budget)

    @classmethod
    def crashed(cls, why: str) -> ArtifactRan:
        return cls(status=RunStatus.CRASHED, error=why)

    def timings(self) -> dict[str, float]:
        return {k: v for k in ("worker_start_s", "import_s", "load_s", "first_inference_s")
                if (v := getattr(self, k)) is not None}


@dataclass
class ArtifactTimed(Reply):
    status: RunStatus
    runtime: str = ""
    version: str | None = None
    worker_start_s: float | None = None
    rss_start_mb: float | None = None
    import_s: float | None = None
    load_s: float | None = None
    rss_after_load_mb: float | None = None
    rss_peak_mb: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    first_inference_ms: float | None = None
    samples_ns: list[int] = field(default_factory=list)
    warmup_runs: int = 0
    measure_s: float = 0.0
    capped: bool = False
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def crashed(cls, why: str) -> ArtifactTimed:
        return cls(status=RunStatus.CRASHED, error=why)


@dataclass
class TensorsExposed(Reply):
    status: RunStatus
    nodes: list[dict[str, Any]] = field(default_factory=list)  # localise.Node fields, in graph order
    inputs: list[str] = field(default_factory=list)  # graph input tensor names
    tensors: str | None = None  # the .npz written
    total: int = 0  # input-dependent tensors in the graph
    truncated: bool = False  # the limits cut the exposure short
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def crashed(cls, why: str) -> TensorsExposed:
        return cls(status=RunStatus.CRASHED, error=why)


@dataclass
class StepsWritten(Reply):
    ok: bool
    error: str | None = None
    exit_code: int = 3
    traceback: str | None = None

    @classmethod
    def crashed(cls, why: str) -> StepsWritten:
        return cls(ok=False, error=f"the source's multi-step run crashed: {why}")


@dataclass
class PipelineRan(Reply):
    ok: bool
    error: str | None = None  # one line naming the function and the file
    traceback: str | None = None
    functions: list[str] = field(default_factory=list)  # the pipeline functions the file defines
    constants: dict[str, Any] = field(default_factory=dict)  # THRESHOLD, TOP_K, NEAR_BAND where it sets them
    samples: int = 0
    pre_ms: float | None = None  # preprocess, per sample (the whole batch's time / samples)
    post_ms: dict[str, float] = field(default_factory=dict)  # postprocess per sample, per outputs file
    kind: str = ""  # the decisions' kind (decisions.KINDS)

    @classmethod
    def crashed(cls, why: str) -> PipelineRan:
        return cls(ok=False, error=f"the pipeline worker crashed: {why}")


JOBS: dict[str, type[Job[Any]]] = {cls.MODE: cls for cls in (LoadSource, WriteGolden, ExportFormat, RunArtifact,
                                                         TimeArtifact, ExposeTensors, Exit, WriteSteps, RunPipeline)}
REPLY_OF: dict[type[Job[Any]], type[Reply]] = {LoadSource: SourceLoaded, WriteGolden: GoldenWritten,
                                          ExportFormat: FormatExported, RunArtifact: ArtifactRan,
                                          TimeArtifact: ArtifactTimed, ExposeTensors: TensorsExposed,
                                          WriteSteps: StepsWritten, RunPipeline: PipelineRan}


def encode(job: Job[Any], reply_path: str, log: str | None, last: bool) -> dict:
    """The job file's content: the envelope (mode, where to reply, log, whether the worker exits after it)
    and the job itself."""
    return {"mode": job.MODE, "reply": reply_path, "log": log, "last": last, "job": records.dump(job)}


def decode(data: dict) -> tuple[Job[Any], dict]:
    """A job file's content -> (job, envelope)."""
    mode = data.get("mode")
    if mode not in JOBS:
        raise records.RecordError(f"job: unknown mode {mode!r}")
    return records.load(JOBS[mode], data.get("job", {}), mode), data


def read_reply(job: Job[R], data: Any) -> R:
    return records.load(REPLY_OF[type(job)], data, f"{job.MODE} reply")  # type: ignore[return-value]
