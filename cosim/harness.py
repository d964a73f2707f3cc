"""Simulation-only wrapper of the tile top: the HDL half of the crossbar bridge.

:class:`TileCosimHarness` puts the generated :class:`~neurophase.rtl.tile.Tile` under a
thin shell that keeps every per-cycle activity in HDL, so the Python half of the bridge
(:mod:`neurophase.cosim.bridge`) acts once per MVM:

* an **ADC server**: on each ``adc.start`` it latches that conversion's codes (its slice,
  plane and phase) from ``mvm_codes`` — the codes of every slice, bit-plane and column of
  the MVM, loaded by the bridge before the MVM starts — counts the configured latency and
  answers with a one-cycle ``done`` carrying them. Timing equals the Python ADC responder's:
  a ``start`` sampled in cycle c gives ``done`` in cycle c + latency; ``cancel`` drops it.
* a **result capture**: every ``o_stream`` transfer is stored by beat index; the final beat
  (``last``) pulses ``result_strobe`` and increments ``result_count``.
* its **own clock** (:data:`SIM_CLOCK_MODULE`, an output ``clk``): the simulator toggles it
  without waking cocotb's scheduler, which halves the cost of a simulated cycle against a
  clock driven from Python through the GPI.
* **registered inputs**: logic fed by a top-level input is re-evaluated by Verilator on
  every evaluation (its input-combinational region), and every register's next value
  depends on the reset; a register in front of the input cuts that cone. Reset,
  ``o_stream__ready`` and the external ADC port therefore act one cycle after Python
  changes them. Not registered: the CSR bus (a register would break its handshake) and
  ``mvm_codes`` (the bridge writes it just before the MVM starts).

With ``adc_external`` high the ADC server is bypassed and the tile's ADC port is answered
through the harness ports ``adc__done`` / ``adc__codes`` instead: the naive, per-cycle
Python bridge (:mod:`neurophase.cosim.naive_bridge`) uses that, in the same build.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.rtl.adc_interface import AdcPortSignature
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.rtl.tile import Tile
from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["TileCosimHarness", "mvm_codes_layout", "CLOCK_PERIOD_NS", "SIM_CLOCK_MODULE", "sim_clock_verilog"]

#: Period of the clock the harness generates itself, ns.
CLOCK_PERIOD_NS = 10
#: Name of the Verilog module that generates the harness clock.
SIM_CLOCK_MODULE = "neurophase_sim_clock"


def sim_clock_verilog(period_ns: int = CLOCK_PERIOD_NS) -> str:
    """The clock generator instantiated by the harness (simulation only: a delay loop, so
    Verilator builds it with ``--timing``; time unit 1 ns from the build's timescale)."""
    if period_ns < 2 or period_ns % 2:
        raise ValueError(f"period_ns must be an even number of ns >= 2, not {period_ns!r}")
    return (f"module {SIM_CLOCK_MODULE}(clk);\n  output reg clk;\n  initial clk = 1'b0;\n"
            f"  always #{period_ns // 2} clk = ~clk;\nendmodule\n")


def mvm_codes_layout(cfg: ChipConfig) -> data.ArrayLayout:
    """Layout of ``mvm_codes``: [slice][plane][column] signed ``adc.bits`` codes."""
    code = signed(cfg.adc.bits)
    return data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(code, cfg.tile.cols), cfg.input.planes),
                            cfg.weights.slices)


class TileCosimHarness(wiring.Component):
    """The tile with an HDL ADC server and a result capture (simulation only).

    Parameters
    ----------
    cfg : ChipConfig
        Sizes the tile, the code store and the capture.

    Members
    -------
    clk : Out(1)
        The harness clock (period :data:`CLOCK_PERIOD_NS`), generated inside the model.
    rst : In(1)
        Synchronous reset of everything behind it, registered (acts one cycle later).
    bus : In(WishboneSignature(regmap.addr_width))
        The tile's CSR bus.
    irq : Out(1)
        The tile's interrupt.
    adc : Out(AdcPortSignature)
        The tile's ADC port; ``done``/``codes`` are used only when ``adc_external`` is high,
        and registered (the tile sees them one cycle after Python writes them).
    adc_external : In(1)
        1: Python answers the ADC port (naive bridge); 0: the HDL ADC server does. Registered.
    mvm_codes : In(mvm_codes_layout(cfg))
        Codes of the MVM in progress, for the HDL ADC server.
    o_stream : Out(stream.Signature(column_values_layout(activation_bits, lanes)))
        The tile's result stream (``ready`` from outside).
    result : Out(ArrayLayout(column_values_layout(...), groups))
        Payloads of the last completed MVM, by beat.
    result_strobe : Out(1)
        One cycle after an MVM's last beat was captured.
    result_count, conversions : Out(32)
        MVMs captured and conversions served by the HDL ADC server since reset.
    """

    def __init__(self, cfg: ChipConfig):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        self.cfg = cfg
        self.tile = Tile(cfg)
        params = self.tile.params
        self.beat_layout = column_values_layout(params.batch_norm.out_bits, params.lanes)
        super().__init__({
            "clk": Out(1),
            "rst": In(1),
            "bus": In(WishboneSignature(self.tile.regmap.addr_width)),
            "irq": Out(1),
            "adc": Out(AdcPortSignature(params.adc)),
            "adc_external": In(1),
            "mvm_codes": In(mvm_codes_layout(cfg)),
            "o_stream": Out(stream.Signature(self.beat_layout)),
            "result": Out(data.ArrayLayout(self.beat_layout, params.groups)),
            "result_strobe": Out(1),
            "result_count": Out(32),
            "conversions": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        self._clock_and_reset(m)
        m.submodules.tile = tile = self.tile
        wiring.connect(m, wiring.flipped(self.bus), tile.bus)
        m.d.comb += [
            self.o_stream.payload.eq(tile.o_stream.payload),
            self.o_stream.valid.eq(tile.o_stream.valid),
            self.irq.eq(tile.irq),
        ]
        m.d.inputs += tile.o_stream.ready.eq(self.o_stream.ready)
        self._adc_server(m, tile.adc)
        self._result_capture(m, tile.o_stream)
        return m

    def _clock_and_reset(self, m: Module) -> None:
        """``sync`` (the tile's domain) and the reset-less ``inputs`` domain that registers
        top-level inputs, both on the generated clock; ``sync`` reset by the registered ``rst``."""
        clock, reset = Signal(), Signal()
        m.submodules.clock = Instance(SIM_CLOCK_MODULE, o_clk=clock)
        m.domains.inputs = ClockDomain("inputs", reset_less=True, local=True)
        m.domains.sync = ClockDomain("sync", local=True)
        m.d.comb += [ClockSignal("inputs").eq(clock), ClockSignal("sync").eq(clock), ResetSignal("sync").eq(reset),
                     self.clk.eq(clock)]
        m.d.inputs += reset.eq(self.rst)

    def _adc_server(self, m: Module, port) -> None:
        p = self.tile.params.adc
        latency = self.cfg.adc.latency_cycles
        pending = Signal()
        remaining = Signal(range(latency + 1))
        served_done = Signal()
        served_codes = Signal.like(port.codes)
        external, external_done, external_codes = Signal(), Signal(), Signal.like(port.codes)
        m.d.inputs += [external.eq(self.adc_external), external_done.eq(self.adc.done),
                       external_codes.eq(self.adc.codes)]
        m.d.comb += [
            self.adc.start.eq(port.start),
            self.adc.cancel.eq(port.cancel),
            self.adc.slice.eq(port.slice),
            self.adc.plane.eq(port.plane),
            self.adc.phase.eq(port.phase),
            served_done.eq(pending & (remaining == 0)),
            port.done.eq(Mux(external, external_done, served_done)),
            port.codes.eq(Mux(external, external_codes, served_codes)),
        ]
        with m.If(port.start):
            self._latch_codes(m, port, served_codes, p.columns_per_adc, p.codes_per_conversion)
        with m.If(port.start & ~external):
            m.d.sync += [pending.eq(1), remaining.eq(latency - 1), self.conversions.eq(self.conversions + 1)]
        with m.Elif(port.cancel | served_done):
            m.d.sync += pending.eq(0)
        with m.Elif(pending & (remaining != 0)):
            m.d.sync += remaining.eq(remaining - 1)

    def _latch_codes(self, m: Module, port, served_codes, columns_per_adc: int, codes_per_conversion: int) -> None:
        """Latch the requested conversion's codes when it starts (they answer at ``done``).

        Selecting in the synchronous domain, only on a ``start``, keeps Verilator from
        re-evaluating a variable shift of the 16 kbit code store on every evaluation."""
        cfg = self.cfg
        plane_bits = cfg.tile.cols * cfg.adc.bits
        flat_codes = self.mvm_codes.as_value()
        for s in range(cfg.weights.slices):
            for b in range(cfg.input.planes):
                base = (s * cfg.input.planes + b) * plane_bits
                for k in range(columns_per_adc):
                    with m.If((port.slice == s) & (port.plane == b) & (port.phase == k)):
                        m.d.sync += [served_codes[i].eq(flat_codes[base + (i * columns_per_adc + k) * cfg.adc.bits:][
                                                        :cfg.adc.bits]) for i in range(codes_per_conversion)]

    def _result_capture(self, m: Module, out) -> None:
        groups = self.tile.params.groups
        beat = Signal(range(max(groups, 2)))
        m.d.sync += self.result_strobe.eq(0)
        with m.If(out.valid & out.ready):
            with m.Switch(beat):
                for g in range(groups):
                    with m.Case(g):
                        m.d.sync += self.result[g].eq(out.payload)
            with m.If(out.payload.last):
                m.d.sync += [beat.eq(0), self.result_strobe.eq(1), self.result_count.eq(self.result_count + 1)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
