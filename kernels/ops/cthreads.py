"""Split a C routine's work items over the intra-op threads (ctypes releases the GIL while C runs)."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch


class SplitRunner:
    """``runner(fn, n_items, args, min_items)`` calls ``fn(*args, start, stop)`` over ``[0, n_items)`` split into
    up to ``torch.get_num_threads()`` contiguous ranges of at least ``min_items`` items; one pool per op."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, fn: Callable[..., None], n_items: int, args: tuple, min_items: int = 1) -> None:
        n_thr = max(1, min(torch.get_num_threads(), n_items // max(1, min_items)))
        if n_thr == 1:
            fn(*args, 0, n_items)
            return
        if self._pool is None or self._pool._max_workers < n_thr:   # noqa: SLF001 (resize on demand)
            self._pool = ThreadPoolExecutor(max_workers=n_thr, thread_name_prefix=self.name)
        bounds = [n_items * i // n_thr for i in range(n_thr + 1)]
        futs = [self._pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, n_thr)]
        fn(*args, bounds[0], bounds[1])
        for f in futs:
            f.result()
