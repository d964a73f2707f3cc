"""The command line as a user meets it."""

import json

import pytest
from click.testing import CliRunner

from neurophase.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("path", [[], ["generate"], ["sim"], ["sim", "shift-add"], ["bench"], ["model"]])
def test_every_command_has_help(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_generate_writes_verilog_and_manifest(tmp_path):
    config = tmp_path / "small.toml"  # every block, the chip top with 3 tiles of 16 x 16
    config.write_text("[tile]\nrows = 16\ncols = 16\ncount = 3\n[datapath]\nlanes = 8\n")
    result = invoke("generate", "--config", str(config), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    written = {entry["path"] for entry in manifest["files"]}
    assert {"chip.toml", "shift_add.v", "chip.v", "neurophase_chip_tile.v"} <= written
    for entry in manifest["files"]:
        assert (tmp_path / entry["path"]).is_file()
    assert "module shift_add" in (tmp_path / "shift_add.v").read_text()


def test_generate_with_a_bad_configuration_names_the_field(tmp_path):
    config = tmp_path / "chip.toml"
    config.write_text("[adc]\nbits = 1\n")
    result = invoke("generate", "--config", str(config), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "adc.bits must be an integer from 2 to 16, not 1" in result.output
    assert not (tmp_path / "out").exists()


def test_sim_shift_add_prints_a_summary(tmp_path, seed):
    config = tmp_path / "small.toml"
    config.write_text("[tile]\ncols = 16\n[datapath]\nlanes = 8\n")
    result = invoke("sim", "shift-add", "--config", str(config), "--length", "50", "--seed", str(seed),
                    "--build-dir", str(tmp_path / "build"))
    assert result.exit_code == 0, result.output
    assert "shift-add: PASS  4 passed, 0 failed" in result.output
    assert f"seed={seed}" in result.output
    assert (tmp_path / "build" / f"results_{seed}.xml").is_file()


def test_sim_with_missing_icarus_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = invoke("sim", "shift-add", "--simulator", "icarus", "--length", "1",
                    "--build-dir", str(tmp_path / "build"))
    assert result.exit_code == 2
    assert "simulator 'icarus' selected but 'iverilog' is not on PATH" in result.output
