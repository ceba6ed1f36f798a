"""The few exceptions deploytool raises on purpose, and the exit codes they map to.

The CLI turns a DeployToolError into its one-line message and ``exit_code``; anything else is a
bug and keeps its traceback. Exit codes are defined once, here: --help is rendered from EXIT_CODES, and the tables
of docs/exit-codes.md (and the README's) are checked against it by tests/test_docs.py; COMMAND_EXIT_CODES says which
of them each command can return.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

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
    OK: "success (what that means for a command: its --help)",
    INTERNAL: "internal error (a bug: rerun with --debug and report the traceback)",
    USAGE: "usage error: bad option or argument",
    MODEL: "the model could not be loaded (unknown name, factory raised, bad inputs); nothing exported",
    EXPORT: "one or more formats failed to export (the others were exported and checked)",
    PARITY: "an artifact's outputs do not match the reference (parity failure), or the check is vacuous: an artifact "
            "returning zeros, the mean or another sample's output would pass it too (see --accept-uninformative)",
    RUNTIME: "an artifact failed to load or run in its runtime",
    SKIPPED: "a check was incomplete (only with --strict): a runtime was not installed and its check was skipped, "
             "the golden inputs covered an integer input weakly, or a multi-step check was not run or stopped early",
    BUNDLE: "the bundle is missing, unreadable, of an unknown schema, or corrupt",
    REGRESSION: "bench --compare: a row's p50 latency is slower than the baseline beyond the threshold",
    NO_MATCH: "recommend: no artifact meets the budget",
    UNUSABLE: "doctor: this machine's stack cannot do the role checked (a package it needs is missing or broken, "
              "or the network guard does not work); it prints what to install. setup: npm could not install the "
              "packages, pip could not create an environment, or the aarch64 emulation could not be built",
    SIGNALLED + 1: "interrupted by SIGHUP; like 130",
    SIGNALLED + 2: "interrupted (Ctrl-C, SIGINT): workers ended, nothing half-written left behind, a previous bundle "
                   "intact",
    SIGNALLED + 15: "interrupted by SIGTERM (a CI cancel, `timeout`); like 130",
}
SIGNALS = (SIGNALLED + 1, SIGNALLED + 2, SIGNALLED + 15)  # any command can be interrupted
# The codes each command can return, read off its code paths (a new outcome of a command is added here too).
COMMAND_EXIT_CODES = {
    "export": (OK, INTERNAL, USAGE, MODEL, EXPORT, PARITY, RUNTIME, SKIPPED, *SIGNALS),
    # validate: a --data reference needs the source model (exit 3); a failed export in the bundle is exit 4
    "validate": (OK, INTERNAL, USAGE, MODEL, EXPORT, PARITY, RUNTIME, SKIPPED, BUNDLE, *SIGNALS),
    # bench: a row that could not be timed (not exported, failed to load or run) is exit 6
    "bench": (OK, INTERNAL, USAGE, RUNTIME, SKIPPED, BUNDLE, REGRESSION, *SIGNALS),
    "report": (OK, INTERNAL, USAGE, BUNDLE, *SIGNALS),
    "recommend": (OK, INTERNAL, USAGE, BUNDLE, NO_MATCH, *SIGNALS),
    "config": (OK, INTERNAL, USAGE, *SIGNALS),
    "doctor": (OK, INTERNAL, USAGE, BUNDLE, UNUSABLE, *SIGNALS),
    "device-copy": (OK, INTERNAL, USAGE, BUNDLE, *SIGNALS),
    "setup": (OK, INTERNAL, USAGE, UNUSABLE, *SIGNALS),
}
# What success (exit 0) means for each command (the group's --help says EXIT_CODES[OK]).
SUCCESS = {
    "export": "success: every requested artifact exported and matched the reference on every runtime checked",
    "validate": "success: every artifact checked matched the reference on every runtime checked",
    "bench": "success: every row was timed (and, with --compare, none regressed)",
    "report": "success: the report was written",
    "recommend": "success: an artifact meets the budget",
    "config": "success: the options were shown",
    "doctor": "success: this machine can do the role checked",
    "device-copy": "success: the copy was written and every hash of it verified",
    "setup": "success: the npm packages, the other Python environments and the aarch64 emulation are installed (or "
             "already were; a machine that cannot build the emulation says so in a warning)",
}
# When several outcomes apply, the exit code is the first of these that occurred.
PRECEDENCE = (MODEL, BUNDLE, UNUSABLE, PARITY, RUNTIME, REGRESSION, NO_MATCH, EXPORT, SKIPPED)


def exit_codes_help(command: str | None = None) -> str:
    """The "Exit codes:" block of a --help: ``command``'s codes (COMMAND_EXIT_CODES), or all of them."""
    codes = COMMAND_EXIT_CODES[command] if command else tuple(EXIT_CODES)
    texts = {**EXIT_CODES, OK: SUCCESS[command]} if command else EXIT_CODES
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {texts[code]}" for code in codes)


def close_matches(word: str, choices: Iterable[str]) -> list[str]:
    """The choices close to a mistyped ``word`` (difflib), closest first."""
    return difflib.get_close_matches(word, list(dict.fromkeys(choices)), n=3, cutoff=0.7)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean x?)" naming the choices close to a mistyped ``word``, else ""."""
    close = close_matches(word, choices)
    if not close:
        return ""
    names = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f" (did you mean {names}?)"


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
