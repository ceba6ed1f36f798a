"""One module per command (export, validate, bench, report, recommend): each orchestrates engines
(workers, judging, timing, renderers) for one job and returns an outcome record. Reached through
``deploytool.api``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from deploytool.core.errors import UsageError

if TYPE_CHECKING:
    from deploytool.checking.parity import Tolerances


def check_run_options(timeout: float | None, tolerances: Tolerances | dict | None, max_drop: dict | None) -> None:
    """Options every checking command takes, whether from the command line, a config file or the API:
    a positive time limit, finite non-negative tolerances and accuracy gates (one line, exit 2). A
    ``Tolerances`` was checked when it was made."""
    from deploytool.checking.parity import check_drops

    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout}")
    tolerances_of(tolerances)
    try:
        check_drops(max_drop or {}, "--max-accuracy-drop")
    except ValueError as e:
        raise UsageError(str(e)) from None


def tolerances_of(value: Tolerances | dict | None, what: str = "tolerances") -> Tolerances:
    """Tolerance overrides as the API takes them (a ``Tolerances``, or its plain table), checked: exit 2 when
    malformed."""
    from deploytool.checking.parity import Tolerances

    try:
        return Tolerances.from_dict(value, what)
    except ValueError as e:
        raise UsageError(str(e)) from None
