"""Drift gain: scales each column's result by its (or the tile's) drift-compensation gain."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.models.drift_gain import DriftGainParams
from neurophase.rtl.interfaces import ParamReadSignature
from neurophase.rtl.registered_multiplier import RegisteredMultiplier
from neurophase.rtl.saturation import saturate_signed

__all__ = ["DriftGain", "column_values_layout"]


def column_values_layout(width: int, lanes: int) -> data.StructLayout:
    """Payload of the streams between shift-and-add, drift gain and batch-norm: ``lanes``
    signed values, a cumulative saturation bit per lane, and ``last`` on an MVM's final group."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(width), lanes),
        "saturated": unsigned(lanes),
        "last": unsigned(1),
    })


class DriftGain(wiring.Component):
    """Drift-compensation gain: ``y' = sat(round(alpha * y))`` per column.

    ``alpha = G / 2**gain_frac_bits`` with ``G`` a signed ``gain_bits`` integer; rounding
    is half up (``floor(x + 1/2)``), saturation to the signed ``width`` of the input.
    With ``per_column`` high the gain is read per column group through ``gain`` (a
    :class:`ParamReadSignature` port addressed with the group of the next beat); with it
    low every column uses ``tile_gain``. ``per_column`` resets to ``params.per_column``.
    Four register stages: the first holds the operands ``y`` and ``alpha`` (the gain is
    read and selected as the beat enters), the second the products ``alpha * y`` (both are
    a :class:`RegisteredMultiplier`'s registers: a DSP block's own on an ECP5), the third a
    copy of the products, the fourth the rounded and saturated values; a beat
    per cycle; ``last`` is passed through and the group count restarts after it. The
    first beat may arrive from the second cycle after reset (the gain read of group 0
    needs one cycle).

    Parameters
    ----------
    params : DriftGainParams
        Sizes; :meth:`DriftGainParams.from_config` derives them from the chip configuration.

    Members
    -------
    i_stream : In(stream.Signature(column_values_layout(width, lanes)))
    o_stream : Out(stream.Signature(column_values_layout(width, lanes)))
        ``saturated`` is the input's, or'ed with this stage's clipping.
    gain : Out(ParamReadSignature(signed(gain_bits), lanes, groups))
        Per-column gains.
    tile_gain : In(signed(gain_bits))
        The gain of every column when ``per_column`` is low.
    per_column : In(1)
        Selects per-column gains (1) or the tile gain (0).
    clipped : Out(1)
        Strobe: the beat leaving this cycle had a lane clipped by this stage.
    """

    def __init__(self, params: DriftGainParams):
        if not isinstance(params, DriftGainParams):
            raise TypeError(f"params must be a DriftGainParams, not {params!r}")
        self.params = params
        layout = column_values_layout(params.width, params.lanes)
        super().__init__({
            "i_stream": In(stream.Signature(layout)),
            "o_stream": Out(stream.Signature(layout)),
            "gain": Out(ParamReadSignature(signed(params.gain_bits), params.lanes, params.groups)),
            "tile_gain": In(signed(params.gain_bits)),
            "per_column": In(1, init=int(params.per_column)),
            "clipped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params

        # -- stage 0: the operands (the gain is read and selected as the beat enters) -----
        accept = Signal()
        s0_valid = Signal()
        s0_ready = Signal()
        s0_saturated = Signal(p.lanes, reset_less=True)
        s0_last = Signal(reset_less=True)
        group = Signal(range(max(p.groups, 2)))
        group_next = Signal.like(group)
        m.d.comb += [
            self.i_stream.ready.eq(~s0_valid | s0_ready),
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            group_next.eq(Mux(accept, Mux(self.i_stream.payload.last | (group == p.groups - 1), 0, group + 1),
                              group)),
        ]
        m.d.sync += group.eq(group_next)
        m.d.comb += self.gain.addr.eq(group_next)

        with m.If(accept):
            m.d.sync += [
                s0_valid.eq(1),
                s0_saturated.eq(self.i_stream.payload.saturated),
                s0_last.eq(self.i_stream.payload.last),
            ]
        with m.Elif(s0_ready):
            m.d.sync += s0_valid.eq(0)

        # -- stage 1: the products (the operands are the multipliers' registers, loaded as
        # the beat enters; a DSP block's own registers on an ECP5) ------------------------
        p_valid = Signal()
        p_ready = Signal()
        p_products = Signal(data.ArrayLayout(signed(p.width + p.gain_bits), p.lanes))
        p_saturated = Signal(p.lanes, reset_less=True)
        p_last = Signal(reset_less=True)
        m.d.comb += s0_ready.eq(~p_valid | p_ready)
        for lane in range(p.lanes):
            multiplier = RegisteredMultiplier(p.width, p.gain_bits)
            m.submodules[f"multiplier_{lane}"] = multiplier
            m.d.comb += [
                multiplier.a.eq(self.i_stream.payload.data[lane]),
                multiplier.b.eq(Mux(self.per_column, self.gain.data[lane], self.tile_gain)),
                multiplier.load_operands.eq(accept),
                multiplier.load_product.eq(s0_valid & s0_ready),
                p_products[lane].eq(multiplier.product),
            ]
        with m.If(s0_valid & s0_ready):
            m.d.sync += [p_valid.eq(1), p_saturated.eq(s0_saturated), p_last.eq(s0_last)]
        with m.Elif(p_ready):
            m.d.sync += p_valid.eq(0)

        # -- stage 1b: a copy of the products, so the multiplier's outputs see a register
        # with no other load (placed beside the DSP block) --------------------------------
        s1_valid = Signal()
        s1_ready = Signal()
        s1_products = Signal.like(p_products)
        s1_saturated = Signal.like(p_saturated)
        s1_last = Signal.like(p_last)
        m.d.comb += p_ready.eq(~s1_valid | s1_ready)
        with m.If(p_valid & p_ready):
            m.d.sync += [s1_valid.eq(1), s1_products.eq(p_products), s1_saturated.eq(p_saturated),
                         s1_last.eq(p_last)]
        with m.Elif(s1_ready):
            m.d.sync += s1_valid.eq(0)

        # -- stage 2: rounding and saturation ---------------------------------------------
        advance = Signal()
        m.d.comb += [
            s1_ready.eq(~self.o_stream.valid | self.o_stream.ready),
            advance.eq(s1_valid & s1_ready),
        ]
        clipped_lanes = Signal(p.lanes)
        result = Signal(data.ArrayLayout(signed(p.width), p.lanes))
        F = p.gain_frac_bits
        for lane in range(p.lanes):
            # floor(x / 2**F + 1/2) = (x >> F) + bit F-1 of x: one carry chain over the high bits
            rounded = Signal(signed(p.width + p.gain_bits + 1), name=f"rounded_{lane}")
            product = s1_products[lane]
            m.d.comb += rounded.eq((product >> F) + (product[F - 1] if F else 0))
            value, clipped = saturate_signed(m, rounded, p.width, f"rounded_{lane}")
            m.d.comb += [result[lane].eq(value), clipped_lanes[lane].eq(clipped)]

        # the strobe is or'ed from registered per-lane bits as the beat leaves; data
        # registers are reset-less (a reset clears the valid bits), keeping reset nets small
        stage_clipped = Signal(p.lanes, reset_less=True)
        payload = Signal(self.o_stream.payload.shape(), reset_less=True)
        m.d.comb += self.o_stream.payload.eq(payload)
        with m.If(advance):
            m.d.sync += [
                self.o_stream.valid.eq(1),
                payload.data.eq(result),
                payload.saturated.eq(s1_saturated | clipped_lanes),
                payload.last.eq(s1_last),
                stage_clipped.eq(clipped_lanes),
            ]
        with m.Elif(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        m.d.comb += self.clipped.eq(self.o_stream.valid & self.o_stream.ready & stage_clipped.any())
        return m
