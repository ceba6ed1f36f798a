"""Input families: the same check on several kinds of golden input, each with its own verdict (issue 25, item 2).

A family is a kind of golden input; every golden set belongs to one (``GoldenSetPlan.family``, recorded in the
manifest's ``golden.sets.<set>.family``):

- ``seeded``: values drawn from the contract in the declared ranges (the ``main`` set of a model without data
  of its own, the ``alt`` set). What every check did before families.
- ``data``: the source's own data (``digits_cnn``'s held-out digits as ``main``, its ``labelled`` set),
  ``export --data`` and ``validate --data``.
- ``perturbed`` (``export --families perturbed``): the ``data`` family's inputs (the labelled set, else the
  source's own ``main`` set; seeded inputs where the model has no data) perturbed, one perturbation per sample
  in turn: a scale, additive noise and, for image-like inputs (``[N,C,H,W]`` / ``[N,H,W,C]``), a contrast change
  and a horizontal flip. Seeded (``seed + PERTURBED_SEED_OFFSET``) and clipped to the declared range.
- ``edge`` (``export --families edge``): the ``edge`` set at the main set's dims (EDGE_VALUES): every input at
  zero (at its range's midpoint where zero is outside [LOW, HIGH) or is one of its ends: it would repeat the next
  samples), every input at its range's low end, every input at its high end: ranges are half-open as the seeded
  family draws them, so the largest value of the dtype below HIGH (``HIGH - 1`` for integers, ``np.nextafter``
  for floats); and, where the contract has dynamic dims, the ``edge_max`` set at the largest declared size of each
  dim (its ``max``; without one, its ``alt`` size, and the set says so), values seeded in range.

``plan`` is called by ``golden.plan_sets`` (the one place that names sets); ``edge_inputs`` and
``perturbed_inputs`` are the worker's generators (deterministic from the contract and the seed; the worker
decides nothing); ``after_writing`` notes the samples the worker left out where the source itself gives NaN/Inf
(and skips a set left empty); ``judge`` gives each family its own verdict per target (``ArtifactCheck.families``)
and says when families disagree. Accuracy-gated tiers (int8) do not gate on the ``edge`` family unless asked
(``--gate-families edge``): values at a range's ends lie outside the calibration data, and an int8 artifact
saturating there is how int8 behaves. Its verdict is still reported.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from deploytool.core.contract import INT_DTYPES, Contract, float_bounds

if TYPE_CHECKING:  # results and golden import this module's users
    from deploytool.checking.golden import GoldenSetPlan
    from deploytool.results import ArtifactCheck

SEEDED, DATA, PERTURBED, EDGE = "seeded", "data", "perturbed", "edge"
FAMILIES = (SEEDED, DATA, PERTURBED, EDGE)
OPTIONAL = (PERTURBED, EDGE)  # what export --families adds (seeded and data exist wherever their sets do)
EDGE_MAX = "edge_max"
PERTURBED_SEED_OFFSET = 2000  # never a golden (seed, seed + 1) nor the calibration seed (seed + 1000)
EDGE_MAX_SEED_OFFSET = 3000
PERTURBED_SAMPLES = 16
EDGE_MAX_SAMPLES = 2
EDGE_MAX_ELEMENTS = 1 << 22  # a sample of the edge_max set stays under this many elements per input (the batch cut)
UNGATED_BY_DEFAULT = {EDGE: "accuracy_gated"}  # family -> the tiers (Tier attribute) it does not gate by default
PERTURBATIONS = ("scale", "noise", "contrast", "flip")
# the edge set's samples, in order: zero where it lies in the range and is neither end of it, else the range's
# midpoint (zero in [0, 1) or [0, V) is the low end: the next sample); the low end; the high end (the largest value
# below HIGH: ranges are [LOW, HIGH))
EDGE_VALUES = ("zero", "low", "high")
INT_SWAP = 0.1  # the share of an integer input's values (token ids, indices) a perturbed sample redraws in range


def parse(text: str | list[str] | None, option: str = "--families") -> list[str]:
    """``edge,perturbed`` / ``all`` / ``none`` / a list -> the families asked for, in FAMILIES order.
    ``--families`` takes the optional families (OPTIONAL); ``--gate-families`` only those a tier does not gate by
    default (UNGATED_BY_DEFAULT: ``edge``), ``all`` meaning those: every other family gates on every tier already,
    and naming it there would make tensors gate that the int8 tier judges on task accuracy. ValueError naming the
    option, the names it does not take and what it takes."""
    if text is None:
        return []
    items = text if isinstance(text, list | tuple) else [text]
    names = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    known = OPTIONAL if option == "--families" else tuple(f for f in FAMILIES if f in UNGATED_BY_DEFAULT)
    takes = f"it takes {', '.join(known)}, all, none"
    other = [n for n in names if n in FAMILIES and n not in known]
    if other:  # a family, but not one this option takes: say why
        why = ("the seeded and data families need no asking: their sets are there wherever the model has them"
               if option == "--families" else
               "the families a tier only reports; every other family is judged by its tier's own rule already")
        raise ValueError(f"{option}: not {', '.join(other)} ({takes}: {why})")
    unknown = [n for n in names if n not in (*known, "all", "none")]
    if unknown:
        raise ValueError(f"{option}: unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                         f"({takes})")
    if "all" in names:
        return list(known)
    return [] if "none" in names else [f for f in known if f in names]


def family_of(name: str, family: str | None = None) -> str:
    """A set's family: the one recorded, else by its name (bundles made before families)."""
    if family:
        return family
    if name == EDGE_MAX:
        return EDGE
    # the raw samples validate --pipeline preprocessed (commands/pipeline.py) are the user's data
    return {"alt": SEEDED, "labelled": DATA, "data": DATA, "pipeline": DATA, "pipeline_deployed": DATA,
            PERTURBED: PERTURBED, EDGE: EDGE}.get(name, SEEDED)


def plan(contract: Contract, families: list[str], seed: int, main: GoldenSetPlan, data: GoldenSetPlan | None,
         plan_type: type) -> list[GoldenSetPlan]:
    """The family sets asked for (``families``), after the sets ``golden.plan_sets`` already named: ``main``
    and the data set they perturb (``data``: the labelled set, else ``main`` when it is the source's own data)."""
    out = []
    if PERTURBED in families:
        base = data or main
        p = plan_type(PERTURBED, PERTURBED_SAMPLES, seed + PERTURBED_SEED_OFFSET, dict(base.dims),
                      "golden/inputs_perturbed.npz", "golden/reference_perturbed.npz", PERTURBED)
        p.family, p.base = PERTURBED, base.name
        ints = any(s.dtype in INT_DTYPES and s.range is not None for s in contract.inputs)
        p.note = (f"the {base.name} set ({base.family}) perturbed: {', '.join(_kinds(contract))}, clipped to the range"
                  + (f"; {INT_SWAP:.0%} of integer values redrawn in range" if ints else ""))
        out.append(p)
    if EDGE in families:
        p = plan_type(EDGE, len(EDGE_VALUES), seed, dict(main.dims), "golden/inputs_edge.npz",
                      "golden/reference_edge.npz", EDGE)
        p.family, p.note = EDGE, edge_note(contract)
        out.append(p)
        if contract.dynamic_dims():
            dims, note = max_dims(contract)
            p = plan_type(EDGE_MAX, EDGE_MAX_SAMPLES, seed + EDGE_MAX_SEED_OFFSET, dims,
                          "golden/inputs_edge_max.npz", "golden/reference_edge_max.npz", "seeded")
            p.family, p.note = EDGE, note
            out.append(p)
    return out


def max_dims(contract: Contract) -> tuple[dict[str, int], str]:
    """The largest declared size of each dynamic dim (its ``max``; its ``alt`` size where none is declared), the
    batch cut so a sample stays under EDGE_MAX_ELEMENTS elements per input; and a note saying what was taken."""
    sizes = contract.dim_sizes("alt")
    taken, missing = [], []
    for name in contract.dynamic_dims():
        spec = contract.dims[name]
        if spec.get("max") is not None:
            sizes[name] = int(spec["max"])
            taken.append(f"{name}={sizes[name]}")
        else:
            missing.append(f"{name}={sizes[name]}")
    notes = [f"largest declared dims {', '.join(taken)}"] if taken else []
    if missing:
        notes.append(f"no maximum declared for {', '.join(missing)}: the alt size is used")
    if "batch" in sizes and "batch" not in contract.fixed_dims:
        largest = max(int(np.prod(s.concrete_shape(sizes))) for s in contract.inputs)
        if largest > EDGE_MAX_ELEMENTS:
            per_row = max(1, largest // max(sizes["batch"], 1))
            cut = max(1, EDGE_MAX_ELEMENTS // per_row)
            notes.append(f"batch cut from {sizes['batch']} to {cut} (at most {EDGE_MAX_ELEMENTS} elements per input)")
            sizes["batch"] = cut
    return sizes, "; ".join(notes)


def _bounds(spec) -> tuple[float, float, str]:
    """(least, largest, where from) of the values an input takes, both inside: its declared range [LOW, HIGH)
    (integers: LOW and HIGH - 1; floats: LOW and the largest value of the dtype below HIGH), else [-1, 1) for a
    float and [0, 2) for an integer, as the seeded generator draws."""
    if spec.dtype == "bool":
        return 0, 1, "bool"
    where = "range" if spec.range is not None else "no range"
    if spec.dtype in INT_DTYPES:
        lo, hi = spec.range if spec.range is not None else (0, 2)
        return int(lo), int(hi) - 1, where
    lo, hi = spec.range if spec.range is not None else (-1.0, 1.0)
    low, top = float_bounds(lo, hi, spec.dtype)
    return float(low), float(top), where


def _edge_zero(spec) -> tuple[float, str]:
    """The edge set's first value for an input, and why it is not zero ("" where it is)."""
    lo, top, _ = _bounds(spec)
    if lo < 0 < top:
        return 0, ""
    if spec.dtype in INT_DTYPES or spec.dtype == "bool":
        middle = (lo + top) // 2
    else:
        hi = spec.range[1] if spec.range is not None else 1.0
        middle = float(np.asarray((lo + hi) / 2, spec.dtype))
    if middle == 0:
        return 0, ""
    why = "zero is outside it" if not lo <= 0 <= top else \
        "zero is its low end, which the next sample takes" if lo == 0 else \
        "zero is its largest value, which the last sample takes"
    return middle, why


def edge_note(contract: Contract) -> str:
    """The edge set's note: what its three samples hold, and which inputs take their midpoint in place of zero."""
    note = ("every input at zero, at its range's low end, at its high end (ranges are [LOW, HIGH): the largest "
            "value below HIGH, HIGH - 1 for an integer)")
    moved = []
    for spec in contract.inputs:
        value, why = _edge_zero(spec)
        if why:
            lo, hi = spec.range if spec.range is not None else ((0, 2) if spec.dtype in INT_DTYPES else (-1.0, 1.0))
            moved.append(f"{spec.name} at {value:g}, the midpoint of [{lo:g}, {hi:g}) ({why})")
    return note + (f"; in place of zero: {'; '.join(moved)}" if moved else "")


def edge_inputs(contract: Contract, samples: int, seed: int, dims: dict[str, int], name: str = EDGE
                ) -> dict[str, np.ndarray]:
    """The edge family's inputs: for ``edge`` (EDGE_VALUES), sample 0 at zero where zero lies in an input's range
    [LOW, HIGH) and is neither end of it, else at the range's midpoint (so that it repeats neither end: ``edge_note``
    names those), 1 at every range's low end, 2 at its high end (the largest value below HIGH); for ``edge_max``
    (the largest dims), seeded values in range."""
    from deploytool.core.contract import generate_inputs

    if name == EDGE_MAX:
        return generate_inputs(contract, samples, seed, dims)
    out = {}
    for spec in contract.inputs:
        shape = spec.concrete_shape(dims)
        lo, top, _ = _bounds(spec)
        values = [_edge_zero(spec)[0], lo, top][:samples]
        dtype = np.bool_ if spec.dtype == "bool" else np.dtype(spec.dtype)
        out[spec.name] = np.stack([np.full(shape, v, dtype=dtype) for v in values])
    return out


def finite_samples(inputs: dict[str, np.ndarray], refs: dict[str, np.ndarray]
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """The samples whose reference outputs are all finite (an edge value may take the source itself to NaN/Inf:
    nothing can be checked against it there), and how many were left out (all of them: the arrays are empty, and
    the set is skipped: ``after_writing``)."""
    keep = np.ones(len(next(iter(refs.values()))), bool)
    for a in refs.values():
        a = np.asarray(a)
        if a.dtype.kind in "fc" and a.size:
            keep &= np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if keep.all():
        return inputs, refs, 0
    return {k: v[keep] for k, v in inputs.items()}, {k: v[keep] for k, v in refs.items()}, int((~keep).sum())


def after_writing(plans: list[GoldenSetPlan], written: dict[str, int]) -> tuple[list[GoldenSetPlan], list[str]]:
    """The planned sets once the worker wrote them (``written``: set -> samples written). A family set whose samples
    the source took to NaN/Inf (``finite_samples``) says in its note how many were left out; one with none left is
    skipped (an optional family never fails the export), with a line saying why. -> (the sets kept, those lines)."""
    kept, skipped = [], []
    for p in plans:
        n = written.get(p.name, p.samples)
        if p.family in (EDGE, PERTURBED) and p.samples and n < p.samples:
            why = "the source model gives NaN/Inf there"
            if n == 0:
                skipped.append(f"the {p.name} set ({p.family} family) is skipped: the source model gives NaN/Inf on "
                               f"every one of its {p.samples} samples, so nothing can be checked against it")
                continue
            p.note = "; ".join(x for x in (p.note, f"{p.samples - n} of {p.samples} samples left out: {why}") if x)
        kept.append(p)
    return kept, skipped


def _image_axes(spec) -> tuple[int, int] | None:
    """(channel axis, width axis) of an image-like input per sample ([C,H,W] or [H,W,C] after the batch), else
    None."""
    if spec.dtype not in ("float16", "float32", "float64") or len(spec.shape) != 4:
        return None
    return (1, 3) if spec.layout == "NHWC" else (0, 2)  # per-sample axes: the batch is axis 0 of the sample


def _kinds(contract: Contract) -> list[str]:
    image = any(_image_axes(s) for s in contract.inputs)
    return list(PERTURBATIONS if image else PERTURBATIONS[:2])


def perturbed_inputs(contract: Contract, base: dict[str, np.ndarray], samples: int, seed: int
                     ) -> dict[str, np.ndarray]:
    """``samples`` perturbed copies of the base set's samples (in turn), perturbation ``i % kinds`` on sample i:
    ``scale`` (x * U[0.8, 1.2]), ``noise`` (+ N(0, 5% of the range's width)), ``contrast`` ((x - mean) *
    U[0.6, 1.4] + mean, image-like inputs), ``flip`` (the width axis reversed, image-like inputs) on float
    inputs, clipped to the declared range; an integer input with a range has INT_SWAP of its values redrawn in it
    (bool inputs and integers without a range keep the base's values). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    kinds = _kinds(contract)
    n = len(next(iter(base.values())))
    out: dict[str, list[np.ndarray]] = {s.name: [] for s in contract.inputs}
    for i in range(samples):
        kind = kinds[i % len(kinds)]
        for spec in contract.inputs:
            x = np.array(base[spec.name][i % n], copy=True)
            if spec.dtype in ("float16", "float32", "float64"):
                lo, hi, _ = _bounds(spec)
                width = (hi - lo) if spec.range is not None else float(np.ptp(x)) or 1.0
                image = _image_axes(spec)
                if kind == "scale":
                    x = x * rng.uniform(0.8, 1.2)
                elif kind == "noise":
                    x = x + rng.normal(0.0, 0.05 * width, size=x.shape)
                elif kind == "contrast" and image:
                    mean = x.mean()
                    x = (x - mean) * rng.uniform(0.6, 1.4) + mean
                elif kind == "flip" and image:
                    x = np.flip(x, axis=image[1] + 1)  # the sample keeps its batch axis (batch 1)
                if spec.range is not None:
                    x = np.clip(x, lo, hi)
                x = x.astype(spec.dtype)
            elif spec.dtype in INT_DTYPES and spec.range is not None and x.size:  # ids, tokens: some replaced
                lo, hi, _ = _bounds(spec)
                swap = rng.random(x.shape) < INT_SWAP
                x = np.where(swap, rng.integers(int(lo), int(hi) + 1, size=x.shape), x).astype(spec.dtype)
            out[spec.name].append(x)
    return {k: np.ascontiguousarray(np.stack(v)) for k, v in out.items()}


def failure_line(output: str, set_name: str, why: str) -> str:
    """A gating output's failure as the check's reason words it (``y: E`` on the main set, ``y (edge set): E``
    elsewhere); ``judge`` words a family's reason with the set always named, and says which failure line it
    repeats so that the check's reason gives it once."""
    return f"{output}{'' if set_name == 'main' else f' ({set_name} set)'}: {why}"


def judge(chk: ArtifactCheck, set_families: dict[str, str], ungated: set[str]) -> tuple[str, str]:
    """Each family's verdict on one target (``chk.families``), from its per-set verdicts (``chk.sets``) and the
    task accuracy (``chk.accuracy``, the ``data`` family's). ``ungated``: the families that do not gate this
    target (reported only). Returns ("families disagree: passes ...; fails FAMILY: <its first failure>", the
    check's failure line for that first failure: ``failure_line``, "" where it is task accuracy) when some
    families pass and others fail, else ("", "")."""
    verdicts: dict[str, dict] = {}
    cited: dict[str, str] = {}  # family -> its first failure as the check's failure line words it
    for set_name, per_out in chk.sets.items():
        fam = set_families.get(set_name) or family_of(set_name)
        v = verdicts.setdefault(fam, {"status": "pass", "sets": [], "reason": "", "gating": fam not in ungated})
        v["sets"].append(set_name)
        for output, verdict in per_out.items():
            counts = verdict.get("gating") or verdict.get("family_ungated")
            if counts and not verdict["passed"] and v["status"] == "pass":
                v["status"] = "fail"
                why = verdict.get("family_reason") or verdict.get("reason", "")
                v["reason"] = f"{output} ({set_name} set): {why}"
                cited[fam] = failure_line(output, set_name, why)
    acc = chk.accuracy
    if acc is not None and not acc.get("passed", True):
        fam = set_families.get(acc["set"]) or family_of(acc["set"])
        v = verdicts.setdefault(fam, {"status": "pass", "sets": [acc["set"]], "reason": "", "gating": True})
        if v["status"] == "pass":
            v["status"] = "fail"
            v["reason"] = (f"task accuracy on the {acc['set']} set {acc['accuracy']:.1%} vs the source's "
                           f"{acc['source_accuracy']:.1%}")
    chk.families = {f: verdicts[f] for f in sorted(verdicts, key=lambda f: FAMILIES.index(f) if f in FAMILIES
                                                    else len(FAMILIES))}
    passing = [f for f, v in chk.families.items() if v["status"] == "pass"]
    failing = [f for f, v in chk.families.items() if v["status"] == "fail"]
    if not passing or not failing:
        return "", ""
    first = chk.families[failing[0]]
    return (f"families disagree: passes {', '.join(passing)}; fails {', '.join(failing)}: {first['reason']}",
            cited.get(failing[0], ""))


def ungated_families(tier, gate: list[str] | None) -> set[str]:
    """The families that do not gate a target of ``tier`` (``parity.Tier``): ``edge`` on an accuracy-gated tier
    (int8), unless ``gate`` (``--gate-families``) names it."""
    asked = set(gate or [])
    return {f for f, attr in UNGATED_BY_DEFAULT.items() if getattr(tier, attr, False) and f not in asked}
