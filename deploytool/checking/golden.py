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

Coverage: integer inputs are drawn across their range: declared (``--input-range``, a zoo module's INPUTS),
else read from the model by the source (the rows of the embedding / table the input indexes), else the range
the user's example inputs span; float inputs without a declared range take their example inputs' range. An
integer input with none of these is drawn from [0, 2) only: each set's ``coverage`` (per input: the values'
range, how many distinct ones, where the range came from) marks it weak, every check on such a set is a PASS
with a coverage warning (``ArtifactCheck.coverage``), and ``--strict`` fails it (exit 7, ``judge.exit_code``).
User data (``--data``) is taken as it is.

Labels: an ``.npz`` key ``labels`` labels the first classifier output (the first output when none
is marked a classifier); ``labels:OUTPUT`` names the output. One integer class per sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deploytool.core.contract import INT_DTYPES, Contract

if TYPE_CHECKING:  # results and jobs import this module
    from deploytool.results import ArtifactCheck

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
    # its input family (checking/families.py: seeded, data, perturbed, edge); generator "perturbed" perturbs the
    # set named ``base``; ``note``: how it was made, where that needs saying (the largest dims taken)
    family: str | None = None
    base: str | None = None
    note: str | None = None
    oracle: str | None = None  # the float64 oracle's file to write (export --oracle float64; sources/_float64.py)


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
    family: str | None = None  # checking/families.py (None: by its name, families.family_of)
    oracle: Path | None = None  # the float64 oracle's outputs (checking/oracle.py), when the bundle holds one


def plan_sets(contract: Contract, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED,
              labelled: str | None = None, families: list[str] | None = None,
              source_data: bool = False) -> list[GoldenSetPlan]:
    """``labelled``: None, "source" (the source ships labelled data) or "given" (``--data`` with labels,
    already written to ``golden/labelled.npz`` and ``LABELS_FILE`` by the coordinator). ``families``: the
    optional input families to add (``export --families``: perturbed, edge; checking/families.py);
    ``source_data``: the source's golden inputs are its own data (the ``data`` family), not seeded."""
    sets = [GoldenSetPlan(MAIN, samples, seed, contract.dim_sizes("example", batch_one=True),
                          "golden/inputs.npz", "golden/reference.npz", "source")]
    if contract.dynamic_dims():
        sets.append(GoldenSetPlan(ALT, ALT_SAMPLES, seed + 1, contract.dim_sizes("alt"),
                                  "golden/inputs_alt.npz", "golden/reference_alt.npz", "seeded"))
    if labelled:
        sets.append(GoldenSetPlan(LABELLED, 0, seed, contract.dim_sizes("example", batch_one=True),
                                  "golden/labelled.npz", "golden/reference_labelled.npz",
                                  "labelled" if labelled == "source" else "given", LABELS_FILE))
    from deploytool.checking import families as F

    for p in sets:
        p.family = F.DATA if p.name == LABELLED or (p.name == MAIN and source_data) else F.SEEDED
    # the data the perturbed family perturbs: the labelled set (real data), else the source's own main set
    data = next((p for p in sets if p.name == LABELLED), None) or next((p for p in sets if p.family == F.DATA), None)
    sets += F.plan(contract, list(families or []), seed, sets[0], data, GoldenSetPlan)
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
        # an artifact that records a smaller maximum than the source's (ExecuTorch's planned memory): the largest
        # dims (the edge_max set, checking/families.py) are beyond what it takes
        over = {d: int(spec["max"]) for d, spec in contract.dims.items()
                if spec.get("max") is not None and s.dims.get(d, 0) > int(spec["max"]) and d not in contract.fixed_dims}
        if clash:
            skipped[s.name] = "artifact fixed " + ", ".join(f"{d}={v}" for d, v in contract.fixed_dims.items())
        elif over:
            skipped[s.name] = "the artifact takes at most " + ", ".join(f"{d}={v}" for d, v in over.items())
        else:
            ok.append(s)
    return ok, skipped


def coverage(contract: Contract, inputs: dict[str, np.ndarray], given: bool = False) -> dict[str, dict]:
    """Per input, what a golden set's inputs cover: {"range": [min, max] of the values, "distinct": how many
    values, "range_from": where the range drawn from came from; "weak": true for an integer input drawn with no
    range known (``given``: the user's own data, taken as it is, never weak)}."""
    out: dict[str, dict] = {}
    for spec in contract.inputs:
        a = np.asarray(inputs[spec.name])
        entry: dict = {"range": [a.min().item(), a.max().item()] if a.size else [], "distinct": int(np.unique(a).size)}
        if given:
            entry["range_from"] = "the user's data"
        elif spec.range is not None:
            entry["range_from"] = spec.range_from or "declared"
        elif spec.dtype in INT_DTYPES:
            entry["weak"] = True
        out[spec.name] = entry
    return out


def weak_text(sets: dict[str, dict[str, dict]]) -> str:
    """The coverage warning for the sets a check ran on (``coverage`` per set), or "" when they cover the model."""
    weak = {name: e for per_input in sets.values() for name, e in per_input.items() if e.get("weak")}
    if not weak:
        return ""
    parts = [f"{name!r} only {e['distinct']} distinct values in [{', '.join(map(str, e['range']))}]"
             for name, e in weak.items()]
    flags = " ".join(f"--input-range {name}:LOW:HIGH" for name in weak)
    return (f"WEAK COVERAGE: integer input {'; '.join(parts)} (no range declared, none readable from the model "
            f"or example inputs); {flags} exercises it (--strict fails this)")


def static_text(contract: Contract) -> str:
    """The note for dims a factory's example inputs fixed although the model takes other sizes there, naming the
    option that makes them dynamic; "" when there are none."""
    if not contract.example_static:
        return ""
    parts, flags = [], []
    for spec in contract.inputs:
        axes = contract.example_static.get(spec.name)
        if not axes:
            continue
        sizes = ", ".join(str(spec.shape[a]) for a in axes)
        parts.append(f"{spec.name!r} axis {', '.join(map(str, axes))} (size {sizes})")
        dims = [("batch" if a == 0 else f"dim{a}") if a in axes else str(d) for a, d in enumerate(spec.shape)]
        flags.append(f"--input '{spec.name}:{' x '.join(dims)}:{spec.dtype}'")
    return (f"static: {'; '.join(parts)} stays at the example inputs' size although the model takes others; "
            f"{' '.join(flags)} makes them dynamic")


def annotate(checks: dict[str, ArtifactCheck], contract: Contract, sets: dict[str, dict[str, dict]]) -> None:
    """Each check that ran on golden sets gets the coverage warning of those sets (``sets``: coverage per set,
    as the manifest records it) and the note on dims the example inputs left static."""
    static = static_text(contract)
    for chk in checks.values():
        ran = {name: sets[name] for name in chk.sets if name in sets}
        if not chk.sets:
            continue
        chk.coverage = weak_text(ran)
        if static and static not in chk.notes:
            chk.notes.append(static)
