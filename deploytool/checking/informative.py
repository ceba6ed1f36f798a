"""The informativeness rule: a check proves something only if a wrong artifact would fail it.

Before the judge grants PASS to an output, it runs the same comparison (same tier, tolerances, metrics,
resolution, or the same task-accuracy rule) on three trivial artifacts made from the reference alone
(``DECOYS``): one that returns all zeros, one that returns the per-element mean of the reference over the
golden samples, and one that returns another sample's reference (a derangement of the samples). Any decoy
that passes makes the check uninformative: ``VACUOUS`` unless the user accepts it. A constant reference (the
mean passes), an all-zero one (zeros pass), one far below the tolerance or below a precision's resolution
(zeros pass) and one that varies less across samples than the tolerance (the mean passes) are instances of
this one rule. Pure numpy; the comparison itself is the caller's (``verdict_of``), never re-implemented here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

# decoy name -> what such an artifact returns, for a reason line
DECOYS = {
    "zeros": "all zeros",
    "mean": "the per-element mean over the golden samples",
    "shuffled": "another sample's reference",
}


@dataclass(frozen=True)
class Decoy:
    """One trivial artifact judged like the real one. ``passed`` None: it could not be made (``detail`` says
    why: the mean and the shuffle of one sample are that sample)."""

    name: str
    passed: bool | None
    detail: str

    def describe(self) -> str:
        """``an artifact returning all zeros would pass (max abs error 1e-30 on ...)``."""
        return f"an artifact returning {DECOYS[self.name]} would pass too ({self.detail})"

    def to_dict(self) -> dict:
        return asdict(self)


def decoys(reference: np.ndarray) -> dict[str, np.ndarray | None]:
    """The decoys of a reference output [samples, ...], in its dtype and shape; None where one cannot be made
    (with one sample, the mean is that sample and there is no other sample to shuffle in)."""
    ref = np.asarray(reference)
    made: dict[str, np.ndarray | None] = {"zeros": np.zeros_like(ref), "mean": None, "shuffled": None}
    if ref.ndim == 0 or ref.shape[0] < 2:
        return made
    mean = ref.astype(np.float64).mean(axis=0, keepdims=True)
    if ref.dtype.kind == "b":
        mean = mean >= 0.5
    elif ref.dtype.kind in "iu":
        mean = np.rint(mean)
    made["mean"] = np.broadcast_to(mean.astype(ref.dtype), ref.shape).copy()
    made["shuffled"] = np.roll(ref, 1, axis=0)  # sample i gets sample i-1's: no sample keeps its own
    return made


def trivial_passes(reference: np.ndarray, verdict_of: Callable[[np.ndarray], tuple[bool, str]]) -> list[Decoy]:
    """Each decoy of ``reference`` judged by ``verdict_of`` (the exact check the artifact gets: candidate ->
    (passed, a phrase on what it measured)); a decoy that cannot be made is listed with ``passed`` None."""
    results = []
    for name, candidate in decoys(reference).items():
        if candidate is None:
            results.append(Decoy(name, None, "cannot be made from one golden sample"))
            continue
        passed, detail = verdict_of(candidate)
        results.append(Decoy(name, passed, detail))
    return results


def passing(results: list[Decoy]) -> list[Decoy]:
    """The decoys that would pass: the check is uninformative when any does."""
    return [d for d in results if d.passed]
