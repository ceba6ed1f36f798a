"""A small pool of run workers: each artifact runs on its own runtime in its own subprocess.

Used by export (the check after each stage) and validate (and validate's ``--data`` reference
run). The pool decides, on the coordinator side, which golden sets an artifact can take
(``golden.applicable_sets``) and whether its runtime is installed here (a missing runtime is a
``SKIPPED`` reply naming the install hint, no process started).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from deploytool import platforms
from deploytool.checking.golden import MAIN, GoldenSet, applicable_sets
from deploytool.core.contract import Contract
from deploytool.core.target import NATIVE
from deploytool.running import jobs
from deploytool.running.spawn import Worker
from deploytool.runtimes import RUNTIMES


class RunPool:
    """Submits artifact runs to at most ``parallel`` worker subprocesses (optionally started warm)."""

    def __init__(self, logs: Path, work: Path, parallel: int = 2, settings: dict | None = None,
                 timeout: float = jobs.CHECK_TIMEOUT_S) -> None:
        self.logs, self.work, self.timeout = logs, work, timeout
        self.settings = settings or {}
        self.pool = ThreadPoolExecutor(max_workers=parallel)
        self.futures: dict[str, Future] = {}
        self.warm: dict[str, Worker] = {}
        self.skipped_sets: dict[str, dict[str, str]] = {}  # key -> golden sets not given to it, and why

    def _worker(self, key: str, runtime: str, platform: str = NATIVE) -> Worker:
        preload = RUNTIMES[runtime].packages if platform == NATIVE else ()  # emulated: its packages are not here
        return self.warm.pop(key, None) or Worker(self.work / f"{key}.run", self.logs / f"run-{key}.log", preload)

    def prestart(self, key: str, runtime: str) -> None:
        """Start the runtime's worker now so its imports overlap work still running."""
        if key not in self.warm and RUNTIMES[runtime].unavailable() is None:
            self.warm[key] = self._worker(key, runtime).start()

    def cancel(self, key: str) -> None:
        worker = self.warm.pop(key, None)
        if worker is not None:
            worker.close()

    def submit(self, key: str, runtime: str, artifact: Path, contract: Contract, sets: list[GoldenSet],
               load_settings: dict | None = None, platform: str = NATIVE, steps: jobs.StepsPlan | None = None) -> None:
        """Run the artifact on every set it accepts (``load_settings``: the artifact's own, from its record), on
        ``platform`` (an emulated CPU: ``deploytool.platforms``); ``steps``: then the multi-step run, on the same
        session (its trajectory written to the work folder)."""
        rt = RUNTIMES[runtime]
        sets, self.skipped_sets[key] = applicable_sets(contract, sets)
        # a package or a program it needs is missing (on an emulated CPU: the emulation): a skip naming what to do
        why = rt.unavailable() if platform == NATIVE else platforms.unavailable(platform)
        if why:
            fut: Future = Future()
            fut.set_result(jobs.ArtifactRan(status=jobs.RunStatus.SKIPPED, runtime=runtime, error=why))
            self.futures[key] = fut
            return
        job = jobs.RunArtifact(runtime=runtime, artifact=str(artifact), contract=contract,
                               settings={**self.settings, **(load_settings or {})},
                               sets=[jobs.RunSet(s.name, str(s.inputs), str(self.work / f"{key}.{s.name}.npz"))
                                     for s in sets], platform=platform)
        if steps is not None and any(s.name == MAIN for s in sets):  # its initial inputs are main-set samples
            job.steps = replace(steps, out=str(self.work / f"{key}.steps.npz"))
        worker = self._worker(key, runtime, platform)
        self.futures[key] = self.pool.submit(self._run, worker, job)

    def _run(self, worker: Worker, job: jobs.RunArtifact) -> jobs.ArtifactRan:
        if job.steps is not None:  # the multi-step loop's own budget: a share of this run's timeout, from now
            job.steps.stop_at, job.steps.timeout = time.time() + jobs.STEPS_SHARE * self.timeout, self.timeout
        return worker.run(job, True, self.timeout)

    def results(self, on_done: Callable[[str, jobs.ArtifactRan], None] | None = None) -> dict[str, jobs.ArtifactRan]:
        """Every run's reply, in submission order; ``on_done(key, reply)`` is told of each as it finishes."""
        keys = {fut: key for key, fut in self.futures.items()}
        for fut in as_completed(keys):
            if on_done is not None:
                on_done(keys[fut], fut.result())
        out = {key: fut.result() for key, fut in self.futures.items()}
        self.pool.shutdown()
        for key in list(self.warm):
            self.cancel(key)
        return out
