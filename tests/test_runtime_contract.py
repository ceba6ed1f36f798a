"""The runtime contract, for every runtime in the registry: in its own worker process it loads a
real artifact (or the source model it runs), reports its version and settings, and returns every
contract output, by name, matching the bundle's reference. A runtime added to the registry
without a sample here fails this test."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploytool.checking import parity
from deploytool.checking.golden import MAIN, GoldenSet
from deploytool.core import npz
from deploytool.formats import FORMATS
from deploytool.running.jobs import RunStatus
from deploytool.running.pool import RunPool
from deploytool.runtimes import RUNTIMES
from deploytool.sources import kind_of, source_artifact
from deploytool.store import manifest as M


def _target(runtime: str, bundles: dict[str, Path], work: Path):
    """(bundle, artifact path, artifact contract, tier) for ``runtime``: an artifact of a format it
    runs, else a source it runs as the reference."""
    for bundle in bundles.values():
        m = M.read(bundle)
        for name, rec in m.artifacts.items():
            if rec.runtime == runtime and rec.path and rec.contract:
                return bundle, bundle / rec.path, rec.contract, FORMATS[name].tier
        if kind_of(m.model.source).reference_runtime == runtime:
            rt, path, contract = source_artifact(m.model.source, m.contract, work)
            return bundle, path, contract, "fp32"
    pytest.fail(f"no sample artifact for runtime {runtime!r}: add a bundle that uses it")


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_runtime_loads_runs_and_names_every_output(runtime, zoo_bundles, keras_bundle, tmp_path):
    bundles = {"digits_cnn": zoo_bundles["digits_cnn"][0], "keras": keras_bundle[0]}
    bundle, artifact, contract, tier = _target(runtime, bundles, tmp_path)
    info = M.read(bundle).golden.sets[MAIN]
    golden = GoldenSet(MAIN, bundle / info.inputs, bundle / info.reference, info.dims, info.samples)
    pool = RunPool(tmp_path / "logs", tmp_path)
    pool.submit("sample", runtime, artifact, contract, [golden])
    reply = pool.results()["sample"]
    assert reply.status == RunStatus.OK, reply.error
    assert reply.runtime == runtime and reply.version and isinstance(reply.settings, dict) and reply.settings
    assert reply.load_s is not None and reply.first_inference_s is not None
    got, ref = npz.load(reply.outputs[MAIN]), npz.load(golden.reference)
    assert list(got) == contract.output_names
    for spec in contract.outputs:
        assert got[spec.name].shape == ref[spec.name].shape and str(got[spec.name].dtype) == spec.dtype
        verdict = parity.check(got[spec.name], ref[spec.name], parity.TIERS[tier])
        assert verdict.passed, (spec.name, verdict.reason)
