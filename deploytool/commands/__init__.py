"""One module per command (export, validate, bench, report, recommend): each orchestrates engines
(workers, judging, timing, renderers) for one job and returns an outcome record. Reached through
``deploytool.api``."""
from __future__ import annotations

from deploytool.core.errors import UsageError


def check_run_options(timeout: float | None, tolerances: dict | None, max_drop: dict | None) -> None:
    """Options every checking command takes, whether from the command line, a config file or the API:
    a positive time limit, finite non-negative tolerances and accuracy gates (one line, exit 2)."""
    from deploytool.checking.parity import check_drops, check_overrides

    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout}")
    try:
        check_overrides(tolerances or {}, "tolerances")
        check_drops(max_drop or {}, "--max-accuracy-drop")
    except ValueError as e:
        raise UsageError(str(e)) from None
