"""The float64 oracle rule for the fp32 tier (``--oracle float64``). Pure numpy.

The fixed fp32 tier (``|a - b| <= 1e-4 + 1e-4 * |b|``, b the source's fp32 output) is too strict for a model
whose fp32 result is itself far from the exact one (outputs that are differences of large intermediates: two
correct fp32 implementations round those intermediates differently) and too loose for a model whose fp32
result is very accurate. With a float64 result of the source (the oracle, ``sources/_float64.py``) the error
of fp32 arithmetic itself can be measured instead of assumed:

- the reference's noise floor: its own error against the float64 result, ``max |ref - oracle|`` (and per
  sample), floored at ``ULPS`` float32 ulps of the oracle's largest magnitude (``EPS32 * max |oracle|`` each);
- the artifact's error: ``max |artifact - oracle|``;
- pass iff ``artifact error <= FACTOR * max(noise floor, ulps floor)``.

Applies to an output judged by the fp32 tier as it is (elementwise, no user override) on a golden set that
has an oracle. A shape, dtype or NaN/Inf failure stays the fixed tier's failure. The decoys
(``informative.py``) of such an output are judged by this same rule (``decoy_rule``). Both verdicts, the
oracle's and the fixed tier's, are kept side by side in ``ArtifactCheck.oracle``.

FACTOR: measured on every fp32 artifact of the zoo models digits_cnn, multi_io and tiny_transformer on their
runtimes (``scripts/oracle_evidence.py``; docs/oracle.md has the table): a correct artifact's error against
the float64 result is at most a few times the reference's own; 10 leaves a margin over the largest measured.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deploytool.checking import informative, parity

KIND = "float64"
FACTOR = 10.0
ULPS = 4  # the noise floor is never below this many float32 ulps of the oracle's largest magnitude
EPS32 = float(np.finfo(np.float32).eps)
BASIS = "float64 oracle"
JUDGED_ON = f"error against the float64 oracle (max {FACTOR:g}x the fp32 reference's own)"


def applies(tier: parity.Tier, overrides: dict) -> bool:
    """Whether an output's check is the fp32 tier as it is: elementwise, no user override."""
    return tier == parity.TIERS["fp32"] and not overrides


def measure(candidate: np.ndarray, reference: np.ndarray, oracle: np.ndarray, factor: float = FACTOR) -> dict:
    """The rule's figures for one output on one set ([samples, ...] arrays): noise floor, artifact error,
    ratio, verdict. A candidate of another shape or with NaN/Inf fails (error inf)."""
    o = np.asarray(oracle, np.float64)
    r = np.asarray(reference, np.float64)
    n = len(o) if o.ndim else 1
    noise_s = np.abs(r - o).reshape(n, -1).max(axis=1) if o.size else np.zeros(n)
    mag = float(np.abs(o).max()) if o.size else 0.0
    ulps = ULPS * EPS32 * mag
    a = np.asarray(candidate)
    if a.shape != o.shape or (a.dtype.kind in "fc" and not np.isfinite(a).all()):
        err_s = np.full(n, np.inf)
    else:
        err_s = np.abs(a.astype(np.float64) - o).reshape(n, -1).max(axis=1) if o.size else np.zeros(n)
    noise, err = float(noise_s.max(initial=0.0)), float(err_s.max(initial=0.0))
    base = max(noise, ulps)
    allowed = factor * base
    ratio = err / base if base > 0 else (0.0 if err == 0 else float("inf"))
    return {"noise_floor": noise, "noise_per_sample": [float(x) for x in noise_s], "ulps_floor": ulps,
            "error": err, "error_per_sample": [float(x) for x in err_s], "ratio": ratio, "factor": factor,
            "allowed": allowed, "passed": bool(err <= allowed)}


def reason(m: dict) -> str:
    """``error 3.1e-02 against the float64 result is 40x the fp32 reference's own (7.6e-04; max 10x)``."""
    own = f"{m['noise_floor']:.2g}"
    if m["ulps_floor"] > m["noise_floor"]:
        own += f", below its floor of {ULPS} float32 ulps {m['ulps_floor']:.2g}"
    return (f"error {m['error']:.2g} against the float64 result is {m['ratio']:.3g}x the fp32 reference's own "
            f"({own}; max {m['factor']:g}x)")


def verdict(fixed: parity.Verdict, candidate: np.ndarray, reference: np.ndarray, oracle: np.ndarray,
            factor: float = FACTOR) -> tuple[parity.Verdict, dict]:
    """The verdict the oracle rule gives (what gates) and its figures with the fixed tier's verdict beside
    them. A structural failure (shape, dtype, NaN/Inf) is the fixed tier's and stays a failure."""
    m = measure(candidate, reference, oracle, factor)
    m["fixed_tier"] = {"passed": fixed.passed, "reason": fixed.reason}
    met = fixed.metrics
    structural = not met.shape_ok or bool(met.nonfinite_new) or bool(met.nonfinite_ref) or \
        np.asarray(candidate).dtype != np.asarray(reference).dtype
    if structural:
        m["passed"] = False
        return fixed, m
    return parity.Verdict(m["passed"], reason(m), met, fixed.tier, BASIS, m["allowed"]), m


def decoy_rule(reference: np.ndarray, oracle: np.ndarray, factor: float = FACTOR) -> Callable:
    """This rule as ``informative.trivial_passes`` calls it on a decoy: candidate -> (passed, what it measured)."""
    def verdict_of(candidate: np.ndarray) -> tuple[bool, str]:
        m = measure(candidate, reference, oracle, factor)
        return m["passed"], f"{reason(m)} on {JUDGED_ON}"
    return verdict_of


def decoys(reference: np.ndarray, oracle: np.ndarray, factor: float = FACTOR) -> list[informative.Decoy]:
    return informative.trivial_passes(reference, decoy_rule(reference, oracle, factor))


def record(chk_oracle: dict | None, info: dict | None, set_name: str, output: str, figures: dict) -> dict:
    """``ArtifactCheck.oracle`` with one output's figures added (per set and output), and the check's two
    verdicts side by side: ``passed`` (the oracle's, what gates) and ``fixed_tier_passed``."""
    out = chk_oracle if chk_oracle and chk_oracle.get("available") else \
        {"kind": (info or {}).get("kind", KIND), "available": True, "factor": figures["factor"], "ulps": ULPS,
         "passed": True, "fixed_tier_passed": True, "sets": {}}
    out["sets"].setdefault(set_name, {})[output] = figures
    out["passed"] = out["passed"] and figures["passed"]
    out["fixed_tier_passed"] = out["fixed_tier_passed"] and figures["fixed_tier"]["passed"]
    return out


def absent(info: dict) -> dict:
    """``ArtifactCheck.oracle`` of an fp32 check that asked for the oracle where the bundle has none."""
    return {"kind": info.get("kind", KIND), "available": False,
            "why_not": info.get("why_not") or "the bundle holds no float64 oracle"}


def summary(o: dict | None) -> str:
    """One line for a table's note or a report: ``float64 oracle: PASS (max 1.3x the reference's own error;
    fixed fp32 tier: FAIL)``."""
    if not o:
        return ""
    if not o.get("available"):
        return f"float64 oracle: none ({o.get('why_not', '')})"
    ratio = max((f["ratio"] for per in o["sets"].values() for f in per.values()), default=0.0)
    return (f"float64 oracle: {'PASS' if o['passed'] else 'FAIL'} (max {ratio:.3g}x the fp32 reference's own error, "
            f"limit {o['factor']:g}x); fixed fp32 tier: {'PASS' if o['fixed_tier_passed'] else 'FAIL'}")


CHOICES = (KIND, "none")


def check_option(value: str | None, option: str = "--oracle") -> str | None:
    """``--oracle`` / ``oracle =``: "float64" (the rule), "none" (the fixed tier) or None (export: the fixed
    tier; validate: what the bundle was exported with). ValueError for anything else."""
    if value is not None and value not in CHOICES:
        raise ValueError(f"{option} {value!r}: must be one of {', '.join(CHOICES)}")
    return value


def path_of(reference: str) -> str:
    """The oracle file beside a set's reference: golden/reference_alt.npz -> golden/oracle_alt.npz."""
    head, _, tail = reference.rpartition("/")
    name = tail.replace("reference", "oracle", 1) if "reference" in tail else f"oracle_{tail}"
    return f"{head}/{name}" if head else name


def load(sets: list) -> dict[str, dict[str, np.ndarray]]:
    """The oracles of the golden sets that have one (``GoldenSet.oracle``), by set."""
    from deploytool.core import npz

    return {s.name: npz.load(s.oracle) for s in sets if getattr(s, "oracle", None) is not None}


def for_validate(opened, option: str | None, samples: int | None = None) -> tuple[dict | None, dict]:
    """(the rule's info for ``judge.Rules.oracle`` or None when it is off, the oracles by set) for a validate run
    of an opened bundle: ``option`` None follows the bundle's export, "none" turns the rule off, "float64" needs
    the bundle to have been exported with it (UsageError, exit 2, otherwise). ``samples``: the main set cut to
    its first N samples, as the golden sets are."""
    from deploytool.core.errors import UsageError

    info = opened.manifest.golden.oracle
    if option == "none" or (option is None and info is None):
        return None, {}
    if info is None:
        raise UsageError(f"--oracle {option}: bundle {opened.root} holds no float64 oracle (export it with --oracle "
                         f"{KIND})")
    oracles = {name: ({k: v[:samples] for k, v in arrays.items()} if name == "main" and samples else arrays)
               for name, arrays in opened.oracles.items()}
    return dict(info), oracles
