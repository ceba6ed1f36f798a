"""The one plug-in registry (``deploytool/registry.py``): modules of a package, then entry points of
other distributions; and a ``deploytool-x`` distribution that adds a runtime without editing
deploytool, seen by a fresh process that only has it on its path."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import result_of

import deploytool
from deploytool import registry

PACKAGE = Path(deploytool.__file__).parent
GROUP = "deploytool_test.things"


@pytest.fixture
def clean(monkeypatch):
    """A fresh problems list and origins map, so a test sees only its own."""
    monkeypatch.setattr(registry, "problems", [])
    monkeypatch.setattr(registry, "origins", {})


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _dist(root: Path, name: str, entry_points: str, modules: dict[str, str] | None = None) -> None:
    """A distribution on ``root`` as an installer leaves it: its modules and a ``*.dist-info`` folder."""
    info = f"{name.replace('-', '_')}-0.1.dist-info"
    _write(root, {**(modules or {}), f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
                  f"{info}/entry_points.txt": entry_points})


@pytest.fixture
def things(tmp_path, monkeypatch, request):
    """A package of plug-ins ``things_<test>`` on sys.path (``Thing(name, order)`` in its __init__),
    with a module per plug-in; returns (package name, folder, Thing)."""
    pkg = f"things_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    _write(tmp_path, {f"{pkg}/__init__.py": """
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Thing:
            name: str
            order: int = 0
        """})
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(pkg)
    yield pkg, tmp_path / pkg, module.Thing
    for key in [k for k in sys.modules if k == pkg or k.startswith(pkg + ".")]:
        del sys.modules[key]


def _module(folder: Path, name: str, body: str) -> None:
    pkg = folder.name
    (folder / f"{name}.py").write_text(f"from {pkg} import Thing\n\n{textwrap.dedent(body)}")


def test_finds_the_attribute_in_every_public_module(things, clean):
    pkg, folder, Thing = things
    _module(folder, "b", 'THING = Thing("beta")\n')
    _module(folder, "a", 'THING = Thing("alpha")\n')
    _module(folder, "helper", "def help(): pass\n")  # no THING: a helper, not a plug-in
    _module(folder, "_private", 'THING = Thing("hidden")\n')
    found = registry.discover(pkg, "THING", Thing, GROUP)
    assert list(found) == ["alpha", "beta"]  # by name unless told otherwise
    assert found["alpha"] == Thing("alpha")
    assert registry.origins[GROUP] == {"alpha": f"{pkg}.a", "beta": f"{pkg}.b"}
    assert registry.problems == []


def test_ordering_function_is_applied_to_modules_and_entry_points(things, clean, tmp_path):
    pkg, folder, Thing = things
    _module(folder, "a", 'THING = Thing("alpha", order=3)\n')
    _module(folder, "b", 'THING = Thing("beta", order=1)\n')
    _dist(tmp_path, "things-extra", f"[{GROUP}]\ngamma = things_extra:THING\n",
          {"things_extra.py": f'from {pkg} import Thing\nTHING = Thing("gamma", order=2)\n'})
    found = registry.discover(pkg, "THING", Thing, GROUP,
                              order=lambda f: dict(sorted(f.items(), key=lambda kv: (kv[1].order, kv[0]))))
    assert list(found) == ["beta", "gamma", "alpha"]
    assert registry.origins[GROUP]["gamma"] == "entry point gamma = things_extra:THING (things-extra 0.1)"


def test_two_modules_of_one_name_are_an_error_naming_both(things, clean):
    pkg, folder, Thing = things
    _module(folder, "one", 'THING = Thing("same")\n')
    _module(folder, "two", 'THING = Thing("same")\n')
    with pytest.raises(registry.DuplicateName, match=rf"'same': {pkg}\.one and {pkg}\.two"):
        registry.discover(pkg, "THING", Thing, GROUP)


def test_a_module_declaring_the_wrong_type_is_an_error(things, clean):
    pkg, folder, Thing = things
    _module(folder, "bad", 'THING = "not a thing"\n')
    with pytest.raises(TypeError, match=rf"{pkg}\.bad\.THING is a str, not a Thing"):
        registry.discover(pkg, "THING", Thing, GROUP)


def test_broken_entry_points_are_skipped_and_recorded(things, clean, tmp_path):
    pkg, folder, Thing = things
    _module(folder, "a", 'THING = Thing("alpha")\n')
    _dist(tmp_path, "things-bad", textwrap.dedent(f"""\
        [{GROUP}]
        crashes = things_bad_crash:THING
        missing = things_bad_nowhere:THING
        wrong = things_bad_wrong:THING
        module = things_bad_module
        renamed = things_bad_renamed:THING
        alpha = things_bad_alpha:THING
        good = things_bad_good:THING
        """), {
        "things_bad_crash.py": "raise RuntimeError('boom at import')\n",
        "things_bad_wrong.py": "THING = 42\n",
        "things_bad_module.py": f"from {pkg} import Thing\nTHING = Thing('module')\n",
        "things_bad_renamed.py": f"from {pkg} import Thing\nTHING = Thing('other')\n",
        "things_bad_alpha.py": f"from {pkg} import Thing\nTHING = Thing('alpha')\n",
        "things_bad_good.py": f"from {pkg} import Thing\nTHING = Thing('good')\n",
    })
    found = registry.discover(pkg, "THING", Thing, GROUP)
    assert list(found) == ["alpha", "good"]
    assert registry.origins[GROUP]["alpha"] == f"{pkg}.a"  # the built-in keeps its name
    said = {p.origin.split(" = ")[0].removeprefix("entry point "): p.reason for p in registry.problems}
    assert set(said) == {"crashes", "missing", "wrong", "module", "renamed", "alpha"}
    assert all(p.group == GROUP and "(things-bad 0.1)" in p.origin for p in registry.problems)
    assert said["crashes"] == "does not load: RuntimeError: boom at import"
    assert said["missing"].startswith("does not load: ModuleNotFoundError")
    assert said["wrong"] == "is a int, not a Thing"
    assert said["module"] == "is a module, not a Thing (point it at the module's THING: things_bad_module:THING)"
    assert said["renamed"].startswith("declares 'other'")
    assert said["alpha"] == f"'alpha' is already taken by {pkg}.a: skipped"
    assert str(registry.problems[0]).startswith(f"{GROUP}: entry point ")


def test_every_plugin_layer_is_one_registry():
    """Each built-in plug-in came from its own layer's folder, under that layer's entry-point group."""
    from deploytool.expose import EXPOSERS, Exposer
    from deploytool.formats import FORMATS
    from deploytool.runtimes import RUNTIMES
    from deploytool.sources import SOURCE_KINDS

    for layer, found in (("formats", FORMATS), ("runtimes", RUNTIMES), ("sources", SOURCE_KINDS),
                         ("exposers", EXPOSERS)):
        where = registry.origins[registry.GROUPS[layer]]
        assert list(where) == list(found), layer
        folder = "expose" if layer == "exposers" else layer
        assert all(o.startswith(f"deploytool.{folder}.") or o.startswith("entry point ") for o in where.values())
    # every exposer module declares itself (a new one without EXPOSER would be silently unused)
    for path in sorted((PACKAGE / "expose").glob("[!_]*.py")):
        declared = getattr(importlib.import_module(f"deploytool.expose.{path.stem}"), "EXPOSER", None)
        assert isinstance(declared, Exposer), path.name
    assert set(EXPOSERS) <= set(RUNTIMES)  # an exposer is for a runtime that exists


# --- a plug-in distribution: deploytool-x adds a runtime through an entry point ---------------------------------

PLUGIN = {
    "deploytool_x/__init__.py": '"""deploytool-x: more runtimes for deploytool."""\n',
    # onnxruntime's own load/run/describe under another name, and for onnx artifacts (Runtime.runs)
    "deploytool_x/runtime.py": """
        import dataclasses

        from deploytool.runtimes import onnxruntime as _ort

        RUNTIME = dataclasses.replace(_ort.RUNTIME, name="x_onnxruntime",
                                      description="onnxruntime, through the deploytool-x plug-in", runs=("onnx",))
        """,
}
PLUGIN_ENTRY_POINTS = "[deploytool.runtimes]\nx_onnxruntime = deploytool_x.runtime:RUNTIME\n"


def _plugin_path(tmp_path: Path) -> Path:
    root = tmp_path / "plugin"
    _dist(root, "deploytool-x", PLUGIN_ENTRY_POINTS, PLUGIN)
    return root


def _with_path(env: dict, root: Path) -> dict:
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))}


PROBE = """
import json
from deploytool import registry
from deploytool.runtimes import RUNTIMES
from deploytool.targets import runtimes_of
print(json.dumps({"runtimes": list(RUNTIMES), "onnx": runtimes_of("onnx"),
                  "origin": registry.origins["deploytool.runtimes"].get("x_onnxruntime"),
                  "problems": [str(p) for p in registry.problems]}))
"""


def _probe(env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_plugin_distribution_on_the_path_adds_a_runtime(tmp_path):
    got = _probe(_with_path(dict(os.environ), _plugin_path(tmp_path)))
    assert "x_onnxruntime" in got["runtimes"]
    assert got["onnx"][0] == "onnxruntime" and "x_onnxruntime" in got["onnx"]
    assert got["origin"] == "entry point x_onnxruntime = deploytool_x.runtime:RUNTIME (deploytool-x 0.1)"
    assert got["problems"] == []


def test_a_broken_plugin_distribution_does_not_break_deploytool(tmp_path):
    root = tmp_path / "broken"
    _dist(root, "deploytool-broken", "[deploytool.runtimes]\nbroken = deploytool_broken:RUNTIME\n",
          {"deploytool_broken.py": "import no_such_framework_here\n"})
    got = _probe(_with_path(dict(os.environ), root))
    assert "broken" not in got["runtimes"] and "onnxruntime" in got["runtimes"]
    assert got["problems"] == ["deploytool.runtimes: entry point broken = deploytool_broken:RUNTIME "
                               "(deploytool-broken 0.1): does not load: ModuleNotFoundError: "
                               "No module named 'no_such_framework_here'"]


@pytest.mark.slow
def test_validate_runs_an_onnx_artifact_on_the_plugin_runtime(run_cli, cli_env, tmp_path):
    out = tmp_path / "bundles"
    proc = run_cli("export", "--formats", "onnx", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundle = out / "digits_cnn"  # the default model
    env = _with_path(cli_env, _plugin_path(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "deploytool", "validate", str(bundle), "--runtime", "x_onnxruntime",
                           "--reports", str(tmp_path / "reports")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "reports/validation.json").read_text())
    assert result_of(report, "onnx", "x_onnxruntime")["status"] == "pass"
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("onnx") and "x_onnxruntime" in ln]
    assert rows and all("PASS" in r for r in rows), proc.stdout
