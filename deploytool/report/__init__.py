"""Renderers: read results, compute nothing new."""
