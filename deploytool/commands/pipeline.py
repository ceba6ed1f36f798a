"""``validate --pipeline FILE.py --raw-data RAW.npz``: the whole pipeline's decisions, source against every target.

The coordinator side (no user code runs here: ``running/pipeline_worker.py`` runs it in a worker):

1. ``prepare``: the worker runs ``preprocess(raw)`` (and ``preprocess_deployed(raw)``) on the raw samples; the
   inputs become a golden set ``pipeline`` (and ``pipeline_deployed``) whose reference outputs the source model
   computes in its own worker, as for ``--data``. Every target then runs them like any golden set (tensor parity on
   them too). The deployed preprocessing is compared with the reference one input by input
   (``checking/preprocessing.py``), naming the cause of a mismatch. The operating point is resolved here, once,
   before any target runs (``decisions.resolve_operating_point``, which bench uses too).
2. ``judge_decisions``: after the judge, the worker applies ``postprocess`` (or the built-in softmax + threshold /
   top-k) to the source's outputs and each target's; ``checking/decisions.py`` compares them; the gate
   ``--max-decision-flips`` (default: 0 for the fp32 and fp16 tiers, 2 % for int8 and fp16 arithmetic)
   and a deployed preprocessing that differs fail the target, the cause appended to its reason
   (``judge.add_failure``); where a decoy of the source's outputs (zeros, their mean, another sample's) would pass
   the gate too, a PASS is VACUOUS (``judge.add_uninformative``). Details go to ``ArtifactCheck.pipeline``.
"""
from __future__ import annotations

import ast
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploytool.checking import decisions, judge, preprocessing
from deploytool.checking.golden import GoldenSet
from deploytool.core import errors, npz
from deploytool.core.contract import Contract, as_samples, dims_of, nonfinite_sample
from deploytool.core.errors import DeployToolError, UsageError
from deploytool.formats import FORMATS
from deploytool.results import ArtifactCheck
from deploytool.running import jobs
from deploytool.running.jobs import CheckStatus, RunStatus
from deploytool.running.pool import RunPool
from deploytool.running.spawn import Worker
from deploytool.sources import source_artifact, source_consent

PIPELINE, DEPLOYED = "pipeline", "pipeline_deployed"
# The gate each precision tier gets when --max-decision-flips is not given. fp32 and fp16 storage compute in fp32:
# not one decision may move. int8 and fp16 arithmetic move scores by design: 2 % of the raw samples (measured on
# digits_cnn's 449 held-out digits at threshold 0.5: 1 flip, 0.22 %, on onnx_int8 and tflite_int8; docs/pipeline.md
# has the figures), the same order as the int8 tier's 1-point accuracy gate.
DEFAULT_GATES: dict[str, decisions.Gate | None] = {
    "exact": decisions.Gate(count=0), "fp32": decisions.Gate(count=0), "fp16": decisions.Gate(count=0),
    "fp16_arith": decisions.Gate(fraction=0.02), "int8": decisions.Gate(fraction=0.02)}


@dataclass
class PipelineOptions:
    file: Path
    raw: Path
    operating_point: decisions.OperatingPoint | None = None  # --operating-point (else the file's, else top-k=1)
    gate: decisions.Gate | None = None  # --max-decision-flips (else DEFAULT_GATES by tier)


@dataclass
class Prepared:
    """What ``prepare`` made: the golden sets to run and their references, and what the worker reported."""

    options: PipelineOptions
    sets: list[GoldenSet]
    references: dict[str, dict[str, np.ndarray]]
    functions: list[str]
    constants: dict
    samples: int
    unbatch: list[str]
    pre_ms: float | None
    deployed: dict | None = None  # preprocessing.compare's result, plus "not_run" where the targets could not
    extra: dict = field(default_factory=dict)
    # decisions.resolve_operating_point's: --operating-point, else the file's THRESHOLD / TOP_K / NEAR_BAND
    operating_point: decisions.OperatingPoint = field(default_factory=decisions.OperatingPoint)


def defined_functions(path: Path) -> set[str]:
    """The top-level functions a Python file defines, read without running it (SyntaxError: none)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return set()
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def options_of(pipeline: Path | None, raw: Path | None, operating_point: str | None, max_flips: str | None,
               source: str | None) -> PipelineOptions | None:
    """The pipeline options of this run, checked (exit 2, one line); None when no pipeline is asked for. Without
    ``--pipeline``, a ``--source`` model file that defines ``preprocess`` is the pipeline file."""
    file: Path | None = None
    if pipeline is not None:
        if not pipeline.is_file():
            raise UsageError(f"--pipeline {pipeline}: no such file")
        if pipeline.suffix != ".py":
            raise UsageError(f"--pipeline {pipeline}: expected a Python file (.py) defining preprocess(raw)")
        try:
            text = pipeline.read_text(encoding="utf-8")
            ast.parse(text, str(pipeline))
        except (SyntaxError, UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"--pipeline {pipeline}: not valid Python ({type(e).__name__}: {e})") from None
        if "preprocess" not in defined_functions(pipeline):
            raise UsageError(f"--pipeline {pipeline}: defines no preprocess(raw) function (it needs preprocess, "
                             "and optionally postprocess, preprocess_deployed)")
        file = pipeline
    else:
        model_file = Path(source.rsplit(":", 1)[0] if source and ".py:" in source else source or "")
        found = raw is not None and model_file.suffix == ".py" and model_file.is_file() and \
            "preprocess" in defined_functions(model_file)
        file = model_file if found else None
    if file is None:
        if raw is not None:
            raise UsageError("--raw-data needs --pipeline FILE.py (or a --source model file defining preprocess)")
        if operating_point is not None or max_flips is not None:
            given = "--operating-point" if operating_point is not None else "--max-decision-flips"
            raise UsageError(f"{given} needs --pipeline FILE.py and --raw-data FILE.npz")
        return None
    if raw is None:
        raise UsageError(f"--pipeline {file}: needs --raw-data FILE.npz (the raw samples preprocess reads)")
    if not raw.is_file():
        raise UsageError(f"--raw-data {raw}: no such file")
    try:
        op = decisions.parse_operating_point(operating_point) if operating_point is not None else None
        gate = decisions.parse_gate(max_flips) if max_flips is not None else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    return PipelineOptions(file.resolve(), raw.resolve(), op, gate)


def _worker(logs: Path, work: Path, name: str) -> Worker:
    return Worker(work / f"{name}.run", logs / f"run-{name}.log")


def _run(logs: Path, work: Path, name: str, job: jobs.RunPipeline, timeout: float) -> jobs.PipelineRan:
    reply = _worker(logs, work, name).run(job, True, timeout)
    if not reply.ok:
        raise UsageError(reply.error or "the pipeline worker failed", detail=reply.traceback)
    return reply


def prepare(opts: PipelineOptions, bundle_dir: Path, source: dict, contract: Contract, work: Path, logs: Path,
            timeout: float, consent: str | None) -> Prepared:
    """Run the preprocessing on the raw samples, check the deployed one against it, compute the reference outputs
    of the resulting inputs on the source model. One-line errors: exit 2 for the pipeline, 3 for the source."""
    why = source_consent(source, consent)
    if why:
        raise UsageError(f"--pipeline needs the source model's reference outputs: {why}")
    load_raw(opts.raw)
    raw_path = work / "pipeline.raw.npz"
    shutil.copyfile(opts.raw, raw_path)
    pre = _run(logs, work, "pipeline-pre", jobs.RunPipeline(
        file=str(opts.file), stage="pre", input_names=contract.input_names, raw=str(raw_path),
        out=str(work / "pipeline.user.npz"), deployed=str(work / "pipeline_deployed.user.npz")), timeout)
    try:  # decided here, before any target runs: a bad THRESHOLD is not found after every target ran
        op = decisions.resolve_operating_point(opts.operating_point, pre.constants, "postprocess" in pre.functions,
                                               str(opts.file))
    except ValueError as e:
        raise UsageError(str(e)) from None
    user = npz.load(work / "pipeline.user.npz")
    shaped = checked_inputs(opts, contract, user, pre.samples, f"preprocess() in {opts.file}")
    check_operating_point(op, contract, pre.functions)
    unbatch = unbatched(contract)
    n = len(next(iter(shaped.values())))
    sets = [_set(work, PIPELINE, contract, shaped)]
    deployed = None
    if "preprocess_deployed" in pre.functions:
        dep_user = npz.load(work / "pipeline_deployed.user.npz")
        layouts = {s.name: s.layout for s in contract.inputs}
        deployed = preprocessing.compare(dep_user, user, layouts)
        try:
            sets.append(_set(work, DEPLOYED, contract, as_samples(contract, dep_user, "")))
        except ValueError as e:
            deployed["not_run"] = f"its inputs do not fit the model, so the targets were not run on them: " \
                f"{str(e).removeprefix(': ')}"
    references = _references(bundle_dir, source, contract, sets, work, logs, timeout)
    return Prepared(opts, sets, references, pre.functions, pre.constants, n, unbatch, pre.pre_ms, deployed,
                    operating_point=op)


def load_raw(path: Path) -> dict[str, np.ndarray]:
    """``--raw-data``'s arrays, checked as validate and bench both need them (exit 2, one line): at least one array,
    none 0-d, all holding the same number (>= 1) of samples along their first axis."""
    try:
        raw = npz.load(path)
    except npz.NpzError as e:
        raise UsageError(f"--raw-data {e}") from None
    if not raw:
        raise UsageError(f"--raw-data {path}: holds no arrays")
    scalars = [k for k, v in raw.items() if not v.ndim]
    if scalars:
        raise UsageError(f"--raw-data {path}: array {scalars[0]!r} is 0-d: every array's first axis is the samples")
    counts = sorted({len(v) for v in raw.values()})
    if len(counts) != 1 or counts[0] == 0:
        raise UsageError(f"--raw-data {path}: every array must hold the same number (>= 1) of samples along its "
                         f"first axis (it holds {counts})")
    return raw


def checked_inputs(opts: PipelineOptions, contract: Contract, user: dict[str, np.ndarray], raw_samples: int,
                   what: str) -> dict[str, np.ndarray]:
    """``preprocess``'s inputs as golden samples, checked alike for validate and bench (exit 2, one line): the
    contract's names, dtypes and shapes (``_shaped``), one sample per raw sample, and a ``--max-decision-flips``
    count no larger than the samples."""
    shaped = _shaped(contract, user, what)
    n = len(next(iter(shaped.values())))
    if n != raw_samples:
        raise UsageError(f"{what} returned {n} sample(s) for the {raw_samples} raw samples of {opts.raw}: each "
                         "input's first axis must be the raw samples (one row, or one batch, per raw sample)")
    gate = opts.gate
    if gate is not None and gate.count is not None and gate.count > n:
        raise UsageError(f"--max-decision-flips {gate.count}samples: more than the {n} raw samples, so it gates "
                         f"nothing; give at most {n}samples, or 100% to report the decisions only")
    return shaped


def check_operating_point(op: decisions.OperatingPoint, contract: Contract, functions: Iterable[str] = ()) -> None:
    """A top-k of more classes than the classifier output's last dim (where the contract fixes it) is exit 2, before
    any target runs (``decisions.check_classes``). Where the file's own postprocess decides (``functions`` names it),
    its TOP_K may mean anything (the most detections kept): not checked."""
    if "postprocess" in functions:
        return
    spec = next((s for s in contract.outputs if s.kind == "classifier"), contract.outputs[0])
    classes = spec.shape[-1] if spec.shape and isinstance(spec.shape[-1], int) else None
    try:
        decisions.check_classes(op, classes, f"--operating-point / the pipeline file: output {spec.name!r}")
    except ValueError as e:
        raise UsageError(str(e)) from None


def unbatched(contract: Contract) -> list[str]:
    """The outputs postprocess gets without their batch-1 axis: those with a dynamic first dim (the worker drops
    axis 1 of [samples, 1, ...] only; a batch of several stays). One rule for validate and bench."""
    return [s.name for s in contract.outputs if s.shape and isinstance(s.shape[0], str)]


def _shaped(contract: Contract, arrays: dict, what: str) -> dict[str, np.ndarray]:
    for spec in contract.inputs:  # the shapes taken, said exactly (as_samples's own line names [samples, batch, ...])
        a = arrays.get(spec.name)
        if a is None or not spec.shape or a.ndim in (len(spec.shape) + 1, len(spec.shape) if isinstance(
                spec.shape[0], str) else -1):
            continue
        rest = ", ".join(map(str, spec.shape[1:]))
        if isinstance(spec.shape[0], str):
            taken = f"[N, {rest}] (one row per raw sample) or [N, {spec.shape[0]}, {rest}] (a batch per raw sample)"
        else:
            taken = f"[N, {', '.join(map(str, spec.shape))}] (one input of the model's fixed shape per raw sample)"
        raise UsageError(f"{what}: input {spec.name!r} has shape {list(a.shape)}; expected {taken}, N the raw "
                         "samples")
    try:
        return as_samples(contract, arrays, what)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _set(work: Path, name: str, contract: Contract, shaped: dict[str, np.ndarray]) -> GoldenSet:
    path = work / f"{name}.inputs.npz"
    npz.save(path, shaped)
    return GoldenSet(name, path, work / f"{name}.reference.npz", dims_of(contract, shaped),
                     len(next(iter(shaped.values()))))


def _references(bundle_dir: Path, source: dict, contract: Contract, sets: list[GoldenSet], work: Path, logs: Path,
                timeout: float) -> dict[str, dict[str, np.ndarray]]:
    runtime, source_file, ref_contract = source_artifact(source, contract, work)
    pool = RunPool(logs, work, timeout=timeout)
    pool.submit("pipeline-reference", runtime, source_file, ref_contract, sets)
    reply = pool.results()["pipeline-reference"]
    if reply.status != RunStatus.OK:
        code = errors.SKIPPED if reply.status == RunStatus.SKIPPED else errors.MODEL
        raise DeployToolError(f"--pipeline needs the source model to compute reference outputs, and it is not "
                              f"available: {reply.error}", code)
    refs = {}
    for s in sets:
        shutil.copyfile(reply.outputs[s.name], s.reference)
        refs[s.name] = npz.load(s.reference)
        bad = nonfinite_sample(refs[s.name])
        if bad is not None:
            raise UsageError(f"--pipeline: the source model's output {bad[0]!r} is NaN/Inf on raw sample {bad[1]} "
                             f"({'deployed' if s.name == DEPLOYED else 'reference'} preprocessing)")
    return refs


def judge_decisions(prep: Prepared, checks: dict[str, ArtifactCheck], contract: Contract, work: Path, logs: Path,
                    timeout: float) -> None:
    """Decisions of the source and of every target that ran the pipeline set, compared; ``chk.pipeline`` set, and
    a failure of the gate or of the deployed preprocessing appended to the reason (a PASS becomes a FAIL). The
    decoys of the source's outputs (zeros, their mean, another sample's: ``decisions.decoy_outputs``) go through
    the same postprocess: where one would pass a target's gate too, its decision check proves nothing (a PASS
    becomes VACUOUS)."""
    op = prep.operating_point
    classifier = next((s.name for s in contract.outputs if s.kind == "classifier"), contract.outputs[0].name)
    outputs = {f"reference.{s.name}": str(s.reference) for s in prep.sets}
    for key, chk in checks.items():
        for s in prep.sets:
            if s.name in chk.outputs:
                outputs[f"{key}.{s.name}"] = str(chk.outputs[s.name])
    names = {name: str(work / f"{name}.decisions.npz") for name in outputs}
    user_post = "postprocess" in prep.functions
    op_fields = None if user_post else {"kind": op.kind, "value": op.value, "band": op.band}
    post = _run(logs, work, "pipeline-post", jobs.RunPipeline(
        file=str(prep.options.file), stage="post", outputs=outputs, decisions=names, unbatch=prep.unbatch,
        classifier_output=classifier, operating_point=op_fields), timeout)
    got = {name: decisions.decode(npz.load(path)) for name, path in names.items()}
    ref = got[f"reference.{PIPELINE}"]
    band = op.near_band if (not user_post or ref.margins is not None) else None
    ran = any(f"{key}.{PIPELINE}" in got for key in checks)
    decoys = _decoys(prep, ref, classifier, op_fields, work, logs, timeout) if ran else {}
    deployed = prep.deployed
    source_effect = None
    if deployed is not None and f"reference.{DEPLOYED}" in got:
        source_effect = _compare(ref, got[f"reference.{DEPLOYED}"], band)
    for key, chk in checks.items():
        name = f"{key}.{PIPELINE}"
        if name not in got:
            continue
        try:
            result = decisions.compare(ref, got[name], band)
        except ValueError as e:
            raise UsageError(f"postprocess() in {prep.options.file}: {e}") from None
        tier = FORMATS[chk.format].tier if chk.format in FORMATS else "fp32"
        gate = prep.options.gate if prep.options.gate is not None else DEFAULT_GATES.get(tier)
        passed = gate is None or gate.allows(result["flips"], result["samples"])
        vacuous = decisions.uninformative(decoys, gate) if passed and isinstance(decoys, dict) else None
        result = {"file": str(prep.options.file), "raw_data": str(prep.options.raw),
                  "operating_point": "postprocess()" if user_post else op.text(), **result,
                  "gate": {**(gate.to_dict() if gate else {}), "given": prep.options.gate is not None,
                           "passed": passed,
                           "text": gate.text() if gate else "reported only"},
                  "decoys": decoys, "uninformative": vacuous,
                  "timing": {"pre_ms": prep.pre_ms, "post_ms": post.post_ms.get(name)}}
        failures = []
        if gate is not None and not passed:
            failures.append(f"pipeline: {decisions.summary_text(result)}, more than --max-decision-flips allows "
                            f"({gate.text()})")
        if deployed is not None:
            entry = dict(deployed)
            entry["source"] = source_effect
            dname = f"{key}.{DEPLOYED}"
            entry["decisions"] = _compare(ref, got[dname], band) if dname in got else None
            result["preprocess_deployed"] = entry
            if not deployed["match"]:
                effect = f"; on the target {decisions.summary_text(entry['decisions'])}" if entry["decisions"] else ""
                parity = "passes: the artifact is not at fault, the deployed preprocessing is" \
                    if chk.status in (CheckStatus.PASS, CheckStatus.CONSTANT_ACCEPTED) else "is judged apart"
                failures.append(f"preprocess_deployed differs from preprocess: {deployed['finding']}{effect} "
                                f"(tensor parity on identical inputs {parity})")
        chk.pipeline = result
        if failures:
            judge.add_failure(chk, "; ".join(failures))
        elif vacuous:
            judge.add_uninformative(chk, vacuous)


def _decoys(prep: Prepared, ref: decisions.Decisions, classifier: str, op_fields: dict | None, work: Path,
            logs: Path, timeout: float) -> dict | str:
    """The decoys' decisions against the reference's (``decisions.decoy_flips``), or why they could not be made:
    the postprocess raising on one (zeros, say) is said, not fatal (nothing is then claimed either way)."""
    made = decisions.decoy_outputs(prep.references[PIPELINE])
    outputs, names = {}, {}
    for d, arrays in made.items():
        outputs[f"decoy.{d}"] = str(work / f"pipeline.decoy.{d}.npz")
        names[f"decoy.{d}"] = str(work / f"pipeline.decoy.{d}.decisions.npz")
        npz.save(outputs[f"decoy.{d}"], arrays)
    reply = _worker(logs, work, "pipeline-decoys").run(jobs.RunPipeline(
        file=str(prep.options.file), stage="post", outputs=outputs, decisions=names, unbatch=prep.unbatch,
        classifier_output=classifier, operating_point=op_fields), True, timeout)
    if not reply.ok:
        return f"not judged: on a decoy (all zeros, the mean output, another sample's), {reply.error}"
    return decisions.decoy_flips(ref, {d.removeprefix("decoy."): decisions.decode(npz.load(path))
                                       for d, path in names.items()})


def _compare(ref: decisions.Decisions, got: decisions.Decisions, band: float | None) -> dict | None:
    try:
        return decisions.compare(ref, got, band)
    except ValueError:
        return None


def bench_timing(opts: PipelineOptions, contract: Contract, reference: Path, work: Path, logs: Path,
                 timeout: float) -> dict:
    """``bench --pipeline``: the median time of preprocess on one raw sample and of postprocess on one sample of
    the bundle's golden reference outputs (each in a batch of one, in the pipeline worker; no source model needed),
    in ms: ``{"file", "raw_data", "samples", "pre_ms", "post_ms", "post_on"}``."""
    raw_path = work / "pipeline.raw.npz"
    load_raw(opts.raw)
    shutil.copyfile(opts.raw, raw_path)
    op = opts.operating_point  # the worker resolves it with the file's constants, as validate's prepare does
    classifier = next((s.name for s in contract.outputs if s.kind == "classifier"), contract.outputs[0].name)
    reply = _run(logs, work, "pipeline-time", jobs.RunPipeline(
        file=str(opts.file), stage="time", input_names=contract.input_names, raw=str(raw_path),
        out=str(work / "pipeline.user.npz"), decisions={"reference": str(work / "pipeline.reference.decisions.npz")},
        outputs={"reference": str(reference)}, unbatch=unbatched(contract), classifier_output=classifier,
        operating_point={"kind": op.kind, "value": op.value, "band": op.band} if op else None), timeout)
    # validate's checks of what preprocess returned (the worker ran it on all raw samples first, and postprocess on
    # all golden outputs, refusing what is no decision) and of the operating point
    checked_inputs(opts, contract, npz.load(work / "pipeline.user.npz"), reply.samples,
                   f"preprocess() in {opts.file}")
    try:
        resolved = decisions.resolve_operating_point(op, reply.constants, "postprocess" in reply.functions,
                                                     str(opts.file))
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_operating_point(resolved, contract, reply.functions)
    golden = npz.load(reference)
    return {"file": str(opts.file), "raw_data": str(opts.raw), "samples": reply.samples, "pre_ms": reply.pre_ms,
            "post_ms": reply.post_ms.get("reference"), "post_on": "the bundle's golden reference outputs",
            "post_samples": len(next(iter(golden.values()))) if golden else 0,
            "postprocess": "postprocess()" if "postprocess" in reply.functions else "built-in"}


def bench_lines(timing: dict, rows: list) -> list[str]:
    """One line per timed row at batch 1: pre + inference p50 + post = the pipeline's time per sample."""
    pre, post = timing.get("pre_ms") or 0.0, timing.get("post_ms") or 0.0
    out = [f"pipeline {timing['file']}: preprocess {pre:.4f} ms, postprocess ({timing['postprocess']}) {post:.4f} ms "
           f"per sample (medians, batches of one: preprocess over the {timing['samples']} raw samples, postprocess "
           f"over the {timing.get('post_samples', '?')} samples of {timing.get('post_on', 'the golden outputs')})"]
    for r in rows:
        if r.p50_ms is not None and r.batch == 1:
            out.append(f"  {r.label}: {pre:.4f} + {r.p50_ms:.4f} + {post:.4f} = {pre + r.p50_ms + post:.4f} ms "
                       "(pre + inference p50 + post)")
    return out
