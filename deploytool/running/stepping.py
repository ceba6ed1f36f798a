"""The worker side of the multi-step check (``checking/steps.py``): the loop run on the source (the reference
trajectory, ``WriteSteps``) and on a target (free-running, its own outputs fed back, on the session
``run_artifact`` opened). Imported by ``worker.py`` inside the worker process only; decides nothing."""
from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from deploytool.checking import steps as S
from deploytool.core import contract as C
from deploytool.core import npz
from deploytool.core.errors import short_error
from deploytool.running import jobs


def write_steps(job: jobs.WriteSteps, loaded: Any, model_name: str) -> jobs.StepsWritten:
    """The source runs the loop from the first ``job.samples`` main golden samples; the trajectory is written."""
    if loaded is None:
        return jobs.StepsWritten(ok=False, error="steps job before the source was loaded", exit_code=1)
    try:
        initial = {k: v[:job.samples] for k, v in npz.load(job.inputs).items()}
        traj = S.trajectory(loaded.reference, initial, S.parse(job.feedback), job.steps)
    except Exception as e:  # noqa: BLE001 - the user's forward() failing is a model error
        return jobs.StepsWritten(ok=False, error=f"model {model_name!r}: the multi-step run ({', '.join(job.feedback)})"
                                 f" failed: {short_error(e)}", traceback=traceback.format_exc())
    _, outs = S.split(traj)
    bad = C.nonfinite_sample({k: v.reshape(-1, *v.shape[2:]) for k, v in outs.items()})
    if bad is not None:
        step = bad[1] // job.samples + 1
        return jobs.StepsWritten(ok=False, error=f"model {model_name!r}: the source's output {bad[0]!r} is NaN/Inf at "
                                 f"step {step} of the multi-step run; nothing can be checked against it")
    npz.save(job.out, traj)
    return jobs.StepsWritten(ok=True)


def run_steps(plan: jobs.StepsPlan, run: Any, session: Any, contract: C.Contract, reply: jobs.ArtifactRan) -> None:
    """The target's own loop, one sample at a time through the same feed conversion as ``run_artifact``
    (``to_artifact`` / ``from_artifact``); fills ``reply.steps`` or ``reply.steps_error``."""
    def one_step(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        outs: dict[str, list] = {name: [] for name in contract.output_names}
        for i in range(n):
            got = C.from_artifact(contract, run(session, C.to_artifact(contract, {k: v[i] for k, v in inputs.items()})))
            for name in contract.output_names:
                outs[name].append(np.asarray(got[name]))
        return {k: np.stack(v) for k, v in outs.items()}

    budget = Budget(plan)
    try:
        ins, _ = S.split(npz.load(plan.reference))
        traj = S.trajectory(one_step, {k: v[0] for k, v in ins.items()}, S.parse(plan.feedback), plan.steps,
                            stop=budget.stop)
    except Exception as e:  # noqa: BLE001 - a target that cannot loop is data
        reply.steps_error = short_error(e)
        return
    reply.steps_stopped = budget.why
    if traj:
        npz.save(plan.out, traj)
        reply.steps = plan.out


class Budget:
    """The loop's time budget (``StepsPlan.stop_at``): before each step, stop when the slowest step so far would
    end after it. ``why`` then says where it stopped and why (None: it did not)."""

    def __init__(self, plan: jobs.StepsPlan, clock: Callable[[], float] = time.time) -> None:
        self.plan, self.clock = plan, clock
        self.last = clock()
        self.slowest = 0.0
        self.why: str | None = None

    def stop(self, done: int) -> bool:
        now = self.clock()
        if done:
            self.slowest = max(self.slowest, now - self.last)
        self.last = now
        if self.plan.stop_at is None or now + self.slowest <= self.plan.stop_at:
            return False
        limit = f"--timeout {self.plan.timeout:g} s" if self.plan.timeout is not None else "the time limit"
        self.why = (f"stopped after {done} of {self.plan.steps} steps: the loop's time budget (after the golden sets, "
                    f"{int(jobs.STEPS_SHARE * 100)}% of {limit}) ran out" + (f" at {self.slowest:.3g} s a step"
                                                                         if done else ""))
        return True
