"""Golden inputs that cover the model (issue 22 items 1 and 3): integer ranges read from the model (a torch
embedding, an ONNX Gather table, a Keras Embedding), else from a user's example inputs, else weak coverage (a
warning on every PASS, exit 7 under --strict); a factory's example inputs leave the batch dynamic and say which
other dims they fixed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import note_of

from deploytool.checking import golden, judge
from deploytool.core import errors
from deploytool.core.contract import Contract, generate_inputs
from deploytool.results import ArtifactCheck
from deploytool.running.jobs import CheckStatus
from deploytool.sources import load_source, resolve

MODELS = Path(__file__).parent / "models"
GRU = f"{MODELS / 'text_gru.py'}:gru"
TOKENS = [{"name": "tokens", "shape": ["batch", "seq"], "dtype": "int64"}]


def _load(model: str, inputs=None, ranges=None):
    return load_source(resolve(model, inputs, ranges).to_dict())


def test_integer_range_is_the_embedding_it_indexes():
    loaded = _load(GRU, TOKENS)
    spec = loaded.contract.inputs[0]
    assert spec.range == [0, 1000] and "'emb' (1000 rows)" in spec.range_from
    ids = loaded.golden(16, 0, loaded.contract.dim_sizes("example", batch_one=True))["tokens"]
    cov = golden.coverage(loaded.contract, {"tokens": ids})["tokens"]
    assert cov["range"][1] > 900 and cov["distinct"] > 100 and not cov.get("weak")


def test_declared_range_wins_over_the_model():
    assert _load(GRU, TOKENS, {"tokens": [0, 50]}).contract.inputs[0].range == [0, 50]


def test_example_inputs_make_the_batch_dynamic_and_name_the_dims_they_fix():
    contract = _load(f"{MODELS / 'text_gru.py'}:gru_example").contract
    assert contract.inputs[0].shape == ["batch", 10] and contract.outputs[0].shape == ["batch", 3]
    assert contract.example_static == {"tokens": [1]}
    assert Contract.from_dict(contract.to_dict()).example_static == {"tokens": [1]}
    note = golden.static_text(contract)
    assert "'tokens' axis 1 (size 10)" in note and "--input 'tokens:batch x dim1:int64'" in note


def test_onnx_gather_table_gives_the_range(tmp_path):
    import torch

    from deploytool.sources.onnx_file import read_contract

    path = tmp_path / "gru.onnx"
    torch.onnx.export(_load(GRU, TOKENS).module, (torch.zeros(1, 5, dtype=torch.int64),), str(path),
                      input_names=["tokens"],
                      dynamic_axes={"tokens": {0: "batch", 1: "seq"}}, dynamo=False)
    assert read_contract(path).inputs[0].range == [0, 1000]
    assert read_contract(path, {"tokens": [0, 7]}).inputs[0].range == [0, 7]


def _weak_checks() -> tuple[Contract, dict]:
    counts = [{"name": "counts", "shape": ["batch", 4], "dtype": "int64"}]
    contract = _load(f"{MODELS / 'text_gru.py'}:counts", counts).contract
    assert contract.inputs[0].range is None  # no embedding, no example: nothing tells its range
    sets = {"main": golden.coverage(contract, generate_inputs(contract, 16, 0, {"batch": 1}))}
    checks = {"onnx@onnxruntime": ArtifactCheck("onnx", "onnxruntime", CheckStatus.PASS, sets={"main": {}})}
    golden.annotate(checks, contract, sets)
    return contract, checks


def test_unknown_integer_range_is_weak_and_strict_fails_it():
    contract, checks = _weak_checks()
    chk = checks["onnx@onnxruntime"]
    assert chk.coverage.startswith("WEAK COVERAGE") and "--input-range counts:LOW:HIGH" in chk.coverage
    assert judge.exit_code(checks, strict=False) == errors.OK
    assert judge.exit_code(checks, strict=True) == errors.SKIPPED
    given = golden.coverage(contract, {"counts": np.zeros((2, 1, 4), np.int64)}, given=True)
    assert not given["counts"].get("weak")  # the user's own data is taken as it is


@pytest.mark.slow
def test_weak_coverage_export_notes_it_and_strict_fails(run_cli, tmp_path):
    r = run_cli("export", "--model", f"{MODELS / 'text_gru.py'}:counts", "--input", "counts:batch x 4:int64",
                "-f", "onnx", "--runtime", "onnxruntime", "--out", tmp_path, "--strict")
    assert r.returncode == errors.SKIPPED, r.stderr
    assert "WEAK COVERAGE" in note_of(r.stdout, "onnx")
    bundle = tmp_path / "text_gru"
    cov = json.loads((bundle / "manifest.json").read_text())["golden"]["sets"]["main"]["coverage"]["counts"]
    assert cov["weak"] and cov["distinct"] == 2
    report = json.loads((bundle / "reports" / "validation.json").read_text())
    assert report["targets"]["onnx@onnxruntime"]["coverage"].startswith("WEAK COVERAGE")
    assert run_cli("report", bundle).returncode == 0
    assert "Weak coverage" in (bundle / "reports" / "report.md").read_text()
    # the pytest plugin fails it as --strict does, unless allowed
    from deploytool import api
    from deploytool.pytest_plugin import failures

    outcome = api.validate(bundle, ["onnx"], runtimes=["onnxruntime"])
    assert [row[2] for row in failures(outcome)] == ["WEAK_COVERAGE"]
    assert failures(outcome, {"weak_coverage"}) == []
