"""Handing the memory that PyTorch frees on the CPU back to the system during a run.

glibc's malloc serves an allocation above its mmap threshold with `mmap` and unmaps it when it
is freed, but it raises that threshold each time such a block is freed (up to 32 MB). After
the first steps a run's activations therefore come from the heap, where tensors of every batch
width fragment it, and its free pages stay resident. A 20newsgroups run held 1.8-2.4 GB free
inside the heap from its first joint step on, and that was most of what took its peak past
6 GB (`benchmarks/experiments/memory_growth.py`).

`malloc_trim(0)` gives those free pages back. Measured on a short 20newsgroups run, calling it
every 5 steps cost no time and lowered the peak by 0.8 GB; fixing the mmap threshold at 1 MB
instead lowered it about as much but made the joint steps 37% slower (every activation's pages
are then faulted in afresh).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Gives the pages that glibc's heap holds free back to the system; True when it could
    (glibc only: elsewhere a no-op)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
