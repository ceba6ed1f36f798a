"""TensorFlow SavedModel converted from the ONNX artifact with onnx2tf; from a TensorFlow source,
the source itself (Keras ``Model.export``, or the source SavedModel directory copied as is).

onnx2tf rewrites rank 3-5 tensors channel-last (NCHW -> NHWC); the artifact contract records
the permutation per tensor, checked against the SavedModel's own signature, so validation feeds
and reads it explicitly. Outputs of the ``serving_default`` signature are named output_0..N in
the ONNX graph's output order (onnx2tf writes it with tf_keras' ExportArchive).

Names: TensorFlow takes only ``[A-Za-z][A-Za-z0-9_]*`` for a signature's inputs (it rewrites others its own way)
and onnx2tf fails on outputs holding a space ("not a valid scope name"); ONNX files from other frameworks name
tensors ``input/ids:0`` or ``1st input``. onnx2tf is therefore handed a copy whose inputs and outputs carry names
TensorFlow keeps (``tf_names``, decided once from the ONNX artifact's names), and the contract records each one as
the tensor's artifact name: every runtime feeds and reads the SavedModel and the TFLite files made from it by the
source's names.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploytool.core.contract import Contract, channels_last_perm, layout_after, shapes_match
from deploytool.core.errors import short_error
from deploytool.formats import ConversionRoute, ExportContext, ExportResult, Format, Route, convert_by_routes
from deploytool.store.bundle import onnx_external_data
from deploytool.tf_io import SIGNATURE, signature_output_keys

# onnx2tf 1.28 downloads calibration images from GitHub (utils/common_functions.py,
# download_test_image_data) whenever every input is 4-D with 3 channels, unless this file is in
# the working directory. It only feeds onnx2tf's own dummy inference, so a seeded stand-in with
# the same shape and [0, 1) range keeps the conversion offline and deterministic.
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _place_calibration_stand_in(workdir: Path) -> None:
    import numpy as np

    path = workdir / CALIBRATION_FILE
    if not path.exists():
        np.save(path, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _tf_shape(spec) -> list:
    return [d if d is not None else -1 for d in spec.shape.as_list()]


def savedmodel_contract(source: Contract, path: Path, keep_layout: bool = False,
                        names: dict[str, str] | None = None) -> Contract:
    """Map the source contract onto the SavedModel's serving signature (names, dtypes, layout). ``names``
    (artifact name -> signature name, as ``tf_names`` gave onnx2tf) says where each input is; without it
    (a TensorFlow source) the signature's names are the contract's, or TensorFlow's spelling of them."""
    import tensorflow as tf

    sig = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    sig_inputs = sig.structured_input_signature[1]
    sig_outputs = sig.structured_outputs
    contract = Contract.from_dict(source.to_dict())
    for spec in contract.inputs:
        key = spec.artifact_name or spec.name
        candidates = [names[key]] if names else [key, re.sub(r"[^A-Za-z0-9_]", "_", key), spec.name]
        found = next((c for c in candidates if c in sig_inputs), None)
        if found is None:
            raise RuntimeError(f"SavedModel signature has no input for {spec.name!r} (it has {sorted(sig_inputs)})")
        _map(spec, found, sig_inputs[found], keep_layout)
    # Outputs by name where the signature uses the contract's names (a SavedModel or Keras dict
    # source), else by position (output_0..N, as onnx2tf and Keras Model.export write them).
    by_name = all(s.name in sig_outputs for s in contract.outputs)
    out_keys = [s.name for s in contract.outputs] if by_name else signature_output_keys(sig_outputs)
    if len(out_keys) != len(contract.outputs):
        raise RuntimeError(f"SavedModel has outputs {out_keys}, the contract names {contract.output_names}")
    for spec, key in zip(contract.outputs, out_keys):
        _map(spec, key, sig_outputs[key], keep_layout)
    return contract


def _map(spec, key: str, tf_spec, keep_layout: bool) -> None:
    shape = _tf_shape(tf_spec)
    rank = len(spec.shape)
    perm = None
    if rank >= 3 and not keep_layout:
        perm = channels_last_perm(rank)
    expected = [spec.shape[i] for i in perm] if perm else spec.shape
    if not shapes_match(shape, expected):
        alt = list(spec.shape) if perm else [spec.shape[i] for i in channels_last_perm(rank)] if rank >= 3 else None
        if alt is not None and shapes_match(shape, alt):
            perm = None if perm else channels_last_perm(rank)
        else:
            raise RuntimeError(f"SavedModel tensor {key!r} has shape {shape}, not {expected} as "
                               f"{spec.name!r} {spec.shape} predicts")
    spec.artifact_name = key
    spec.artifact_dtype = tf_spec.dtype.name
    spec.perm = perm
    spec.artifact_shape = [spec.shape[i] for i in perm] if perm else None
    spec.layout = layout_after(spec.layout, perm) if spec.layout else ("channels_last" if perm else None)


def _convert(onnx2tf, kwargs: dict) -> None:
    """onnx2tf.convert, with its sys.exit(1) on some errors (e.g. "The specified *.onnx file does
    not exist") turned into an exception, so it fails this format instead of ending the worker."""
    try:
        onnx2tf.convert(**kwargs)
    except SystemExit as e:
        raise RuntimeError(f"onnx2tf exited with status {e.code} (see the log)") from None


UPGRADE_BELOW_OPSET = 11  # older files (classic ONNX-zoo ones) are upgraded before folding: onnx2tf targets 11+
UPGRADE_OPSET = 13


def _upgraded(model, notes: list[str]):
    """An old file (opset < 11, often IR 3, whose initializers are also listed as graph inputs) upgraded with
    ``onnx.version_converter`` to opset 13 and IR 7 (initializers no longer inputs); unchanged when it cannot be."""
    import onnx
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= UPGRADE_BELOW_OPSET:
        return model
    try:
        upgraded = version_converter.convert_version(model, UPGRADE_OPSET)
        ir_before = upgraded.ir_version
        upgraded.ir_version = max(upgraded.ir_version, 7)  # opset 13 needs IR >= 7; the converter keeps the old IR
        inits = {i.name for i in upgraded.graph.initializer}
        inputs = [v for v in upgraded.graph.input if v.name not in inits]
        del upgraded.graph.input[:]
        upgraded.graph.input.extend(inputs)
        onnx.checker.check_model(upgraded)
    except Exception as e:  # noqa: BLE001 - folding the file as it is is still worth a try
        why = str(e).splitlines()[0][:150] if str(e) else type(e).__name__
        notes.append(f"kept at opset {opset}: onnx.version_converter could not upgrade it ({why})")
        return model
    notes.append(f"upgraded from opset {opset} (IR {ir_before}) to opset {UPGRADE_OPSET} (IR {upgraded.ir_version}) "
                 "with onnx.version_converter before folding")
    return upgraded


def _folded_copy(src: Path, dest: Path, contract: Contract, fixed: dict[str, int]) -> list[str]:
    """``src`` constant-folded by onnxruntime's basic optimizer, with its dynamic input dims set to
    ``fixed`` (none: kept dynamic); returns notes on what was done besides folding.

    onnx2tf 1.28.8 fails on graphs whose weights or shapes are computed at run time: ONNX-zoo-style
    files whose Conv weights come out of ConstantOfShape/arithmetic ("axes don't match array", or a
    Conv whose kernel has no static shape), audio graphs, and the Shape -> Concat -> Expand/Reshape
    chains torch.export writes for transformers' attention masks (those need the dims fixed too).
    onnxruntime's basic optimizer (constant folding and redundant-node elimination; standard ONNX
    ops only) turns them into constants, which onnx2tf converts. Old files (opset < 11) are first
    upgraded with ``onnx.version_converter``.
    """
    import onnx
    import onnxruntime as ort

    notes: list[str] = []
    model = _upgraded(onnx.load(str(src)), notes)
    by_name = {s.feed_name: s for s in contract.inputs}
    for value in model.graph.input:
        spec = by_name.get(value.name)
        if spec is None:
            continue
        for d, dim in zip(spec.shape, value.type.tensor_type.shape.dim):
            if isinstance(d, str) and d in fixed:
                dim.Clear()
                dim.dim_value = int(fixed[d])
    onnx.save(model, str(dest))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(dest), options, providers=["CPUExecutionProvider"])
    custom = sorted({n.op_type for n in onnx.load(str(dest)).graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise RuntimeError(f"constant folding introduced non-standard ops {custom}")
    return notes


TF_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def tf_names(contract: Contract) -> dict[str, str]:
    """The name onnx2tf is handed for each input and output of an ONNX artifact of ``contract`` (artifact name ->
    name in the SavedModel): kept where TensorFlow keeps it, else spelled as TensorFlow's own sanitizer would
    (``input/ids:0`` -> ``input_ids_0``, ``1st input`` -> ``arg_1st_input``), with ``_2``, ``_3`` ... added where
    that spelling is another tensor's (``x.y`` beside ``x_y``), so no two tensors ever share a name."""
    names = [s.feed_name for s in contract.inputs + contract.outputs]
    taken = {n for n in names if TF_NAME.fullmatch(n)}
    out = {}
    for name in names:
        if TF_NAME.fullmatch(name):
            out[name] = name
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", name)
        base = base if TF_NAME.fullmatch(base) else f"arg_{base}"
        new, i = base, 1
        while new in taken:
            i += 1
            new = f"{base}_{i}"
        taken.add(new)
        out[name] = new
    return out


def renamed_note(contract: Contract) -> str | None:
    """The note naming the inputs the SavedModel knows by another name than the source's (None: none). Its
    outputs are output_0..N, always."""
    renamed = [f"{s.name!r} -> {s.artifact_name!r}" for s in contract.inputs if s.feed_name != s.name]
    return f"inputs named in TensorFlow as {', '.join(renamed)} (names TensorFlow keeps; fed by the source's names)" \
        if renamed else None


def _rename_copy(path: Path, names: dict[str, str]) -> None:
    """The ONNX copy at ``path`` with its inputs and outputs renamed (external data stays where it is)."""
    import onnx

    from deploytool.formats.onnx import rename_io

    mapping = {old: new for old, new in names.items() if old != new}
    if not mapping:
        return
    model = onnx.load(str(path), load_external_data=False)
    rename_io(model.graph, mapping)
    onnx.save(model, str(path))


@dataclass(frozen=True)
class Onnx2tf:
    """onnx2tf on one ONNX artifact, set up once: the SavedModel's routes and the TFLite formats' rebuilt
    routes (``_tflite``) both run it through here."""

    onnx_path: Path
    contract: Contract  # the ONNX artifact's
    workdir: Path  # scratch: the copies onnx2tf reads, its calibration stand-in, its empty replacement file
    keep_layout: bool = False
    pseudo_ops: tuple[str, ...] = ()  # onnx2tf ``replace_to_pseudo_operators`` names, e.g. ("erf",)

    def options(self) -> dict:
        """What the manifest records of how onnx2tf was called."""
        options: dict = {"output_signaturedefs": True, "non_verbose": True, "not_use_onnxsim": True,
                         "keep_layout": self.keep_layout, "calibration_stand_in": CALIBRATION_FILE,
                         "param_replacement_file": "(empty: onnx2tf's automatic search for one is off)"}
        if self.pseudo_ops:
            options["replace_to_pseudo_operators"] = list(self.pseudo_ops)
        renamed = {old: new for old, new in self.names().items() if old != new}
        if renamed:
            options["renamed"] = renamed
        return options

    def names(self) -> dict[str, str]:
        """Each ONNX input and output -> the name onnx2tf sees (``tf_names``)."""
        return tf_names(self.contract)

    def _kwargs(self, out: Path) -> dict:
        kwargs: dict = dict(output_folder_path=str(out.resolve()), output_signaturedefs=True, non_verbose=True)
        if self.keep_layout:
            # onnx2tf accepts only 3-5-D inputs here (an AssertionError otherwise); lower ranks are never transposed.
            kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = [self.names()[s.feed_name] for s in
                                                               self.contract.inputs if 3 <= len(s.shape) <= 5]
        kwargs["not_use_onnxsim"] = True  # onnxsim is not a dependency; onnx2tf would shell out to it and fail
        # onnx2tf 1.28.8, on any conversion error and without a parameter-replacement file, searches for one
        # itself ("Attempting automatic JSON generation", utils/json_auto_generator.py combine_fixes): on
        # transformers' BEiT it grew past 10 GB within two minutes and the kernel killed the worker. An empty
        # replacement file turns that search off, so a failed route fails at once, naming its node, and the next
        # route is tried.
        no_replacements = (self.workdir / "onnx2tf-no-replacements.json").resolve()
        no_replacements.write_text('{"format_version": 1, "operations": []}\n')
        kwargs["param_replacement_file"] = str(no_replacements)
        if self.pseudo_ops:
            kwargs["replace_to_pseudo_operators"] = list(self.pseudo_ops)
        return kwargs

    def convert(self, out: Path, copy: str, fix: dict[str, int] | None = None) -> list[str]:
        """onnx2tf into ``out`` from a copy of the ONNX file (``fix`` None), or from a constant-folded copy with
        the dims in ``fix`` fixed; returns notes on what was done besides folding."""
        import onnx2tf

        # onnx2tf writes a shape-inferred graph back over its input file (onnx2tf.py, "onnx.save(
        # estimated_graph, f=input_onnx_file_path)"): hand it a copy so the ONNX artifact stays
        # byte-identical to what torch.onnx wrote and what its hash in the manifest says.
        dest = (self.workdir / f"onnx2tf-input-{copy}.onnx").resolve()
        notes = [] if fix is None else _folded_copy(self.onnx_path, dest, self.contract, fix)
        if fix is None:
            shutil.copyfile(self.onnx_path, dest)
            for rel in onnx_external_data(self.onnx_path):  # the ONNX file's external data files, beside the copy
                (dest.parent / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.onnx_path.parent / rel, dest.parent / rel)
        _rename_copy(dest, self.names())
        _place_calibration_stand_in(self.workdir)
        with _cwd(self.workdir):
            _convert(onnx2tf, {**self._kwargs(out), "input_onnx_file_path": str(dest)})
        # onnx2tf also writes its own *.tflite files next to the SavedModel; the TFLite formats are
        # converted from the SavedModel itself so their lineage is exact, so drop these.
        for extra in Path(out).glob("*.tflite"):
            extra.unlink()
        return notes


def fixed_dims_note(fixed: dict[str, int], why: str) -> str:
    """The note a route that fixed dynamic dims leaves (the SavedModel's and the TFLite formats')."""
    return f"dims fixed: {', '.join(f'{d}={v}' for d, v in fixed.items())} ({why})"


def from_onnx(ctx: ExportContext) -> ExportResult:
    """onnx2tf on the ONNX artifact; where it fails, on a constant-folded copy; where that fails too and
    the graph has dynamic dims, on a folded copy with those dims fixed to the golden sizes (recorded,
    so the TFLite artifacts inherit them and the alt golden set is skipped, saying why)."""
    import onnx2tf
    import tensorflow as tf

    keep_layout = bool(ctx.options.get("keep_layout"))
    parent_path, parent_contract = ctx.parent()
    tool = Onnx2tf(parent_path, parent_contract, ctx.workdir, keep_layout)
    options = tool.options()
    sizes = parent_contract.dim_sizes("example", batch_one=True)
    fixed = {d: sizes[d] for d in parent_contract.dynamic_dims()}

    def convert(copy: str, fix: dict[str, int] | None = None) -> tuple[dict[str, int], list[str]]:
        return fix or {}, tool.convert(ctx.out_path, copy, fix)

    # The ordered routes: each one place, each tried only where the one before failed.
    routes = [ConversionRoute("direct", "onnx2tf on the ONNX artifact as it is", lambda: convert("direct")),
              ConversionRoute("folded", "onnx2tf on a copy constant-folded by onnxruntime's basic optimizer",
                              lambda: convert("folded", {}))]
    if fixed:
        routes.append(ConversionRoute("fixed-dims", f"onnx2tf on a folded copy with dims fixed to {fixed}",
                                      lambda: convert("static", fixed)))
    (fixed_by, notes), route = convert_by_routes(
        routes, lambda e, log: explain(e, log, ctx),
        before_retry=lambda: shutil.rmtree(ctx.out_path, ignore_errors=True))
    if fixed_by:
        reason = route.failed[0].split(": ", 1)[-1]
        notes.append(fixed_dims_note(fixed_by, f"onnx2tf could not convert the dynamic graph: {reason}"))
        options["fixed_dims"] = fixed_by
    contract = savedmodel_contract(parent_contract, ctx.out_path, keep_layout, tool.names())
    contract.fixed_dims = {**contract.fixed_dims, **fixed_by}
    notes += [n for n in [renamed_note(contract)] if n]
    notes += [f"{s.name}: layout {s.layout} (perm {s.perm})" for s in contract.inputs + contract.outputs if s.perm]
    return ExportResult(contract=contract, options=options, notes=notes, route=route,
                        exporter_version=f"onnx2tf {onnx2tf.__version__}, tensorflow {tf.__version__}")


def from_tf_source(ctx: ExportContext) -> ExportResult:
    """A TensorFlow source: Keras writes the SavedModel, or the source SavedModel is copied."""
    import tensorflow as tf

    if ctx.source_path is not None and ctx.source_path.is_dir():
        shutil.copytree(ctx.source_path, ctx.out_path)
        exporter, options = "source SavedModel (copied)", {"copied_from": str(ctx.source_path)}
    else:
        import keras

        ctx.model.export(str(ctx.out_path), format="tf_saved_model", verbose=False)
        exporter, options = f"keras {keras.__version__} Model.export", {"format": "tf_saved_model"}
    # TF's own layout: nothing to permute.
    contract = savedmodel_contract(ctx.contract, ctx.out_path, keep_layout=True)
    return ExportResult(contract=contract, exporter_version=f"tensorflow {tf.__version__}", options=options,
                        exporter=exporter)


def explain(exc: BaseException, log: str, ctx: ExportContext) -> str:
    # onnx2tf logs the failing node as "onnx_op_name: NAME" before re-raising; name it and its op.
    names = re.findall(r"onnx_op_name:\s*(\S+)", log)
    base = short_error(exc)
    detail = [ln.strip() for ln in str(exc).splitlines() if "must be" in ln or "shapes" in ln.lower()]
    if detail and detail[0] not in base:
        base = f"{base} ({detail[0][:200]})"
    if not names:
        return f"onnx2tf failed: {base}"
    name = names[-1]
    op = _op_type(ctx.parent_path, name)
    unnamed = re.fullmatch(r"sng_([A-Za-z]+)_\d+", name)  # sng4onnx names an unnamed node sng_<op>_<n>
    if not op and unnamed:
        op = f" ({unnamed.group(1)})"
    if not op and name.startswith("wa/"):  # onnx2tf renames a leading "/" (torch's node names) to "wa/"
        op, name = _op_type(ctx.parent_path, "/" + name[3:]), "/" + name[3:]
    # onnx2tf 1.28.8 converts Expand as ``input * tf.ones(shape, input.dtype)`` (ops/Expand.py),
    # which TensorFlow refuses for bool tensors (transformers' attention masks are bool Expands).
    if op == " (Expand)" and re.search(r"DataType bool|dtype=tf\.bool", str(exc)):
        base = f"onnx2tf converts Expand as a multiplication, which TensorFlow refuses for a bool tensor " \
               f"({type(exc).__name__})"
    # A Resize to a size computed from the input's shape (MobileViT's interpolate at a dynamic batch): onnx2tf
    # passes tf.image.resize a size tensor it cannot take.
    if op == " (Resize)" and "'size' must be a 1-D int32 Tensor" in str(exc):
        base = f"onnx2tf cannot convert a Resize whose output size is computed at run time ({type(exc).__name__})"
    # onnx2tf reads an input's static shape (kernel sizes, broadcast ranks) and crashes on None where it is
    # computed at run time (weights made by ConstantOfShape/arithmetic, shape chains of audio front ends).
    if re.search(r"'NoneType' object has no attribute 'shape'|object of type 'NoneType' has no len\(\)", str(exc)):
        base = f"onnx2tf needs a static shape for an input of this node, and it is computed at run time ({base})"
    if "Cannot take the length of shape with unknown rank" in str(exc):  # SegFormer's Transpose at a dynamic batch
        base = f"onnx2tf needs the rank of this node's input, and it is unknown (computed at run time; {base})"
    # e.g. LayerNormalization after a reshape whose shape is computed: its scale becomes tf.constant(shape=(None,))
    unknown = re.search(r"Eager execution of tf\.constant with unsupported shape.*?has (\d+) elements, but got "
                        r"`shape` (\([^)]*None[^)]*\))", str(exc), re.S)
    if unknown:
        base = (f"onnx2tf needs a static shape for an input of this node, and it is computed at run time "
                f"(a constant of {unknown.group(1)} elements given shape {unknown.group(2)}; {type(exc).__name__})")
    return f"onnx2tf failed at ONNX node {name!r}{op}: {base}"


def _op_type(onnx_path: Path | None, node_name: str) -> str:
    try:
        import onnx

        graph = onnx.load(str(onnx_path), load_external_data=False).graph
        op = next((n.op_type for n in graph.node if n.name == node_name), None)
        return f" ({op})" if op else ""
    except Exception:  # noqa: BLE001 - naming the op is a courtesy; the error itself is reported anyway
        return ""


FORMAT = Format(
    name="savedmodel",
    description="TensorFlow SavedModel (onnx2tf from the ONNX artifact), NHWC",
    suffix="_saved_model",
    parent="onnx",
    precision="fp32",
    tier="fp32",
    runtimes=("tensorflow",),
    stage="tensorflow",
    exporter="onnx2tf",
    requires=("onnx2tf", "tensorflow", "tf_keras", "onnx_graphsurgeon", "sng4onnx", "psutil"),
    convert=from_onnx,
    explain=explain,
    is_dir=True,
    routes={"tensorflow": Route(parent=None, stage="tensorflow", exporter="keras Model.export", convert=from_tf_source,
                                requires=("tensorflow",),
                                description="TensorFlow SavedModel (the TF source: Keras Model.export, or copied)")},
)
