"""Golden data policy: which input sets every artifact is checked on, decided once, from the contract.

``plan_sets`` is the one place that names the sets, their files, sample counts, dim sizes and
seeds. The export coordinator calls it as soon as the source worker has reported the contract and
hands the plan back to that worker to fill (a two-phase job); the worker decides nothing.

- ``main``: ``samples`` samples at batch 1 and each other dynamic dim at its example size. Drawn
  by the source itself (``generator="source"``), so a zoo model can ship real data (the digits
  model's are held-out digits); otherwise seeded from the contract.
- ``alt``: only where the contract has dynamic dims: ``ALT_SAMPLES`` samples at every dim's
  ``alt`` size (batch 3, another sequence length), seeded with ``seed + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploytool.contract import Contract

MAIN, ALT, DATA = "main", "alt", "data"
DEFAULT_SAMPLES = 16
ALT_SAMPLES = 4
DEFAULT_SEED = 0


@dataclass
class GoldenSetPlan:
    """One golden set to write: paths relative to the bundle."""

    name: str
    samples: int
    seed: int
    dims: dict[str, int]  # concrete sizes of the contract's dynamic dims in this set
    inputs: str
    reference: str
    generator: str  # "source": the source's own golden inputs; "seeded": generated from the contract


@dataclass
class GoldenSet:
    """A golden set on disk, as the checks use it."""

    name: str  # MAIN, ALT or DATA
    inputs: Path
    reference: Path
    dims: dict[str, int]
    samples: int


def plan_sets(contract: Contract, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> list[GoldenSetPlan]:
    sets = [GoldenSetPlan(MAIN, samples, seed, contract.dim_sizes("example", batch_one=True),
                          "golden/inputs.npz", "golden/reference.npz", "source")]
    if contract.dynamic_dims():
        sets.append(GoldenSetPlan(ALT, ALT_SAMPLES, seed + 1, contract.dim_sizes("alt"),
                                  "golden/inputs_alt.npz", "golden/reference_alt.npz", "seeded"))
    return sets


def applicable_sets(contract: Contract, sets: list[GoldenSet]) -> tuple[list[GoldenSet], dict[str, str]]:
    """Sets whose dim sizes an artifact accepts (a converter may have fixed a dim), and why the others not."""
    ok, skipped = [], {}
    for s in sets:
        clash = {d: v for d, v in contract.fixed_dims.items() if d in s.dims and s.dims[d] != v}
        if clash:
            skipped[s.name] = "artifact fixed " + ", ".join(f"{d}={v}" for d, v in contract.fixed_dims.items())
        else:
            ok.append(s)
    return ok, skipped
