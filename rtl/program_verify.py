"""Program-verify controller: programs a row of devices to target conductances with
SET/RESET pulses and verify reads, behind its own CSR bank."""

import functools
import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.models.program_verify import (
    AMPLITUDE_BITS, CLASSES, WIDTH_BITS, iteration_bits, physical_columns, program_verify_register_map,
)
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["ProgramVerify", "program_verify_layouts"]


class _State(enum.Enum, shape=4):
    """Controller states (an explicit switch with a default, so every encoding is covered)."""

    IDLE = 0
    CLEAR = 1
    READ_REQ = 2
    WAIT_RESP = 3
    EVAL = 4
    NEXT = 5
    SCAN = 6
    EMIT = 7
    COMMIT = 8
    AFTER_PAIR = 9
    FINISH = 10


def program_verify_layouts(cfg: ChipConfig) -> tuple[data.StructLayout, data.StructLayout, data.StructLayout]:
    """Payload layouts of the pulse port, the read-request port and the read-response port."""
    n = physical_columns(cfg)
    row = unsigned(max(1, (cfg.tile.rows - 1).bit_length()))
    pulse = data.StructLayout({
        "row": row,
        "mask": unsigned(n),
        "polarity": unsigned(1),
        "amplitude": unsigned(AMPLITUDE_BITS),
        "width": unsigned(WIDTH_BITS),
    })
    request = data.StructLayout({"row": row})
    response = data.StructLayout({"codes": data.ArrayLayout(signed(cfg.adc.bits), n)})
    return pulse, request, response


class ProgramVerify(wiring.Component):
    """Row-parallel program-verify controller with its CSR bank.

    A run programs the devices of physical columns [``PV_RANGE.first``, ``PV_RANGE.last``]
    of row ``PV_ROW.row`` (one device when first == last) to the codes in ``PV_TARGET``.
    Each iteration requests a verify read of the row (``read_req``), takes the row's codes
    (``read_resp``), and decides for every device still active, ``lanes`` devices per
    cycle, as :func:`neurophase.models.program_verify.decide`: converged when
    ``|target - code| <= PV_TOLERANCE``, failed after ``PV_MAX_ITER`` reads, else a SET
    (low) or RESET (high) pulse from the table of its error class. The devices sharing a
    (polarity, class) get one command on ``pulse`` (SET classes 0..7, then RESET 0..7,
    empty ones skipped). A run ends when an iteration plans no pulse, so it always ends
    after at most ``PV_MAX_ITER`` reads; ``PV_CTRL.abort`` ends it at the next read or
    pulse boundary, and a read or pulse not answered within ``PV_TIMEOUT`` cycles ends
    it with ``PV_STATUS.timeout``. Per-device state (iterations, pulses, converged,
    failed, planned pulse) lives in a memory of ``P / lanes`` words; the outcome of one
    device at a time is read through ``PV_RESULT_INDEX`` / ``PV_RESULT``. See
    docs/program-verify.md.

    Parameters
    ----------
    cfg : ChipConfig
        Sizes: P = 2 * weights.slices * tile.cols devices per row, ``datapath.lanes``
        devices per cycle, ``adc.bits`` codes, ``tile.rows`` rows.

    Members
    -------
    bus : In(WishboneSignature(regmap.addr_width))
        CSR bus (the map of :func:`~neurophase.models.program_verify.program_verify_register_map`).
    irq : Out(1)
        Interrupt: enabled sticky status bits, gated by ``PV_CTRL.irq_en``.
    pulse : Out(stream.Signature(StructLayout({"row", "mask": P, "polarity", "amplitude", "width"})))
        Pulse commands; the pulse driver raises ``ready`` once the pulse is applied.
        ``polarity`` 0 is SET, 1 RESET; ``amplitude`` / 255 is the normalised amplitude;
        ``width`` counts unit pulses.
    read_req : Out(stream.Signature(StructLayout({"row"})))
        Verify-read requests.
    read_resp : In(stream.Signature(StructLayout({"codes": ArrayLayout(signed(adc.bits), P)})))
        The codes of one verify read of the requested row, one per physical column.
        ``ready`` is always high (a port, not a constant, so it survives Verilog
        generation); responses that arrive while no read is pending are ignored.
    busy : Out(1)
        A run is in progress.

    Raises
    ------
    TypeError
        When ``cfg`` is not a ChipConfig.
    """

    def __init__(self, cfg: ChipConfig):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        self.cfg = cfg
        self.regmap = program_verify_register_map(cfg)
        pulse, request, response = program_verify_layouts(cfg)
        super().__init__({
            "bus": In(WishboneSignature(self.regmap.addr_width)),
            "irq": Out(1),
            "pulse": Out(stream.Signature(pulse)),
            "read_req": Out(stream.Signature(request)),
            "read_resp": In(stream.Signature(response)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        n = physical_columns(cfg)
        lanes = cfg.datapath.lanes
        groups = n // lanes
        bits = cfg.adc.bits
        ibits = iteration_bits(cfg)
        m.submodules.bank = bank = CsrBank(self.regmap)
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        m.d.comb += [self.irq.eq(bank.irq), self.read_resp.ready.eq(1)]

        lane_state = data.StructLayout({
            "iterations": unsigned(ibits), "pulses": unsigned(ibits), "converged": unsigned(1),
            "failed": unsigned(1), "plan": unsigned(1), "cls": unsigned(4),   # cls = polarity * 8 + class
        })
        depth = max(groups, 2)
        m.submodules.state_mem = mem = memory.Memory(shape=data.ArrayLayout(lane_state, lanes), depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        window = mem.read_port()

        # -- run parameters, latched at start ---------------------------------------------------
        row = Signal.like(bank.pv_row_row)
        first = Signal(16)
        last = Signal(16)
        tolerance = Signal(bits)
        n_max = Signal(ibits)
        timeout = Signal(16)

        # -- counters (CSR read-only fields) -----------------------------------------------------
        row_reads = Signal(16)
        commands = Signal(32)
        converged = Signal(len(bank.pv_converged_count))
        failed = Signal(len(bank.pv_failed_count))
        dev_iters = Signal(32)
        dev_pulses = Signal(32)
        m.d.comb += [
            bank.pv_row_reads_count.eq(row_reads), bank.pv_commands_count.eq(commands),
            bank.pv_converged_count.eq(converged), bank.pv_failed_count.eq(failed),
            bank.pv_device_iters_count.eq(dev_iters), bank.pv_device_pulses_count.eq(dev_pulses),
        ]

        state = Signal(_State)
        group = Signal(range(depth))
        phase = Signal()                      # 0: address presented, 1: data valid
        codes = Signal(n * bits)
        mask = Signal(n)
        used = Signal(2 * CLASSES)            # (polarity, class) pairs planned this iteration
        current = Signal(4)                   # the pair being scanned / emitted / committed
        waited = Signal(16)
        abort = Signal()
        aborted = Signal()
        timed_out = Signal()

        m.d.comb += [rd.addr.eq(group), bank.pv_target_rd.addr.eq(group)]
        with m.If(bank.pv_ctrl_abort):
            m.d.sync += abort.eq(1)

        # -- per-lane decisions of one group (EVAL) -------------------------------------------------
        group_codes = codes.word_select(group, lanes * bits)
        new_word = Signal(data.ArrayLayout(lane_state, lanes))
        active_bits, hit_bits, give_up_bits, used_bits = [], [], [], []
        for lane in range(lanes):
            old = rd.data[lane]
            new = new_word[lane]
            code = group_codes[lane * bits:(lane + 1) * bits].as_signed()
            target = bank.pv_target_rd.data[lane]
            column = group * lanes + lane
            active = Signal(name=f"active_{lane}")
            m.d.comb += active.eq((column >= first) & (column <= last) & ~old.converged & ~old.failed)
            error = Signal(signed(bits + 2), name=f"error_{lane}")
            m.d.comb += error.eq(target - code)
            mag = Signal(unsigned(bits + 1), name=f"mag_{lane}")
            m.d.comb += mag.eq(Mux(error < 0, -error, error))
            cls = Signal(3, name=f"cls_{lane}")
            for k in range(1, bits + 1):
                with m.If(mag >= (1 << k)):
                    m.d.comb += cls.eq(min(k, CLASSES - 1))
            iterations = Signal(ibits, name=f"iterations_{lane}")
            m.d.comb += iterations.eq(old.iterations + active)
            hit = active & (mag <= tolerance)
            give_up = active & ~hit & (iterations >= n_max)
            plan = active & ~hit & ~give_up
            m.d.comb += [
                new.iterations.eq(iterations),
                new.pulses.eq(old.pulses),
                new.converged.eq(old.converged | hit),
                new.failed.eq(old.failed | give_up),
                new.plan.eq(plan),
                new.cls.eq(Cat(cls, error < 0)),
            ]
            active_bits.append(active)
            hit_bits.append(hit)
            give_up_bits.append(give_up)
            used_bits.append(Mux(plan, (Const(1, 2 * CLASSES) << new.cls)[:2 * CLASSES], 0))

        # -- per-lane selection of the current pair (SCAN, COMMIT) ---------------------------------
        match_bits = [rd.data[lane].plan & (rd.data[lane].cls == current) for lane in range(lanes)]
        committed = Signal(data.ArrayLayout(lane_state, lanes))
        for lane in range(lanes):
            m.d.comb += [committed[lane].eq(rd.data[lane]),
                         committed[lane].pulses.eq(rd.data[lane].pulses + match_bits[lane])]
        lowest = Signal(4)                    # lowest set bit of `used`
        for k in reversed(range(2 * CLASSES)):
            with m.If(used[k]):
                m.d.comb += lowest.eq(k)

        def popcount(bits_):
            return sum(bits_[1:], bits_[0].as_unsigned()) if bits_ else Const(0)

        amplitude = Array([getattr(bank, f"pv_{name}_{k}_amplitude") for name in ("set", "reset")
                           for k in range(CLASSES)])
        width = Array([getattr(bank, f"pv_{name}_{k}_width") for name in ("set", "reset") for k in range(CLASSES)])
        m.d.comb += [
            self.pulse.payload.row.eq(row),
            self.pulse.payload.mask.eq(mask),
            self.pulse.payload.polarity.eq(current[3]),
            self.pulse.payload.amplitude.eq(amplitude[current]),
            self.pulse.payload.width.eq(width[current]),
            self.read_req.payload.row.eq(row),
        ]
        timeout_now = waited + 1 >= Mux(timeout == 0, 1, timeout)
        done_strobe = Signal()
        refused = Signal()
        m.d.comb += [
            bank.pv_status_done_set.eq(done_strobe | refused),
            bank.pv_status_bad_range_set.eq(refused),
            bank.pv_status_failed_set.eq(done_strobe & (failed != 0)),
            bank.pv_status_aborted_set.eq(done_strobe & aborted),
            bank.pv_status_timeout_set.eq(done_strobe & timed_out),
        ]

        def next_pair(when_none):
            """Choose the next planned (polarity, class) pair; ``when_none`` when none is left."""
            m.d.sync += [group.eq(0), phase.eq(0), mask.eq(0), waited.eq(0)]
            with m.If(abort):
                m.d.sync += [aborted.eq(1), state.eq(_State.FINISH)]
            with m.Elif(used != 0):
                m.d.sync += [current.eq(lowest), state.eq(_State.SCAN)]
            with m.Else():
                m.d.sync += state.eq(when_none)

        with m.If(state == _State.IDLE):
            with m.If(bank.pv_ctrl_start):
                bad = (bank.pv_range_first > bank.pv_range_last) | (bank.pv_range_last >= n)
                with m.If(bad):
                    m.d.comb += refused.eq(1)
                with m.Else():
                    m.d.sync += [
                        row.eq(bank.pv_row_row), first.eq(bank.pv_range_first), last.eq(bank.pv_range_last),
                        tolerance.eq(bank.pv_tolerance_codes),
                        n_max.eq(Mux(bank.pv_max_iter_count == 0, 1, bank.pv_max_iter_count)),
                        timeout.eq(bank.pv_timeout_cycles),
                        row_reads.eq(0), commands.eq(0), converged.eq(0), failed.eq(0),
                        dev_iters.eq(0), dev_pulses.eq(0), abort.eq(0), aborted.eq(0), timed_out.eq(0),
                        group.eq(0),
                    ]
                    m.d.sync += state.eq(_State.CLEAR)
        with m.Elif(state == _State.CLEAR):
            m.d.comb += [wr.addr.eq(group), wr.data.eq(0), wr.en.eq(1)]
            with m.If(group == groups - 1):
                m.d.sync += [group.eq(0), waited.eq(0)]
                m.d.sync += state.eq(_State.READ_REQ)
            with m.Else():
                m.d.sync += group.eq(group + 1)
        with m.Elif(state == _State.READ_REQ):
            m.d.comb += self.read_req.valid.eq(1)
            with m.If(self.read_req.ready):
                m.d.sync += waited.eq(waited + 1)
                m.d.sync += state.eq(_State.WAIT_RESP)
            with m.Elif(abort):
                m.d.sync += aborted.eq(1)
                m.d.sync += state.eq(_State.FINISH)
            with m.Elif(timeout_now):
                m.d.sync += timed_out.eq(1)
                m.d.sync += state.eq(_State.FINISH)
            with m.Else():
                m.d.sync += waited.eq(waited + 1)
        with m.Elif(state == _State.WAIT_RESP):
            with m.If(self.read_resp.valid):
                m.d.sync += [codes.eq(self.read_resp.payload.codes), row_reads.eq(row_reads + 1),
                             group.eq(0), phase.eq(0), used.eq(0)]
                m.d.sync += state.eq(_State.EVAL)
            with m.Elif(timeout_now):
                m.d.sync += timed_out.eq(1)
                m.d.sync += state.eq(_State.FINISH)
            with m.Else():
                m.d.sync += waited.eq(waited + 1)
        with m.Elif(state == _State.EVAL):
            m.d.sync += phase.eq(~phase)
            with m.If(phase):
                m.d.comb += [wr.addr.eq(group), wr.data.eq(new_word), wr.en.eq(1)]
                m.d.sync += [
                    used.eq(functools.reduce(operator.or_, used_bits, used)),
                    dev_iters.eq(dev_iters + popcount(active_bits)),
                    converged.eq(converged + popcount(hit_bits)),
                    failed.eq(failed + popcount(give_up_bits)),
                ]
                with m.If(group == groups - 1):
                    m.d.sync += group.eq(0)
                    m.d.sync += state.eq(_State.NEXT)
                with m.Else():
                    m.d.sync += group.eq(group + 1)
        with m.Elif(state == _State.NEXT):
            next_pair(when_none=_State.FINISH)       # after a decision pass: no pulse ends the run
        with m.Elif(state == _State.SCAN):
            m.d.sync += phase.eq(~phase)
            with m.If(phase):
                m.d.sync += mask.word_select(group, lanes).eq(Cat(*match_bits))
                with m.If(group == groups - 1):
                    m.d.sync += [group.eq(0), waited.eq(0)]
                    m.d.sync += state.eq(_State.EMIT)
                with m.Else():
                    m.d.sync += group.eq(group + 1)
        with m.Elif(state == _State.EMIT):
            with m.If(mask == 0):                       # cannot happen; never stall on it
                m.d.sync += used.eq(used & ~(Const(1, 2 * CLASSES) << current))
                m.d.sync += state.eq(_State.AFTER_PAIR)
            with m.Else():
                m.d.comb += self.pulse.valid.eq(1)
                with m.If(self.pulse.ready):
                    m.d.sync += [commands.eq(commands + 1), group.eq(0), phase.eq(0)]
                    m.d.sync += state.eq(_State.COMMIT)
                with m.Elif(abort):
                    m.d.sync += aborted.eq(1)
                    m.d.sync += state.eq(_State.FINISH)
                with m.Elif(timeout_now):
                    m.d.sync += timed_out.eq(1)
                    m.d.sync += state.eq(_State.FINISH)
                with m.Else():
                    m.d.sync += waited.eq(waited + 1)
        with m.Elif(state == _State.COMMIT):
            m.d.sync += phase.eq(~phase)
            with m.If(phase):
                m.d.comb += [wr.addr.eq(group), wr.data.eq(committed), wr.en.eq(1)]
                m.d.sync += dev_pulses.eq(dev_pulses + popcount(match_bits))
                with m.If(group == groups - 1):
                    m.d.sync += [group.eq(0), used.eq(used & ~(Const(1, 2 * CLASSES) << current))]
                    m.d.sync += state.eq(_State.AFTER_PAIR)
                with m.Else():
                    m.d.sync += group.eq(group + 1)
        with m.Elif(state == _State.AFTER_PAIR):
            next_pair(when_none=_State.READ_REQ)     # after the last pulse pair: verify again
        with m.Elif(state == _State.FINISH):
            m.d.comb += done_strobe.eq(1)
            m.d.sync += abort.eq(0)
            m.d.sync += state.eq(_State.IDLE)
        with m.Else():                               # unreachable encodings: back to idle
            m.d.sync += state.eq(_State.IDLE)
        m.d.comb += self.busy.eq(state != _State.IDLE)
        m.d.comb += bank.pv_status_busy.eq(self.busy)

        # -- outcome window ------------------------------------------------------------------------
        index = bank.pv_result_index_column
        m.d.comb += window.addr.eq(index // lanes)
        lane_q = Signal(range(max(lanes, 2)))
        m.d.sync += lane_q.eq(index % lanes)
        shown = Signal(lane_state)
        with m.Switch(lane_q):
            for lane in range(lanes):
                with m.Case(lane):
                    m.d.comb += shown.eq(window.data[lane])
        m.d.comb += [
            bank.pv_result_iterations.eq(shown.iterations),
            bank.pv_result_pulses.eq(shown.pulses),
            bank.pv_result_converged.eq(shown.converged),
            bank.pv_result_failed.eq(shown.failed),
        ]
        return m
