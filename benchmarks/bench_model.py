"""Benchmark of the analog crossbar model against plain float32 matmuls, in the same run.

Model: a 256 x 256 tile (one differential pair per weight, pcm-joshi), a batch of 1024
signed 8-bit input vectors as 8 bit-planes, read 1 day after programming with programming
noise, drift, output-referred read noise and 8-bit ADC quantisation on.
Baseline: the same 8 bit-plane products as float32 numpy matmuls (1024 x 256 by 256 x 256),
no noise, drift or quantisation. Both are timed best-of-``repeats``.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.crossbar import build_tile, input_planes

__all__ = ["bench_model", "BENCH_SEED"]

BENCH_SEED = 20260101
DAY_S = 86400.0


def bench_config(rows: int = 256, cols: int = 256) -> ChipConfig:
    """The benchmark chip: defaults, one slice, no reference columns."""
    return ChipConfig().replace(tile={"rows": rows, "cols": cols}, weights={"slices": 1}, datapath={"lanes": min(cols, 16)},
                                analog={"reference_columns": 0})


def _best_time(func, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def bench_model(batch: int = 1024, rows: int = 256, cols: int = 256, repeats: int = 5,
                seed: int = BENCH_SEED, t_s: float = DAY_S) -> dict:
    """Time the model and the matmul baseline; return the figures as a JSON-ready dict.

    Parameters
    ----------
    batch, rows, cols : int
        Input vectors, tile rows and columns.
    repeats : int
        Timed repetitions of each (best of).
    seed : int
        Seeds weights, inputs, programming and reads.
    t_s : float
        Time since programming of the reads.
    """
    if repeats < 1 or batch < 1:
        raise ValueError(f"repeats and batch must be >= 1, not {repeats!r} and {batch!r}")
    cfg = bench_config(rows, cols)
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(rows, cols))
    inputs = rng.integers(-128, 128, size=(batch, rows))
    tile = build_tile(cfg, weights, seed)
    planes = input_planes(cfg, inputs)
    w32 = (tile.state.w_int * tile.state.scale).astype(np.float32)
    read_rng = np.random.default_rng(seed + 1)

    def model():
        tile._cache_key = None  # recompute the drifted conductances inside the timed run
        return tile.adc_codes(inputs, t_s, read_rng)

    def baseline():
        return [plane @ w32 for plane in planes]

    model(), baseline()  # warm-up
    t_model = _best_time(model, repeats)
    t_base = _best_time(baseline, repeats)
    tracemalloc.start()
    codes = model()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "ratio_vs_matmul": t_model / t_base,
        "model_s": t_model,
        "baseline_s": t_base,
        "mvm_per_s": batch / t_model,
        "baseline_mvm_per_s": batch / t_base,
        "peak_memory_mb": peak / 2**20,
        "codes_shape": list(codes.shape),
        "saturated_fraction": float(np.mean(np.abs(codes.astype(np.int32)) >= 2 ** (cfg.adc.bits - 1) - 1)),
        "config": {
            "rows": rows, "cols": cols, "batch": batch, "input_bits": cfg.input.bits, "planes": cfg.input.planes,
            "adc_bits": cfg.adc.bits, "adc_full_scale": cfg.analog.adc_full_scale, "preset": cfg.device.preset,
            "slices": cfg.weights.slices, "t_s": t_s, "read_noise": cfg.analog.read_noise,
            "programming_noise": cfg.analog.programming_noise, "drift": cfg.analog.drift,
            "repeats": repeats, "seed": seed, "numpy": np.__version__,
        },
    }
