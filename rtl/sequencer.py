"""Layer sequencer: runs a compiled network from the program memory, one start per inference."""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.models.chip_isa import INSTRUCTION_BITS, OPCODE_BITS, RECIPROCAL_BITS, Opcode, operand_layout
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.rtl.saturation import saturate_signed, saturate_to_width

__all__ = ["LayerSequencer", "ErrorCode"]

ADDRESS_BITS = 24   # activation address arithmetic (the memory holds at most 2**20 entries)
STATS_BITS = 64     # saturating statistics accumulators


class ErrorCode:
    """``ERROR.code`` values (the chip register map documents them)."""

    INVALID = 1
    ADDRESS = 2
    TIMEOUT = 3
    ABORTED = 4
    BAD_BLOCK = 5
    PC_RANGE = 6
    PARAM_RANGE = 7


class LayerSequencer(wiring.Component):
    """Executes the instructions of :mod:`neurophase.models.chip_isa` until ``END``.

    ``start`` (while idle) runs the program from ``entry``. An ``MVM`` gathers each block's
    im2col inputs from the activation memory into the row buffer ``rows`` (addresses,
    padding and strides generated here), starts the block's tile, adds the tile's output
    columns into the partial-sum buffer (saturating to the instruction's ``psum_bits``)
    and, after the last block of an output position, writes every output through the
    batch-norm / ReLU / requantisation arithmetic to the activation memory. Pooling,
    residual add and ReLU instructions work on the activation memory directly.

    Any fault stops the program with ``ERROR.code`` (:class:`ErrorCode`), its pc and tile,
    aborts the tile in flight and leaves the sequencer idle: an unknown opcode, an address
    beyond a memory, a block outside its tile, an ADC timeout, ``abort``. Nothing waits
    without a bound: a tile that never answers times out in its ADC interface.

    Parameters
    ----------
    cfg : ChipConfig
        Sizes the memories' ports, the row buffer, the partial-sum buffer and the tile count.

    Members
    -------
    start, abort, soft_reset : In(1)
        Strobes from the chip registers.
    entry : In(16)
        First instruction.
    busy : Out(1)
    done, error, sat_psum, sat_batch_norm : Out(1)
        Strobes: END reached; the program stopped with an error; a value clipped.
    error_code : Out(4); error_tile : Out(12); error_pc, pc : Out(16)
    cycles, mvms, runs : Out(32)
        Cycles and tile MVMs of the last program; programs completed.
    prog_addr : Out(range(program_words)); prog_data : In(256)
        Program memory read port (data the cycle after the address).
    act_raddr : Out(20); act_rdata : In(signed(input.bits))
        Activation memory read port (data the cycle after the address).
    act_waddr : Out(20); act_wdata : Out(signed(input.bits)); act_we : Out(1)
        Activation memory write port.
    param_addr : Out(16); scale_data, bias_data : In(signed)
        Batch-norm parameter read port (data the cycle after the address).
    rows : Out(ArrayLayout(signed(input.bits), tile.rows))
        Row buffer: the values the row drivers of the selected tile present.
    tile_sel : Out(range(tile.count)); tile_start, tile_abort : Out(1); tile_timeout : In(1)
        Selected tile and its strobes.
    tile_stream : In(stream.Signature(column_values_layout(accumulator_bits, lanes)))
        The selected tile's output.
    tag_pc, tag_position : Out(16), Out(20)
        BLOCK entry and output position of the MVM in flight (for observers).
    stats_en : In(1)
        While high, every batch-norm input y of output n is added into the statistics
        entry ``param_base + n``: sum of y, of y squared, of |y| (64-bit, saturating).
    stats_sum, stats_squares, stats_abs : In
        The statistics entry at ``param_addr`` (the cycle after, like the parameters).
    stats_waddr, stats_we, stats_sum_w, stats_squares_w, stats_abs_w : Out
        The statistics write port.
    """

    def __init__(self, cfg: ChipConfig):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        self.cfg = cfg
        seq, dp = cfg.sequencer, cfg.datapath
        self.beat_layout = column_values_layout(cfg.accumulator_bits, dp.lanes)
        super().__init__({
            "start": In(1), "abort": In(1), "soft_reset": In(1), "entry": In(16),
            "busy": Out(1), "done": Out(1), "error": Out(1), "sat_psum": Out(1), "sat_batch_norm": Out(1),
            "error_code": Out(4), "error_tile": Out(12), "error_pc": Out(16), "pc": Out(16),
            "cycles": Out(32), "mvms": Out(32), "runs": Out(32),
            "prog_addr": Out(range(max(seq.program_words, 2))), "prog_data": In(INSTRUCTION_BITS),
            "act_raddr": Out(20), "act_rdata": In(signed(cfg.input.bits)),
            "act_waddr": Out(20), "act_wdata": Out(signed(cfg.input.bits)), "act_we": Out(1),
            "param_addr": Out(16), "scale_data": In(signed(dp.bn_scale_bits)), "bias_data": In(signed(dp.bn_bias_bits)),
            "rows": Out(data.ArrayLayout(signed(cfg.input.bits), cfg.tile.rows)),
            "tile_sel": Out(range(max(cfg.tile.count, 2))), "tile_start": Out(1), "tile_abort": Out(1),
            "tile_timeout": In(1),
            "tile_stream": In(stream.Signature(self.beat_layout)),
            "tag_pc": Out(16), "tag_position": Out(20),
            "stats_en": In(1),
            "stats_sum": In(signed(STATS_BITS)), "stats_squares": In(STATS_BITS), "stats_abs": In(STATS_BITS),
            "stats_waddr": Out(16), "stats_we": Out(1),
            "stats_sum_w": Out(signed(STATS_BITS)), "stats_squares_w": Out(STATS_BITS), "stats_abs_w": Out(STATS_BITS),
        })

    # -- helpers --------------------------------------------------------------------
    def _operand(self, word, opcode: Opcode, name: str):
        offset, width = operand_layout(opcode)[name]
        return word[offset:offset + width]

    def elaborate(self, platform):
        m = Module()
        cfg, seq = self.cfg, self.cfg.sequencer
        A = cfg.datapath.activation_bits
        psum_bits = cfg.psum_bits

        instr = Signal(INSTRUCTION_BITS)
        block = Signal(INSTRUCTION_BITS)
        op = lambda name: self._operand(instr, Opcode.MVM, name)  # noqa: E731 (MVM and POOL share the shape)
        blk = lambda name: self._operand(block, Opcode.BLOCK, name)  # noqa: E731
        opcode = instr[:OPCODE_BITS]

        pc = Signal(17)
        position = Signal(20)
        oy, ox = Signal(10), Signal(10)
        block_no = Signal(8)
        m.d.comb += [self.pc.eq(pc), self.tag_position.eq(position)]

        # shape arithmetic shared by MVM gathers and pooling windows
        hw = Signal(20)
        out_hw = Signal(20)
        base_y = Signal(signed(16))
        base_x = Signal(signed(16))
        m.d.comb += [
            hw.eq(op("in_h") * op("in_w")),
            out_hw.eq(op("out_h") * op("out_w")),
            base_y.eq(oy * op("stride_h") - op("pad_top")),
            base_x.eq(ox * op("stride_w") - op("pad_left")),
        ]
        channel, ky, kx = Signal(16), Signal(4), Signal(4)
        iy, ix = Signal(signed(17)), Signal(signed(17))
        inside = Signal()
        window_addr = Signal(signed(ADDRESS_BITS + 16))
        m.d.comb += [
            iy.eq(base_y + ky),
            ix.eq(base_x + kx),
            inside.eq((iy >= 0) & (iy < op("in_h")) & (ix >= 0) & (ix < op("in_w"))),
            window_addr.eq(op("in_base") + channel * hw + iy * op("in_w") + ix),
        ]

        # memories and buffers local to the sequencer
        m.submodules.psum = psum_mem = Memory(shape=signed(psum_bits), depth=seq.psum_words, init=[])
        psum_rd = psum_mem.read_port(domain="comb")
        psum_wr = psum_mem.write_port()
        rows = Signal.like(self.rows)
        m.d.comb += self.rows.eq(rows)

        # error bookkeeping
        fail = Signal()
        fail_code = Signal(4)
        fail_tile = Signal(12)
        fail_at_block = Signal()
        tile = Signal(range(max(cfg.tile.count, 2)))
        m.d.comb += [self.tile_sel.eq(tile), self.tag_pc.eq(pc + 1 + block_no)]

        # counters
        full = 2**32 - 1  # the counters saturate
        with m.If(self.busy & (self.cycles != full)):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.tile_start & (self.mvms != full)):
            m.d.sync += self.mvms.eq(self.mvms + 1)

        self._fsm(m, instr, block, op, blk, opcode, pc, position, oy, ox, block_no, hw, out_hw, channel, ky, kx,
                  inside, window_addr, psum_rd, psum_wr, rows, fail, fail_code, fail_tile, fail_at_block, tile, A,
                  psum_bits)

        # stop on a fault, an abort or a soft reset
        stop = Signal()
        m.d.comb += stop.eq(self.busy & (fail | self.abort))
        with m.If(self.soft_reset):
            m.d.sync += [self.error_code.eq(0), self.error_tile.eq(0), self.error_pc.eq(0), self.cycles.eq(0),
                         self.mvms.eq(0), self.runs.eq(0)]
        with m.Elif(stop):
            m.d.sync += [self.error_code.eq(Mux(fail, fail_code, ErrorCode.ABORTED)),
                         self.error_tile.eq(Mux(fail, fail_tile, 0)),
                         self.error_pc.eq(Mux(fail & fail_at_block, pc + 1 + block_no, pc))]
        m.d.comb += [
            self.error.eq(stop & ~self.soft_reset),
            self.tile_abort.eq(self.abort | self.soft_reset | fail),
        ]
        return m

    def _fsm(self, m, instr, block, op, blk, opcode, pc, position, oy, ox, block_no, hw, out_hw, channel, ky, kx,
             inside, window_addr, psum_rd, psum_wr, rows, fail, fail_code, fail_tile, fail_at_block, tile, A,
             psum_bits):
        cfg, seq = self.cfg, self.cfg.sequencer
        lanes = cfg.datapath.lanes
        act_words = seq.activation_words

        def error(code, tile_index=0, at_block=False):
            """Stop with ``code``; ``at_block``: report the BLOCK entry's pc, not the MVM's."""
            m.d.comb += [fail.eq(1), fail_code.eq(code), fail_tile.eq(tile_index), fail_at_block.eq(at_block)]

        def check_block_read(address):
            bad = Signal(name="gather_address_bad")
            m.d.comb += bad.eq((address < 0) | (address >= act_words))
            with m.If(bad):
                error(ErrorCode.ADDRESS, at_block=True)
            return ~bad

        def check_act(address):
            bad = Signal(name="act_address_bad")
            m.d.comb += bad.eq((address < 0) | (address >= act_words))
            with m.If(bad):
                error(ErrorCode.ADDRESS)
            return ~bad

        # gather pipeline: the row written one cycle after its read was issued
        gather_valid = Signal()
        gather_pad = Signal()
        gather_row = Signal(range(cfg.tile.rows + 1))
        with m.If(gather_valid):
            m.d.sync += rows[gather_row].eq(Mux(gather_pad, 0, self.act_rdata))
        m.d.sync += gather_valid.eq(0)

        row_index = Signal(16)
        element = Signal(20)
        beat = Signal(self.beat_layout)
        beat_full = Signal()
        lane = Signal(range(max(lanes, 2)))
        group = Signal(16)
        pool_acc = Signal(signed(24))
        pool_valid = Signal()
        pool_pad = Signal()
        operand_a = Signal(signed(cfg.input.bits))
        bn_valid = Signal()
        bn_output = Signal(16)

        stopping = Signal()
        m.d.comb += stopping.eq(fail | self.abort | self.soft_reset)

        with m.FSM(init="IDLE") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                m.d.comb += self.tile_stream.ready.eq(1)
                with m.If(self.start & ~self.soft_reset & ~self.abort):
                    m.d.sync += [pc.eq(self.entry), self.cycles.eq(0), self.mvms.eq(0), self.error_code.eq(0),
                                 self.error_tile.eq(0), self.error_pc.eq(0)]
                    m.next = "FETCH"

            with m.State("FETCH"):
                with m.If(pc >= seq.program_words):
                    error(ErrorCode.PC_RANGE)
                m.d.comb += self.prog_addr.eq(pc)
                with m.If(~stopping):
                    m.next = "DECODE"
                self._leave_if(m, stopping)

            with m.State("DECODE"):
                m.d.sync += [instr.eq(self.prog_data), oy.eq(0), ox.eq(0), position.eq(0), block_no.eq(0),
                             channel.eq(0), element.eq(0)]
                m.next = "DISPATCH"
                self._leave_if(m, stopping)

            with m.State("DISPATCH"):
                zero_shape = ((op("channels") == 0) | (op("kernel_h") == 0) | (op("kernel_w") == 0)
                              | (op("stride_h") == 0) | (op("stride_w") == 0) | (op("out_h") == 0) | (op("out_w") == 0))
                add_length = self._operand(instr, Opcode.ADD, "length")
                relu_length = self._operand(instr, Opcode.RELU, "length")
                with m.Switch(opcode):
                    with m.Case(Opcode.MVM):
                        bad_width = (op("psum_bits") < 2) | (op("psum_bits") > psum_bits)
                        with m.If(zero_shape | (op("outputs") == 0) | (op("outputs") > seq.psum_words) | bad_width):
                            error(ErrorCode.INVALID)
                        with m.Elif(op("param_base") + op("outputs") > seq.param_words):
                            error(ErrorCode.PARAM_RANGE)
                        with m.Elif(op("blocks") == 0):
                            error(ErrorCode.INVALID)
                        with m.Else():
                            m.next = "BLOCK_FETCH"
                    with m.Case(Opcode.POOL_MAX, Opcode.POOL_AVG):
                        with m.If(zero_shape):
                            error(ErrorCode.INVALID)
                        with m.Else():
                            m.next = "POOL_INIT"
                    with m.Case(Opcode.ADD, Opcode.RELU):
                        with m.If(Mux(opcode == Opcode.ADD, add_length, relu_length) == 0):
                            error(ErrorCode.INVALID)
                        with m.Else():
                            m.next = "ELT_READ_A"
                    with m.Case(Opcode.END):
                        m.d.comb += self.done.eq(~stopping)
                        with m.If(~stopping):
                            m.d.sync += self.runs.eq(self.runs + (self.runs != 2**32 - 1))
                            m.next = "IDLE"
                    with m.Default():
                        error(ErrorCode.INVALID)
                self._leave_if(m, stopping)

            # -- MVM ---------------------------------------------------------------------

            with m.State("BLOCK_FETCH"):
                address = Signal(18)
                m.d.comb += address.eq(pc + 1 + block_no)
                with m.If(address >= seq.program_words):
                    error(ErrorCode.PC_RANGE, at_block=True)
                m.d.comb += self.prog_addr.eq(address)
                with m.If(~stopping):
                    m.next = "BLOCK_DECODE"
                self._leave_if(m, stopping)

            with m.State("BLOCK_DECODE"):
                m.d.sync += block.eq(self.prog_data)
                m.next = "BLOCK_CHECK"
                self._leave_if(m, stopping)

            with m.State("BLOCK_CHECK"):
                bad = ((blk("tile") >= cfg.tile.count) | (blk("rows") == 0) | (blk("cols") == 0)
                       | (blk("tile_row") + blk("rows") > cfg.tile.rows)
                       | (blk("tile_col") + blk("cols") > cfg.tile.cols)
                       | (blk("n_start") + blk("cols") > op("outputs")))
                with m.If(block[:OPCODE_BITS] != Opcode.BLOCK):
                    error(ErrorCode.INVALID, at_block=True)
                with m.Elif(bad):
                    error(ErrorCode.BAD_BLOCK, blk("tile"), at_block=True)
                with m.Else():
                    m.d.sync += [tile.eq(blk("tile")), row_index.eq(0), channel.eq(blk("c0")), ky.eq(blk("ky0")),
                                 kx.eq(blk("kx0")), rows.eq(0)]
                    m.next = "GATHER"
                self._leave_if(m, stopping)

            with m.State("GATHER"):
                with m.If(row_index < blk("rows")):
                    ok = Signal()
                    m.d.comb += ok.eq(1)
                    with m.If(inside):
                        m.d.comb += ok.eq(check_block_read(window_addr))
                        m.d.comb += self.act_raddr.eq(window_addr)
                    m.d.sync += [gather_valid.eq(ok), gather_pad.eq(~inside), gather_row.eq(blk("tile_row") + row_index),
                                 row_index.eq(row_index + 1)]
                    self._step(m, kx, op("kernel_w"), ky, op("kernel_h"), channel)
                with m.Else():
                    m.next = "TILE_START"   # the last row is written this cycle
                self._leave_if(m, stopping)

            with m.State("TILE_START"):
                m.d.comb += self.tile_start.eq(~stopping)
                m.d.sync += [group.eq(0), beat_full.eq(0)]
                with m.If(~stopping):
                    m.next = "TILE_RUN"
                self._leave_if(m, stopping)

            with m.State("TILE_RUN"):
                self._consume_tile(m, blk, beat, beat_full, lane, group, psum_rd, psum_wr, block_no, op, error,
                                   stopping, tile, lanes, psum_bits)
                self._leave_if(m, stopping)

            with m.State("BATCH_NORM"):
                self._batch_norm(m, op, blk, position, oy, ox, out_hw, psum_rd, bn_valid, bn_output, error, check_act,
                                 stopping, pc, A, psum_bits)
                self._leave_if(m, stopping)

            # -- pooling -------------------------------------------------------------------

            with m.State("POOL_INIT"):
                is_max = opcode == Opcode.POOL_MAX
                m.d.sync += [pool_acc.eq(Mux(is_max, -(1 << (A - 1)), 0)), ky.eq(0), kx.eq(0), pool_valid.eq(0)]
                m.next = "POOL_WINDOW"
                self._leave_if(m, stopping)

            with m.State("POOL_WINDOW"):
                self._pool_accumulate(m, opcode, pool_acc, pool_valid, pool_pad, A)
                ok = Signal()
                m.d.comb += ok.eq(1)
                with m.If(inside):
                    m.d.comb += [ok.eq(check_act(window_addr)), self.act_raddr.eq(window_addr)]
                m.d.sync += [pool_valid.eq(ok), pool_pad.eq(~inside)]
                with m.If(self._step(m, kx, op("kernel_w"), ky, op("kernel_h"))):
                    m.next = "POOL_LAST"
                self._leave_if(m, stopping)

            with m.State("POOL_LAST"):
                self._pool_accumulate(m, opcode, pool_acc, pool_valid, pool_pad, A)
                m.d.sync += pool_valid.eq(0)
                m.next = "POOL_WRITE"
                self._leave_if(m, stopping)

            with m.State("POOL_WRITE"):
                self._pool_write(m, instr, opcode, pool_acc, channel, oy, ox, out_hw, check_act, A)
                done = self._step(m, ox, op("out_w"), oy, op("out_h"), channel) & (channel == op("channels") - 1)
                with m.If(~stopping):
                    with m.If(done):
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
                    with m.Else():
                        m.next = "POOL_INIT"
                self._leave_if(m, stopping)

            # -- element-wise --------------------------------------------------------------
            self._elementwise(m, instr, opcode, element, operand_a, check_act, stopping, pc, A)

    def _consume_tile(self, m, blk, beat, beat_full, lane, group, psum_rd, psum_wr, block_no, op, error, stopping,
                      tile, lanes, psum_bits):
        """Take the tile's beats; add each lane inside the block into its partial sum."""
        stream_in = self.tile_stream
        with m.If(self.tile_timeout):
            error(ErrorCode.TIMEOUT, tile)
        col_lo = blk("tile_col")
        col_hi = blk("tile_col") + blk("cols")
        beat_lo = Signal(20)
        m.d.comb += [beat_lo.eq(group * lanes), stream_in.ready.eq(~beat_full)]
        overlaps = (beat_lo < col_hi) & (beat_lo + lanes > col_lo)
        finish = Signal()
        with m.If(stream_in.valid & ~beat_full):
            with m.If(overlaps):
                m.d.sync += [beat.eq(stream_in.payload), beat_full.eq(1), lane.eq(0)]
            with m.Else():
                m.d.sync += group.eq(group + 1)
                m.d.comb += finish.eq(stream_in.payload.last)
        column = Signal(20)
        value = Signal(signed(self.cfg.accumulator_bits))
        m.d.comb += [column.eq(beat_lo + lane), value.eq(beat.data[lane])]
        with m.If(beat_full):
            in_block = (column >= col_lo) & (column < col_hi)
            n = Signal(20)
            total = Signal(signed(psum_bits + 2))
            m.d.comb += [n.eq(blk("n_start") + column - col_lo), psum_rd.addr.eq(n),
                         total.eq(Mux(blk("k_start") == 0, value, psum_rd.data + value))]
            summed, clipped = saturate_to_width(m, total, op("psum_bits"), psum_bits, "psum")
            with m.If(in_block & ~stopping):
                m.d.comb += [psum_wr.addr.eq(n), psum_wr.data.eq(summed), psum_wr.en.eq(1),
                             self.sat_psum.eq(clipped)]
            with m.If(lane == lanes - 1):
                m.d.sync += [beat_full.eq(0), group.eq(group + 1)]
                m.d.comb += finish.eq(beat.last)
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
        with m.If(finish & ~stopping):
            with m.If(block_no + 1 == op("blocks")):
                m.d.sync += block_no.eq(0)
                m.next = "BATCH_NORM"
            with m.Else():
                m.d.sync += block_no.eq(block_no + 1)
                m.next = "BLOCK_FETCH"

    def _batch_norm(self, m, op, blk, position, oy, ox, out_hw, psum_rd, bn_valid, bn_output, error, check_act,
                    stopping, pc, A, psum_bits):
        """Outputs of one position: parameter read in cycle n, arithmetic and write in n+1."""
        cfg = self.cfg
        dp = cfg.datapath
        n_issue = Signal(16)
        with m.If(n_issue < op("outputs")):
            m.d.comb += self.param_addr.eq(op("param_base") + n_issue)
            m.d.sync += [n_issue.eq(n_issue + 1), bn_valid.eq(1), bn_output.eq(n_issue)]
        with m.Else():
            m.d.sync += bn_valid.eq(0)
        m.d.comb += psum_rd.addr.eq(bn_output)
        y = psum_rd.data
        product = Signal(signed(psum_bits + dp.bn_scale_bits + 1))
        m.d.comb += product.eq(y * self.scale_data)
        frac = dp.bn_scale_frac_bits
        scaled = Signal(signed(len(product)))
        m.d.comb += scaled.eq((product + (1 << (frac - 1) if frac else 0)) >> frac)
        biased = Signal(signed(max(len(scaled), dp.bn_bias_bits) + 1))
        m.d.comb += biased.eq(scaled + self.bias_data)
        z, z_clipped = saturate_to_width(m, biased, op("psum_bits"), psum_bits, "bn")
        relu = Signal(signed(psum_bits))
        m.d.comb += relu.eq(Mux(op("relu") & (z < 0), 0, z))
        shift = Signal(range(psum_bits + 1))
        m.d.comb += shift.eq(Mux(op("shift") > op("psum_bits"), op("psum_bits"), op("shift")))
        rounded = Signal(signed(psum_bits + 1))
        m.d.comb += rounded.eq((relu + ((Const(1, psum_bits + 1) << shift) >> 1)) >> shift)
        q, q_clipped = saturate_signed(m, rounded, A, "requant")
        address = Signal(signed(ADDRESS_BITS + 20))
        m.d.comb += address.eq(op("out_base") + bn_output * out_hw + position)
        self._statistics(m, y, op("param_base") + bn_output, bn_valid & self.stats_en & ~stopping)
        with m.If(bn_valid):
            ok = check_act(address)
            m.d.comb += [self.act_waddr.eq(address), self.act_wdata.eq(q), self.act_we.eq(ok & ~stopping),
                         self.sat_batch_norm.eq(z_clipped | q_clipped)]
        last = bn_valid & (bn_output == op("outputs") - 1)
        with m.If(last & ~stopping):
            m.d.sync += [n_issue.eq(0), bn_valid.eq(0), position.eq(position + 1)]
            with m.If(self._step(m, ox, op("out_w"), oy, op("out_h"))):
                m.d.sync += pc.eq(pc + 1 + op("blocks"))
                m.next = "FETCH"
            with m.Else():
                m.next = "BLOCK_FETCH"
        with m.If(stopping):
            m.d.sync += [n_issue.eq(0), bn_valid.eq(0)]

    def _statistics(self, m, y, address, enable) -> None:
        """Add y, y squared and |y| into the statistics entry ``address`` (saturating)."""
        top = (1 << (STATS_BITS - 1)) - 1
        utop = (1 << STATS_BITS) - 1
        total = Signal(signed(STATS_BITS + 2))
        squares = Signal(STATS_BITS + 2)
        magnitude = Signal(STATS_BITS + 2)
        m.d.comb += [
            total.eq(self.stats_sum + y),
            squares.eq(self.stats_squares + y * y),
            magnitude.eq(self.stats_abs + Mux(y < 0, -y, y)),
            self.stats_waddr.eq(address),
            self.stats_we.eq(enable),
            self.stats_sum_w.eq(Mux(total > top, top, Mux(total < -top - 1, -top - 1, total))),
            self.stats_squares_w.eq(Mux(squares > utop, utop, squares)),
            self.stats_abs_w.eq(Mux(magnitude > utop, utop, magnitude)),
        ]

    def _pool_accumulate(self, m, opcode, pool_acc, pool_valid, pool_pad, A):
        pad_value = Mux(opcode == Opcode.POOL_MAX, -(1 << (A - 1)), 0)
        value = Mux(pool_pad, pad_value, self.act_rdata)
        with m.If(pool_valid):
            with m.If(opcode == Opcode.POOL_MAX):
                with m.If(value > pool_acc):
                    m.d.sync += pool_acc.eq(value)
            with m.Else():
                m.d.sync += pool_acc.eq(pool_acc + value)

    def _pool_write(self, m, instr, opcode, pool_acc, channel, oy, ox, out_hw, check_act, A):
        """Write one pooled output: the max, or the window sum times the reciprocal, rounded."""
        op = lambda name: self._operand(instr, Opcode.MVM, name)  # noqa: E731
        reciprocal = self._operand(instr, Opcode.POOL_AVG, "reciprocal")
        product = Signal(signed(len(pool_acc) + RECIPROCAL_BITS + 2))
        m.d.comb += product.eq(pool_acc * reciprocal)
        average, _ = saturate_signed(m, (product + (1 << (RECIPROCAL_BITS - 1))) >> RECIPROCAL_BITS, A, "average")
        address = Signal(signed(ADDRESS_BITS + 20))
        m.d.comb += address.eq(op("out_base") + channel * out_hw + oy * op("out_w") + ox)
        ok = check_act(address)
        m.d.comb += [self.act_waddr.eq(address), self.act_wdata.eq(Mux(opcode == Opcode.POOL_MAX, pool_acc, average)),
                     self.act_we.eq(ok)]

    def _elementwise(self, m, instr, opcode, element, operand_a, check_act, stopping, pc, A):
        """ADD (two reads, one write per element) and RELU (one read, one write)."""
        is_add = opcode == Opcode.ADD
        add = lambda name: self._operand(instr, Opcode.ADD, name)  # noqa: E731
        relu = lambda name: self._operand(instr, Opcode.RELU, name)  # noqa: E731
        length = Mux(is_add, add("length"), relu("length"))
        out_base = Mux(is_add, add("out_base"), relu("out_base"))
        with m.State("ELT_READ_A"):
            address = Signal(signed(ADDRESS_BITS + 2))
            m.d.comb += address.eq(add("in_base") + element)
            check_act(address)
            m.d.comb += self.act_raddr.eq(address)
            with m.If(is_add):
                m.next = "ELT_READ_B"
            with m.Else():
                m.next = "ELT_WRITE"
            self._leave_if(m, stopping)
        with m.State("ELT_READ_B"):
            address = Signal(signed(ADDRESS_BITS + 2))
            m.d.comb += address.eq(add("in_b_base") + element)
            check_act(address)
            m.d.comb += self.act_raddr.eq(address)
            m.d.sync += operand_a.eq(self.act_rdata)
            m.next = "ELT_WRITE"
            self._leave_if(m, stopping)
        with m.State("ELT_WRITE"):
            total, _ = saturate_signed(m, operand_a + self.act_rdata, A, "add")
            rectified = Mux(self.act_rdata < 0, 0, self.act_rdata)
            address = Signal(signed(ADDRESS_BITS + 2))
            m.d.comb += address.eq(out_base + element)
            ok = check_act(address)
            m.d.comb += [self.act_waddr.eq(address), self.act_wdata.eq(Mux(is_add, total, rectified)),
                         self.act_we.eq(ok & ~stopping)]
            m.d.sync += element.eq(element + 1)
            with m.If(element + 1 >= length):
                m.d.sync += pc.eq(pc + 1)
                m.next = "FETCH"
            with m.Else():
                m.next = "ELT_READ_A"
            self._leave_if(m, stopping)

    @staticmethod
    def _step(m, inner, inner_count, outer, outer_count, carry=None):
        """Advance ``inner`` (then ``outer``, then ``carry`` by one) like an odometer; returns
        the condition that both were at their last value (they wrap to 0)."""
        last_inner = inner == inner_count - 1
        last_outer = outer == outer_count - 1
        with m.If(~last_inner):
            m.d.sync += inner.eq(inner + 1)
        with m.Else():
            m.d.sync += inner.eq(0)
            with m.If(~last_outer):
                m.d.sync += outer.eq(outer + 1)
            with m.Else():
                m.d.sync += outer.eq(0)
                if carry is not None:
                    m.d.sync += carry.eq(carry + 1)
        return last_inner & last_outer

    @staticmethod
    def _leave_if(m, stopping):
        """Every state's last word: a fault, an abort or a soft reset makes the sequencer idle."""
        with m.If(stopping):
            m.next = "IDLE"
