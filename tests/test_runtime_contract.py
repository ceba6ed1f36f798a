"""The runtime contract, for every runtime in the registry: in its own worker process it loads a
real artifact (or the source model it runs), reports its version and settings (the common keys
every runtime reports), and returns every contract output, by name, matching the bundle's
reference. A runtime added to the registry without a sample here fails this test.

In process (fast): every registry entry is complete (its extra exists, its distributions are
pinned); requirements that are not Python packages are reported missing with their hint; settings
are typed; a runtime that times itself is timed by itself through the worker's own function."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploytool import install
from deploytool.checking import parity
from deploytool.checking.golden import MAIN, GoldenSet
from deploytool.core import npz
from deploytool.core.contract import Contract
from deploytool.formats import FORMATS
from deploytool.running import jobs
from deploytool.running.jobs import RunStatus
from deploytool.running.pool import RunPool
from deploytool.runtimes import RUNTIMES, SETTINGS_KEYS, Missing, Program, Runtime, Settings, Timed
from deploytool.sources import kind_of, source_artifact
from deploytool.store import manifest as M
from deploytool.targets import runtimes_of


def _target(runtime: str, bundles: dict[str, Path], work: Path):
    """(bundle, artifact path, artifact contract, tier) for ``runtime``: an artifact of a format it
    runs, else a source it runs as the reference."""
    for bundle in bundles.values():
        m = M.read(bundle)
        for name, rec in m.artifacts.items():
            if runtime in runtimes_of(name) and rec.path and rec.contract:
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
    assert reply.runtime == runtime and reply.version and isinstance(reply.settings, dict)
    assert list(reply.settings)[:3] == list(SETTINGS_KEYS), reply.settings  # the same names on every runtime
    assert reply.settings["threads"] is None or reply.settings["threads"] >= 1
    assert reply.load_s is not None and reply.first_inference_s is not None
    got, ref = npz.load(reply.outputs[MAIN]), npz.load(golden.reference)
    assert list(got) == contract.output_names
    for spec in contract.outputs:
        assert got[spec.name].shape == ref[spec.name].shape and str(got[spec.name].dtype) == spec.dtype
        verdict = parity.check(got[spec.name], ref[spec.name], parity.TIERS[tier])
        assert verdict.passed, (spec.name, verdict.reason)


# --- in process ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_registry_entry_names_an_extra_and_pinned_distributions(runtime):
    rt = RUNTIMES[runtime]
    assert rt.extra in install.extras() and rt.install_hint == install.hint(rt.extra)
    assert rt.distributions and all(install.verified().get(d.lower()) for d in rt.distributions), rt.distributions
    assert all(isinstance(p, Program) for p in rt.programs)
    assert rt.time is None or callable(rt.time)
    assert all(f in FORMATS for f in rt.runs), rt.runs
    assert rt.missing() == [] and rt.unavailable() is None  # every runtime is installed in the test environment


def _fake(**fields) -> Runtime:
    """A runtime defined here: y = 2 * x, reporting one thread."""
    base = dict(name="fake", description="a runtime defined in the test", packages=(), extra="onnxruntime",
                load=lambda path, settings: {"threads": settings.get("threads")},
                run=lambda session, feeds: {"y": feeds["x"] * 2}, version=lambda: "0.1",
                settings=lambda session: Settings(session["threads"], extras={"kernel": "numpy"}))
    return Runtime(**{**base, **fields})


def test_a_program_that_is_not_installed_is_reported_missing_with_its_hint():
    compiler = Program("deploytool-no-such-compiler", "compiles the runner", "apt-get install no-such-compiler")
    rt = _fake(packages=("deploytool_no_such_package",), programs=(compiler, Program("sh", "runs scripts", "-")))
    assert rt.missing_packages() == ["deploytool_no_such_package"]
    assert rt.missing() == [Missing("package", "deploytool_no_such_package", rt.install_hint),
                            Missing("program", "deploytool-no-such-compiler", "apt-get install no-such-compiler",
                                    "compiles the runner")]
    line = rt.unavailable()
    assert line is not None and "apt-get install no-such-compiler" in line and rt.install_hint in line
    assert "compiles the runner" in line and "sh," not in line
    assert _fake(programs=(Program("sh", "runs scripts", "-"),)).unavailable() is None


def test_settings_are_typed_and_reported_under_the_common_names():
    s = Settings(2, 1, True, {"xnnpack": True})
    assert s.to_dict() == {"threads": 2, "inter_op_threads": 1, "spinning": True, "xnnpack": True}
    assert s["xnnpack"] is True and s["threads"] == 2
    with pytest.raises(ValueError, match="threads"):
        Settings(1, extras={"threads": 4})
    assert _fake().reported_settings({"threads": 3}) == {"threads": 3, "inter_op_threads": None, "spinning": None,
                                                          "kernel": "numpy"}
    with pytest.raises(TypeError, match="not runtimes.Settings"):
        _fake(settings=lambda session: {"intra_op_threads": 1}).reported_settings({"threads": 1})


CONTRACT = Contract.from_dict({"inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
                               "outputs": [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}],
                               "dims": {"batch": {"example": 1, "alt": 3}}})
PROTOCOL = {"warmup_runs": 1, "warmup_time": 0.0, "min_runs": 5, "min_time": 0.0}


def _time(monkeypatch, tmp_path, rt: Runtime) -> jobs.ArtifactTimed:
    """Time ``rt`` through the worker's own function, in this process (the registry holds it for the call)."""
    from deploytool.running import worker

    monkeypatch.setitem(RUNTIMES, rt.name, rt)
    inputs = tmp_path / "inputs.npz"
    npz.save(inputs, {"x": np.arange(12, dtype=np.float32).reshape(3, 1, 4)})
    (tmp_path / "artifact").write_text("")
    job = jobs.TimeArtifact(runtime=rt.name, artifact=str(tmp_path / "artifact"), contract=CONTRACT,
                            inputs=str(inputs), batch=2, protocol=PROTOCOL, settings={"threads": 1})
    return worker.time_artifact(job, {})


def test_a_runtime_that_times_itself_is_timed_by_itself(monkeypatch, tmp_path):
    seen: dict = {}

    def time_itself(session, feeds, protocol):
        seen.update(feeds=feeds, protocol=protocol)
        return Timed(samples_ns=[np.int64(3000), 1000, 2000], warmup_runs=4, measure_s=0.5)

    reply = _time(monkeypatch, tmp_path, _fake(name="fake_self_timed", time=time_itself))
    assert reply.status == RunStatus.OK, reply.error
    assert (reply.samples_ns, reply.warmup_runs, reply.measure_s, reply.capped) == ([3000, 1000, 2000], 4, 0.5, False)
    assert all(type(s) is int for s in reply.samples_ns)  # JSON-ready
    assert reply.settings == {"threads": 1, "inter_op_threads": None, "spinning": None, "kernel": "numpy"}
    assert reply.first_inference_ms is not None  # the output mapping is still checked once through run()
    # It gets the worker's batched artifact feeds (3 samples, batch 2) and the protocol, typed.
    assert len(seen["feeds"]) == 3 and seen["feeds"][0]["x"].shape == (2, 4)
    assert seen["protocol"].min_runs == 5 and seen["protocol"].warmup_runs == 1


def test_without_its_own_timer_a_runtime_is_timed_by_the_worker_and_a_bad_timer_fails_its_row(monkeypatch, tmp_path):
    reply = _time(monkeypatch, tmp_path, _fake(name="fake_python"))
    assert reply.status == RunStatus.OK and len(reply.samples_ns) >= 5 and reply.warmup_runs >= 1
    bad = _time(monkeypatch, tmp_path, _fake(name="fake_bad_timer", time=lambda s, f, p: [1, 2, 3]))
    assert bad.status == RunStatus.RUN_FAILED and "not runtimes.Timed" in (bad.error or "")
    empty = _time(monkeypatch, tmp_path, _fake(name="fake_no_samples", time=lambda s, f, p: Timed([], 0, 0.0)))
    assert empty.status == RunStatus.RUN_FAILED and "no samples" in (empty.error or "")


def test_doctor_lists_a_runtimes_programs_with_the_hint_to_install_them(monkeypatch):
    from deploytool import doctor
    from deploytool.runtimes import RUNTIMES

    compiler = Program("deploytool-no-such-compiler", "compiles the runner", "apt-get install no-such-compiler")
    monkeypatch.setitem(RUNTIMES, "fake_cpp", _fake(name="fake_cpp", programs=(compiler, Program("sh", "-", "-"))))
    listed = {c.name: c for c in doctor.components() if c.runtime == "fake_cpp" and c.program}
    assert not listed["deploytool-no-such-compiler"].installed and listed["sh"].installed
    assert listed["deploytool-no-such-compiler"].extra == "apt-get install no-such-compiler"
