"""The I/O contract: tensor specs, dynamic dims, layouts, seeded input generation and adaptation.

A contract is plain data (JSON in the manifest). The *source* contract names the model's inputs
and outputs in order, with shapes whose dynamic dims are named strings ("batch", "seq"), dtypes,
value ranges and layouts. An *artifact* contract adds, per tensor, the name the artifact uses,
the dtype it takes, and the axis permutation from the source layout (``perm``), so feeding an
artifact and reading it back are explicit and never guessed from values.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deploytool.core.errors import UsageError

INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
FLOAT_DTYPES = {"float16", "float32", "float64"}
DTYPES = INT_DTYPES | FLOAT_DTYPES | {"bool"}


class RangeError(UsageError, ValueError):
    """A range an integer input cannot take: a usage error where ``--input-range`` gave it (exit 2), a ValueError
    (a corrupt contract) where a bundle's manifest holds it."""


@dataclass
class TensorSpec:
    name: str
    shape: list  # ints, or strings naming a dynamic dim
    dtype: str
    range: list | None = None  # [low, high): integers drawn in it, floats uniform in it
    layout: str | None = None  # "NCHW", "NHWC", ... for image-like tensors
    kind: str | None = None  # "classifier" enables top-1 agreement
    # artifact side (absent in a source contract)
    artifact_name: str | None = None
    artifact_dtype: str | None = None
    perm: list | None = None  # source axes -> artifact axes (np.transpose argument)
    artifact_shape: list | None = None  # the shape as the artifact sees it (after perm)
    # [scale, zero_point] of an integer-quantized artifact tensor: real = (q - zero_point) * scale
    quant: list | None = None
    # where ``range`` came from, in words ("declared", "the example inputs", "embedding 'emb' (1000 rows)");
    # None with no range: an integer input is then drawn from [0, 2) only (weak coverage, checking/golden.py)
    range_from: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        spec = cls(**known)
        spec.validate()
        return spec

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"tensor spec needs a name, got {self.name!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"{self.name}: unknown dtype {self.dtype!r} (one of {', '.join(sorted(DTYPES))})")
        for d in self.shape:
            if not (isinstance(d, str) and d) and not (isinstance(d, int) and d >= 0):
                raise ValueError(f"{self.name}: shape entries are sizes or dim names, got {d!r}")
        if self.range is not None and (len(self.range) != 2 or not self.range[0] < self.range[1]):
            raise ValueError(f"{self.name}: range must be [low, high) with low < high, got {self.range!r}")
        if self.range is not None and self.dtype in INT_DTYPES:  # [0, 20.5) on token ids: no integer range
            if not all(float(v).is_integer() for v in self.range):
                lo, hi = self.range
                raise RangeError(f"--input-range {self.name}:{lo}:{hi}: {self.name} is an {self.dtype} input, so "
                                 "LOW and HIGH must be integers")
            self.range = [int(v) for v in self.range]

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def feed_name(self) -> str:
        return self.artifact_name or self.name

    def concrete_shape(self, dims: dict[str, int]) -> tuple[int, ...]:
        try:
            return tuple(dims[d] if isinstance(d, str) else d for d in self.shape)
        except KeyError as e:
            raise ValueError(f"{self.name}: no size given for dynamic dim {e.args[0]!r}") from None


@dataclass
class Contract:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    dims: dict[str, dict] = field(default_factory=dict)  # name -> {example, alt, min, max}
    fixed_dims: dict[str, int] = field(default_factory=dict)  # dims an artifact froze
    # input -> axes left at the size of a factory's example inputs (not declared): static in every artifact
    example_static: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> Contract:
        c = cls(
            inputs=[TensorSpec.from_dict(x) for x in d["inputs"]],
            outputs=[TensorSpec.from_dict(x) for x in d["outputs"]],
            dims={k: dict(v) for k, v in d.get("dims", {}).items()},
            fixed_dims=dict(d.get("fixed_dims", {})),
            example_static={k: [int(a) for a in v] for k, v in d.get("example_static", {}).items()},
        )
        c.validate()
        return c

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "dims": self.dims,
        }
        if self.fixed_dims:
            out["fixed_dims"] = self.fixed_dims
        if self.example_static:
            out["example_static"] = self.example_static
        return out

    def validate(self) -> None:
        for group in (self.inputs, self.outputs):
            names = [s.name for s in group]
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate tensor names in {names}")
        if not self.inputs or not self.outputs:
            raise ValueError("a contract needs at least one input and one output")
        for s in self.inputs + self.outputs:
            for d in s.shape:
                if isinstance(d, str) and d not in self.dims:
                    raise ValueError(f"{s.name}: dynamic dim {d!r} is not declared in dims")
        unknown = [n for n in self.example_static if n not in self.input_names]
        if unknown:
            raise ValueError(f"example_static names no input: {unknown}")

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def dim_sizes(self, which: str = "example", batch_one: bool = False) -> dict[str, int]:
        """Concrete sizes for every dynamic dim: its ``example`` or ``alt`` value (``batch`` -> 1 if asked)."""
        sizes = {name: int(spec.get(which, spec.get("example", 1))) for name, spec in self.dims.items()}
        sizes.update(self.fixed_dims)
        if batch_one and "batch" in sizes and "batch" not in self.fixed_dims:
            sizes["batch"] = 1
        return sizes

    def dynamic_dims(self) -> list[str]:
        return [d for d in self.dims if d not in self.fixed_dims]


def spec_from_graph(name: str, shape: list, dtype: str, dims: dict[str, dict], axis0_is_batch: bool = True,
                    image_layout: str | None = None) -> dict:
    """A tensor spec from a graph's own view of a tensor (an ONNX value, a TF signature entry).

    ``shape`` holds sizes, and None or a name for dynamic dims; an unnamed dynamic dim is named
    ``<tensor>_dim<axis>``, except a dynamic axis 0, which is the batch. New dims are declared in
    ``dims``: the batch uses 1 in golden samples and 3 in the second shape, other dims 16 and 24.
    A 4-D float tensor gets ``image_layout`` (NCHW for ONNX graphs, NHWC for TF ones).
    """
    out_shape: list[int | str] = []
    for axis, d in enumerate(shape):
        if isinstance(d, int) and d >= 0:
            out_shape.append(int(d))
            continue
        batch = axis == 0 and axis0_is_batch
        dim = d if isinstance(d, str) and d else ("batch" if batch else f"{name}_dim{axis}")
        dim = re.sub(r"\W", "_", dim)
        if dim not in dims:
            dims[dim] = {"example": 2 if batch else 16, "alt": 3 if batch else 24, "min": 1}
        out_shape.append(dim)
    spec = {"name": name, "shape": out_shape, "dtype": dtype}
    if image_layout and len(out_shape) == 4 and dtype.startswith("float"):
        spec["layout"] = image_layout
    return spec


def observed_range(a: np.ndarray) -> list | None:
    """The range [low, high) an example array spans (integers: [min, max + 1)); None where it holds fewer than
    two distinct values (nothing to learn a range from)."""
    a = np.asarray(a)
    if not a.size or a.dtype.kind not in "iuf" or (a.dtype.kind == "f" and not np.isfinite(a).all()):
        return None
    lo, hi = a.min(), a.max()
    if not lo < hi:
        return None
    return [int(lo), int(hi) + 1] if a.dtype.kind in "iu" else [float(lo), float(hi)]


def generate_inputs(contract: Contract, samples: int, seed: int, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Seeded golden inputs: for each input an array [samples, *shape]; integers inside their range."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in contract.inputs:
        shape = (samples, *spec.concrete_shape(dims))
        if spec.dtype in INT_DTYPES:
            lo, hi = spec.range if spec.range else (0, 2)
            out[spec.name] = rng.integers(int(lo), int(hi), size=shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            out[spec.name] = rng.random(shape) < 0.5
        else:
            lo, hi = spec.range if spec.range else (-1.0, 1.0)
            low, top = float_bounds(lo, hi, spec.dtype)  # a draw rounded to HIGH in the dtype is kept below it
            out[spec.name] = np.clip(rng.uniform(lo, hi, size=shape).astype(spec.dtype), low, top)
    return out


def float_bounds(lo: float, hi: float, dtype: str) -> tuple[np.floating, np.floating]:
    """The least and the largest value of ``dtype`` in the half-open range [lo, hi) (hi itself is outside it)."""
    t = np.dtype(dtype).type
    low, top = t(lo), t(hi)
    if float(low) < float(lo):
        low = np.nextafter(low, t(np.inf))
    if float(top) >= float(hi):
        top = np.nextafter(top, t(-np.inf))
    return low, top


def as_samples(contract: Contract, arrays: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """User data (``--data``, ``--calib-data``): arrays named as the contract's inputs, each
    [samples, *shape], or, where the first dim is dynamic, [N, ...] rows taken as N samples of
    batch 1. Other keys (``labels``) are left out; a mismatch is a ValueError naming the key."""
    shaped = {}
    for spec in contract.inputs:
        a = arrays.get(spec.name)
        if a is not None and spec.shape and isinstance(spec.shape[0], str) and a.ndim == len(spec.shape):
            a = a[:, None]  # rows -> samples of batch 1
        if a is not None:
            shaped[spec.name] = a
    extra = {k: v for k, v in arrays.items() if k not in shaped and not k.startswith("labels")}
    check_inputs(contract, {**shaped, **extra}, what)
    if not len(next(iter(shaped.values()))):
        raise ValueError(f"{what}: holds 0 samples")
    return shaped


def dims_of(contract: Contract, samples: dict[str, np.ndarray]) -> dict[str, int]:
    """The dynamic dims' sizes in [samples, *shape] arrays (as ``as_samples`` returns them)."""
    return {d: int(samples[s.name].shape[1 + i]) for s in contract.inputs for i, d in enumerate(s.shape)
            if isinstance(d, str)}


def check_inputs(contract: Contract, arrays: dict[str, np.ndarray], what: str) -> None:
    """Refuse sample arrays whose names, dtypes or ranks do not match the contract (one clear line)."""
    missing = [n for n in contract.input_names if n not in arrays]
    extra = [n for n in arrays if n not in contract.input_names]
    if missing or extra:
        raise ValueError(f"{what}: expected inputs {contract.input_names}, missing {missing}, unexpected {extra}")
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1:
        raise ValueError(f"{what}: inputs hold different sample counts {sorted(counts)}")
    for spec in contract.inputs:
        a = arrays[spec.name]
        if str(a.dtype) != spec.dtype:
            raise ValueError(f"{what}: input {spec.name!r} has dtype {a.dtype}, the contract says {spec.dtype}")
        if a.ndim != len(spec.shape) + 1:
            raise ValueError(f"{what}: input {spec.name!r} has shape {a.shape}; expected [samples, "
                             f"{', '.join(map(str, spec.shape))}]")
        for axis, d in enumerate(spec.shape):
            if isinstance(d, int) and a.shape[axis + 1] != d:
                raise ValueError(f"{what}: input {spec.name!r} has size {a.shape[axis + 1]} at axis {axis}, "
                                 f"the contract fixes it to {d}")


def inverse(perm: list[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


def to_artifact(contract: Contract, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Source-layout feeds -> the artifact's names, layout and dtypes, as its contract says."""
    out = {}
    for spec in contract.inputs:
        x = feeds[spec.name]
        if spec.perm:
            x = np.transpose(x, spec.perm)
        dtype = spec.artifact_dtype or spec.dtype
        if spec.quant:  # a quantized input takes integers: q = round(x / scale) + zero_point, saturated
            scale, zero = spec.quant
            info = np.iinfo(dtype)
            x = np.clip(np.round(np.asarray(x, np.float64) / scale) + zero, info.min, info.max)
        elif np.asarray(x).dtype.kind in "iu" and np.dtype(dtype).kind in "iu" and np.asarray(x).size:
            info = np.iinfo(dtype)  # an artifact that takes a narrower integer (TF.js: int32): never wrapped
            low, high = int(np.min(x)), int(np.max(x))
            if low < info.min or high > info.max:
                raise ValueError(f"input {spec.name!r} holds {low}..{high}; the artifact takes it as {dtype} "
                                 f"({info.min}..{info.max})")
        out[spec.feed_name] = np.ascontiguousarray(x.astype(dtype, copy=False))
    return out


def from_artifact(contract: Contract, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Artifact outputs -> source names and layout. A missing output is an error, never guessed."""
    result = {}
    for spec in contract.outputs:
        if spec.feed_name not in outputs:
            raise KeyError(f"artifact produced no output {spec.feed_name!r} (it has {sorted(outputs)})")
        y = np.asarray(outputs[spec.feed_name])
        if spec.perm:
            y = np.transpose(y, inverse(spec.perm))
        if spec.quant:  # back to the contract's real values and dtype
            scale, zero = spec.quant
            y = ((y.astype(np.float64) - zero) * scale).astype(spec.dtype)
        elif spec.artifact_dtype and str(y.dtype) == spec.artifact_dtype != spec.dtype and y.dtype.kind in "iu" \
                and np.can_cast(y.dtype, spec.dtype, "safe"):
            y = y.astype(spec.dtype)  # an artifact that computes a narrower integer (TF.js: int32), widened losslessly
        result[spec.name] = y
    return result


def channels_last_perm(rank: int) -> list[int]:
    """NC... -> N...C, the transpose onnx2tf applies to rank 3-5 tensors."""
    return [0, *range(2, rank), 1]


def layout_after(layout: str | None, perm: list[int] | None) -> str | None:
    if not layout or not perm:
        return layout
    return "".join(layout[i] for i in perm)


def shapes_match(shape: list, expected: list) -> bool:
    """Static sizes equal where both are known; None / names / -1 match anything."""
    if len(shape) != len(expected):
        return False
    for a, b in zip(shape, expected):
        if isinstance(a, int) and a >= 0 and isinstance(b, int) and a != b:
            return False
    return True


def parse_input_spec(text: str) -> dict:
    """``NAME:SHAPE:DTYPE`` with SHAPE as sizes and dim names joined by ' x ' or ',':
    ``ids:batch x seq:int64``, ``image:batch,3,224,224:float32``."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ValueError(f"--input {text!r}: expected NAME:SHAPE:DTYPE, e.g. 'ids:batch x seq:int64'")
    name, shape_text, dtype = (p.strip() for p in parts)
    dims = [d.strip() for d in shape_text.replace(",", " x ").split(" x ") if d.strip()] if shape_text.strip() else []
    shape = [int(d) if d.isdigit() else d for d in dims]
    if any(isinstance(d, str) and not d.isidentifier() for d in shape):
        raise ValueError(f"--input {text!r}: dims are sizes or identifiers (batch, seq), got {shape}")
    spec = TensorSpec(name=name, shape=shape, dtype=dtype)
    try:
        spec.validate()
    except ValueError as e:
        raise ValueError(f"--input {text!r}: {e}") from None
    return spec.to_dict()


def parse_range(text: str) -> tuple[str, list]:
    """``NAME:LOW:HIGH`` -> (name, [low, high)); integers stay integers."""
    parts = text.split(":")
    try:
        name, lo, hi = parts
        low, high = (int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in (lo, hi))
    except ValueError:
        raise ValueError(f"--input-range {text!r}: expected NAME:LOW:HIGH, e.g. 'ids:0:30522'") from None
    if not low < high:
        raise ValueError(f"--input-range {text!r}: LOW must be below HIGH")
    return name, [low, high]


def nonfinite_sample(arrays: dict[str, np.ndarray]) -> tuple[str, int] | None:
    """(name, first sample index) of a float array [samples, ...] holding NaN/Inf, or None."""
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
            return name, int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0][0])
    return None


def describe_sample(inputs: dict[str, np.ndarray], i: int) -> str:
    """A short description of golden sample ``i``: each input's shape and value range."""
    parts = []
    for name, a in inputs.items():
        x = np.asarray(a[i])
        parts.append(f"{name} {list(x.shape)} in [{x.min():.4g}, {x.max():.4g}]" if x.size else f"{name} (empty)")
    return ", ".join(parts)


def declared_mismatches(contract: Contract, declared: dict) -> list[str]:
    """Where an artifact's own declared I/O (``Runtime.describe``: {"inputs": [{name, dtype, shape}],
    "outputs": [...], "ordered": bool}) does not honour its contract: a tensor missing or extra,
    another dtype or rank, a different static size, and (where the artifact orders its I/O, as
    ONNX graphs do) another order. Empty when it honours it."""
    problems: list[str] = []
    for group, specs in (("input", contract.inputs), ("output", contract.outputs)):
        have = declared.get(f"{group}s", [])
        by_name = {d["name"]: d for d in have}
        wanted = [s.feed_name for s in specs]
        missing = [n for n in wanted if n not in by_name]
        extra = [d["name"] for d in have if d["name"] not in wanted]
        if missing or extra:
            problems.append(f"artifact {group}s {[d['name'] for d in have]}, the contract names {wanted}")
            continue
        if declared.get("ordered") and [d["name"] for d in have] != wanted:
            problems.append(f"artifact {group}s are in the order {[d['name'] for d in have]}, the contract's is "
                            f"{wanted}")
        for spec in specs:
            d = by_name[spec.feed_name]
            dtype = spec.artifact_dtype or spec.dtype
            if d.get("dtype") is not None and d["dtype"] != dtype:
                problems.append(f"{group} {spec.feed_name!r} is {d['dtype']}, the contract says {dtype}")
            shape = spec.artifact_shape or ([spec.shape[i] for i in spec.perm] if spec.perm else spec.shape)
            got = d.get("shape")
            if got is None:
                continue
            if len(got) != len(shape):
                problems.append(f"{group} {spec.feed_name!r} has rank {len(got)}, the contract's is {len(shape)}")
                continue
            for axis, (g, w) in enumerate(zip(got, shape)):
                w = contract.fixed_dims.get(w, w) if isinstance(w, str) else w
                if isinstance(g, int) and g >= 0 and isinstance(w, int) and g != w:
                    problems.append(f"{group} {spec.feed_name!r} has size {g} at axis {axis}, the contract's is {w}")
    return problems
