"""Verilog generation: every RTL block of the chip from one configuration, with a manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from neurophase.atomic import write_text_atomic
from neurophase.chip_regmap_export import write_chip_map_exports
from neurophase.config import ChipConfig
from neurophase.models.shift_add import ShiftAddParams
from neurophase.regmap import tile_register_map
from neurophase.regmap_export import write_regmap_exports
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.shift_add import ShiftAdd

__all__ = ["BLOCKS", "CHIP_MAP_BLOCKS", "build_block", "convert", "generate", "write_chip_map_exports"]

#: Every RTL block the framework generates: Verilog module name -> factory from the chip config.
BLOCKS: dict[str, Callable[[ChipConfig], wiring.Component]] = {
    "shift_add": lambda cfg: ShiftAdd(ShiftAddParams.from_config(cfg)),
    "csr_bank": lambda cfg: CsrBank(tile_register_map(cfg)),
    "adc_interface": lambda cfg: _datapath_block("adc_interface", cfg),
    "drift_gain": lambda cfg: _datapath_block("drift_gain", cfg),
    "batch_norm": lambda cfg: _datapath_block("batch_norm", cfg),
    "tile": lambda cfg: _datapath_block("tile", cfg),
    "program_verify": lambda cfg: _program_verify(cfg),
    "programmable_tile": lambda cfg: _programmable_tile(cfg),
}

#: Blocks whose generation also writes the chip address map (``chip_map.*``): the tile's CSR
#: bank (the tile map is part of the chip map) and the chip top.
CHIP_MAP_BLOCKS = ("csr_bank", "chip")


def _programmable_tile(cfg: ChipConfig) -> wiring.Component:
    """The tile with its program-verify controller behind one bus."""
    from neurophase.rtl.programmable_tile import ProgrammableTile

    return ProgrammableTile(cfg)


def _program_verify(cfg: ChipConfig) -> wiring.Component:
    """The program-verify controller (with its own CSR bank) sized by ``cfg``."""
    from neurophase.rtl.program_verify import ProgramVerify

    return ProgramVerify(cfg)


def _datapath_block(name: str, cfg: ChipConfig) -> wiring.Component:
    """The ADC interface, drift gain, batch-norm or tile top sized by ``cfg``."""
    from neurophase.models.datapath import DatapathParams
    from neurophase.rtl.adc_interface import AdcInterface
    from neurophase.rtl.batch_norm import BatchNorm
    from neurophase.rtl.drift_gain import DriftGain
    from neurophase.rtl.tile import Tile

    if name == "tile":
        return Tile(cfg)
    params = DatapathParams.from_config(cfg)
    return {"adc_interface": lambda: AdcInterface(params.adc), "drift_gain": lambda: DriftGain(params.drift_gain),
            "batch_norm": lambda: BatchNorm(params.batch_norm)}[name]()


def build_block(name: str, cfg: ChipConfig) -> wiring.Component:
    """The component of block ``name`` sized by ``cfg``."""
    if name not in BLOCKS:
        raise ValueError(f"unknown RTL block {name!r}; known blocks: {', '.join(BLOCKS)}")
    return BLOCKS[name](cfg)


def convert(component: wiring.Component, name: str) -> str:
    """Verilog text of ``component`` as module ``name``."""
    return verilog.convert(component, name=name, emit_src=False)


def generate(cfg: ChipConfig, out_dir: str | Path, blocks: list[str] | None = None) -> dict:
    """Write the Verilog of ``blocks`` (default: all), the configuration used, the register
    maps of the blocks that have one (the tile's ``tile_regs.*`` and the chip's
    ``chip_map.*`` with ``csr_bank`` or ``chip``, ``program_verify_regs.*``) and
    ``manifest.json`` listing every file written with its SHA-256; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []

    def record(path: Path, kind: str, **extra):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"path": path.name, "kind": kind, "sha256": digest, **extra})

    config_path = out_dir / "chip.toml"
    write_text_atomic(config_path, cfg.to_toml())
    record(config_path, "configuration")
    for name in blocks or list(BLOCKS):
        path = out_dir / f"{name}.v"
        write_text_atomic(path, convert(build_block(name, cfg), name))
        record(path, "verilog", module=name)
    selected = blocks or list(BLOCKS)
    if "csr_bank" in selected:
        for kind, path in write_regmap_exports(tile_register_map(cfg), out_dir).items():
            record(path, f"register-map-{kind}")
    if any(name in selected for name in CHIP_MAP_BLOCKS):
        for kind, path in write_chip_map_exports(cfg, out_dir).items():
            record(path, f"chip-map-{kind}")
    if "program_verify" in selected:
        from neurophase.models.program_verify import program_verify_register_map

        for kind, path in write_regmap_exports(program_verify_register_map(cfg), out_dir).items():
            record(path, f"register-map-{kind}")
    manifest = {
        "generator": f"neurophase {version('neurophase')}",
        "amaranth": version("amaranth"),
        "files": files,
    }
    write_text_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
