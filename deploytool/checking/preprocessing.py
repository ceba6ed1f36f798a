"""The deployed preprocessing against the reference one, input by input, with the cause named where it is one of
the usual ones. Pure numpy.

A pipeline may define ``preprocess_deployed(raw)`` beside ``preprocess(raw)`` (for example a numpy reimplementation
of the training transforms that ships with the app). On the same raw samples their outputs must agree; where they do
not, ``compare`` tries, in order: a layout transpose (NCHW <-> NHWC), the channel order reversed (RGB <-> BGR), an
affine map ``deployed = reference * a + b`` (a missing or doubled normalisation, or a x255 / /255 scale; fitted over
all values and, for image-like inputs, per channel), each also after the layout transpose; else it reports the
largest error and where it is.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

RTOL, ATOL = 1e-5, 1e-6  # "the same": float32 rounding of the same arithmetic done in another order


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1.0)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= ATOL * scale + RTOL * np.abs(b)))


def _affine(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """(s, t) with a == b * s + t up to float32 rounding, else None (b constant: no fit)."""
    x, y = b.reshape(-1), a.reshape(-1)
    if x.size < 2 or float(np.ptp(x)) == 0.0:
        return None
    s, t = np.polyfit(x, y, 1)
    return (float(s), float(t)) if _close(x * s + t, y) and _close(y, x * s + t) else None


def _per_channel(a: np.ndarray, b: np.ndarray, axis: int) -> list[tuple[float, float]] | None:
    fits = []
    for c in range(b.shape[axis]):
        fit = _affine(np.take(a, c, axis=axis), np.take(b, c, axis=axis))
        if fit is None:
            return None
        fits.append(fit)
    return fits


def _affine_text(s: float, t: float) -> str:
    t = 0.0 if abs(t) < 1e-6 * max(1.0, abs(s)) else t  # the fit's rounding, not an offset
    if abs(t) < 1e-6 and (abs(s - 255) < 1e-3 or abs(s * 255 - 1) < 1e-6):
        return "dtype/scale: deployed = reference x255 (a [0, 255] image where [0, 1] is expected)" if s > 1 \
            else "dtype/scale: deployed = reference / 255 (scaled to [0, 1] where [0, 255] is expected)"
    return f"normalisation: deployed = reference*{s:.4g}{t:+.4g}" + \
        (" (missing normalisation)" if abs(s) > 1 or abs(t) > 1e-6 else "")


def _channel_axes(x: np.ndarray, layout: str | None) -> list[int]:
    """The axes of a batched array [N, ...] that may be channels: the layout's, else any small axis of a 4-D."""
    if x.ndim != 4:
        return []
    if layout == "NCHW":
        return [1]
    if layout == "NHWC":
        return [3]
    return [ax for ax in (1, 3) if 1 < x.shape[ax] <= 4]


def diagnose(deployed: np.ndarray, reference: np.ndarray, layout: str | None = None) -> str | None:
    """None when the two agree; else the cause, one phrase."""
    d = np.asarray(deployed)
    r = np.asarray(reference)
    if d.shape == r.shape and d.dtype.kind in "fiu" and _close(d.astype(np.float64), r.astype(np.float64)):
        return None if d.dtype == r.dtype else f"dtype: deployed {d.dtype}, reference {r.dtype} (same values)"
    df, rf = d.astype(np.float64), r.astype(np.float64)
    views: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [("", lambda x: x)]
    if d.ndim == 4:
        views += [("layout: deployed is NHWC, the reference NCHW", lambda x: x.transpose(0, 3, 1, 2)),
                  ("layout: deployed is NCHW, the reference NHWC", lambda x: x.transpose(0, 2, 3, 1))]
    for what, view in views:
        v = view(df)
        if v.shape != rf.shape:
            continue
        prefix = f"{what}; " if what else ""
        if what and _close(v, rf):
            return what
        for ax in _channel_axes(rf, layout):
            if _close(np.flip(v, axis=ax), rf):
                return f"{prefix}channel order swapped (reversing axis {ax} of the deployed input matches: RGB <-> BGR)"
        fit = _affine(v, rf)
        if fit is not None:
            return prefix + _affine_text(*fit)
        for ax in _channel_axes(rf, layout):
            fits = _per_channel(v, rf, ax)
            if fits is not None:
                scales, offsets = ", ".join(f"{s:.4g}" for s, _ in fits), ", ".join(f"{t:.4g}" for _, t in fits)
                return prefix + f"normalisation per channel (axis {ax}): deployed = reference*[{scales}]+[{offsets}]"
            flipped = np.flip(v, axis=ax)
            fits = _per_channel(flipped, rf, ax)
            if fits is not None:
                return prefix + f"channel order swapped (axis {ax}) and normalisation differs"
    if d.shape != r.shape:
        return f"shape: deployed {list(d.shape)}, reference {list(r.shape)} (no transpose of it matches)"
    err = np.abs(df - rf)
    where = np.unravel_index(int(np.argmax(err)), err.shape)
    return (f"max error {float(err.max()):.4g} at sample {where[0]}, index {list(map(int, where[1:]))} (deployed "
            f"{df[where]:.4g}, reference {rf[where]:.4g}); no layout, channel order or affine map explains it")


def compare(deployed: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            layouts: dict[str, str | None] | None = None) -> dict:
    """Input by input: ``{"match": bool, "inputs": {name: cause or None}, "finding": one line or ""}``."""
    layouts = layouts or {}
    found: dict[str, str | None] = {}
    for name, ref in reference.items():
        if name not in deployed:
            found[name] = f"missing: preprocess_deployed returns no {name!r} (it returns {sorted(deployed)})"
            continue
        found[name] = diagnose(deployed[name], ref, layouts.get(name))
    extra = sorted(set(deployed) - set(reference))
    bad = {k: v for k, v in found.items() if v}
    finding = "; ".join(f"input {k!r}: {v}" for k, v in bad.items())
    if extra:
        finding = "; ".join(filter(None, [finding, f"extra inputs {extra}"]))
    return {"match": not bad and not extra, "inputs": found, "finding": finding}
