"""Pure numpy: parity metrics between a candidate and a reference output, and verdicts by tier.

Verdict rule for elementwise tiers is numpy's ``|a - b| <= atol + rtol * |b|`` (b = reference).
Reduced-precision tiers (fp16, int8) are gated on cosine similarity, SQNR and top-1 agreement,
because elementwise tolerances are the wrong lens for quantisation noise. Every result also
carries the smallest atol (at the tier's rtol) and the smallest rtol (at its atol) that would
have passed, as Polygraphy prints.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

REL_FLOOR = 1e-6  # |b| below this counts as this in relative errors (avoid dividing by ~0)


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
    "fp16": Tier("fp16", "statistical", atol=1e-2, rtol=1e-2, min_cosine=0.999, min_sqnr_db=30.0, min_top1=0.9),
    "int8": Tier("int8", "statistical", atol=1e-1, rtol=1e-1, min_cosine=0.98, min_sqnr_db=15.0, min_top1=0.8,
                 max_accuracy_drop=1.0, accuracy_gated=True),
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

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass
class Verdict:
    passed: bool
    reason: str
    metrics: Metrics
    tier: Tier

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "tier": self.tier.to_dict(),
                "metrics": self.metrics.to_dict()}


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
    )


def judge(m: Metrics, tier: Tier) -> Verdict:
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


def overrides_for(overrides: dict, fmt: str, output: str) -> dict[str, float]:
    """The override values that apply to one output of one format: keys "FMT:OUTPUT", "FMT:*",
    "*:OUTPUT", "*:*" (most specific wins, per field)."""
    values: dict[str, float] = {}
    for key in ("*:*", f"*:{output}", f"{fmt}:*", f"{fmt}:{output}"):
        values.update(overrides.get(key, {}))
    return values


def tier_for(base: Tier, overrides: dict, fmt: str, output: str) -> Tier:
    """Apply user tolerances (``overrides_for``) to a tier."""
    values = overrides_for(overrides, fmt, output)
    return base.with_overrides(values.get("atol"), values.get("rtol"))


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
    """"1e-3" | "onnx=1e-3" | "onnx:logits=1e-3" | "*:logits=1e-3" -> ("FMT:OUTPUT", value)."""
    target, number = _target_value(spec, f"--{field_name}")
    fmt, _, output = target.partition(":")
    return f"{fmt or '*'}:{output or '*'}", number


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
            if name not in ("atol", "rtol"):
                raise ValueError(f"{what}: {key!r} has {name!r}; only atol and rtol can be set")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"{what}: {key} {name} = {value!r}: must be a finite number >= 0")
    return overrides


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


def check(actual: np.ndarray, expected: np.ndarray, tier: Tier, classifier: bool = False) -> Verdict:
    return judge(compare(actual, expected, tier, classifier), tier)
