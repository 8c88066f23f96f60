"""Process settings for fast CPU training.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` when freed, so the next step's same-sized tensor
page-faults its memory in again. The quickstart's first CNNIQA activation is 256 crops ×
50 × 26 × 26 floats = 35 MB per step: measured on the 2-core CPU, one epoch made 4.3 M page
faults and spent a third of its CPU time in the kernel (docs/benchmarks.md). Keeping freed
memory in the heap (``M_MMAP_MAX = 0``: no mmap; ``M_TRIM_THRESHOLD`` high: no trimming)
removes them. This is what ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=…`` do from the
environment; set here so every entry point gets it, and only where glibc is the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory instead of unmapping it; True when applied.

    Skipped when the user set ``MALLOC_MMAP_MAX_`` or ``IQA_KEEP_FREED_MEMORY=0``, or
    when the C library is not glibc (macOS, musl, Windows)."""
    if os.environ.get("IQA_KEEP_FREED_MEMORY", "1") == "0" or "MALLOC_MMAP_MAX_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    log.debug("glibc keeps freed memory: %s", applied)
    return applied
