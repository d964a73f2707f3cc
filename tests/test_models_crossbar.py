"""Crossbar MVM: exact integer arithmetic, the RTL code contract, reproducibility, noise model, errors."""

import numpy as np
import pytest

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.crossbar import (build_tile, conversion_order, digital_result, exact_config, ideal_codes,
                                        input_planes, required_adc_bits)
from neurophase.models.shift_add import ShiftAddParams, shift_add


def small_config(rows=16, cols=16, **sections):
    cfg = ChipConfig().replace(tile={"rows": rows, "cols": cols}, datapath={"lanes": min(cols, 16)})
    return cfg.replace(**sections) if sections else cfg


@pytest.mark.parametrize("inputs", [
    {"encoding": "twos-complement", "mode": "bit-serial"},
    {"encoding": "unsigned", "mode": "bit-serial"},
    {"encoding": "twos-complement", "mode": "pulse-width"},
    {"encoding": "unsigned", "mode": "pulse-width", "bits": 4},
])
@pytest.mark.parametrize("weights", [{"slices": 1}, {"slices": 2, "significance_factor": 4}])
def test_noise_free_mvm_equals_integer_arithmetic(inputs, weights, seed):
    cfg = small_config(input=inputs, weights=weights, analog={"weight_bits": 5 if inputs["mode"] == "pulse-width" else 8})
    cfg = exact_config(cfg.replace(adc={"bits": required_adc_bits(cfg)}))
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, rng.normal(size=(16, 16)), seed)
    lo, hi = (-(2 ** (cfg.input.bits - 1)), 2 ** (cfg.input.bits - 1) - 1) if cfg.input.signed else (0, 2**cfg.input.bits - 1)
    x = np.concatenate([rng.integers(lo, hi + 1, size=(20, 16)), np.full((1, 16), lo), np.full((1, 16), hi)])
    codes = tile.adc_codes(x, 3600.0, rng)
    assert codes.shape == (22, cfg.weights.slices, cfg.input.planes, 16)
    assert np.array_equal(codes, ideal_codes(cfg, tile.state.w_int, x))
    assert np.array_equal(digital_result(cfg, codes), x @ tile.state.w_int)


def test_single_vector_has_the_shift_add_layout(seed):
    cfg = small_config()
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, rng.normal(size=(16, 16)), seed)
    codes = tile.adc_codes(rng.integers(-128, 128, size=16), 60.0, rng)
    assert codes.shape == (1, 8, 16) and np.issubdtype(codes.dtype, np.integer)
    ShiftAddParams.from_config(cfg).check_codes(codes)


def test_codes_saturate_to_the_signed_adc_range(seed):
    cfg = small_config(adc={"bits": 4}, analog={"adc_full_scale": 0.001})
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, np.abs(rng.normal(size=(16, 16))), seed)
    codes = tile.adc_codes(np.full((4, 16), -1), 0.0, rng)
    assert codes.max() == 7 and codes.min() >= -8


def test_bit_planes_are_twos_complement_lsb_first():
    cfg = small_config(rows=2, cols=16)
    planes = input_planes(cfg, np.array([[-1, 5]]))
    assert planes[:, 0, 0].tolist() == [1] * 8
    assert planes[:, 0, 1].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]


def test_same_seed_gives_identical_codes(seed):
    cfg = small_config(analog={"adc_offset_sigma_lsb": 0.5, "adc_noise_lsb": 0.3})
    weights = np.random.default_rng(seed).normal(size=(16, 16))
    x = np.random.default_rng(seed + 1).integers(-128, 128, size=(8, 16))
    runs = [build_tile(cfg, weights, seed).adc_codes(x, 86400.0, np.random.default_rng(seed)) for _ in range(2)]
    assert np.array_equal(*runs)
    other = build_tile(cfg, weights, seed + 1).adc_codes(x, 86400.0, np.random.default_rng(seed))
    assert not np.array_equal(runs[0], other)


def test_adc_offset_shifts_codes(seed):
    cfg = small_config()
    cfg = exact_config(cfg.replace(adc={"bits": required_adc_bits(cfg)}))
    shifted = cfg.replace(analog={"adc_offset_lsb": 3.0})
    weights = np.random.default_rng(seed).normal(size=(16, 16))
    x = np.random.default_rng(seed).integers(-128, 128, size=(4, 16))
    base = build_tile(cfg, weights, seed).adc_codes(x, 0.0, np.random.default_rng(0))
    assert np.array_equal(build_tile(shifted, weights, seed).adc_codes(x, 0.0, np.random.default_rng(0)), base + 3)


def test_column_sharing_order_and_shared_offsets(seed):
    cfg = small_config(adc={"columns_per_adc": 4}, analog={"adc_offset_sigma_lsb": 2.0})
    order = conversion_order(cfg)
    assert [k.tolist() for k in order] == [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]]
    tile = build_tile(cfg, np.ones((16, 16)), seed)
    offsets = tile.column_offsets()[:16].reshape(4, 4)
    assert np.all(offsets == offsets[:, :1]) and len(np.unique(offsets[:, 0])) == 4


@pytest.mark.parametrize("devices", [1, 2])
def test_output_referred_noise_matches_per_device_noise(seed, devices):
    """Same mean and variance per output as drawing every device at every read."""
    cfg = small_config(rows=32, cols=8, datapath={"lanes": 8}, analog={"reference_columns": 0},
                       weights={"devices_per_polarity": devices})
    weights = np.random.default_rng(seed).normal(size=(32, 8))
    x = np.tile(np.random.default_rng(seed + 1).integers(-128, 128, size=(1, 32)), (400, 1))
    stats = []
    for mode in ("output-referred", "per-device"):
        tile = build_tile(cfg.replace(analog={"read_noise": mode}), weights, seed)
        out = tile.analog_outputs(x, 86400.0, np.random.default_rng(seed + 2))
        stats.append((out.mean(axis=2), out.var(axis=2)))
    (mean_fast, var_fast), (mean_slow, var_slow) = stats
    assert np.all(var_fast > 0)
    assert np.all(np.abs(mean_fast - mean_slow) <= 5.5 * np.sqrt(2 * var_fast / 400))
    ratio = var_fast.sum() / var_slow.sum()
    assert 0.93 < ratio < 1.07, f"seed {seed}: variance ratio {ratio}"


def test_read_noise_and_drift_change_codes_only_when_on(seed):
    cfg = small_config(analog={"programming_noise": "off", "read_noise": "off", "drift": "off"})
    weights = np.random.default_rng(seed).normal(size=(16, 16))
    x = np.random.default_rng(seed).integers(-128, 128, size=(16, 16))
    tile = build_tile(cfg, weights, seed)
    assert np.array_equal(tile.adc_codes(x, 0.0, np.random.default_rng(1)), tile.adc_codes(x, 3e7, np.random.default_rng(2)))
    drifting = build_tile(cfg.replace(analog={"drift": "on"}), weights, seed)
    early = np.abs(drifting.adc_codes(x, 0.0, np.random.default_rng(1)).astype(int)).mean()
    late = np.abs(drifting.adc_codes(x, 3e7, np.random.default_rng(1)).astype(int)).mean()
    assert late < 0.8 * early


@pytest.mark.parametrize("preset", ["pcm-hermes", "pcm-projected", "rram", "nor-flash"])
def test_other_presets_read(preset, seed):
    cfg = small_config(device={"preset": preset, "overrides": {}})
    tile = build_tile(cfg, np.random.default_rng(seed).normal(size=(16, 16)), seed)
    codes = tile.adc_codes(np.random.default_rng(seed).integers(-128, 128, size=(4, 16)), 3600.0,
                           np.random.default_rng(seed))
    assert codes.shape == (4, 1, 8, 16) and np.abs(codes).max() > 0


def test_program_verify_build(seed):
    cfg = small_config()
    tile = build_tile(cfg, np.random.default_rng(seed).normal(size=(16, 16)), seed, program_verify=True)
    from neurophase.models.mapping import map_weights

    assert tile.state.pulses.max() > 1
    target = map_weights(tile.mapping, tile.weights())[0]
    error = tile.state.g_prog[..., :16] - target
    assert np.mean(np.abs(error) <= cfg.analog.pv_tolerance_us + 0.3) > 0.97


def test_bad_inputs(seed):
    cfg = small_config()
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(16, 16))
    tile = build_tile(cfg, weights, seed)
    with pytest.raises(ValueError, match=r"time since programming t_s must be finite and >= 0 seconds, not -5"):
        tile.adc_codes(np.zeros(16, int), -5, rng)
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 16\) or \(16,\), not \(2, 15\)"):
        tile.adc_codes(np.zeros((2, 15), int), 0.0, rng)
    with pytest.raises(ValueError, match=r"inputs must lie in \[-128, 127\] for 8-bit twos-complement inputs; found 0 .. 128"):
        tile.adc_codes(np.array([128] + [0] * 15), 0.0, rng)
    with pytest.raises(ValueError, match=r"inputs must be integers, not float64 values"):
        tile.adc_codes(np.full(16, 0.5), 0.0, rng)
    with pytest.raises(ValueError, match=r"weights must have shape \(tile.rows, tile.cols\) = \(16, 16\), not \(16, 8\)"):
        build_tile(cfg, weights[:, :8], seed)
    bad = weights.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"weights must be finite; found nan at index \(2, 3\)"):
        build_tile(cfg, bad, seed)
    with pytest.raises(ValueError, match=r"seed must be an integer, not 1.5"):
        build_tile(cfg, weights, 1.5)


def test_bad_configuration_values():
    with pytest.raises(ConfigError, match=r"analog.adc_full_scale must be a number from 1e-06 to 65536, not -1"):
        ChipConfig.from_dict({"analog": {"adc_full_scale": -1}})
    with pytest.raises(ConfigError, match=r"analog.read_noise must be one of 'output-referred', 'per-device', 'off', not 'loud'"):
        ChipConfig.from_dict({"analog": {"read_noise": "loud"}})
    with pytest.raises(ConfigError, match=r"unknown field analog.bogus"):
        ChipConfig.from_dict({"analog": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"adc.bits must be at least 12 for exact integer arithmetic with 16 rows"):
        exact_config(small_config())


def per_vector_digital_result(cfg, codes):
    """The former implementation: the golden shift-and-add, one vector at a time."""
    params = ShiftAddParams.from_config(cfg)
    return np.stack([shift_add(params, one)[0] for one in codes])


@pytest.mark.parametrize("sections", [
    {},
    {"datapath": {"accumulator_bits": 10}},
    {"datapath": {"accumulator_bits": 8}, "weights": {"slices": 2, "significance_factor": 4}},
    {"datapath": {"accumulator_bits": 12}, "weights": {"slices": 2}, "input": {"encoding": "unsigned"}},
    {"datapath": {"accumulator_bits": 9}, "input": {"mode": "pulse-width"}, "adc": {"bits": 6}, "weights": {"slices": 2}},
])
def test_batched_digital_result_equals_the_per_vector_shift_add(sections, seed):
    cfg = small_config(**sections)
    params = ShiftAddParams.from_config(cfg)
    lo, hi = params.code_range
    rng = np.random.default_rng(seed)
    shape = (40, params.slices, params.planes, params.columns)
    codes = rng.integers(lo, hi + 1, size=shape).astype(np.int16)
    codes[0], codes[1], codes[2] = lo, hi, np.where(rng.random(shape[1:]) < 0.5, lo, hi)  # saturation corners
    codes[3, :, -1], codes[4, :, :-1] = lo, hi
    expected = per_vector_digital_result(cfg, codes)
    assert np.array_equal(digital_result(cfg, codes), expected)
    if cfg.datapath.accumulator_bits:  # a narrow accumulator: the corners saturate
        assert expected.max() == params.out_range[1] and expected.min() == params.out_range[0]
    assert digital_result(cfg, codes[:0]).shape == (0, params.columns)


def test_digital_result_rejects_bad_codes():
    cfg = small_config()
    with pytest.raises(ValueError, match="shape"):
        digital_result(cfg, np.zeros((2, 1, 8, 15), dtype=np.int16))
    with pytest.raises(ValueError, match="integers"):
        digital_result(cfg, np.zeros((2, 1, 8, 16)))
    codes = np.zeros((2, 1, 8, 16), dtype=np.int16)
    codes[1, 0, 3, 5] = 128
    with pytest.raises(ValueError, match=r"128 at \(vector, slice, plane, column\) \(1, 0, 3, 5\)"):
        digital_result(cfg, codes)


def test_adc_noise_joins_the_read_noise_draw(seed):
    """Output-referred reads draw read and ADC noise at once; the per-device path adds ADC noise
    on its own: same variance. Undriven plane vectors read offset + ADC noise only."""
    cfg = small_config(rows=32, cols=8, datapath={"lanes": 8}, analog={
        "reference_columns": 0, "adc_noise_lsb": 1.5, "adc_offset_sigma_lsb": 2.0, "adc_full_scale": 0.25})
    weights = np.random.default_rng(seed).normal(size=(32, 8))
    x = np.tile(np.random.default_rng(seed + 1).integers(0, 128, size=(1, 32)), (400, 1))
    variances = []
    for mode in ("output-referred", "per-device"):
        tile = build_tile(cfg.replace(analog={"read_noise": mode}), weights, seed)
        out = tile.analog_outputs(x, 86400.0, np.random.default_rng(seed + 2))
        variances.append(out[:, :7].var(axis=2))  # planes 0..6; plane 7 (sign) is undriven
        undriven = out[:, 7]
        assert np.all(np.abs(undriven.mean(axis=1) - tile.column_offsets()) < 5 * 1.5 / np.sqrt(400))
        assert np.all(np.abs(undriven.std(axis=1) / 1.5 - 1) < 0.2)
    ratio = variances[0].sum() / variances[1].sum()
    assert np.all(variances[0] > 1.5**2 * 0.7)
    assert 0.93 < ratio < 1.07, f"seed {seed}: variance ratio {ratio}"
