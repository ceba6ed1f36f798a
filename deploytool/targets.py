"""Which targets exist: the format and runtime registries joined (``core/target.py`` is the type).

An artifact of format F runs on every runtime in ``F.runtimes`` (the first is its default) and on
every runtime that names F in ``Runtime.runs``. ``validate`` and ``bench`` cover every such runtime
by default; ``--runtime NAME`` narrows them. Coordinator side: imports no framework.

The names given to ``--format`` and ``--runtime`` are read here, one grammar for every command (``select``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from deploytool.core.errors import UsageError, did_you_mean
from deploytool.core.target import NATIVE, Target
from deploytool.formats import FORMATS
from deploytool.runtimes import RUNTIMES


def runtimes_of(fmt: str) -> list[str]:
    """The runtimes that run format ``fmt``, its default first (an unknown format: none)."""
    f = FORMATS.get(fmt)
    declared = list(f.runtimes) if f is not None else []
    added = [name for name, rt in RUNTIMES.items() if fmt in rt.runs and name not in declared]
    return [r for r in declared if r in RUNTIMES or r == declared[0]] + added


def default_target(fmt: str) -> Target:
    return Target(fmt, FORMATS[fmt].runtime)


def default_runtime(fmt: str) -> str | None:
    f = FORMATS.get(fmt)
    return f.runtime if f is not None else None


def targets_of(fmt: str, runtimes: list[str] | None = None) -> list[Target]:
    """The targets of one artifact: every runtime that runs it, or those of ``runtimes`` that do."""
    return [Target(fmt, r, NATIVE) for r in runtimes_of(fmt) if runtimes is None or r in runtimes]


ALL = "all"  # as a --format / --runtime name: every one (the default)


def split_names(values: Iterable[str] | str | None) -> list[str]:
    """Names given repeated or comma-separated (``-f onnx,tflite_fp32 -f savedmodel``), in order."""
    values = [values] if isinstance(values, str) else values
    return [part.strip() for v in values or [] for part in v.split(",") if part.strip()]


def matches(name: str, names: Sequence[str]) -> list[str]:
    """The names ``name`` selects: itself, else every one it begins up to a '_' (``tflite``: tflite_fp32, ...)."""
    return [n for n in names if n == name] or [n for n in names if n.startswith(name + "_")]


def prefixes(names: Sequence[str]) -> list[str]:
    """The prefixes that select several of ``names`` without being one of them (``tflite``)."""
    heads = [n.split("_")[0] for n in names if "_" in n]
    return [h for h in dict.fromkeys(heads) if h not in names and heads.count(h) > 1]


def select(option: str, requested: Iterable[str] | str | None, available: Sequence[str], known: Iterable[str] = (),
           missing: str = "") -> list[str] | None:
    """The names of ``available`` that ``option``'s values select, in ``available``'s order; None when none is
    given or 'all' is. One grammar for every command: values repeated or comma-separated; a name selects itself,
    else every name it begins up to a '_' (``matches``). A value that selects nothing is a UsageError (exit 2, one
    line): ``missing`` (e.g. "the bundle has no such artifact") when it would select some of ``known``, else
    "no such format" with the valid names and the close ones."""
    names = split_names(requested)
    if not names or ALL in names:
        return None
    chosen: set[str] = set()
    for name in names:
        hits = matches(name, available)
        if not hits:
            raise UsageError(_selects_nothing(option, name, available, list(known), missing))
        chosen.update(hits)
    return [n for n in available if n in chosen]


def _selects_nothing(option: str, name: str, available: Sequence[str], known: list[str], missing: str) -> str:
    choices = ", ".join([*available, *(f"{p} (every {p}_*)" for p in prefixes(available))])
    if missing and matches(name, known):
        return f"{option} {name}: {missing} (it has {choices})"
    hint = did_you_mean(name, [*available, *prefixes(available)])
    return f"{option} {name}: no such {option.lstrip('-')}{hint}; one of: {choices}, {ALL}"


def format_names(requested: Iterable[str] | str | None, available: Sequence[str] | None = None,
                 missing: str = "") -> list[str] | None:
    """``--format`` values (``select``) against ``available`` (default: every format this deploytool knows)."""
    return select("--format", requested, list(FORMATS) if available is None else available, FORMATS, missing)


def check_runtimes(requested: Iterable[str] | str | None) -> list[str] | None:
    """``--runtime`` values (``select``): known runtimes, once each (UsageError otherwise); None: every runtime."""
    return select("--runtime", requested, list(RUNTIMES))


def parse(key: str) -> Target:
    """A target key from a result file or an option (a bare format name: its default runtime)."""
    return Target.parse(key, default_runtime(key.split("@")[0]))
