"""One module per command (export, validate, bench): each orchestrates engines (workers, judging,
timing, renderers) for one job and returns an outcome record. Reached through ``deploytool.api``."""
