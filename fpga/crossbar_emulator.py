"""Digital crossbar emulator: answers the tile's ADC port from conductance codes in block RAM."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from neurophase.models.adc_interface import AdcInterfaceParams
from neurophase.models.crossbar_emulator import (
    LFSR_TAPS, LFSR_ZERO_SEED, NOISE_MAX_BITS, SCALE_BITS, SCALE_FRAC_BITS, EmulatorParams, lfsr_seed,
)
from neurophase.rtl.adc_interface import AdcPortSignature
from neurophase.rtl.interfaces import ParamReadSignature
from neurophase.rtl.saturation import saturate_signed

#: Cycles from ``weight_rd.addr`` to its data (block RAM plus output register, as
#: :class:`neurophase.fpga.weight_memory.WeightMemory` delivers it); INPUT reads take one.
WEIGHT_LATENCY = 2

__all__ = ["CrossbarEmulator", "emulator_adc_params"]


def emulator_adc_params(params: EmulatorParams) -> AdcInterfaceParams:
    """The ADC-port sizes the emulator answers: the tile's, for the same configuration."""
    return AdcInterfaceParams(adc_bits=params.adc_bits, columns=params.cols,
                              columns_per_adc=params.columns_per_adc, lanes=params.lanes,
                              slices=params.slices, planes=params.planes)


class CrossbarEmulator(wiring.Component):
    """Stands in for the analog array and its column ADCs on the FPGA.

    Bit-true with :class:`neurophase.models.crossbar_emulator.CrossbarEmulatorModel`
    (see that module for the arithmetic). On ``adc.start`` the emulator steps its noise
    LFSRs, then walks the rows of the requested slice, one per cycle (time-multiplexed
    column sums: the WEIGHT memory delivers a whole row of conductance-code pairs per
    read, the INPUT memory that row's activation); every column adds ``G+ - G-`` when the
    activation's bit ``plane`` is set. The sums of the requested mux phase, plus noise,
    then pass one per cycle through a single pipelined multiplier (the scale factor) and
    saturate to the ADC width. ``adc.done`` follows ``rows + codes + 8`` cycles after
    ``start``; ``adc.cancel`` drops the conversion.

    Parameters
    ----------
    params : EmulatorParams
    input_latency : int
        Cycles from ``input_rd.addr`` to its data: 1 (a memory) or 2 (a pipelined
        multiplexer over a register array, as the chip top's row buffer).

    Members
    -------
    adc : In(AdcPortSignature(emulator_adc_params(params)))
        The tile's ADC port.
    weight_rd : Out(ParamReadSignature(unsigned(2 * conductance_bits), cols, slices * rows))
        Read port of the WEIGHT memory (a row of code pairs per group); data follows the
        address by ``WEIGHT_LATENCY`` = 2 cycles.
    input_rd : Out(ParamReadSignature(input shape, 1, rows))
        Read port of the INPUT array; data follows the address by ``input_latency`` cycles.
    scale : In(SCALE_BITS)
        Unsigned drift x range factor, ``2**SCALE_FRAC_BITS`` is 1.0.
    noise_bits : In(4)
        Noise width n (0: no noise; values above NOISE_MAX_BITS act as NOISE_MAX_BITS);
        decoded into a register, so a change applies from the next cycle.
    seed : In(16)
        Noise seed loaded by ``reseed``.
    reseed : In(1)
        Strobe: load every LFSR from ``seed``.
    conversions : Out(32)
        Conversions answered (wrapping).
    busy : Out(1)
        A conversion is in progress.

    Raises
    ------
    TypeError
        When ``params`` is not an EmulatorParams.
    ValueError
        When ``input_latency`` is not 1 or 2.
    """

    def __init__(self, params: EmulatorParams, input_latency: int = 1):
        if not isinstance(params, EmulatorParams):
            raise TypeError(f"params must be an EmulatorParams, not {params!r}")
        if isinstance(input_latency, bool) or input_latency not in (1, 2):
            raise ValueError(f"input_latency must be 1 or 2 cycles, not {input_latency!r}")
        self.params = params
        self.input_latency = input_latency
        p = params
        input_shape = signed(p.input_bits) if p.input_signed else unsigned(p.input_bits)
        super().__init__({
            "adc": In(AdcPortSignature(emulator_adc_params(p))),
            "weight_rd": Out(ParamReadSignature(unsigned(2 * p.conductance_bits), p.cols, p.slices * p.rows)),
            "input_rd": Out(ParamReadSignature(input_shape, 1, p.rows)),
            "scale": In(SCALE_BITS, init=1 << SCALE_FRAC_BITS),
            "noise_bits": In(4),
            "seed": In(16, init=1),
            "reseed": In(1),
            "conversions": Out(32),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        n = p.codes_per_conversion
        cb = p.conductance_bits
        sum_shape = signed(p.sum_bits)
        adc = self.adc

        # -- noise: one 16-bit Galois LFSR per code -------------------------------------
        lfsr = [Signal(16, name=f"lfsr_{i}", init=lfsr_seed(1, i)) for i in range(n)]
        start = Signal()
        accepting = Signal()
        m.d.comb += start.eq(adc.start & ~adc.cancel)
        for i, state in enumerate(lfsr):
            with m.If(self.reseed):
                seeded = self.seed ^ lfsr_seed(0, i)  # seed ^ K_i
                m.d.sync += state.eq(Mux(seeded == 0, LFSR_ZERO_SEED, seeded))
            with m.Elif(start & accepting):
                m.d.sync += state.eq(Cat(state[1:], Const(0, 1)) ^ Mux(state[0], LFSR_TAPS, 0))
        noise_bits = Signal(range(NOISE_MAX_BITS + 1))
        m.d.comb += noise_bits.eq(Mux(self.noise_bits > NOISE_MAX_BITS, NOISE_MAX_BITS, self.noise_bits))
        # registered: derived from a register the host sets between conversions (the
        # noise is sampled in LOAD, many cycles after a conversion starts)
        noise_mask = Signal(NOISE_MAX_BITS)
        noise_half = Signal(NOISE_MAX_BITS)
        with m.Switch(noise_bits):
            for bits in range(NOISE_MAX_BITS + 1):
                with m.Case(bits):
                    m.d.sync += [noise_mask.eq((1 << bits) - 1), noise_half.eq((1 << bits) >> 1)]

        # -- conversion request ----------------------------------------------------------
        slice_ = Signal.like(adc.slice)
        plane = Signal.like(adc.plane)
        phase = Signal.like(adc.phase)
        row = Signal(range(p.rows + 1))
        sums = [Signal(sum_shape, name=f"sum_{c}") for c in range(p.cols)]

        # read issued at t: INPUT data at t+1 (its plane bit registered) or at t+2, WEIGHT
        # data at t+2, masked differences registered at t+3, summed then
        read_valid = Signal()
        weight_valid = Signal()
        diff_valid = Signal()
        diffs = [Signal(signed(cb + 1), name=f"diff_{c}") for c in range(p.cols)]
        m.d.comb += [
            self.weight_rd.addr.eq(slice_ * p.rows + row),
            self.input_rd.addr.eq(row),
        ]
        activation = self.input_rd.data[0].as_unsigned()
        bit = Signal()
        if self.input_latency == 1:
            m.d.sync += bit.eq(activation.bit_select(plane, 1))
        else:
            m.d.comb += bit.eq(activation.bit_select(plane, 1))
        m.d.sync += [weight_valid.eq(read_valid), diff_valid.eq(weight_valid)]
        for c in range(p.cols):
            pair = self.weight_rd.data[c]
            g_plus, g_minus = pair[:cb], pair[cb:2 * cb]
            m.d.sync += diffs[c].eq(Mux(bit, g_plus - g_minus, 0))
            with m.If(diff_valid):
                m.d.sync += sums[c].eq(sums[c] + diffs[c])

        # -- scaling: one code per cycle through a pipelined multiplier ---------------------
        pend_sum = [Signal(sum_shape, name=f"pend_sum_{i}") for i in range(n)]
        pend_noise = [Signal(signed(NOISE_MAX_BITS + 1), name=f"pend_noise_{i}") for i in range(n)]
        feed = Signal(range(n + 1))
        mult_valid = Signal()
        mult_a = Signal(sum_shape)
        product_valid = Signal()
        product = Signal(signed(p.sum_bits + SCALE_BITS + 1))
        scale_q = Signal(SCALE_BITS)
        collected = Signal(range(n + 1))
        codes = Signal(data.ArrayLayout(signed(p.adc_bits), n))

        # multiplier, then rounding, then saturation: one register after each (100 MHz)
        rounded = Signal(signed(p.sum_bits + SCALE_BITS + 1 - SCALE_FRAC_BITS))
        rounded_valid = Signal()
        m.d.sync += [
            mult_valid.eq(0),
            product_valid.eq(mult_valid),
            product.eq(mult_a * scale_q),
            rounded_valid.eq(product_valid),
            # floor(x / 2**F + 1/2) = (x >> F) + bit F-1 of x
            rounded.eq((product >> SCALE_FRAC_BITS) + product[SCALE_FRAC_BITS - 1]),
        ]
        code, _ = saturate_signed(m, rounded, p.adc_bits, "code")
        scaling = Signal()
        with m.If(rounded_valid & scaling):
            m.d.sync += [codes.as_value().eq(Cat(codes.as_value()[p.adc_bits:], code.as_signed()[:p.adc_bits])),
                         collected.eq(collected + 1)]

        m.d.comb += adc.codes.eq(codes)

        def cancel_to_idle():
            with m.If(adc.cancel):
                m.d.sync += [read_valid.eq(0), mult_valid.eq(0)]
                m.next = "IDLE"

        def accept_request():
            with m.If(start):
                m.d.sync += [slice_.eq(adc.slice), plane.eq(adc.plane), phase.eq(adc.phase), row.eq(0),
                             read_valid.eq(0), collected.eq(0), feed.eq(0), scale_q.eq(self.scale)]
                m.next = "ROWS"
            # the column sums are cleared in every state that can accept a request, whether or
            # not one comes (they were copied out in LOAD), so clearing them needs no `start`
            m.d.sync += [s.eq(0) for s in sums]

        with m.FSM(name="emulator_fsm"):
            with m.State("IDLE"):
                m.d.comb += accepting.eq(1)
                accept_request()
            with m.State("ROWS"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += read_valid.eq(row < p.rows)
                with m.If(row < p.rows):
                    m.d.sync += row.eq(row + 1)
                with m.Elif(~read_valid & ~weight_valid & ~diff_valid):
                    m.next = "LOAD"
                cancel_to_idle()
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                # the requested phase's columns (i*M + phase) and each code's noise
                for i in range(n):
                    with m.Switch(phase):
                        for k in range(p.columns_per_adc):
                            with m.Case(k):
                                m.d.sync += pend_sum[i].eq(sums[i * p.columns_per_adc + k])
                    # uniform in [-2**(n-1), 2**(n-1) - 1]; the low bits of the difference are exact
                    m.d.sync += pend_noise[i].eq((lfsr[i][:NOISE_MAX_BITS] & noise_mask) - noise_half)
                m.next = "SCALE"
                cancel_to_idle()
            with m.State("SCALE"):
                m.d.comb += [self.busy.eq(1), scaling.eq(1)]
                with m.If(feed < n):
                    m.d.sync += [mult_a.eq(pend_sum[0] + pend_noise[0]), mult_valid.eq(1), feed.eq(feed + 1)]
                    for i in range(n - 1):
                        m.d.sync += [pend_sum[i].eq(pend_sum[i + 1]), pend_noise[i].eq(pend_noise[i + 1])]
                with m.If((collected == n - 1) & rounded_valid):
                    m.next = "DONE"
                cancel_to_idle()
            with m.State("DONE"):
                # done must not depend on cancel: the tile derives cancel from done (timeout)
                m.d.comb += adc.done.eq(1)
                m.d.sync += self.conversions.eq(self.conversions + 1)
                m.next = "IDLE"
                # the next request may come in the same cycle as this done
                m.d.comb += accepting.eq(1)
                accept_request()
        return m
