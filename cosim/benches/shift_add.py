"""cocotb regression of the generated shift-and-add Verilog against the golden model.

Parameters come from the runner as JSON in ``NEUROPHASE_PARAMS``: ``params`` (the
ShiftAddParams fields), ``count`` (random MVMs), ``idle`` and ``stall`` (probabilities of
an idle input cycle and of a back-pressure cycle).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge

from neurophase.cosim.scoreboard import Scoreboard
from neurophase.cosim.streams import StreamMonitor, StreamSink, StreamSource
from neurophase.models.shift_add import ShiftAddParams, shift_add_beats, shift_add_output_beats
from neurophase.models.stimulus import shift_add_cases, shift_add_corner_cases, shift_add_random_cases
from neurophase.rtl.shift_add import shift_add_layouts


def _settings():
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return ShiftAddParams(**raw.get("params", {})), raw


def _in_beats(params, codes):
    return [{"codes": [int(c) for c in beat]} for beat in shift_add_beats(params, codes)]


class ShiftAddBench:
    """Source, sink, monitor and scoreboard around one shift-and-add DUT."""

    def __init__(self, dut, params: ShiftAddParams, *, idle=0.0, stall=0.0, pattern=None):
        self.dut = dut
        self.params = params
        self.rng = random.Random(cocotb.RANDOM_SEED)
        codes_layout, results_layout = shift_add_layouts(params)
        self.source = StreamSource(dut, "i_stream", codes_layout, dut.clk, rng=self.rng, idle=idle)
        self.sink = StreamSink(dut, "o_stream", results_layout, dut.clk, rng=self.rng, stall=stall, pattern=pattern)
        self.scoreboard = Scoreboard("shift_add")
        self.monitor = StreamMonitor(dut, "o_stream", results_layout, dut.clk, self.scoreboard.observe)

    async def start(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.restart.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        cocotb.start_soon(self.sink.run())
        cocotb.start_soon(self.monitor.run())

    async def run_cases(self, cases):
        for name, codes in cases:
            self.scoreboard.expect(shift_add_output_beats(self.params, codes), tag=name)
            await self.source.send(_in_beats(self.params, codes))
        await self.drain()

    async def drain(self, limit: int = 100_000):
        for _ in range(limit):
            if not self.scoreboard.expected:
                break
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 4)
        assert not int(self.dut.busy.value), "shift-add still busy after its last MVM"
        assert self.scoreboard.ok, self.scoreboard.report()
        self.dut._log.info(self.scoreboard.report())


@cocotb.test()
async def random_and_corner_mvms(dut):
    """Corner cases and seeded random MVMs with idle input cycles and random back-pressure."""
    params, raw = _settings()
    bench = ShiftAddBench(dut, params, idle=raw.get("idle", 0.2), stall=raw.get("stall", 0.3))
    await bench.start()
    await bench.run_cases(shift_add_cases(params, cocotb.RANDOM_SEED, raw.get("count", 100)))


@cocotb.test()
async def long_backpressure(dut):
    """The consumer stalls for long stretches; nothing is lost or duplicated."""
    params, _ = _settings()
    bench = ShiftAddBench(dut, params, pattern=lambda cycle: (cycle // 29) % 4 == 0)
    await bench.start()
    await bench.run_cases(shift_add_corner_cases(params) + shift_add_random_cases(params, cocotb.RANDOM_SEED + 1, 8))


@cocotb.test()
async def full_throughput(dut):
    """With no idle cycles and no back-pressure the unit takes one beat per cycle."""
    params, _ = _settings()
    bench = ShiftAddBench(dut, params)
    await bench.start()
    cases = shift_add_random_cases(params, cocotb.RANDOM_SEED + 2, 4)
    for name, codes in cases:
        bench.scoreboard.expect(shift_add_output_beats(params, codes), tag=name)
    beats = [b for _, codes in cases for b in _in_beats(params, codes)]
    started = get_sim_time("ns")
    await bench.source.send(beats)
    cycles = round((get_sim_time("ns") - started) / 10)
    assert cycles == len(beats), f"{len(beats)} beats took {cycles} cycles, expected one per cycle"
    await bench.drain()


@cocotb.test()
async def restart_mid_mvm(dut):
    """A restart drops a half-accumulated MVM and a result stalled on the output."""
    params, _ = _settings()
    bench = ShiftAddBench(dut, params, pattern=lambda cycle: True)
    await bench.start()
    (_, first), (_, second), (_, third) = shift_add_random_cases(params, cocotb.RANDOM_SEED + 3, 3)

    half = _in_beats(params, first)[: max(1, params.beats_per_mvm // 2)]
    await bench.source.send(half)
    await _pulse_restart(dut)
    bench.scoreboard.expect(shift_add_output_beats(params, second), tag="after restart")
    await bench.source.send(_in_beats(params, second))
    await bench.drain()

    bench.sink.pattern = lambda cycle: False
    await bench.source.send(_in_beats(params, first)[: params.beats_per_mvm - params.groups + 1])
    await ClockCycles(dut.clk, 3)
    assert int(dut.o_stream__valid.value), "a finished group should be waiting on the output"
    await _pulse_restart(dut)
    bench.sink.pattern = lambda cycle: True
    bench.scoreboard.expect(shift_add_output_beats(params, third), tag="after restart with stalled output")
    await bench.source.send(_in_beats(params, third))
    await bench.drain()


async def _pulse_restart(dut):
    dut.restart.value = 1
    await RisingEdge(dut.clk)
    dut.restart.value = 0
    await RisingEdge(dut.clk)
