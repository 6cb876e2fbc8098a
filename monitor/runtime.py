"""Process-wide tuning applied by driftline's entry points (CLI, service).

glibc returns freed blocks above 128 KiB straight to the kernel, so every
large numpy temporary costs fresh page faults; on the 100k-row arrays the
drift engine works on that doubles the cost of a sort.  Raising the mmap and
trim thresholds keeps those pages in the heap for reuse.  Measured in
benchmarks/README.md.  A no-op where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Keep large freed blocks for reuse; True when applied."""
    global _done
    if _done or os.environ.get("DRIFTLINE_NO_MALLOPT"):
        return _done
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
