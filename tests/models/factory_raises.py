"""Test model whose factory raises."""
INPUTS = [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]
OUTPUTS = [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
DIMS = {"batch": {"example": 2, "alt": 3, "min": 1, "max": 64}}
def build():
    raise RuntimeError("weights file corrupted")
