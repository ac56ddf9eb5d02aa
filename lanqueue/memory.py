"""Giving back the memory start-up used and freed (a node idles on a Raspberry Pi for weeks).

Importing and wiring a node allocates and frees many small objects; glibc keeps the freed heap
mapped unless asked. One `malloc_trim(0)` once the node is ready returns it to the system. On a C
library without it (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

__all__ = ["release_freed_memory"]


def release_freed_memory() -> bool:
    """Collect garbage and return freed heap pages to the system; True if the C library could."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
