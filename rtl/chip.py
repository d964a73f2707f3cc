"""Chip top: ``tile.count`` tiles, the activation, program and parameter memories, and the
layer sequencer behind one Wishbone bus."""

from amaranth.hdl import ClockSignal, Instance, Module, ResetInserter, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from neurophase.chip_regmap import chip_address_map, chip_register_map
from neurophase.config import ChipConfig
from neurophase.models.chip_isa import INSTRUCTION_BITS, WORDS_PER_INSTRUCTION
from neurophase.rtl.command_guard import CommandGuard
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.memory_window import MemoryWindow
from neurophase.rtl.sequencer import LayerSequencer
from neurophase.rtl.tile import Tile
from neurophase.rtl.wishbone import WishboneSignature
from neurophase.rtl.wishbone_buffer import WishboneBuffer
from neurophase.rtl.wishbone_decoder import WishboneDecoder

__all__ = ["Chip", "row_drive_shape", "TILE_MODULE", "tile_instance_ports"]

#: Verilog module name of the tile on the chip; the chip instantiates it ``tile.count`` times.
TILE_MODULE = "neurophase_chip_tile"


def tile_instance_ports(signature: wiring.Signature, interface) -> dict:
    """``Instance`` keyword arguments binding ``interface`` (created from the tile's
    signature) to the ports Amaranth gives the generated tile module (``a__b`` per path)."""
    ports = {}
    for path, member, value in signature.flatten(interface):
        name = "__".join(str(part) for part in path)
        ports[("i_" if member.flow == In else "o_") + name] = value
    return ports


def row_drive_shape(cfg: ChipConfig):
    """What the row drivers present per row: one bit of the bit-plane (bit-serial) or the
    signed input as a pulse width (pulse-width)."""
    return unsigned(1) if cfg.input.mode == "bit-serial" else signed(cfg.input.bits)


class Chip(wiring.Component):
    """The chip's digital side: every tile's periphery (one :class:`Tile` module,
    ``tile.count`` instances), the memories and the :class:`LayerSequencer`.

    The tile is generated once as the Verilog module :data:`TILE_MODULE` (from
    ``Tile(cfg, on_chip=True)``) and instantiated here ``tile.count`` times, so a chip of
    144 tiles costs one tile's generation. The analog arrays stay outside: tile ``t`` requests conversions on ``adc[t]`` and the
    row drivers of the selected tile ``row_tile`` present ``row_drive`` for the conversion in
    flight (bit-serial: bit ``adc[row_tile].plane`` of every row's input; pulse-width: the
    inputs themselves); rows outside the running block present 0. One tile converts at a
    time. The bus (:func:`~neurophase.chip_regmap.chip_address_map`) reaches the chip
    registers, the memories (only while the sequencer is idle) and every tile's registers
    (a tile's ``CTRL.start`` is refused with ``err``: the sequencer owns the tiles' starts).
    Accesses enter through a :class:`WishboneBuffer` and reach each tile through another,
    so no combinational path runs from the bus master across the die into a tile's
    registers; each buffer adds two cycles to an access.

    Parameters
    ----------
    cfg : ChipConfig

    Members
    -------
    bus : In(WishboneSignature(address map width))
    irq : Out(1)
        The chip's or any tile's interrupt.
    adc : Out(AdcPortSignature).array(tile.count)
    row_drive : Out(ArrayLayout(row_drive_shape(cfg), tile.rows))
    row_tile : Out(range(tile.count))
    row_values : Out(ArrayLayout(signed(input.bits), tile.rows))
        The row buffer the drivers present (test and debug access).
    tag_pc, tag_position : Out(16), Out(20)
        BLOCK entry and output position of the MVM in flight.
    busy : Out(1)
        The sequencer runs a program.

    Other Parameters
    ----------------
    adc_codes_io : sequence of IOPort, optional
        For Verilog generation of a large chip: tile ``t``'s instance takes its ADC codes
        straight from the top-level port ``adc_codes_io[t]`` instead of ``adc[t].codes``
        (an Amaranth top module takes at most 65534 input bits of signals; 144 tiles of
        256 columns have 294912 code bits). :func:`neurophase.generate.convert_chip` uses it.
    """

    def __init__(self, cfg: ChipConfig, *, adc_codes_io=None):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        if adc_codes_io is not None and len(adc_codes_io) != cfg.tile.count:
            raise ValueError(f"adc_codes_io must have one IO port per tile ({cfg.tile.count}), "
                             f"not {len(adc_codes_io)}")
        self.cfg = cfg
        self.adc_codes_io = adc_codes_io
        self.address_map = chip_address_map(cfg)
        self.regmap = chip_register_map(cfg)
        tile = Tile(cfg, on_chip=True)
        tile._MustUse__silence = True
        self.tile_regmap = tile.regmap
        self.tile_signature = tile.signature
        super().__init__({
            "bus": In(WishboneSignature(self.address_map.addr_width)),
            "irq": Out(1),
            "adc": Out(tile.adc.signature).array(cfg.tile.count),
            "row_drive": Out(data.ArrayLayout(row_drive_shape(cfg), cfg.tile.rows)),
            "row_tile": Out(range(max(cfg.tile.count, 2))),
            "row_values": Out(data.ArrayLayout(signed(cfg.input.bits), cfg.tile.rows)),
            "tag_pc": Out(16),
            "tag_position": Out(20),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.bus_buffer = bus_buffer = WishboneBuffer(self.address_map.addr_width)
        m.submodules.decoder = decoder = WishboneDecoder(self.address_map.addr_width, self.address_map.windows)
        wiring.connect(m, wiring.flipped(self.bus), bus_buffer.upstream)
        wiring.connect(m, bus_buffer.downstream, decoder.bus)
        m.submodules.sequencer = seq = LayerSequencer(self.cfg)
        m.submodules.bank = bank = CsrBank(self.regmap)
        wiring.connect(m, decoder.chip_bus, bank.bus)
        self._registers(m, bank, seq)
        self._memories(m, decoder, seq)
        tiles = self._tiles(m, decoder, seq)
        m.d.comb += [
            self.irq.eq(bank.irq | _any([t.irq for t in tiles])),
            self.tag_pc.eq(seq.tag_pc),
            self.tag_position.eq(seq.tag_position),
            self.busy.eq(seq.busy),
            self.row_tile.eq(seq.tile_sel),
            self.row_values.eq(seq.rows),
        ]
        self._row_drivers(m, seq)
        return m

    def _registers(self, m, bank, seq) -> None:
        m.d.comb += [
            seq.start.eq(bank.ctrl_start), seq.abort.eq(bank.ctrl_abort), seq.soft_reset.eq(bank.ctrl_soft_reset),
            seq.entry.eq(bank.entry_pc), seq.stats_en.eq(bank.ctrl_stats_en),
            bank.status_busy.eq(seq.busy), bank.status_done_set.eq(seq.done), bank.status_error_set.eq(seq.error),
            bank.status_sat_psum_set.eq(seq.sat_psum), bank.status_sat_batch_norm_set.eq(seq.sat_batch_norm),
            bank.error_code.eq(seq.error_code), bank.error_tile.eq(seq.error_tile), bank.error_pc.eq(seq.error_pc),
            bank.pc_pc.eq(seq.pc), bank.cycles_count.eq(seq.cycles), bank.runs_count.eq(seq.runs),
            bank.mvms_count.eq(seq.mvms),
        ]

    def _memories(self, m, decoder, seq) -> None:
        cfg, seq_cfg, dp = self.cfg, self.cfg.sequencer, self.cfg.datapath
        amap = self.address_map
        width = lambda name: amap.region(name).addr_width  # noqa: E731
        m.submodules.program = program = MemoryWindow(seq_cfg.program_words, 32, WORDS_PER_INSTRUCTION,
                                                      addr_width=width("program"))
        m.submodules.activations = act = MemoryWindow(seq_cfg.activation_words, cfg.input.bits, signed=True,
                                                      addr_width=width("activations"))
        m.submodules.bn_scale = scale = MemoryWindow(seq_cfg.param_words, dp.bn_scale_bits, signed=True,
                                                     addr_width=width("bn_scale"))
        m.submodules.bn_bias = bias = MemoryWindow(seq_cfg.param_words, dp.bn_bias_bits, signed=True,
                                                   addr_width=width("bn_bias"))
        stats = {}
        for name in ("psum_sum", "psum_squares", "psum_abs"):
            stats[name] = m.submodules[name] = MemoryWindow(seq_cfg.param_words, 32, 2, signed=False,
                                                            addr_width=width(name))
            m.d.comb += [stats[name].raddr.eq(seq.param_addr), stats[name].waddr.eq(seq.stats_waddr),
                         stats[name].we.eq(seq.stats_we)]
        m.d.comb += [
            seq.stats_sum.eq(stats["psum_sum"].rdata.as_signed()), stats["psum_sum"].wdata.eq(seq.stats_sum_w),
            seq.stats_squares.eq(stats["psum_squares"].rdata), stats["psum_squares"].wdata.eq(seq.stats_squares_w),
            seq.stats_abs.eq(stats["psum_abs"].rdata), stats["psum_abs"].wdata.eq(seq.stats_abs_w),
        ]
        windows = [("program", program), ("activations", act), ("bn_scale", scale), ("bn_bias", bias),
                   *stats.items()]
        for name, window in windows:
            wiring.connect(m, getattr(decoder, f"{name}_bus"), window.bus)
            m.d.comb += window.locked.eq(seq.owns_memories)
        assert program.words * program.width == INSTRUCTION_BITS
        m.d.comb += [
            program.raddr.eq(seq.prog_addr), seq.prog_data.eq(program.rdata),
            act.raddr.eq(seq.act_raddr), seq.act_rdata.eq(act.rdata.as_signed()),
            act.waddr.eq(seq.act_waddr), act.wdata.eq(seq.act_wdata), act.we.eq(seq.act_we),
            scale.raddr.eq(seq.param_addr), bias.raddr.eq(seq.param_addr),
            seq.scale_data.eq(scale.rdata.as_signed()), seq.bias_data.eq(bias.rdata.as_signed()),
        ]

    def _tiles(self, m, decoder, seq) -> list:
        cfg = self.cfg
        tiles = []
        timeouts = []
        merged = self._merged_tile_output(m, seq)
        # the start leaves the sequencer's state logic through a register beside it
        start = Signal()
        m.d.sync += start.eq(seq.tile_start)
        start_field = self.tile_regmap.register("CTRL").field("start")
        for t in range(cfg.tile.count):
            tile = self.tile_signature.create(path=(f"tile{t}",))
            ports = tile_instance_ports(self.tile_signature, tile)
            if self.adc_codes_io is not None:
                ports["i_adc__codes"] = self.adc_codes_io[t]
            m.submodules[f"tile{t}"] = Instance(TILE_MODULE, i_clk=ClockSignal(), i_rst=ResetSignal(), **ports)
            guard = CommandGuard(self.tile_regmap.addr_width, self.tile_regmap.address("CTRL") >> 2, start_field.offset)
            m.submodules[f"tile{t}_guard"] = guard
            # the bus crosses the die to each tile through a register each way
            m.submodules[f"tile{t}_bus_buffer"] = buffer = WishboneBuffer(self.tile_regmap.addr_width)
            wiring.connect(m, getattr(decoder, f"tile{t}_bus"), guard.upstream)
            wiring.connect(m, guard.downstream, buffer.upstream)
            wiring.connect(m, buffer.downstream, tile.bus)
            self._connect_adc(m, self.adc[t], tile.adc)
            selected = seq.tile_sel == t
            m.d.comb += guard.block.eq(1)
            # registered beside each tile: the strobes cross the die to every tile (the abort
            # is a register in the sequencer; the start is a cycle later than it was issued)
            m.d.sync += [tile.seq_start.eq(start & selected), tile.seq_abort.eq(seq.tile_abort)]
            # and the tile's output crosses a two-entry FIFO beside it (emptied by an abort),
            # then the one beside the sequencer: no handshake and no selection runs from the
            # tiles into the sequencer's state in one cycle
            output = SyncFIFO(width=len(tile.o_stream.payload.as_value()), depth=2)
            m.submodules[f"tile{t}_output"] = ResetInserter(tile.seq_abort)(output)
            m.d.comb += [output.w_data.eq(tile.o_stream.payload), output.w_en.eq(tile.o_stream.valid),
                         tile.o_stream.ready.eq(output.w_rdy), output.r_en.eq(~selected | merged.w_rdy)]
            with m.If(selected):
                m.d.comb += [merged.w_en.eq(output.r_rdy), merged.w_data.eq(output.r_data)]
            timeouts.append(tile.timeout)
            tiles.append(tile)
        m.d.comb += seq.tile_timeout.eq(_any(timeouts))
        return tiles

    def _merged_tile_output(self, m, seq) -> SyncFIFO:
        """The running tile's beats on their way into the sequencer: a two-entry FIFO beside
        it, emptied in the abort's cycle and the next (the tiles' own FIFOs empty a cycle
        later than this one, so a beat can still leave them in that cycle)."""
        stream_in = seq.tile_stream
        merged = SyncFIFO(width=len(stream_in.payload.as_value()), depth=2)
        abort_seen = Signal()
        m.d.sync += abort_seen.eq(seq.tile_abort)
        m.submodules.tile_output = ResetInserter(seq.tile_abort | abort_seen)(merged)
        m.d.comb += [stream_in.valid.eq(merged.r_rdy), stream_in.payload.eq(merged.r_data),
                     merged.r_en.eq(stream_in.ready)]
        return merged

    def _connect_adc(self, m, chip_port, tile_port) -> None:
        """The tile's ADC port to the chip's; the codes too unless they come from ``adc_codes_io``."""
        if self.adc_codes_io is None:
            wiring.connect(m, wiring.flipped(chip_port), tile_port)
            return
        for name, member in tile_port.signature.members.items():
            if name == "codes":
                continue
            outer, inner = getattr(chip_port, name), getattr(tile_port, name)
            m.d.comb += outer.eq(inner) if member.flow == Out else inner.eq(outer)

    def _row_drivers(self, m, seq) -> None:
        cfg = self.cfg
        if cfg.input.mode != "bit-serial":
            m.d.comb += self.row_drive.eq(seq.rows)
            return
        plane = Signal(range(max(cfg.input.planes, 2)))
        for t in range(cfg.tile.count):
            with m.If(seq.tile_sel == t):
                m.d.comb += plane.eq(self.adc[t].plane)
        for r in range(cfg.tile.rows):
            m.d.comb += self.row_drive[r].eq(seq.rows[r].bit_select(plane, 1))


def _any(signals):
    result = 0
    for s in signals:
        result = result | s
    return result
