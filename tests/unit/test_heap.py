"""post/heap.py against glibc's real malloc: a large buffer freed after the mmap threshold was
raised goes back to the OS (the production's per-part RSS growth with Content Credentials on)."""

from __future__ import annotations

import ctypes
import os
import threading

import pytest

from mcp_audio.post import heap

MB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
    return libc


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


# Checked without pinning the threshold: collection must not change every worker's malloc.
needs_glibc = pytest.mark.skipif(not _glibc(), reason="glibc's malloc only")


@needs_glibc
def test_a_large_buffer_freed_in_a_worker_thread_leaves_no_resident_memory() -> None:
    assert heap.fixed_mmap_threshold() is True
    libc = _libc()
    held: list[int] = []

    def native_job() -> None:
        # What c2pa-rs or a decoder does: a large buffer freed (glibc would raise its mmap
        # threshold to that size), then a smaller one, written to and freed.
        big = libc.malloc(24 * MB)
        ctypes.memset(big, 1, 24 * MB)
        libc.free(big)
        buffer = libc.malloc(12 * MB)
        ctypes.memset(buffer, 1, 12 * MB)
        held.append(_rss())
        libc.free(buffer)

    worker = threading.Thread(target=native_job)
    worker.start()
    worker.join()
    # Without a fixed threshold the 12 MB came from the thread's malloc arena and stays resident.
    assert held[0] - _rss() >= 10 * MB


@needs_glibc
def test_release_freed_returns_true_on_glibc() -> None:
    assert heap.release_freed() is True
