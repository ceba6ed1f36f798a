"""Golden data policy: which input sets every artifact is checked on, decided once, from the contract.

``plan_sets`` is the one place that names the sets, their files, sample counts, dim sizes and
seeds. The export coordinator calls it as soon as the source worker has reported the contract and
hands the plan back to that worker to fill (a two-phase job); the worker decides nothing.

- ``main``: ``samples`` samples at batch 1 and each other dynamic dim at its example size. Drawn
  by the source itself (``generator="source"``), so a zoo model can ship real data (the digits
  model's are held-out digits); otherwise seeded from the contract.
- ``alt``: only where the contract has dynamic dims: ``ALT_SAMPLES`` samples at every dim's
  ``alt`` size (batch 3, another sequence length), seeded with ``seed + 1``.
- ``labelled``: labelled data, when the source ships it (``digits_cnn``: all 449 held-out digits)
  or ``export --data`` gives it (``labels`` key): every artifact's task accuracy is measured on it.
- calibration data for the int8 formats (``golden/calibration.npz``, inputs only): the source's
  own (``digits_cnn``: training digits, never the held-out ones; a synthetic zoo model: its
  seeded generator at ``seed + CALIB_SEED_OFFSET``, disjoint from the golden seeds) or
  ``--calib-data``. Never drawn from random noise for a model that has no generator of its own.

Labels: an ``.npz`` key ``labels`` labels the first classifier output (the first output when none
is marked a classifier); ``labels:OUTPUT`` names the output. One integer class per sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploytool.core.contract import Contract

MAIN, ALT, DATA, LABELLED = "main", "alt", "data", "labelled"
DEFAULT_SAMPLES = 16
ALT_SAMPLES = 4
DEFAULT_SEED = 0
CALIBRATION = "golden/calibration.npz"
CALIB_SAMPLES = 128  # drawn from the source's own calibration data
CALIB_RECOMMENDED = 100  # fewer --calib-data samples than this: a warning on each int8 artifact
CALIB_SEED_OFFSET = 1000  # a synthetic zoo model's calibration seed: never a golden set's (seed, seed + 1)
LABELS_FILE = "golden/labels.npz"


@dataclass
class GoldenSetPlan:
    """One golden set to write: paths relative to the bundle."""

    name: str
    samples: int
    seed: int
    dims: dict[str, int]  # concrete sizes of the contract's dynamic dims in this set
    inputs: str
    reference: str
    # "source": the source's own golden inputs; "seeded": generated from the contract; "labelled": the
    # source's labelled data (inputs and labels); "given": inputs (and labels) already written by the coordinator
    generator: str
    labels: str | None = None  # the labels file, for a labelled set
    labelled_output: str | None = None


@dataclass
class GoldenSet:
    """A golden set on disk, as the checks use it."""

    name: str  # MAIN, ALT or DATA
    inputs: Path
    reference: Path
    dims: dict[str, int]
    samples: int
    labels: Path | None = None  # one integer class per sample, for ``labelled_output``
    labelled_output: str | None = None


def plan_sets(contract: Contract, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED,
              labelled: str | None = None) -> list[GoldenSetPlan]:
    """``labelled``: None, "source" (the source ships labelled data) or "given" (``--data`` with labels,
    already written to ``golden/labelled.npz`` and ``LABELS_FILE`` by the coordinator)."""
    sets = [GoldenSetPlan(MAIN, samples, seed, contract.dim_sizes("example", batch_one=True),
                          "golden/inputs.npz", "golden/reference.npz", "source")]
    if contract.dynamic_dims():
        sets.append(GoldenSetPlan(ALT, ALT_SAMPLES, seed + 1, contract.dim_sizes("alt"),
                                  "golden/inputs_alt.npz", "golden/reference_alt.npz", "seeded"))
    if labelled:
        sets.append(GoldenSetPlan(LABELLED, 0, seed, contract.dim_sizes("example", batch_one=True),
                                  "golden/labelled.npz", "golden/reference_labelled.npz",
                                  "labelled" if labelled == "source" else "given", LABELS_FILE))
    return sets


def labelled_output(contract: Contract, key: str = "labels") -> str:
    """Which output a ``labels`` / ``labels:OUTPUT`` key labels."""
    if ":" in key:
        name = key.split(":", 1)[1]
        if name not in contract.output_names:
            raise ValueError(f"{key!r} names no output (the outputs are {contract.output_names})")
        return name
    return next((s.name for s in contract.outputs if s.kind == "classifier"), contract.outputs[0].name)


def check_labels(contract: Contract, labels: object, output: str, samples: int, what: str) -> np.ndarray:
    """Labels: one integer class per sample, each inside the labelled output's class range."""
    spec = next(s for s in contract.outputs if s.name == output)
    a = np.asarray(labels)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{what}: labels must be a 1-D integer array (one class per sample), got {a.dtype}"
                         f"{list(a.shape)}")
    if len(a) != samples:
        raise ValueError(f"{what}: {len(a)} labels for {samples} samples")
    classes = spec.shape[-1] if spec.shape and isinstance(spec.shape[-1], int) else None
    if classes is None or len(spec.shape) < 2:
        raise ValueError(f"{what}: output {output!r} {spec.shape} is not a classifier output [.., classes]")
    if len(a) and (a.min() < 0 or a.max() >= classes):
        raise ValueError(f"{what}: labels range over [{a.min()}, {a.max()}], output {output!r} has {classes} "
                         "classes")
    return a.astype(np.int64)


def read_user_data(contract: Contract, path: Path, option: str) -> tuple[dict[str, np.ndarray], np.ndarray | None,
                                                                          str | None]:
    """``--data`` / ``--calib-data`` FILE.npz -> (inputs as samples, labels or None, labelled output or
    None). Raises ValueError with one line naming the file and the key."""
    from deploytool.core import npz
    from deploytool.core.contract import as_samples

    what = f"{option} {path}"
    try:
        arrays = npz.load(path)
    except npz.NpzError as e:
        raise ValueError(f"{option} {e}") from None
    inputs = as_samples(contract, arrays, what)
    keys = [k for k in arrays if k == "labels" or k.startswith("labels:")]
    if len(keys) > 1:
        raise ValueError(f"{what}: more than one labels key {keys}")
    if not keys:
        return inputs, None, None
    output = labelled_output(contract, keys[0])
    n = len(next(iter(inputs.values())))
    return inputs, check_labels(contract, arrays[keys[0]], output, n, f"{what}: key {keys[0]!r}"), output


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
