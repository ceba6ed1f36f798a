"""Test model: tiny_output.py's MLP at a normal magnitude (SCALE 1): the twin that shows a check of its output
is informative (an artifact returning zeros, the mean or another sample's output fails it), so every format
PASSES where the tiny one is VACUOUS. The model, its inputs and calibration data are tiny_output.py's."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tiny_output", Path(__file__).with_name("tiny_output.py"))
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)
_tiny.SCALE = 1.0  # read by its forward() when the model runs (traced, exported or called)

INPUTS = _tiny.INPUTS
OUTPUTS = _tiny.OUTPUTS
DIMS = _tiny.DIMS
calibration_inputs = _tiny.calibration_inputs


def build():
    return _tiny.build()
