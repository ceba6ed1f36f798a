"""Planning, in process: per-source routes of the format registry, golden-set policy, registries'
consistency. Lists come from the registries, so a new format, runtime or source kind is covered
the day it is added."""
from __future__ import annotations

import pytest

from deploytool import formats as F
from deploytool.checking.golden import ALT, ALT_SAMPLES, MAIN, GoldenSet, applicable_sets, plan_sets
from deploytool.checking.parity import TIERS
from deploytool.core.contract import Contract
from deploytool.formats import DEFAULT_FRAMEWORK, FORMATS, lineage, plan, resolve
from deploytool.runtimes import RUNTIMES
from deploytool.sources import FRAMEWORKS, SOURCE_KINDS

FRAMEWORK_NAMES = sorted(FRAMEWORKS)


@pytest.mark.parametrize("framework", FRAMEWORK_NAMES)
def test_every_plan_is_ordered_and_closed(framework):
    formats = plan(framework)
    assert set(formats) == set(FORMATS)
    order = list(formats)
    for name, fmt in formats.items():
        assert fmt.runtime in RUNTIMES and fmt.tier in TIERS, name
        if fmt.not_applicable:
            assert fmt.parent is None and framework not in F.FORMATS[name].routes, name
            continue
        if fmt.parent is None:  # made in the source's own worker
            assert fmt.stage == framework, name
        else:
            assert order.index(fmt.parent) < order.index(name), name
            assert not formats[fmt.parent].not_applicable, name
        chain = lineage(name, framework)
        assert chain[-1] == name and formats[chain[0]].parent is None


def test_routes_per_source_framework():
    assert plan("torch")["torchscript"].not_applicable is None
    assert "not applicable: made from torch models, the source is onnx" == plan("onnx")["torchscript"].not_applicable
    assert plan("onnx")["onnx"].parent is None and plan("onnx")["onnx"].exporter == "source file (onnx.checker)"
    assert lineage("tflite_fp16", "onnx") == ["onnx", "savedmodel", "tflite_fp16"]
    assert lineage("onnx", "tensorflow") == ["savedmodel", "onnx"]
    assert lineage("tflite_fp32", "tensorflow") == ["savedmodel", "tflite_fp32"]
    assert plan("tensorflow")["onnx"].exporter == "tf2onnx"
    assert lineage("tflite_fp32") == ["onnx", "savedmodel", "tflite_fp32"]


@pytest.mark.parametrize("framework", FRAMEWORK_NAMES)
def test_resolve_adds_the_parents_a_format_needs(framework):
    for name in FORMATS:
        names, added = resolve([name], framework)
        assert names[-1] == name and set(names) == set(lineage(name, framework))
        assert added == sorted(set(names) - {name})
    with pytest.raises(KeyError):
        resolve(["nope"], framework)


def test_every_runtime_and_framework_is_used_by_something():
    used = {f.runtime for f in FORMATS.values()} | {k.reference_runtime for k in SOURCE_KINDS.values()} | \
        {r.name for r in RUNTIMES.values() if r.runs}  # a runtime that adds itself to formats (Runtime.runs)
    assert used == set(RUNTIMES)
    assert {k.framework for k in SOURCE_KINDS.values()} == set(FRAMEWORKS)
    assert DEFAULT_FRAMEWORK in FRAMEWORKS
    for fmt in FORMATS.values():
        assert set(fmt.routes) <= set(FRAMEWORKS), fmt.name


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_runtime_registry_entries_are_complete(name):
    rt = RUNTIMES[name]
    assert rt.name == name and rt.packages and rt.description
    assert "pip install" in rt.install_hint
    for fn in (rt.load, rt.run, rt.version, rt.settings):
        assert callable(fn)
    assert isinstance(rt.missing_packages(), list)


DYNAMIC = Contract.from_dict({
    "inputs": [{"name": "ids", "shape": ["batch", "seq"], "dtype": "int64", "range": [0, 100]}],
    "outputs": [{"name": "y", "shape": ["batch", 2], "dtype": "float32"}],
    "dims": {"batch": {"example": 2, "alt": 3}, "seq": {"example": 16, "alt": 24}},
})
STATIC = Contract.from_dict({"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
                             "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}]})


def test_golden_plan_main_and_alt_for_dynamic_dims():
    main, alt = plan_sets(DYNAMIC, samples=7, seed=5)
    assert (main.name, main.samples, main.seed, main.dims, main.generator) == (MAIN, 7, 5, {"batch": 1, "seq": 16},
                                                                               "source")
    assert (alt.name, alt.samples, alt.seed, alt.dims, alt.generator) == (ALT, ALT_SAMPLES, 6, {"batch": 3, "seq": 24},
                                                                          "seeded")
    assert {main.inputs, main.reference, alt.inputs, alt.reference} == {
        "golden/inputs.npz", "golden/reference.npz", "golden/inputs_alt.npz", "golden/reference_alt.npz"}


def test_golden_plan_static_contract_has_only_main():
    (only,) = plan_sets(STATIC)
    assert only.name == MAIN and only.dims == {}


def test_a_fixed_dim_excludes_the_sets_it_clashes_with(tmp_path):
    sets = [GoldenSet(p.name, tmp_path / p.inputs, tmp_path / p.reference, p.dims, p.samples)
            for p in plan_sets(DYNAMIC)]
    fixed = Contract.from_dict({**DYNAMIC.to_dict(), "fixed_dims": {"batch": 1, "seq": 16}})
    ok, skipped = applicable_sets(fixed, sets)
    assert [s.name for s in ok] == [MAIN] and skipped == {ALT: "artifact fixed batch=1, seq=16"}
    ok, skipped = applicable_sets(DYNAMIC, sets)
    assert [s.name for s in ok] == [MAIN, ALT] and skipped == {}
