"""Amaranth-simulation harness shared by the datapath block tests: drives a stream input
with random idle cycles, applies random back-pressure, serves parameter read ports
(synchronous reads, one table per MVM) and counts status strobes."""

from __future__ import annotations

import random

import numpy as np
from amaranth.lib import data
from amaranth.sim import Simulator

from neurophase.cosim.ports import pack, unpack


class ParamTables:
    """Per-MVM contents of one parameter read port: ``tables[mvm]`` is a (columns,) array;
    the port serves the table of the MVM whose beat enters next."""

    def __init__(self, port, lanes: int, tables: list[np.ndarray]):
        self.port = port
        self.lanes = lanes
        self.layout = data.ArrayLayout(port.signature.shape, lanes)
        self.tables = [np.asarray(t).reshape(-1, lanes) for t in tables]

    def word(self, mvm: int, addr: int) -> int:
        table = self.tables[min(mvm, len(self.tables) - 1)]
        return pack(self.layout, [int(v) for v in table[addr % len(table)]])


def simulate_stream_block(dut, in_layout, out_layout, mvms: list[list[dict]], *, seed: int,
                          groups: int, params: list[ParamTables] = (), per_beat_inputs=None,
                          strobes=(), idle: float = 0.2, stall: float = 0.3, deadline_cycles: int | None = None):
    """Stream ``mvms`` (lists of input payloads) through ``dut``; returns the output payloads
    and the number of cycles each strobe in ``strobes`` was high.

    ``per_beat_inputs(mvm)`` returns [(signal, value)] set together with each beat of ``mvm``.
    """
    rng = random.Random(seed)
    expected = sum(len(beats) for beats in mvms)
    observed: list = []
    counts = {name: 0 for name, _ in strobes}
    accepted = [0]

    async def producer(ctx):
        await ctx.tick()
        for index, beats in enumerate(mvms):
            for beat in beats:
                while rng.random() < idle:
                    ctx.set(dut.i_stream.valid, 0)
                    await ctx.tick()
                if per_beat_inputs is not None:
                    for signal, value in per_beat_inputs(index):
                        ctx.set(signal, value)
                ctx.set(dut.i_stream.payload.as_value(), pack(in_layout, beat))
                ctx.set(dut.i_stream.valid, 1)
                await ctx.tick().until(dut.i_stream.ready)
        ctx.set(dut.i_stream.valid, 0)

    async def param_server(ctx):
        for table in params:
            ctx.set(table.port.data.as_value(), table.word(0, 0))
        async for _, _, valid, ready, *addrs in ctx.tick().sample(
                dut.i_stream.valid, dut.i_stream.ready, *(t.port.addr for t in params)):
            if valid and ready:
                accepted[0] += 1
            mvm = accepted[0] // groups
            for table, addr in zip(params, addrs):
                ctx.set(table.port.data.as_value(), table.word(mvm, int(addr)))

    async def consumer(ctx):
        while len(observed) < expected:
            ctx.set(dut.o_stream.ready, int(rng.random() >= stall))
            _, _, valid, ready, payload, *levels = await ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload.as_value(),
                *(signal for _, signal in strobes))
            if valid and ready:
                observed.append(unpack(out_layout, int(payload)))
            for (name, _), level in zip(strobes, levels):
                counts[name] += int(level)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_process(param_server)
    sim.add_testbench(consumer)
    sim.run_until(1e-8 * (deadline_cycles or (expected * 10 + 200)))
    return observed, counts
