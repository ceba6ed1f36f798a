"""Platforms a target runs on besides this machine's own CPU (``Target.platform``): emulated CPUs.

``validate --emulate aarch64`` (``[validate] emulate = ["aarch64"]`` in a config) adds, for every artifact a runtime
with an emulated build runs (LiteRT's aarch64 build: every ``.tflite``; onnxruntime's: ``onnx``, ``onnx_int8``), one
target per CPU model, e.g.
``tflite_int8@litert@aarch64-cortex-a55``: the artifact on that runtime's aarch64 kernels under user-mode QEMU
emulating that CPU (``deploytool/emulation``, built by ``deploytool setup``). They are judged like every target (same
tiers, verdicts, blame and reports). They are never timed: an emulator's latency says nothing about a device's, so
bench has no ``--emulate``.

The CPU models differ in the kernels the runtimes pick for them (plain NEON, dotprod, fp16 arithmetic, SVE/i8mm), and
only some compute in fp16 at all: ``executed_precision`` says which precision a target really ran in, so a report
shows which rows exercised which kernels. Coordinator side: imports no framework.
"""
from __future__ import annotations

import functools
import platform as pyplatform
from collections.abc import Iterable
from pathlib import Path

from deploytool import emulation
from deploytool.core.errors import UsageError, did_you_mean
from deploytool.core.target import NATIVE, Target

# The CPU models, which of them compute in fp16, and the default set: deploytool.emulation (one place).
# An emulated architecture -> the runtimes with a build for it, each the Runtime of deploytool/emulation/<runtime>.py.
ARCHES = {"aarch64": ("litert", "onnxruntime")}
SEP = "-"  # aarch64-cortex-a55: the architecture, then QEMU's CPU model


def parse(values: Iterable[str] | str | None) -> list[str]:
    """``--emulate`` values (``aarch64``, ``aarch64:cortex-a72,neoverse-v1``; repeatable) -> platform names, once
    each, in order; an unknown architecture or CPU is a UsageError naming the known ones."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values or ():
        arch, _, cpus = value.partition(":")
        if arch not in ARCHES:
            raise UsageError(f"--emulate {value}: unknown architecture {arch!r}{did_you_mean(arch, list(ARCHES))} "
                             f"(known: {', '.join(ARCHES)})")
        for cpu in [c.strip() for c in cpus.split(",") if c.strip()] or emulation.DEFAULT_CPUS:
            if cpu not in emulation.QEMU_CPUS:
                known = list(emulation.QEMU_CPUS)
                raise UsageError(f"--emulate {value}: unknown CPU model {cpu!r}{did_you_mean(cpu, known)} "
                                 f"(known: {', '.join(known)})")
            name = f"{arch}{SEP}{cpu}"
            if name not in out:
                out.append(name)
    return out


def split(platform: str) -> tuple[str, str]:
    """``aarch64-cortex-a55`` -> ("aarch64", "cortex-a55")."""
    arch, _, cpu = platform.partition(SEP)
    if arch not in ARCHES or cpu not in emulation.QEMU_CPUS:
        raise ValueError(f"{platform!r}: not an emulated platform (ARCH-CPU, e.g. aarch64-cortex-a72)")
    return arch, cpu


def targets(fmt: str, runtimes: list[str], platforms: list[str]) -> list[Target]:
    """The emulated targets of an artifact whose runtimes are ``runtimes``: one per platform whose architecture
    has a build of one of them."""
    return [Target(fmt, r, p) for p in platforms for r in runtimes if r in ARCHES[split(p)[0]]]


def unavailable(platform: str) -> str | None:
    """Why the platform's emulation cannot run here (it was not built: the command that builds it), or None."""
    return emulation.unavailable()


def runtime(name: str, platform: str):
    """Worker side: the runtime ``name`` on ``platform`` (a ``deploytool.runtimes.Runtime`` whose sessions run under
    the emulator: ``deploytool/emulation/<name>.py``'s)."""
    import importlib

    arch, cpu = split(platform)
    if name not in ARCHES[arch]:
        raise ValueError(f"runtime {name} has no emulated {arch} build (emulated: {', '.join(ARCHES[arch])})")
    return importlib.import_module(f"deploytool.emulation.{name}").emulated_runtime(cpu)


def executed_precision(precision: str, compute: str | None, platform: str) -> str:
    """What a target really computed in: ``compute`` is the format's arithmetic where it differs from its stored
    ``precision`` (``fp16`` for the fp16-arithmetic TFLite, ``fp32`` for fp16 weights computed in fp32); fp16
    arithmetic runs only on CPUs that have it, the rest compute such a model in fp32."""
    if compute == "fp32" and precision != "fp32":  # reduced-precision storage, fp32 arithmetic (tflite_fp16)
        return f"fp32 ({precision} weights)"
    if compute != "fp16":
        return precision
    if platform != NATIVE and emulation.fp16_arith(split(platform)[1]):
        return FP16_ARITH
    if platform == NATIVE and host_fp16_arith():
        return FP16_ARITH
    return FP32_NO_FP16


@functools.cache
def host_fp16_arith(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this machine's own CPU has fp16 arithmetic: an ARM CPU whose features name ``asimdhp`` (Armv8.2 half
    precision; LiteRT's XNNPACK then runs an fp16-accumulating model in fp16). x86 CPUs: never (LiteRT computes such
    a model in fp32 there)."""
    if pyplatform.machine().lower() not in ("aarch64", "arm64"):
        return False
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(line.split(":", 1)[0].strip() == "Features" and "asimdhp" in line.split(":", 1)[1].split()
               for line in text.splitlines() if ":" in line)


FP16_ARITH = "fp16 arith"
FP32_NO_FP16 = "fp32 (CPU lacks fp16)"  # a model asking for fp16 arithmetic, on a CPU without it
