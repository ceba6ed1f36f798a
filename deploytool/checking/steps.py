"""Multi-step parity for stateful models (pure numpy): a model run N steps with its outputs fed back.

A model with state (an RNN's hidden state, a KV cache) or a decoder (logits -> the next token) can match its
source on one forward and still drift apart over 30 steps of generation. Feedback pairs declare the loop:

- ``OUT->IN``: step t+1's input IN is step t's output OUT (shape and dtype must match the contract's);
- ``OUT->IN:argmax``: a greedy choice: IN takes the argmax over OUT's last axis (logits -> the next token id).

Inputs not fed back keep their initial value. At export the source runs the loop from the first
``STEP_SAMPLES`` main golden samples and writes the reference trajectory (``FILE``: per step, the inputs it
took and the outputs it gave, ``in:NAME`` / ``out:NAME``, each [steps, samples, *shape]). Each target runs
the same loop with its *own* outputs fed back (free-running: ``trajectory``), and ``compare`` judges it
against the reference:

- per step, each output's error relative to the reference's magnitude at that step (``max|a-b| / max|ref|``),
  compared over the steps before the decisions diverge (after that the two runs take different inputs);
- the first step (1-based) where a greedy decision (an ``:argmax`` pair's token) differs, on any sample;
- gates: ``min_agree_steps`` (the steps whose decisions must all agree) and ``max_step_error`` (the largest
  relative step error allowed). Their defaults come from the format's tier (``DEFAULT_GATES``): an fp32
  artifact must agree on every step's decision (a loop without decisions: keep its step error under 1e-3);
  fp16 and int8 artifacts are reported, not gated (their greedy tokens may legitimately diverge: docs/steps.md
  gives the measurement).
- informativeness: the same gates are applied to decoys (zeros, another sample's trajectory, the mean over
  the samples); a check that one of them would pass proves nothing and is not a PASS.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploytool.core.contract import FLOAT_DTYPES, INT_DTYPES, Contract
from deploytool.core.errors import did_you_mean

DEFAULT_STEPS = 32
STEP_SAMPLES = 4  # the first golden main-set samples are the initial inputs
MAX_STEPS = 10_000
FILE = "golden/steps.npz"
IN, OUT = "in:", "out:"

# tier -> (min_agree_steps: ALL = every step, 0 = not gated; max_step_error where the loop has no greedy decision,
# None = not gated). Where it has one, the decisions are the gate and the step error is reported, not gated: in a
# sensitive (chaotic) loop a correct fp32 artifact's rounding differences grow with the steps (gru_lm: 2.4e-7 at
# step 1 to 5e-3 at step 32 on onnxruntime, every token identical), so no fixed error bound fits every model.
ALL = -1  # every step must agree
DEFAULT_GATES: dict[str, tuple[int, float | None]] = {
    "exact": (ALL, 1e-5), "fp32": (ALL, 1e-3), "fp16": (0, None), "fp16_arith": (0, None), "int8": (0, None)}


@dataclass
class StepsRecord:
    """The manifest's record of the multi-step check (``Manifest.steps``): validate repeats it."""

    feedback: list[str]  # "OUT->IN" / "OUT->IN:argmax"
    steps: int
    samples: int
    path: str = FILE  # the reference trajectory, among the hashed golden files
    declared: str = "--feedback"  # or "the model file (FEEDBACK)"
    # the gates export was given (--min-agree-steps, --max-step-error; None: the tier's): validate re-applies them
    # unless its own command line sets that gate (or --tier-defaults)
    min_agree_steps: int | None = None
    max_step_error: float | None = None

    def gates(self) -> Gates:
        return Gates(self.min_agree_steps, self.max_step_error)


@dataclass(frozen=True)
class Pair:
    output: str
    input: str
    argmax: bool = False

    def text(self) -> str:
        return f"{self.output}->{self.input}" + (":argmax" if self.argmax else "")


@dataclass
class Gates:
    """This run's gates: None takes the tier's default (``DEFAULT_GATES``)."""

    min_agree_steps: int | None = None
    max_step_error: float | None = None

    def for_tier(self, tier: str, steps: int, decisions: bool = True) -> tuple[int, float | None]:
        agree, error = DEFAULT_GATES.get(tier, (0, None))
        error = None if decisions else error
        agree = self.min_agree_steps if self.min_agree_steps is not None else agree
        return (steps if agree == ALL else min(agree, steps)), \
            (self.max_step_error if self.max_step_error is not None else error)

    def check(self) -> None:
        """ValueError (one line) for a gate that cannot be met or means nothing."""
        if self.min_agree_steps is not None and self.min_agree_steps < 0:
            raise ValueError(f"--min-agree-steps must be >= 0, got {self.min_agree_steps}")
        if self.max_step_error is not None and not (math.isfinite(self.max_step_error) and self.max_step_error > 0):
            raise ValueError(f"--max-step-error must be a finite number > 0, got {self.max_step_error}")

    def given(self) -> bool:
        return self.min_agree_steps is not None or self.max_step_error is not None

    def describe(self) -> str:
        """The gates set, as options (``--min-agree-steps 5 --max-step-error 0.01``)."""
        return " ".join(f"--{name} {value:g}" for name, value in (("min-agree-steps", self.min_agree_steps),
                                                                  ("max-step-error", self.max_step_error))
                        if value is not None)

    def merged(self, over: Gates) -> Gates:
        """These gates with ``over``'s given ones in their place."""
        return Gates(over.min_agree_steps if over.min_agree_steps is not None else self.min_agree_steps,
                     over.max_step_error if over.max_step_error is not None else self.max_step_error)


# ---- declaring the loop -----------------------------------------------------------------------

def parse(specs: list[str], label: str = "--feedback") -> list[Pair]:
    """``--feedback`` values (repeatable, each possibly comma-separated) -> pairs; ValueError naming the bad one
    (``label``: where the values came from)."""
    pairs: list[Pair] = []
    for spec in (s.strip() for text in specs for s in text.split(",")):
        if not spec:
            continue
        out, arrow, rest = spec.partition("->")
        inp, colon, how = rest.partition(":")
        if not arrow or not out.strip() or not inp.strip() or (colon and how.strip() != "argmax"):
            raise ValueError(f"{label} {spec!r}: expected OUTPUT->INPUT or OUTPUT->INPUT:argmax")
        pairs.append(Pair(out.strip(), inp.strip(), bool(colon)))
    return pairs


def from_mapping(mapping: object, where: str) -> list[Pair]:
    """A model file's ``FEEDBACK = {"h_out": "h", "logits": "token:argmax"}`` -> pairs."""
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f"{where}: FEEDBACK must be a dict of output name -> input name (\"IN\" or \"IN:argmax\")")
    pairs = []
    for k, v in mapping.items():
        try:
            pairs += parse([f"{k}->{v}"])
        except ValueError:
            raise ValueError(f"{where}: FEEDBACK {{{k!r}: {v!r}}}: expected {{'OUTPUT': 'INPUT'}} or "
                             "{'OUTPUT': 'INPUT:argmax'}") from None
    return pairs


def declared_in_file(path: Path) -> tuple[object, object]:
    """A model file's FEEDBACK and STEPS, read without running it (literal top-level assignments only);
    (None, None) where it declares neither. ValueError when one is there but not a literal."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return None, None  # loading the model says what is wrong with the file
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("FEEDBACK", "STEPS"):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                raise ValueError(f"{path.name}: {node.targets[0].id} must be a literal (read without running the "
                                 "file)") from None
    return found.get("FEEDBACK"), found.get("STEPS")


def check(contract: Contract, pairs: list[Pair], label: str = "--feedback") -> None:
    """Each pair against the source contract: ValueError with one line naming the pair, where it was declared
    (``label``: ``--feedback`` or the model file's FEEDBACK) and the cause."""
    outs, ins = {s.name: s for s in contract.outputs}, {s.name: s for s in contract.inputs}
    dims = contract.dim_sizes("example", batch_one=True)
    fed: set[str] = set()
    for p in pairs:
        what = f"{label} {p.text()}"
        if p.output not in outs:
            raise ValueError(f"{what}: {p.output!r} is no output{did_you_mean(p.output, outs)} (the outputs are "
                             f"{contract.output_names})")
        if p.input not in ins:
            raise ValueError(f"{what}: {p.input!r} is no input{did_you_mean(p.input, ins)} (the inputs are "
                             f"{contract.input_names})")
        if p.input in fed:
            raise ValueError(f"{what}: input {p.input!r} is fed back twice")
        fed.add(p.input)
        o, i = outs[p.output], ins[p.input]
        oshape, ishape = o.concrete_shape(dims), i.concrete_shape(dims)
        if p.argmax:
            if i.dtype not in INT_DTYPES or o.dtype not in FLOAT_DTYPES:
                raise ValueError(f"{what}: argmax feeds a float output's choice to an integer input; {p.output!r} is "
                                 f"{o.dtype}, {p.input!r} is {i.dtype}")
            if len(oshape) < 1 or math.prod(oshape[:-1]) != math.prod(ishape):
                raise ValueError(f"{what}: the argmax over {p.output!r}{list(oshape)}'s last axis has "
                                 f"{math.prod(oshape[:-1])} values, {p.input!r} is {list(ishape)}")
        elif oshape != ishape or o.dtype != i.dtype:
            raise ValueError(f"{what}: {p.output!r} is {o.dtype}{list(oshape)}, {p.input!r} is {i.dtype}"
                             f"{list(ishape)}: a fed-back output must match its input's shape and dtype (or use "
                             ":argmax for a greedy choice)")


def texts(pairs: list[Pair]) -> list[str]:
    return [p.text() for p in pairs]


# ---- running the loop -------------------------------------------------------------------------

def fed_back(pairs: list[Pair], inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The next step's inputs (every array [samples, *shape], source names and layout)."""
    nxt = dict(inputs)
    for p in pairs:
        want = inputs[p.input]
        y = np.asarray(outputs[p.output])
        if p.argmax:
            y = np.argmax(y, axis=-1)
        nxt[p.input] = np.ascontiguousarray(y.reshape(want.shape).astype(want.dtype, copy=False))
    return nxt


def trajectory(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], initial: dict[str, np.ndarray],
               pairs: list[Pair], steps: int, stop: Callable[[int], bool] | None = None) -> dict[str, np.ndarray]:
    """Run ``steps`` steps from ``initial`` ([samples, *shape] per input), each step's outputs fed back as
    ``pairs`` say; ``run`` maps one step's inputs to its outputs (both [samples, *shape]). Returns
    {"in:NAME": [steps, samples, *shape], "out:NAME": ...}. An exception names the step it failed at.
    ``stop(done)``, asked before each step: True ends the loop there (the trajectory has ``done`` steps; with
    none done, every array is empty)."""
    ins: dict[str, list] = {k: [] for k in initial}
    outs: dict[str, list] = {}
    cur = {k: np.asarray(v) for k, v in initial.items()}
    for t in range(steps):
        if stop is not None and stop(t):
            break
        try:
            got = run(cur)
        except Exception as e:
            raise StepFailed(t + 1, e) from e
        for k, v in cur.items():
            ins[k].append(v)
        for k, v in got.items():
            outs.setdefault(k, []).append(np.asarray(v))
        cur = fed_back(pairs, cur, got)
    if not outs:
        return {}
    return {**{IN + k: np.stack(v) for k, v in ins.items()}, **{OUT + k: np.stack(v) for k, v in outs.items()}}


def truncated(traj: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
    """The first ``steps`` steps of a trajectory (a loop stopped early is compared with that much of the
    reference)."""
    return {k: v[:steps] for k, v in traj.items()}


class StepFailed(RuntimeError):
    def __init__(self, step: int, cause: Exception) -> None:
        super().__init__(f"step {step}: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}")
        self.step = step


def split(traj: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A trajectory -> (inputs, outputs), each {NAME: [steps, samples, *shape]}."""
    return ({k[len(IN):]: v for k, v in traj.items() if k.startswith(IN)},
            {k[len(OUT):]: v for k, v in traj.items() if k.startswith(OUT)})


def check_reference(contract: Contract, record: StepsRecord, traj: dict[str, np.ndarray], dims: dict[str, int],
                    what: str) -> None:
    """The stored reference trajectory against the contract and its record: ValueError naming what is wrong."""
    ins, outs = split(traj)
    for kind, arrays, specs in (("input", ins, contract.inputs), ("output", outs, contract.outputs)):
        names = [s.name for s in specs]
        if sorted(arrays) != sorted(names) or len(arrays) + 0 == 0:
            raise ValueError(f"{what}: {kind} arrays {sorted(arrays)}, the contract names {names}")
        for spec in specs:
            a = arrays[spec.name]
            expected = (record.steps, record.samples, *spec.concrete_shape(dims))
            if str(a.dtype) != spec.dtype or tuple(a.shape) != expected:
                raise ValueError(f"{what}: {kind} {spec.name!r} is {a.dtype}{list(a.shape)}, expected "
                                 f"{spec.dtype}{list(expected)}")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{what}: {kind} {spec.name!r} holds NaN/Inf")
    extra = [k for k in traj if not k.startswith((IN, OUT))]
    if extra:
        raise ValueError(f"{what}: unexpected arrays {extra}")


# ---- comparing --------------------------------------------------------------------------------

@dataclass
class Judged:
    """One trajectory judged against the reference."""

    first_diverging_step: int | None  # 1-based; None: every decision agreed (or there are none)
    divergence: dict | None  # {"input", "sample", "reference", "artifact"} at that step
    errors: list[float]  # per step: the largest relative error over the outputs
    max_abs: list[float]  # per step: the largest absolute error over the outputs
    failures: list[str] = field(default_factory=list)

    @property
    def agree_steps(self) -> int:
        return len(self.errors) if self.first_diverging_step is None else self.first_diverging_step - 1

    def compared_error(self) -> float:
        """The largest step error over the steps compared (up to and including the first diverging one)."""
        upto = len(self.errors) if self.first_diverging_step is None else self.first_diverging_step
        vals = [e for e in self.errors[:upto] if not math.isnan(e)]
        return max(vals) if vals else 0.0


def decisions(pairs: list[Pair], outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each argmax pair's greedy choices: {input: [steps, samples, k]}."""
    return {p.input: np.argmax(outs[p.output], axis=-1).reshape(*outs[p.output].shape[:2], -1)
            for p in pairs if p.argmax}


def judge(ref_outs: dict[str, np.ndarray], got_outs: dict[str, np.ndarray], pairs: list[Pair], agree: int,
          max_error: float | None) -> Judged:
    steps = len(next(iter(ref_outs.values())))
    ref_dec, got_dec = decisions(pairs, ref_outs), decisions(pairs, got_outs)
    first, where = None, None
    for t in range(steps):
        for name, r in ref_dec.items():
            diff = np.argwhere(r[t] != got_dec[name][t])
            if len(diff):
                s, k = (int(x) for x in diff[0])
                first, where = t + 1, {"input": name, "sample": s, "reference": int(r[t][s][k]),
                                       "artifact": int(got_dec[name][t][s][k])}
                break
        if first is not None:
            break
    errors, max_abs = [], []
    for t in range(steps):
        rel, ab = 0.0, 0.0
        for name, r in ref_outs.items():
            r64, g64 = r[t].astype(np.float64), np.asarray(got_outs[name][t], np.float64)
            if g64.shape != r64.shape:
                rel, ab = math.inf, math.inf
                continue
            d = float(np.max(np.abs(g64 - r64))) if r64.size else 0.0
            d = d if math.isfinite(d) else math.inf
            scale = float(np.max(np.abs(r64))) if r64.size else 0.0
            ab = max(ab, d)
            rel = max(rel, d / scale if scale > 0 else (0.0 if d == 0 else math.inf))
        errors.append(rel)
        max_abs.append(ab)
    j = Judged(first, where, errors, max_abs)
    if agree and j.agree_steps < agree:
        w = where or {}
        j.failures.append(f"greedy {w.get('input', 'token')} differs first at step {first} of {steps} (reference "
                          f"{w.get('reference')}, artifact {w.get('artifact')}, sample {w.get('sample')})"
                          + (f"; {agree} must agree" if agree < steps else "")
                          + f"; step error grows {_g(errors[0])} -> {_g(errors[(first or 1) - 1])} by then")
    if max_error is not None and j.compared_error() > max_error:
        upto = len(errors) if first is None else first
        over = next(t for t, e in enumerate(errors[:upto]) if not math.isnan(e) and e > max_error)
        worst = int(np.argmax([e if not math.isnan(e) else -1 for e in errors[:upto]]))
        largest = "" if worst == over else f"; largest {_g(errors[worst])} at step {worst + 1}"
        j.failures.append(f"step error {_g(errors[over])} at step {over + 1} > {_g(max_error)} (the first step over "
                          f"it{largest}; error grows {_g(errors[0])} -> {_g(errors[upto - 1])})")
    return j


def _g(x: float) -> str:
    return f"{x:.2g}"


def decoys(ref_outs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Trajectories a wrong artifact would give: zeros, another sample's (samples rolled by one), the mean over
    the samples at each step."""
    out = {"zeros": {k: np.zeros_like(v) for k, v in ref_outs.items()}}
    if next(iter(ref_outs.values())).shape[1] > 1:  # with one sample, another's and the mean are that sample's own
        out["another sample's trajectory"] = {k: np.roll(v, 1, axis=1) for k, v in ref_outs.items()}
        out["the mean over the samples"] = {k: np.broadcast_to(v.mean(axis=1, keepdims=True), v.shape).astype(v.dtype)
                                            for k, v in ref_outs.items()}
    return out


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], pairs: list[Pair], tier: str,
            gates: Gates) -> dict:
    """The ``ArtifactCheck.steps`` record of one target: its trajectory ``got`` against ``ref`` (both as
    ``trajectory`` returns them). ``failures`` lists why it fails (empty: it passes, or is not gated);
    ``uninformative`` says which decoy would pass the same gates (then the check proves nothing)."""
    _, ref_outs = split(ref)
    _, got_outs = split(got)
    steps, samples = next(iter(ref_outs.values())).shape[:2]
    agree, max_error = gates.for_tier(tier, int(steps), any(p.argmax for p in pairs))
    judged = judge(ref_outs, got_outs, pairs, agree, max_error)
    gated = bool(agree) or max_error is not None
    passing_decoys = [name for name, outs in decoys(ref_outs).items()
                      if gated and not judge(ref_outs, outs, pairs, agree, max_error).failures]
    return {"steps": int(steps), "samples": int(samples), "feedback": texts(pairs),
            "first_diverging_step": judged.first_diverging_step, "divergence": judged.divergence,
            "agree_steps": judged.agree_steps, "step_error": judged.errors, "step_max_abs": judged.max_abs,
            "gates": {"min_agree_steps": agree or None, "max_step_error": max_error, "tier": tier},
            "gated": gated, "failures": judged.failures,
            "uninformative": (f"a wrong trajectory ({', '.join(passing_decoys)}) passes the same gates"
                              if passing_decoys else None)}


def reason(record: dict) -> str:
    """The phrase appended to a failing check's reason."""
    if record.get("error"):
        return f"multi-step: {record['error']}"
    if record.get("failures"):
        return "multi-step: " + "; ".join(record["failures"])
    if record.get("uninformative"):
        return f"multi-step: uninformative: {record['uninformative']}"
    return ""


def summary(record: dict) -> str:
    """One line for reports: what the steps check found."""
    if record.get("skipped"):
        return f"not run: {record['skipped']}"
    partial = f" (partial: {record['partial']})" if record.get("partial") else ""
    if record.get("error"):
        return f"failed: {record['error']}"
    n = record["steps"]
    first = record.get("first_diverging_step")
    dec = "decisions agree on every step" if first is None else \
        f"decisions differ first at step {first} of {n}"
    errs = record.get("step_error") or []
    grow = f"; step error {_g(errs[0])} -> {_g(errs[-1])}" if errs else ""
    verdict = "FAIL" if record.get("failures") else ("UNINFORMATIVE" if record.get("uninformative") else
                                                   ("pass" if record.get("gated") else "reported, not gated"))
    return f"{verdict}: {n} steps x {record['samples']} samples, {dec}{grow}{partial}"
