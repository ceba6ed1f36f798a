"""Typed records: the manifest and the worker protocol round-trip through JSON, and any malformed
manifest is a bundle error (exit 8, one line) before a command touches anything. In process."""
from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from deploytool.checking.golden import GoldenSetPlan
from deploytool.cli import main
from deploytool.core import errors, records
from deploytool.core.contract import Contract
from deploytool.core.errors import BundleError
from deploytool.running import jobs
from deploytool.store import manifest as M

CONTRACT = {"inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": ["batch", 2], "dtype": "float32"}],
            "dims": {"batch": {"example": 2, "alt": 3}}}
FILE = {"path": "artifacts/m.onnx", "sha256": "0" * 64, "size": 3}


def valid() -> dict:
    return {
        "schema_version": 1, "created": "2026-01-01T00:00:00+00:00", "tool": {"name": "deploytool", "version": "0"},
        "model": {"name": "m", "description": "", "source": {"kind": "zoo", "ref": "m", "name": "m",
                                                             "framework": "torch"}},
        "seed": 0, "platform": {}, "versions": {"python": "3.11"}, "formats_requested": ["onnx"], "formats_added": [],
        "contract": CONTRACT,
        "golden": {"seed": 0, "reference_runtime": "torch_eager", "files": [],
                   "sets": {"main": {"inputs": "golden/inputs.npz", "reference": "golden/reference.npz",
                                     "dims": {"batch": 1}, "samples": 4}}},
        "tolerances": {"onnx:*": {"atol": 1e-3}},
        "artifacts": {
            "onnx": {"format": "onnx", "status": "ok", "path": "artifacts/m.onnx", "files": [FILE], "size_bytes": 3,
                     "precision": "fp32", "tier": "fp32", "parent": None, "runtime": "onnxruntime",
                     "chain": ["source (torch)", "onnx"], "exporter": {"name": "torch.onnx.export", "version": "x",
                                                                       "options": {}},
                     "export_seconds": 1.0, "contract": CONTRACT, "notes": [], "error": None,
                     "check": {"status": "pass", "reason": "", "max_abs": 0.0, "hop_blamed": None, "skipped_sets": {}},
                     "golden_outputs": {"main": "golden/outputs/onnx.main.npz"}},
            "torchscript": {"format": "torchscript", "status": "failed", "path": None, "files": [], "size_bytes": 0,
                            "precision": "fp32", "tier": "fp32", "parent": None, "runtime": "torchscript",
                            "exporter": {"name": "torch.jit.trace"}, "error": "boom"},
        },
    }


def test_valid_manifest_round_trips():
    m = M.load(valid())
    assert isinstance(m.contract, Contract) and m.artifacts["onnx"].files[0].sha256 == "0" * 64
    assert m.artifacts["onnx"].status is jobs.ArtifactStatus.OK
    assert m.artifacts["onnx"].check is not None and m.artifacts["onnx"].check.status is jobs.CheckStatus.PASS
    assert m.model.framework == "torch"
    again = json.loads(json.dumps(m.to_json()))
    assert M.load(again) == m
    assert again["artifacts"]["onnx"]["status"] == "ok" and again["contract"] == CONTRACT


def _set(d: dict, path: str, value) -> dict:
    d = copy.deepcopy(d)
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return d


MALFORMED = [
    ("artifacts.onnx.status", KeyError, "manifest.artifacts.onnx: missing 'status'"),
    ("artifacts.onnx.status", "weird", "manifest.artifacts.onnx.status: unknown value str 'weird'"),
    ("artifacts.onnx.files", "x", "manifest.artifacts.onnx.files: expected a list"),
    ("artifacts.onnx.files", [], "manifest.artifacts.onnx: an exported artifact needs files"),
    ("artifacts.onnx.path", None, "manifest.artifacts.onnx: an exported artifact needs path"),
    ("artifacts.onnx.size_bytes", "3", "manifest.artifacts.onnx.size_bytes: expected an integer"),
    ("artifacts.onnx.contract", {"inputs": "x"}, "manifest.artifacts.onnx.contract: invalid Contract"),
    ("artifacts.onnx.check.status", "great", "manifest.artifacts.onnx.check.status: unknown value"),
    ("artifacts.onnx.exporter", "torch", "manifest.artifacts.onnx.exporter: expected an object"),
    ("artifacts.onnx.format", "tflite_fp32", "manifest.artifacts.onnx.format: 'tflite_fp32' under the key 'onnx'"),
    ("artifacts.onnx", [], "manifest.artifacts.onnx: expected an object"),
    ("artifacts.onnx.files", [{"path": "a", "sha256": "b"}], "manifest.artifacts.onnx.files[0]: missing 'size'"),
    ("golden.sets.main.samples", 1.5, "manifest.golden.sets.main.samples: expected an integer"),
    ("golden", KeyError, "manifest: missing 'golden'"),
    ("contract.outputs", [], "manifest.contract: invalid Contract"),
    ("model.source.kind", 3, "manifest.model.source.kind: expected a string"),
    ("tolerances", {"onnx:*": {"atol": float("nan")}},
     "manifest.tolerances: onnx:* atol = nan: must be a finite number >= 0"),
    ("schema_version", 99, "schema_version 99 is not supported"),
    ("seed", True, "manifest.seed: expected an integer"),
]


@pytest.mark.parametrize("path, value, message", MALFORMED, ids=[f"{p}={v!r}"[:40] for p, v, _ in MALFORMED])
def test_malformed_manifests_are_refused_naming_the_field(path, value, message):
    with pytest.raises(records.RecordError) as e:
        M.load(_set(valid(), path, value))
    assert message in str(e.value)


@pytest.mark.parametrize("command", ["validate", "bench"])
@pytest.mark.parametrize("path, value, message", MALFORMED[:4], ids=[p for p, _, _ in MALFORMED[:4]])
def test_a_malformed_bundle_is_exit_8_with_one_line(tmp_path, command, path, value, message):
    bundle = tmp_path / "m"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps(_set(valid(), path, value)))
    result = CliRunner().invoke(main, [command, str(bundle)])
    assert result.exit_code == errors.BUNDLE, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"deploytool: error: bundle {bundle}: manifest.json is malformed")
    assert message in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json"]  # nothing written


def test_read_refusals(tmp_path):
    with pytest.raises(BundleError, match="no such directory"):
        M.read(tmp_path / "missing")
    with pytest.raises(BundleError, match="no manifest.json"):
        M.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        M.read(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="manifest: expected an object"):
        M.read(tmp_path)


def test_jobs_round_trip_and_replies_are_checked():
    c = Contract.from_dict(CONTRACT)
    for job in (jobs.LoadSource({"kind": "zoo", "ref": "m", "name": "m"}),
                jobs.WriteGolden("/b", [GoldenSetPlan("main", 4, 0, {"batch": 1}, "golden/i.npz", "golden/r.npz",
                                                      "source")]),
                jobs.ExportFormat(format="onnx", framework="torch", model_name="m", contract=c, out="/o", workdir="/w",
                                  parent_contract=c, options={"keep_layout": False}),
                jobs.RunArtifact(runtime="onnxruntime", artifact="/a", contract=c,
                                 sets=[jobs.RunSet("main", "i", "o")]),
                jobs.TimeArtifact(runtime="litert", artifact="/a", contract=c, inputs="/i", batch=2, protocol={}),
                jobs.Exit()):
        data = json.loads(json.dumps(jobs.encode(job, "/r", None, last=True)))
        decoded, envelope = jobs.decode(data)
        assert decoded == job and envelope["reply"] == "/r" and envelope["last"] is True
    run = jobs.RunArtifact(runtime="onnxruntime", artifact="/a", contract=c, sets=[])
    reply = jobs.read_reply(run, {"status": "run_failed", "error": "boom", "outputs": {}})
    assert reply.status is jobs.RunStatus.RUN_FAILED and isinstance(reply, jobs.ArtifactRan)
    with pytest.raises(records.RecordError, match="run reply.status: unknown value"):
        jobs.read_reply(run, {"status": "exploded"})
    with pytest.raises(records.RecordError, match="job: unknown mode 'dance'"):
        jobs.decode({"mode": "dance", "job": {}})
    assert jobs.ArtifactRan.crashed("worker killed by SIGKILL").status is jobs.RunStatus.CRASHED
    assert jobs.FormatExported.crashed("x").status is jobs.ArtifactStatus.FAILED
