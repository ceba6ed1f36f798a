"""The few exceptions deploytool raises on purpose, and the exit codes they map to.

The CLI turns a DeployToolError into its one-line message and ``exit_code``; anything else is a
bug and keeps its traceback. Exit codes are documented once, here, and rendered into --help and
the README from EXIT_CODES.
"""
from __future__ import annotations

OK = 0
INTERNAL = 1
USAGE = 2
MODEL = 3
EXPORT = 4
PARITY = 5
RUNTIME = 6
SKIPPED = 7
BUNDLE = 8
REGRESSION = 9
NO_MATCH = 10
UNUSABLE = 11
SIGNALLED = 128  # + the signal's number: interrupted by SIGHUP (129), SIGINT (130) or SIGTERM (143)

EXIT_CODES = {
    OK: "success: every requested artifact exported and matched the reference",
    INTERNAL: "internal error (a bug: rerun with --debug and report the traceback)",
    USAGE: "usage error: bad option or argument",
    MODEL: "the model could not be loaded (unknown name, factory raised, bad inputs); nothing exported",
    EXPORT: "one or more formats failed to export (the others were exported and checked)",
    PARITY: "an artifact's outputs do not match the reference (parity failure), or the check is vacuous: a reference "
            "output does not vary with the input (see --accept-constant-output)",
    RUNTIME: "an artifact failed to load or run in its runtime",
    SKIPPED: "a runtime was not installed and its check was skipped (only with --strict)",
    BUNDLE: "the bundle is missing, unreadable, of an unknown schema, or corrupt",
    REGRESSION: "bench --compare: a row's p50 latency is slower than the baseline beyond the threshold",
    NO_MATCH: "recommend: no artifact meets the budget",
    UNUSABLE: "doctor: this machine's stack cannot do the role checked (a package it needs is missing or broken, "
              "or the network guard does not work); it prints what to install",
    SIGNALLED + 1: "interrupted by SIGHUP; like 130",
    SIGNALLED + 2: "interrupted (Ctrl-C, SIGINT): workers ended, nothing half-written left behind, a previous bundle "
                   "intact",
    SIGNALLED + 15: "interrupted by SIGTERM (a CI cancel, `timeout`); like 130",
}
# When several outcomes apply, the exit code is the first of these that occurred.
PRECEDENCE = (MODEL, BUNDLE, UNUSABLE, PARITY, RUNTIME, REGRESSION, NO_MATCH, EXPORT, SKIPPED)


def exit_codes_help() -> str:
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


def worst(codes) -> int:
    """Fold several outcome codes into the one the process exits with."""
    present = set(codes)
    for code in PRECEDENCE:
        if code in present:
            return code
    return OK


class DeployToolError(Exception):
    """A user-facing failure: one line of message, one exit code."""

    exit_code = INTERNAL

    def __init__(self, message: str, exit_code: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.detail = detail  # e.g. a worker's traceback, shown with --debug


class UsageError(DeployToolError):
    exit_code = USAGE


class ModelError(DeployToolError):
    exit_code = MODEL


class BundleError(DeployToolError):
    exit_code = BUNDLE


class NetworkBlocked(RuntimeError):
    """Raised inside a worker when any code tries to reach the network."""


def short_error(exc: BaseException, limit: int = 300) -> str:
    """A converter exception shortened to what matters: its type and first meaningful line."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    msg = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
