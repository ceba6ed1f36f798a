"""How a model comes in. The coordinator resolves a ``--model`` argument to a plain-data source
reference (no torch import); the worker that holds the framework loads it.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from deploytool.errors import ModelError


@dataclass
class SourceRef:
    kind: str  # "zoo", "file" (a zoo-style .py), "factory", "onnx", "keras", "savedmodel"
    ref: str  # zoo name or absolute path
    name: str  # the bundle / model name
    framework: str = "torch"
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ref": self.ref, "name": self.name, "framework": self.framework, **self.details}


def zoo_dir() -> Path:
    spec = importlib.util.find_spec("deploytool.models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the reference zoo (deploytool.models) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def zoo_names() -> list[str]:
    return sorted(p.stem for p in zoo_dir().glob("*.py") if not p.stem.startswith("_"))


def resolve(model: str, inputs: list[dict] | None = None, input_ranges: dict | None = None,
            weights: str | None = None) -> SourceRef:
    """A zoo name, a .py file written like a zoo module, ``file.py:factory`` or
    ``package.module:factory``, an .onnx file, a .keras file or a SavedModel directory."""
    ref = _resolve(model)
    if inputs and ref.kind != "factory":
        raise ModelError(f"--input applies to factories (file.py:factory); {model} "
                         f"{'declares its own inputs' if ref.kind in ('zoo', 'file') else 'states its inputs itself'}")
    if input_ranges and ref.kind in ("zoo", "file"):
        raise ModelError(f"--input-range applies to factories and model files; {model} declares its own ranges")
    if weights:
        if ref.framework != "torch":
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


def _resolve(model: str) -> SourceRef:
    names = zoo_names()
    target, sep, attr = model.rpartition(":")
    if sep and target and attr.isidentifier():
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise ModelError(f"model file {target}: no such file")
            return SourceRef(kind="factory", ref=f"{path.resolve()}:{attr}", name=path.stem,
                             details={"file": str(path.resolve()), "factory": attr})
        if all(part.isidentifier() for part in target.split(".")):
            return SourceRef(kind="factory", ref=f"{target}:{attr}", name=attr,
                             details={"module": target, "factory": attr})
        raise ModelError(f"--model {model!r}: expected file.py:factory or package.module:factory")
    if model in names:
        return SourceRef(kind="zoo", ref=model, name=model, details={"file": f"models/{model}.py"})
    for suffix, kind, framework in ((".onnx", "onnx", "onnx"), (".keras", "keras", "tensorflow")):
        if model.endswith(suffix):
            path = Path(model).expanduser()
            if not path.is_file():
                raise ModelError(f"model file {model}: no such file")
            return SourceRef(kind=kind, ref=str(path.resolve()), name=path.stem, framework=framework,
                             details={"file": str(path.resolve())})
    if Path(model).expanduser().is_dir():
        path = Path(model).expanduser()
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"model directory {model}: not a TensorFlow SavedModel (no saved_model.pb in it)")
        return SourceRef(kind="savedmodel", ref=str(path.resolve()), name=path.resolve().name,
                         framework="tensorflow", details={"file": str(path.resolve())})
    if model.endswith(".py") or "/" in model:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {model}: no such file")
        if path.suffix != ".py":
            raise ModelError(f"model file {model}: expected a .py file written like a models/ zoo module")
        return SourceRef(kind="file", ref=str(path.resolve()), name=path.stem, details={"file": str(path.resolve())})
    raise ModelError(f"unknown model {model!r}: the reference zoo has {', '.join(names)} (or pass file.py:factory, "
                     "a model .py file, an .onnx or .keras file, or a SavedModel directory)")


def graph_contract(what: str, inputs: list[dict], outputs: list[dict], dims: dict, ranges: dict | None):
    """The source contract of a model file whose graph states its I/O (ONNX, Keras, SavedModel):
    ``--input-range`` values applied to the inputs they name, rank-2 outputs of more than one
    column judged as classifiers (top-1 agreement)."""
    from deploytool.contract import Contract

    unknown = sorted(set(ranges or {}) - {i["name"] for i in inputs})
    if unknown:
        raise ModelError(f"{what}: --input-range names unknown inputs {unknown} "
                         f"(the graph has {[i['name'] for i in inputs]})")
    for i in inputs:
        if i["name"] in (ranges or {}):
            i["range"] = ranges[i["name"]]
    for o in outputs:
        o.pop("layout", None)
        if len(o["shape"]) == 2 and o["shape"][1] != 1:
            o["kind"] = "classifier"
    try:
        return Contract.from_dict({"inputs": inputs, "outputs": outputs, "dims": dims})
    except ValueError as e:
        raise ModelError(f"{what}: {e}") from None


# What each source framework's worker imports.
FRAMEWORK_PACKAGES = {"torch": ("torch",), "onnx": ("onnx", "onnxruntime"), "tensorflow": ("tensorflow", "keras")}


def reference_runtime(source: dict) -> str:
    """The runtime that runs the source model itself (reference outputs, the bench baseline)."""
    return {"onnx": "onnxruntime", "keras": "keras", "savedmodel": "tensorflow"}.get(source.get("kind"),
                                                                                     "torch_eager")


def loader(source: dict):
    """The module that loads this source inside its framework's worker."""
    import importlib

    framework = source.get("framework", "torch")
    return importlib.import_module({"onnx": "deploytool.sources.onnx_file",
                                    "tensorflow": "deploytool.sources.tf_model"}.get(framework,
                                                                                     "deploytool.sources.torch_module"))


def source_artifact(manifest: dict, work: Path) -> tuple[str, Path, dict]:
    """The source model as something a runtime can load: (runtime, path, contract). A torch source
    is run by torch_eager from a descriptor file (a module returns outputs by position:
    output_0..N); ONNX, Keras and SavedModel sources by their runtime from the file itself."""
    import json

    from deploytool.contract import Contract

    src = manifest["model"]["source"]
    contract = Contract.from_dict(manifest["contract"])
    if reference_runtime(src) != "torch_eager":  # a model file its runtime loads as it is
        return reference_runtime(src), Path(src["ref"]), contract.to_dict()
    path = work / "source.json"
    path.write_text(json.dumps(src))
    for i, spec in enumerate(contract.outputs):
        spec.artifact_name = f"output_{i}"
    return "torch_eager", path, contract.to_dict()


def source_loadable(manifest: dict) -> str | None:
    """Why the manifest's source model cannot be loaded here, or None when it can."""
    src = manifest["model"]["source"]
    for package in FRAMEWORK_PACKAGES.get(src.get("framework", "torch"), ()):
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{package} is not installed"
    if src.get("kind") == "zoo" and src.get("ref") not in zoo_names():
        return f"reference model {src.get('ref')!r} is not in this deploytool's zoo"
    if src.get("kind") in ("file", "onnx", "keras", "savedmodel") and not Path(src.get("ref", "")).exists():
        return f"model file {src.get('ref')} is not on this machine"
    return None
