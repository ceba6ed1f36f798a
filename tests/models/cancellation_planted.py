"""Test model: cancellation.py with one weight of one branch scaled by 1 + 1e-3 (cancellation.PLANTED): a
wrong artifact that tests/test_oracle.py puts into a cancellation bundle in place of the correct one."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("cancellation", Path(__file__).with_name("cancellation.py"))
_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_model)

INPUTS = _model.INPUTS
OUTPUTS = _model.OUTPUTS
DIMS = _model.DIMS


def build():
    return _model.build(planted=True)
