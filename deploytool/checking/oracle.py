"""The float64 oracle rule for the fp32 tier (``--oracle float64``). Pure numpy.

The fixed fp32 tier (``|a - b| <= 1e-4 + 1e-4 * |b|``, b the source's fp32 output) is too strict for a model
whose fp32 result is itself far from the exact one (outputs that are differences of large intermediates: two
correct fp32 implementations round those intermediates differently) and too loose for a model whose fp32
result is very accurate. With a float64 result of the source (the oracle, ``sources/_float64.py``) the error
of fp32 arithmetic itself can be measured instead of assumed.

Judged per golden sample s (an output's elements of one sample), so a sample of small values is never
allowed the error that a sample of large values has:

- the reference's noise on it: ``noise_s = max |ref_s - oracle_s|``, floored at ``ULPS`` float32 ulps of the
  sample's largest oracle magnitude (``ulps_s = ULPS * max(EPS32 * max |oracle_s|, TINY32)``: a sample of
  zeros or denormals is held to float32's denormal range, which a runtime may flush to zero);
- the artifact's error on it: ``err_s = max |artifact_s - oracle_s|``;
- pass iff ``err_s <= FACTOR * max(noise_s, ulps_s)`` on every sample; the ratio reported is the largest
  ``err_s / max(noise_s, ulps_s)``, and the figures of that (worst) sample are the ones a reason names.

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
# and never below ULPS x float32's smallest normal: a runtime may flush the denormals below it to zero
TINY32 = float(np.finfo(np.float32).tiny)
BASIS = "float64 oracle"
JUDGED_ON = f"error against the float64 oracle (max {FACTOR:g}x the fp32 reference's own)"


def applies(tier: parity.Tier, overrides: dict) -> bool:
    """Whether an output's check is the fp32 tier as it is: elementwise, no user override."""
    return tier == parity.TIERS["fp32"] and not overrides


def measure(candidate: np.ndarray, reference: np.ndarray, oracle: np.ndarray, factor: float = FACTOR) -> dict:
    """The rule's figures for one output on one set ([samples, ...] arrays), per sample and for the worst sample
    (largest ratio): noise floor, artifact error, ratio, verdict. A candidate of another shape or with NaN/Inf
    fails (error inf)."""
    o = np.asarray(oracle, np.float64)
    r = np.asarray(reference, np.float64)
    n = len(o) if o.ndim else 1
    if o.size == 0:
        o2 = r2 = np.zeros((n, 0))
    else:
        o2, r2 = o.reshape(n, -1), r.reshape(n, -1)
    noise_s = np.abs(r2 - o2).max(axis=1, initial=0.0)
    ulps_s = ULPS * np.maximum(EPS32 * np.abs(o2).max(axis=1, initial=0.0), TINY32)
    a = np.asarray(candidate)
    if a.shape != o.shape or (a.dtype.kind in "fc" and not np.isfinite(a).all()):
        err_s = np.full(n, np.inf)
    else:
        err_s = np.abs(a.astype(np.float64).reshape(o2.shape) - o2).max(axis=1, initial=0.0)
    base_s = np.maximum(noise_s, ulps_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_s = np.where(base_s > 0, err_s / np.where(base_s > 0, base_s, 1.0),
                           np.where(err_s == 0, 0.0, np.inf))
    allowed_s = factor * base_s
    worst = int(np.argmax(ratio_s)) if n else 0

    def at(v: np.ndarray) -> float:
        return float(v[worst]) if n else 0.0

    return {"noise_floor": float(noise_s.max(initial=0.0)), "noise_per_sample": [float(x) for x in noise_s],
            "ulps_floor": float(ulps_s.max(initial=0.0)), "ulps_per_sample": [float(x) for x in ulps_s],
            "error": float(err_s.max(initial=0.0)), "error_per_sample": [float(x) for x in err_s],
            "ratio": at(ratio_s), "factor": factor, "allowed": at(allowed_s),
            "worst": {"sample": worst, "noise": at(noise_s), "ulps_floor": at(ulps_s), "error": at(err_s),
                      "allowed": at(allowed_s)},
            "passed": bool((err_s <= allowed_s).all())}


def reason(m: dict) -> str:
    """``sample 3: error 3.1e-02 against the float64 result is 40x the fp32 reference's own on it (7.6e-04; max
    10x)`` (the worst sample)."""
    w = m["worst"]
    own = f"{w['noise']:.2g}"
    if w["ulps_floor"] > w["noise"]:
        own += f", below its floor of {ULPS} float32 ulps {w['ulps_floor']:.2g}"
    return (f"sample {w['sample']}: error {w['error']:.2g} against the float64 result is {m['ratio']:.3g}x the fp32 "
            f"reference's own on it ({own}; max {m['factor']:g}x)")


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


def missing(manifest) -> str | None:
    """Why a bundle exported with ``--oracle float64`` holds no float64 oracle ("" when it holds one, None when
    it was exported without the option): the source had none (``golden.oracle.why_not``: a Keras or
    SavedModel source, a model that fails in float64) or no golden set has an oracle file."""
    info = manifest.golden.oracle
    if info is None:
        return None
    if info.get("why_not"):
        return info["why_not"]
    if not any(s.oracle for s in manifest.golden.sets.values()):
        return "the bundle holds no float64 oracle file (golden.sets.*.oracle)"
    return ""


def note(manifest, option: str | None) -> str | None:
    """``validate``'s note on the bundle's oracle (None when it was exported without ``--oracle float64``): held
    and applied, held and ignored (``--oracle none``), or asked for at export and not made (why)."""
    why = missing(manifest)
    if why is None:
        return None
    if why:
        return (f"note: the bundle was exported with --oracle {KIND} but holds no float64 oracle ({why}): the fixed "
                "fp32 tier judges")
    if option == "none":
        return "note: the bundle holds a float64 oracle from its export; --oracle none: the fixed fp32 tier judges"
    return ("note: the bundle holds a float64 oracle from its export: the fp32 tier is judged against it (applied; "
            "--oracle none ignores it)")


def for_validate(opened, option: str | None, samples: int | None = None) -> tuple[dict | None, dict]:
    """(the rule's info for ``judge.Rules.oracle`` or None when it is off, the oracles by set) for a validate run
    of an opened bundle: ``option`` None follows the bundle's export (where the export asked for an oracle and
    none was made, the fixed tier judges and each fp32 check says why), "none" turns the rule off, "float64"
    needs the bundle to hold an oracle (UsageError, exit 2, naming why otherwise). ``samples``: the main set cut
    to its first N samples, as the golden sets are."""
    from deploytool.core.errors import UsageError

    info = opened.manifest.golden.oracle
    why = missing(opened.manifest)
    if why == "" and not opened.oracles:
        why = "the bundle holds no float64 oracle file"
    if option == "none" or (option is None and info is None):
        return None, {}
    if info is None:
        raise UsageError(f"--oracle {option}: bundle {opened.root} holds no float64 oracle (export it with --oracle "
                         f"{KIND})")
    if why and option == KIND:
        raise UsageError(f"--oracle {option}: bundle {opened.root} holds no float64 oracle: {why}")
    if why:
        return {**info, "why_not": why}, {}
    oracles = {name: ({k: v[:samples] for k, v in arrays.items()} if name == "main" and samples else arrays)
               for name, arrays in opened.oracles.items()}
    return dict(info), oracles
