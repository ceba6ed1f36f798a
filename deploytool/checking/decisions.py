"""Decision parity: what a pipeline's ``postprocess`` decides on the source's outputs and on a target's, compared.

Pure numpy: no process, no file, no user code (the pipeline worker runs the user's functions and hands the
decisions here, ``running/worker.py``). A decision per sample is one of:

- ``class``: one class id (``postprocess`` returns an integer array [N]);
- ``labels``: a set of labels (a bool array [N, C]: the labels above a threshold);
- ``top-k``: the set of the k best classes (the built-in ``--operating-point top-k=K``; stored as labels);
- ``detections``: per sample an array [k, 6] of x1, y1, x2, y2, score, class (a list of N arrays), matched to
  the reference's by IoU >= ``IOU_MATCH`` with the same class.

A sample *flips* when its decision on the target differs from the source's. The reference's *margin* is how far
its score sits from the operating point (the built-in threshold: the smallest |p - threshold| over the classes;
top-k: the score gap between the k-th and the (k+1)-th class; a user's ``postprocess`` may return its own as
``{"decisions": ..., "margins": ...}``); the flips among samples whose margin is below the band are reported
apart, so a flip on a sample the reference itself decided by a hair is told from one that is a real error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

CLASS, LABELS, TOP_K, DETECTIONS = "class", "labels", "top-k", "detections"
KINDS = (CLASS, LABELS, TOP_K, DETECTIONS)
IOU_MATCH = 0.5
# The default band "near the operating point": a probability for a threshold, a score (logit) gap for top-k.
DEFAULT_BAND = {"threshold": 0.05, "top-k": 0.1}
FLIPPED_SHOWN = 10  # sample indices listed in the result


@dataclass
class OperatingPoint:
    """``threshold=0.5`` (softmax + threshold on the first classifier output), ``top-k=5`` (the k best classes);
    ``band``: what "near the operating point" means (default ``DEFAULT_BAND``)."""

    kind: str = "top-k"  # "threshold" or "top-k"
    value: float = 1.0
    band: float | None = None

    @property
    def near_band(self) -> float:
        return self.band if self.band is not None else DEFAULT_BAND[self.kind]

    def text(self) -> str:
        value = f"{self.value:g}" if self.kind == "threshold" else str(int(self.value))
        return f"{self.kind}={value}" + (f",band={self.band:g}" if self.band is not None else "")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "band": self.near_band}


def parse_operating_point(text: str) -> OperatingPoint:
    """``threshold=0.5``, ``top-k=5``, either with ``,band=X``; ValueError with one line otherwise."""
    op: OperatingPoint | None = None
    band = None
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        key = key.strip().lower().replace("_", "-")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--operating-point {text}: {part!r} is not KEY=NUMBER (threshold=0.5, top-k=5, "
                             "band=0.05)") from None
        if not sep or not np.isfinite(number):
            raise ValueError(f"--operating-point {text}: {part!r} is not KEY=NUMBER")
        if key == "threshold":
            if not 0.0 < number < 1.0:
                raise ValueError(f"--operating-point {text}: a threshold is a probability in (0, 1)")
            op = OperatingPoint("threshold", number)
        elif key in ("top-k", "topk", "k"):
            if number < 1 or number != int(number):
                raise ValueError(f"--operating-point {text}: top-k takes a whole number >= 1")
            op = OperatingPoint("top-k", float(int(number)))
        elif key == "band":
            if number < 0:
                raise ValueError(f"--operating-point {text}: band must be >= 0")
            band = number
        else:
            raise ValueError(f"--operating-point {text}: unknown key {key!r} (threshold, top-k, band)")
    if op is None:
        raise ValueError(f"--operating-point {text}: names no threshold=P or top-k=K")
    op.band = band
    return op


# ---- decisions ---------------------------------------------------------------------------------

@dataclass
class Decisions:
    """One run's decisions in a canonical form: ``values`` an int64 [N] (class), a bool [N, C] (labels, top-k) or
    a list of N float [k, 6] arrays (detections); ``margins`` float [N] or None."""

    kind: str
    values: Any
    margins: np.ndarray | None = None

    @property
    def samples(self) -> int:
        return len(self.values)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def builtin(scores: np.ndarray, op: OperatingPoint) -> Decisions:
    """The built-in postprocess on one classifier output [N, C]: softmax + threshold (labels above it) or top-k."""
    s = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    if op.kind == "threshold":
        p = _softmax(s)
        return Decisions(LABELS, p >= op.value, np.abs(p - op.value).min(axis=1))
    k = int(op.value)
    order = np.sort(s, axis=1)[:, ::-1]
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    chosen = np.zeros(s.shape, dtype=bool)
    np.put_along_axis(chosen, idx, True, axis=1)
    gap = order[:, k - 1] - order[:, k] if k < s.shape[1] else np.full(len(s), np.inf)
    if k == 1:
        return Decisions(CLASS, idx[:, 0].astype(np.int64), gap)
    return Decisions(TOP_K, chosen, gap)


def normalise(result: Any, samples: int, what: str) -> Decisions:
    """A user ``postprocess``'s return value as ``Decisions`` (ValueError naming what is wrong): an integer array
    [N] (a class per sample), a bool array [N, C] (labels), a list of N arrays [k, 6] (detections), or a dict
    ``{"decisions": one of these, "margins": [N] floats}``."""
    margins = None
    if isinstance(result, dict):
        if "decisions" not in result:
            raise ValueError(f"{what} returned a dict without a 'decisions' key (keys: {sorted(result)})")
        if result.get("margins") is not None:
            margins = np.asarray(result["margins"], dtype=np.float64).reshape(-1)
            if len(margins) != samples:
                raise ValueError(f"{what} returned {len(margins)} margins for {samples} samples")
        result = result["decisions"]
    if isinstance(result, (list, tuple)):
        boxes: list[np.ndarray] = []
        for i, d in enumerate(result):
            a = np.asarray(d, dtype=np.float64)
            if a.size == 0:
                a = a.reshape(0, 6)
            if a.ndim != 2 or a.shape[1] != 6:
                raise ValueError(f"{what}: detections of sample {i} have shape {list(a.shape)}, expected [k, 6] "
                                 "(x1, y1, x2, y2, score, class)")
            boxes.append(a)
        kind, values = DETECTIONS, boxes  # type: tuple[str, Any]
    else:
        a = np.asarray(result)
        if a.dtype == bool and a.ndim == 2:
            kind, values = LABELS, a
        elif a.dtype.kind in "iu" and a.ndim == 1:
            kind, values = CLASS, a.astype(np.int64)
        else:
            raise ValueError(f"{what} returned a {a.dtype} array of shape {list(a.shape)}: expected class ids "
                             "(integers [N]), labels (bool [N, C]) or detections (a list of N arrays [k, 6])")
    if len(values) != samples:
        raise ValueError(f"{what} returned decisions for {len(values)} samples, the inputs hold {samples}")
    return Decisions(kind, values, margins)


def encode(d: Decisions) -> dict[str, np.ndarray]:
    """``Decisions`` as .npz arrays (``decode`` reads them back)."""
    out: dict[str, np.ndarray] = {"kind": np.array(KINDS.index(d.kind))}
    if d.kind == DETECTIONS:
        out["boxes"] = np.concatenate(d.values) if d.values else np.zeros((0, 6))
        out["offsets"] = np.cumsum([0, *(len(b) for b in d.values)])
    else:
        out["values"] = np.asarray(d.values)
    if d.margins is not None:
        out["margins"] = np.asarray(d.margins, dtype=np.float64)
    return out


def decode(arrays: dict[str, np.ndarray]) -> Decisions:
    kind = KINDS[int(arrays["kind"])]
    if kind == DETECTIONS:
        off = arrays["offsets"]
        values: Any = [arrays["boxes"][off[i]:off[i + 1]] for i in range(len(off) - 1)]
    else:
        values = arrays["values"]
    return Decisions(kind, values, arrays.get("margins"))


# ---- comparing ---------------------------------------------------------------------------------

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [n, >=4] with every box of ``b`` [m, >=4] (x1, y1, x2, y2): [n, m]."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(ref: np.ndarray, got: np.ndarray) -> dict[str, int]:
    """Greedy matching, the reference's boxes by descending score: each takes the unmatched target box of the same
    class with the highest IoU >= ``IOU_MATCH``. A reference box left with only a same-class box overlapping it
    less is *moved* (that box is used up), with none *missing*; target boxes left over are *extra*."""
    counts = {"matched": 0, "missing": 0, "extra": 0, "moved": 0}
    used = np.zeros(len(got), dtype=bool)
    overlaps = iou(ref, got)
    for i in np.argsort(-ref[:, 4], kind="stable") if len(ref) else []:
        same = (got[:, 5] == ref[i, 5]) & ~used if len(got) else np.zeros(0, dtype=bool)
        cand = np.where(same, overlaps[i], -1.0) if len(got) else np.zeros(0)
        j = int(np.argmax(cand)) if len(cand) else -1
        if j >= 0 and cand[j] >= IOU_MATCH:
            counts["matched"] += 1
        elif j >= 0 and cand[j] > 0:
            counts["moved"] += 1
        else:
            counts["missing"] += 1
            continue
        used[j] = True
    counts["extra"] = int((~used).sum())
    return counts


def differs(ref: Decisions, got: Decisions) -> tuple[np.ndarray, dict[str, int]]:
    """Per sample, whether ``got`` decides otherwise than ``ref``; for detections also the totals matched,
    missing, extra and moved."""
    if ref.kind != got.kind and {ref.kind, got.kind} != {LABELS, TOP_K}:
        raise ValueError(f"postprocess returned {ref.kind} decisions on the reference and {got.kind} on the target")
    if ref.samples != got.samples:
        raise ValueError(f"{ref.samples} reference decisions, {got.samples} on the target")
    if ref.kind == DETECTIONS:
        totals = {"matched": 0, "missing": 0, "extra": 0, "moved": 0}
        flags = []
        for r, g in zip(ref.values, got.values):
            c = match_detections(r, g)
            flags.append(c["missing"] + c["extra"] + c["moved"] > 0)
            for k in totals:
                totals[k] += c[k]
        return np.array(flags, dtype=bool), totals
    a, b = np.asarray(ref.values), np.asarray(got.values)
    if a.shape != b.shape:
        raise ValueError(f"decisions of shape {list(a.shape)} on the reference, {list(b.shape)} on the target")
    return (a != b).reshape(len(a), -1).any(axis=1), {}


def margin_stats(margins: np.ndarray | None) -> dict[str, float] | None:
    """The reference's margins to the operating point: min, p5, median (finite ones; None without margins)."""
    if margins is None:
        return None
    m = np.asarray(margins, dtype=np.float64)
    m = m[np.isfinite(m)]
    if not m.size:
        return None
    return {"min": float(m.min()), "p5": float(np.percentile(m, 5)), "median": float(np.median(m))}


def compare(ref: Decisions, got: Decisions, band: float | None) -> dict:
    """Decision agreement of one run with the reference's: samples, kind, flips, flip_rate, the first flipped
    samples, near-operating-point flips (reference margin < ``band``), the margin distribution, detections'
    totals."""
    flags, totals = differs(ref, got)
    n = len(flags)
    out: dict = {"samples": n, "kind": ref.kind, "flips": int(flags.sum()),
                 "flip_rate": float(flags.mean()) if n else 0.0,
                 "flipped": [int(i) for i in np.flatnonzero(flags)[:FLIPPED_SHOWN]]}
    if totals:
        out["detections"] = totals
    if ref.margins is not None and band is not None:
        near = np.asarray(ref.margins) < band
        near_flips = int((flags & near).sum())
        out["near"] = {"band": band, "samples": int(near.sum()), "flips": near_flips,
                       "flip_rate": near_flips / int(near.sum()) if near.any() else 0.0,
                       "far_flips": int((flags & ~near).sum())}
    out["margins"] = margin_stats(ref.margins)
    return out


# ---- the gate ----------------------------------------------------------------------------------

@dataclass
class Gate:
    """``--max-decision-flips``: a fraction of the samples (``0.02``, ``2%``) or a count (``3samples``)."""

    fraction: float | None = None
    count: int | None = None

    def text(self) -> str:
        if self.count is not None:
            return f"{self.count} sample(s)"
        return f"{100 * (self.fraction or 0):.4g}% of the samples"

    def allows(self, flips: int, samples: int) -> bool:
        if self.count is not None:
            return flips <= self.count
        return flips <= (self.fraction or 0.0) * samples + 1e-9

    def to_dict(self) -> dict:
        return {"fraction": self.fraction} if self.count is None else {"count": self.count}


_COUNT = re.compile(r"^\s*(\d+)\s*samples?\s*$", re.IGNORECASE)


def parse_gate(text: str) -> Gate:
    """``0.02`` or ``2%``: a fraction of the samples; ``3samples``: a count; ValueError otherwise."""
    s = str(text).strip()
    m = _COUNT.match(s)
    if m:
        return Gate(count=int(m.group(1)))
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"--max-decision-flips {text}: expected a fraction (0.02), a percentage (2%) or a count "
                         "(3samples)") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--max-decision-flips {text}: a fraction of the samples is in [0, 1] (a count is "
                         "written 3samples)")
    return Gate(fraction=value)


def summary_text(result: dict) -> str:
    """``2/449 decisions differ (0.45%), 2 near the operating point``: one phrase for reasons and notes."""
    text = f"{result['flips']}/{result['samples']} decisions differ ({result['flip_rate']:.2%})"
    near = result.get("near")
    if near and result["flips"]:
        text += f", {near['flips']} of them near the operating point (reference margin < {near['band']:g})"
    det = result.get("detections")
    if det and result["flips"]:
        text += f" (detections: {det['missing']} missing, {det['extra']} extra, {det['moved']} moved)"
    return text
