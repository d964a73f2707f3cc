# amaranth: UnusedElaboratable=no
"""`neurophase generate --blocks chip`: the chip top and one tile module instantiated per tile, lint-clean.

The default chip (144 tiles of 256 x 256) is generated and linted by the slow-marked test at
the end, which CI runs once (`make test-chip-scale`); docs/chip.md gives its timings.
"""

import hashlib
import json
import re

import pytest
from amaranth.hdl import IOPort
from click.testing import CliRunner

from neurophase.cli import main
from neurophase.config import ChipConfig
from neurophase.cosim.runner import TOP_LINT_WAIVERS, lint_verilog
from neurophase.generate import generate
from neurophase.rtl.chip import TILE_MODULE, Chip

SMALL = ChipConfig().replace(tile={"rows": 16, "cols": 16, "count": 3}, datapath={"lanes": 8})
SMALL_TOML = "[tile]\nrows = 16\ncols = 16\ncount = 3\n[datapath]\nlanes = 8\n"


def definitions(text: str) -> int:
    return len(re.findall(rf"^module {TILE_MODULE}\s*\(", text, re.MULTILINE))


def instances(text: str) -> list[str]:
    return re.findall(rf"^\s*{TILE_MODULE}\s+(\S+)\s*\(", text, re.MULTILINE)


@pytest.fixture(scope="module")
def small_chip(tmp_path_factory):
    out = tmp_path_factory.mktemp("chip")
    return out, generate(SMALL, out, ["chip"])


def test_chip_block_writes_both_files_into_the_manifest(small_chip):
    out, manifest = small_chip
    verilog = {entry["path"]: entry for entry in manifest["files"] if entry["kind"] == "verilog"}
    assert set(verilog) == {"chip.v", f"{TILE_MODULE}.v"}
    assert verilog["chip.v"]["module"] == "chip"
    assert verilog["chip.v"]["uses"] == [f"{TILE_MODULE}.v"]
    assert verilog[f"{TILE_MODULE}.v"]["module"] == TILE_MODULE
    for path, entry in verilog.items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == entry["sha256"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert {"chip_map.h", "chip_map.json"} <= {entry["path"] for entry in manifest["files"]}


def test_tile_module_is_defined_once_and_instantiated_per_tile(small_chip):
    out, _ = small_chip
    chip, tile = (out / "chip.v").read_text(), (out / f"{TILE_MODULE}.v").read_text()
    assert definitions(tile) == 1
    assert definitions(chip) == 0
    assert sorted(instances(chip)) == sorted(f"tile{t}" for t in range(SMALL.tile.count))
    assert instances(tile) == []


def test_every_tile_takes_its_adc_codes_from_its_own_port(small_chip):
    out, _ = small_chip
    chip = (out / "chip.v").read_text()
    bits = SMALL.tile.cols // SMALL.adc.columns_per_adc * SMALL.adc.bits
    for t in range(SMALL.tile.count):
        assert re.search(rf"^\s*input \[{bits - 1}:0\] adc__{t}__codes;", chip, re.MULTILINE)
        assert f".adc__codes(adc__{t}__codes)" in chip
    assert "\\adc__0__codes$" not in chip  # the unused Chip member leaves no dead copy


@pytest.mark.verilator
def test_chip_and_tile_module_are_lint_clean(small_chip):
    out, _ = small_chip
    clean, output = lint_verilog([out / "chip.v", out / f"{TILE_MODULE}.v"], "chip")
    assert clean, output
    clean, output = lint_verilog([out / f"{TILE_MODULE}.v"], TILE_MODULE)
    assert clean, output


def test_chip_waivers_stay_with_the_chip_and_are_documented():
    doc = open("docs/lint.md").read()
    for top, waivers in TOP_LINT_WAIVERS.items():
        for name in waivers:
            assert f"| `{top}` | `{name}` |" in doc
    assert TILE_MODULE not in TOP_LINT_WAIVERS


def test_chip_refuses_a_wrong_number_of_codes_ports():
    with pytest.raises(ValueError, match=r"adc_codes_io must have one IO port per tile \(3\), not 2"):
        Chip(SMALL, adc_codes_io=[IOPort(128, name=f"codes{t}") for t in range(2)])


def test_cli_generates_only_the_chip_block(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(SMALL_TOML)
    result = CliRunner().invoke(main, ["generate", "--config", str(config), "--blocks", "chip",
                                       "--out", str(tmp_path / "rtl")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = {path.name for path in (tmp_path / "rtl").iterdir()}
    assert {"chip.v", f"{TILE_MODULE}.v", "manifest.json", "chip_map.json"} <= written
    assert not any(name in written for name in ("shift_add.v", "tile.v", "tile_regs.json"))


def test_cli_names_an_unknown_block_and_writes_nothing(tmp_path):
    result = CliRunner().invoke(main, ["generate", "--blocks", "chip,chips", "--out", str(tmp_path / "rtl")],
                                catch_exceptions=False)
    assert result.exit_code == 2
    assert "unknown RTL block 'chips'; known blocks: " in result.output
    assert "chip" in result.output.split("known blocks:")[1]
    assert not (tmp_path / "rtl").exists()


def test_generate_refuses_a_block_list_that_is_a_string(tmp_path):
    with pytest.raises(ValueError, match="blocks must be a non-empty list of block names, not 'chip'"):
        generate(SMALL, tmp_path, "chip")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.verilator
def test_default_chip_of_144_tiles_generates_one_tile_module_and_is_lint_clean(tmp_path):
    cfg = ChipConfig()
    assert cfg.tile.count == 144 and (cfg.tile.rows, cfg.tile.cols) == (256, 256)
    generate(cfg, tmp_path, ["chip"])
    chip, tile = (tmp_path / "chip.v").read_text(), (tmp_path / f"{TILE_MODULE}.v").read_text()
    assert definitions(tile) == 1 and definitions(chip) == 0
    assert sorted(instances(chip)) == sorted(f"tile{t}" for t in range(144))  # Yosys sorts by name
    clean, output = lint_verilog([tmp_path / "chip.v", tmp_path / f"{TILE_MODULE}.v"], "chip")
    assert clean, output
