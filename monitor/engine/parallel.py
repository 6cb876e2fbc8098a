"""A shared thread pool for per-feature work.

numpy's sorts and the ECDF kernel release the GIL, so features of one report
are scored side by side.  Results come back in input order and the first
exception propagates, so callers see exactly what a plain loop would give.
Set DRIFTLINE_THREADS=1 to run everything inline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None


def workers() -> int:
    configured = os.environ.get("DRIFTLINE_THREADS")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, min(8, os.cpu_count() or 1))


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    global _pool
    n = workers()
    if n == 1 or len(items) < 2:
        return [fn(item) for item in items]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="driftline")
    return list(_pool.map(fn, items))
