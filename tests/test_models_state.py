"""Chip-state files: exact round trip; corrupt, truncated and mismatched files rejected."""

import json
import zipfile

import numpy as np
import pytest

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.chip_state import StateFileError, load_state, save_state
from neurophase.models.crossbar import AnalogTile, build_tile


def small_tile(seed, **analog):
    cfg = ChipConfig().replace(tile={"rows": 16, "cols": 16}, datapath={"lanes": 16},
                               device={"preset": "rram", "overrides": {"g_max": 40.0}},
                               analog={"adc_offset_sigma_lsb": 1.0, **analog})
    return cfg, build_tile(cfg, np.random.default_rng(seed).normal(size=(16, 16)), seed)


def test_round_trip_is_exact(tmp_path, seed):
    cfg, tile = small_tile(seed)
    x = np.random.default_rng(seed).integers(-128, 128, size=(4, 16))
    tile.adc_codes(x, 100.0, np.random.default_rng(1))
    save_state(tile.state, tmp_path / "chip.npz")
    loaded = load_state(tmp_path / "chip.npz", expect=cfg.to_dict())
    for name, array in tile.state.arrays().items():
        restored = getattr(loaded, name)
        assert restored.dtype == array.dtype and np.array_equal(restored, array), name
    assert (loaded.time_s, loaded.reads, loaded.seed) == (tile.state.time_s, tile.state.reads, tile.state.seed)
    assert loaded.device == tile.state.device
    again = AnalogTile(cfg, loaded)
    assert np.array_equal(again.adc_codes(x, 86400.0, np.random.default_rng(2)),
                          tile.adc_codes(x, 86400.0, np.random.default_rng(2)))


def test_corrupt_file_is_rejected(tmp_path, seed):
    _, tile = small_tile(seed)
    path = save_state(tile.state, tmp_path / "chip.npz")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    g = np.load(path)["g_prog"].copy()
    g[0, 0, 0, 0] += 1e-9
    corrupt = tmp_path / "corrupt.npz"
    np.savez(corrupt, g_prog=g, **{k: np.load(path)[k] for k in np.load(path).files if k != "g_prog"})
    with pytest.raises(StateFileError, match=r"is corrupt: checksum mismatch"):
        load_state(corrupt)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(StateFileError, match=r"is not a readable state archive"):
        load_state(truncated)
    assert members  # the original archive was readable


def test_missing_file_and_arrays(tmp_path):
    with pytest.raises(StateFileError, match=r"does not exist"):
        load_state(tmp_path / "nothing.npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, header=np.array("{}"), g_prog=np.zeros(1))
    with pytest.raises(StateFileError, match=r"holds arrays \['g_prog'\]; expected header and"):
        load_state(partial)


def test_version_mismatch(tmp_path, seed):
    _, tile = small_tile(seed)
    path = save_state(tile.state, tmp_path / "chip.npz")
    data = dict(np.load(path))
    header = json.loads(str(data["header"]))
    header["version"] = 99
    data["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "v99.npz", **data)
    with pytest.raises(StateFileError, match=r"has format version 99; this model reads version 1"):
        load_state(tmp_path / "v99.npz")


def test_mismatched_configuration(tmp_path, seed):
    cfg, tile = small_tile(seed)
    path = save_state(tile.state, tmp_path / "chip.npz")
    other = cfg.replace(adc={"bits": 6})
    with pytest.raises(StateFileError, match=r"was made for another configuration \(adc.bits: expected 6, file has 8\)"):
        load_state(path, expect=other.to_dict())
    with pytest.raises(ConfigError, match=r"chip state conductances have shape \(2, 1, 16, 24\); the configuration needs"):
        AnalogTile(cfg.replace(analog={"reference_columns": 4}), load_state(path))
