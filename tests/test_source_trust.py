"""A bundle names its source model (``manifest.model.source``), and a bundle may have travelled: reading it must
never run Python it names (a model .py file, a factory) unless the user names that model too (``--source``).
The attack played here: a bundle whose manifest points its source at a .py file that writes a marker file when
imported (the manifest holds the hashes, it is not hashed itself: an unsigned bundle is edited freely)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import error_lines, flat, manifest_of, result_of

from deploytool.core import errors, records
from deploytool.core.errors import UsageError
from deploytool.sources import check_source_option, resolve, source_consent
from deploytool.store import bundle as B

EVIL = '''"""Plays a source a travelled bundle names: marks that it ran, then is the zoo's digits_cnn."""
from pathlib import Path

Path({marker!r}).write_text("imported")

from deploytool.models.digits_cnn import DIMS, INPUTS, OUTPUTS, build, example_inputs, golden_inputs  # noqa: E402
'''


def _evil(where: Path) -> tuple[Path, Path]:
    """(the .py file, the marker its import writes)."""
    where.mkdir(parents=True, exist_ok=True)
    marker, evil = where / "imported.marker", where / "evil.py"
    evil.write_text(EVIL.format(marker=str(marker)))
    return evil, marker


def test_only_sources_that_run_code_need_consent(tmp_path):
    evil, marker = _evil(tmp_path)
    file_source = resolve(str(evil)).to_dict()
    factory = resolve(f"{evil}:build").to_dict()
    assert (file_source["kind"], factory["kind"]) == ("file", "factory")
    assert source_consent(file_source, None) == f"running the source model needs --source (the bundle names {evil})"
    assert source_consent(factory, None) == f"running the source model needs --source (the bundle names {evil}:build)"
    assert source_consent({"kind": "factory", "ref": "some.module:build"}, None).endswith("names some.module:build)")
    assert source_consent({"kind": "from_a_plugin", "ref": "x"}, None) is not None  # in doubt: code
    for kind in ("zoo", "onnx", "keras", "savedmodel"):  # deploytool's own modules, or graphs loaded safely
        assert source_consent({"kind": kind, "ref": "x"}, None) is None
    # --source names the model as --model does: a relative path, resolved, is the same file
    assert source_consent(file_source, str(evil)) is None and source_consent(factory, f"{evil}:build") is None
    assert source_consent(factory, str(evil)) is not None  # the file, not the factory the bundle names
    check_source_option(file_source, str(evil))
    check_source_option(file_source, None)
    assert not marker.exists()  # reading the file to resolve --source never runs it


@pytest.mark.parametrize("given, message", [
    ("digits_cnn", "--source digits_cnn: names digits_cnn (zoo), but the bundle's source model is {evil} (file); "
                   "--source allows running that model only"),
    ("{evil}:build", "--source {evil}:build: names {evil}:build (factory), but the bundle's source model is {evil} "
                     "(file)"),
    ("gone.py", "--source gone.py: model file gone.py: no such file"),
])
def test_a_source_option_naming_another_model_is_a_usage_error(tmp_path, given, message):
    evil, _ = _evil(tmp_path)
    with pytest.raises(UsageError) as e:
        check_source_option(resolve(str(evil)).to_dict(), given.format(evil=evil))
    assert str(e.value).startswith(message.format(evil=evil)) and e.value.exit_code == errors.USAGE


def test_a_source_hop_is_not_localised_without_consent_and_nothing_runs(tmp_path):
    from deploytool.checking.judge import ArtifactCheck
    from deploytool.commands.localising import localise_failures
    from deploytool.core.contract import Contract
    from deploytool.running.jobs import CheckStatus

    evil, marker = _evil(tmp_path / "src")
    chk = ArtifactCheck(format="onnx", runtime="onnxruntime", status=CheckStatus.FAIL, reason="logits: bad",
                        hop_blamed="source -> onnx", hop_from="source", hop_to="onnx@onnxruntime")
    contract = Contract.from_dict({"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
                                   "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}]})
    work = tmp_path / "work"
    work.mkdir()
    localise_failures({"onnx": chk}, {}, tmp_path, [], None, work, work, 10.0,
                      source=resolve(str(evil)).to_dict(), contract=contract)
    assert chk.reason == f"logits: bad [could not localise: running the source model needs --source (the bundle " \
                         f"names {evil})]"
    assert list(work.iterdir()) == [] and not marker.exists()


# --- end to end: a real bundle whose manifest was edited to name the marker file ---

@pytest.fixture(scope="module")
def travelled(run_cli, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trust")
    proc = run_cli("export", "--model", "digits_cnn", "--formats", "onnx", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "digits_cnn"


def _named_evil(travelled: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(a copy of the bundle whose manifest names the marker file as its source, the file, the marker)."""
    evil, marker = _evil(tmp_path / "elsewhere")
    bundle = tmp_path / "digits_cnn"
    shutil.copytree(travelled, bundle)
    m = manifest_of(bundle)
    m["model"]["source"] = {"kind": "file", "ref": str(evil), "name": "digits_cnn", "framework": "torch",
                            "file": str(evil)}
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    return bundle, evil, marker


def test_validate_data_runs_the_named_source_only_with_source(travelled, run_cli, tmp_path):
    from deploytool.models import digits_cnn

    bundle, evil, marker = _named_evil(travelled, tmp_path)
    np.savez(tmp_path / "mine.npz", image=digits_cnn.load_split()[2][:5])
    proc = run_cli("validate", bundle, "--data", tmp_path / "mine.npz")
    assert proc.returncode == errors.USAGE, proc.stdout + proc.stderr
    assert error_lines(proc.stderr) == [f"deploytool: error: --data needs the source model's reference outputs: "
                                        f"running the source model needs --source (the bundle names {evil})"]
    assert not marker.exists()
    proc = run_cli("validate", bundle, "--data", tmp_path / "mine.npz", "--source", "digits_cnn")
    assert proc.returncode == errors.USAGE and "--source allows running that model only" in proc.stderr
    assert not marker.exists()
    # named by the user, the source runs: it computes the references of --data, and onnx matches them
    proc = run_cli("validate", bundle, "--data", tmp_path / "mine.npz", "--source", "elsewhere/evil.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert marker.exists() and "data (5 x batch=1)" in proc.stdout


def test_a_failing_source_hop_is_localised_only_with_source(travelled, run_cli, tmp_path):
    import onnx
    from onnx import numpy_helper

    bundle, evil, marker = _named_evil(travelled, tmp_path)
    path = bundle / "artifacts/digits_cnn.onnx"
    model = onnx.load(str(path))
    largest = max(model.graph.initializer, key=lambda i: numpy_helper.to_array(i).size)
    largest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(largest) * np.float32(1.5), largest.name))
    onnx.save(model, str(path))
    m = manifest_of(bundle)  # the artifact is what a (bad) converter wrote: its hashes re-recorded
    m["artifacts"]["onnx"]["files"] = records.dump(B.file_records(bundle, path))
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    proc = run_cli("validate", bundle)
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    assert f"[error appears at hop source -> onnx] [could not localise: running the source model needs --source " \
           f"(the bundle names {evil})]" in flat(proc.stdout)
    assert not marker.exists()
    proc = run_cli("validate", bundle, "--source", evil)
    assert proc.returncode == errors.PARITY, proc.stdout + proc.stderr
    found = result_of(json.loads((bundle / "reports/validation.json").read_text()), "onnx")["first_diverging"]
    assert found["localised"] and found["hop"] == "source -> onnx", found
    assert marker.exists()


def test_bench_times_the_named_source_only_with_source(travelled, tmp_path):
    from deploytool.commands import bench
    from deploytool.measuring.timing import Protocol
    from deploytool.running.jobs import RowStatus

    bundle, evil, marker = _named_evil(travelled, tmp_path)
    quick = {"formats": ["onnx"], "runtimes": ["onnxruntime"], "gemm_peak": False,
             "protocol": Protocol(warmup_runs=1, warmup_time=0, min_runs=3, min_time=0, max_time=5)}
    row = next(r for r in bench.run(bundle, **quick).rows if r.format == bench.SOURCE)
    assert (row.status, row.reason) == (RowStatus.SKIPPED, f"running the source model needs --source (the bundle "
                                                           f"names {evil})")
    assert not marker.exists()
    with pytest.raises(UsageError, match="--source digits_cnn: names digits_cnn \\(zoo\\), but the bundle's"):
        bench.run(bundle, source="digits_cnn", **quick)
    row = next(r for r in bench.run(bundle, source=str(evil), **quick).rows if r.format == bench.SOURCE)
    assert row.status == RowStatus.OK and marker.exists()
