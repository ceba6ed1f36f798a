"""The first diverging op of a failing hop: pure numpy, no framework.

When the judge blames a hop (parent artifact -> child artifact), the parent and the child are run
on the failing sample with their intermediate tensors exposed (``expose/``, in workers). This
module matches them and names the first op of the parent, in topological order, whose output the
child does not reproduce within the hop's tier.

Matching follows what onnx2tf's own check does (``-cotof``: every axis permutation of the
converted tensor whose shape equals the ONNX tensor's), since converters do not keep names:
onnx2tf 1.28.8's SavedModels name ops after Keras layers (``model/tf.nn.convolution_1/convolution``),
not ONNX nodes. A parent tensor *matches* when some child tensor of that shape, under some such
permutation, is within the tier (names, where they agree, are only tried first). Converters fuse
ops (Conv + bias + ReLU is one TFLite op; Gemm becomes MatMul, Mul, Add), so a parent tensor with no
counterpart is normal. A tensor is the first divergence when it has counterparts of its shape, none
within the tier, and nothing downstream of it matches again (a fused-away tensor's consumer does).

Bounded: tensors compared and bytes held are capped in the workers (``Limits``), candidates are
first screened on a fixed subsample of elements, and the whole search has a time budget.
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deploytool.checking import parity

SCREEN = 256  # elements compared first, before a candidate gets the full check


@dataclass(frozen=True)
class Limits:
    max_tensors: int = 2000  # intermediate tensors exposed per artifact
    max_bytes: int = 256 << 20  # bytes of intermediate tensors kept per artifact
    seconds: float = 60.0  # for the matching on the coordinator side

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Node:
    """One op: its name, type, input and output tensor names (as the runtime exposes them)."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]

    @classmethod
    def from_dict(cls, d: dict) -> Node:
        return cls(str(d["name"]), str(d["op_type"]), [str(x) for x in d["inputs"]], [str(x) for x in d["outputs"]])


@dataclass
class Finding:
    """The outcome: the first diverging op, or why none could be named."""

    hop: str
    localised: bool
    op_name: str | None = None
    op_type: str | None = None
    tensor: str | None = None  # the parent tensor (the op's output) that diverges
    child_tensor: str | None = None  # the closest child tensor of its shape
    permutation: list[int] | None = None  # child axes -> parent axes for that tensor
    max_abs: float | None = None
    cosine: float | None = None
    verdict: str | None = None  # parity's reason against the tier
    tier: str | None = None
    why: str | None = None  # why it could not localise
    sample: dict[str, Any] = field(default_factory=dict)  # {"set", "index"} the tensors were taken on
    compared: int = 0  # parent tensors compared
    matched: int = 0  # ... that the child reproduces within the tier
    unmapped: int = 0  # ... with no child tensor of their shape (fused or folded away)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None  # the matching's own time (the workers' is in their logs)

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        """One line for the table's note."""
        if not self.localised:
            return f"could not localise: {self.why}"
        where = f" vs {self.child_tensor}" if self.child_tensor else ""
        return (f"first diverging op: {self.op_type} {self.op_name!r} (output {self.tensor!r}{where}: "
                f"max abs {self.max_abs:.3g}, cosine {self.cosine:.4f})")


def topological(nodes: list[Node]) -> list[Node]:
    """Nodes in topological order (Kahn's algorithm; the given order breaks ties)."""
    producer = {t: i for i, n in enumerate(nodes) for t in n.outputs}
    deps = [{producer[t] for t in n.inputs if t in producer and producer[t] != i} for i, n in enumerate(nodes)]
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []
    heapq.heapify(ready)
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in users[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    seen = set(order)
    return [nodes[i] for i in order] + [n for i, n in enumerate(nodes) if i not in seen]  # cycles: as given


def input_dependent(nodes: list[Node], inputs: list[str]) -> list[str]:
    """Output tensors that depend on a graph input, in topological order (weights and constants do not)."""
    live = set(inputs)
    out = []
    for n in topological(nodes):
        if any(t in live for t in n.inputs):
            for t in n.outputs:
                if t not in live:
                    live.add(t)
                    out.append(t)
    return out


def permutations(child_shape: tuple, parent_shape: tuple) -> list[tuple[int, ...]]:
    """Axis permutations p with child.transpose(p).shape == parent shape (identity first); a
    reshape-free match only. Rank above 6 is tried as is only."""
    if len(child_shape) != len(parent_shape) or math.prod(child_shape) != math.prod(parent_shape):
        return []
    rank = len(child_shape)
    ident = tuple(range(rank))
    perms = [ident] + ([p for p in itertools.permutations(range(rank)) if p != ident] if rank <= 6 else [])
    return [p for p in perms if tuple(child_shape[i] for i in p) == tuple(parent_shape)]


def _screen(a: np.ndarray, b: np.ndarray, tier: parity.Tier) -> tuple[bool, float]:
    """A cheap test on the same SCREEN elements of both: (whether the candidate may pass, its max abs
    error there, a lower bound of the full one)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = np.abs(a64 - b64)
    low = float(np.max(diff)) if np.all(np.isfinite(diff)) else math.inf
    if tier.gate == "elementwise":
        return bool(np.all(diff <= tier.atol + tier.rtol * np.abs(b64))), low
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return bool(na == nb), low
    return float(np.dot(a64, b64) / (na * nb)) >= (tier.min_cosine or 0.0) - 0.2, low


def _child_index(multi: tuple, perm: tuple[int, ...], child_shape: tuple) -> np.ndarray:
    """Flat indices into the child of the parent's elements at ``multi`` when the child transposed by
    ``perm`` has the parent's shape (no copy of the child is made)."""
    axes: list = [None] * len(perm)
    for k, axis in enumerate(perm):
        axes[axis] = multi[k]
    return np.ravel_multi_index(tuple(axes), child_shape)


def _name_key(name: str) -> str:
    """A tensor name without a runtime's decorations: ``PartitionedCall/x:0`` -> ``x``."""
    for prefix in ("StatefulPartitionedCall/", "PartitionedCall/"):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name[:-2] if name.endswith(":0") else name


def locate(hop: str, parent_nodes: list[Node], parent_inputs: list[str], parent: dict[str, np.ndarray],
           child: dict[str, np.ndarray], tier: parity.Tier, seconds: float = Limits.seconds,
           exposed_all: bool = True) -> Finding:
    """The first parent op whose output the child does not reproduce within ``tier`` (see the module
    docstring). ``parent``/``child``: exposed tensors by name (one sample, each runtime's layout).
    ``exposed_all``: False when the parent's exposure was cut short by its limits."""
    t0 = time.monotonic()
    deadline = t0 + seconds
    finding = Finding(hop=hop, localised=False, tier=tier.name)
    order = [t for t in input_dependent(parent_nodes, parent_inputs) if t in parent]
    producer = {t: n for n in parent_nodes for t in n.outputs}
    consumers: dict[str, list[str]] = {}
    for n in parent_nodes:
        for t in n.inputs:
            consumers.setdefault(t, []).extend(n.outputs)
    by_shape: dict[tuple, list[str]] = {}
    by_key: dict[str, list[str]] = {}
    for name, arr in child.items():
        if arr.size >= 2:
            by_shape.setdefault(tuple(sorted(arr.shape)), []).append(name)
        for part in name.split(";"):  # TFLite names a fused tensor after every op it fused
            by_key.setdefault(_name_key(part), []).append(name)
    status: dict[str, str] = {}  # tensor -> match | diverge | unmapped
    best: dict[str, tuple] = {}  # diverging tensor -> (max_abs, verdict, child name, perm, metrics)
    timed_out = False
    for t in order:
        if time.monotonic() > deadline:
            timed_out = True
            break
        a = np.asarray(parent[t])
        if a.size < 2 or a.dtype.kind != "f":
            continue
        named = [c for c in by_key.get(_name_key(t), []) if c in child]
        pool = named + [c for c in by_shape.get(tuple(sorted(a.shape)), []) if c not in named]
        flat = np.linspace(0, a.size - 1, min(SCREEN, a.size)).astype(np.int64)
        multi = np.unravel_index(flat, a.shape)
        a_sub = a.reshape(-1)[flat]
        tried = False
        closest = None  # (max abs, verdict, child tensor, perm), fully compared
        nearest = None  # (screened max abs, child tensor, perm), not yet fully compared
        for c in pool:
            b = np.ascontiguousarray(child[c])
            for p in permutations(b.shape, a.shape):
                tried = True
                may_pass, low = _screen(a_sub, b.reshape(-1)[_child_index(multi, p, b.shape)], tier)
                if not may_pass:
                    if nearest is None or low < nearest[0]:
                        nearest = (low, c, p)
                    continue
                v = parity.check(np.transpose(b, p)[None], a[None], tier)
                if v.passed:
                    status[t] = "match"
                    break
                if closest is None or v.metrics.max_abs < closest[0]:
                    closest = (v.metrics.max_abs, v, c, p)
            if status.get(t) == "match":
                break
        if status.get(t) != "match" and nearest is not None and (closest is None or nearest[0] < closest[0]):
            _, c, p = nearest  # the closest by its screened elements: compared in full once, for the report
            v = parity.check(np.transpose(child[c], p)[None], a[None], tier)
            if closest is None or v.metrics.max_abs < closest[0]:
                closest = (v.metrics.max_abs, v, c, p)
        if status.get(t) == "match":
            finding.matched += 1
        elif tried and closest is not None:
            status[t] = "diverge"
            best[t] = closest
        else:
            status[t] = "unmapped"
            finding.unmapped += 1
        finding.compared += 1
    # Reverse topological pass: does anything downstream of a tensor match again?
    rematch: dict[str, bool] = {}
    for t in reversed(order):
        rematch[t] = any(status.get(u) == "match" or rematch.get(u, False) for u in consumers.get(t, []))
    for t in order:
        if status.get(t) == "diverge" and not rematch.get(t, False):
            max_abs, v, c, p = best[t]
            node = producer[t]
            finding.localised = True
            finding.op_name, finding.op_type, finding.tensor = node.name, node.op_type, t
            finding.child_tensor, finding.permutation = c, list(p)
            finding.max_abs, finding.cosine, finding.verdict = max_abs, v.metrics.cosine, v.reason
            break
    if timed_out:
        finding.notes.append(f"time budget of {seconds:g} s spent after {finding.compared} of {len(order)} tensors")
    if not exposed_all:
        finding.notes.append("the parent's intermediate tensors were cut short by the exposure limits")
    if not finding.localised:
        finding.why = _why(finding, len(order), timed_out, exposed_all, bool(child))
    finding.seconds = time.monotonic() - t0
    return finding


def _why(f: Finding, total: int, timed_out: bool, exposed_all: bool, child_any: bool) -> str:
    if total == 0:
        return "the parent exposed no intermediate tensors that depend on the input"
    if not child_any:
        return "the child exposed no intermediate float tensors"
    if timed_out:
        return f"time budget exceeded after {f.compared} of {total} tensors (none diverging so far)"
    if f.compared and f.unmapped == f.compared:
        return f"no intermediate tensor of the parent maps to one of the child ({f.compared} compared by shape)"
    if not exposed_all:
        return f"budget exceeded: the {f.compared} tensors within the exposure limits all match or are unmapped"
    return (f"every mappable tensor matches within the tier ({f.matched} matched, {f.unmapped} unmapped of "
            f"{f.compared}); the divergence is in a tensor that could not be mapped or in the output mapping")


def unavailable(hop: str, why: str) -> Finding:
    return Finding(hop=hop, localised=False, why=why)
