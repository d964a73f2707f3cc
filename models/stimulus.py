"""Seeded stimulus shared by every verification level (golden model, Amaranth
simulation, Verilog under Verilator): one definition of the test cases, reused."""

from __future__ import annotations

import numpy as np

from neurophase.models.shift_add import ShiftAddParams

__all__ = ["shift_add_corner_cases", "shift_add_random_cases", "shift_add_cases"]


def shift_add_corner_cases(params: ShiftAddParams) -> list[tuple[str, np.ndarray]]:
    """Named corner-case MVMs: zeros, extreme codes, the largest positive and negative sums."""
    lo, hi = params.code_range
    shape = (params.slices, params.planes, params.columns)
    positive = np.full(shape, hi, dtype=np.int64)
    negative = np.full(shape, lo, dtype=np.int64)
    if params.msb_negative:
        positive[:, -1, :], negative[:, -1, :] = lo, hi
    alternating = np.where(np.arange(params.columns) % 2 == 0, hi, lo) * np.ones(shape, dtype=np.int64)
    return [
        ("all_zero", np.zeros(shape, dtype=np.int64)),
        ("all_max", np.full(shape, hi, dtype=np.int64)),
        ("all_min", np.full(shape, lo, dtype=np.int64)),
        ("largest_positive", positive),
        ("largest_negative", negative),
        ("alternating_extremes", alternating.astype(np.int64)),
        ("one_hot_last_column", np.pad(np.full(shape[:2] + (1,), hi), ((0, 0), (0, 0), (params.columns - 1, 0)))),
    ]


def shift_add_random_cases(params: ShiftAddParams, seed: int, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` MVMs of random codes: uniform, small-magnitude and extreme-heavy mixes."""
    rng = np.random.default_rng(seed)
    lo, hi = params.code_range
    shape = (params.slices, params.planes, params.columns)
    cases = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            codes = rng.integers(lo, hi + 1, size=shape)
        elif kind == 1:
            codes = rng.integers(-4, 5, size=shape).clip(lo, hi)
        else:
            codes = rng.choice(np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi]), size=shape)
        cases.append((f"random_{i}", codes.astype(np.int64)))
    return cases


def shift_add_cases(params: ShiftAddParams, seed: int, count: int) -> list[tuple[str, np.ndarray]]:
    """Corner cases followed by ``count`` seeded random MVMs."""
    return shift_add_corner_cases(params) + shift_add_random_cases(params, seed, count)
