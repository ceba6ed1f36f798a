"""A target: one artifact on one runtime on one platform, the unit of checking, timing, reporting and
recommending.

A format is how an artifact is made; a runtime is what runs it; a platform is the CPU it runs on
(``native``, or an emulated one such as ``aarch64`` under QEMU). One ``.onnx`` runs on onnxruntime and
on OpenVINO, and the verdicts differ, so every result is keyed by a ``Target``, never by a format
alone. Pure: no registry, no framework.

The key is ``FORMAT@RUNTIME`` (``onnx@openvino``), with ``@PLATFORM`` appended off the native
platform (``tflite_int8@litert@aarch64``). A bare format name in a key written by an earlier
version (``validation.json`` keyed by format) reads as that format on its default runtime
(``Target.parse(key, default_runtime)``).
"""
from __future__ import annotations

from dataclasses import dataclass

NATIVE = "native"
SEP = "@"


@dataclass(frozen=True, order=True)
class Target:
    format: str
    runtime: str
    platform: str = NATIVE

    @property
    def key(self) -> str:
        """The one spelling in result files, job keys and option values: ``onnx@openvino``."""
        base = f"{self.format}{SEP}{self.runtime}"
        return base if self.platform == NATIVE else f"{base}{SEP}{self.platform}"

    def label(self, default_runtime: str | None = None) -> str:
        """For prose: the format alone on its default runtime natively, else the key."""
        if self.runtime == default_runtime and self.platform == NATIVE:
            return self.format
        return self.key

    @property
    def where(self) -> str:
        """The runtime (and platform off native), as a table's runtime column shows it."""
        return self.runtime if self.platform == NATIVE else f"{self.runtime} ({self.platform})"

    @classmethod
    def parse(cls, key: str, default_runtime: str | None = None) -> Target:
        """``onnx@openvino`` -> Target; a bare ``onnx`` needs ``default_runtime`` (ValueError otherwise)."""
        parts = key.split(SEP)
        if not parts[0] or len(parts) > 3 or any(not p for p in parts[1:]):
            raise ValueError(f"{key!r}: a target is FORMAT@RUNTIME[@PLATFORM]")
        if len(parts) == 1:
            if default_runtime is None:
                raise ValueError(f"{key!r}: a target is FORMAT@RUNTIME[@PLATFORM]")
            return cls(parts[0], default_runtime)
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else NATIVE)

    def __str__(self) -> str:
        return self.key
