"""Batch-norm: folded per-column scale and bias, optional ReLU, requantisation."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.models.batch_norm import BatchNormParams
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.rtl.interfaces import ParamReadSignature
from neurophase.rtl.registered_multiplier import RegisteredMultiplier
from neurophase.rtl.saturation import add_with_carry, saturate_signed

__all__ = ["BatchNorm"]


class BatchNorm(wiring.Component):
    """Folded batch-norm, ReLU and requantisation of each column's value.

    Stages 1 and 2: ``z = sat_W(floor(S*y / 2**Fs + 1/2) + beta)`` with the column's scale
    ``S`` (signed ``scale_bits``, ``Fs = scale_frac_bits`` fractional bits) and bias
    ``beta`` (signed ``bias_bits`` integer), both read per column group through parameter
    ports addressed with the group of the next beat. An operand stage registers the beat
    with its scale and bias, stage 1 the products ``S*y`` (the operand and product
    registers are :class:`RegisteredMultiplier` registers: a DSP block's own on an ECP5),
    a copy stage the products again, stage 2 adds the bias, rounds and saturates.
    Stages 3 and 4:
    ``r = max(z, 0)`` when ``relu``, then ``q = sat_A(floor(r / 2**shift + 1/2))`` (an
    arithmetic right shift rounding half up; ``shift`` values above the accumulator
    width ``W`` act as ``W``): stage 3 registers ``floor(r / 2**shift)`` and the rounding
    bit, stage 4 adds them and saturates. Six register stages, a beat per cycle; the
    first beat may arrive from the second cycle after reset.

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
        saturation (stage 2) / the requantisation (stage 4).
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
        s0 = self._stage1(m, self._operands(m))
        s1 = self._stage2(m, self._retime(m, "p0", s0))
        s2 = self._stage3(m, s1)
        self._stage4(m, s2)
        return m

    @staticmethod
    def _registers(name: str, **shapes) -> dict:
        """The registers of a stage by role, plus its ``valid`` and ``ready`` (the stage may
        hand its beat on; driven by the next stage)."""
        regs = {"valid": Signal(name=f"{name}_valid"), "ready": Signal(name=f"{name}_ready")}
        # reset-less: a reset clears the valid bits only, which keeps the reset net small
        regs.update({role: Signal(shape, name=f"{name}_{role}", reset_less=True) for role, shape in shapes.items()})
        return regs

    @staticmethod
    def _take(m, prev: dict, valid, ready):
        """Handshake of the stage whose ``valid``/``ready`` are given with the stage before:
        returns ``load``, high when the stage takes ``prev``'s beat this cycle."""
        load = Signal(name=f"{prev['valid'].name}_taken")
        m.d.comb += [prev["ready"].eq(~valid | ready), load.eq(prev["valid"] & prev["ready"])]
        with m.If(load):
            m.d.sync += valid.eq(1)
        with m.Elif(ready):
            m.d.sync += valid.eq(0)
        return load

    def _operands(self, m) -> dict:
        """The beat enters: its values and its column group's scale into the multipliers'
        operand registers, the other fields into ordinary ones."""
        p = self.params
        W = p.width
        s = self._registers("sin", bias=data.ArrayLayout(signed(p.bias_bits), p.lanes), saturated=p.lanes,
                            last=1, shift=range(W + 1), relu=1)
        beat = self.i_stream
        group = Signal(range(max(p.groups, 2)))
        group_next = Signal.like(group)
        accept = Signal()
        m.d.comb += [
            beat.ready.eq(~s["valid"] | s["ready"]),
            accept.eq(beat.valid & beat.ready),
            group_next.eq(Mux(accept, Mux(beat.payload.last | (group == p.groups - 1), 0, group + 1), group)),
            self.scale.addr.eq(group_next),
            self.bias.addr.eq(group_next),
        ]
        m.d.sync += group.eq(group_next)
        s["multipliers"] = []
        for lane in range(p.lanes):
            multiplier = RegisteredMultiplier(W, p.scale_bits)
            m.submodules[f"multiplier_{lane}"] = multiplier
            m.d.comb += [multiplier.a.eq(beat.payload.data[lane]), multiplier.b.eq(self.scale.data[lane]),
                         multiplier.load_operands.eq(accept)]
            s["multipliers"].append(multiplier)
        with m.If(accept):
            m.d.sync += [
                s["valid"].eq(1),
                s["bias"].eq(self.bias.data),
                s["saturated"].eq(beat.payload.saturated),
                s["last"].eq(beat.payload.last),
                s["shift"].eq(Mux(self.shift > W, W, self.shift) if (1 << p.shift_bits) - 1 > W else self.shift),
                s["relu"].eq(self.relu),
            ]
        with m.Elif(s["ready"]):
            m.d.sync += s["valid"].eq(0)
        return s

    def _stage1(self, m, operands: dict) -> dict:
        """Products ``S*y`` (the multipliers' product registers); the other fields follow."""
        p = self.params
        s = self._registers("s0", bias=data.ArrayLayout(signed(p.bias_bits), p.lanes), saturated=p.lanes, last=1,
                            shift=range(p.width + 1), relu=1)
        load = self._take(m, operands, s["valid"], s["ready"])
        s["products"] = Signal(data.ArrayLayout(signed(p.width + p.scale_bits), p.lanes), name="s0_products")
        for lane, multiplier in enumerate(operands["multipliers"]):
            m.d.comb += [multiplier.load_product.eq(load), s["products"][lane].eq(multiplier.product)]
        with m.If(load):
            m.d.sync += [s[role].eq(operands[role]) for role in ("bias", "saturated", "last", "shift", "relu")]
        return s

    def _retime(self, m, name: str, prev: dict) -> dict:
        """A copy of ``prev``'s registers one cycle later: after a multiplier, so its
        products have a register with no other load (placed beside the DSP block)."""
        shapes = {role: sig.shape() for role, sig in prev.items() if role not in ("valid", "ready")}
        s = self._registers(name, **shapes)
        load = self._take(m, prev, s["valid"], s["ready"])
        with m.If(load):
            m.d.sync += [s[role].eq(prev[role]) for role in shapes]
        return s

    def _stage2(self, m, s0: dict) -> dict:
        """``z = sat_W(floor(S*y / 2**Fs + 1/2) + beta)``, computed as
        ``(S*y >> Fs) + beta + bit Fs-1 of S*y`` (a single carry chain) and saturated by bit tests."""
        p = self.params
        W, Fs = p.width, p.scale_frac_bits
        s = self._registers("s1", z=data.ArrayLayout(signed(W), p.lanes), saturated=p.lanes, clipped=p.lanes,
                            last=1, shift=range(W + 1), relu=1)
        load = self._take(m, s0, s["valid"], s["ready"])
        wide = signed(max(W + p.scale_bits - Fs, p.bias_bits) + 2)
        clipped = Signal(p.lanes)
        with m.If(load):
            m.d.sync += [s[role].eq(s0[role]) for role in ("last", "shift", "relu")]
            m.d.sync += [s["saturated"].eq(s0["saturated"] | clipped), s["clipped"].eq(clipped)]
        for lane in range(p.lanes):
            products = s0["products"][lane]
            total = Signal(wide, name=f"scaled_{lane}")
            m.d.comb += total.eq(add_with_carry(products >> Fs, s0["bias"][lane], products[Fs - 1] if Fs else 0))
            z, clipped_lane = saturate_signed(m, total, W, f"scaled_{lane}")
            m.d.comb += clipped[lane].eq(clipped_lane)
            with m.If(load):
                m.d.sync += s["z"][lane].eq(z)
        return s

    def _stage3(self, m, s1: dict) -> dict:
        """ReLU, then ``floor(r / 2**shift)`` and the rounding bit (bit ``shift-1`` of ``r``):
        ``floor(r / 2**shift + 1/2)`` is their sum."""
        p = self.params
        W = p.width
        s = self._registers("s2", shifted=data.ArrayLayout(signed(W), p.lanes), round=p.lanes, saturated=p.lanes,
                            bn_clipped=1, last=1)
        load = self._take(m, s1, s["valid"], s["ready"])
        with m.If(load):
            m.d.sync += [s["saturated"].eq(s1["saturated"]), s["last"].eq(s1["last"]),
                         s["bn_clipped"].eq(s1["clipped"].any())]
        for lane in range(p.lanes):
            z = s1["z"][lane]
            rectified = Signal(signed(W), name=f"rectified_{lane}")
            m.d.comb += rectified.eq(Mux(s1["relu"] & z[W - 1], 0, z))
            with m.If(load):
                m.d.sync += [
                    s["shifted"][lane].eq(rectified >> s1["shift"]),
                    # bit shift-1 of r, 0 for shift 0
                    s["round"][lane].eq(Cat(Const(0, 1), rectified).bit_select(s1["shift"], 1)),
                ]
        return s

    def _stage4(self, m, s2: dict) -> None:
        """``q = sat_A(shifted + round)`` into the output registers; the clip strobes are
        or'ed from registered per-lane bits as the beat leaves."""
        p = self.params
        W, A = p.width, p.out_bits
        out = self.o_stream
        payload = Signal(out.payload.shape(), reset_less=True)
        m.d.comb += out.payload.eq(payload)
        requant_lanes = Signal(p.lanes, reset_less=True)
        bn_clipped = Signal(reset_less=True)
        load = self._take(m, s2, out.valid, out.ready)
        clipped = Signal(p.lanes)
        with m.If(load):
            m.d.sync += [
                payload.saturated.eq(s2["saturated"] | clipped),
                payload.last.eq(s2["last"]),
                requant_lanes.eq(clipped),
                bn_clipped.eq(s2["bn_clipped"]),
            ]
        for lane in range(p.lanes):
            rounded = Signal(signed(W + 1), name=f"requant_{lane}")
            m.d.comb += rounded.eq(s2["shifted"][lane] + s2["round"][lane])
            q, clipped_lane = saturate_signed(m, rounded, A, f"requant_{lane}")
            m.d.comb += clipped[lane].eq(clipped_lane)
            with m.If(load):
                m.d.sync += payload.data[lane].eq(q)
        transfer = out.valid & out.ready
        m.d.comb += [
            self.bn_clipped.eq(transfer & bn_clipped),
            self.requant_clipped.eq(transfer & requant_lanes.any()),
        ]

