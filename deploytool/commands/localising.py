"""Localise each failing hop to its first diverging op, for ``validate`` and ``export``.

After judging, every hop the judge blamed (``parent -> child``) is run again on the failing sample
(the worst sample of the child's check): parent and child each in a worker (``jobs.ExposeTensors``)
with their intermediate tensors exposed, under the command's time limit per step; the pure
``localise.locate`` then names the first op of the parent whose output the child does not
reproduce within the child's tier (the parent may be the source itself where its runtime exposes
tensors: a torch source through forward hooks; only where the user allowed it to run, ``source_consent``, since a
model file or factory a bundle names is code of its choosing). The finding goes into the check (its reason, so the
table's note, JUnit and the repro README say it; ``first_diverging`` in validation.json) and the op's two
tensors into the repro folder. A hop that cannot be localised says why.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from deploytool.checking import judge, parity
from deploytool.checking.golden import GoldenSet
from deploytool.checking.localise import Finding, Limits, Node, locate, unavailable
from deploytool.core import npz
from deploytool.core.contract import Contract
from deploytool.core.errors import short_error
from deploytool.core.target import NATIVE, Target
from deploytool.expose import EXPOSERS
from deploytool.formats import FORMATS
from deploytool.progress import Progress, as_progress
from deploytool.results import ArtifactCheck, worst_sample
from deploytool.running import jobs
from deploytool.running.spawn import Worker
from deploytool.runtimes import RUNTIMES
from deploytool.sources import source_artifact, source_consent, source_loadable
from deploytool.store.manifest import ArtifactRecord


def localise_failures(checks: dict[str, ArtifactCheck], records: dict[str, ArtifactRecord], root: Path,
                      sets: list[GoldenSet], tolerances: parity.Tolerances | None, work: Path, logs: Path,
                      timeout: float,
                      limits: Limits | None = None, progress: Progress | None = None, source: dict | None = None,
                      contract: Contract | None = None,
                      consent: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Fill ``first_diverging`` (and the reason) of every failing check with a blamed hop; returns,
    per failing artifact, the arrays for its repro folder (``first_diverging.npz``). ``source``
    (the manifest's source reference) and ``contract`` (the source's) let a hop from the source be
    localised where its runtime exposes tensors (a torch source: forward hooks on its modules); a source that runs
    Python the bundle names (a model file, a factory) only when ``consent``, the user's own naming of the source
    (validate's ``--source``, export's ``--model``), names it too."""
    limits, progress = limits or Limits(), as_progress(progress)
    hops: dict[tuple[str, str], list[str]] = {}  # (parent, child) target keys -> the failing checks blaming it
    for key, chk in checks.items():
        # a failure of a further gate only (multi-step, decisions) has no diverging tensor on a golden sample
        if chk.status == jobs.CheckStatus.FAIL and chk.hop_from and chk.hop_to and not judge.tensors_passed(chk):
            hops.setdefault((chk.hop_from, chk.hop_to), []).append(key)
    extras: dict[str, dict[str, np.ndarray]] = {}
    for (parent, child), failing in hops.items():
        chk = checks.get(child) or checks[failing[0]]
        hop = (chk.hop_blamed or f"{parent} -> {child}").split(" (not checked")[0]
        progress.stage(f"localising the first diverging op of {hop}")
        try:
            finding, arrays = _localise(hop, parent, child, chk, records, root, sets, tolerances, work, logs,
                                        timeout, limits, source, contract, consent)
        except Exception as e:  # noqa: BLE001 - a diagnostic: the parity failure stands, said plainly, never a crash
            finding, arrays = unavailable(hop, f"localising failed: {short_error(e)}"), {}
        for name in failing:
            checks[name].first_diverging = finding.to_dict()
            checks[name].reason = f"{checks[name].reason} [{finding.text()}]"
            if arrays:
                extras[name] = arrays
    return extras


def _localise(hop: str, parent: str, child: str, chk: ArtifactCheck, records: dict[str, ArtifactRecord], root: Path,
              sets: list[GoldenSet], tolerances: parity.Tolerances | None, work: Path, logs: Path, timeout: float,
              limits: Limits, source: dict | None, contract: Contract | None,
              consent: str | None) -> tuple[Finding, dict[str, np.ndarray]]:
    runnable: dict[str, tuple[str, Path, Contract]] = {}  # what each side runs on: runtime, file, contract
    for side in (parent, child):
        if side == "source":
            if source is None or contract is None:
                return unavailable(hop, "the source model is not known"), {}
            why = source_loadable(source)
            if why:
                return unavailable(hop, f"the source model cannot be loaded here: {why}"), {}
            why = source_consent(source, consent)
            if why:
                return unavailable(hop, why), {}
            runnable[side] = source_artifact(source, contract, work)
        else:
            target = Target.parse(side)
            if target.platform != NATIVE:  # its kernels run under QEMU; the exposers run natively, on other kernels
                return unavailable(hop, f"intermediate tensors are not exposed on an emulated CPU ({target.platform})"
                                   ), {}
            rec = records.get(target.format)
            if rec is None or rec.status != jobs.ArtifactStatus.OK or rec.path is None or rec.contract is None:
                return unavailable(hop, f"the {target.format} artifact is not in the bundle"), {}
            runnable[side] = (target.runtime, root / rec.path, rec.contract)
        runtime = runnable[side][0]
        what = side if side == "source" else Target.parse(side).format  # the runtime is named beside it
        if runtime not in EXPOSERS:
            return unavailable(hop, f"runtime {runtime} ({what}) gives no access to intermediate tensors"), {}
        missing = RUNTIMES[runtime].missing_packages()
        if missing:
            return unavailable(hop, f"runtime {runtime} ({what}) is not installed here (no {', '.join(missing)})"), {}
    worst = worst_sample(chk) or _largest_error(chk)  # an accuracy-gated failure has no failing tensor
    by_name = {s.name: s for s in sets}
    if worst is None or worst[0] not in by_name:
        return unavailable(hop, f"no failing sample of {chk.format} to localise on"), {}
    set_name, _, index = worst
    sample = {k: v[index] for k, v in npz.load(by_name[set_name].inputs).items()}
    sample_path = work / f"localise.{parent}.{child}.inputs.npz"
    npz.save(sample_path, sample)

    def expose(fmt: str) -> jobs.TensorsExposed:
        runtime, path, artifact_contract = runnable[fmt]
        job = jobs.ExposeTensors(runtime=runtime, artifact=str(path), contract=artifact_contract,
                                 inputs=str(sample_path), out=str(work / f"localise.{fmt}.tensors.npz"),
                                 limits=limits.to_dict())
        worker = Worker(work / f"localise-{fmt}.expose", logs / f"localise-{fmt}.log", RUNTIMES[runtime].packages)
        return worker.run(job, True, timeout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        p_reply, c_reply = pool.map(expose, (parent, child))
    for fmt, reply in ((parent, p_reply), (child, c_reply)):
        if reply.status != jobs.RunStatus.OK or not reply.tensors:
            return unavailable(hop, f"{fmt.split('@')[0]} on {runnable[fmt][0]} could not expose its intermediate "
                                    f"tensors: {reply.error}"), {}
    p_tensors, c_tensors = npz.load(p_reply.tensors or ""), npz.load(c_reply.tensors or "")
    child_format = Target.parse(child).format
    tier = (tolerances or parity.Tolerances()).tier(parity.TIERS[FORMATS[child_format].tier], child_format, "*", child)
    finding = locate(hop, [Node.from_dict(n) for n in p_reply.nodes], p_reply.inputs, p_tensors, c_tensors, tier,
                     limits.seconds, exposed_all=not p_reply.truncated)
    finding.sample = {"set": set_name, "index": int(index)}
    arrays: dict[str, np.ndarray] = {}
    if finding.localised and finding.tensor and finding.child_tensor:
        p_label, _, c_label = hop.partition(" -> ")  # as the hop names them (onnx, onnx@openvino)
        arrays = {**{f"input.{k}": v for k, v in sample.items()},
                  f"{p_label}.{finding.tensor}": p_tensors[finding.tensor],
                  f"{c_label}.{finding.child_tensor}": c_tensors[finding.child_tensor]}
    return finding, arrays


def _largest_error(chk: ArtifactCheck) -> tuple[str, str, int] | None:
    """(set, output, sample) of the largest error against the reference, passing or not."""
    found = [(v["metrics"]["max_abs"], set_name, out, v["metrics"]["worst_sample"])
             for set_name, per_out in chk.sets.items() for out, v in per_out.items()
             if v["metrics"].get("max_abs") is not None]
    if not found:
        return None
    _, set_name, out, index = max(found)
    return set_name, out, index
