"""The shared benchmark timing utility: single-threaded BLAS, process CPU time, min and median."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from neurophase.benchmarks.timing import cpu_times


def test_cpu_times_runs_with_one_blas_thread():
    seen = []
    a = np.random.default_rng(0).normal(size=(64, 64))

    def work():
        seen.append([pool["num_threads"] for pool in threadpool_info()])
        return a @ a

    cpu_times(work, repeats=3, warmup=2)
    assert len(seen) == 5 and all(seen) and all(n == 1 for threads in seen for n in threads), seen


def test_cpu_times_returns_positive_cpu_seconds():
    a = np.random.default_rng(0).normal(size=(200, 200))
    result = cpu_times(lambda: [a @ a for _ in range(5)], repeats=4)
    runs = result["runs"]
    assert len(runs) == 4 and all(run > 0 for run in runs)
    assert result["min_s"] == min(runs) and result["min_s"] <= result["median_s"] <= max(runs)


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": 2.5}, {"warmup": -1}, {"repeats": True}])
def test_cpu_times_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError, match="repeats|warmup"):
        cpu_times(lambda: None, **kwargs)
