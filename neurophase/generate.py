"""Verilog generation: every RTL block of the chip from one configuration, with a manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from neurophase.atomic import write_text_atomic
from neurophase.chip_regmap_export import write_chip_map_exports
from neurophase.config import ChipConfig
from neurophase.models.shift_add import ShiftAddParams
from neurophase.regmap import tile_register_map
from neurophase.regmap_export import write_regmap_exports
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.shift_add import ShiftAdd

__all__ = ["BLOCKS", "CHIP_MAP_BLOCKS", "build_block", "convert", "convert_chip", "generate",
           "write_chip_map_exports"]

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
    "chip": lambda cfg: _chip(cfg),
}

#: Blocks whose generation also writes the chip address map (``chip_map.*``): the tile's CSR
#: bank (the tile map is part of the chip map) and the chip top.
CHIP_MAP_BLOCKS = ("csr_bank", "chip")


def _chip(cfg: ChipConfig) -> wiring.Component:
    """The chip top (its tiles are instances of the separately generated tile module)."""
    from neurophase.rtl.chip import Chip

    return Chip(cfg)


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


def convert(component: wiring.Component, name: str, platform=None) -> str:
    """Verilog text of ``component`` as module ``name``, elaborated for ``platform`` (an
    Amaranth platform, or None for target-independent Verilog)."""
    return verilog.convert(component, name=name, emit_src=False, platform=platform)


def convert_chip(cfg: ChipConfig, progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Verilog of the chip top: ``{module name: text}`` for the tile module
    :data:`~neurophase.rtl.chip.TILE_MODULE` (from ``Tile(cfg, on_chip=True)``, generated
    once) and ``chip`` (the top and its submodules, with ``tile.count`` instances of the
    tile module). ``progress`` is told which part is being generated.

    Each tile's ADC codes enter ``chip`` on the port ``adc__<t>__codes`` and go straight to
    the tile's instance (the interface of ``Chip(cfg)``, converted the usual way): an
    Amaranth top module takes at most 65534 input bits of signals, fewer than 144 tiles
    of 256 8-bit codes, so the codes are IO ports.
    """
    from amaranth.hdl import IOPort

    from neurophase.rtl.chip import TILE_MODULE, Chip
    from neurophase.rtl.tile import Tile

    report = progress or (lambda text: None)
    report(f"tile module {TILE_MODULE} ({cfg.tile.rows} x {cfg.tile.cols})")
    tile = Tile(cfg, on_chip=True)
    codes_bits = len(tile.adc.codes.as_value())
    tile_verilog = convert(tile, TILE_MODULE)
    report(f"chip top with {cfg.tile.count} tile instance(s)")
    codes_io = [IOPort(codes_bits, name=f"adc__{t}__codes") for t in range(cfg.tile.count)]
    chip = Chip(cfg, adc_codes_io=codes_io)
    chip_verilog = verilog.convert(chip, name="chip", ports=_chip_ports(chip, codes_io), emit_src=False)
    return {TILE_MODULE: tile_verilog, "chip": chip_verilog}


def _chip_ports(chip, codes_io) -> dict:
    """The top-level ports of ``chip`` as ``convert`` names them from its signature, with
    the ADC codes of tile ``t`` on ``codes_io[t]``."""
    from amaranth.hdl._ir import PortDirection

    ports = {}
    for path, member, value in chip.signature.flatten(chip):
        if path[0] == "adc" and path[-1] == "codes":
            continue
        direction = PortDirection.Input if member.flow == wiring.In else PortDirection.Output
        ports["__".join(map(str, path))] = (Value.cast(value), direction)
    for t, port in enumerate(codes_io):
        ports[f"adc__{t}__codes"] = (port, PortDirection.Input)
    return ports


def _check_blocks(blocks) -> list[str]:
    """``blocks`` (None: all) as a list of known block names."""
    if blocks is None:
        return list(BLOCKS)
    if isinstance(blocks, str) or not blocks:
        raise ValueError(f"blocks must be a non-empty list of block names, not {blocks!r}; "
                         f"known blocks: {', '.join(BLOCKS)}")
    for name in blocks:
        if name not in BLOCKS:
            raise ValueError(f"unknown RTL block {name!r}; known blocks: {', '.join(BLOCKS)}")
    return list(dict.fromkeys(blocks))


def generate(cfg: ChipConfig, out_dir: str | Path, blocks: list[str] | None = None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Write the Verilog of ``blocks`` (default: all), the configuration used, the register
    maps of the blocks that have one (the tile's ``tile_regs.*`` and the chip's
    ``chip_map.*`` with ``csr_bank`` or ``chip``, ``program_verify_regs.*``) and
    ``manifest.json`` listing every file written with its SHA-256; returns the manifest.

    Block ``chip`` writes two files: ``chip.v`` (the chip top and its submodules; its
    manifest entry lists ``neurophase_chip_tile.v`` under ``uses``) and
    ``neurophase_chip_tile.v`` (the tile module, see :func:`convert_chip`).
    ``progress`` is told each block as it is generated."""
    selected = _check_blocks(blocks)
    report = progress or (lambda text: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []

    def record(path: Path, kind: str, **extra):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"path": path.name, "kind": kind, "sha256": digest, **extra})

    config_path = out_dir / "chip.toml"
    write_text_atomic(config_path, cfg.to_toml())
    record(config_path, "configuration")
    for name in selected:
        if name == "chip":
            _write_chip(cfg, out_dir, record, lambda text: report(f"chip: {text}"))
            continue
        report(name)
        path = out_dir / f"{name}.v"
        write_text_atomic(path, convert(build_block(name, cfg), name))
        record(path, "verilog", module=name)
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
    report("manifest")
    manifest = {
        "generator": f"neurophase {version('neurophase')}",
        "amaranth": version("amaranth"),
        "files": files,
    }
    write_text_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_chip(cfg: ChipConfig, out_dir: Path, record, progress: Callable[[str], None]) -> None:
    """Write ``chip.v`` and the tile module's file and record both (tile module first)."""
    texts = convert_chip(cfg, progress)
    progress("writing")
    (tile_module,) = (name for name in texts if name != "chip")
    tile_path, chip_path = out_dir / f"{tile_module}.v", out_dir / "chip.v"
    write_text_atomic(tile_path, texts[tile_module])
    write_text_atomic(chip_path, texts["chip"])
    record(tile_path, "verilog", module=tile_module)
    record(chip_path, "verilog", module="chip", uses=[tile_path.name])
