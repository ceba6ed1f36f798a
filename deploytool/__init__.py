"""deploytool: export a model to every deployment format and prove each artifact."""
__version__ = "0.1.0"
