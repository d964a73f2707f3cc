"""Seeded stimulus for the datapath blocks behind the shift-and-add (ADC interface,
drift gain, batch-norm, tile): one definition of the cases, reused by the golden-model
tests, the Amaranth simulations and the cocotb regressions."""

from __future__ import annotations

import numpy as np

from neurophase.models.adc_interface import AdcInterfaceParams
from neurophase.models.batch_norm import BatchNormParams
from neurophase.models.datapath import DatapathParams, DatapathSettings
from neurophase.models.drift_gain import DriftGainParams
from neurophase.models.fixed_point import signed_range
from neurophase.models.shift_add import ShiftAddParams
from neurophase.models.stimulus import shift_add_corner_cases, shift_add_random_cases

__all__ = ["adc_interface_cases", "drift_gain_cases", "batch_norm_cases", "random_settings", "tile_cases"]


def _extremes(rng, bits: int, size: int) -> np.ndarray:
    lo, hi = signed_range(bits)
    return rng.choice(np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi], dtype=np.int64), size=size)


def _as_shift_add(params: AdcInterfaceParams) -> ShiftAddParams:
    return ShiftAddParams(adc_bits=params.adc_bits, planes=params.planes, slices=params.slices,
                          columns=params.columns, lanes=params.lanes)


def adc_interface_cases(params: AdcInterfaceParams, seed: int, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, codes (slices, planes, columns), trims (columns,)): the shift-and-add's code
    corner cases with zero and extreme trims, then ``count`` random MVMs."""
    rng = np.random.default_rng(seed)
    lo, hi = params.code_range
    sa = _as_shift_add(params)
    cases = []
    zeros = np.zeros(params.columns, dtype=np.int64)
    for name, codes in shift_add_corner_cases(sa):
        cases.append((f"{name}_no_trim", codes, zeros))
    corners = dict(shift_add_corner_cases(sa))
    cases.append(("max_codes_min_trim", corners["all_max"], np.full(params.columns, lo, dtype=np.int64)))
    cases.append(("min_codes_max_trim", corners["all_min"], np.full(params.columns, hi, dtype=np.int64)))
    cases.append(("extreme_trims", corners["alternating_extremes"], _extremes(rng, params.adc_bits, params.columns)))
    for i, (name, codes) in enumerate(shift_add_random_cases(sa, seed, count)):
        if i % 3 == 2:
            trims = _extremes(rng, params.adc_bits, params.columns)
        else:
            trims = rng.integers(-8, 9, size=params.columns).clip(lo, hi)
        cases.append((name, codes, trims.astype(np.int64)))
    return cases


def drift_gain_cases(params: DriftGainParams, seed: int, count: int) -> list[tuple[str, np.ndarray, object]]:
    """(name, values (columns,), gains (columns,) or one int): zero, unit, maximal and
    minimal (negative) gains on extreme values, then ``count`` random cases (per-tile
    gains every fourth)."""
    rng = np.random.default_rng(seed)
    cols = params.columns
    vlo, vhi = params.value_range
    glo, ghi = params.gain_range
    one = 1 << params.gain_frac_bits
    extreme_values = _extremes(rng, params.width, cols)
    cases = [
        ("zero_gain", extreme_values, np.zeros(cols, dtype=np.int64)),
        ("unit_gain", extreme_values, min(one, ghi)),
        ("max_gain_saturates", np.full(cols, vhi, dtype=np.int64), np.full(cols, ghi, dtype=np.int64)),
        ("min_gain_saturates", np.full(cols, vhi, dtype=np.int64), glo),
        ("min_gain_min_value", np.full(cols, vlo, dtype=np.int64), np.full(cols, glo, dtype=np.int64)),
        ("negative_gains", extreme_values, rng.integers(glo, 0, size=cols)),
        ("half_lsb_ties", rng.integers(-64, 65, size=cols), max(one >> 1, 1)),
        ("extreme_both", extreme_values, _extremes(rng, params.gain_bits, cols)),
    ]
    for i in range(count):
        kind = i % 4
        if kind == 0:
            values, gains = rng.integers(vlo, vhi + 1, size=cols), rng.integers(glo, ghi + 1, size=cols)
        elif kind == 1:
            values = rng.integers(vlo, vhi + 1, size=cols) >> rng.integers(0, params.width, size=cols)
            gains = (one + rng.integers(-one // 4 - 1, one // 2 + 1, size=cols)).clip(glo, ghi)
        elif kind == 2:
            values, gains = _extremes(rng, params.width, cols), _extremes(rng, params.gain_bits, cols)
        else:
            values, gains = rng.integers(vlo, vhi + 1, size=cols), int(rng.integers(glo, ghi + 1))
        cases.append((f"random_{i}", values.astype(np.int64),
                      gains if isinstance(gains, int) else gains.astype(np.int64)))
    return cases


def batch_norm_cases(params: BatchNormParams, seed: int, count: int) -> list[tuple]:
    """(name, values, scale, bias, shift, relu): zero/negative/maximal scales and biases,
    every shift, saturation of both stages, then ``count`` random cases."""
    rng = np.random.default_rng(seed)
    cols = params.columns
    vlo, vhi = signed_range(params.width)
    slo, shi = signed_range(params.scale_bits)
    blo, bhi = signed_range(params.bias_bits)
    one = 1 << params.scale_frac_bits
    full = lambda v: np.full(cols, v, dtype=np.int64)  # noqa: E731
    extreme_values = _extremes(rng, params.width, cols)
    cases = [
        ("identity_no_shift", extreme_values, full(min(one, shi)), full(0), 0, False),
        ("zero_scale_zero_bias", extreme_values, full(0), full(0), 3, False),
        ("max_scale_saturates", full(vhi), full(shi), full(0), 0, False),
        ("min_scale_saturates", full(vhi), full(slo), full(0), 0, True),
        ("max_bias", extreme_values, full(one), full(bhi), params.width, False),
        ("min_bias_relu", extreme_values, full(one), full(blo), 1, True),
        ("largest_register_shift", extreme_values, full(one), full(0), (1 << params.shift_bits) - 1, False),
        ("extreme_everything", extreme_values, _extremes(rng, params.scale_bits, cols),
         _extremes(rng, params.bias_bits, cols), 0, True),
    ]
    for shift in range(params.width + 1):
        cases.append((f"shift_{shift}", rng.integers(vlo, vhi + 1, size=cols), full(one),
                      rng.integers(-4, 5, size=cols).clip(blo, bhi), shift, bool(shift % 2)))
    for i in range(count):
        kind = i % 3
        if kind == 0:
            values = rng.integers(vlo, vhi + 1, size=cols)
            scale, bias = rng.integers(slo, shi + 1, size=cols), rng.integers(blo, bhi + 1, size=cols)
        elif kind == 1:
            values = rng.integers(vlo, vhi + 1, size=cols) >> rng.integers(0, params.width, size=cols)
            scale = (one + rng.integers(-one // 2, one // 2 + 1, size=cols)).clip(slo, shi)
            bias = rng.integers(-1000, 1001, size=cols).clip(blo, bhi)
        else:
            values = _extremes(rng, params.width, cols)
            scale, bias = _extremes(rng, params.scale_bits, cols), _extremes(rng, params.bias_bits, cols)
        shift = int(rng.integers(0, (1 << params.shift_bits)))
        cases.append((f"random_{i}", values.astype(np.int64), scale.astype(np.int64), bias.astype(np.int64),
                      shift, bool(rng.integers(0, 2))))
    return cases


def random_settings(params: DatapathParams, rng: np.random.Generator, kind: str) -> DatapathSettings:
    """Register values for a tile run: ``"identity"``, ``"typical"`` (small trims, gains and
    scales near 1, a shift that keeps activations mostly in range) or ``"extreme"``."""
    cols = params.columns
    adc, dg, bn = params.adc, params.drift_gain, params.batch_norm
    if kind == "identity":
        return DatapathSettings.identity(params, shift=max(params.shift_add.width - bn.out_bits, 0))
    if kind == "typical":
        g1, s1 = 1 << dg.gain_frac_bits, 1 << bn.scale_frac_bits
        trims = rng.integers(-3, 4, size=cols).clip(*adc.code_range)
        gains = (g1 + rng.integers(0, g1 // 2 + 1, size=cols)).clip(*dg.gain_range)
        scale = (s1 + rng.integers(-s1 // 2, s1 // 2 + 1, size=cols)).clip(*signed_range(bn.scale_bits))
        bias = rng.integers(-200, 201, size=cols).clip(*signed_range(bn.bias_bits))
        shift = int(rng.integers(max(params.shift_add.width - bn.out_bits - 2, 0), params.shift_add.width + 1))
        return DatapathSettings(trims.astype(np.int64), gains.astype(np.int64), scale.astype(np.int64),
                                bias.astype(np.int64), shift, bool(rng.integers(0, 2)))
    if kind == "extreme":
        gains = _extremes(rng, dg.gain_bits, cols) if rng.integers(0, 2) else int(_extremes(rng, dg.gain_bits, 1)[0])
        return DatapathSettings(_extremes(rng, adc.adc_bits, cols), gains, _extremes(rng, bn.scale_bits, cols),
                                _extremes(rng, bn.bias_bits, cols), int(rng.integers(0, 1 << bn.shift_bits)),
                                bool(rng.integers(0, 2)))
    raise ValueError(f"settings kind must be 'identity', 'typical' or 'extreme', not {kind!r}")


def tile_cases(params: DatapathParams, seed: int, count: int) -> list[tuple[str, np.ndarray]]:
    """(name, codes) for tile runs: the code corner cases, then ``count`` random MVMs."""
    cases = adc_interface_cases(params.adc, seed, count)
    return [(name, codes) for name, codes, _ in cases]
