"""Layer sequencer: runs a compiled network from the program memory, one start per inference."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.models.chip_isa import INSTRUCTION_BITS, OPCODE_BITS, RECIPROCAL_BITS, Opcode, operand_layout
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.rtl.pipeline import delayed, registered_product
from neurophase.rtl.saturation import saturate_signed

__all__ = ["LayerSequencer", "ErrorCode"]

ADDRESS_BITS = 40   # exact activation addresses: in_base + channel * in_h * in_w + ... needs 37 bits with sign
SETUP_CYCLES = 6    # cycles from a window's channel, offset or position to its registered first address
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
    owns_memories : Out(1)
        ``busy`` registered: the memories' ports are the sequencer's while it is high. A
        program's first cycle (START) reads no memory, so it rises in time.
    done, error, sat_psum, sat_batch_norm : Out(1)
        Strobes: END reached; the program stopped with an error; a value clipped
        (``sat_psum`` registered, the cycle after the partial sum is written).
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
            "busy": Out(1), "owns_memories": Out(1), "done": Out(1), "error": Out(1), "sat_psum": Out(1), "sat_batch_norm": Out(1),
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
        s = SimpleNamespace()
        s.instr = Signal(INSTRUCTION_BITS)
        s.block = Signal(INSTRUCTION_BITS)
        s.op = lambda name: self._operand(s.instr, Opcode.MVM, name)   # MVM and POOL share the shape operands
        s.blk = lambda name: self._operand(s.block, Opcode.BLOCK, name)
        s.opcode = s.instr[:OPCODE_BITS]
        s.is_mvm = s.opcode == Opcode.MVM
        s.pc = Signal(17)
        s.position = Signal(20)
        s.oy, s.ox = Signal(10), Signal(10)
        s.block_no = Signal(8)
        # registered: block_no and the instruction settle many cycles before TILE_DRAIN reads it
        s.last_block = Signal()
        m.d.sync += s.last_block.eq(s.block_no + 1 == s.op("blocks"))
        s.block_pc, s.block_pc_bad, s.pc_bad = Signal(17), Signal(), Signal()   # pc + 1 + block_no; out of range
        # the program memory's address: pc until the instruction is decoded, then block_pc (a
        # register, so the state decode stays off the read path; a read has no side effect)
        s.fetch_block = Signal()
        s.channel, s.ky, s.kx = Signal(16), Signal(4), Signal(4)
        s.tile = Signal(range(max(self.cfg.tile.count, 2)))
        s.fail, s.fail_code, s.fail_tile, s.fail_at_block = Signal(), Signal(4), Signal(12), Signal()
        s.stopping = Signal()
        m.d.comb += [self.pc.eq(s.pc), self.tag_position.eq(s.position), self.tile_sel.eq(s.tile),
                     self.prog_addr.eq(Mux(s.fetch_block, s.block_pc, s.pc)),
                     self.tag_pc.eq(s.block_pc)]
        # registered: they reach every state's next-state logic (a timed-out tile stays silent)
        s.abort, s.soft_reset, s.tile_timeout = Signal(), Signal(), Signal()
        m.d.sync += [s.abort.eq(self.abort), s.soft_reset.eq(self.soft_reset), s.tile_timeout.eq(self.tile_timeout)]
        m.d.comb += s.stopping.eq(s.fail | s.abort | s.soft_reset)
        # `stopping` is late (an OR over every fault) and stops the state machine in its own
        # cycle; the datapath stops a cycle after a fault, on registers (`halted`): what it
        # does in the fault's cycle (a read, a correct write) changes nothing the error reports
        s.stopped, s.halted = Signal(), Signal()
        m.d.sync += s.stopped.eq(s.stopping)
        m.d.comb += s.halted.eq(s.stopped | s.abort | s.soft_reset)
        m.submodules.psum = psum = Memory(shape=signed(self.cfg.psum_bits), depth=self.cfg.sequencer.psum_words,
                                          init=[])
        s.psum_add_rd = psum.read_port(domain="comb")     # the partial-sum adder's
        s.psum_bn_rd = psum.read_port(domain="comb")      # batch norm's
        s.psum_wr = psum.write_port()
        s.rows = Signal.like(self.rows)
        m.d.comb += self.rows.eq(s.rows)

        self._declare(m, s)
        self._shape(m, s)
        self._position_flags(m, s)
        self._window_origin(m, s)
        self._counters(m)
        self._fsm(m, s)
        self._consume_pipeline(m, s)
        self._batch_norm_pipeline(m, s)
        # the parameter memories are read at the pointer in every cycle and state (a read has
        # no side effect): the address goes from a register straight to the memories
        m.d.comb += self.param_addr.eq(s.param_ptr)
        self._stop(m, s)
        # a beat is taken whenever the beat register is free (outside an MVM: dropped)
        m.d.comb += self.tile_stream.ready.eq(~s.beat_full)
        # cleared in the cycle after a stop (the sequencer is idle then)
        with m.If(s.stopped):
            m.d.sync += [s.w_left.eq(0), s.beat_full.eq(0)]
        return m

    def _declare(self, m, s):
        """The registers the stages share (and the defaults of the pipeline strobes)."""
        cfg = self.cfg
        s.beat_lo, s.beat_full, s.lane = Signal(20), Signal(), Signal(range(max(cfg.datapath.lanes, 2)))
        s.overlaps, s.column, s.beat_next = Signal(), Signal(20), Signal(20)
        s.beat_after = Signal(signed(15))   # a beat starting above this column reaches the block
        s.beat = Signal(self.beat_layout)
        s.col_hi, s.n_offset = Signal(14), Signal(signed(18))
        s.c1_valid, s.c1_n, s.c1_value = Signal(), Signal(20), Signal(signed(cfg.accumulator_bits))
        s.c2_valid, s.c2_n, s.c2_total = Signal(), Signal(20), Signal(signed(cfg.psum_bits + 2))
        s.c3_valid, s.c3_n, s.c3_total = Signal(), Signal(20), Signal(signed(cfg.psum_bits + 2))
        s.c3_over, s.c3_under = Signal(), Signal()
        s.n_issue, s.param_ptr = Signal(16), Signal(16)
        s.out_addr = Signal(signed(ADDRESS_BITS))
        s.b1_valid, s.b1_last, s.bn_done = Signal(), Signal(), Signal()
        s.bn_issuing = Signal()
        s.bn_valid = [None, s.b1_valid]   # by stage: see _valid_at
        s.pool_out, s.pool_bad = Signal(signed(ADDRESS_BITS)), Signal()
        s.e_a, s.e_b, s.e_out, s.e_left = Signal(21), Signal(21), Signal(21), Signal(20)
        s.e_a_bad, s.e_b_bad, s.e_out_bad = Signal(), Signal(), Signal()
        m.d.sync += [s.c1_valid.eq(0), s.b1_valid.eq(0)]

    def _counters(self, m):
        full = 2**32 - 1  # the counters saturate
        with m.If(self.busy & (self.cycles != full)):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.tile_start & (self.mvms != full)):
            m.d.sync += self.mvms.eq(self.mvms + 1)

    def _stop(self, m, s):
        """A fault, an abort or a soft reset: record the error, abort the tile."""
        stop = Signal()
        m.d.comb += stop.eq(self.busy & (s.fail | s.abort))
        with m.If(s.soft_reset):
            m.d.sync += [self.error_code.eq(0), self.error_tile.eq(0), self.error_pc.eq(0), self.cycles.eq(0),
                         self.mvms.eq(0), self.runs.eq(0)]
        with m.Elif(stop):
            m.d.sync += [self.error_code.eq(Mux(s.fail, s.fail_code, ErrorCode.ABORTED)),
                         self.error_tile.eq(Mux(s.fail, s.fail_tile, 0)),
                         self.error_pc.eq(Mux(s.fail & s.fail_at_block, s.block_pc, s.pc))]
        m.d.comb += self.error.eq(stop & ~s.soft_reset)
        m.d.sync += self.tile_abort.eq(s.abort | s.soft_reset | s.fail)   # the tile stops a cycle later

    def _outside_program(self, address):
        return address >= self.cfg.sequencer.program_words

    def _jump(self, m, s, address, bad=None):
        """Continue at instruction ``address``; ``bad``: whether it is outside the program
        memory (computed here when not given)."""
        m.d.sync += [s.pc.eq(address), s.pc_bad.eq(self._outside_program(address) if bad is None else bad)]

    def _next_instruction_if(self, m, s, finished, otherwise: str) -> None:
        """On to the next instruction when ``finished``, else to state ``otherwise``."""
        with m.If(finished):
            self._jump(m, s, s.pc_next, s.pc_next_bad)
            m.d.sync += s.fetch_block.eq(0)
            m.next = "FETCH"
        with m.Else():
            m.next = otherwise

    def _next_pc(self, m, s):
        """The instruction after this one (``pc + 1``, after an MVM's blocks ``pc + 1 +
        blocks``) and whether it lies outside the program memory, registered (valid two
        cycles after the instruction is loaded; no instruction ends sooner)."""
        s.pc_next, s.pc_next_bad = Signal(18), Signal()
        m.d.sync += [s.pc_next.eq(s.pc + 1 + Mux(s.is_mvm, s.op("blocks"), 0)),
                     s.pc_next_bad.eq(self._outside_program(s.pc_next))]

    def _first_block(self, m, s, pc):
        m.d.sync += [s.block_no.eq(0), s.block_pc.eq(pc + 1), s.block_pc_bad.eq(self._outside_program(pc + 1))]

    def _error(self, m, s, code, tile_index=0, at_block=False):
        """Stop with ``code``; ``at_block``: report the BLOCK entry's pc, not the MVM's."""
        m.d.comb += [s.fail.eq(1), s.fail_code.eq(code), s.fail_tile.eq(tile_index), s.fail_at_block.eq(at_block)]

    def _outside_memory(self, address):
        address = Value.cast(address)
        beyond = address >= self.cfg.sequencer.activation_words
        return (address < 0) | beyond if address.shape().signed else beyond

    # -- registered functions of the instruction ----------------------------------------
    def _shape(self, m, s):
        """Products and limits of the current instruction, registered (valid one or two
        cycles after ``instr`` changes; the first use is later)."""
        psum_bits, op = self.cfg.psum_bits, s.op
        s.hw, _ = registered_product(m, op("in_h"), op("in_w"), "hw")
        s.out_hw, _ = registered_product(m, op("out_h"), op("out_w"), "out_hw")
        s.window_size, _ = registered_product(m, op("kernel_h"), op("kernel_w"), "window_size")
        s.kernel_w_last, s.kernel_h_last = Signal.like(op("kernel_w")), Signal.like(op("kernel_h"))
        s.outputs_last = Signal.like(op("outputs"))
        m.d.sync += [s.kernel_w_last.eq(op("kernel_w") - 1), s.kernel_h_last.eq(op("kernel_h") - 1),
                     s.outputs_last.eq(op("outputs") - 1)]
        bits = Signal(range(psum_bits + 1))
        m.d.sync += bits.eq(Mux((op("psum_bits") > psum_bits) | (op("psum_bits") == 0), psum_bits, op("psum_bits")))
        s.psum_hi, s.psum_lo = Signal(signed(psum_bits + 1)), Signal(signed(psum_bits + 1))
        s.shift = Signal(range(psum_bits + 1))
        s.shift_half = Signal(psum_bits + 1)
        ones = Cat(*(bits > i + 1 for i in range(psum_bits)), Const(0, 1))   # 2**(bits-1) - 1 without an adder
        m.d.sync += [
            s.psum_hi.eq(ones.as_signed()),
            s.psum_lo.eq((~ones).as_signed()),
            s.shift.eq(Mux(op("shift") > op("psum_bits"), op("psum_bits"), op("shift"))),
            s.shift_half.eq((Const(1, psum_bits + 1) << s.shift) >> 1),
        ]

    def _position_flags(self, m, s):
        """Whether ``ox``, ``oy`` and ``channel`` are at their last values, registered: valid
        one cycle after they change and two after ``instr`` does. Between two position
        steps (one per BATCH_NORM or POOL_WRITE visit) lie at least two cycles, so each
        step reads them valid, and the comparisons stay out of the next-instruction logic."""
        op = s.op
        last = {name: Signal((op(name) - 1).shape(), name=f"{name}_last") for name in ("out_w", "out_h", "channels")}
        s.at_last_x, s.at_last_y, s.at_last_channel = Signal(), Signal(), Signal()
        m.d.sync += [*(last[name].eq(op(name) - 1) for name in last),
                     s.at_last_x.eq(s.ox == last["out_w"]), s.at_last_y.eq(s.oy == last["out_h"]),
                     s.at_last_channel.eq(s.channel == last["channels"])]

    def _row_buffer(self, m, s):
        """The row buffer's writes from registers only, none through the state machine: the
        clear a cycle after BLOCK_DECODE (the block's first gathered row comes later) and
        every gathered row (the window reader serves an MVM only in GATHER)."""
        s.clear_rows, clearing, gathering = Signal(), Signal(), Signal()
        m.d.sync += [clearing.eq(s.clear_rows), gathering.eq(s.is_mvm)]
        with m.If(clearing):
            m.d.sync += s.rows.eq(0)
        with m.Elif(s.v_valid & gathering):
            m.d.sync += s.rows[s.v_tag].eq(s.v_value)

    def _window_origin(self, m, s):
        """The activation address, row and column of a window's first element, computed in
        registered stages from the window's channel and kernel offset (an MVM block's
        ``c0, ky0, kx0``; a pooling output's channel) and the output position's corner
        ``base_y, base_x``: valid :data:`SETUP_CYCLES` cycles after those settle."""
        op = s.op
        s.base_y, s.base_x = Signal(signed(16)), Signal(signed(16))
        channel, ky0, kx0 = Signal(16), Signal(4), Signal(4)   # selected and registered
        m.d.sync += [channel.eq(Mux(s.is_mvm, s.blk("c0"), s.channel)), ky0.eq(Mux(s.is_mvm, s.blk("ky0"), 0)),
                     kx0.eq(Mux(s.is_mvm, s.blk("kx0"), 0))]
        row_offset, lat_row = registered_product(m, s.base_y, op("in_w"), "corner_row")
        corner = Signal(signed(ADDRESS_BITS))
        m.d.sync += corner.eq(row_offset + delayed(m, s.base_x, lat_row, "corner_x"))
        channel_offset, lat_channel = registered_product(m, channel, s.hw, "channel_offset")
        kernel_row, lat_kernel = registered_product(m, ky0, op("in_w"), "kernel_row")
        s.origin_channel = Signal(signed(ADDRESS_BITS))
        m.d.sync += s.origin_channel.eq(op("in_base") + channel_offset + corner)
        kernel_row = delayed(m, kernel_row, lat_channel - lat_kernel + 1, "kernel_row")
        s.origin_row = Signal(signed(ADDRESS_BITS))
        s.origin_addr = Signal(signed(ADDRESS_BITS))
        m.d.sync += [s.origin_row.eq(s.origin_channel + kernel_row),
                     s.origin_addr.eq(s.origin_channel + kernel_row + kx0)]
        s.origin_iy, s.origin_ix = Signal(signed(17)), Signal(signed(17))
        m.d.sync += [s.origin_iy.eq(s.base_y + ky0), s.origin_ix.eq(s.base_x + kx0)]
        assert max(lat_row + 2, 1 + lat_channel + 2) <= SETUP_CYCLES - 1

    # -- the window reader: im2col gathers and pooling windows ----------------------------------
    def _window_reader(self, m, s):
        """Registers and read pipeline shared by gathers and pooling windows.

        Each issue cycle takes the running address ``w_addr`` of element (channel, ky, kx)
        and steps it like an odometer (kx, then ky, then for a gather the channel) with
        additions only. Stage r: the address, whether it lies inside the input and whether
        it is outside the memory, registered; the read is issued. Stage d: the memory
        answers; registered with padding applied into stage v, which the consumer takes.
        """
        s.w_addr, s.w_row, s.w_channel = (Signal(signed(ADDRESS_BITS), name=n) for n in ("w_addr", "w_row", "w_channel"))
        s.w_iy, s.w_ix = Signal(signed(17)), Signal(signed(17))
        s.w_left = Signal(16)
        s.w_tag = Signal(range(self.cfg.tile.rows + 1))
        s.r_valid, s.r_inside, s.r_bad = Signal(), Signal(), Signal()
        s.r_addr = Signal(signed(ADDRESS_BITS))
        s.r_tag = Signal.like(s.w_tag)
        s.d_valid, s.d_pad = Signal(), Signal()
        s.d_tag = Signal.like(s.w_tag)
        s.v_valid = Signal()
        s.v_value = Signal(signed(self.cfg.input.bits))
        s.v_tag = Signal.like(s.w_tag)
        s.window_busy = Signal()
        m.d.comb += s.window_busy.eq((s.w_left != 0) | s.r_valid | s.d_valid | s.v_valid)
        A = self.cfg.datapath.activation_bits
        pad = Mux(s.opcode == Opcode.POOL_MAX, -(1 << (A - 1)), 0)
        read = s.r_valid & s.r_inside & ~s.r_bad
        with m.If(read):
            m.d.comb += self.act_raddr.eq(s.r_addr)
        with m.If(s.r_valid & s.r_inside & s.r_bad & ~s.halted):   # not a read issued in a fault's cycle
            self._error(m, s, ErrorCode.ADDRESS, at_block=s.is_mvm)
        m.d.sync += [s.r_valid.eq(0), s.d_valid.eq(s.r_valid & (read | ~s.r_inside) & ~s.halted),
                     s.d_pad.eq(~s.r_inside), s.d_tag.eq(s.r_tag),
                     s.v_valid.eq(s.d_valid & ~s.halted), s.v_value.eq(Mux(s.d_pad, pad, self.act_rdata)),
                     s.v_tag.eq(s.d_tag)]

    def _window_load(self, m, s, count):
        """Start a window at the registered origin: ``count`` reads."""
        m.d.sync += [s.w_addr.eq(s.origin_addr), s.w_row.eq(s.origin_row), s.w_channel.eq(s.origin_channel),
                     s.w_iy.eq(s.origin_iy), s.w_ix.eq(s.origin_ix), s.w_left.eq(count)]

    def _window_issue(self, m, s):
        """One read of the window (while reads are left)."""
        op = s.op
        with m.If((s.w_left != 0) & ~s.halted):
            m.d.sync += [s.r_valid.eq(1), s.r_addr.eq(s.w_addr), s.r_tag.eq(s.w_tag), s.w_tag.eq(s.w_tag + 1),
                         s.r_inside.eq((s.w_iy >= 0) & (s.w_iy < op("in_h")) & (s.w_ix >= 0) & (s.w_ix < op("in_w"))),
                         s.r_bad.eq(self._outside_memory(s.w_addr)), s.w_left.eq(s.w_left - 1)]
            with m.If(s.kx != s.kernel_w_last):
                m.d.sync += [s.kx.eq(s.kx + 1), s.w_ix.eq(s.w_ix + 1), s.w_addr.eq(s.w_addr + 1)]
            with m.Elif(s.ky != s.kernel_h_last):
                m.d.sync += [s.kx.eq(0), s.ky.eq(s.ky + 1), s.w_ix.eq(s.base_x), s.w_iy.eq(s.w_iy + 1),
                             s.w_row.eq(s.w_row + op("in_w")), s.w_addr.eq(s.w_row + op("in_w"))]
            with m.Elif(s.is_mvm):
                m.d.sync += [s.kx.eq(0), s.ky.eq(0), s.channel.eq(s.channel + 1), s.w_ix.eq(s.base_x),
                             s.w_iy.eq(s.base_y), s.w_channel.eq(s.w_channel + s.hw),
                             s.w_row.eq(s.w_channel + s.hw), s.w_addr.eq(s.w_channel + s.hw)]

    def _step_position(self, m, s, carry_channel=False):
        """Next output position (ox, then oy; then the channel for pooling), the corner
        ``base_y, base_x`` following; returns the condition that it was the last."""
        op = s.op
        last_x, last_y = s.at_last_x, s.at_last_y
        with m.If(~last_x):
            m.d.sync += [s.ox.eq(s.ox + 1), s.base_x.eq(s.base_x + op("stride_w"))]
        with m.Else():
            m.d.sync += [s.ox.eq(0), s.base_x.eq(-op("pad_left"))]
            with m.If(~last_y):
                m.d.sync += [s.oy.eq(s.oy + 1), s.base_y.eq(s.base_y + op("stride_h"))]
            with m.Else():
                m.d.sync += [s.oy.eq(0), s.base_y.eq(-op("pad_top"))]
                if carry_channel:
                    m.d.sync += s.channel.eq(s.channel + 1)
        return last_x & last_y

    # -- the state machine ---------------------------------------------------------------
    def _fsm(self, m, s):
        self._window_reader(m, s)
        self._row_buffer(m, s)
        self._instruction_checks(m, s)
        self._next_pc(m, s)
        self._block_checks(m, s)
        self._pool_registers(m, s)
        s.setup_count = Signal(range(SETUP_CYCLES + 1))
        with m.FSM(init="IDLE") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
            m.d.sync += self.owns_memories.eq(self.busy)
            self._control_states(m, s)
            self._mvm_states(m, s)
            self._pool_states(m, s)
            self._elementwise_states(m, s)

    def _control_states(self, m, s):
        op = s.op
        with m.State("IDLE"):
            with m.If(self.start & ~self.soft_reset & ~self.abort & ~s.soft_reset & ~s.abort):
                self._jump(m, s, self.entry)
                m.d.sync += [self.cycles.eq(0), self.mvms.eq(0), self.error_code.eq(0),
                             self.error_tile.eq(0), self.error_pc.eq(0)]
                m.next = "START"

        with m.State("START"):   # owns_memories rises
            m.d.sync += s.fetch_block.eq(0)
            m.next = "FETCH"
            self._leave_if(m, s)

        with m.State("FETCH"):
            with m.If(s.pc_bad):
                self._error(m, s, ErrorCode.PC_RANGE)
            m.next = "DECODE"
            self._leave_if(m, s)

        with m.State("DECODE"):
            m.d.sync += [s.instr.eq(self.prog_data), s.oy.eq(0), s.ox.eq(0), s.position.eq(0), s.channel.eq(0),
                         s.fetch_block.eq(1)]
            self._first_block(m, s, s.pc)
            m.next = "CHECK"
            self._leave_if(m, s)

        with m.State("CHECK"):   # the operand checks of the new instruction are registered
            m.next = "DISPATCH"
            self._leave_if(m, s)

        with m.State("DISPATCH"):
            m.d.sync += [s.base_y.eq(-op("pad_top")), s.base_x.eq(-op("pad_left"))]
            self._dispatch(m, s)
            self._leave_if(m, s)

    def _instruction_checks(self, m, s):
        """The operand checks of the instruction, registered (valid in DISPATCH: the
        instruction is loaded two cycles before)."""
        seq, op, psum_bits = self.cfg.sequencer, s.op, self.cfg.psum_bits
        zero_shape = ((op("channels") == 0) | (op("kernel_h") == 0) | (op("kernel_w") == 0)
                      | (op("stride_h") == 0) | (op("stride_w") == 0) | (op("out_h") == 0) | (op("out_w") == 0))
        add = lambda name: self._operand(s.instr, Opcode.ADD, name)  # noqa: E731
        relu = lambda name: self._operand(s.instr, Opcode.RELU, name)  # noqa: E731
        length = Mux(s.opcode == Opcode.ADD, add("length"), relu("length"))
        bad_width = (op("psum_bits") < 2) | (op("psum_bits") > psum_bits)
        mvm_invalid = zero_shape | (op("outputs") == 0) | (op("outputs") > seq.psum_words) | bad_width
        param_range = op("param_base") + op("outputs") > seq.param_words
        opcode = s.opcode
        is_pool = (opcode == Opcode.POOL_MAX) | (opcode == Opcode.POOL_AVG)
        is_elementwise = (opcode == Opcode.ADD) | (opcode == Opcode.RELU)
        # one registered verdict for DISPATCH: its next state then waits on a single flag
        s.dispatch_fault, s.dispatch_code = Signal(), Signal(4)
        m.d.sync += [
            s.dispatch_fault.eq(Mux(opcode == Opcode.MVM, mvm_invalid | param_range | (op("blocks") == 0),
                                    Mux(is_pool, zero_shape, Mux(is_elementwise, length == 0,
                                                                 opcode != Opcode.END)))),
            s.dispatch_code.eq(Mux((opcode == Opcode.MVM) & ~mvm_invalid & param_range,
                                   ErrorCode.PARAM_RANGE, ErrorCode.INVALID)),
        ]

    def _dispatch(self, m, s):
        op = s.op
        add = lambda name: self._operand(s.instr, Opcode.ADD, name)  # noqa: E731
        relu = lambda name: self._operand(s.instr, Opcode.RELU, name)  # noqa: E731
        is_add = s.opcode == Opcode.ADD
        length = Mux(is_add, add("length"), relu("length"))
        with m.If(s.dispatch_fault):
            self._error(m, s, s.dispatch_code)
        with m.Else():
            with m.Switch(s.opcode):
                with m.Case(Opcode.MVM):
                    m.next = "BLOCK_FETCH"
                with m.Case(Opcode.POOL_MAX, Opcode.POOL_AVG):
                    m.d.sync += [s.setup_count.eq(SETUP_CYCLES - 1), s.pool_out.eq(op("out_base"))]
                    m.next = "POOL_INIT"
                with m.Case(Opcode.ADD, Opcode.RELU):
                    out_base = Mux(is_add, add("out_base"), relu("out_base"))
                    m.d.sync += [s.e_left.eq(length), s.e_a.eq(add("in_base")), s.e_b.eq(add("in_b_base")),
                                 s.e_out.eq(out_base), s.e_a_bad.eq(self._outside_memory(add("in_base"))),
                                 s.e_b_bad.eq(self._outside_memory(add("in_b_base")))]   # e_out's: in ELT_READ_B
                    m.next = "ELT_READ_A"
                with m.Case(Opcode.END):
                    m.d.comb += self.done.eq(~s.stopping)
                    with m.If(~s.stopping):
                        m.d.sync += self.runs.eq(self.runs + (self.runs != 2**32 - 1))
                        m.next = "IDLE"

    # -- MVM ---------------------------------------------------------------------------------
    def _block_checks(self, m, s):
        """Whether the BLOCK entry is outside its tile or the instruction, registered (its
        ends summed in one cycle, compared in the next; read at the end of BLOCK_SETUP)."""
        cfg, blk = self.cfg, s.blk
        s.block_invalid, s.block_bad, s.setup_last = Signal(), Signal(), Signal()
        ends = {}
        for name, start, size in (("row_end", "tile_row", "rows"), ("col_end", "tile_col", "cols"),
                                  ("n_end", "n_start", "cols")):
            ends[name] = Signal((blk(start) + blk(size)).shape(), name=name)
            m.d.sync += ends[name].eq(blk(start) + blk(size))
        m.d.sync += s.block_invalid.eq(s.block[:OPCODE_BITS] != Opcode.BLOCK)
        m.d.sync += s.block_bad.eq((blk("tile") >= cfg.tile.count) | (blk("rows") == 0) | (blk("cols") == 0)
                                 | (ends["row_end"] > cfg.tile.rows) | (ends["col_end"] > cfg.tile.cols)
                                 | (ends["n_end"] > s.op("outputs")))

    def _mvm_states(self, m, s):
        blk = s.blk
        with m.State("BLOCK_FETCH"):
            with m.If(s.block_pc_bad):
                self._error(m, s, ErrorCode.PC_RANGE, at_block=True)
            m.next = "BLOCK_DECODE"
            self._leave_if(m, s)

        with m.State("BLOCK_DECODE"):
            m.d.sync += [s.block.eq(self.prog_data), s.setup_count.eq(SETUP_CYCLES - 1), s.setup_last.eq(0)]
            m.d.comb += s.clear_rows.eq(1)
            m.next = "BLOCK_SETUP"
            self._leave_if(m, s)

        with m.State("BLOCK_SETUP"):
            # the checks and the last cycle come from registers: the error reaches `stopping` in few levels
            m.d.sync += [s.setup_count.eq(s.setup_count - 1), s.setup_last.eq(s.setup_count == 1)]
            with m.If(s.setup_last):
                with m.If(s.block_invalid):
                    self._error(m, s, ErrorCode.INVALID, at_block=True)
                with m.Elif(s.block_bad):
                    self._error(m, s, ErrorCode.BAD_BLOCK, blk("tile"), at_block=True)
                with m.Else():
                    self._window_load(m, s, blk("rows"))
                    m.d.sync += [s.tile.eq(blk("tile")), s.w_tag.eq(blk("tile_row")), s.channel.eq(blk("c0")),
                                 s.ky.eq(blk("ky0")), s.kx.eq(blk("kx0"))]
                    m.next = "GATHER"
            self._leave_if(m, s)

        with m.State("GATHER"):
            self._window_issue(m, s)
            with m.If(~s.window_busy):
                m.next = "TILE_START"
            self._leave_if(m, s)

        with m.State("TILE_START"):
            m.d.comb += self.tile_start.eq(~s.stopping)
            m.d.sync += [s.beat_lo.eq(0), s.beat_next.eq(self.cfg.datapath.lanes), s.beat_full.eq(0),
                         s.overlaps.eq(self._overlaps(s, 0))]
            m.next = "TILE_RUN"
            self._leave_if(m, s)

        with m.State("TILE_RUN"):
            self._consume_tile(m, s)
            self._leave_if(m, s)

        with m.State("TILE_DRAIN"):
            with m.If(~s.c1_valid & ~s.c2_valid & ~s.c3_valid):
                with m.If(s.last_block):
                    self._first_block(m, s, s.pc)
                    m.d.sync += [s.n_issue.eq(0), s.bn_issuing.eq(1), s.param_ptr.eq(s.op("param_base")),
                                 s.out_addr.eq(s.op("out_base") + s.position)]
                    m.next = "BATCH_NORM"
                with m.Else():
                    m.d.sync += [s.block_no.eq(s.block_no + 1), s.block_pc.eq(s.block_pc + 1),
                                 s.block_pc_bad.eq(self._outside_program(s.block_pc + 1))]
                    m.next = "BLOCK_FETCH"
            self._leave_if(m, s)

        with m.State("BATCH_NORM"):
            self._batch_norm_issue(m, s)
            with m.If(s.bn_done):
                m.d.sync += s.position.eq(s.position + 1)
                self._next_instruction_if(m, s, self._step_position(m, s), "BLOCK_FETCH")
            self._leave_if(m, s)

    def _consume_tile(self, m, s):
        """Take the tile's beats and walk their lanes (stage c0 of the consume pipeline)."""
        lanes, blk = self.cfg.datapath.lanes, s.blk
        stream_in = self.tile_stream
        with m.If(s.tile_timeout):
            self._error(m, s, ErrorCode.TIMEOUT, s.tile)
        next_beat = [s.beat_lo.eq(s.beat_next), s.beat_next.eq(s.beat_next + lanes),
                     s.overlaps.eq(self._overlaps(s, s.beat_next))]
        finish = Signal()
        with m.If(stream_in.valid & ~s.beat_full):
            with m.If(s.overlaps):
                m.d.sync += [s.beat.eq(stream_in.payload), s.beat_full.eq(1), s.lane.eq(0)]
            with m.Else():
                m.d.sync += next_beat
                m.d.comb += finish.eq(stream_in.payload.last)
        with m.If(s.beat_full):
            m.d.sync += [s.c1_valid.eq((s.column >= blk("tile_col")) & (s.column < s.col_hi) & ~s.halted),
                         s.c1_n.eq(s.column + s.n_offset), s.c1_value.eq(s.beat.data[s.lane])]
            with m.If(s.lane == lanes - 1):
                m.d.sync += [s.beat_full.eq(0), *next_beat]
                m.d.comb += finish.eq(s.beat.last)
            with m.Else():
                m.d.sync += s.lane.eq(s.lane + 1)
        with m.If(finish):
            m.next = "TILE_DRAIN"

    def _overlaps(self, s, beat_lo):
        """Whether the tile-output beat starting at column ``beat_lo`` holds a block column."""
        return (beat_lo < s.col_hi) & (beat_lo > s.beat_after)

    def _consume_pipeline(self, m, s):
        """Stages c1 (read the partial sum, add), c2 (compare with the ``psum_bits`` range) and
        c3 (saturate, write). Within a block every partial sum is visited once, so c1 never
        reads an address c2 or c3 still holds; ``TILE_DRAIN`` empties the stages between blocks."""
        psum_bits, blk = self.cfg.psum_bits, s.blk
        m.d.comb += s.column.eq(s.beat_lo + s.lane)
        m.d.sync += [s.col_hi.eq(blk("tile_col") + blk("cols")),
                     s.beat_after.eq(blk("tile_col") - self.cfg.datapath.lanes), s.n_offset.eq(blk("n_start") - blk("tile_col"))]
        m.d.comb += [s.psum_add_rd.addr.eq(s.c1_n), s.psum_bn_rd.addr.eq(s.n_issue)]
        total = Signal(signed(psum_bits + 2))
        m.d.comb += total.eq(Mux(blk("k_start") == 0, s.c1_value, s.psum_add_rd.data + s.c1_value))
        m.d.sync += [s.c2_valid.eq(s.c1_valid & ~s.halted), s.c2_n.eq(s.c1_n), s.c2_total.eq(total)]
        m.d.sync += [s.c3_valid.eq(s.c2_valid & ~s.halted), s.c3_n.eq(s.c2_n), s.c3_total.eq(s.c2_total),
                     s.c3_over.eq(s.c2_total > s.psum_hi), s.c3_under.eq(s.c2_total < s.psum_lo)]
        m.d.sync += self.sat_psum.eq(s.c3_valid & ~s.halted & (s.c3_over | s.c3_under))
        with m.If(s.c3_valid & ~s.halted):
            m.d.comb += [s.psum_wr.addr.eq(s.c3_n), s.psum_wr.en.eq(1),
                         s.psum_wr.data.eq(Mux(s.c3_over, s.psum_hi, Mux(s.c3_under, s.psum_lo, s.c3_total)))]

    # -- batch norm ----------------------------------------------------------------------------
    def _batch_norm_issue(self, m, s):
        """Stage b0: one output per cycle, its parameters and statistics read."""
        # `issuing` (n_issue != outputs) is a register: the instruction's output count stays
        # out of the enables of the pointers (DISPATCH refuses outputs = 0)
        last = s.n_issue == s.outputs_last
        with m.If(s.bn_issuing):
            m.d.sync += [s.n_issue.eq(s.n_issue + 1), s.param_ptr.eq(s.param_ptr + 1),
                         s.out_addr.eq(s.out_addr + s.out_hw), s.b1_valid.eq(~s.halted),
                         s.b1_last.eq(last), s.bn_issuing.eq(~last)]

    def _batch_norm_pipeline(self, m, s):
        """Batch norm, ReLU and requantisation of one output per cycle in registered stages:
        b1 partial sum and parameters arrive; the product in three (operands registered in
        the multiplier); rounding and bias; the clip's comparisons; the clip to
        ``psum_bits`` and ReLU; the requantisation shift in two; its saturation; the write
        (and the statistics update) in the last."""
        dp, A, psum_bits = self.cfg.datapath, self.cfg.datapath.activation_bits, self.cfg.psum_bits
        y1 = Signal(signed(psum_bits))
        out1 = Signal(signed(ADDRESS_BITS))
        param1 = Signal(16)
        m.d.sync += [y1.eq(s.psum_bn_rd.data), out1.eq(s.out_addr), param1.eq(s.param_ptr)]
        # stage 2: the parameters out of their memories, registered
        scale2, bias2 = Signal(signed(dp.bn_scale_bits)), Signal(signed(dp.bn_bias_bits))
        m.d.sync += [scale2.eq(self.scale_data), bias2.eq(self.bias_data)]
        y2 = delayed(m, y1, 1, "bn_y")
        product, latency = registered_product(m, y2, scale2, "bn_product", operand_registers=True)
        t_product = 2 + latency
        frac = dp.bn_scale_frac_bits
        bias = delayed(m, bias2, latency, "bn_bias")
        biased = Signal(signed(max(len(product), dp.bn_bias_bits + frac) + 1))
        rounding = Const((1 << (frac - 1)) if frac else 0, max(frac, 1))
        m.d.sync += biased.eq((product + (Cat(rounding, bias).as_signed() if frac else bias)) >> frac)
        unclipped, over, under = Signal.like(biased), Signal(), Signal()
        m.d.sync += [unclipped.eq(biased), over.eq(biased > s.psum_hi), under.eq(biased < s.psum_lo)]
        relu = Signal(signed(psum_bits))
        z_clipped = Signal()
        z = Mux(over, s.psum_hi, Mux(under, s.psum_lo, unclipped))
        m.d.sync += [relu.eq(Mux(s.op("relu") & (z < 0), 0, z)), z_clipped.eq(over | under)]
        rounded_sum = Signal(signed(psum_bits + 1))
        m.d.sync += rounded_sum.eq(relu + s.shift_half)
        rounded = Signal(signed(psum_bits + 1))
        m.d.sync += rounded.eq(rounded_sum >> s.shift)
        q_comb, q_clipped_comb = saturate_signed(m, rounded, A, "requant")
        q, q_clipped = Signal(signed(A)), Signal()
        m.d.sync += [q.eq(q_comb), q_clipped.eq(q_clipped_comb)]
        t_write = t_product + 6
        valid = self._valid_at(m, s, t_write)
        last = delayed(m, s.b1_last, t_write - 1, "bn_last")
        address = delayed(m, out1, t_write - 1 - 1, "bn_address")
        bad = Signal()
        m.d.sync += bad.eq(self._outside_memory(address))
        with m.If(valid & bad):
            self._error(m, s, ErrorCode.ADDRESS)
        address_w = delayed(m, address, 1, "bn_address_w")
        with m.If(valid & ~bad):
            m.d.comb += [self.act_waddr.eq(address_w), self.act_wdata.eq(q), self.act_we.eq(~s.halted),
                         self.sat_batch_norm.eq(delayed(m, z_clipped, 3, "bn_z_clipped") | q_clipped)]
        m.d.comb += s.bn_done.eq(valid & last & ~bad)
        self._statistics(m, s, y2, delayed(m, param1, 1, "stats_param"), 2)

    def _valid_at(self, m, s, stage):
        """``b1_valid`` as it reaches batch-norm stage ``stage`` (one register per stage,
        cleared by a stop; one chain shared by the outputs and the statistics)."""
        chain = s.bn_valid
        while len(chain) <= stage:
            following = Signal(name=f"bn_valid{len(chain)}")
            m.d.sync += following.eq(chain[-1] & ~s.halted)
            chain.append(following)
        return chain[stage]

    def _statistics(self, m, s, y, address, t_y):
        """Add y, y squared and |y| into the statistics entry ``address`` (64-bit,
        saturating) when ``stats_en``: the entry read with the parameters, updated in
        registered stages behind y (present in stage ``t_y``)."""
        square, latency = registered_product(m, y, y, "stats_square", operand_registers=True)
        magnitude = Signal(len(y))
        m.d.sync += magnitude.eq(Mux(y < 0, -y, y))
        stored_sum = Signal(signed(STATS_BITS))
        stored_squares, stored_abs = Signal(STATS_BITS), Signal(STATS_BITS)
        m.d.sync += [stored_sum.eq(self.stats_sum), stored_squares.eq(self.stats_squares),
                     stored_abs.eq(self.stats_abs)]   # stage 2, like the parameters
        wait = latency
        total = Signal(signed(STATS_BITS + 2))
        squares, magnitudes = Signal(STATS_BITS + 2), Signal(STATS_BITS + 2)
        m.d.sync += [
            total.eq(delayed(m, stored_sum, wait, "stats_sum") + delayed(m, y, wait, "stats_y")),
            squares.eq(delayed(m, stored_squares, wait, "stats_squares") + square[:2 * len(y)]),
            magnitudes.eq(delayed(m, stored_abs, wait, "stats_abs") + delayed(m, magnitude, wait - 1, "stats_mag")),
        ]
        t_write = t_y + wait + 1
        valid = self._valid_at(m, s, t_write)
        utop = (1 << STATS_BITS) - 1
        sum_sat, _ = saturate_signed(m, total, STATS_BITS, "stats_sum")
        m.d.comb += [
            self.stats_waddr.eq(delayed(m, address, wait + 1, "stats_address")),
            self.stats_we.eq(valid & self.stats_en & ~s.halted),
            self.stats_sum_w.eq(sum_sat),
            self.stats_squares_w.eq(Mux(squares[STATS_BITS:].any(), utop, squares[:STATS_BITS])),
            self.stats_abs_w.eq(Mux(magnitudes[STATS_BITS:].any(), utop, magnitudes[:STATS_BITS])),
        ]

    # -- pooling ----------------------------------------------------------------------------------
    def _pool_registers(self, m, s):
        """The window's sum (of at most 15 x 15 activations) and its product with the
        average's reciprocal, and the window's maximum. Both take every value the window
        reads, one cycle after the row buffer does (a copy of the value of their own, away
        from the row buffer's fan-out), in any state (POOL_INIT clears them), so no state
        decode is in their enables."""
        A = self.cfg.datapath.activation_bits
        s.pool_valid, s.pool_value = Signal(), Signal.like(s.v_value)
        m.d.sync += [s.pool_valid.eq(s.v_valid), s.pool_value.eq(s.v_value)]
        s.pool_acc = pool_acc = Signal(signed(A + 10))
        s.pool_max = Signal(signed(max(A, len(s.v_value))))
        with m.If(s.pool_valid):
            m.d.sync += pool_acc.eq(pool_acc + s.pool_value)
            with m.If(s.pool_value > s.pool_max):
                m.d.sync += s.pool_max.eq(s.pool_value)
        reciprocal = self._operand(s.instr, Opcode.POOL_AVG, "reciprocal")
        s.pool_product, s.pool_latency = registered_product(m, pool_acc, reciprocal, "pool_product",
                                                               operand_registers=True)

    def _pool_states(self, m, s):
        A = self.cfg.datapath.activation_bits
        is_max = s.opcode == Opcode.POOL_MAX
        pool_acc, product, latency = s.pool_acc, s.pool_product, s.pool_latency
        with m.State("POOL_INIT"):
            m.d.sync += [s.setup_count.eq(s.setup_count - 1), pool_acc.eq(0), s.pool_max.eq(-(1 << (A - 1))),
                         s.ky.eq(0), s.kx.eq(0)]
            with m.If(s.setup_count == 0):
                self._window_load(m, s, s.window_size)
                m.next = "POOL_WINDOW"
            self._leave_if(m, s)

        with m.State("POOL_WINDOW"):
            self._window_issue(m, s)
            with m.If(~s.window_busy & ~s.pool_valid):
                m.next = "POOL_PRODUCT"
            self._leave_if(m, s)

        # the product's rounding is registered before its saturation and the result's multiplexer
        rounded_width = len(product) - RECIPROCAL_BITS + 1
        rounded = Signal(signed(rounded_width))
        m.d.sync += rounded.eq((product + (1 << (RECIPROCAL_BITS - 1))) >> RECIPROCAL_BITS)
        average, _ = saturate_signed(m, rounded, A, "average")
        pool_result = Signal(signed(A))
        m.d.sync += pool_result.eq(Mux(is_max, s.pool_max, average))
        with m.State("POOL_PRODUCT"):
            m.d.sync += [s.setup_count.eq(latency + 1), s.pool_bad.eq(self._outside_memory(s.pool_out))]
            m.next = "POOL_PRODUCT_WAIT"
            self._leave_if(m, s)
        with m.State("POOL_PRODUCT_WAIT"):
            m.d.sync += s.setup_count.eq(s.setup_count - 1)
            with m.If(s.setup_count == 1):
                m.next = "POOL_WRITE"
            self._leave_if(m, s)

        with m.State("POOL_WRITE"):
            with m.If(s.pool_bad):
                self._error(m, s, ErrorCode.ADDRESS)
            m.d.comb += [self.act_waddr.eq(s.pool_out), self.act_wdata.eq(pool_result),
                         self.act_we.eq(~s.pool_bad)]
            m.d.sync += [s.pool_out.eq(s.pool_out + 1), s.setup_count.eq(SETUP_CYCLES - 1)]
            last = self._step_position(m, s, carry_channel=True) & s.at_last_channel
            self._next_instruction_if(m, s, last, "POOL_INIT")
            self._leave_if(m, s)

    # -- element-wise --------------------------------------------------------------------------------
    def _elementwise_states(self, m, s):
        """ADD (two reads, one write per element) and RELU (one read, one write), element
        by element; the read data registered before the arithmetic. An address's range
        check is registered in a state after the one that stepped it, so no adder feeds a
        comparison in one cycle."""
        A = self.cfg.datapath.activation_bits
        is_add = s.opcode == Opcode.ADD
        operand_a, operand_b = Signal(signed(A)), Signal(signed(A))

        def read(address, bad):
            with m.If(bad):
                self._error(m, s, ErrorCode.ADDRESS)
            m.d.comb += self.act_raddr.eq(address)
            m.d.sync += address.eq(address + 1)

        with m.State("ELT_READ_A"):
            read(s.e_a, s.e_a_bad)
            m.next = "ELT_READ_B"
            self._leave_if(m, s)
        with m.State("ELT_READ_B"):
            with m.If(is_add):
                read(s.e_b, s.e_b_bad)
            m.d.sync += [operand_a.eq(self.act_rdata), s.e_out_bad.eq(self._outside_memory(s.e_out))]
            m.next = "ELT_WAIT"
            self._leave_if(m, s)
        with m.State("ELT_WAIT"):
            m.d.sync += [operand_b.eq(self.act_rdata), s.e_a_bad.eq(self._outside_memory(s.e_a))]
            m.next = "ELT_WRITE"
            self._leave_if(m, s)
        with m.State("ELT_WRITE"):
            total, _ = saturate_signed(m, operand_a + operand_b, A, "add")
            with m.If(s.e_out_bad):
                self._error(m, s, ErrorCode.ADDRESS)
            rectified = Mux(operand_a < 0, 0, operand_a)
            m.d.comb += [self.act_waddr.eq(s.e_out), self.act_wdata.eq(Mux(is_add, total, rectified)),
                         self.act_we.eq(~s.e_out_bad & ~s.halted)]
            m.d.sync += [s.e_out.eq(s.e_out + 1), s.e_b_bad.eq(self._outside_memory(s.e_b)),
                         s.e_left.eq(s.e_left - 1)]
            self._next_instruction_if(m, s, s.e_left == 1, "ELT_READ_A")
            self._leave_if(m, s)

    @staticmethod
    def _leave_if(m, s):
        """Every state's last word: a fault, an abort or a soft reset makes the sequencer idle."""
        with m.If(s.stopping):
            m.next = "IDLE"
