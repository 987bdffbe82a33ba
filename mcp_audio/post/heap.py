"""Keep memory that native code frees from staying resident (glibc's malloc only).

glibc raises its mmap threshold after a large buffer is freed (up to 32 MB), so later buffers
of that size are carved from per-thread malloc arenas instead of mappings of their own, and
stay resident after they are freed. c2pa-rs signing a file, PyAV and numpy decoding one, in the
many worker threads of a production, kept ~2 MB a part resident that nothing held.
`fixed_mmap_threshold` pins the threshold (at 2 MiB), so a large buffer is returned to the OS
when freed; `release_freed` hands back what the arenas hold free (`malloc_trim`).
Elsewhere (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["MMAP_THRESHOLD", "fixed_mmap_threshold", "release_freed"]

# Buffers from 2 MiB get a mapping of their own (c2pa's copies of a file, decoded parts). glibc's
# default 128 KiB also maps numpy's audio blocks: measuring 10 min of audio then took 1.28 s of
# system time instead of 0.26 (2 MiB: 0.37), for 12 MB less peak in the hour's production.
MMAP_THRESHOLD = 2 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")  # by name: ctypes.util.find_library would run ldconfig
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


@functools.cache
def fixed_mmap_threshold() -> bool:
    """Pin malloc's mmap threshold (setting it turns glibc's raising of it off), once per
    process; False where there is no mallopt."""
    libc = _libc()
    return libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def release_freed() -> bool:
    """Return the free memory of every malloc arena to the OS; False where there is no
    malloc_trim. Takes milliseconds: call it after a large native job, not in a loop."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
