"""The format registry: one file per format in this package, each defining ``FORMAT``.

A format declares everything about itself (name, artifact suffix, parent format, precision,
tolerance tier, runtime, exporting stage, required packages) and how it is converted. Its own
fields are its route from a torch source (``DEFAULT_FRAMEWORK``); ``routes`` maps any other
source framework to a ``Route`` that says how it is made there instead (from an ONNX file,
``onnx`` is the file itself; from a TensorFlow source, ``savedmodel`` is the root and ``onnx``
comes from it through tf2onnx). That is the one mechanism: a format made from the source model
itself (no parent) with no route for a framework cannot be made from that kind of source.
``plan(framework)`` is the registry as one source framework sees it. CLI choices, report rows and
test parameters all come from ``FORMATS``; adding a format is adding a file here. Format modules
must not import torch or TensorFlow at module level: the coordinator imports this registry.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from deploytool.core.contract import Contract
from deploytool.running.jobs import RouteTaken

T = TypeVar("T")
DEFAULT_FRAMEWORK = "torch"  # the source framework a format's own fields describe


@dataclass
class ExportContext:
    """What an export function gets inside its worker."""

    model_name: str
    contract: Contract  # the source contract
    out_path: Path  # where the artifact must be written (file or directory)
    workdir: Path  # scratch space, deleted with the staging directory
    model: Any = None  # the loaded source model (stages that hold it)
    source_path: Path | None = None  # the source file, when the source is a file of this format (.onnx)
    example_inputs: tuple = ()
    alt_inputs: tuple = ()  # inputs at the contract's alt dim sizes (shape-specialisation checks)
    parent_path: Path | None = None
    parent_contract: Contract | None = None
    options: dict = field(default_factory=dict)  # export options from the command line (keep_layout, ...)
    calibration: Path | None = None  # calibration inputs (.npz, source names and layout) for quantization
    framework: str = DEFAULT_FRAMEWORK  # the source's: which chain (``plan``) this format is made in

    def parent(self) -> tuple[Path, Contract]:
        """The parent artifact's path and contract (a format converted from a parent always gets both)."""
        if self.parent_path is None or self.parent_contract is None:
            raise RuntimeError("this format is converted from a parent artifact, and none was given")
        return self.parent_path, self.parent_contract

    def calibration_feeds(self, contract: Contract) -> list[dict]:
        """The calibration samples as feeds for an artifact of ``contract`` (its names, layout, dtypes)."""
        from deploytool.core import npz
        from deploytool.core.contract import to_artifact

        if self.calibration is None:
            raise RuntimeError("this format needs calibration data, and none was given")
        arrays = npz.load(self.calibration)
        n = len(next(iter(arrays.values())))
        return [to_artifact(contract, {k: v[i] for k, v in arrays.items()}) for i in range(n)]

    def source_file(self) -> Path:
        """The source model's file (for routes that start from a model file)."""
        if self.source_path is None:
            raise RuntimeError("this route starts from a source file, and the source is not one")
        return self.source_path


@dataclass
class ExportResult:
    contract: Contract  # the artifact's I/O contract
    exporter_version: str
    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exporter: str | None = None  # when it differs from the format's usual exporter
    route: RouteTaken | None = None  # set by convert_by_routes: which fallback route made it


def names_merged(contract: Contract) -> str | None:
    """Where an artifact knows two of the source's inputs (or outputs) by one name, that in words; None where
    each has its own. A converter that respells names (``x.y`` and ``x_y`` both ``x_y``) would otherwise feed one
    input's data to both, or read one output as two."""
    for group, specs in (("inputs", contract.inputs), ("outputs", contract.outputs)):
        by_name: dict[str, list[str]] = {}
        for spec in specs:
            by_name.setdefault(spec.feed_name, []).append(spec.name)
        merged = next(((name, sources) for name, sources in by_name.items() if len(sources) > 1), None)
        if merged:
            return (f"the artifact names {group} {' and '.join(map(repr, merged[1]))} alike ({merged[0]!r}), so "
                    "they cannot be fed or read apart; rename them in the source")
    return None


@dataclass(frozen=True)
class ConversionRoute:
    """One way of making an artifact, tried in order by ``convert_by_routes`` (e.g. torch.export,
    then the TorchScript-based exporter). Not to be confused with ``Route``: which chain a format
    takes from another source framework."""

    name: str  # recorded in the manifest, e.g. "dynamo"
    does: str  # what this route does differently, said in the log when it is tried
    run: Callable[[], Any]
    # why this route must not be tried after the previous route's error (None: try it)
    ruled_out: Callable[[BaseException], str | None] = lambda e: None


class RoutesFailed(Exception):
    """Every route failed; the message is the first route's reason, then the others', one line."""

    def __init__(self, failed: list[str]):
        self.failed = failed
        first = failed[0].split(": ", 1)[-1]
        rest = "; ".join(f"{r.split(': ', 1)[0]}: {r.split(': ', 1)[-1][:200]}" for r in failed[1:])
        super().__init__(f"{first} (fallback routes failed too: {rest})" if rest else first)


@contextlib.contextmanager
def tee_stdout():
    """Copy what Python prints (onnx2tf reports the failing node this way) into a buffer, while it
    still reaches the worker's log."""
    import io
    import sys

    buffer, real = io.StringIO(), sys.stdout

    class Tee(io.TextIOBase):
        def write(self, text):
            buffer.write(text)
            return real.write(text)

        def flush(self):
            real.flush()

    sys.stdout = Tee()
    try:
        yield buffer
    finally:
        sys.stdout = real


def convert_by_routes(routes: list[ConversionRoute], explain: Callable[[BaseException, str], str],
                      before_retry: Callable[[], None] = lambda: None) -> tuple[Any, RouteTaken]:
    """The first route that succeeds: (its result, which route it was and why each earlier one failed).
    ``explain(exception, what the route printed)`` gives a failure's one line; ``before_retry`` clears
    what a failed route left behind. All failing raises ``RoutesFailed`` (chained to the first error)."""
    failed: list[str] = []
    first: BaseException | None = None
    last: BaseException | None = None
    for i, route in enumerate(routes):
        why_not = route.ruled_out(last) if last is not None else None
        if why_not:
            failed.append(f"{route.name}: not tried: {why_not}")
            continue
        if i:
            print(f"=== deploytool: route {routes[i - 1].name} failed; trying route {route.name} "
                  f"({route.does}) ===", flush=True)
            before_retry()
        printed = None
        try:
            with tee_stdout() as printed:
                result = route.run()
        except Exception as e:  # noqa: BLE001 - a failed route is recorded, and the next one tried
            first, last = first or e, e
            try:
                reason = explain(e, printed.getvalue() if printed is not None else "")
            except Exception:  # noqa: BLE001 - an explainer must never hide the real error
                reason = f"{type(e).__name__}: {e}"
            failed.append(f"{route.name}: {' '.join(reason.split())}")
            continue
        return result, RouteTaken(name=route.name, failed=failed)
    raise RoutesFailed(failed) from first


@dataclass(frozen=True)
class Route:
    """How a format is made when the source is of another framework than its default chain's."""

    parent: str | None  # None: made from the source model itself, in the source's worker
    stage: str  # which worker makes it (a framework name; the source's own for parent None)
    exporter: str
    convert: Callable[[ExportContext], ExportResult]
    requires: tuple[str, ...] = ()
    explain: Callable[[BaseException, str, ExportContext], str] | None = None
    description: str | None = None


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    suffix: str  # appended to the model name under artifacts/
    parent: str | None  # format this one is converted from; None = the source model
    precision: str
    tier: str  # key into parity.TIERS
    # runtimes.RUNTIMES keys that run it; the first is its default (the one export checks it on and a
    # bare format name means). A runtime can also add itself to a format (``Runtime.runs``): the targets
    # of an artifact are both together (``deploytool.targets``).
    runtimes: tuple[str, ...]
    stage: str  # which worker family exports it: "torch" or "tensorflow"
    exporter: str  # what does the conversion, as shown to users
    requires: tuple[str, ...]  # import names needed to convert it
    convert: Callable[[ExportContext], ExportResult]
    # (exception, the worker's log since this export began, the context) -> one line naming the cause
    explain: Callable[[BaseException, str, ExportContext], str] | None = None
    is_dir: bool = False
    needs_calibration: bool = False  # made from calibration data (int8 activations); needs_data without it
    compare_to: str | None = None  # the full-precision sibling bench compares its speed and size with
    # its arithmetic where that differs from its stored ``precision``: "fp16" (fp16 accumulation, which only some CPUs
    # run), "fp32" (reduced-precision weights computed in fp32) (``platforms.executed_precision``)
    compute: str | None = None
    routes: dict[str, Route] = field(default_factory=dict)  # other source framework -> how it is made there
    # Set by plan(): why this format cannot be made from that plan's kind of source.
    not_applicable: str | None = None

    @property
    def runtime(self) -> str:
        """The default runtime."""
        return self.runtimes[0]

    def artifact_name(self, model: str) -> str:
        return f"{model}{self.suffix}"

    def missing_packages(self) -> list[str]:
        from deploytool import install

        return [p for p in self.requires if not install.installed(p)]


def _discover() -> dict[str, Format]:
    """Every ``FORMAT`` of this package's modules and of ``deploytool.formats`` entry points (``registry``)."""
    from deploytool import registry

    return registry.discover(__name__, "FORMAT", Format, registry.GROUPS["formats"], order=_ordered)


def _ordered(found: dict[str, Format]) -> dict[str, Format]:
    """Topological order: every parent before its children; siblings by name."""
    ordered: dict[str, Format] = {}
    remaining = dict(sorted(found.items()))
    while remaining:
        ready = [n for n, f in remaining.items() if f.parent is None or f.parent in ordered]
        if not ready:
            raise RuntimeError(f"formats with unknown or cyclic parents: {sorted(remaining)}")
        for n in ready:
            ordered[n] = remaining.pop(n)
    return ordered


def plan(framework: str = DEFAULT_FRAMEWORK) -> dict[str, Format]:
    """The registry as a source of ``framework`` sees it: each format with its route for that
    framework applied (parent, stage, exporter, convert function), in dependency order. A root
    format without a route for ``framework`` is marked ``not_applicable``."""
    routed = {}
    for name, fmt in FORMATS.items():
        route = fmt.routes.get(framework)
        if route is not None:
            fmt = dataclasses.replace(
                fmt, parent=route.parent, stage=route.stage, exporter=route.exporter, convert=route.convert,
                requires=route.requires or fmt.requires, explain=route.explain,
                description=route.description or fmt.description)
        elif fmt.parent is None and framework != DEFAULT_FRAMEWORK:
            made_from = sorted({DEFAULT_FRAMEWORK, *(f for f, r in fmt.routes.items() if r.parent is None)})
            fmt = dataclasses.replace(fmt, not_applicable=f"not applicable: made from {'/'.join(made_from)} "
                                                          f"models, the source is {framework}")
        routed[name] = fmt
    return _ordered(routed)


def lineage(name: str, framework: str = DEFAULT_FRAMEWORK) -> list[str]:
    """The chain of formats from the source to ``name``, inclusive (e.g. onnx, savedmodel, tflite_fp16)."""
    formats = plan(framework)
    chain = []
    cur: str | None = name
    while cur is not None:
        chain.append(cur)
        cur = formats[cur].parent
    return chain[::-1]


def resolve(requested: list[str] | None, framework: str = DEFAULT_FRAMEWORK) -> tuple[list[str], list[str]]:
    """Requested names -> (formats to export in dependency order, parents added to make them)."""
    formats = plan(framework)
    if not requested:
        return list(formats), []
    unknown = [n for n in requested if n not in formats]
    if unknown:
        raise KeyError(", ".join(unknown))
    wanted = {n for r in requested for n in lineage(r, framework)}
    added = sorted(wanted - set(requested))
    return [n for n in formats if n in wanted], added


def stage_order(names: list[str], formats: dict[str, Format]) -> list[str]:
    """``names`` (parents first) reordered so that the formats of one stage are made together where their parents
    allow: of the formats whose parent is made (or not being made), one of the stage running now is taken before
    one that would start another stage (else the first in ``names``' order). Without it, a format of another stage
    sorting between siblings (``tfjs`` between ``savedmodel`` and the ``tflite_*``) would split a stage in two
    workers."""
    order: list[str] = []
    pending = list(names)
    while pending:
        ready = [n for n in pending if formats[n].parent not in pending]
        current = formats[order[-1]].stage if order else None
        pick = next((n for n in ready if formats[n].stage == current), ready[0])
        order.append(pick)
        pending.remove(pick)
    return order


FORMATS: dict[str, Format] = _discover()
