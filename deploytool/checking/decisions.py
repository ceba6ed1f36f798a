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
    seen: list[str] = []
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
        if key in ("threshold", "top-k", "topk", "k"):
            seen.append("threshold" if key == "threshold" else "top-k")
            if len(seen) > 1:
                raise ValueError(f"--operating-point {text}: gives {' and '.join(seen)}; give one operating point "
                                 "(threshold=P or top-k=K)")
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


def _constant(constants: dict, name: str, file: str) -> float | None:
    """A pipeline file's ``THRESHOLD`` / ``TOP_K`` / ``NEAR_BAND`` as a finite real number; None where the file does
    not set it (or sets it to None). The worker passes a value that is no number as its repr."""
    value = constants.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        shown = value if isinstance(value, str) else repr(value)
        raise ValueError(f"{file}: {name} = {shown} is not a number (a bool is not one either)")
    return float(value)


def resolve_operating_point(given: OperatingPoint | None, constants: dict, user_postprocess: bool,
                            file: str) -> OperatingPoint:
    """The operating point of a pipeline run, decided once, before anything runs on it (``validate`` before any
    target, ``bench`` before it times): ``--operating-point`` (``given``), else the file's ``THRESHOLD`` (first) or
    ``TOP_K``, else top-k=1; the band: ``given``'s ``band=``, else the file's ``NEAR_BAND``, else ``DEFAULT_BAND``.
    The file's constants are checked whichever wins: a real number, not a bool (``THRESHOLD`` in (0, 1), ``TOP_K``
    a whole number >= 1, ``NEAR_BAND`` >= 0; None is unset). ``given`` beside the file's own ``postprocess()``,
    which makes the decisions itself, is refused rather than ignored. ValueError with one line."""
    threshold = _constant(constants, "THRESHOLD", file)
    top_k = _constant(constants, "TOP_K", file)
    band = _constant(constants, "NEAR_BAND", file)
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ValueError(f"{file}: THRESHOLD = {threshold:g}: a threshold is a probability in (0, 1)")
    if top_k is not None and (top_k < 1 or top_k != int(top_k)):
        raise ValueError(f"{file}: TOP_K = {top_k:g}: top-k takes a whole number >= 1")
    if band is not None and band < 0:
        raise ValueError(f"{file}: NEAR_BAND = {band:g}: a band is a number >= 0")
    if given is not None:
        if user_postprocess:
            raise ValueError(f"--operating-point {given.text()}: {file} defines postprocess(), which makes the "
                             "decisions, so the built-in operating point would be ignored: drop --operating-point "
                             "(NEAR_BAND in the file sets the band for the margins postprocess returns)")
        return OperatingPoint(given.kind, given.value, given.band if given.band is not None else band)
    if threshold is not None:
        return OperatingPoint("threshold", threshold, band)
    if top_k is not None:
        return OperatingPoint("top-k", float(int(top_k)), band)
    return OperatingPoint("top-k", 1.0, band)


def check_classes(op: OperatingPoint, classes: int | None, where: str) -> None:
    """Refuse a top-k of more classes than the classifier output has (``classes``: its last dim, None where not
    known): every sample would select every class, so no decision could differ. ValueError with one line."""
    if op.kind == "top-k" and classes is not None and int(op.value) > classes:
        raise ValueError(f"{where}: top-k={int(op.value)} asks for more classes than the classifier output has "
                         f"({classes}); give K <= {classes}")


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
    if k > s.shape[1]:
        raise ValueError(f"top-k={k} asks for more classes than the classifier output has ({s.shape[1]}); give "
                         f"K <= {s.shape[1]}")
    order = np.sort(s, axis=1)[:, ::-1]
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    chosen = np.zeros(s.shape, dtype=bool)
    np.put_along_axis(chosen, idx, True, axis=1)
    gap = order[:, k - 1] - order[:, k] if k < s.shape[1] else np.full(len(s), np.inf)
    if k == 1:
        return Decisions(CLASS, idx[:, 0].astype(np.int64), gap)
    return Decisions(TOP_K, chosen, gap)


EXPECTED = ("expected class ids (integers [N]), labels (bool [N, C]) or detections (a list of N arrays [k, 6]: x1, "
            "y1, x2, y2, score, class), or {'decisions': one of these, 'margins': [N] finite floats}")


def _describe(x: Any) -> str:
    """What a postprocess returned, in a few words: ``a list of 40 (the first a dict)``."""
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} array of shape {list(x.shape)}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)}" + (f" (the first a {type(x[0]).__name__})" if len(x) else "")
    return f"a {type(x).__name__}"


def normalise(result: Any, samples: int, what: str) -> Decisions:
    """A user ``postprocess``'s return value as ``Decisions`` (ValueError, one line ``WHAT returned ...: expected
    ...``, for anything else): an integer array [N] or a list of N ints (a class per sample), a bool array [N, C]
    (labels), a list of N arrays [k, 6] (detections), or a dict ``{"decisions": one of these, "margins": [N] finite
    floats}``."""
    margins = None
    if isinstance(result, dict):
        if "decisions" not in result:
            raise ValueError(f"{what} returned a dict without a 'decisions' key (keys: {sorted(map(str, result))}): "
                             f"{EXPECTED}")
        if result.get("margins") is not None:
            try:
                margins = np.asarray(result["margins"], dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise ValueError(f"{what} returned margins that are no numbers ({_describe(result['margins'])}): "
                                 "expected [N] finite floats") from None
            if len(margins) != samples:
                raise ValueError(f"{what} returned {len(margins)} margins for {samples} samples")
            bad = np.flatnonzero(~np.isfinite(margins))
            if bad.size:
                raise ValueError(f"{what} returned a non-finite margin ({margins[bad[0]]}) for sample {int(bad[0])} "
                                 f"({bad.size} of {samples}): margins are finite floats (leave 'margins' out for none)")
        result = result["decisions"]
    if isinstance(result, (list, tuple)) and result and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) for d in result):
        result = np.asarray(result, dtype=np.int64)  # a list of N Python ints: a class per sample
    if isinstance(result, (list, tuple)):
        boxes: list[np.ndarray] = []
        for i, d in enumerate(result):
            try:
                if isinstance(d, (dict, str, bytes)):
                    raise TypeError
                a = np.asarray(d, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{what} returned {_describe(result)}: item {i} is a {type(d).__name__}, no "
                                 f"detections array; {EXPECTED}") from None
            if a.size == 0:
                a = a.reshape(0, 6)
            if a.ndim != 2 or a.shape[1] != 6:
                raise ValueError(f"{what} returned {_describe(result)}: item {i} (detections of sample {i}) has shape "
                                 f"{list(a.shape)}, not [k, 6]; {EXPECTED}")
            boxes.append(a)
        kind, values = DETECTIONS, boxes  # type: tuple[str, Any]
    else:
        try:
            a = np.asarray(result)
        except (TypeError, ValueError):
            a = np.asarray(None)
        if a.dtype == bool and a.ndim == 2:
            kind, values = LABELS, a
        elif a.dtype.kind in "iu" and a.ndim == 1:
            kind, values = CLASS, a.astype(np.int64)
        else:
            shown = _describe(a) if a.dtype.kind in "biuf" else _describe(result)
            raise ValueError(f"{what} returned {shown}: {EXPECTED}")
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
    """``0.02`` or ``2%``: a fraction of the samples; ``3samples``: a count; ValueError otherwise. A bare number is a
    fraction below 1: ``1`` (or ``3``) is refused rather than read as 100 % (the gate off) or guessed as a count."""
    s = str(text).strip()
    m = _COUNT.match(s)
    if m:
        return Gate(count=int(m.group(1)))
    percent = s.endswith("%")
    try:
        value = float(s[:-1]) / 100 if percent else float(s)
    except ValueError:
        raise ValueError(f"--max-decision-flips {text}: expected a fraction (0.02), a percentage (2%) or a count "
                         "(3samples)") from None
    if not np.isfinite(value):
        raise ValueError(f"--max-decision-flips {text}: expected a fraction (0.02), a percentage (2%) or a count "
                         "(3samples); 100% switches the gate off")
    if not percent and value >= 1.0:
        ways = ([f"{int(value)}samples for a count"] if value == int(value) else []) + \
            ([f"{s}% for a percentage"] if value <= 100 else [])
        whole = "" if value == int(value) or not ways else " (a count is a whole number: 3samples)"
        write = ", or ".join(ways) or "a whole number of samples (3samples)"
        raise ValueError(f"--max-decision-flips {text}: a bare number is a fraction of the samples below 1; write "
                         f"{write}{whole} (100% switches the gate off)")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--max-decision-flips {text}: a fraction of the samples is in [0, 1) and a percentage in "
                         "[0%, 100%] (a count is written 3samples)")
    return Gate(fraction=value)


# ---- informativeness: would a trivial artifact pass? ---------------------------------------------

# decoy name (informative.DECOYS) -> what such an artifact returns, for a reason line
DECOY_TEXT = {"zeros": "all zeros", "mean": "the mean output over the raw samples",
              "shuffled": "another sample's output"}


def decoy_outputs(outputs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The informativeness rule's decoys (``checking/informative.py``) of the source's outputs on the raw samples,
    every output alike: decoy name -> outputs, as an artifact returning zeros, the mean or another sample's output
    would give them. A decoy that cannot be made (the mean and the shuffle of one sample) is left out."""
    from deploytool.checking import informative

    made = {name: informative.decoys(a) for name, a in outputs.items()}
    out: dict[str, dict[str, np.ndarray]] = {}
    for d in informative.DECOYS:
        arrays = {k: v[d] for k, v in made.items()}
        kept = {k: a for k, a in arrays.items() if a is not None}
        if kept and len(kept) == len(arrays):
            out[d] = kept
    return out


def decoy_flips(ref: Decisions, decoys: dict[str, Decisions]) -> dict[str, dict]:
    """Each decoy's decisions against the reference's: ``{name: {"flips", "samples"}}``; a decoy whose decisions
    cannot be compared (another kind, another count) differs from every sample."""
    out = {}
    for name, got in decoys.items():
        try:
            flips = int(differs(ref, got)[0].sum())
        except ValueError:
            flips = ref.samples
        out[name] = {"flips": flips, "samples": ref.samples}
    return out


def uninformative(flips: dict[str, dict], gate: Gate | None) -> str | None:
    """Why the decision gate proves nothing where a decoy passes it too. None: every decoy fails it, or there is no
    gate to prove anything (none, or one that allows every sample to flip: ``100%``, reported only)."""
    if gate is None:
        return None
    passing = [n for n, f in flips.items() if gate.allows(f["flips"], f["samples"])
               and not gate.allows(f["samples"], f["samples"])]
    if not passing:
        return None
    texts = [DECOY_TEXT.get(n, n) for n in passing]
    who = " or ".join([", ".join(texts[:-1]), texts[-1]] if len(texts) > 1 else texts)
    first = flips[passing[0]]
    return (f"decision parity is uninformative: an artifact returning {who} would pass --max-decision-flips too "
            f"({first['flips']}/{first['samples']} decisions differ): the source decides the raw samples (nearly) "
            "all alike; give --raw-data whose decisions span the operating point (samples on both sides of the "
            "threshold, of several classes), or --max-decision-flips 100% to report the decisions only")


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
