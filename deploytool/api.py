"""The one door: what the CLI and users' code call. Each function returns an outcome record
(results as data); the CLI only parses and prints. Heavy frameworks are imported only inside
worker processes, never by importing this module.

    from deploytool import api
    outcome = api.export("digits_cnn", ["onnx"], out="bundles")
    assert outcome.exit_code == 0, outcome.checks["onnx"].reason
    report = api.validate(outcome.bundle, tolerances={"onnx:*": {"atol": 1e-3}})
    # or one options object, as the CLI builds: api.export(model, api.ExportOptions(formats=["onnx"], seed=1))
    timing = api.bench(outcome.bundle, threads=[1])
    api.device_copy(outcome.bundle, "device/digits_cnn")  # without calibration data, logs/ and reports/
"""
from __future__ import annotations

from deploytool.commands.bench import BenchOptions, BenchOutcome
from deploytool.commands.bench import run as bench
from deploytool.commands.device_copy import DeviceCopyOutcome
from deploytool.commands.device_copy import run as device_copy
from deploytool.commands.export import ExportOptions, ExportOutcome
from deploytool.commands.export import run as export
from deploytool.commands.recommend import Budget, RecommendOutcome
from deploytool.commands.recommend import run as recommend
from deploytool.commands.report import ReportOutcome
from deploytool.commands.report import run as report
from deploytool.commands.setup import SetupOutcome
from deploytool.commands.setup import run as setup
from deploytool.commands.validate import ValidateOptions, ValidateOutcome
from deploytool.commands.validate import run as validate
from deploytool.store.manifest import read as read_manifest

__all__ = ["export", "ExportOptions", "ExportOutcome", "validate", "ValidateOptions", "ValidateOutcome",
           "bench", "BenchOptions", "BenchOutcome", "report", "ReportOutcome", "recommend", "Budget",
           "RecommendOutcome", "read_manifest", "device_copy", "DeviceCopyOutcome",
           "setup", "SetupOutcome"]
