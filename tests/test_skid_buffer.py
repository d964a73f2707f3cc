"""The skid buffer: every beat passes once, in order, under random valid and ready, with no
added latency; its ``ready`` towards the producer does not follow the consumer's in the
same cycle."""

import random

import pytest
from amaranth.hdl import signed
from amaranth.sim import Simulator

from neurophase.rtl.skid_buffer import SkidBuffer


def _run(seed: int, count: int = 300):
    rng = random.Random(seed)
    dut = SkidBuffer(signed(12))
    beats = [rng.randrange(-2048, 2048) for _ in range(count)]
    received, ready_followed_consumer = [], []

    async def bench(ctx):
        sent = 0
        for _ in range(count * 4):
            offer = sent < count and rng.random() < 0.7
            ctx.set(dut.i_stream.valid, offer)
            if offer:
                ctx.set(dut.i_stream.payload, beats[sent])
            ctx.set(dut.o_stream.ready, 0)
            ready_when_refused = ctx.get(dut.i_stream.ready)
            take = rng.random() < 0.6
            ctx.set(dut.o_stream.ready, take)
            ready_followed_consumer.append(ctx.get(dut.i_stream.ready) != ready_when_refused)
            if ctx.get(dut.o_stream.valid) and take:
                received.append(ctx.get(dut.o_stream.payload))
            if offer and ctx.get(dut.i_stream.ready):
                sent += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return beats, received, ready_followed_consumer


@pytest.mark.parametrize("offset", range(3))
def test_every_beat_passes_once_in_order_and_ready_is_a_register(seed, offset):
    beats, received, ready_followed_consumer = _run(seed + offset)
    assert received == beats[:len(received)] and len(received) > len(beats) // 2
    assert not any(ready_followed_consumer)


def test_an_empty_buffer_passes_a_beat_in_the_same_cycle():
    dut = SkidBuffer(signed(8))

    async def bench(ctx):
        ctx.set(dut.i_stream.valid, 1)
        ctx.set(dut.i_stream.payload, -5)
        ctx.set(dut.o_stream.ready, 1)
        assert ctx.get(dut.o_stream.valid) and ctx.get(dut.o_stream.payload) == -5 and ctx.get(dut.i_stream.ready)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
