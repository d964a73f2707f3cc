"""Process-CPU timing with single-threaded BLAS, shared by the benchmarks.

The benchmark machines are small and shared, so wall-clock time measures the neighbours as much
as the code. :func:`cpu_times` runs a function under ``threadpoolctl.threadpool_limits(1)`` (one
BLAS/OpenMP thread) and times each run with ``time.process_time`` (CPU time of this process only).
Benchmarks report ratios against a baseline timed the same way in the same run, using the
minimum (the least disturbed run) and the median.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

from threadpoolctl import threadpool_limits

__all__ = ["cpu_times"]


def cpu_times(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict:
    """Time ``fn()`` in process CPU seconds with single-threaded BLAS.

    Parameters
    ----------
    fn : callable
        Called with no arguments; its result is discarded.
    repeats : int
        Timed calls (>= 1).
    warmup : int
        Untimed calls before the timed ones (>= 0), e.g. to fill caches.

    Returns
    -------
    dict
        ``min_s`` and ``median_s`` (floats, seconds) and ``runs`` (list of every timed run,
        seconds, in call order).

    Raises
    ------
    ValueError
        When ``repeats`` or ``warmup`` is not an integer in range.
    """
    for name, value, lo in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    runs = []
    with threadpool_limits(limits=1):
        for _ in range(warmup):
            fn()
        for _ in range(repeats):
            start = time.process_time()
            fn()
            runs.append(time.process_time() - start)
    return {"min_s": min(runs), "median_s": statistics.median(runs), "runs": runs}
