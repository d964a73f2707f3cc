"""cocotb regression of the generated batch-norm Verilog against the golden model.

``NEUROPHASE_PARAMS``: ``params`` (BatchNormParams fields), ``count`` (random cases),
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
from neurophase.models.batch_norm import BatchNormParams, batch_norm
from neurophase.models.datapath import column_beats
from neurophase.models.datapath_stimulus import batch_norm_cases
from neurophase.rtl.drift_gain import column_values_layout


def _settings():
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return BatchNormParams(**raw.get("params", {})), raw


def input_beats(params: BatchNormParams, values: np.ndarray, seed: int) -> list[dict]:
    """Input beats of one case; the incoming saturation bits are random (they must pass through)."""
    rng = np.random.default_rng(seed)
    return column_beats(params.lanes, values, rng.integers(0, 2, size=params.columns).astype(bool))


def expected_beats(params: BatchNormParams, case, beats_in) -> tuple[list[dict], int, int]:
    """Output beats and the expected counts of bn_clipped and requant_clipped strobes."""
    _, values, scale, bias, shift, relu = case
    out = batch_norm(params, values, scale, bias, shift, relu)
    beats = column_beats(params.lanes, out["result"], out["z_clipped"] | out["result_clipped"])
    for beat, src in zip(beats, beats_in):
        beat["saturated"] |= src["saturated"]
    groups = [slice(g * params.lanes, (g + 1) * params.lanes) for g in range(params.groups)]
    return (beats, sum(int(out["z_clipped"][g].any()) for g in groups),
            sum(int(out["result_clipped"][g].any()) for g in groups))


class BatchNormBench:
    """Source, sink, scale/bias port responders, monitor, strobe counters and scoreboard."""

    def __init__(self, dut, params: BatchNormParams, *, idle=0.0, stall=0.0):
        self.dut, self.params = dut, params
        self.rng = random.Random(cocotb.RANDOM_SEED)
        in_layout = column_values_layout(params.width, params.lanes)
        out_layout = column_values_layout(params.out_bits, params.lanes)
        self.source = StreamSource(dut, "i_stream", in_layout, dut.clk, rng=self.rng, idle=idle)
        self.sink = StreamSink(dut, "o_stream", out_layout, dut.clk, rng=self.rng, stall=stall)
        self.scoreboard = Scoreboard("batch_norm")
        self.monitor = StreamMonitor(dut, "o_stream", out_layout, dut.clk, self.scoreboard.observe)
        accept = lambda: bool(dut.i_stream__valid.value and dut.i_stream__ready.value)  # noqa: E731
        self.scale = ParamPortResponder(dut, "scale", dut.clk, signed(params.scale_bits), params.lanes, accept,
                                        params.groups)
        self.bias = ParamPortResponder(dut, "bias", dut.clk, signed(params.bias_bits), params.lanes, accept,
                                       params.groups)
        self.strobes = [0, 0]
        self.expected_strobes = [0, 0]
        self.send_cycles = 0

    async def count_strobes(self):
        while True:
            await ReadOnly()
            self.strobes[0] += int(self.dut.bn_clipped.value)
            self.strobes[1] += int(self.dut.requant_clipped.value)
            await RisingEdge(self.dut.clk)

    async def start(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        self.dut.shift.value = 0
        self.dut.relu.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        for coro in (self.sink.run(), self.monitor.run(), self.scale.run(), self.bias.run(), self.count_strobes()):
            cocotb.start_soon(coro)
        await ClockCycles(self.dut.clk, 2)

    async def run_cases(self, cases):
        for index, case in enumerate(cases):
            name, values, scale, bias, shift, relu = case
            beats = input_beats(self.params, values, cocotb.RANDOM_SEED + index)
            self.scale.add_table(scale)
            self.bias.add_table(bias)
            out, bn_strobes, requant_strobes = expected_beats(self.params, case, beats)
            self.scoreboard.expect(out, tag=name)
            self.expected_strobes[0] += bn_strobes
            self.expected_strobes[1] += requant_strobes
            self.dut.shift.value = shift
            self.dut.relu.value = int(relu)
            started = get_sim_time("ns")
            await self.source.send(beats)
            self.send_cycles += round((get_sim_time("ns") - started) / 10)
        for _ in range(100_000):
            if not self.scoreboard.expected:
                break
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 4)
        assert self.scoreboard.ok, self.scoreboard.report()
        assert self.strobes == self.expected_strobes, \
            f"(bn, requant) clipped strobes {self.strobes} != {self.expected_strobes}"
        self.dut._log.info(self.scoreboard.report() + f"; (bn, requant) clipped strobes {self.strobes}")


@cocotb.test()
async def random_and_corner_cases(dut):
    """Corner cases (zero/negative/maximal scale and bias, every shift, saturation of both
    stages) and seeded random cases with idle input cycles and random back-pressure."""
    params, raw = _settings()
    bench = BatchNormBench(dut, params, idle=raw.get("idle", 0.2), stall=raw.get("stall", 0.3))
    await bench.start()
    await bench.run_cases(batch_norm_cases(params, cocotb.RANDOM_SEED, raw.get("count", 100)))


@cocotb.test()
async def full_throughput(dut):
    """Without idle cycles or back-pressure one beat passes per cycle."""
    params, _ = _settings()
    bench = BatchNormBench(dut, params)
    await bench.start()
    cases = batch_norm_cases(params, cocotb.RANDOM_SEED + 1, 8)[-8:]
    await bench.run_cases(cases)
    beats = len(cases) * params.groups
    assert bench.send_cycles == beats, f"{beats} beats took {bench.send_cycles} cycles, expected one per cycle"
