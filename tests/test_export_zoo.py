"""Every format x every reference model, parametrized over the registries."""
from __future__ import annotations

import pytest
from conftest import assert_fits, manifest_of, zoo_formats, zoo_statuses

from deploytool.core.contract import Contract
from deploytool.formats import FORMATS
from deploytool.runtimes import RUNTIMES
from deploytool.sources.zoo import zoo_names
from deploytool.store import bundle as B
from deploytool.store import manifest as M

ZOO = zoo_names()


def test_zoo_has_the_required_models():
    assert {"digits_cnn", "mobilenet_v2", "tiny_transformer", "multi_io"} <= set(ZOO)


@pytest.mark.parametrize("model", ZOO)
def test_export_exits_zero_and_prints_the_table(zoo_bundles, model):
    bundle, proc = zoo_bundles[model]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for fmt in zoo_formats(model):
        allowed = {s.upper() for s in zoo_statuses(model, fmt)}
        assert any(line.startswith(fmt) and set(line.split()) & allowed for line in proc.stdout.splitlines()), \
            proc.stdout
    assert "Traceback" not in proc.stderr
    assert_fits(proc.stdout)
    # not a terminal: one progress line per stage on stderr, none per artifact (that is --debug)
    stages = [ln for ln in proc.stderr.splitlines() if ln.startswith("[deploytool ")]
    assert any("exporting" in ln and "(torch worker)" in ln for ln in stages), proc.stderr
    assert any("checking artifacts on their runtimes" in ln for ln in stages), proc.stderr
    assert not any(": exporting" in ln for ln in stages), proc.stderr


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("model", ZOO)
def test_every_artifact_exported_hashed_and_matching(zoo_bundles, model, fmt):
    bundle, _ = zoo_bundles[model]
    if fmt not in zoo_formats(model):
        pytest.skip(f"{fmt} is not exported for {model} in the suite (conftest.zoo_formats)")
    rec = manifest_of(bundle)["artifacts"][fmt]
    spec = FORMATS[fmt]
    assert rec["status"] == "ok", rec.get("error")
    assert rec["check"]["status"] in zoo_statuses(model, fmt), rec["check"]["reason"]
    assert rec["parent"] == spec.parent and rec["precision"] == spec.precision and rec["runtime"] == spec.runtime
    assert rec["exporter"]["name"] == spec.exporter and rec["exporter"]["version"]
    assert rec["files"] and rec["size_bytes"] == sum(f["size"] for f in rec["files"]) > 0
    B.verify_files(bundle, M.read(bundle).artifacts[fmt].files, fmt)  # raises on a hash/size mismatch
    contract = Contract.from_dict(rec["contract"])
    assert contract.input_names == [s["name"] for s in manifest_of(bundle)["contract"]["inputs"]]
    if spec.precision == "fp32":
        assert rec["check"]["max_abs"] <= 1e-4


@pytest.mark.parametrize("model", ZOO)
def test_tensorflow_artifacts_record_their_layout(zoo_bundles, model):
    m = manifest_of(zoo_bundles[model][0])
    for fmt in ("savedmodel", "tflite_fp32"):
        for spec in m["artifacts"][fmt]["contract"]["inputs"]:
            if len(spec["shape"]) == 4:
                assert spec["layout"] == "NHWC" and spec["perm"] == [0, 2, 3, 1]
                assert spec["artifact_shape"] == [spec["shape"][i] for i in (0, 2, 3, 1)]
            else:
                assert "perm" not in spec


def test_digits_cnn_checks_on_real_held_out_digits(zoo_bundles):
    from deploytool.core import npz
    from deploytool.models import digits_cnn

    bundle, _ = zoo_bundles["digits_cnn"]
    inputs = npz.load(bundle / manifest_of(bundle)["golden"]["sets"]["main"]["inputs"])["image"]
    _, _, x_test, _ = digits_cnn.load_split()
    assert inputs.shape == (16, 1, 1, 8, 8)
    # every golden sample is one of the held-out digits, not noise
    flat = {x.tobytes() for x in x_test}
    assert all(x[0].tobytes() in flat for x in inputs)
    assert digits_cnn.recorded_accuracy()["held_out_accuracy"] >= 0.95


def test_multi_io_keeps_names_and_order(zoo_bundles):
    from deploytool.core import npz

    bundle, _ = zoo_bundles["multi_io"]
    m = manifest_of(bundle)
    assert [s["name"] for s in m["contract"]["inputs"]] == ["image", "meta"]
    assert [s["name"] for s in m["contract"]["outputs"]] == ["score", "embedding"]
    ref = npz.load(bundle / manifest_of(bundle)["golden"]["sets"]["main"]["reference"])
    assert ref["score"].shape == (16, 1, 5) and ref["embedding"].shape == (16, 1, 16)
    meta = npz.load(bundle / manifest_of(bundle)["golden"]["sets"]["main"]["inputs"])["meta"]
    assert meta.dtype.name == "int64" and meta.min() >= 0 and meta.max() < 8
    onnx_outputs = [s["artifact_name"] for s in m["artifacts"]["onnx"]["contract"]["outputs"]]
    assert onnx_outputs == ["score", "embedding"]


def test_tiny_transformer_ids_in_vocab_and_dynamic_seq_in_onnx(zoo_bundles):
    import onnx

    from deploytool.core import npz

    bundle, _ = zoo_bundles["tiny_transformer"]
    ids = npz.load(bundle / manifest_of(bundle)["golden"]["sets"]["main"]["inputs"])["ids"]
    assert ids.dtype.name == "int64" and ids.min() >= 0 and ids.max() < 1000
    g = onnx.load(str(bundle / "artifacts/tiny_transformer.onnx")).graph
    dims = [d.dim_param for d in g.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "seq"]


def test_runtimes_registry_covers_every_format():
    for fmt in FORMATS.values():
        assert fmt.runtime in RUNTIMES


def test_keep_layout_keeps_nchw_in_tensorflow_artifacts(run_cli, tmp_path):
    proc = run_cli("export", "--model", "multi_io", "--keep-layout", "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = manifest_of(tmp_path / "multi_io")
    assert m["artifacts"]["savedmodel"]["exporter"]["options"]["keep_layout"] is True
    for fmt in ("savedmodel", "tflite_fp32", "tflite_fp16"):
        image = m["artifacts"][fmt]["contract"]["inputs"][0]
        assert image["layout"] == "NCHW" and "perm" not in image
        assert m["artifacts"][fmt]["check"]["status"] == "pass"
