"""The chip configuration: defaults, TOML loading and exact error messages."""

import pytest

from neurophase.config import ChipConfig, ConfigError, load_config


def test_default_matches_design_brief():
    cfg = ChipConfig()
    assert (cfg.tile.rows, cfg.tile.cols, cfg.tile.count) == (256, 256, 144)
    assert cfg.input.bits == 8 and cfg.input.signed and cfg.input.mode == "bit-serial"
    assert cfg.adc.bits == 8 and cfg.adc.columns_per_adc == 1
    assert cfg.device.preset == "pcm-joshi"
    assert cfg.tile.rows * cfg.tile.cols * cfg.tile.count * 2 == 18_874_368  # devices as pairs


def test_full_precision_accumulator_width():
    # |code| <= 128, sum of 2**b over 8 planes = 255: 128*255 = 32640 needs 16 signed bits
    assert ChipConfig().full_accumulator_bits == 16
    two_slices = ChipConfig().replace(weights={"slices": 2, "significance_factor": 16})
    assert two_slices.full_accumulator_bits == 21  # 32640 * 17 = 554880 >= 2**19


def test_toml_round_trip(tmp_path):
    cfg = ChipConfig().replace(adc={"bits": 6, "columns_per_adc": 4},
                               device={"preset": "rram", "overrides": {"t0": 10.0}})
    path = tmp_path / "chip.toml"
    path.write_text(cfg.to_toml())
    assert ChipConfig.from_toml(path) == cfg


def test_load_partial_toml_keeps_defaults(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('[tile]\ncols = 64\n[datapath]\nlanes = 8\n')
    cfg = load_config(path)
    assert cfg.tile.cols == 64 and cfg.tile.rows == 256 and cfg.datapath.lanes == 8


@pytest.mark.parametrize("data, message", [
    ({"adc": {"bits": 40}}, "adc.bits must be an integer from 2 to 16, not 40"),
    ({"adc": {"bits": "8"}}, "adc.bits must be an integer from 2 to 16, not '8'"),
    ({"tile": {"rows": 0}}, "tile.rows must be an integer from 1 to 4096, not 0"),
    ({"tile": {"count": True}}, "tile.count must be an integer from 1 to 4096, not True"),
    ({"input": {"encoding": "sign-magnitude"}},
     "input.encoding must be one of 'twos-complement', 'unsigned', not 'sign-magnitude'"),
    ({"device": {"preset": "memristor"}},
     "device.preset must be one of 'pcm-joshi', 'pcm-hermes', 'pcm-projected', 'rram', 'nor-flash', not 'memristor'"),
    ({"device": {"overrides": {"t0": "fast"}}}, "device.overrides.t0 must be a finite number, not 'fast'"),
    ({"clock_mhz": -5}, "clock_mhz must be a number from 1 to 5000, not -5"),
    ({"clock_mhz": float("nan")}, "clock_mhz must be a number from 1 to 5000, not nan"),
    ({"datapath": {"lanes": 3}}, "datapath.lanes must divide tile.cols (256), not 3"),
    ({"adc": {"columns_per_adc": 3}}, "adc.columns_per_adc must divide tile.cols (256), not 3"),
    ({"datapath": {"accumulator_bits": 4}},
     "datapath.accumulator_bits must be 0 (full precision) or at least adc.bits (8), not 4"),
    ({"adc": {"bitz": 8}}, "unknown field adc.bitz; allowed fields: bits, columns_per_adc, latency_cycles"),
    ({"tiles": {}}, "unknown section or field 'tiles'"),
    ({"adc": 8}, "[adc] must be a table of fields, not 8"),
    ({"weights": {"slices": 8, "significance_factor": 256}}, "needs a 72-bit accumulator; at most 62 bits"),
    ({"weights": {"devices_per_polarity": 0}}, "weights.devices_per_polarity must be an integer from 1 to 4, not 0"),
    ({"weights": {"devices_per_polarity": 5}}, "weights.devices_per_polarity must be an integer from 1 to 4, not 5"),
    ({"weights": {"devices_per_polarity": 2.0}},
     "weights.devices_per_polarity must be an integer from 1 to 4, not 2.0"),
])
def test_invalid_values_are_named(data, message):
    with pytest.raises(ConfigError) as info:
        ChipConfig.from_dict(data)
    assert message in str(info.value)


def test_bad_toml_file_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[adc]\nbits = 99\n")
    with pytest.raises(ConfigError, match=r"bad.toml: adc.bits must be an integer from 2 to 16, not 99"):
        load_config(path)
    path.write_text("[adc\nbits = 8\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"cannot read configuration file .*missing.toml"):
        load_config(tmp_path / "missing.toml")


def test_devices_per_polarity_defaults_to_one_and_round_trips(tmp_path):
    assert ChipConfig().weights.devices_per_polarity == 1
    cfg = ChipConfig().replace(weights={"devices_per_polarity": 2})
    path = tmp_path / "p2.toml"
    path.write_text(cfg.to_toml())
    assert load_config(path) == cfg and load_config(path).weights.devices_per_polarity == 2
