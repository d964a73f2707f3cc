"""Benchmark of the analog crossbar model against a float32 matmul of the same work, in the same run.

Model: a 256 x 256 tile (one differential pair per weight, pcm-joshi), a batch of 1024
signed 8-bit input vectors as 8 bit-planes, read 1 day after programming with programming
noise, drift, output-referred read noise and 8-bit ADC quantisation on. Each timed model run
recomputes the drifted read matrices (the per-read-time work) and converts the batch to ADC
codes (:meth:`~neurophase.models.crossbar.AnalogTile.adc_codes`); the shift-and-add to integer
results (:func:`~neurophase.models.crossbar.digital_result`) is timed on its own as well.
Block read: :meth:`~neurophase.models.crossbar.AnalogTile.block_codes` of rows 0:144 and columns
0:32 with ReLU-like inputs against ``adc_codes`` of the zero-padded inputs (:func:`bench_block_read`).
Baseline: what a float MVM of the same batch costs, one float32 matmul (batch x 256 inputs
times 256 x 256 weights), no noise, drift or quantisation.
Both sides run with single-threaded BLAS and are timed in process CPU time
(:func:`neurophase.benchmarks.timing.cpu_times`); ratios use the minima, medians are reported too.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from neurophase.benchmarks.timing import cpu_times
from neurophase.config import ChipConfig
from neurophase.models.crossbar import build_tile, digital_result

__all__ = ["bench_model", "bench_block_read", "BENCH_SEED"]

BENCH_SEED = 20260101
DAY_S = 86400.0


def bench_config(rows: int = 256, cols: int = 256) -> ChipConfig:
    """The benchmark chip: defaults, one slice, no reference columns."""
    return ChipConfig().replace(tile={"rows": rows, "cols": cols}, weights={"slices": 1}, datapath={"lanes": min(cols, 16)},
                                analog={"reference_columns": 0})


def bench_model(batch: int = 1024, rows: int = 256, cols: int = 256, repeats: int = 5,
                seed: int = BENCH_SEED, t_s: float = DAY_S) -> dict:
    """Time the model and the matmul baseline; return the figures as a JSON-ready dict.

    Parameters
    ----------
    batch, rows, cols : int
        Input vectors, tile rows and columns.
    repeats : int
        Timed repetitions of each (min and median reported).
    seed : int
        Seeds weights, inputs, programming and reads.
    t_s : float
        Time since programming of the reads.

    Returns
    -------
    dict
        ``ratio_vs_matmul`` (model min / baseline min), ``ratio_vs_matmul_median``,
        ``ratio_with_shift_add_vs_matmul`` (codes plus shift-and-add, min-based),
        ``ratio_cached_vs_matmul`` (codes with the read matrices of ``t_s`` already cached, as for
        every further batch read at the same time), the times in seconds (``model_s``,
        ``model_median_s``, ``model_cached_s``, ``shift_add_s``, ``baseline_s``, ``baseline_median_s``),
        MVMs per second, peak memory of one model run, ``block_read`` (:func:`bench_block_read` of
        rows 0:144 and columns 0:32) and the configuration.
    """
    if repeats < 1 or batch < 1:
        raise ValueError(f"repeats and batch must be >= 1, not {repeats!r} and {batch!r}")
    cfg = bench_config(rows, cols)
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(rows, cols))
    inputs = rng.integers(-128, 128, size=(batch, rows))
    tile = build_tile(cfg, weights, seed)
    inputs32 = inputs.astype(np.float32)
    w32 = (tile.state.w_int * tile.state.scale).astype(np.float32)
    read_rng = np.random.default_rng(seed + 1)

    def model():
        tile._cache_key = None  # recompute the drifted read matrices inside the timed run
        return tile.adc_codes(inputs, t_s, read_rng)

    codes = model()
    model_times = cpu_times(model, repeats)
    cached_times = cpu_times(lambda: tile.adc_codes(inputs, t_s, read_rng), repeats)
    shift_add_times = cpu_times(lambda: digital_result(cfg, codes), repeats)
    base_times = cpu_times(lambda: inputs32 @ w32, repeats)
    tracemalloc.start()
    codes = model()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    block_read = bench_block_read(batch, rows, cols, min(144, rows), min(32, cols), repeats, seed, t_s)
    t_model, t_base = model_times["min_s"], base_times["min_s"]
    return {
        "ratio_vs_matmul": t_model / t_base,
        "ratio_vs_matmul_median": model_times["median_s"] / base_times["median_s"],
        "ratio_with_shift_add_vs_matmul": (t_model + shift_add_times["min_s"]) / t_base,
        "ratio_cached_vs_matmul": cached_times["min_s"] / t_base,
        "model_s": t_model,
        "model_median_s": model_times["median_s"],
        "model_cached_s": cached_times["min_s"],
        "shift_add_s": shift_add_times["min_s"],
        "shift_add_median_s": shift_add_times["median_s"],
        "baseline_s": t_base,
        "baseline_median_s": base_times["median_s"],
        "mvm_per_s": batch / t_model,
        "baseline_mvm_per_s": batch / t_base,
        "peak_memory_mb": peak / 2**20,
        "codes_shape": list(codes.shape),
        "block_read": block_read,
        "saturated_fraction": float(np.mean(np.abs(codes.astype(np.int32)) >= 2 ** (cfg.adc.bits - 1) - 1)),
        "config": {
            "rows": rows, "cols": cols, "batch": batch, "input_bits": cfg.input.bits, "planes": cfg.input.planes,
            "adc_bits": cfg.adc.bits, "adc_full_scale": cfg.analog.adc_full_scale, "preset": cfg.device.preset,
            "slices": cfg.weights.slices, "t_s": t_s, "read_noise": cfg.analog.read_noise,
            "programming_noise": cfg.analog.programming_noise, "drift": cfg.analog.drift,
            "repeats": repeats, "seed": seed, "numpy": np.__version__, "blas_threads": 1, "clock": "process_time",
        },
    }


def relu_like_inputs(rng: np.random.Generator, batch: int, rows: int) -> np.ndarray:
    """Non-negative 8-bit inputs with about half zeros, like activations after a ReLU."""
    return np.clip(np.rint(rng.normal(scale=40.0, size=(batch, rows))), 0, 127).astype(np.int64)


def bench_block_read(batch: int = 1024, rows: int = 256, cols: int = 256, block_rows: int = 144,
                     block_cols: int = 32, repeats: int = 5, seed: int = BENCH_SEED, t_s: float = DAY_S) -> dict:
    """Time :meth:`~neurophase.models.crossbar.AnalogTile.block_codes` of one block of a tile
    against ``adc_codes`` of the zero-padded inputs sliced to the block's columns.

    Parameters
    ----------
    batch : int
        Input vectors (ReLU-like: non-negative, about half zeros).
    rows, cols : int
        Tile rows and columns.
    block_rows, block_cols : int
        Driven rows ``0:block_rows`` and read data columns ``0:block_cols``.
    repeats : int
        Timed repetitions of each (min and median reported).
    seed : int
        Seeds weights, inputs, programming and reads.
    t_s : float
        Time since programming; both reads use their read matrices cached for this time.

    Returns
    -------
    dict
        ``speedup`` (padded min / block min), ``speedup_median``, the times in seconds and the
        block geometry.
    """
    if repeats < 1 or batch < 1:
        raise ValueError(f"repeats and batch must be >= 1, not {repeats!r} and {batch!r}")
    cfg = bench_config(rows, cols)
    if not (0 < block_rows <= rows and 0 < block_cols <= cols):
        raise ValueError(f"block_rows and block_cols must lie in 1..{rows} and 1..{cols}, "
                         f"not {block_rows!r} and {block_cols!r}")
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, rng.normal(size=(rows, cols)), seed)
    inputs = relu_like_inputs(rng, batch, block_rows)
    read_rng = np.random.default_rng(seed + 1)
    row_block, col_block = slice(0, block_rows), slice(0, block_cols)

    def block():
        return tile.block_codes(inputs, t_s, read_rng, row_block, col_block)

    def padded():
        full = np.zeros((batch, rows), dtype=np.int64)
        full[:, row_block] = inputs
        return tile.adc_codes(full, t_s, read_rng)[..., col_block]

    block_times, padded_times = cpu_times(block, repeats), cpu_times(padded, repeats)
    return {
        "speedup": padded_times["min_s"] / block_times["min_s"],
        "speedup_median": padded_times["median_s"] / block_times["median_s"],
        "block_s": block_times["min_s"], "block_median_s": block_times["median_s"],
        "padded_s": padded_times["min_s"], "padded_median_s": padded_times["median_s"],
        "zero_input_fraction": float(np.mean(inputs == 0)),
        "config": {"rows": rows, "cols": cols, "block_rows": block_rows, "block_cols": block_cols, "batch": batch,
                   "t_s": t_s, "repeats": repeats, "seed": seed},
    }
