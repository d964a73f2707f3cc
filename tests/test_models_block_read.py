"""AnalogTile.block_codes: a block of rows driven, a block of data columns read.

Equal code for code to adc_codes of zero-padded inputs when read and ADC noise are off
(programming noise, drift and ADC offsets on), equal in distribution when they are on.
"""

import numpy as np
import pytest

from neurophase.config import ChipConfig
from neurophase.models.crossbar import build_tile, input_range

ROWS, COLS = 24, 16
BLOCK_ROWS, BLOCK_COLS = slice(5, 19), slice(6, 14)


def block_config(mode="bit-serial", slices=1, devices=1, **analog):
    cfg = ChipConfig().replace(
        tile={"rows": ROWS, "cols": COLS}, datapath={"lanes": 16}, input={"mode": mode},
        adc={"columns_per_adc": 2},
        weights={"slices": slices, "devices_per_polarity": devices, "significance_factor": 4},
        analog={"adc_offset_sigma_lsb": 1.3, "adc_offset_lsb": 0.4, "adc_full_scale": 0.25, **analog})
    return cfg


def relu_inputs(cfg, rng, batch):
    """Non-negative inputs with many zeros, one all-zero and one all-maximum vector."""
    _lo, hi = input_range(cfg)
    n = BLOCK_ROWS.stop - BLOCK_ROWS.start
    x = np.where(rng.random((batch, n)) < 0.5, 0, rng.integers(0, hi + 1, size=(batch, n)))
    x[0], x[1] = 0, hi
    return x


def padded(x):
    full = np.zeros((len(x), ROWS), dtype=np.int64)
    full[:, BLOCK_ROWS] = x
    return full


@pytest.mark.parametrize("mode", ["bit-serial", "pulse-width"])
@pytest.mark.parametrize("slices", [1, 2])
@pytest.mark.parametrize("devices", [1, 2])
def test_noise_free_block_equals_padded_adc_codes(mode, slices, devices, seed):
    cfg = block_config(mode, slices, devices, read_noise="off", adc_noise_lsb=0.0)
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(ROWS, COLS))
    x = relu_inputs(cfg, rng, 30)
    tile, reference = build_tile(cfg, weights, seed), build_tile(cfg, weights, seed)
    for t_s in (3600.0, 86400.0):
        block = tile.block_codes(x, t_s, np.random.default_rng(1), BLOCK_ROWS, BLOCK_COLS)
        full = reference.adc_codes(padded(x), t_s, np.random.default_rng(1))
        assert block.dtype == np.int16 and block.shape == (30, slices, cfg.input.planes, 8)
        assert np.array_equal(block, full[..., BLOCK_COLS])
        assert len(np.unique(block)) > 5
    assert tile.state.reads == reference.state.reads > 0
    one = tile.block_codes(x[2], 86400.0, np.random.default_rng(1), BLOCK_ROWS, BLOCK_COLS)
    assert np.array_equal(one, block[2])


def test_undriven_vectors_read_the_column_offsets(seed):
    cfg = block_config(read_noise="off", adc_noise_lsb=0.0)
    tile = build_tile(cfg, np.random.default_rng(seed).normal(size=(ROWS, COLS)), seed)
    tile.state.adc_offsets = np.arange(COLS // 2) * 1.5 - 5.0
    codes = tile.block_codes(np.zeros((3, 14), dtype=np.int64), 86400.0, np.random.default_rng(0), BLOCK_ROWS,
                             BLOCK_COLS)
    expected = np.rint(tile.column_offsets()[BLOCK_COLS])
    assert np.all(codes == expected) and len(np.unique(expected)) > 1


@pytest.mark.parametrize("mode", ["bit-serial", "pulse-width"])
def test_noisy_block_matches_padded_adc_codes_in_distribution(mode, seed):
    cfg = block_config(mode, slices=2, adc_noise_lsb=0.7)
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(ROWS, COLS))
    x = np.repeat(relu_inputs(cfg, rng, 3), 1500, axis=0)  # 1500 reads each of 3 vectors (one all zero)
    tile = build_tile(cfg, weights, seed)
    block = tile.block_codes(x, 86400.0, np.random.default_rng(seed + 1), BLOCK_ROWS, BLOCK_COLS)
    full = tile.adc_codes(padded(x), 86400.0, np.random.default_rng(seed + 2))[..., BLOCK_COLS]
    for vector in range(3):
        reads = slice(vector * 1500, (vector + 1) * 1500)
        b, f = block[reads].astype(np.float64), full[reads].astype(np.float64)
        std_b, std_f = b.std(axis=0), f.std(axis=0)
        assert np.all(std_f > 0.3), f"vector {vector}: noise too small to test"
        tolerance = 5.0 * np.sqrt((std_b**2 + std_f**2) / 1500) + 1e-9
        assert np.all(np.abs(b.mean(axis=0) - f.mean(axis=0)) <= tolerance), f"vector {vector}, seed {seed}"
        assert np.all(np.abs(std_b / std_f - 1) < 0.2), f"vector {vector}, seed {seed}: {std_b / std_f}"


def test_per_device_read_noise_blocks_go_through_padded_reads(seed):
    cfg = block_config(read_noise="per-device").replace(tile={"rows": 24, "cols": 16})
    tile = build_tile(cfg, np.random.default_rng(seed).normal(size=(ROWS, COLS)), seed)
    x = relu_inputs(cfg, np.random.default_rng(seed), 2)
    codes = tile.block_codes(x, 60.0, np.random.default_rng(3), BLOCK_ROWS, BLOCK_COLS)
    reference = build_tile(cfg, np.random.default_rng(seed).normal(size=(ROWS, COLS)), seed)
    assert np.array_equal(codes, reference.adc_codes(padded(x), 60.0, np.random.default_rng(3))[..., BLOCK_COLS])


@pytest.mark.parametrize("rows, cols, match", [
    ((5, 19), BLOCK_COLS, "block rows must be a slice"),
    (slice(5, 19, 2), BLOCK_COLS, "block rows must have step 1"),
    (slice(19, 5), BLOCK_COLS, r"block rows must satisfy 0 <= start < stop <= tile.rows \(24\)"),
    (slice(-1, 5), BLOCK_COLS, "block rows must satisfy"),
    (slice(5, 25), BLOCK_COLS, "block rows must satisfy"),
    (BLOCK_ROWS, slice(8, 20), r"block cols must satisfy 0 <= start < stop <= tile.cols \(16\)"),
    (BLOCK_ROWS, slice(8.0, 12), "block cols bounds must be integers"),
])
def test_bad_block_slices(rows, cols, match, seed):
    tile = build_tile(block_config(), np.ones((ROWS, COLS)), seed)
    with pytest.raises(ValueError, match=match):
        tile.block_codes(np.zeros((2, 14), dtype=np.int64), 60.0, np.random.default_rng(0), rows, cols)


def test_bad_block_inputs(seed):
    tile = build_tile(block_config(), np.ones((ROWS, COLS)), seed)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"block inputs for rows 5:19 must have shape \(batch, 14\)"):
        tile.block_codes(np.zeros((2, 24), dtype=np.int64), 60.0, rng, BLOCK_ROWS, BLOCK_COLS)
    with pytest.raises(ValueError, match=r"must lie in \[-128, 127\]"):
        tile.block_codes(np.full((2, 14), 300), 60.0, rng, BLOCK_ROWS, BLOCK_COLS)
    with pytest.raises(ValueError, match="t_s"):
        tile.block_codes(np.zeros((2, 14), dtype=np.int64), -1.0, rng, BLOCK_ROWS, BLOCK_COLS)
