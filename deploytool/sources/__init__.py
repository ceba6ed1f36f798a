"""The source registry: one file per kind of source in this package, each defining ``SOURCE``.

A source kind says how a ``--model`` argument names it (``claim``: coordinator side, no framework
import), which framework it belongs to, which runtime runs it as the reference, which options
apply to it, and how its framework's worker loads it (``load`` -> ``LoadedModel``). Files whose
names start with ``_`` hold loading code shared by several kinds (``_torch.py``, ``_tf.py``) and
are not kinds themselves. Adding a source kind is adding a file here.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploytool import install
from deploytool.core.contract import Contract, RangeError
from deploytool.core.errors import ModelError, UsageError

# What each source framework's worker imports (preloaded while other work runs).
FRAMEWORKS: dict[str, tuple[str, ...]] = {"torch": ("torch",), "onnx": ("onnx", "onnxruntime"),
                                          "tensorflow": ("tensorflow", "keras")}


@dataclass
class SourceRef:
    """A resolved ``--model``: plain data (the manifest's ``model.source``)."""

    kind: str  # a SOURCE_KINDS key
    ref: str  # zoo name, absolute path, or module:factory
    name: str  # the bundle / model name
    framework: str = "torch"
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ref": self.ref, "name": self.name, "framework": self.framework, **self.details}


@dataclass
class LoadedModel:
    """A source loaded in its framework's worker (what every kind's ``load`` returns)."""

    module: Any  # the framework object formats convert from (None for file sources)
    contract: Contract
    example_inputs: tuple
    alt_inputs: tuple
    golden: Callable[[int, int, dict], dict[str, np.ndarray]]  # (samples, seed, dims) -> {input: [samples, *shape]}
    description: str
    reference: Callable[[dict], dict[str, np.ndarray]]  # inputs -> reference outputs
    path: Path | None = None  # the source file, for sources that are files (.onnx, .keras, SavedModel)
    versions: dict | None = None
    # (samples, seed, dims) -> calibration inputs, for the int8 formats; None: the source has none of its own
    calibration: Callable[[int, int, dict], dict[str, np.ndarray]] | None = None
    # () -> (inputs [samples, *shape], labels [samples], labelled output or None): data to measure task accuracy on
    labelled: Callable[[], tuple[dict[str, np.ndarray], np.ndarray, str | None]] | None = None
    # golden inputs [samples, *shape] -> (FLOPs of one sample, how they were counted); None: not counted
    flops: Callable[[dict[str, np.ndarray]], tuple[float, str]] | None = None
    golden_data: bool = False  # ``golden`` returns the source's own data (the ``data`` input family), not seeded


@dataclass(frozen=True)
class SourceKind:
    name: str
    framework: str  # a FRAMEWORKS key: which worker loads it
    description: str  # for --help
    order: int  # claims are tried in this order
    claim: Callable[[str], SourceRef | None]  # the --model argument -> a SourceRef, None if not this kind
    load: Callable[[dict], LoadedModel]  # inside the framework's worker: SourceRef.to_dict() -> LoadedModel
    reference_runtime: str  # the runtimes.RUNTIMES entry that runs the source itself
    takes_inputs: bool = False  # --input NAME:SHAPE:DTYPE
    takes_ranges: bool = True  # --input-range NAME:LOW:HIGH
    takes_weights: bool = False  # --weights FILE
    is_format: str | None = None  # the format this source already is, byte for byte (its own bench row)
    # The source as its reference runtime loads it: (path, contract) from (source, source contract, scratch dir).
    runnable: Callable[[dict, Contract, Path], tuple[Path, Contract]] = \
        lambda source, contract, work: (Path(source["ref"]), contract)
    # Why this source is not on this machine (its file is gone), or None.
    missing: Callable[[dict], str | None] = \
        lambda source: None if Path(source["ref"]).exists() else f"model file {source['ref']} is not on this machine"

    def unavailable(self, source: dict) -> str | None:
        """Why this source cannot be loaded on this machine, or None."""
        for package in FRAMEWORKS.get(self.framework, ()):
            if not _installed(package):
                return f"{package} is not installed ({install.hint(install.FRAMEWORK_EXTRAS[self.framework])})"
        return self.missing(source)


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _discover() -> dict[str, SourceKind]:
    """Every ``SOURCE`` of this package's modules and of ``deploytool.sources`` entry points (``registry``),
    in claim order (``order``, then name)."""
    from deploytool import registry

    return registry.discover(__name__, "SOURCE", SourceKind, registry.GROUPS["sources"],
                             order=lambda found: dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0]))))


def kind_of(source: dict) -> SourceKind:
    kind = SOURCE_KINDS.get(source.get("kind", ""))
    if kind is None:
        raise ModelError(f"unknown source kind {source.get('kind')!r} (this deploytool knows "
                         f"{', '.join(SOURCE_KINDS)})")
    return kind


def resolve(model: str, inputs: list[dict] | None = None, input_ranges: dict | None = None,
            weights: str | None = None) -> SourceRef:
    """A ``--model`` argument -> a SourceRef, by the first kind that claims it; options checked against it."""
    ref = next((r for k in SOURCE_KINDS.values() if (r := k.claim(model)) is not None), None)
    if ref is None:
        from deploytool.sources.zoo import zoo_names

        raise ModelError(f"unknown model {model!r}: the reference zoo has {', '.join(zoo_names())} (or pass "
                         "file.py:factory, a model .py file, an .onnx or .keras file, or a SavedModel directory)")
    kind = SOURCE_KINDS[ref.kind]
    if inputs and not kind.takes_inputs:
        raise ModelError(f"--input applies to factories (file.py:factory); {model} "
                         f"{'declares its own inputs' if kind.framework == 'torch' else 'states its inputs itself'}")
    if input_ranges and not kind.takes_ranges:
        raise ModelError(f"--input-range applies to factories and model files; {model} declares its own ranges")
    if weights:
        if not kind.takes_weights:
            raise ModelError(f"--weights applies to torch models, not to {model}")
        w = Path(weights).expanduser()
        if not w.is_file():
            raise ModelError(f"--weights {weights}: no such file")
        ref.details["weights"] = str(w.resolve())
    if inputs:
        ref.details["inputs"] = inputs
    if input_ranges:
        ref.details["input_ranges"] = input_ranges
    return ref


def load_source(source: dict) -> LoadedModel:
    """Inside the source framework's worker."""
    return kind_of(source).load(source)


def reference_runtime(source: dict) -> str:
    """The runtime that runs the source model itself (reference outputs, the bench baseline)."""
    return kind_of(source).reference_runtime


def graph_contract(what: str, inputs: list[dict], outputs: list[dict], dims: dict, ranges: dict | None) -> Contract:
    """The source contract of a model file whose graph states its I/O (ONNX, Keras, SavedModel):
    ``--input-range`` values applied to the inputs they name, rank-2 outputs of more than one
    column judged as classifiers (top-1 agreement)."""
    unknown = sorted(set(ranges or {}) - {i["name"] for i in inputs})
    if unknown:
        raise ModelError(f"{what}: --input-range names unknown inputs {unknown} "
                         f"(the graph has {[i['name'] for i in inputs]})")
    for i in inputs:
        if ranges and i["name"] in ranges:
            i["range"] = ranges[i["name"]]
    for o in outputs:
        o.pop("layout", None)
        if len(o["shape"]) == 2 and o["shape"][1] != 1:
            o["kind"] = "classifier"
    try:
        return Contract.from_dict({"inputs": inputs, "outputs": outputs, "dims": dims})
    except RangeError:  # the user's --input-range: a usage error (exit 2), not the model's
        raise
    except ValueError as e:
        raise ModelError(f"{what}: {e}") from None


def source_artifact(source: dict, contract: Contract, work: Path) -> tuple[str, Path, Contract]:
    """The source model as something a runtime can load: (runtime, path, contract). A torch source
    is run by torch_eager from a descriptor file (a module returns outputs by position:
    output_0..N); ONNX, Keras and SavedModel sources by their runtime from the file itself."""
    kind = kind_of(source)
    path, contract = kind.runnable(source, contract, work)
    return kind.reference_runtime, path, contract


def torch_runnable(source: dict, contract: Contract, work: Path) -> tuple[Path, Contract]:
    """A torch source for the torch_eager runtime: the source reference in a JSON file; a module
    returns its outputs by position (output_0..N)."""
    path = work / "source.json"
    path.write_text(json.dumps(source))
    contract = Contract.from_dict(contract.to_dict())
    for i, spec in enumerate(contract.outputs):
        spec.artifact_name = f"output_{i}"
    return path, contract


def source_loadable(source: dict) -> str | None:
    """Why the source model cannot be loaded here, or None when it can (whether it may be run at all:
    ``source_consent``)."""
    return kind_of(source).unavailable(source)


# The kinds whose loading runs no Python a bundle can choose: a zoo name is one of deploytool's own modules (a
# name it does not ship is refused), and an .onnx file, a .keras file (Keras' safe_mode, on by default, refuses
# code in it) and a SavedModel hold graphs, not Python. Any other kind (a model .py file, a factory, a kind
# from an entry point) runs the code its manifest names: only when the user names it too (``source_consent``).
CODE_FREE_KINDS = frozenset({"zoo", "onnx", "keras", "savedmodel"})


def source_consent(source: dict, given: str | None) -> str | None:
    """Why ``source`` (a bundle's ``model.source``, which may have travelled) may not be run here, or None when
    it may: it runs no Python the bundle names, or ``given`` (the user's ``--source``) names that same model."""
    if source.get("kind") in CODE_FREE_KINDS or (given is not None and _names(given, source)):
        return None
    return f"running the source model needs --source (the bundle names {source.get('ref')})"


def check_source_option(source: dict, given: str | None) -> None:
    """Refuse (UsageError, exit 2) a ``--source`` that does not name the bundle's source model: it allows
    running that model only, so it must be the same kind and reference (file paths compared resolved)."""
    ref = _given(given) if given is not None else None
    if ref is not None and (ref.kind, ref.ref) != (source.get("kind"), source.get("ref")):
        raise UsageError(f"--source {given}: names {ref.ref} ({ref.kind}), but the bundle's source model is "
                         f"{source.get('ref')} ({source.get('kind')}); --source allows running that model only")


def _given(given: str) -> SourceRef:
    """``--source MODEL``, read with ``--model``'s grammar (nothing imported or run); a bad one is exit 2."""
    try:
        return resolve(given)
    except ModelError as e:
        raise UsageError(f"--source {given}: {e}") from None


def _names(given: str, source: dict) -> bool:
    ref = _given(given)
    return (ref.kind, ref.ref) == (source.get("kind"), source.get("ref"))


SOURCE_KINDS: dict[str, SourceKind] = _discover()
