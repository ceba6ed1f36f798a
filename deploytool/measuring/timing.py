"""Timing protocol and statistics (pure: takes a callable, returns numbers; no runtime knowledge).

Protocol: warm up until both ``warmup_runs`` calls and ``warmup_time`` seconds are done; then
time one call at a time with ``perf_counter_ns`` until both ``min_runs`` and ``min_time`` are
reached, or a hard cap (``max_runs`` / ``max_time``) stops it. Percentiles use numpy's
``linear`` method (Hyndman & Fan type 7). Warnings follow MLPerf's sample-count rule for
percentile claims at 99% confidence (p90 needs >= 64 samples, p99 >= 662) and
torch.utils.benchmark's noise rule (IQR / median >= 0.10).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

PERCENTILE_METHOD: Literal["linear"] = "linear"  # numpy.percentile method; Hyndman & Fan type 7
MIN_SAMPLES_P90 = 64
MIN_SAMPLES_P99 = 662
NOISY_IQR_RATIO = 0.10


@dataclass(frozen=True)
class Protocol:
    warmup_runs: int = 10
    warmup_time: float = 0.5
    min_runs: int = 200
    min_time: float = 5.0
    max_runs: int = 100_000
    max_time: float = 60.0

    def validate(self) -> None:
        if self.min_runs < 1 or self.warmup_runs < 0:
            raise ValueError("--min-runs must be >= 1 and warm-up runs >= 0")
        if self.min_time < 0 or self.warmup_time < 0:
            raise ValueError("--min-time and warm-up time must be >= 0")
        if self.max_runs < self.min_runs or self.max_time < self.min_time:
            raise ValueError("the hard cap must be at least the minimum (runs and time)")

    def to_dict(self) -> dict:
        return asdict(self)


def measure(call: Callable[[int], object], protocol: Protocol) -> dict:
    """Warm up, then time ``call(i)`` once per sample. Returns samples in ns and the warm-up count."""
    i = 0
    t_end = time.perf_counter() + protocol.warmup_time
    while i < protocol.warmup_runs or time.perf_counter() < t_end:
        call(i)
        i += 1
    warmup = i
    samples: list[int] = []
    start = time.perf_counter()
    deadline = start + protocol.max_time
    min_deadline = start + protocol.min_time
    perf = time.perf_counter_ns
    while True:
        t0 = perf()
        call(i)
        samples.append(perf() - t0)
        i += 1
        now = time.perf_counter()
        if len(samples) >= protocol.max_runs or now >= deadline:
            capped = True
            break
        if len(samples) >= protocol.min_runs and now >= min_deadline:
            capped = False
            break
    return {"samples_ns": samples, "warmup_runs": warmup, "measure_s": time.perf_counter() - start,
            "capped": capped}


@dataclass(frozen=True)
class Summary:
    """``summarize``'s statistics of one row's samples: the one place these names are spelled (bench rows
    carry them flat in bench.json)."""

    n: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    iqr_ms: float
    cv: float
    throughput_per_s: float
    percentile_method: str = PERCENTILE_METHOD
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ns: list[int], batch: int = 1) -> Summary:
    """Statistics in milliseconds, throughput in items (batch rows) per second, and warnings."""
    x = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p25, p50, p75, p90, p99 = (float(v) for v in np.percentile(x, [25, 50, 75, 90, 99], method=PERCENTILE_METHOD))
    mean, std = float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0
    iqr = float(p75 - p25)
    s = Summary(n=int(len(x)), min_ms=float(x.min()), p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=mean, std_ms=std,
                iqr_ms=iqr, cv=std / mean if mean > 0 else 0.0,
                throughput_per_s=batch * 1000.0 / mean if mean > 0 else 0.0)
    return replace(s, warnings=warnings(s.to_dict()))


def warnings(stats: dict) -> list[str]:
    out = []
    if stats["n"] < MIN_SAMPLES_P90:
        out.append(f"only {stats['n']} samples: p90 needs >= {MIN_SAMPLES_P90} for a claim at 99% confidence")
    elif stats["n"] < MIN_SAMPLES_P99:
        out.append(f"{stats['n']} samples: p99 needs >= {MIN_SAMPLES_P99} for a claim at 99% confidence")
    if stats["p50_ms"] > 0 and stats["iqr_ms"] / stats["p50_ms"] >= NOISY_IQR_RATIO:
        out.append(f"noisy: IQR/median = {stats['iqr_ms'] / stats['p50_ms']:.2f} (>= {NOISY_IQR_RATIO})")
    return out
