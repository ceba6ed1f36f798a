"""Issue 15, fast lane: installs that fit the machine (extras, install hints, verified versions), the
[tool.deploytool] table of pyproject.toml, `deploytool config`, `deploytool doctor`, GitHub Actions
output and the example workflow. The end-to-end checks are in tests/test_ci_e2e.py."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from deploytool import config, doctor, install
from deploytool.cli import main
from deploytool.core import errors
from deploytool.report import github

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
HEAVY = ("torch", "tensorflow", "keras", "tf_keras", "onnx", "onnxruntime", "onnx2tf", "tf2onnx", "onnxscript",
         "ai_edge_litert", "openvino", "sklearn", "matplotlib", "model_signing", "onnx_graphsurgeon", "sng4onnx",
         "psutil")


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", req).group()).lower()  # type: ignore[union-attr]


def _expand(extra: str) -> set[str]:
    """The distributions an extra brings, following deploytool[...] self-references."""
    out: set[str] = set()
    for req in EXTRAS[extra]:
        m = re.match(r"deploytool\[([^\]]+)\]", req)
        if m:
            for sub in m.group(1).split(","):
                out |= _expand(sub.strip())
        else:
            out.add(_name(req))
    return out


# --- installs ------------------------------------------------------------------------------------------------

def test_core_is_minimal_and_extras_are_the_documented_ones():
    assert sorted(_name(r) for r in PYPROJECT["project"]["dependencies"]) == ["click", "numpy", "rich"]
    assert set(EXTRAS) == set(install.extras())
    assert _expand("litert") == {"ai-edge-litert"}
    assert {"torch", "tensorflow", "onnx2tf", "ai-edge-litert", "onnxruntime"} <= _expand("export")
    assert _expand("all") >= _expand("export") | _expand("report") | _expand("signing")


def test_every_package_of_the_source_tree_is_installed():
    """An installed (not editable) deploytool has every subpackage: pyproject lists them by hand."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "deploytool").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_every_install_hint_names_an_extra_that_exists():
    from deploytool.report import plots
    from deploytool.runtimes import RUNTIMES

    hints = [rt.install_hint for rt in RUNTIMES.values()] + [plots.INSTALL_HINT]
    hints += [install.hint(e) for e in install.FRAMEWORK_EXTRAS.values()]
    texts = [p.read_text() for p in sorted((ROOT / "deploytool").rglob("*.py"))]
    texts += [(ROOT / "README.md").read_text(), (ROOT / "examples/github-actions.yml").read_text(),
              (ROOT / ".ci/run").read_text()]
    named = {e.strip() for text in texts + hints for group in re.findall(r"deploytool\[([\w,\- ]+)\]", text)
             for e in group.split(",")}
    assert named and named <= set(EXTRAS), sorted(named - set(EXTRAS))
    for rt in RUNTIMES.values():
        assert re.fullmatch(r"pip install 'deploytool\[[\w-]+\]'", rt.install_hint), rt.install_hint
    # no hint in the code spelled another way ("pip install deploytool (torch)", "pip install ai-edge-litert")
    for text in texts[:-3]:
        for hint in re.findall(r"[\"(]pip install [^\"]*", text):
            assert re.match(r".pip install ('deploytool\[[\w{}-]+\]'|deploytool$)", hint), hint


def test_each_runtime_extra_brings_the_packages_its_runtime_imports():
    from deploytool.formats import FORMATS
    from deploytool.runtimes import RUNTIMES
    from deploytool.sources import FRAMEWORKS

    for rt in RUNTIMES.values():
        extra = doctor._runtime_extra(rt.install_hint)
        for package in rt.packages:
            assert install.distribution(package) in _expand(extra), (rt.name, extra)
    for framework, packages in FRAMEWORKS.items():
        for package in packages:
            assert install.distribution(package) in _expand(install.FRAMEWORK_EXTRAS[framework]), framework
    for fmt in FORMATS.values():
        for package in fmt.requires + tuple(p for r in fmt.routes.values() for p in r.requires):
            assert install.distribution(package) in _expand("export"), (fmt.name, package)


def test_verified_versions_come_from_the_pins():
    pins = install.verified()
    from deploytool.formats import FORMATS
    from deploytool.runtimes import RUNTIMES
    from deploytool.sources import FRAMEWORKS

    looked_for = [p for rt in RUNTIMES.values() for p in rt.packages] + \
        [p for f in FORMATS.values() for p in f.requires + tuple(q for r in f.routes.values() for q in r.requires)] + \
        [p for packages in FRAMEWORKS.values() for p in packages]
    for dist in {install.distribution(p) for p in looked_for}:
        assert _name(dist) in pins, dist
    assert pins["tensorflow"] == "==2.21.0" and pins["torch"] == "==2.13.0"
    assert install.matches("2.13.0+cpu", "==2.13.0") and install.matches("8.5.1", ">=8.4,<9")
    assert not install.matches("2.20.0", "==2.21.0") and not install.matches("9.0", ">=8.4,<9")


def test_readme_and_ci_install_all_and_test():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    assert "pip install -e '.[all]' && .venv/bin/deploytool setup && .venv/bin/deploytool export" in first
    test_command = ".venv/bin/pip install -e '.[all,test]' && .venv/bin/deploytool setup && .venv/bin/python -m pytest"
    assert test_command in readme and test_command in (ROOT / ".ci/run").read_text()
    assert "pip install 'deploytool[litert]'" in readme


def _blocked_env(*blocked: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "blockimports"), str(ROOT), env.get("PYTHONPATH")]))
    env["DEPLOYTOOL_BLOCK_IMPORTS"] = ",".join(blocked)
    return env


def test_the_core_imports_nothing_optional():
    """cli, api, commands, reader, signing, report, doctor and config import no framework, runtime or plotting
    package when imported (and work with all of them unimportable)."""
    code = ("import sys, pkgutil, importlib, deploytool\n"
            "mods = ['deploytool.cli', 'deploytool.api', 'deploytool.store.reader', 'deploytool.store.signing',"
            " 'deploytool.doctor', 'deploytool.config', 'deploytool.install', 'deploytool.report.github']\n"
            "mods += [m.name for m in pkgutil.walk_packages(deploytool.__path__, 'deploytool.')"
            " if m.name.startswith(('deploytool.commands', 'deploytool.report'))]\n"
            "for m in mods: importlib.import_module(m)\n"
            f"print(sorted(n for n in sys.modules if n.split('.')[0] in {HEAVY!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_blocked_env(*HEAVY),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- doctor --------------------------------------------------------------------------------------------------

def test_doctor_on_this_venv_is_ready_for_export_and_device():
    for role in ("export", "device"):
        outcome = doctor.run(role)
        assert outcome.exit_code == errors.OK, outcome.problems
        assert outcome.network_guard["works"] is True
    names = {c.distribution: c for c in outcome.components}
    assert names["tensorflow"].installed and names["tensorflow"].verified_ok is True
    # judged without importing them (in a fresh process: another test may have imported torch in this one)
    probe = ("import sys; from deploytool import doctor; doctor.run('export'); "
             "sys.exit(bool({'torch', 'tensorflow'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", probe], timeout=300).returncode == 0


def test_doctor_without_the_export_stack_is_unusable_and_says_what_to_install(tmp_path):
    env = _blocked_env("torch", "onnx2tf", "ai_edge_litert")
    proc = subprocess.run([sys.executable, "-m", "deploytool", "doctor", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == errors.UNUSABLE, proc.stderr
    found = json.loads(proc.stdout)
    assert found["role"] == "export" and found["network_guard"]["works"] is True
    assert "torch (framework) is not installed" in found["problems"]
    assert {"pip install 'deploytool[torch]'", "pip install 'deploytool[export]'",
            "pip install 'deploytool[litert]'"} <= set(found["install"])
    # device: the core and any runtime is enough
    proc = subprocess.run([sys.executable, "-m", "deploytool", "doctor", "--for", "device"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "device: ready" in proc.stdout and re.search(r"runtime litert\s+ai-edge-litert\s+missing", proc.stdout)
    # no runtime at all (every package of every registered runtime blocked): unusable for a device
    from deploytool.runtimes import RUNTIMES

    # (numpy is the core's own: a runtime naming it is made unusable by its other requirement, the npm packages)
    env = _blocked_env(*sorted({p.split(".")[0] for rt in RUNTIMES.values() for p in rt.packages} - {"numpy"}))
    env["DEPLOYTOOL_CACHE"] = str(tmp_path / "empty-cache")
    proc = subprocess.run([sys.executable, "-m", "deploytool", "doctor", "--for", "device"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == errors.UNUSABLE and "no runtime is installed" in proc.stderr
    assert "pip install 'deploytool[litert]'" in proc.stdout


def test_export_without_the_source_framework_names_the_extra(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deploytool", "export", "--out", str(tmp_path)], capture_output=True,
                          text=True, env=_blocked_env("torch"), timeout=120)
    assert proc.returncode == errors.MODEL
    assert proc.stderr.strip() == "deploytool: error: model 'digits_cnn': loading a torch source needs torch, not " \
                                  "installed here (pip install 'deploytool[export]')"
    assert not list(tmp_path.iterdir())


def test_doctor_usage():
    result = CliRunner().invoke(main, ["doctor", "--bundle", "x"])
    assert result.exit_code == errors.USAGE and "--bundle goes with --for device" in result.output
    result = CliRunner().invoke(main, ["doctor", "--for", "device", "--bundle", "/nonexistent/bundle"])
    assert result.exit_code == errors.BUNDLE


@pytest.mark.parametrize("machine,cpuinfo,expected", [
    ("x86_64", "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n", {"avx2": True, "avx512f": True,
                                                                         "avx512_vnni": True, "avx_vnni": False}),
    ("x86_64", "flags\t\t: fpu sse2 avx\n", {"avx2": False, "avx512f": False, "avx512_vnni": False}),
    ("aarch64", "Features\t: fp asimd evtstrm aes asimddp\n", {"neon": True, "dotprod": True, "sve": False}),
])
def test_cpu_features(machine, cpuinfo, expected):
    found = doctor.cpu_features(cpuinfo, machine)
    assert {k: found[k] for k in expected} == expected


def test_exit_code_11_is_documented():
    readme = (ROOT / "README.md").read_text()
    assert f"| {errors.UNUSABLE} | doctor:" in readme and "first of 3, 8, 11," in readme
    assert errors.worst([errors.UNUSABLE, errors.PARITY]) == errors.UNUSABLE
    assert f"  {errors.UNUSABLE}  doctor" in CliRunner().invoke(main, ["doctor", "--help"]).output


# --- [tool.deploytool] in pyproject.toml ---------------------------------------------------------------------

def _project(tmp_path: Path, table: str, with_inner_pyproject: str | None = None) -> Path:
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "mine"\n\n{table}')
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    if with_inner_pyproject is not None:
        (tmp_path / "src" / "pyproject.toml").write_text(with_inner_pyproject)
    return deep


def test_pyproject_found_from_a_subdirectory_passing_over_those_without_the_table(tmp_path, monkeypatch):
    monkeypatch.delenv(config.NO_PYPROJECT_ENV)
    deep = _project(tmp_path, "[tool.deploytool.export]\nsamples = 8\n", '[tool.ruff]\nline-length = 100\n')
    assert config.find_pyproject(deep) == tmp_path / "pyproject.toml"
    (tmp_path / "src" / "pyproject.toml").write_text('[tool.deploytool.export]\nsamples = 4\n')
    assert config.find_pyproject(deep) == tmp_path / "src" / "pyproject.toml"  # the nearest with a table wins
    monkeypatch.setenv(config.NO_PYPROJECT_ENV, "1")
    assert config.find_pyproject(deep) is None


def test_precedence_command_line_then_config_file_then_pyproject(tmp_path, monkeypatch):
    monkeypatch.delenv(config.NO_PYPROJECT_ENV)
    deep = _project(tmp_path, '[tool.deploytool.export]\nformats = ["from_pyproject"]\nsamples = 8\nseed = 5\n'
                              'out = "build/bundles"\n')
    (tmp_path / "ci.toml").write_text('[export]\nformats = "from_config"\nsamples = 4\n')
    monkeypatch.chdir(deep)
    runner = CliRunner()
    # the real command reads them: the error names the formats value that won
    result = runner.invoke(main, ["export"])
    assert result.exit_code == errors.USAGE and "--format from_pyproject: no such format" in result.output
    result = runner.invoke(main, ["export", "--config", str(tmp_path / "ci.toml")])
    assert "--format from_config: no such format" in result.output
    result = runner.invoke(main, ["export", "--config", str(tmp_path / "ci.toml"), "--formats", "from_cli"])
    assert "--format from_cli: no such format" in result.output
    # `deploytool config` shows each value and where it came from
    result = runner.invoke(main, ["config", "--json", "--config", str(tmp_path / "ci.toml"), "export", "--seed", "9"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    opts = shown["commands"]["export"]
    assert shown["pyproject"] == str(tmp_path / "pyproject.toml")
    assert opts["seed"] == {"value": 9, "from": "command line"}
    assert opts["samples"] == {"value": 4, "from": f"--config {tmp_path / 'ci.toml'}"}
    assert opts["format"]["value"] == ["from_config"]
    assert opts["out"] == {"value": str(tmp_path / "build/bundles"), "from": f"pyproject {tmp_path / 'pyproject.toml'}"}
    assert opts["model"] == {"value": "digits_cnn", "from": "default"}
    text = runner.invoke(main, ["config", "export"]).output
    assert re.search(r"samples\s+8\s+pyproject ", text) and re.search(r"seed\s+5\s+pyproject ", text)


def test_a_bad_pyproject_table_is_a_usage_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(config.NO_PYPROJECT_ENV)
    deep = _project(tmp_path, "[tool.deploytool.validate]\nno-such-option = 1\n")
    monkeypatch.chdir(deep)
    result = CliRunner().invoke(main, ["validate", "anything"])
    assert result.exit_code == errors.USAGE
    where = f"{tmp_path / 'pyproject.toml'} [tool.deploytool]"
    assert f"{where}: [validate] has no option 'no-such-option'" in result.output
    (tmp_path / "pyproject.toml").write_text("[tool.deploytool.exprot]\nsamples = 3\n")
    result = CliRunner().invoke(main, ["export", "--formats", "x"])
    assert result.exit_code == errors.USAGE and "unknown table(s) ['exprot']" in result.output


def test_the_suite_is_isolated_from_where_it_runs():
    assert os.environ.get(config.NO_PYPROJECT_ENV) == "1"
    assert not [k for k in os.environ if k.startswith("GITHUB_")]
    assert not github.enabled(False)


# --- GitHub Actions output -----------------------------------------------------------------------------------

def test_annotations_name_format_hop_and_metric_and_are_escaped():
    from deploytool.results import ArtifactCheck
    from deploytool.running.jobs import ArtifactStatus, CheckStatus

    verdict = {"passed": False, "reason": "max_abs 3.1e-02 > atol 1e-04, 5% of elements out"}
    chk = ArtifactCheck("savedmodel", "tensorflow", CheckStatus.FAIL, reason="logits: max_abs 3.1e-02",
                        hop_blamed="onnx -> savedmodel", sets={"main": {"logits": verdict}}, hop={})
    manifest = SimpleNamespace(artifacts={
        "savedmodel": SimpleNamespace(status=ArtifactStatus.OK, runtime="tensorflow", error=None),
        "onnx": SimpleNamespace(status=ArtifactStatus.OK, runtime="onnxruntime", error=None),
        "tflite_fp16": SimpleNamespace(status=ArtifactStatus.FAILED, runtime="litert", error="line 1\nline 2, 50%"),
    })
    ok = ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS)
    lines = github.check_annotations("m", manifest, {"savedmodel@tensorflow": chk, "onnx@onnxruntime": ok})
    assert len(lines) == 2
    assert lines[0] == "::error title=deploytool m/tflite_fp16%3A export failed::tflite_fp16 (litert): line 1%0Aline " \
                       "2, 50%25"
    assert lines[1] == "::error title=deploytool m/savedmodel%3A fail::savedmodel on tensorflow: FAIL; " \
                       "error appears at hop onnx -> savedmodel; metric main/logits: max_abs 3.1e-02 > atol 1e-04, " \
                       "5%25 of elements out"
    from deploytool.results import Comparison

    bench = github.bench_annotations("m", [], [Comparison("onnx", "openvino", 1, 1, ratio=1.3, regression=True)], 1.1)
    assert bench == ["::error title=deploytool m/onnx@openvino%3A latency regression::onnx@openvino (threads=1, "
                     "batch=1): metric p50 1.30x the baseline's (threshold 1.1)"]


@pytest.mark.parametrize("status", ["fail", "error", "corrupt", "not_exported", "vacuous"])
def test_every_failing_check_is_annotated_and_no_other(status):
    from deploytool.running.jobs import FAILING_CHECKS, ArtifactStatus, CheckStatus

    manifest = SimpleNamespace(artifacts={"onnx": SimpleNamespace(status=ArtifactStatus.OK, runtime="onnxruntime",
                                                                  error=None)})

    def annotations(st):
        from deploytool.results import ArtifactCheck

        chk = ArtifactCheck("onnx", "onnxruntime", CheckStatus(st), reason="reference output is constant")
        return github.check_annotations("m", manifest, {chk.key: chk})

    assert CheckStatus(status) in FAILING_CHECKS
    assert annotations(status) == [f"::error title=deploytool m/onnx%3A {status}::onnx on onnxruntime: "
                                   f"{status.upper()}; reference output is constant"]
    for other in set(CheckStatus) - set(FAILING_CHECKS):
        assert annotations(other) == [], other


def test_step_summary_is_appended(tmp_path, monkeypatch):
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert github.append_summary("# deploytool report: m\n") == target
    assert target.read_text() == "earlier step\n# deploytool report: m\n\n"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert github.enabled(False)


def _workflow_commands() -> list[tuple[str, list[str]]]:
    import yaml

    flow = yaml.safe_load((ROOT / "examples/github-actions.yml").read_text())
    found = []
    for job_name, job in flow["jobs"].items():
        matrices = (job.get("strategy") or {}).get("matrix", {}).get("include") or [{}]
        for step in job["steps"]:
            script = step.get("run")
            if not script:
                continue
            for entry in matrices:
                text = re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m, e=entry: str(e[m.group(1)]), script)
                text = re.sub(r"\$\{\{[^}]*\}\}", "X", text).replace("\\\n", " ")
                for line in text.splitlines():
                    words = shlex.split(line, comments=True)
                    if words and words[0] == "deploytool":
                        found.append((job_name, words[1:]))
    return found


def test_example_workflow_runs_only_commands_and_options_that_exist():
    pytest.importorskip("yaml", reason="PyYAML is in the test extra")
    commands = _workflow_commands()
    used = {args[0] for _, args in commands}
    assert {"export", "validate", "bench", "report", "doctor"} <= used
    for job, args in commands:
        cmd = main.commands.get(args[0])
        assert cmd is not None, f"{job}: deploytool {args[0]} does not exist"
        cmd.make_context(args[0], args[1:])  # raises on an unknown option, a missing or extra argument
    assert any(a[0] == "bench" and "--compare" in a for _, a in commands)
    assert any(a[0] == "validate" and "--strict" in a for _, a in commands)


# --- pytest plugin -------------------------------------------------------------------------------------------

def test_pytest_plugin_registers_its_marker_and_fixture_without_touching_the_suites(pytester):
    pytester.makepyfile("""
        import pytest
        from deploytool.pytest_plugin import DeployTool

        @pytest.mark.deploytool_export
        def test_marked(deploytool):
            assert isinstance(deploytool, DeployTool)

        def test_unmarked(deploytool):
            assert deploytool.tmp_path.is_dir()
    """)
    result = pytester.runpytest("-p", "deploytool.pytest_plugin", "--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result = pytester.runpytest("-p", "deploytool.pytest_plugin", "--strict-markers", "-m", "not deploytool_export",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=1)
    markers = pytester.runpytest("-p", "deploytool.pytest_plugin", "--markers").stdout.str()
    assert "@pytest.mark.deploytool_export:" in markers and "@pytest.mark.slow" not in markers


def test_entry_point_is_declared():
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {"deploytool.pytest_plugin": "deploytool.pytest_plugin"}
