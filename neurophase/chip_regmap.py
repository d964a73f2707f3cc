"""The chip's address map: the chip control registers, the program, activation and
batch-norm parameter memories as windows, and every tile's registers at its own base.

Every region is a :class:`~neurophase.regmap.RegisterMap` (the memories as one array
each, served by the memories rather than a CSR bank), placed at a base aligned to its
power-of-two span, largest regions first, so the decoder compares upper address bits only.
"""

from __future__ import annotations

from dataclasses import dataclass

from neurophase.regmap import Access, Array, Field, Register, RegisterMap, Source, WORD_BYTES, tile_register_map

__all__ = ["CHIP_MAGIC", "CHIP_MAP_VERSION", "ERROR_CODES", "Region", "chip_register_map", "chip_tile_register_map",
           "memory_maps", "chip_address_map", "ChipAddressMap"]

#: Value of ``ID.magic``: ASCII 'NPHC'.
CHIP_MAGIC = 0x4E504843
CHIP_MAP_VERSION = (1, 0)

#: ``ERROR.code`` values of the layer sequencer.
ERROR_CODES = {
    0: "none",
    1: "invalid instruction (unknown opcode, or a BLOCK entry outside an MVM)",
    2: "activation address out of range",
    3: "ADC timeout in a tile (ERROR.tile names it)",
    4: "aborted by CTRL.abort",
    5: "block outside its tile, the partial-sum buffer or the tile count",
    6: "program counter beyond the program memory",
    7: "batch-norm parameter address out of range",
}


def chip_register_map(cfg) -> RegisterMap:
    """The chip control registers (sequencer, status, error, counters)."""
    R, RW, RW1C, W1P, CONST = Access.R, Access.RW, Access.RW1C, Access.W1P, Access.CONST
    seq = cfg.sequencer
    major, minor = CHIP_MAP_VERSION
    rmap = RegisterMap("chip", max_bytes=1 << 8, doc=f"Control of a chip of {cfg.tile.count} tiles")
    for register in (
        Register("ID", (Field("magic", 32, CONST, CHIP_MAGIC, "magic word 0x4E504843 ('NPHC')"),),
                 doc="Identifies a NeuroPhase chip"),
        Register("VERSION", (Field("minor", 8, CONST, minor, "register map minor version"),
                             Field("major", 8, CONST, major, "register map major version")),
                 doc="Register map version"),
        Register("CONFIG0", (Field("tiles", 13, CONST, cfg.tile.count, "tiles on the chip"),
                             Field("rows", 13, CONST, cfg.tile.rows, "rows per tile")),
                 doc="Configuration the RTL was generated for: tiles"),
        Register("CONFIG1", (Field("activation_words", 21, CONST, seq.activation_words, "activation memory entries"),
                             Field("psum_bits", 7, CONST, cfg.psum_bits, "partial-sum adder width")),
                 doc="Configuration the RTL was generated for: activation memory"),
        Register("CONFIG2", (Field("program_words", 17, CONST, seq.program_words, "program memory instructions"),),
                 doc="Configuration the RTL was generated for: program memory"),
        Register("CONFIG3", (Field("param_words", 17, CONST, seq.param_words, "batch-norm parameter entries"),),
                 doc="Configuration the RTL was generated for: parameter memory"),
        Register("CTRL", (Field("start", access=W1P, doc="run the program from ENTRY.pc (ignored while busy)"),
                          Field("abort", access=W1P, doc="stop the program: error code 4, sequencer idle"),
                          Field("soft_reset", access=W1P, doc="stop the program and clear ERROR and the counters"),
                          Field("irq_en", access=RW, offset=8, doc="master interrupt enable"),
                          Field("stats_en", access=RW, offset=9,
                                doc="accumulate every batch-norm input into the statistics windows")),
                 doc="Commands and global enables"),
        Register("STATUS", (Field("busy", access=R, doc="the sequencer runs a program"),
                            Field("done", access=RW1C, doc="a program reached END"),
                            Field("error", access=RW1C, doc="a program stopped with an error (see ERROR)"),
                            Field("sat_psum", access=RW1C, doc="a partial sum saturated"),
                            Field("sat_batch_norm", access=RW1C, doc="batch-norm or requantisation saturated"),
                            Field("bus_error", access=RW1C, source=Source.BUS_ERROR,
                                  doc="a bus access was answered with err")),
                 doc="Status; sticky bits are cleared by writing 1"),
        Register("ERROR", (Field("code", 4, R, doc="why the last program stopped early (0: it did not)"),
                           Field("tile", 12, R, doc="tile of an ADC timeout or a bad block", offset=4),
                           Field("pc", 16, R, doc="instruction that stopped", offset=16)),
                 doc="Error of the last program"),
        Register("ENTRY", (Field("pc", 16, RW, 0, "instruction CTRL.start runs first"),),
                 doc="Program entry point"),
        Register("PC", (Field("pc", 16, R, doc="instruction being executed"),),
                 doc="Program counter"),
        Register("CYCLES", (Field("count", 32, R, doc="clock cycles of the last (or running) program"),),
                 doc="Cycle counter"),
        Register("RUNS", (Field("count", 32, R, doc="programs that reached END since reset"),),
                 doc="Completed programs"),
        Register("MVMS", (Field("count", 32, R, doc="tile MVMs of the last (or running) program"),),
                 doc="MVM counter"),
        Register("ERROR_COUNT", (Field("bus", 16, R, source=Source.BUS_ERROR_COUNT,
                                       doc="bus accesses answered with err (saturates)"),),
                 doc="Error counters"),
    ):
        rmap.add(register)
    rmap.add_interrupts("STATUS", master=("CTRL", "irq_en"))
    return rmap


def chip_tile_register_map(cfg) -> RegisterMap:
    """A tile's registers on the chip: the tile map without its batch-norm stage (the
    chip's batch-norm runs after the partial-sum adder)."""
    return tile_register_map(cfg, batch_norm=False)


def memory_maps(cfg) -> dict[str, RegisterMap]:
    """The memories as windows: one array each, served by the memory (not a CSR bank)."""
    seq, dp = cfg.sequencer, cfg.datapath
    words = 8  # 32-bit words per 256-bit instruction
    spec = {
        "program": Array("PROGRAM", seq.program_words * words, 32,
                         doc="instructions, 8 words each, word 0 holds bits 31:0"),
        "activations": Array("ACTIVATIONS", seq.activation_words, cfg.input.bits, signed=True,
                             doc=f"activations, signed {cfg.input.bits}-bit (written only while the sequencer is idle)"),
        "bn_scale": Array("BN_SCALE", seq.param_words, dp.bn_scale_bits, signed=True,
                          doc=f"batch-norm scale S, Q{dp.bn_scale_bits - dp.bn_scale_frac_bits}.{dp.bn_scale_frac_bits}"),
        "bn_bias": Array("BN_BIAS", seq.param_words, dp.bn_bias_bits, signed=True,
                         doc="batch-norm bias beta, in partial-sum LSBs"),
    }
    for name, what in (("psum_sum", "sum of the partial sums y"), ("psum_squares", "sum of y squared"),
                       ("psum_abs", "sum of |y|")):
        spec[name] = Array(name.upper(), seq.param_words * 2, 32,
                           doc=f"statistics per batch-norm parameter entry e while CTRL.stats_en: {what}, "
                               f"64-bit saturating, low word at 2e, high word at 2e+1")
    maps = {}
    for name, array in spec.items():
        rmap = RegisterMap(name, max_bytes=1 << 24, doc=array.doc)
        rmap.add(array)
        maps[name] = rmap
    return maps


@dataclass(frozen=True)
class Region:
    """One window of the chip bus.

    Parameters
    ----------
    name : str
        ``chip``, ``program``, ``activations``, ``bn_scale``, ``bn_bias`` or ``tile<i>``.
    base : int
        Byte address.
    rmap : RegisterMap
        What the window holds.
    """

    name: str
    base: int
    rmap: RegisterMap

    @property
    def addr_width(self) -> int:
        """Word-address width of the window (its span is ``4 << addr_width`` bytes)."""
        return max(self.rmap.addr_width, 1)

    @property
    def span(self) -> int:
        return WORD_BYTES << self.addr_width


@dataclass(frozen=True)
class ChipAddressMap:
    """Every window of the chip bus and the bus width that holds them."""

    regions: tuple
    addr_width: int

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(f"no region {name!r}; regions: {', '.join(r.name for r in self.regions)}")

    def tile_base(self, tile: int) -> int:
        return self.region(f"tile{tile}").base

    @property
    def windows(self) -> list[tuple[str, int, int]]:
        """``(name, base, word-address width)`` for :class:`~neurophase.rtl.wishbone_decoder.WishboneDecoder`."""
        return [(r.name, r.base, r.addr_width) for r in self.regions]


def chip_address_map(cfg) -> ChipAddressMap:
    """Place the chip registers at 0, then the memories and the tiles (largest first) on one bus."""
    maps = {"chip": chip_register_map(cfg), **memory_maps(cfg)}
    tile_map = chip_tile_register_map(cfg)
    maps.update({f"tile{t}": tile_map for t in range(cfg.tile.count)})
    order = ["chip"] + sorted((n for n in maps if n != "chip"), key=lambda name: -(WORD_BYTES << max(maps[name].addr_width, 1)))
    regions, cursor = [], 0
    for name in order:
        span = WORD_BYTES << max(maps[name].addr_width, 1)
        base = -(-cursor // span) * span
        regions.append(Region(name, base, maps[name]))
        cursor = base + span
    addr_width = max((cursor - 1).bit_length() - 2, 1)
    regions.sort(key=lambda r: r.base)
    return ChipAddressMap(tuple(regions), addr_width)
