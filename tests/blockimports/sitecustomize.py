"""Test helper: makes the packages named in $DEPLOYTOOL_BLOCK_IMPORTS unimportable in every
process started with this directory on PYTHONPATH (simulates a device without them)."""
import os
import sys

_BLOCKED = {m for m in os.environ.get("DEPLOYTOOL_BLOCK_IMPORTS", "").split(",") if m}


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)", name=name)
        return None


if _BLOCKED:
    sys.meta_path.insert(0, _Blocker())
