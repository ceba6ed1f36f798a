"""A pytest plugin so a project's own test suite can gate on parity (registered through the
``pytest11`` entry point in pyproject.toml; ``-p deploytool.pytest_plugin`` loads it explicitly).

    import pytest

    @pytest.mark.deploytool_export          # slow: deselect with -m "not deploytool_export"
    def test_my_model_deploys(deploytool):
        outcome = deploytool.export("my_models.py:build", formats=["onnx", "tflite_fp16"],
                                    inputs=["x:batch x 3 x 32 x 32:float32"])
        # fails the test unless every artifact passed; the message is the table of the failing ones

    def test_the_release_bundle(deploytool):
        deploytool.validate("bundles/my_model")

The ``deploytool`` fixture exports into the test's temporary directory (or validates a bundle),
then asserts every target (an artifact on a runtime) passed its check: the statuses that fail the CLI
(``FAILING_CHECKS``: failed, errored, vacuous, corrupt, not exported), and, as ``--strict`` does, a
check skipped because the artifact's default runtime is not installed and a PASS on weakly covered
golden inputs (``allow`` names statuses to accept, e.g. ``{"skipped", "weak_coverage"}``), fail the
test with one table row per failing target: format, runtime, status, the hop where the error appears,
and the failing metric. A further runtime that is not installed (OpenVINO for an ``onnx`` artifact) is a
skip, as on the command line.
``assert_passed(outcome)`` is the same assertion for an outcome of ``deploytool.api``.

The marker is ``deploytool_export`` (not ``slow``, so it cannot collide with a suite's own markers).
Nothing here imports a framework: the exports and checks run in deploytool's worker processes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

MARKER = "deploytool_export"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: exports a model with deploytool (slow; deselect with "
                                       f"-m 'not {MARKER}')")


class ParityFailure(AssertionError):
    """Some artifact did not pass; the message is the table of the failing ones."""


def failures(outcome, allow: set[str] | frozenset[str] = frozenset()) -> list[list[str]]:
    """Rows (format, runtime, status, hop, metric or reason) of the targets that failed: the statuses that fail
    the CLI (``FAILING_CHECKS``: the same list everywhere), a default runtime skipped and a PASS on weakly
    covered golden inputs (both as ``--strict``: allow ``skipped`` / ``weak_coverage``), and artifacts that failed to
    export; less the statuses in ``allow``."""
    from deploytool.formats import plan
    from deploytool.report.github import failure_text
    from deploytool.running.jobs import FAILING_CHECKS, ArtifactStatus, CheckStatus

    failing = {str(s) for s in FAILING_CHECKS} - set(allow)
    formats = plan()
    rows = []
    for name, rec in outcome.manifest.artifacts.items():
        if rec.status == ArtifactStatus.FAILED and "export_failed" not in allow:
            rows.append([name, rec.runtime, "EXPORT_FAILED", "-", rec.error or ""])
    for chk in outcome.checks.values():
        if outcome.manifest.artifacts[chk.format].status == ArtifactStatus.FAILED:
            continue
        skipped_default = chk.status == CheckStatus.SKIPPED and "skipped" not in allow and \
            chk.format in formats and chk.runtime == formats[chk.format].runtime
        weak = chk.status == CheckStatus.PASS and bool(chk.coverage) and "weak_coverage" not in allow  # as --strict
        if str(chk.status) not in failing and not skipped_default and not weak:
            continue
        if weak:
            rows.append([chk.format, chk.target.where, "WEAK_COVERAGE", "-", chk.coverage])
            continue
        rows.append([chk.format, chk.target.where, chk.status.upper(), chk.hop_blamed or "-", failure_text(chk)])
    return rows


def assert_passed(outcome, allow: set[str] | frozenset[str] = frozenset()) -> None:
    """Raise ParityFailure, naming each failing artifact and metric, unless every artifact passed."""
    __tracebackhide__ = True
    from deploytool.report.console import table

    rows = failures(outcome, allow)
    if rows or not outcome.checks:
        model = outcome.manifest.model.name
        head = f"deploytool: {len(rows)} target(s) of {model} did not pass (bundle {outcome.bundle})" if rows else \
            f"deploytool: no artifact of {model} was checked (bundle {outcome.bundle})"
        body = table(["format", "runtime", "status", "hop", "metric / reason"], rows) if rows else ""
        raise ParityFailure(f"{head}\n{body}".rstrip())


class DeployTool:
    """What the ``deploytool`` fixture gives a test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def export(self, model: str, formats: list[str] | None = None, allow: set[str] | frozenset[str] = frozenset(),
               out: Path | str | None = None, **options):
        """``api.export`` into the test's temporary directory (or ``out``), then ``assert_passed``."""
        __tracebackhide__ = True
        from deploytool import api

        outcome = api.export(model, formats, out if out is not None else self.tmp_path / "bundles", **options)
        assert_passed(outcome, allow)
        return outcome

    def validate(self, bundle: Path | str, formats: list[str] | None = None,
                 allow: set[str] | frozenset[str] = frozenset(), **options):
        """``api.validate`` (reports into the test's temporary directory unless ``reports_dir`` is given), then
        ``assert_passed``."""
        __tracebackhide__ = True
        from deploytool import api

        options.setdefault("reports_dir", self.tmp_path / "deploytool-reports")
        outcome = api.validate(bundle, formats, **options)
        assert_passed(outcome, allow)
        return outcome


@pytest.fixture
def deploytool(tmp_path: Path) -> DeployTool:
    return DeployTool(tmp_path)
