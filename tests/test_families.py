"""Input families (docs/families.md): planning, the edge and perturbed generators, each family's verdict per
target and the 'families disagree' reason; in process, except the one slow test that exports a real model
that fails only on edge values (tests/models/edge_saturating.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TEST_MODELS

from deploytool.checking import families
from deploytool.checking.golden import GoldenSet, plan_sets
from deploytool.checking.judge import Evidence, Rules, judge
from deploytool.core import npz
from deploytool.core.contract import Contract
from deploytool.formats import plan
from deploytool.report.markdown import families_table
from deploytool.report.view import ArtifactView
from deploytool.running.jobs import ArtifactRan, ArtifactStatus, CheckStatus, RunStatus
from deploytool.store.manifest import ArtifactRecord

IMAGE = Contract.from_dict({
    "inputs": [{"name": "image", "shape": ["batch", 3, 4, 5], "dtype": "float32", "range": [0.0, 1.0],
                "layout": "NCHW"},
               {"name": "meta", "shape": ["batch", 2], "dtype": "int64", "range": [3, 8]}],
    "outputs": [{"name": "y", "shape": ["batch", 2], "dtype": "float32"}],
    "dims": {"batch": {"example": 2, "alt": 3, "min": 1, "max": 6}},
})
SEQ = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", "seq"], "dtype": "float32", "range": [-2.0, 5.0]}],
    "outputs": [{"name": "y", "shape": ["batch", 3], "dtype": "float32"}],
    "dims": {"batch": {"example": 2, "alt": 3}, "seq": {"example": 4, "alt": 6, "max": 32}},
})


def test_parse_names_all_and_unknown():
    assert families.parse("edge") == ["edge"]
    assert families.parse(("perturbed,edge",)) == ["perturbed", "edge"]
    assert families.parse("all") == ["perturbed", "edge"]
    assert families.parse(None) == [] and families.parse("none") == []
    with pytest.raises(ValueError, match="--families: unknown family bogus"):
        families.parse("edge,bogus")
    assert families.parse("edge", "--gate-families") == ["edge"]


def test_gate_families_takes_only_the_families_a_tier_reports_without_gating():
    """'all' is those (edge): seeded or data there would make the int8 tier gate the tensors of its labelled and
    main sets, which it judges on task accuracy."""
    assert families.parse("all", "--gate-families") == ["edge"] == list(families.UNGATED_BY_DEFAULT)
    for name in ("seeded", "data", "perturbed", "all,data"):
        with pytest.raises(ValueError, match="--gate-families: not .* \\(it takes edge, all, none: the families"):
            families.parse(name, "--gate-families")
    with pytest.raises(ValueError, match="--gate-families: unknown family bogus \\(it takes edge, all, none\\)"):
        families.parse("bogus", "--gate-families")


def test_without_families_the_plan_is_todays():
    names = [(p.name, p.generator, p.samples) for p in plan_sets(IMAGE, 16, 0)]
    assert names == [("main", "source", 16), ("alt", "seeded", 4)]
    assert [p.family for p in plan_sets(IMAGE, 16, 0)] == ["seeded", "seeded"]
    assert [p.family for p in plan_sets(IMAGE, 16, 0, labelled="source", source_data=True)] == \
        ["data", "seeded", "data"]


def test_families_are_planned_with_their_family_and_dims():
    plans = {p.name: p for p in plan_sets(IMAGE, 16, 7, families=["perturbed", "edge"])}
    assert list(plans) == ["main", "alt", "perturbed", "edge", "edge_max"]
    assert plans["perturbed"].family == "perturbed" and plans["perturbed"].base == "main"
    assert plans["perturbed"].seed == 7 + families.PERTURBED_SEED_OFFSET
    assert plans["edge"].family == plans["edge_max"].family == "edge"
    assert plans["edge"].dims == {"batch": 1} and plans["edge"].samples == 3
    assert plans["edge_max"].dims == {"batch": 6}  # the declared max
    assert "batch=6" in (plans["edge_max"].note or "")
    # the labelled set is the data the perturbed family perturbs, when there is one
    labelled = {p.name: p for p in plan_sets(IMAGE, 16, 0, labelled="given", families=["perturbed"])}
    assert labelled["perturbed"].base == "labelled"


def test_the_perturbed_family_prefers_the_labelled_set_to_the_sources_own_main_set():
    """As documented: the labelled set (real data, with labels), else the source's own main set."""
    both = {p.name: p for p in plan_sets(IMAGE, 16, 0, labelled="source", families=["perturbed"], source_data=True)}
    assert both["main"].family == both["labelled"].family == "data"
    assert both["perturbed"].base == "labelled" and both["perturbed"].note.startswith("the labelled set (data)")
    own = {p.name: p for p in plan_sets(IMAGE, 16, 0, families=["perturbed"], source_data=True)}
    assert own["perturbed"].base == "main" and own["perturbed"].note.startswith("the main set (data)")


def test_a_dim_without_a_maximum_takes_its_alt_size_and_says_so():
    plans = {p.name: p for p in plan_sets(SEQ, 16, 0, families=["edge"])}
    assert plans["edge_max"].dims == {"batch": 3, "seq": 32}
    assert "no maximum declared for batch=3: the alt size is used" in (plans["edge_max"].note or "")


def test_edge_inputs_are_zero_or_the_midpoint_and_each_ranges_ends():
    x = families.edge_inputs(IMAGE, 3, 0, {"batch": 1})
    image, meta = x["image"], x["meta"]
    assert image.shape == (3, 1, 3, 4, 5) and image.dtype == np.float32 and meta.dtype == np.int64
    # zero is the low end of [0, 1) and outside meta's [3, 8): the midpoint instead, so no sample repeats an end
    below_one = np.nextafter(np.float32(1), np.float32(0))  # ranges are [LOW, HIGH): the high end is below HIGH
    assert (image[0] == 0.5).all() and (image[1] == 0.0).all() and (image[2] == below_one).all()
    assert (meta[0] == 5).all() and (meta[1] == 3).all() and (meta[2] == 7).all()  # integers: min, max (high - 1)
    assert len({image[i].tobytes() for i in range(3)}) == len({meta[i].tobytes() for i in range(3)}) == 3
    seq = families.edge_inputs(SEQ, 3, 0, {"batch": 1, "seq": 4})["x"]
    assert [float(seq[i].min()) for i in range(3)] == [0.0, -2.0, float(np.nextafter(np.float32(5), np.float32(0)))]
    assert len(families.EDGE_VALUES) == plan_sets(SEQ, 16, 0, families=["edge"])[2].samples == 3


def _one_input(dtype: str, low, high) -> Contract:
    return Contract.from_dict({"inputs": [{"name": "x", "shape": ["batch", 3], "dtype": dtype, "range": [low, high]}],
                               "outputs": [{"name": "y", "shape": ["batch"], "dtype": "float32"}],
                               "dims": {"batch": {"example": 2, "alt": 3}}})


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_the_edge_high_end_lies_inside_the_half_open_range_the_seeded_family_draws(dtype):
    """--input-range x:-2:2 is [-2, 2): the seeded family never gives 2, so the edge set's high end is the largest
    value of the dtype below 2, and a perturbed sample clipped to the range stays below it too."""
    from deploytool.core.contract import generate_inputs

    c = _one_input(dtype, -2, 2)
    edge = families.edge_inputs(c, 3, 0, {"batch": 1})["x"]
    top = np.nextafter(np.dtype(dtype).type(2), np.dtype(dtype).type(0))
    assert edge.dtype == np.dtype(dtype) and [edge[i].max() for i in range(3)] == [0, -2, top]
    assert (edge < 2).all() and (generate_inputs(c, 64, 0, {"batch": 1})["x"] < 2).all()
    scaled = families.perturbed_inputs(c, {"x": np.full((1, 1, 3), top, dtype)}, 1, 0)["x"]  # x * U[0.8, 1.2]
    assert (scaled <= top).all()
    # a draw that rounds up to HIGH in a narrow dtype is kept below it: uniform[0, 1) in float16 hits 1.0 often
    assert (generate_inputs(_one_input("float16", 0, 1), 4096, 0, {"batch": 1})["x"] < 1).all()


def test_the_edge_note_says_which_inputs_take_their_midpoint_in_place_of_zero_and_why():
    """Zero where it lies in [LOW, HIGH) and is neither end (an end is the next samples' value); the midpoint
    otherwise, and the set's note names the input and why. x:0:1 is the low end case: zero IS inside."""
    def first(c):
        return float(families.edge_inputs(c, 3, 0, {"batch": 1})["x"][0].max())

    def note(c):
        return plan_sets(c, 16, 0, families=["edge"])[2].note

    base = ("every input at zero, at its range's low end, at its high end (ranges are [LOW, HIGH): the largest value "
            "below HIGH, HIGH - 1 for an integer)")
    assert first(_one_input("float32", -2, 2)) == 0 and note(_one_input("float32", -2, 2)) == base
    assert first(_one_input("float32", 0, 1)) == 0.5
    assert note(_one_input("float32", 0, 1)) == \
        base + "; in place of zero: x at 0.5, the midpoint of [0, 1) (zero is its low end, which the next sample takes)"
    assert first(_one_input("float32", 1, 5)) == 3
    assert note(_one_input("float32", 1, 5)).endswith("x at 3, the midpoint of [1, 5) (zero is outside it)")
    assert first(_one_input("int64", -3, 1)) == -2  # zero is HIGH - 1, the high-end sample
    assert note(_one_input("int64", -3, 1)).endswith(
        "x at -2, the midpoint of [-3, 1) (zero is its largest value, which the last sample takes)")
    assert first(_one_input("int64", -3, 2)) == 0  # zero strictly between -3 and HIGH - 1 = 1


def test_a_non_integer_range_on_an_integer_input_is_a_usage_error(tmp_path):
    """--input-range ids:0:20.5 on an int64 input was recorded as [0, 20.5] and drawn from [0, 20): one line, exit
    2, naming the input and its dtype; ids:0:20.0 is the integer range [0, 20)."""
    from deploytool.core.errors import UsageError

    with pytest.raises(UsageError, match="--input-range ids:0:20.5: ids is an int64 input, so LOW and HIGH must be "
                                         "integers"):
        Contract.from_dict({"inputs": [{"name": "ids", "shape": [3], "dtype": "int64", "range": [0, 20.5]}],
                            "outputs": [{"name": "y", "shape": [1], "dtype": "float32"}]})
    spec = Contract.from_dict({"inputs": [{"name": "ids", "shape": [3], "dtype": "int64", "range": [0, 20.0]}],
                               "outputs": [{"name": "y", "shape": [1], "dtype": "float32"}]}).inputs[0]
    assert spec.range == [0, 20] and all(type(v) is int for v in spec.range)
    (tmp_path / "emb.py").write_text("import torch\nfrom torch import nn\n\n\ndef build():\n"
                                     "    return nn.Sequential(nn.Embedding(21, 4), nn.Flatten(), nn.Linear(16, 2))\n")
    r = subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", f"{tmp_path / 'emb.py'}:build",
                        "--input", "ids:batch x 4:int64", "--input-range", "ids:0:20.5", "-f", "onnx",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    errors = [line for line in r.stderr.splitlines() if line.startswith("deploytool: error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert errors == ["deploytool: error: model 'emb': --input-range ids:0:20.5: ids is an int64 input, so LOW and "
                      "HIGH must be integers"]


def test_samples_the_source_takes_to_nan_are_left_out_and_noted_and_an_empty_set_is_skipped():
    y = np.array([[[1.0]], [[np.inf]], [[2.0]]], np.float32)
    x = {"x": np.arange(3, dtype=np.float32).reshape(3, 1, 1)}
    inputs, refs, dropped = families.finite_samples(x, {"y": y})
    assert dropped == 1 and inputs["x"].ravel().tolist() == [0.0, 2.0] and refs["y"].ravel().tolist() == [1.0, 2.0]
    inputs, refs, dropped = families.finite_samples(x, {"y": np.full_like(y, np.nan)})
    assert dropped == 3 and len(inputs["x"]) == len(refs["y"]) == 0
    plans = plan_sets(IMAGE, 16, 0, families=["perturbed", "edge"])
    kept, skipped = families.after_writing(plans, {"main": 16, "alt": 4, "perturbed": 11, "edge": 0, "edge_max": 2})
    assert [p.name for p in kept] == ["main", "alt", "perturbed", "edge_max"]
    assert kept[2].note.endswith("; 5 of 16 samples left out: the source model gives NaN/Inf there")
    assert skipped == ["the edge set (edge family) is skipped: the source model gives NaN/Inf on every one of its 3 "
                       "samples, so nothing can be checked against it"]


def test_perturbed_is_deterministic_for_a_seed_and_stays_in_the_range():
    base = {"image": np.random.default_rng(1).uniform(0, 1, (8, 1, 3, 4, 5)).astype(np.float32),
            "meta": np.random.default_rng(2).integers(3, 8, (8, 1, 2))}
    a = families.perturbed_inputs(IMAGE, base, 16, 5)
    b = families.perturbed_inputs(IMAGE, base, 16, 5)
    c = families.perturbed_inputs(IMAGE, base, 16, 6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["image"], c["image"])
    assert a["image"].dtype == np.float32 and a["image"].shape == (16, 1, 3, 4, 5)
    assert a["image"].min() >= 0.0 and a["image"].max() <= 1.0
    many = families.perturbed_inputs(IMAGE, base, 80, 5)["meta"]  # integers: about INT_SWAP redrawn, in range
    swapped = many != np.concatenate([base["meta"]] * 10)
    assert 0.02 < swapped.mean() < 0.2 and many.min() >= 3 and many.max() <= 7
    # each kind did something: sample 3 is sample 3's base flipped along the width axis
    assert np.array_equal(a["image"][3], base["image"][3][..., ::-1])
    assert not np.allclose(a["image"][:3], base["image"][:3])
    # a wide noise is clipped to the range, never past it
    wide = families.perturbed_inputs(SEQ, {"x": np.full((2, 1, 4), 5.0, np.float32)}, 8, 0)["x"]
    assert wide.max() <= 5.0 and wide.min() >= -2.0


CONTRACT = Contract.from_dict({
    "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32", "range": [-1.0, 1.0]}],
    "outputs": [{"name": "y", "shape": ["batch", 6], "dtype": "float32"}],
    "dims": {"batch": {"example": 2, "alt": 3}},
})


def _judge(tmp_path, fmt: str, edge_error: float, rules: Rules | None = None):
    """One target of ``fmt``: the reference on the main (seeded) set, the reference plus ``edge_error`` on
    the edge set."""
    rng = np.random.default_rng(0)
    refs = {s: {"y": rng.normal(size=(n, 1, 6)).astype(np.float32)} for s, n in (("main", 8), ("edge", 3))}
    sets = [GoldenSet("main", tmp_path / "m.npz", tmp_path / "mr.npz", {"batch": 1}, 8, family="seeded"),
            GoldenSet("edge", tmp_path / "e.npz", tmp_path / "er.npz", {"batch": 1}, 3, family="edge")]
    outputs = {}
    for s in ("main", "edge"):
        outputs[s] = str(tmp_path / f"{s}.out.npz")
        npz.save(tmp_path / f"{s}.out.npz", {"y": refs[s]["y"] + (edge_error if s == "edge" else 0.0)})
    f = plan()[fmt]
    rec = ArtifactRecord(format=fmt, status=ArtifactStatus.OK, precision=f.precision, tier=f.tier, runtime=f.runtime,
                         parent=None, path=f"artifacts/m.{fmt}", contract=CONTRACT)
    runs = {fmt: ArtifactRan(status=RunStatus.OK, runtime=f.runtime, outputs=outputs)}
    return judge(CONTRACT, {fmt: rec}, Evidence(runs, sets, refs), rules)[fmt]


def test_a_target_failing_only_the_edge_family_says_the_families_disagree(tmp_path):
    chk = _judge(tmp_path, "onnx", 0.5)
    assert chk.status == CheckStatus.FAIL
    assert chk.families["seeded"]["status"] == "pass" and chk.families["edge"]["status"] == "fail"
    assert chk.families["edge"]["sets"] == ["edge"]
    assert chk.reason.startswith("families disagree: passes seeded; fails edge: y (edge set): ")
    assert chk.reason.count("(edge set)") == 1  # the failing output's reason said once
    assert "families" in chk.to_dict()  # validation.json
    ok = _judge(tmp_path, "onnx", 0.0)
    assert ok.status == CheckStatus.PASS and {v["status"] for v in ok.families.values()} == {"pass"}
    assert "disagree" not in ok.reason and not any("disagree" in n for n in ok.notes)


def test_int8_reports_the_edge_family_without_gating_unless_asked(tmp_path):
    chk = _judge(tmp_path, "onnx_int8", 5.0)
    assert chk.status == CheckStatus.PASS
    assert chk.families["edge"] == {**chk.families["edge"], "status": "fail", "gating": False}
    assert any(n.startswith("families disagree: passes seeded; fails edge") and "not gating" in n for n in chk.notes)
    assert chk.sets["edge"]["y"]["gating"] is False and "--gate-families edge" in chk.sets["edge"]["y"]["reason"]
    gated = _judge(tmp_path, "onnx_int8", 5.0, Rules(gate_families=["edge"]))
    assert gated.status == CheckStatus.FAIL and gated.families["edge"]["gating"] is True
    assert gated.reason.startswith("families disagree: passes seeded; fails edge: y (edge set): ")
    # the fp16 tier is not accuracy-gated: the edge family gates it by default
    assert _judge(tmp_path, "tflite_fp16", 5.0).status == CheckStatus.FAIL


def test_a_failure_the_families_line_cites_is_said_once_on_the_main_set_too(tmp_path):
    """A model whose main set is its own data: failing main and passing perturbed, the families line names the
    main set's failure, and the check's own failure line for it (worded without the set) is not repeated."""
    rng = np.random.default_rng(0)
    refs = {s: {"y": rng.normal(size=(n, 1, 6)).astype(np.float32)} for s, n in (("main", 8), ("perturbed", 4))}
    sets = [GoldenSet("main", tmp_path / "m.npz", tmp_path / "mr.npz", {"batch": 1}, 8, family="data"),
            GoldenSet("perturbed", tmp_path / "p.npz", tmp_path / "pr.npz", {"batch": 1}, 4, family="perturbed")]
    outputs = {}
    for s in ("main", "perturbed"):
        outputs[s] = str(tmp_path / f"{s}.out.npz")
        npz.save(tmp_path / f"{s}.out.npz", {"y": refs[s]["y"] + (0.5 if s == "main" else 0.0)})
    f = plan()["onnx"]
    rec = ArtifactRecord(format="onnx", status=ArtifactStatus.OK, precision=f.precision, tier=f.tier,
                         runtime=f.runtime, parent=None, path="artifacts/m.onnx", contract=CONTRACT)
    runs = {"onnx": ArtifactRan(status=RunStatus.OK, runtime=f.runtime, outputs=outputs)}
    chk = judge(CONTRACT, {"onnx": rec}, Evidence(runs, sets, refs))["onnx"]
    assert chk.status == CheckStatus.FAIL
    assert chk.reason.startswith("families disagree: passes perturbed; fails data: y (main set): ")
    why = chk.sets["main"]["y"]["reason"]
    assert why and chk.reason.count(why) == 1, chk.reason


def test_the_markdown_table_shows_each_family_per_target():
    a = ArtifactView("onnx", "onnxruntime", "fp32", [], None, "ok",
                     families={"seeded": {"status": "pass"}, "edge": {"status": "pass"}})
    b = ArtifactView("onnx_int8", "onnxruntime", "int8", [], None, "ok",
                     families={"seeded": {"status": "pass"}, "edge": {"status": "fail", "gating": False}})
    table = families_table([a, b])
    assert table is not None
    headers, rows = table
    assert headers == ["target", "seeded", "edge"]
    assert rows == [["onnx", "PASS", "PASS"], ["onnx_int8", "PASS", "FAIL (not gating)"]]
    assert families_table([ArtifactView("onnx", "onnxruntime", "fp32", [], None, "ok",
                                        families={"seeded": {"status": "pass"}})]) is None
    c = ArtifactView("tflite_int8", "litert", "int8", [], None, "ok",
                     families={"seeded": {"status": "pass"}, "edge": {"status": "pass", "gating": False}})
    assert families_table([c])[1] == [["tflite_int8", "PASS", "PASS (not gating)"]]
    # docs/families.md shows every cell the table prints
    doc = (TEST_MODELS.parent.parent / "docs" / "families.md").read_text()
    assert all(f"`{cell} (not gating)`" in doc for cell in ("PASS", "FAIL"))


def test_the_html_report_has_the_families_table_report_md_has(tmp_path):
    from types import SimpleNamespace

    from deploytool.report import html
    from deploytool.results import Results

    rec = SimpleNamespace(precision="int8", chain=["source", "onnx", "onnx_int8"], size_bytes=1, status="ok",
                          route=None, checks={}, check=None, runtime="onnxruntime")
    model = SimpleNamespace(name="m", description="d", source={"kind": "zoo"}, framework="torch")
    manifest = SimpleNamespace(artifacts={"onnx_int8": rec}, created="2026-01-01T00:00:00+00:00", model=model,
                               tool={}, versions={})
    fams = {"seeded": {"status": "pass", "sets": ["main"], "reason": "", "gating": True},
            "edge": {"status": "fail", "sets": ["edge"], "reason": "y (edge set): SQNR 2.4 dB", "gating": False}}
    validation = {"created": "2026-01-02T00:00:00+00:00", "machine": {"name": "ci"}, "targets": {
        "onnx_int8@onnxruntime": {"format": "onnx_int8", "runtime": "onnxruntime", "status": "pass", "reason": "",
                                  "max_abs": 1e-2, "families": fams}}}
    page, _ = html.render(Results(tmp_path, manifest, "sha", validations=[validation]))
    assert "<h2>Input families</h2>" in page
    assert ("<tr><th>target</th><th>seeded</th><th>edge</th></tr>\n<tr><td>onnx_int8</td><td>PASS</td>"
            "<td>FAIL (not gating)</td></tr>") in page


def test_an_unknown_family_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "deploytool", "export", "--families", "edges", "-f", "onnx",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "--families: unknown family edges (it takes perturbed, edge, all, none)" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "deploytool", "export", "--families", "seeded,data,edge", "-f", "onnx",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--families: not seeded, data (it takes perturbed, edge, all, none: the seeded and data families need " \
        "no asking" in r.stderr
    # --gate-families takes the same families on export and validate (validate once took seeded and data)
    for command in (["export", "-f", "onnx", "--out", str(tmp_path)], ["validate", str(tmp_path / "no_bundle")]):
        r = subprocess.run([sys.executable, "-m", "deploytool", *command, "--gate-families", "all,seeded,data"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "--gate-families: not seeded, data (it takes edge, all, none: the families a tier only reports" \
            in r.stderr


@pytest.mark.slow
def test_a_model_failing_only_on_edge_values_fails_the_edge_family(tmp_path):
    """tests/models/edge_saturating.py on the pinned stack: its onnx_int8 artifact, calibrated on typical
    inputs, saturates with every input at its range's high end; fp32 onnx passes every family."""
    model = str(TEST_MODELS / "edge_saturating.py")
    cmd = [sys.executable, "-m", "deploytool"]
    r = subprocess.run([*cmd, "export", "--model", model, "-f", "onnx,onnx_int8", "--families", "edge",
                        "--gate-families", "edge", "--runtime", "onnxruntime", "--out", str(tmp_path), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 5, r.stdout + r.stderr  # asked to gate: int8 fails on the edge family
    assert "families disagree: passes seeded; fails edge" in r.stdout
    bundle = tmp_path / "edge_saturating"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {k: v["family"] for k, v in manifest["golden"]["sets"].items()} == \
        {"main": "seeded", "alt": "seeded", "edge": "edge", "edge_max": "edge"}
    assert manifest["golden"]["sets"]["edge_max"]["dims"] == {"batch": 8}
    assert manifest["gate_families"] == ["edge"]  # stored: a plain validate gates as the export did
    r = subprocess.run([*cmd, "validate", str(bundle), "--runtime", "onnxruntime", "--tier-defaults"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr  # int8 does not gate on edge values by default
    assert "(--gate-families): edge (ignored (--tier-defaults))" in r.stdout
    assert "families disagree: passes seeded; fails edge" in r.stdout
    r = subprocess.run([*cmd, "validate", str(bundle), "--runtime", "onnxruntime"], capture_output=True, text=True)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "note: the bundle gates on these input families from its export (--gate-families): edge (applied; " \
        "--tier-defaults ignores them)" in r.stdout
    checks = json.loads((bundle / "reports" / "validation.json").read_text())["targets"]
    int8, fp32 = checks["onnx_int8@onnxruntime"], checks["onnx@onnxruntime"]
    assert fp32["status"] == "pass" and {v["status"] for v in fp32["families"].values()} == {"pass"}
    assert int8["status"] == "fail"
    assert int8["families"]["seeded"]["status"] == "pass" and int8["families"]["edge"]["status"] == "fail"
    assert int8["reason"].startswith("families disagree: passes seeded; fails edge: y (edge set): SQNR")
    assert int8["sets"]["main"]["y"]["passed"] and not int8["sets"]["edge"]["y"]["passed"]
    r = subprocess.run([*cmd, "report", str(bundle)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    md = (bundle / "reports" / "report.md").read_text()
    assert "## Input families" in md and "| `onnx_int8` | PASS | FAIL |" in md
    assert "<td>onnx_int8</td><td>PASS</td><td>FAIL</td>" in (bundle / "reports" / "report.html").read_text()


@pytest.mark.slow
def test_a_family_set_the_source_gives_nan_on_is_noted_or_skipped_never_failing_the_export(tmp_path):
    """tests/models/edge_nonfinite.py: the source is NaN/Inf on all three edge samples (the set is skipped, saying
    why) and on the perturbed samples clipped to an end of [0, 1] (left out, counted in the set's note)."""
    r = subprocess.run([sys.executable, "-m", "deploytool", "export", "--model",
                        str(TEST_MODELS / "edge_nonfinite.py"), "-f", "torchscript", "--runtime", "torchscript",
                        "--families", "all", "--out", str(tmp_path), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: the edge set (edge family) is skipped: the source model gives NaN/Inf on every one of its 3 " \
        "samples, so nothing can be checked against it" in r.stdout
    sets = json.loads((tmp_path / "edge_nonfinite" / "manifest.json").read_text())["golden"]["sets"]
    assert list(sets) == ["main", "alt", "perturbed", "edge_max"]
    left = 16 - sets["perturbed"]["samples"]
    assert 0 < left < 16
    assert sets["perturbed"]["note"].endswith(f"; {left} of 16 samples left out: the source model gives NaN/Inf there")


def test_an_artifact_bounding_a_dim_below_the_largest_skips_the_edge_max_set(tmp_path):
    """ExecuTorch records the batch it planned memory for (digits_cnn: 15) as the artifact's max: the edge_max
    set at the source's max (1024) is skipped there, saying why, instead of failing to run."""
    from deploytool.checking.golden import applicable_sets

    bounded = Contract.from_dict({**IMAGE.to_dict(), "dims": {"batch": {"example": 2, "alt": 3, "max": 4}}})
    sets = [GoldenSet(p.name, tmp_path / "i", tmp_path / "r", p.dims, p.samples, family=p.family)
            for p in plan_sets(IMAGE, 16, 0, families=["edge"])]
    ok, skipped = applicable_sets(bounded, sets)
    assert [s.name for s in ok] == ["main", "alt", "edge"]
    assert skipped == {"edge_max": "the artifact takes at most batch=4"}
    assert [s.name for s in applicable_sets(IMAGE, sets)[0]] == ["main", "alt", "edge", "edge_max"]


def test_gate_families_gates_the_edge_tensors_of_an_int8_artifact_judged_on_accuracy(tmp_path):
    """With labels an int8 artifact is judged on task accuracy, its tensor metrics reported only; the edge set has
    no labels, so --gate-families edge gates on its tensor metrics."""
    contract = Contract.from_dict({**CONTRACT.to_dict(), "outputs": [
        {"name": "y", "shape": ["batch", 6], "dtype": "float32", "kind": "classifier"}]})
    rng = np.random.default_rng(0)
    refs = {s: {"y": rng.normal(size=(n, 1, 6)).astype(np.float32)} for s, n in (("labelled", 20), ("edge", 3))}
    npz.save(tmp_path / "labels.npz", {"labels": refs["labelled"]["y"][:, 0].argmax(-1)})
    sets = [GoldenSet("labelled", tmp_path / "l.npz", tmp_path / "lr.npz", {"batch": 1}, 20, tmp_path / "labels.npz",
                      "y", family="data"),
            GoldenSet("edge", tmp_path / "e.npz", tmp_path / "er.npz", {"batch": 1}, 3, family="edge")]
    outputs = {}
    for s, err in (("labelled", 0.0), ("edge", 5.0)):
        outputs[s] = str(tmp_path / f"{s}.out.npz")
        npz.save(tmp_path / f"{s}.out.npz", {"y": refs[s]["y"] + err})
    f = plan()["onnx_int8"]
    rec = ArtifactRecord(format="onnx_int8", status=ArtifactStatus.OK, precision=f.precision, tier=f.tier,
                         runtime=f.runtime, parent=None, path="artifacts/m.onnx", contract=contract)
    runs = {"onnx_int8": ArtifactRan(status=RunStatus.OK, runtime=f.runtime, outputs=outputs)}
    default = judge(contract, {"onnx_int8": rec}, Evidence(runs, sets, refs))["onnx_int8"]
    assert default.status == CheckStatus.PASS and default.families["edge"]["status"] == "fail"
    assert default.families["data"]["status"] == "pass"
    gated = judge(contract, {"onnx_int8": rec}, Evidence(runs, sets, refs), Rules(gate_families=["edge"]))["onnx_int8"]
    assert gated.status == CheckStatus.FAIL and gated.sets["edge"]["y"]["gating"] is True
    assert gated.reason.startswith("families disagree: passes data; fails edge: y (edge set): ")


@pytest.mark.slow
def test_fp16_arithmetic_overflowing_only_at_the_ranges_ends_fails_the_edge_family(tmp_path):
    """The issue's case: tests/models/edge_fp16_overflow.py's tflite_fp16_arith artifact, run where fp16 arithmetic
    really happens (LiteRT's aarch64 kernels on an emulated Cortex-A55), matches on every seeded input and gives
    Inf with every input at a range's end (a square beyond 65504); natively (fp32 compute) it passes both. The
    fp16_arith tier is not accuracy-gated: the edge family gates it by default."""
    import socket

    from deploytool.emulation import build

    try:
        build.ensure()
    except build.SetupError as e:
        try:
            socket.create_connection(("deb.debian.org", 80), timeout=10).close()
        except OSError:
            pytest.skip(f"the package registries cannot be reached to build the aarch64 emulation: {e}")
        raise
    cmd = [sys.executable, "-m", "deploytool"]
    r = subprocess.run([*cmd, "export", "--model", str(TEST_MODELS / "edge_fp16_overflow.py"), "-f",
                        "tflite_fp16_arith", "--families", "edge", "--runtime", "litert", "--out", str(tmp_path),
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    bundle = tmp_path / "edge_fp16_overflow"
    r = subprocess.run([*cmd, "validate", str(bundle), "-f", "tflite_fp16_arith", "--emulate", "aarch64:cortex-a55"],
                       capture_output=True, text=True)
    assert r.returncode == 5, r.stdout + r.stderr
    checks = json.loads((bundle / "reports" / "validation.json").read_text())["targets"]
    native, arm = checks["tflite_fp16_arith@litert"], checks["tflite_fp16_arith@litert@aarch64-cortex-a55"]
    assert native["status"] == "pass" and {v["status"] for v in native["families"].values()} == {"pass"}
    assert arm["executed"] == "fp16 arith" and arm["status"] == "fail"
    assert arm["families"]["seeded"]["status"] == "pass" and arm["families"]["edge"]["status"] == "fail"
    assert arm["sets"]["main"]["y"]["metrics"]["sqnr_db"] > 40  # fp16 arithmetic itself is fine here
    assert arm["reason"].startswith("families disagree: passes seeded; fails edge: y (edge set): ")
    assert "NaN/Inf values where the reference is finite" in arm["reason"]
