"""Pure numpy: parity metrics between a candidate and a reference output, and verdicts by tier.

Verdict rule for elementwise tiers is numpy's ``|a - b| <= atol + rtol * |b|`` (b = reference).
Reduced-precision tiers (fp16, int8) are gated on cosine similarity, SQNR and top-1 agreement,
because elementwise tolerances are the wrong lens for quantisation noise; a reference below the
tier's resolution (``Tier.resolution``: what the precision cannot represent) is judged on absolute
error against it instead, since cosine/SQNR of vectors the precision flushed to zero are undefined.
``variation`` says whether a reference varies with the input at all (for the reason line; whether a check
proves anything is decided by informative.py: would an artifact returning zeros, the mean or another
sample's reference pass it too?). Every result also carries the smallest atol (at the tier's rtol) and
the smallest rtol (at its atol) that would have passed, as Polygraphy prints.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import numpy as np

REL_FLOOR = 1e-6  # |b| below this counts as this in relative errors (avoid dividing by ~0)
# Magnitudes a reduced precision cannot represent (Tier.resolution). fp16: its smallest normal number;
# below it fp16 holds subnormals in steps of 6e-8, or flushes to zero. int8: a tensor's step is relative to
# its calibrated range, but the fixed-point rescaling of int8 kernels flushes tiny tensors (TFLite full-integer
# returns zeros for outputs ~1e-30, measured), so the same floor applies, raised by an integer output's own
# quantization step where the artifact's contract records it (judge.py).
FP16_NORMAL_MIN = float(np.finfo(np.float16).tiny)  # 6.10e-05
INT8_RESOLUTION = FP16_NORMAL_MIN


@dataclass(frozen=True)
class Tier:
    name: str
    gate: str  # "elementwise" or "statistical"
    atol: float
    rtol: float
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    min_top1: float | None = None
    # With labelled data: the largest drop in task accuracy (points) from the source's; for a tier that
    # is ``accuracy_gated``, that gate replaces the tensor metrics' (which are still reported).
    max_accuracy_drop: float | None = None
    accuracy_gated: bool = False
    # A statistical tier's resolution: a reference whose largest magnitude is below it is judged by absolute
    # error against it (``|a-b| <= resolution``), since the precision cannot represent it and cosine/SQNR of
    # vectors it flushed to zero say nothing. An artifact's own output quantization step raises it (judge.py).
    resolution: float | None = None


    def with_overrides(self, atol: float | None = None, rtol: float | None = None) -> Tier:
        # An explicit atol/rtol turns the check elementwise: that is what the user asked for.
        if atol is None and rtol is None:
            return self
        return replace(self, gate="elementwise", atol=self.atol if atol is None else atol,
                       rtol=self.rtol if rtol is None else rtol)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


TIERS = {
    "exact": Tier("exact", "elementwise", atol=1e-6, rtol=1e-6),
    "fp32": Tier("fp32", "elementwise", atol=1e-4, rtol=1e-4),
    "fp16": Tier("fp16", "statistical", atol=1e-2, rtol=1e-2, min_cosine=0.999, min_sqnr_db=30.0, min_top1=0.9,
                 resolution=FP16_NORMAL_MIN),
    # fp16 arithmetic (accumulating in fp16): rounding at every op, ~3 decimal digits carried through the net
    "fp16_arith": Tier("fp16_arith", "statistical", atol=2e-2, rtol=2e-2, min_cosine=0.998, min_sqnr_db=25.0,
                       min_top1=0.9, resolution=FP16_NORMAL_MIN),
    "int8": Tier("int8", "statistical", atol=1e-1, rtol=1e-1, min_cosine=0.98, min_sqnr_db=15.0, min_top1=0.8,
                 max_accuracy_drop=1.0, accuracy_gated=True, resolution=INT8_RESOLUTION),
}


@dataclass
class Metrics:
    shape_ok: bool
    max_abs: float
    max_rel: float
    mean_abs: float
    rmse: float
    cosine: float
    sqnr_db: float
    frac_out_of_tol: float
    nonfinite_new: int  # NaN/Inf in candidate where the reference is finite
    min_atol: float  # smallest atol that passes at the tier's rtol
    min_rtol: float  # smallest rtol that passes at the tier's atol
    top1_agreement: float | None
    worst_sample: int
    worst_index: list
    nonfinite_ref: int = 0  # NaN/Inf in the reference itself: nothing to compare against there
    ref_max_abs: float = 0.0  # the reference's largest finite magnitude (below the tier's resolution: tiny)

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass
class Verdict:
    passed: bool
    reason: str
    metrics: Metrics
    tier: Tier
    # "absolute": a statistical tier's reference was below its resolution, so the verdict is on absolute error
    basis: str = ""
    floor: float = 0.0  # the resolution the absolute error was held to (basis "absolute")

    @property
    def judged_on(self) -> str:
        """What this verdict was decided on, in a phrase that holds whether it passed or failed: the basis a
        report prints (``judge.py`` joins an artifact's outputs' into ``ArtifactCheck.basis``)."""
        tier = self.tier
        if self.basis == "absolute":
            return f"absolute error (max {self.floor:.2g}: reference below the {tier.name} resolution)"
        if self.basis == "float64 oracle":  # checking/oracle.py
            return "error against the float64 oracle, relative to the fp32 reference's own (fp32 tier)"
        if tier.gate == "elementwise":
            whose = f"{tier.name} tier" if TIERS.get(tier.name) == tier else "override"
            return f"elementwise atol/rtol ({whose})"
        top1 = "/top-1" if tier.min_top1 is not None and self.metrics.top1_agreement is not None else ""
        return f"cosine/SQNR{top1} ({tier.name} tier)"

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "tier": self.tier.to_dict(),
                "metrics": self.metrics.to_dict(), "basis": self.basis or self.tier.gate}


def _f(x) -> float:
    return float(x)


def compare(actual: np.ndarray, expected: np.ndarray, tier: Tier, classifier: bool = False) -> Metrics:
    """Metrics over all samples; arrays are [samples, ...] in the reference's layout."""
    if actual.shape != expected.shape:
        nan = float("nan")
        return Metrics(False, nan, nan, nan, nan, nan, nan, 1.0, 0, nan, nan, None, 0, [])
    a = actual.astype(np.float64)
    b = expected.astype(np.float64)
    finite_ref = np.isfinite(b)
    nonfinite_new = int(np.sum(~np.isfinite(a) & finite_ref))
    both = finite_ref & np.isfinite(a)
    diff = np.where(both, np.abs(a - b), np.where(finite_ref, np.inf, 0.0))
    absb = np.abs(np.where(finite_ref, b, 0.0))
    rel = diff / np.maximum(absb, REL_FLOOR)
    allowed = tier.atol + tier.rtol * absb
    out_of_tol = diff > allowed
    n = max(diff.size, 1)
    a_f, b_f = np.where(both, a, 0.0).ravel(), np.where(both, b, 0.0).ravel()
    err = a_f - b_f
    na, nb, ne = np.linalg.norm(a_f), np.linalg.norm(b_f), np.linalg.norm(err)
    if na == 0 and nb == 0:
        cosine = 1.0
    elif na == 0 or nb == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(a_f, b_f) / (na * nb))
    sqnr = float("inf") if ne == 0 else (20 * math.log10(nb / ne) if nb > 0 else float("-inf"))
    top1 = None
    if classifier and a.ndim >= 2 and a.shape[-1] > 1:
        top1 = _f(np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))
    flat = int(np.argmax(diff)) if diff.size else 0
    worst = [int(i) for i in np.unravel_index(flat, diff.shape)] if diff.size else []
    finite_diff = diff[np.isfinite(diff)]
    return Metrics(
        shape_ok=True,
        max_abs=_f(diff.max()) if diff.size else 0.0,
        max_rel=_f(rel.max()) if rel.size else 0.0,
        mean_abs=_f(finite_diff.mean()) if finite_diff.size else 0.0,
        rmse=_f(math.sqrt(np.mean(np.square(finite_diff)))) if finite_diff.size else 0.0,
        cosine=cosine,
        sqnr_db=sqnr,
        frac_out_of_tol=_f(out_of_tol.sum() / n),
        nonfinite_new=nonfinite_new,
        min_atol=_f(np.max(np.maximum(diff - tier.rtol * absb, 0.0))) if diff.size else 0.0,
        min_rtol=_f(np.max(np.maximum(diff - tier.atol, 0.0) / np.maximum(absb, REL_FLOOR))) if diff.size else 0.0,
        top1_agreement=top1,
        worst_sample=worst[0] if worst else 0,
        worst_index=worst,
        nonfinite_ref=int(np.sum(~finite_ref)),
        ref_max_abs=_f(absb.max()) if absb.size else 0.0,
    )


def resolution_floor(tier: Tier, resolution: float | None = None) -> float:
    """The magnitude below which a statistical tier judges on absolute error: its own resolution, or the
    artifact's (an integer output's quantization step) when larger; 0 for an elementwise tier."""
    if tier.gate != "statistical":
        return 0.0
    return max(tier.resolution or 0.0, resolution or 0.0)


def judge(m: Metrics, tier: Tier, resolution: float | None = None) -> Verdict:
    """``resolution``: the artifact's own (its output's quantization step) when larger than the tier's."""
    if not m.shape_ok:
        return Verdict(False, "shape differs from the reference", m, tier)
    if m.nonfinite_ref:  # never a silent pass: those elements would be compared against nothing
        return Verdict(False, f"the reference holds {m.nonfinite_ref} NaN/Inf values; nothing to compare "
                              "against there", m, tier)
    if m.nonfinite_new:
        return Verdict(False, f"{m.nonfinite_new} NaN/Inf values where the reference is finite", m, tier)
    if tier.gate == "elementwise":
        if m.frac_out_of_tol > 0:
            return Verdict(False, f"{m.frac_out_of_tol:.2%} of elements outside atol={tier.atol:g} rtol={tier.rtol:g} "
                                  f"(max abs {m.max_abs:.3g}; would pass at atol={m.min_atol:.3g})", m, tier)
        return Verdict(True, "within tolerance", m, tier)
    floor = resolution_floor(tier, resolution)
    if floor and m.ref_max_abs < floor:  # cosine/SQNR of what the precision flushed are undefined here
        what = f"reference below the {tier.name} resolution (max |ref| {m.ref_max_abs:.3g} < {floor:.3g}): judged " \
               f"on absolute error"
        if m.max_abs <= floor:
            return Verdict(True, f"{what}, max abs {m.max_abs:.3g} <= {floor:.3g}", m, tier, "absolute", floor)
        return Verdict(False, f"{what}: max abs {m.max_abs:.3g} > {floor:.3g}", m, tier, "absolute", floor)
    problems = []
    if tier.min_cosine is not None and m.cosine < tier.min_cosine:
        problems.append(f"cosine {m.cosine:.6f} < {tier.min_cosine}")
    if tier.min_sqnr_db is not None and m.sqnr_db < tier.min_sqnr_db:
        problems.append(f"SQNR {m.sqnr_db:.1f} dB < {tier.min_sqnr_db} dB")
    if tier.min_top1 is not None and m.top1_agreement is not None and m.top1_agreement < tier.min_top1:
        problems.append(f"top-1 agreement {m.top1_agreement:.3f} < {tier.min_top1}")
    if problems:
        return Verdict(False, "; ".join(problems), m, tier)
    return Verdict(True, "cosine/SQNR/top-1 within tier", m, tier)


def _target_value(spec: str, option: str, unit: str = "") -> tuple[str, float]:
    """``[TARGET=]VALUE`` -> (TARGET, VALUE); the value finite and >= 0 (a NaN limit passes everything)."""
    target, _, value = spec.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{option} {spec!r}: {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{option} {spec!r}: must be a finite number{unit} >= 0")
    return target, number


def parse_tolerance(spec: str, field_name: str) -> tuple[str, float]:
    """"1e-3" | "onnx=1e-3" | "onnx:logits=1e-3" | "onnx@openvino=1e-3" | "*:logits=1e-3" -> ("FMT:OUTPUT", value)
    (FMT a format, or a target FORMAT@RUNTIME)."""
    target, number = _target_value(spec, f"--{field_name}")
    fmt, _, output = target.partition(":")
    return f"{fmt or '*'}:{output or '*'}", number


TOLERANCE_FIELDS = ("atol", "rtol")


def check_overrides(overrides: object, what: str) -> dict[str, dict[str, float]]:
    """Tolerance overrides from anywhere (command line, config, API, a bundle's manifest): keys
    "FMT:OUTPUT" (either may be "*"), values {"atol"|"rtol": finite number >= 0}. A NaN tolerance
    would pass everything, so it is refused with the rest."""
    if not isinstance(overrides, dict):
        raise ValueError(f"{what}: tolerances must be a table, got {type(overrides).__name__}")
    for key, values in overrides.items():
        if not isinstance(key, str) or key.count(":") != 1 or not all(key.split(":")):
            raise ValueError(f"{what}: tolerance target {key!r} is not FMT:OUTPUT")
        if not isinstance(values, dict) or not values:
            raise ValueError(f"{what}: tolerances for {key!r} must be a table of atol/rtol")
        for name, value in values.items():
            if name not in TOLERANCE_FIELDS:
                raise ValueError(f"{what}: {key!r} has {name!r}; only atol and rtol can be set")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"{what}: {key} {name} = {value!r}: must be a finite number >= 0")
    return overrides


@dataclass(frozen=True, init=False)
class Tolerances:
    """The user's overrides of the parity tiers: per key "FMT:OUTPUT" (FMT a format, a target key such as
    ``onnx@openvino``, or "*"; OUTPUT an output name or "*"), {"atol"|"rtol": value}. Built from the command
    line (``from_specs``) or a stored / API table (``from_dict``), both checked here (``check_overrides``);
    ``to_dict`` is the plain table the manifest, validation.json and repro.json hold. Empty: the tiers as
    they are."""

    values: dict[str, dict[str, float]]

    def __init__(self, values: dict[str, dict[str, float]] | None = None) -> None:
        # a copy: a caller's table changed later does not change these
        object.__setattr__(self, "values", {k: dict(v) for k, v in (values or {}).items()})

    @classmethod
    def from_dict(cls, data: object, what: str = "tolerances") -> Tolerances:
        """A table as the manifest and the API hold it (ValueError naming ``what`` when malformed)."""
        if isinstance(data, Tolerances):
            return data
        if data is None:
            return cls()
        return cls(check_overrides(data, what))

    @classmethod
    def from_specs(cls, atol: Iterable[str] = (), rtol: Iterable[str] = ()) -> Tolerances:
        """``--atol`` / ``--rtol`` values, ``[FMT[:OUTPUT]=]VALUE`` (``parse_tolerance``; ValueError)."""
        values: dict[str, dict[str, float]] = {}
        for field_name, specs in (("atol", atol), ("rtol", rtol)):
            for spec in specs:
                key, value = parse_tolerance(spec, field_name)
                values.setdefault(key, {})[field_name] = value
        return cls(values)

    def for_output(self, fmt: str, output: str, target: str | None = None) -> dict[str, float]:
        """The override values that apply to one output of one format (on one target, ``onnx@openvino``):
        keys "TARGET:OUTPUT", "TARGET:*", "FMT:OUTPUT", "FMT:*", "*:OUTPUT", "*:*" (most specific wins,
        per field)."""
        values: dict[str, float] = {}
        keys = ["*:*", f"*:{output}", f"{fmt}:*", f"{fmt}:{output}"]
        if target is not None and target != fmt:
            keys += [f"{target}:*", f"{target}:{output}"]
        for key in keys:
            values.update(self.values.get(key, {}))
        return values

    def tier(self, base: Tier, fmt: str, output: str, target: str | None = None) -> Tier:
        """``base`` with the overrides that apply to this output (``for_output``)."""
        values = self.for_output(fmt, output, target)
        return base.with_overrides(values.get("atol"), values.get("rtol"))

    def merged(self, other: Tolerances) -> Tolerances:
        """These overrides with ``other``'s on top: per key and field, ``other`` wins (a more specific key
        of either still wins over a less specific one, in ``for_output``)."""
        values = {k: dict(v) for k, v in self.values.items()}
        for key, fields in other.values.items():
            values.setdefault(key, {}).update(fields)
        return Tolerances(values)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {k: dict(v) for k, v in self.values.items()}

    def describe(self) -> str:
        """``onnx:* atol=0.001, *:logits rtol=0.01``: for a note."""
        return ", ".join(f"{k} {n}={v:g}" for k, fields in self.values.items() for n, v in fields.items())

    def __bool__(self) -> bool:
        return bool(self.values)

    def __len__(self) -> int:
        return len(self.values)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of [samples, (1,) classes] outputs against one label per sample."""
    pred = np.argmax(np.asarray(logits).reshape(len(labels), -1), axis=-1)
    return float(np.mean(pred == labels)) if len(labels) else 0.0


def top1_agreement(actual: np.ndarray, expected: np.ndarray) -> float:
    a = np.argmax(np.asarray(actual).reshape(len(actual), -1), axis=-1)
    b = np.argmax(np.asarray(expected).reshape(len(expected), -1), axis=-1)
    return float(np.mean(a == b)) if len(a) else 0.0


def parse_drop(spec: str) -> tuple[str, float]:
    """"1.5" | "tflite_int8=1.5" -> (format or "*", points)."""
    target, number = _target_value(spec, "--max-accuracy-drop", " of points")
    return target or "*", number


def check_drops(drops: object, what: str) -> dict[str, float]:
    """Accuracy gates from anywhere (command line, API): {format or "*": finite points >= 0}."""
    if not isinstance(drops, dict):
        raise ValueError(f"{what}: must be a table of format -> points")
    for key, value in drops.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{what}: {key} = {value!r}: must be a finite number of points >= 0")
    return drops


def check(actual: np.ndarray, expected: np.ndarray, tier: Tier, classifier: bool = False,
          resolution: float | None = None) -> Verdict:
    return judge(compare(actual, expected, tier, classifier), tier, resolution)



# ---- the reference itself: does it vary with the input? ---------------------------------------

NOISE_ULPS = 16  # float outputs: differences within this many ulps of their magnitude are rounding noise


@dataclass(frozen=True)
class Variation:
    """Whether a reference output varies with the input across a set's golden samples.

    ``status``: "varies"; "constant" (no element differs between samples beyond float noise: a
    comparison against it passes any artifact that outputs that constant); "zero" (every element
    exactly zero); "nonfinite" (no finite element); "one_sample" (one sample: cannot tell; a float
    output all zero is still "zero"); "empty" (no elements). ``vacuous``: a check against it proves
    nothing."""

    status: str
    samples: int
    magnitude: float  # largest finite |value|
    spread: float  # largest difference of one element between two samples

    @property
    def vacuous(self) -> bool:
        return self.status in ("constant", "zero", "nonfinite")

    def describe(self, output: str, set_name: str) -> str:
        where = f"the {self.samples} {set_name} golden sample{'s' if self.samples != 1 else ''}"
        if self.status == "zero":
            return f"reference output {output!r} is all zero on {where}"
        if self.status == "nonfinite":
            return f"reference output {output!r} holds no finite value on {where}"
        if self.status == "constant":
            differs = "no element differs" if self.spread == 0 else \
                f"largest difference {self.spread:.3g} is float noise"
            return f"reference output {output!r} is the same on {where} (max |value| {self.magnitude:.3g}; {differs})"
        if self.status == "one_sample":
            return f"whether reference output {output!r} varies with the input cannot be told from {where}"
        return f"reference output {output!r} varies across {where}"

    def to_dict(self) -> dict:
        return {**asdict(self), "vacuous": self.vacuous}


def variation(reference: np.ndarray) -> Variation:
    """How a reference output [samples, ...] varies across its samples. "Varies" means the tensor as a
    whole differs between samples beyond float noise relative to its magnitude (``NOISE_ULPS`` ulps of
    its dtype at its largest |value|); some elements may stay constant. Integers and bools vary when any
    element differs. A tiny output (1e-30) that varies does vary: how small it may be is the tier's
    concern (``Tier.resolution``), not this check's."""
    a = np.asarray(reference)
    n = int(a.shape[0]) if a.ndim else 1
    if a.size == 0:
        return Variation("empty", n, 0.0, 0.0)
    is_float = a.dtype.kind in "fc"
    x = a.astype(np.float64) if a.dtype.kind != "c" else np.abs(a).astype(np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return Variation("nonfinite", n, float("nan"), float("nan"))
    magnitude = float(np.abs(x[finite]).max())
    if magnitude == 0 and (is_float or n > 1):
        return Variation("zero", n, 0.0, 0.0)
    if n < 2:
        return Variation("one_sample", n, magnitude, 0.0)
    # elements finite in every sample: NaN/Inf elsewhere are the parity check's concern (nonfinite_ref)
    both = finite.all(axis=0)
    rows = x.reshape(n, -1)[:, both.ravel()] if a.ndim > 1 else x[finite]
    spread = float((rows.max(axis=0) - rows.min(axis=0)).max()) if rows.size else 0.0
    noise = NOISE_ULPS * float(np.finfo(a.dtype).eps) * magnitude if is_float else 0.0
    return Variation("varies" if spread > noise else "constant", n, magnitude, spread)


def inputs_vary(inputs: dict[str, np.ndarray]) -> bool:
    """Whether any golden input differs between samples (identical inputs explain a constant output)."""
    for a in inputs.values():
        a = np.asarray(a)
        if a.ndim and a.shape[0] > 1 and not (a == a[:1]).all():
            return True
    return False


def input_ranges(inputs: dict[str, np.ndarray], limit: int = 3) -> str:
    """``x in [-0.998, 0.997], ids in [0, 1]``: what golden inputs covered, for a vacuous check's line."""
    parts = []
    for name, a in list(inputs.items())[:limit]:
        a = np.asarray(a)
        parts.append(f"{name} in [{a.min():.3g}, {a.max():.3g}]" if a.size else f"{name} empty")
    return ", ".join(parts) + (", ..." if len(inputs) > limit else "")
