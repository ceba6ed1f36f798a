"""Static checks of a user's model ``.py`` file, on the coordinator side, before any framework worker starts
(a torch worker takes seconds to start and import torch, so a typo would cost that before its one line).

The file is read with ``ast``, never run: it must parse and compile; ``file.py:factory`` must define
``factory`` at module level; a zoo-style file must define ``INPUTS``, ``OUTPUTS`` and ``build``. Each refusal
names the simplest form that would work. What only running the file tells (an ImportError inside it, a
factory that raises, a name made at run time: a module ``__getattr__``, a star import, ``globals()``) is
left to the worker, as is every file where names may be made at run time.
"""
from __future__ import annotations

import ast
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploytool.core.errors import ModelError

ZOO_ATTRS = ("INPUTS", "OUTPUTS", "build")  # what a zoo-style file defines (models/digits_cnn.py)
ZOO_EXAMPLE = "models/digits_cnn.py"
INPUT_EXAMPLE = "e.g. 'x:batch,3,224,224:float32'"
# Calls that can bind module names the source does not show (globals()["build"] = ...)
DYNAMIC_CALLS = frozenset({"globals", "locals", "vars", "exec", "eval"})


@dataclass(frozen=True)
class ModuleNames:
    """What a module binds at module level, as far as its source tells."""

    defined: frozenset[str]
    factories: tuple[str, ...]  # its public functions and classes, in file order: what could build the model
    dynamic: bool  # names may be made at run time: a missing name proves nothing


def check_factory(path: Path, shown: str, factory: str) -> None:
    """``shown:factory`` (``shown``: the path as the user gave it): refused when the file does not parse, or
    surely does not define ``factory``."""
    names = read(path, shown)
    if factory not in names.defined and not names.dynamic:
        zoo_style = all(a in names.defined for a in ZOO_ATTRS)
        raise ModelError(factory_missing(shown, factory, names.factories, zoo_style))


def check_zoo_file(path: Path, shown: str) -> None:
    """A .py file given as a zoo-style module: refused when it does not parse, or surely lacks a zoo attribute."""
    names = read(path, shown)
    missing = [a for a in ZOO_ATTRS if a not in names.defined]
    if missing and not names.dynamic:
        raise ModelError(zoo_missing(shown, missing, names.factories, sorted(names.defined)))


def factory_missing(shown: str, factory: str, factories: Sequence[str], zoo_style: bool = False) -> str:
    """Why ``shown:factory`` names nothing (``shown``: a file or a ``package.module``), and what to pass instead."""
    what = f"{'model file' if shown.endswith('.py') else 'module'} {shown} has no {factory!r}"
    close = difflib.get_close_matches(factory, factories, n=1)
    if close:
        return f"{what}: did you mean --model {shown}:{close[0]}?"
    if zoo_style:
        return f"{what}; it is written like a zoo module: pass --model {shown}"
    if factories:
        return f"{what}; its functions and classes: {', '.join(factories)} (pass --model {shown}:NAME)"
    return f"{what}, and defines no function or class that could build the model"


def zoo_missing(shown: str, missing: Sequence[str], factories: Sequence[str], defined: Sequence[str] = ()) -> str:
    """Why a .py file is not a zoo-style module, and the simplest form that would work: a misspelt attribute's
    right name, else ``file.py:factory``."""
    misspelt = {m: c[0] for m in missing if (c := difflib.get_close_matches(m, defined, n=1, cutoff=0.8))}
    guess = f"rename {', '.join(f'{v} to {k}' for k, v in misspelt.items())}" if misspelt else ""
    text = f"model file {shown} defines no {', '.join(missing)}"
    if len(misspelt) == len(missing):  # meant as a zoo-style file
        return f"{text}: {guess}"
    text = f"{text} ({guess + '; ' if guess else ''}a zoo-style file defines {', '.join(ZOO_ATTRS)}: see {ZOO_EXAMPLE})"
    if not factories:
        return f"{text}; or pass --model {shown}:FACTORY, naming a function that returns a torch.nn.Module"
    factory = "build" if "build" in factories else factories[0] if len(factories) == 1 else "FACTORY"
    choice = "" if factory != "FACTORY" else f" (FACTORY: one of {', '.join(factories)})"
    return (f"{text}; for a plain factory use --model {shown}:{factory}{choice} --input NAME:SHAPE:DTYPE "
            f"({INPUT_EXAMPLE}; none needed when it returns (module, example_inputs))")


def read(path: Path, shown: str) -> ModuleNames:
    """The names ``path`` binds at module level, read without running it; a file that does not compile is
    refused with its line."""
    try:
        source = path.read_bytes()
        tree = ast.parse(source, filename=shown)
        compile(tree, shown, "exec", dont_inherit=True)  # what only the compiler refuses: 'return' outside function
    except SyntaxError as e:
        line = f"line {e.lineno}: " if e.lineno else ""
        raise ModelError(f"model file {shown}: {line}syntax error: {e.msg}") from None
    except ValueError as e:  # null bytes (Python 3.11)
        raise ModelError(f"model file {shown}: not Python source: {e}") from None
    except OSError as e:
        raise ModelError(f"model file {shown}: cannot read it: {e.strerror or e}") from None
    defined: set[str] = set()
    factories: list[str] = []
    dynamic = False
    for stmt in tree.body:
        for node in _binding_nodes(stmt):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
                dynamic |= node.name == "__getattr__"  # PEP 562: any name may resolve
                if not node.name.startswith("_") and not isinstance(node, ast.AsyncFunctionDef):
                    factories.append(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                dynamic |= any(a.name == "*" for a in node.names)
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
            else:
                defined.add(_bound_name(node))
    for node in ast.walk(tree):  # anywhere in the file: 'global build' in a function, globals()[...] = ...
        if isinstance(node, ast.Global):
            defined.update(node.names)
        dynamic |= _dynamic(node)
    return ModuleNames(frozenset(defined), tuple(dict.fromkeys(factories)), dynamic)


def _binding_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a module-level statement that bind a module name (functions and classes are their own
    scope: not entered)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
        yield node
        return
    if _bound_name(node):
        yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.Lambda):
            yield from _binding_nodes(child)


def _bound_name(node: ast.AST) -> str:
    """The name a target, an ``except ... as``, or a ``case`` capture binds ('' for other nodes)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        return node.id
    if isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
        return node.name or ""
    if isinstance(node, ast.MatchMapping):
        return node.rest or ""
    return ""


def _dynamic(node: ast.AST) -> bool:
    """Whether ``node`` can bind module names its source does not show: ``globals()``, ``exec``,
    ``sys.modules[__name__]``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in DYNAMIC_CALLS
    return isinstance(node, ast.Attribute) and node.attr == "modules" and \
        isinstance(node.value, ast.Name) and node.value.id == "sys"
