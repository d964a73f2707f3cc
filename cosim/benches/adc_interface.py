"""cocotb regression of the generated ADC-interface Verilog against the golden model,
with the ADC responder of :mod:`neurophase.cosim.adc_responder`.

``NEUROPHASE_PARAMS``: ``params`` (AdcInterfaceParams fields), ``count`` (random MVMs),
``latency`` (ADC cycles) and ``stall`` (probability of back-pressure).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from amaranth.hdl import signed
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from neurophase.cosim.adc_responder import AdcResponder
from neurophase.cosim.param_port import ParamPortResponder
from neurophase.cosim.scoreboard import Scoreboard
from neurophase.cosim.streams import StreamMonitor, StreamSink
from neurophase.models.adc_interface import AdcInterfaceParams, adc_interface_beats, adc_trim, conversion_order
from neurophase.models.datapath_stimulus import adc_interface_cases
from neurophase.rtl.adc_interface import adc_codes_layout


def _settings():
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return AdcInterfaceParams(**raw.get("params", {})), raw


class AdcInterfaceBench:
    """ADC responder, trim-port responder, sink, monitor, strobe recorder, scoreboard."""

    def __init__(self, dut, params: AdcInterfaceParams, latency: int, *, stall=0.0):
        self.dut, self.params, self.latency = dut, params, latency
        self.rng = random.Random(cocotb.RANDOM_SEED)
        layout = adc_codes_layout(params)
        self.beats_per_mvm = params.slices * params.planes * params.groups
        self.adc = AdcResponder(dut, dut.clk, params, latency)
        self.trims = ParamPortResponder(dut, "trim", dut.clk, signed(params.adc_bits), params.lanes,
                                        lambda: bool(dut.o_stream__valid.value and dut.o_stream__ready.value),
                                        self.beats_per_mvm, held=lambda: bool(dut.o_stream__valid.value))
        self.sink = StreamSink(dut, "o_stream", layout, dut.clk, rng=self.rng, stall=stall)
        self.scoreboard = Scoreboard("adc_interface")
        self.monitor = StreamMonitor(dut, "o_stream", layout, dut.clk, self.on_beat)
        self.last_beat_cycle = 0
        self.timeouts: list[int] = []
        self.trim_strobes = 0
        self.expected_trim_strobes = 0

    def on_beat(self, beat):
        self.last_beat_cycle = self.adc.cycle
        self.scoreboard.observe(beat)

    async def record_strobes(self):
        while True:
            await ReadOnly()
            if int(self.dut.timeout.value):
                self.timeouts.append(self.adc.cycle)
            self.trim_strobes += int(self.dut.trim_saturated.value)
            await RisingEdge(self.dut.clk)

    async def start(self, timeout_cycles: int = 1000):
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        for name in ("start", "abort_mvm"):
            getattr(self.dut, name).value = 0
        self.dut.timeout_cycles.value = timeout_cycles
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        for coro in (self.adc.run(), self.trims.run(), self.sink.run(), self.monitor.run(), self.record_strobes()):
            cocotb.start_soon(coro)
        await ClockCycles(self.dut.clk, 2)

    async def pulse(self, name: str):
        getattr(self.dut, name).value = 1
        await RisingEdge(self.dut.clk)
        getattr(self.dut, name).value = 0

    async def wait_idle(self, signal: str = "running", limit: int = 1_000_000):
        for _ in range(limit):
            await ReadOnly()
            if not int(getattr(self.dut, signal).value):
                await RisingEdge(self.dut.clk)
                return
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"{signal} still high after {limit} cycles")

    async def run_mvm(self, name, codes, trims):
        """Start one MVM as soon as the previous one's conversions are in (its codes may
        still be draining) and queue its expected beats."""
        await self.wait_idle("running")
        self.adc.codes = codes
        self.trims.add_table(trims)
        self.scoreboard.expect(adc_interface_beats(self.params, codes, trims), tag=name)
        _, clipped = adc_trim(self.params, codes, trims)
        self.expected_trim_strobes += int(clipped.reshape(-1, self.params.lanes).any(axis=1).sum())
        await self.pulse("start")

    async def finish(self):
        await self.wait_idle("busy")
        await ClockCycles(self.dut.clk, 4)
        assert self.scoreboard.ok, self.scoreboard.report()
        assert self.trim_strobes == self.expected_trim_strobes, \
            f"trim_saturated strobes {self.trim_strobes} != {self.expected_trim_strobes}"
        self.dut._log.info(self.scoreboard.report())


@cocotb.test()
async def random_and_corner_mvms(dut):
    """Corner cases and seeded random MVMs with random back-pressure; request order checked."""
    params, raw = _settings()
    bench = AdcInterfaceBench(dut, params, raw.get("latency", 4), stall=raw.get("stall", 0.3))
    await bench.start()
    cases = adc_interface_cases(params, cocotb.RANDOM_SEED, raw.get("count", 100))
    for name, codes, trims in cases:
        await bench.run_mvm(name, codes, trims)
    await bench.finish()
    order = conversion_order(params) * len(cases)
    assert [r[1:] for r in bench.adc.requests] == order, "conversions requested out of order"
    assert not bench.timeouts and not bench.adc.cancels


@cocotb.test()
async def throughput_at_adc_bound(dut):
    """Without back-pressure every conversion starts in the cycle of the previous done,
    and an MVM ends within groups + 2 cycles of its last done."""
    params, raw = _settings()
    latency = raw.get("latency", 4)
    bench = AdcInterfaceBench(dut, params, latency)
    await bench.start()
    n = params.conversions_per_mvm
    for name, codes, trims in adc_interface_cases(params, cocotb.RANDOM_SEED + 1, 3)[-3:]:
        first = len(bench.adc.requests)
        await bench.run_mvm(name, codes, trims)
        await bench.wait_idle("busy")
        cycles = [r[0] for r in bench.adc.requests[first:first + n]]
        gaps = {b - a for a, b in zip(cycles, cycles[1:])}
        assert gaps <= {latency}, f"conversions {latency} cycles apart expected, gaps {sorted(gaps)}"
        last_done = cycles[-1] + latency
        assert bench.last_beat_cycle - last_done <= params.groups + 2, \
            f"last beat {bench.last_beat_cycle - last_done} cycles after the last done"
    await bench.finish()


@cocotb.test()
async def adc_timeout_returns_to_idle(dut):
    """An ADC that never answers: timeout strobe exactly timeout_cycles after the start,
    cancel in the same cycle, idle the next; a done arriving exactly at the limit is accepted."""
    params, raw = _settings()
    latency = raw.get("latency", 4)
    bench = AdcInterfaceBench(dut, params, latency)
    limit = latency + 3
    await bench.start(timeout_cycles=limit)
    (name, codes, trims), (name2, codes2, trims2) = adc_interface_cases(params, cocotb.RANDOM_SEED + 2, 2)[-2:]
    bench.adc.silent = True
    bench.adc.codes = codes
    bench.trims.add_table(trims)
    await bench.pulse("start")
    await ClockCycles(dut.clk, limit + 4)
    assert len(bench.timeouts) == 1, f"timeout strobes at {bench.timeouts}"
    assert bench.timeouts[0] == bench.adc.requests[0][0] + limit
    assert bench.adc.cancels == bench.timeouts
    await ReadOnly()
    assert not int(dut.busy.value) and not int(dut.running.value)
    await RisingEdge(dut.clk)
    bench.adc.silent = False
    bench.trims.beats = 0
    bench.trims.tables.clear()
    dut.timeout_cycles.value = latency
    await bench.run_mvm(name2, codes2, trims2)
    await bench.finish()
    assert len(bench.timeouts) == 1


@cocotb.test()
async def abort_mid_mvm(dut):
    """An abort mid-MVM cancels the conversion in flight and drops buffered codes; the
    next MVM is exact."""
    params, raw = _settings()
    latency = raw.get("latency", 4)
    bench = AdcInterfaceBench(dut, params, latency, stall=0.5)
    await bench.start()
    (_, codes, trims), (name, codes2, trims2) = adc_interface_cases(params, cocotb.RANDOM_SEED + 3, 2)[-2:]
    bench.adc.codes = codes
    bench.sink.stall = 1.0
    await bench.pulse("start")
    await ClockCycles(dut.clk, latency * params.columns_per_adc * 2 + 1)
    await bench.pulse("abort_mvm")
    await ReadOnly()
    assert not int(dut.busy.value), "busy after abort"
    await RisingEdge(dut.clk)
    assert bench.adc.cancels, "abort must cancel the conversion in flight"
    bench.sink.stall = 0.3
    bench.trims.tables.clear()
    bench.trims.beats = 0
    await bench.run_mvm(name, codes2, trims2)
    await bench.finish()
