"""Emulated aarch64 CPUs: the runtimes' aarch64 builds (LiteRT, onnxruntime), run by user-mode QEMU on an x86 machine,
per emulated CPU model.

The runtimes pick their kernels per instruction set (plain NEON, dotprod, fp16 arithmetic, SVE/i8mm), so the same
artifact computes differently on an ARM device than on x86, and some precisions (fp16 arithmetic) exist only there.
``build`` makes the environment once per machine (``deploytool setup``, part ``aarch64``): QEMU >= 10, an arm64
Python 3.11 sysroot and the aarch64 wheels, every input pinned by the lock files beside it. ``<runtime>.py``
(``litert``, ``onnxruntime``: the runtimes ``platforms.ARCHES`` names) is the host side of that runtime's sessions (a
``deploytool.runtimes.Runtime`` per CPU model, on ``session``'s process and protocol) and ``runner`` what runs inside
the emulated Python. Imports nothing but the standard library here, so the coordinator and ``doctor`` can ask about it.
"""
from __future__ import annotations

# One per kernel family the runtimes choose between; the reason is what that CPU model adds (QEMU's -cpu names).
DEFAULT_CPUS = ("cortex-a72", "cortex-a55", "neoverse-v1")
WHY = {
    "cortex-a72": "plain NEON: no fp16 arithmetic, no dotprod",
    "cortex-a55": "NEON with fp16 arithmetic and dotprod",
    "neoverse-v1": "SVE, i8mm and bf16, with fp16 arithmetic and dotprod",
}
# The CPU models of the pinned QEMU (10.0.2, `qemu-aarch64 -cpu help`) whose emulated /proc/cpuinfo lists `fphp
# asimdhp` (FEAT_FP16: the kernels' fp16 arithmetic runs on them); checked under the emulator for each model.
QEMU_CPUS = ("a64fx", "cortex-a35", "cortex-a53", "cortex-a55", "cortex-a57", "cortex-a710", "cortex-a72",
             "cortex-a76", "max", "neoverse-n1", "neoverse-n2", "neoverse-v1")
FP16_ARITH = frozenset({"a64fx", "cortex-a55", "cortex-a710", "cortex-a76", "max", "neoverse-n1", "neoverse-n2",
                        "neoverse-v1"})


def fp16_arith(cpu: str) -> bool:
    """Whether the emulated CPU model has fp16 arithmetic (FEAT_FP16), so an fp16-accumulating model computes in fp16
    on it and in fp32 elsewhere. Raises ValueError for a model the pinned QEMU does not know."""
    if cpu not in QEMU_CPUS:
        raise ValueError(f"unknown aarch64 CPU model {cpu!r} (QEMU knows {', '.join(QEMU_CPUS)})")
    return cpu in FP16_ARITH


def unavailable() -> str | None:
    """Why emulated targets cannot run here (the environment was not built: the command that builds it), or None."""
    from deploytool.emulation import build

    return None if build.installed() else f"the aarch64 emulation environment is not set up: {build.HINT}"
