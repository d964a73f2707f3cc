"""cocotb regression of the generated drift-gain Verilog against the golden model.

``NEUROPHASE_PARAMS``: ``params`` (DriftGainParams fields), ``count`` (random cases),
``idle`` and ``stall`` (probabilities of an idle input cycle and of back-pressure).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from amaranth.hdl import signed
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from neurophase.cosim.param_port import ParamPortResponder
from neurophase.cosim.scoreboard import Scoreboard
from neurophase.cosim.streams import StreamMonitor, StreamSink, StreamSource
from neurophase.models.datapath import column_beats
from neurophase.models.datapath_stimulus import drift_gain_cases
from neurophase.models.drift_gain import DriftGainParams, drift_gain
from neurophase.rtl.drift_gain import column_values_layout


def _settings():
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return DriftGainParams(**raw.get("params", {})), raw


def input_beats(params: DriftGainParams, values: np.ndarray, seed: int) -> list[dict]:
    """Input beats of one case; the incoming saturation bits are random (they must pass through)."""
    rng = np.random.default_rng(seed)
    return column_beats(params.lanes, values, rng.integers(0, 2, size=params.columns).astype(bool))


def expected_beats(params: DriftGainParams, values, gains, beats_in) -> tuple[list[dict], int]:
    result, clipped = drift_gain(params, values, gains)
    out = column_beats(params.lanes, result, clipped)
    for beat, src in zip(out, beats_in):
        beat["saturated"] |= src["saturated"]
    strobes = sum(int(clipped[g * params.lanes:(g + 1) * params.lanes].any()) for g in range(params.groups))
    return out, strobes


class DriftGainBench:
    """Source, sink, gain-port responder, monitor, strobe counter and scoreboard."""

    def __init__(self, dut, params: DriftGainParams, *, idle=0.0, stall=0.0):
        self.dut, self.params = dut, params
        self.rng = random.Random(cocotb.RANDOM_SEED)
        layout = column_values_layout(params.width, params.lanes)
        self.source = StreamSource(dut, "i_stream", layout, dut.clk, rng=self.rng, idle=idle)
        self.sink = StreamSink(dut, "o_stream", layout, dut.clk, rng=self.rng, stall=stall)
        self.scoreboard = Scoreboard("drift_gain")
        self.monitor = StreamMonitor(dut, "o_stream", layout, dut.clk, self.scoreboard.observe)
        self.gains = ParamPortResponder(dut, "gain", dut.clk, signed(params.gain_bits), params.lanes,
                                        lambda: bool(dut.i_stream__valid.value and dut.i_stream__ready.value),
                                        params.groups)
        self.strobes = 0
        self.expected_strobes = 0
        self.send_cycles = 0

    async def count_strobes(self):
        while True:
            await ReadOnly()
            self.strobes += int(self.dut.clipped.value)
            await RisingEdge(self.dut.clk)

    async def start(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        self.dut.tile_gain.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        for coro in (self.sink.run(), self.monitor.run(), self.gains.run(), self.count_strobes()):
            cocotb.start_soon(coro)
        await ClockCycles(self.dut.clk, 2)

    async def run_cases(self, cases):
        for index, (name, values, gains) in enumerate(cases):
            beats = input_beats(self.params, values, cocotb.RANDOM_SEED + index)
            per_column = not isinstance(gains, int)
            self.gains.add_table(gains if per_column else np.zeros(self.params.columns, dtype=np.int64))
            out, strobes = expected_beats(self.params, values, gains, beats)
            self.scoreboard.expect(out, tag=name)
            self.expected_strobes += strobes
            self.dut.per_column.value = int(per_column)
            self.dut.tile_gain.value = 0 if per_column else gains
            started = get_sim_time("ns")
            await self.source.send(beats)
            self.send_cycles += round((get_sim_time("ns") - started) / 10)
        for _ in range(100_000):
            if not self.scoreboard.expected:
                break
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 4)
        assert self.scoreboard.ok, self.scoreboard.report()
        assert self.strobes == self.expected_strobes, f"clipped strobes {self.strobes} != {self.expected_strobes}"
        self.dut._log.info(self.scoreboard.report() + f"; {self.strobes} clipped strobes")


@cocotb.test()
async def random_and_corner_cases(dut):
    """Corner cases (zero, unit, maximal, negative gains; saturation) and seeded random
    cases with idle input cycles and random back-pressure."""
    params, raw = _settings()
    bench = DriftGainBench(dut, params, idle=raw.get("idle", 0.2), stall=raw.get("stall", 0.3))
    await bench.start()
    await bench.run_cases(drift_gain_cases(params, cocotb.RANDOM_SEED, raw.get("count", 100)))


@cocotb.test()
async def full_throughput(dut):
    """Without idle cycles or back-pressure one beat passes per cycle."""
    params, _ = _settings()
    bench = DriftGainBench(dut, params)
    await bench.start()
    cases = drift_gain_cases(params, cocotb.RANDOM_SEED + 1, 8)[-8:]
    await bench.run_cases(cases)
    beats = len(cases) * params.groups
    assert bench.send_cycles == beats, f"{beats} beats took {bench.send_cycles} cycles, expected one per cycle"
