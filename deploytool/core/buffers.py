"""64-byte-aligned numpy arrays.

TensorFlow's CPU allocator aligns every buffer to 64 bytes (``Allocator::kAllocatorAlignment``,
the largest ``EIGEN_MAX_ALIGN_BYTES``) and its kernels CHECK it, aborting the whole process on a
tensor that lacks it ("Check failed: IsAligned()"); a buffer handed to it as is (DLPack) must be
aligned so. numpy aligns to 16. Bench makes its timing feeds aligned once, before timing, so that
a runtime that can take a buffer as it is does so (as a serving process holding its own tensors
would) instead of copying it on every call.
"""
from __future__ import annotations

import numpy as np

ALIGN = 64


def by_address(array: np.ndarray) -> bool:
    """Whether a runtime can take ``array`` by its address at all: numeric (no strings or objects) and
    not empty (an empty view's address is not its buffer's)."""
    return array.dtype.kind in "biufc" and array.size > 0


def as_is(array: np.ndarray) -> bool:
    """Whether ``array`` can be handed over as it is: by address, aligned, C-contiguous, native-order."""
    return (by_address(array) and array.ctypes.data % ALIGN == 0 and array.flags.c_contiguous
            and array.dtype.isnative)


def empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ALIGN-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    raw = np.empty(nbytes + ALIGN, np.uint8)
    offset = (-raw.ctypes.data) % ALIGN
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def aligned(array: np.ndarray) -> np.ndarray:
    """``array`` as an aligned, C-contiguous, native-order copy (the array itself where it already is one;
    strings and objects, which no runtime takes by address, and empty arrays as they are)."""
    array = np.asarray(array)
    if not by_address(array) or as_is(array):
        return array
    out = empty(array.shape, array.dtype.newbyteorder("="))
    np.copyto(out, array, casting="equiv")
    return out
