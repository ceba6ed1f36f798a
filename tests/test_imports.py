"""Every module imports on its own, in any order (no import cycles between the layers), and the
plug-in layers do not import one another. In process: fresh imports of deploytool only."""
from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import deploytool

PACKAGE = Path(deploytool.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "deploytool.")
                 if m.name not in ("deploytool.__main__",))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_on_its_own(module):
    saved = {k: v for k, v in sys.modules.items() if k == "deploytool" or k.startswith("deploytool.")}
    try:
        for k in saved:
            del sys.modules[k]
        importlib.import_module(module)
    finally:
        for k in [k for k in sys.modules if k == "deploytool" or k.startswith("deploytool.")]:
            del sys.modules[k]
        sys.modules.update(saved)


PLUGIN_LAYERS = ("formats", "runtimes", "sources")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("layer", PLUGIN_LAYERS)
def test_plugin_layers_import_only_their_own_registry_and_neutral_helpers(layer):
    others = [f"deploytool.{o}" for o in PLUGIN_LAYERS if o != layer]
    for path in sorted((PACKAGE / layer).glob("*.py")):
        bad = sorted(i for i in _imports(path) if any(i == o or i.startswith(o + ".") for o in others)
                     and i != "deploytool.sources.load_source")  # torch_eager runs the source: the registry's door
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"
