"""Shift-and-add: accumulates ADC codes over input bit-planes and weight slices."""

from amaranth.hdl import Array, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from neurophase.models.shift_add import ShiftAddParams
from neurophase.rtl.saturation import saturate_signed

__all__ = ["ShiftAdd", "shift_add_layouts"]


def shift_add_layouts(params: ShiftAddParams) -> tuple[data.StructLayout, data.StructLayout]:
    """Payload layouts of the input (codes) and output (results) streams."""
    codes = data.StructLayout({"codes": data.ArrayLayout(signed(params.adc_bits), params.lanes)})
    results = data.StructLayout({
        "data": data.ArrayLayout(signed(params.width), params.lanes),
        "saturated": unsigned(params.lanes),
        "last": unsigned(1),
    })
    return codes, results


class ShiftAdd(wiring.Component):
    """Digital shift-and-add behind the column ADCs.

    Beats arrive in the order slice (outer), input bit-plane (LSB first), column group
    (inner); each beat carries ``lanes`` signed ADC codes of one column group. The unit
    adds ``code * F**s * 2**b`` (negated on the MSB plane of two's-complement inputs) into
    the column's accumulator, saturating after every addition, and emits the results of
    a column group when its last (slice, plane) arrives. Accumulators live in a memory of
    ``columns / lanes`` words. Three register stages accept one beat per cycle: B holds
    the beat's codes and weight and reads the column group's accumulator word; C holds
    the products, adds them to that word, saturates and writes the word back (the read
    port is transparent for this write, so consecutive beats of one group, down to a
    single group with ``lanes == columns``, see each other's sums); the last (slice,
    plane) of a group writes its result into a two-entry FIFO instead, which ``o_stream``
    reads (``valid`` is only masked by ``restart``): whether C may finish depends on the
    FIFO's registered fill level, never on ``o_stream.ready``, so a consumer's ready chain
    ends here. A result leaves three cycles after its last beat was accepted. When every
    constant is a signed power of two (a power-of-two significance factor), B holds the
    codes already negated where the constant is negative and the products are shifts: no
    multiplier, whose placement far from B's and C's registers limits the clock.

    Parameters
    ----------
    params : ShiftAddParams
        Sizes; :meth:`ShiftAddParams.from_config` derives them from the chip configuration.

    Members
    -------
    i_stream : In(stream.Signature(StructLayout({"codes": ArrayLayout(signed(adc_bits), lanes)})))
        ADC codes of one column group.
    o_stream : Out(stream.Signature(StructLayout({"data": ..., "saturated": lanes, "last": 1})))
        Results of one column group; ``saturated`` has a bit per lane that is set when any
        addition of that column was clipped; ``last`` marks the final group of an MVM.
    restart : In(1)
        Drops the MVM in progress (every beat in the pipeline, a beat offered on
        ``i_stream`` in the same cycle and a result waiting on ``o_stream``); the next beat
        starts a new MVM. The producer is expected to drop its beats in the same cycle
        (the tile flushes every stage at once).
    busy : Out(1)
        An MVM is partly accumulated or a result is waiting.
    """

    def __init__(self, params: ShiftAddParams):
        if not isinstance(params, ShiftAddParams):
            raise TypeError(f"params must be a ShiftAddParams, not {params!r}")
        self.params = params
        codes, results = shift_add_layouts(params)
        super().__init__({
            "i_stream": In(stream.Signature(codes)),
            "o_stream": Out(stream.Signature(results)),
            "restart": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        steps = p.slices * p.planes
        weights = [p.weight(s, b) for s in range(p.slices) for b in range(p.planes)]
        weight_shape = signed(max(abs(w) for w in weights).bit_length() + 1)
        wide = signed(max(p.width, p.adc_bits + weight_shape.width) + 1)

        word = data.StructLayout({
            "acc": data.ArrayLayout(signed(p.width), p.lanes),
            "sat": unsigned(p.lanes),
        })
        # at least two words: a one-word memory would have a zero-width address port
        depth = max(p.groups, 2)
        m.submodules.acc_mem = mem = memory.Memory(shape=word, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        group = Signal(range(depth))
        step = Signal(range(steps))
        # padded to a power of two so every value of `step` selects an entry (no latch-like case)
        padding = 2 ** step.shape().width - steps
        shifts = _power_of_two_shifts(weights)
        # stage B holds the constant itself, or (powers of two) its shift
        if shifts is None:
            weight_table = Array(Const(w, weight_shape) for w in weights + [0] * padding)
            code_shape = signed(p.adc_bits)
            b_weight = Signal(weight_shape, reset_less=True)
        else:
            shift_table = Array(Const(k, range(max(shifts) + 1)) for k in shifts + [0] * padding)
            negative_table = Array(Const(w < 0) for w in weights + [0] * padding)
            code_shape = signed(p.adc_bits + 1)   # a negated most negative code
            b_shift = Signal(range(max(shifts) + 1), reset_less=True)

        # stage B: the beat's codes and weight; the accumulator word is read here (the read
        # sees a write-back of stage C in the same cycle: the port is transparent)
        b_valid = Signal()
        b_codes = Signal(data.ArrayLayout(code_shape, p.lanes), reset_less=True)
        b_group = Signal(range(depth), reset_less=True)
        b_first = Signal(reset_less=True)
        b_last = Signal(reset_less=True)
        b_advance = Signal()
        # stage C: the products; add to the accumulator word, saturate, write back or emit
        c_valid = Signal()
        c_products = Signal(data.ArrayLayout(signed(p.adc_bits + weight_shape.width), p.lanes), reset_less=True)
        c_group = Signal(range(depth), reset_less=True)
        c_first = Signal(reset_less=True)
        c_last = Signal(reset_less=True)
        c_done = Signal()
        # output: a two-entry FIFO of result beats, so whether a result may leave C depends
        # on its registered fill level only and `o_stream.ready` reaches no earlier stage
        results = SyncFIFO(width=len(self.o_stream.payload.as_value()), depth=2)
        m.submodules.results = ResetInserter(self.restart)(results)
        o_free = Signal()
        accept = Signal()

        m.d.comb += [
            o_free.eq(results.w_rdy),
            c_done.eq(~c_last | o_free),
            b_advance.eq(b_valid & (~c_valid | c_done)),
            # not masked by `restart` (a beat offered then is dropped): `ready` feeds the
            # producer's wide enables, and the restart is a late, far-reaching signal
            self.i_stream.ready.eq(~b_valid | b_advance),
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            rd.addr.eq(b_group),
            rd.en.eq(b_advance),
            self.busy.eq(b_valid | c_valid | results.r_rdy | (group != 0) | (step != 0)),
        ]

        with m.If(self.restart):
            m.d.sync += [group.eq(0), step.eq(0), b_valid.eq(0)]
        with m.Elif(accept):
            m.d.sync += [
                b_valid.eq(1),
                b_group.eq(group),
                b_first.eq(step == 0),
                b_last.eq(step == steps - 1),
            ]
            codes = self.i_stream.payload.codes
            if shifts is None:
                m.d.sync += [b_codes.eq(codes), b_weight.eq(weight_table[step])]
            else:
                negative = negative_table[step]
                m.d.sync += [b_codes[lane].eq(Mux(negative, -codes[lane], codes[lane])) for lane in range(p.lanes)]
                m.d.sync += b_shift.eq(shift_table[step])
            with m.If(group == p.groups - 1):
                m.d.sync += [group.eq(0), step.eq(Mux(step == steps - 1, 0, step + 1))]
            with m.Else():
                m.d.sync += group.eq(group + 1)
        with m.Elif(b_advance):
            m.d.sync += b_valid.eq(0)

        with m.If(self.restart):
            m.d.sync += c_valid.eq(0)
        with m.Elif(b_advance):
            m.d.sync += [
                c_valid.eq(1),
                c_group.eq(b_group),
                c_first.eq(b_first),
                c_last.eq(b_last),
            ]
            for lane in range(p.lanes):
                product = b_codes[lane] * b_weight if shifts is None else b_codes[lane] << b_shift
                m.d.sync += c_products[lane].eq(product)
        with m.Elif(c_done):
            m.d.sync += c_valid.eq(0)

        result = Signal(word)
        for lane in range(p.lanes):
            prev = Mux(c_first, 0, rd.data.acc[lane])
            total = Signal(wide, name=f"total_{lane}")
            m.d.comb += total.eq(prev + c_products[lane])
            value, clipped = saturate_signed(m, total, p.width, f"total_{lane}")
            m.d.comb += [
                result.acc[lane].eq(value),
                result.sat[lane].eq((~c_first & rd.data.sat[lane]) | clipped),
            ]

        m.d.comb += [
            wr.addr.eq(c_group),
            wr.data.eq(result),
            wr.en.eq(c_valid & ~c_last & ~self.restart),
        ]
        beat = Signal(self.o_stream.payload.shape())
        m.d.comb += [
            beat.data.eq(result.acc),
            beat.saturated.eq(result.sat),
            beat.last.eq(c_group == p.groups - 1),
            results.w_data.eq(beat.as_value()),
            results.w_en.eq(c_valid & c_last),
            self.o_stream.valid.eq(results.r_rdy & ~self.restart),
            self.o_stream.payload.eq(results.r_data),
            results.r_en.eq(self.o_stream.ready),
        ]
        return m


def _power_of_two_shifts(weights: list[int]) -> list[int] | None:
    """``log2 |w|`` of each constant when every one is a signed power of two, else None."""
    if any(w == 0 or abs(w) & (abs(w) - 1) for w in weights):
        return None
    return [abs(w).bit_length() - 1 for w in weights]
