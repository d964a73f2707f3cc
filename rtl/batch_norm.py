"""Batch-norm: folded per-column scale and bias, optional ReLU, requantisation."""

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.models.batch_norm import BatchNormParams
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.rtl.interfaces import ParamReadSignature

__all__ = ["BatchNorm"]


class BatchNorm(wiring.Component):
    """Folded batch-norm, ReLU and requantisation of each column's value.

    Stages 1 and 2: ``z = sat_W(floor(S*y / 2**Fs + 1/2) + beta)`` with the column's scale
    ``S`` (signed ``scale_bits``, ``Fs = scale_frac_bits`` fractional bits) and bias
    ``beta`` (signed ``bias_bits`` integer), both read per column group through parameter
    ports addressed with the group of the next beat; stage 1 registers the products
    ``S*y`` and the bias, stage 2 adds the bias, rounds and saturates. Stage 3:
    ``r = max(z, 0)`` when ``relu``, then ``q = sat_A(floor(r / 2**shift + 1/2))`` (an
    arithmetic right shift rounding half up; ``shift`` values above the accumulator
    width ``W`` act as ``W``). Three register stages, a beat per cycle; the first beat
    may arrive from the second cycle after reset.

    Parameters
    ----------
    params : BatchNormParams
        Sizes; :meth:`BatchNormParams.from_config` derives them from the chip configuration.

    Members
    -------
    i_stream : In(stream.Signature(column_values_layout(width, lanes)))
    o_stream : Out(stream.Signature(column_values_layout(out_bits, lanes)))
        Activations; ``saturated`` is the input's or'ed with both stages' clipping.
    scale : Out(ParamReadSignature(signed(scale_bits), lanes, groups))
    bias : Out(ParamReadSignature(signed(bias_bits), lanes, groups))
    shift : In(unsigned(shift_bits))
        Requantisation shift; sampled with each beat entering stage 1.
    relu : In(1)
        Apply ReLU before requantisation; sampled with each beat entering stage 1.
    bn_clipped, requant_clipped : Out(1)
        Strobes: the beat leaving this cycle had a lane clipped by the batch-norm
        saturation (stage 2) / the requantisation (stage 3).
    """

    def __init__(self, params: BatchNormParams):
        if not isinstance(params, BatchNormParams):
            raise TypeError(f"params must be a BatchNormParams, not {params!r}")
        self.params = params
        super().__init__({
            "i_stream": In(stream.Signature(column_values_layout(params.width, params.lanes))),
            "o_stream": Out(stream.Signature(column_values_layout(params.out_bits, params.lanes))),
            "scale": Out(ParamReadSignature(signed(params.scale_bits), params.lanes, params.groups)),
            "bias": Out(ParamReadSignature(signed(params.bias_bits), params.lanes, params.groups)),
            "shift": In(unsigned(params.shift_bits)),
            "relu": In(1),
            "bn_clipped": Out(1),
            "requant_clipped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, A, Fs = p.width, p.out_bits, p.scale_frac_bits
        z_lo, z_hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
        q_lo, q_hi = -(1 << (A - 1)), (1 << (A - 1)) - 1

        # -- stage 1: products (the scale and bias are read as the beat enters) -----------
        accept = Signal()
        s0_valid = Signal()
        s0_ready = Signal()
        s0_products = Signal(data.ArrayLayout(signed(W + p.scale_bits), p.lanes))
        s0_bias = Signal(data.ArrayLayout(signed(p.bias_bits), p.lanes))
        s0_saturated = Signal(p.lanes)
        s0_last = Signal()
        s0_shift = Signal(range(W + 1))
        s0_relu = Signal()
        group = Signal(range(max(p.groups, 2)))
        group_next = Signal.like(group)
        m.d.comb += [
            self.i_stream.ready.eq(~s0_valid | s0_ready),
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            group_next.eq(Mux(accept, Mux(self.i_stream.payload.last | (group == p.groups - 1), 0, group + 1),
                              group)),
            self.scale.addr.eq(group_next),
            self.bias.addr.eq(group_next),
        ]
        m.d.sync += group.eq(group_next)

        with m.If(accept):
            m.d.sync += [
                s0_valid.eq(1),
                s0_bias.eq(self.bias.data),
                s0_saturated.eq(self.i_stream.payload.saturated),
                s0_last.eq(self.i_stream.payload.last),
                s0_shift.eq(Mux(self.shift > W, W, self.shift) if (1 << p.shift_bits) - 1 > W else self.shift),
                s0_relu.eq(self.relu),
            ]
            for lane in range(p.lanes):
                m.d.sync += s0_products[lane].eq(self.i_stream.payload.data[lane] * self.scale.data[lane])
        with m.Elif(s0_ready):
            m.d.sync += s0_valid.eq(0)

        # -- stage 2: bias, rounding and saturation -----------------------------------------
        s1_valid = Signal()
        s1_ready = Signal()
        s1_z = Signal(data.ArrayLayout(signed(W), p.lanes))
        s1_saturated = Signal(p.lanes)
        s1_clipped = Signal(p.lanes)
        s1_last = Signal()
        s1_shift = Signal(range(W + 1))
        s1_relu = Signal()
        m.d.comb += s0_ready.eq(~s1_valid | s1_ready)

        z = Signal(data.ArrayLayout(signed(W), p.lanes))
        z_clipped = Signal(p.lanes)
        half = 1 << (Fs - 1) if Fs else 0
        wide = signed(max(W + p.scale_bits, p.bias_bits + Fs) + 2)
        for lane in range(p.lanes):
            total = Signal(wide, name=f"scaled_{lane}")
            m.d.comb += [
                total.eq((s0_products[lane] + (s0_bias[lane] << Fs) + half) >> Fs),
                z[lane].eq(Mux(total > z_hi, z_hi, Mux(total < z_lo, z_lo, total))),
                z_clipped[lane].eq((total > z_hi) | (total < z_lo)),
            ]
        with m.If(s0_valid & s0_ready):
            m.d.sync += [
                s1_valid.eq(1),
                s1_z.eq(z),
                s1_saturated.eq(s0_saturated | z_clipped),
                s1_clipped.eq(z_clipped),
                s1_last.eq(s0_last),
                s1_shift.eq(s0_shift),
                s1_relu.eq(s0_relu),
            ]
        with m.Elif(s1_ready):
            m.d.sync += s1_valid.eq(0)

        # -- stage 3: ReLU and requantisation -------------------------------------------
        advance = Signal()
        m.d.comb += [
            s1_ready.eq(~self.o_stream.valid | self.o_stream.ready),
            advance.eq(s1_valid & s1_ready),
        ]
        shift = s1_shift
        # padded to a power of two so every value of `shift` selects an entry (lint: complete case)
        halves = Array(Const((1 << min(s, W)) >> 1, W + 1) for s in range(2 ** shift.shape().width))
        q = Signal(data.ArrayLayout(signed(A), p.lanes))
        q_clipped = Signal(p.lanes)
        for lane in range(p.lanes):
            rectified = Mux(s1_relu & (s1_z[lane] < 0), 0, s1_z[lane])
            shifted = Signal(signed(W + 2), name=f"requant_{lane}")
            m.d.comb += [
                shifted.eq((rectified + halves[shift]) >> shift),
                q[lane].eq(Mux(shifted > q_hi, q_hi, Mux(shifted < q_lo, q_lo, shifted))),
                q_clipped[lane].eq((shifted > q_hi) | (shifted < q_lo)),
            ]
        out_bn_clipped = Signal()
        out_requant_clipped = Signal()
        with m.If(advance):
            m.d.sync += [
                self.o_stream.valid.eq(1),
                self.o_stream.payload.data.eq(q),
                self.o_stream.payload.saturated.eq(s1_saturated | q_clipped),
                self.o_stream.payload.last.eq(s1_last),
                out_bn_clipped.eq(s1_clipped.any()),
                out_requant_clipped.eq(q_clipped.any()),
            ]
        with m.Elif(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        transfer = self.o_stream.valid & self.o_stream.ready
        m.d.comb += [
            self.bn_clipped.eq(transfer & out_bn_clipped),
            self.requant_clipped.eq(transfer & out_requant_clipped),
        ]
        return m
