"""The chip co-simulation's Python half: firmware over the bus, the analog bridge that
answers each tile MVM, and the golden network model replayed on the served codes.

:class:`ChipFirmware`
    What the chip's firmware does, only through the chip address map: load the program
    and the batch-norm parameters, write tile registers, write an image into the
    activation memory, start, wait for the interrupt, read status, errors and tensors.
:class:`ChipBridge`
    Wakes on each ``mvm_request`` of :class:`~neurophase.cosim.chip_harness.ChipCosimHarness`,
    reads the row buffer, the tile and the tag (BLOCK entry, output position), asks the
    code source for that MVM's ADC codes (the analog tiles read with the keyed reads of
    :class:`~neurophase.network.golden.ReadKeys`) and writes them, with the row values they
    were computed from, into the harness. It records every MVM's codes per image.
:class:`ReplayChip`
    The golden network model (:class:`~neurophase.network.golden.NetworkChip`) whose block
    reads return the recorded codes, so the RTL's activations are compared with the golden
    model's on the same ADC codes.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import First, RisingEdge, Timer

from neurophase.chip_regmap import chip_address_map, chip_register_map
from neurophase.cosim.bridge import pack_codes, pack_fields, unpack_fields
from neurophase.cosim.wishbone import WishboneMaster
from neurophase.models.chip_isa import WORDS_PER_INSTRUCTION, Opcode
from neurophase.network.firmware import STATS_WINDOWS, statistics_from_words
from neurophase.network.golden import NetworkChip

__all__ = ["ChipFirmware", "ChipBridge", "ReplayChip", "ChipRunError", "block_index_of_pc", "STATS_WINDOWS"]



class ChipRunError(AssertionError):
    """An inference stopped with an error, or never finished."""


def block_index_of_pc(program: list) -> dict:
    """``pc of a BLOCK entry -> its index among the program's BLOCK entries``."""
    index, out = 0, {}
    for pc, ins in enumerate(program):
        if ins.opcode == Opcode.BLOCK:
            out[pc] = index
            index += 1
    return out


class ChipFirmware:
    """Firmware of the chip over its Wishbone bus (cocotb)."""

    def __init__(self, dut, cfg):
        self.dut, self.cfg = dut, cfg
        self.bus = WishboneMaster(dut, dut.clk, "bus", timeout_cycles=32)
        self.amap = chip_address_map(cfg)
        self.regs = chip_register_map(cfg)
        self.base = {r.name: r.base for r in self.amap.regions}
        self.ctrl_keep = 0

    def reg(self, name: str) -> int:
        return self.regs.address(name)

    async def field(self, register: str, name: str) -> int:
        f = self.regs.register(register).field(name)
        return (await self.bus.read(self.reg(register)) >> f.offset) & ((1 << f.width) - 1)

    async def load_program(self, program: list) -> None:
        for pc, ins in enumerate(program):
            for j, word in enumerate(ins.words()):
                await self.bus.write(self.base["program"] + 4 * (pc * WORDS_PER_INSTRUCTION + j), word)

    async def load_params(self, scale: np.ndarray, bias: np.ndarray) -> None:
        await self.load_params_at(0, scale, bias)

    async def load_params_at(self, first: int, scale: np.ndarray, bias: np.ndarray) -> None:
        """Batch-norm scales and biases into parameter entries ``first ..``."""
        for i, (s, b) in enumerate(zip(np.asarray(scale).tolist(), np.asarray(bias).tolist())):
            await self.bus.write(self.base["bn_scale"] + 4 * (first + i), int(s) & 0xFFFF_FFFF)
            await self.bus.write(self.base["bn_bias"] + 4 * (first + i), int(b) & 0xFFFF_FFFF)

    async def write_tile_array(self, tile: int, array: str, values) -> None:
        tile_map = self.amap.region(f"tile{tile}").rmap
        base = self.base[f"tile{tile}"] + tile_map.address(array)
        for i, value in enumerate(np.asarray(values).tolist()):
            await self.bus.write(base + 4 * i, int(value))

    async def write_tile_register(self, tile: int, register: str, value: int) -> None:
        tile_map = self.amap.region(f"tile{tile}").rmap
        await self.bus.write(self.base[f"tile{tile}"] + tile_map.address(register), int(value))

    async def write_activations(self, base: int, values) -> None:
        for i, value in enumerate(np.asarray(values).ravel().tolist()):
            await self.bus.write(self.base["activations"] + 4 * (base + i), int(value))

    async def read_activations(self, base: int, count: int) -> np.ndarray:
        words = [await self.bus.read(self.base["activations"] + 4 * (base + i)) for i in range(count)]
        values = np.array(words, dtype=np.int64)
        return np.where(values >= 1 << 31, values - (1 << 32), values)

    async def enable_interrupts(self) -> None:
        enable = self.regs.register("IRQ_ENABLE")
        await self.bus.write(self.reg("IRQ_ENABLE"), sum(1 << enable.field(n).offset for n in ("done", "error")))
        self.ctrl_keep = 1 << self.regs.register("CTRL").field("irq_en").offset
        await self.bus.write(self.reg("CTRL"), self.ctrl_keep)

    async def command(self, name: str) -> None:
        ctrl = self.regs.register("CTRL")
        await self.bus.write(self.reg("CTRL"), self.ctrl_keep | (1 << ctrl.field(name).offset))

    async def statistics(self, enabled: bool) -> None:
        """Switch ``CTRL.stats_en``: every batch-norm input accumulates into the statistics windows."""
        bit = 1 << self.regs.register("CTRL").field("stats_en").offset
        self.ctrl_keep = (self.ctrl_keep | bit) if enabled else (self.ctrl_keep & ~bit)
        await self.bus.write(self.reg("CTRL"), self.ctrl_keep)

    async def clear_statistics(self, first: int, count: int) -> None:
        for name in STATS_WINDOWS:
            for word in range(2 * first, 2 * (first + count)):
                await self.bus.write(self.base[name] + 4 * word, 0)

    async def read_statistics(self, first: int, count: int) -> dict:
        """Per entry: ``sum`` (signed), ``squares`` and ``abs`` as Python integers."""
        out = {}
        for name in STATS_WINDOWS:
            words = [await self.bus.read(self.base[name] + 4 * word) for word in range(2 * first, 2 * (first + count))]
            out[name.removeprefix("psum_")] = statistics_from_words(name, words)
        return out

    async def write_instruction(self, pc: int, ins) -> None:
        for j, word in enumerate(ins.words()):
            await self.bus.write(self.base["program"] + 4 * (pc * WORDS_PER_INSTRUCTION + j), word)

    async def set_entry(self, pc: int) -> None:
        await self.bus.write(self.reg("ENTRY"), pc)

    async def status(self) -> dict:
        word = await self.bus.read(self.reg("STATUS"))
        return {f.name: (word >> f.offset) & 1 for f in self.regs.register("STATUS").fields}

    async def clear_status(self) -> None:
        await self.bus.write(self.reg("STATUS"), 0xFFFF_FFFF)

    async def error(self) -> dict:
        return {name: await self.field("ERROR", name) for name in ("code", "tile", "pc")}

    async def run(self, limit_cycles: int) -> dict:
        """Start the program, wait for the interrupt (at most ``limit_cycles``), return the
        status with ``error`` details, ``cycles`` and ``mvms``; the sticky bits are cleared."""
        await self.clear_status()
        await self.command("start")
        fired = await First(RisingEdge(self.dut.irq), Timer(limit_cycles * 10, "ns"))
        if not isinstance(fired, RisingEdge):
            raise ChipRunError(f"no interrupt within {limit_cycles} cycles (STATUS {await self.status()})")
        status = await self.status()
        status["cycles"] = await self.field("CYCLES", "count")
        status["mvms"] = await self.field("MVMS", "count")
        status["error_detail"] = await self.error()
        await self.clear_status()
        return status


class ChipBridge:
    """Answers each tile MVM of the harness with the code source's codes (cocotb).

    Parameters
    ----------
    dut : the harness
    cfg : ChipConfig
    program : list of Instruction
        The loaded program (maps the BLOCK entry of the tag to its block index).
    code_source : callable
        ``code_source(image)`` gives ``codes(tile, drive, block_index, position)`` for one image.
    """

    def __init__(self, dut, cfg, program: list, code_source):
        self.dut, self.cfg = dut, cfg
        self.block_of_pc = block_index_of_pc(program)
        self.code_source = code_source
        self.image = 0
        self.codes = code_source(0)
        self.recorded: dict = {}
        self.order: list = []
        self.unknown_tags: list = []
        #: ``codes(tile, drive)`` for MVMs outside the network's program (calibration programs)
        self.calibration = None

    def start_image(self, image: int) -> None:
        self.image = image
        self.codes = self.code_source(image)
        self.recorded = {}
        self.order = []

    def served_codes(self) -> list:
        """The codes of the present image's MVMs in the order the chip ran them."""
        return [self.recorded[key] for key in self.order]

    async def serve(self) -> None:
        cfg, dut = self.cfg, self.dut
        while True:
            await RisingEdge(dut.mvm_request)
            tile = int(dut.mvm_tile.value)
            pc, position = int(dut.tag_pc.value), int(dut.tag_position.value)
            drive = unpack_fields(dut.row_values.value.to_unsigned(), cfg.tile.rows, cfg.input.bits, signed=True)
            block = self.block_of_pc.get(pc)
            if block is None and self.calibration is not None:
                codes = self.calibration(tile, drive)
            elif block is None:
                self.unknown_tags.append(pc)
                codes = np.zeros((cfg.weights.slices, cfg.input.planes, cfg.tile.cols), dtype=np.int64)
            else:
                codes = self.codes(tile, drive, block, position)
                self.recorded[(block, position)] = codes
                self.order.append((block, position))
            dut.mvm_codes.value = pack_codes(cfg, codes)
            dut.expected_rows.value = pack_fields(drive, cfg.input.bits)


class ReplayChip(NetworkChip):
    """The golden network model reading recorded codes instead of the analog tiles.

    Parameters
    ----------
    chip : NetworkChip
        Gives the mapped network and a copy of its registers (the tiles are not read); the
        firmware's register writes go into this copy, never into ``chip``.
    """

    def __init__(self, chip: NetworkChip):
        self.mapped, self.cfg, self.seed = chip.mapped, chip.cfg, chip.seed
        self.tiles = chip.tiles
        self.registers = chip.registers.copy()
        self._ideal_layers = frozenset()
        self.block_index = {block: i for i, block in enumerate(chip.mapped.blocks)}
        self.recorded: dict = {}

    def block_codes(self, block, patches: np.ndarray, t_s: float, rng) -> np.ndarray:
        index = self.block_index[block]
        missing = [p for p in range(len(patches)) if (index, p) not in self.recorded]
        if missing:
            raise ChipRunError(f"the RTL ran no MVM of block {index} (layer {block.layer!r}) at positions "
                               f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
        return np.stack([self.recorded[(index, p)][..., block.tile_cols] for p in range(len(patches))])
