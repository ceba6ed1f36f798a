"""What the CLI and users' code call. Heavy frameworks are imported only inside workers."""
from __future__ import annotations

from deploytool.exporter import ExportOutcome, export

__all__ = ["export", "ExportOutcome"]
