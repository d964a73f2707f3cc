"""Several devices per polarity (weights.devices_per_polarity = P): P devices programmed to the
same target on each side, currents summed; codes keep their units; independent noise sqrt(P)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from neurophase.cli import main
from neurophase.config import ChipConfig
from neurophase.models.chip_state import load_state, save_state
from neurophase.models.crossbar import AnalogTile, build_tile, digital_result, exact_config, ideal_codes, required_adc_bits
from neurophase.models.mapping import expand_devices, map_weights, sum_devices, unmap_conductances
from neurophase.models.program_verify import from_physical, physical_columns, to_physical


def config(devices, rows=16, cols=16, **analog):
    cfg = ChipConfig().replace(tile={"rows": rows, "cols": cols}, datapath={"lanes": min(cols, 16)},
                               weights={"devices_per_polarity": devices})
    return cfg.replace(analog=analog) if analog else cfg


QUIET = {"programming_noise": "off", "read_noise": "off", "drift": "off"}


@pytest.mark.parametrize("devices", [2, 4])
@pytest.mark.parametrize("inputs", [{"mode": "bit-serial"}, {"mode": "pulse-width", "bits": 4}])
def test_noise_free_mvm_equals_integer_arithmetic(devices, inputs, seed):
    cfg = config(devices).replace(input=inputs, analog={"weight_bits": 5 if inputs["mode"] == "pulse-width" else 8})
    cfg = exact_config(cfg.replace(adc={"bits": required_adc_bits(cfg)}))
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, rng.normal(size=(16, 16)), seed)
    assert tile.state.g_prog.shape == (2, 1, 16, 16 + cfg.analog.reference_columns, devices)
    lo, hi = -(2 ** (cfg.input.bits - 1)), 2 ** (cfg.input.bits - 1) - 1
    x = np.concatenate([rng.integers(lo, hi + 1, size=(20, 16)), np.full((1, 16), lo), np.full((1, 16), hi)])
    codes = tile.adc_codes(x, 3600.0, rng)
    assert np.array_equal(codes, ideal_codes(cfg, tile.state.w_int, x))
    assert np.array_equal(digital_result(cfg, codes), x @ tile.state.w_int)


def test_codes_keep_their_units(seed):
    """Noise-free codes of the default ADC range are the same for P = 1 and P = 2: the ADC
    LSB of the summed column grows with P."""
    weights = np.random.default_rng(seed).normal(size=(16, 16))
    x = np.random.default_rng(seed).integers(-128, 128, size=(8, 16))
    one, two = (build_tile(config(p, **QUIET), weights, seed) for p in (1, 2))
    assert two.column_lsb_us == 2 * one.column_lsb_us and two.lsb_us == one.lsb_us
    assert two.lsb_ua == 2 * one.lsb_ua
    assert np.array_equal(one.adc_codes(x, 0.0, np.random.default_rng(1)), two.adc_codes(x, 0.0, np.random.default_rng(1)))


def test_default_is_one_device_per_polarity(seed):
    cfg = config(1)
    assert ChipConfig().weights.devices_per_polarity == 1
    tile = build_tile(cfg, np.random.default_rng(seed).normal(size=(16, 16)), seed)
    assert tile.state.g_prog.ndim == 4 and tile.column_lsb_us == tile.lsb_us


def test_programming_noise_of_the_sum_is_sqrt2_smaller(seed):
    """Over ~2e4 programmed sides: the programming error of the summed conductance relative to
    the signal (RMS error / RMS target) is 1/sqrt(2) of a single device's. Targets above 2 µS,
    so that the clip at 0 S does not enter."""
    rows, cols = 256, 96
    weights = np.random.default_rng(seed).uniform(-1, 1, size=(rows, cols))
    relative = []
    for devices in (1, 2):
        cfg = config(devices, rows, cols, read_noise="off", drift="off", reference_columns=0)
        tile = build_tile(cfg, weights, seed)
        target = map_weights(tile.mapping, weights)[0]
        on = target > 2.0
        error = (sum_devices(tile.state.g_prog) / devices - target)[on]
        relative.append(np.sqrt(np.mean(error**2) / np.mean(target[on] ** 2)))
    assert on.sum() > 20000
    ratio = relative[1] / relative[0]
    assert ratio == pytest.approx(1 / np.sqrt(2), rel=0.05), f"seed {seed}: {ratio}"


def test_read_noise_of_the_sum_is_sqrt2_smaller(seed):
    """Repeated reads of one input: the signal (in codes) is the same for P = 1 and 2, the
    read-noise variance half (2e4 output samples each)."""
    rows, cols = 128, 64
    weights = np.random.default_rng(seed).normal(size=(rows, cols))
    x = np.tile(np.random.default_rng(seed + 1).integers(-128, 128, size=(1, rows)), (40, 1))
    stats = []
    for devices in (1, 2):
        cfg = config(devices, rows, cols, programming_noise="off", drift="off", reference_columns=0)
        out = build_tile(cfg, weights, seed).analog_outputs(x, 86400.0, np.random.default_rng(seed + 2))
        stats.append((out.mean(axis=2), out.var(axis=2)))
    (mean1, var1), (mean2, var2) = stats
    assert out.size == 8 * 40 * 64
    assert np.allclose(mean1, mean2, atol=0.05 + 5 * np.sqrt(var1 / 40))
    ratio = var2.sum() / var1.sum()
    assert ratio == pytest.approx(0.5, rel=0.07), f"seed {seed}: {ratio}"


def test_devices_are_independent(seed):
    tile = build_tile(config(2), np.random.default_rng(seed).normal(size=(16, 16)), seed)
    g, nu = tile.state.g_prog, tile.state.nu
    on = g[..., 0] > 1.0
    assert np.all(g[..., 0][on] != g[..., 1][on]) and np.all(nu[..., 0] != nu[..., 1])


def test_mapping_round_trip_and_state_file(tmp_path, seed):
    cfg = config(2)
    tile = build_tile(cfg.replace(analog=QUIET), np.random.default_rng(seed).normal(size=(16, 16)), seed)
    assert np.array_equal(unmap_conductances(tile.mapping, tile.state.g_prog[..., :16, :]), tile.state.w_int)
    path = save_state(tile.state, tmp_path / "p2.npz")
    loaded = AnalogTile(tile.cfg, load_state(path, expect=tile.cfg.to_dict()))
    assert np.array_equal(loaded.state.g_prog, tile.state.g_prog)
    with pytest.raises(ValueError, match=r"the configuration needs \(2, 1, 16, 24\)"):
        AnalogTile(tile.cfg.replace(weights={"devices_per_polarity": 1}), loaded.state)
    with pytest.raises(ValueError, match="devices per polarity must be a positive integer, not 0"):
        expand_devices(np.zeros((2, 1, 2, 2)), 0)


def test_program_verify_addresses_every_device():
    cfg = config(2, rows=4, cols=8).replace(weights={"slices": 2, "significance_factor": 4})
    g = np.random.default_rng(0).random((2, 2, 4, 8 + 3, 2))
    phys = to_physical(g, 8)
    assert phys.shape == (4, physical_columns(cfg)) == (4, 64)
    s, c, side, r, k = 1, 5, 1, 3, 1
    assert phys[r, (2 * (s * 8 + c) + side) * 2 + k] == g[side, s, r, c, k]
    assert np.array_equal(from_physical(phys, 2, devices=2), g[:, :, :, :8])
    assert np.array_equal(to_physical(g[..., 0], 8), phys.reshape(4, -1, 2)[..., 0])


def test_model_drift_cli_takes_devices_per_polarity(tmp_path):
    config_path = tmp_path / "small.toml"
    config_path.write_text("[tile]\nrows = 32\ncols = 16\n[datapath]\nlanes = 16\n")
    args = ["model", "drift", "--config", str(config_path), "--out", str(tmp_path / "d.png"), "--json"]
    result = CliRunner().invoke(main, args + ["--devices-per-polarity", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["devices_per_polarity"] == 2
    result = CliRunner().invoke(main, args + ["--devices-per-polarity", "5"])
    assert result.exit_code == 2
    assert "weights.devices_per_polarity must be an integer from 1 to 4, not 5" in result.output
