"""The Wishbone buffer: every access reaches the slave once, unchanged, and its answer
reaches the master, under random slave delays, refusals and withdrawn accesses; nothing
passes through it in the cycle it arrives."""

import random

import pytest
from amaranth.sim import Simulator

from neurophase.rtl.wishbone_buffer import WishboneBuffer

ADDR_WIDTH = 6
REFUSED = range(48, 64)   # word addresses the slave answers with err


class _Slave:
    """A slave with word memory that answers each access after a random delay."""

    def __init__(self, rng):
        self.rng, self.memory, self.seen = rng, {}, []
        self.wait = None

    def cycle(self, ctx, bus) -> None:
        ctx.set(bus.ack, 0)
        ctx.set(bus.err, 0)
        if not (ctx.get(bus.cyc) and ctx.get(bus.stb)):
            self.wait = None
            return
        if self.wait is None:
            self.wait = self.rng.randrange(5)
            self.seen.append((ctx.get(bus.adr), ctx.get(bus.we), ctx.get(bus.dat_w), ctx.get(bus.sel)))
        if self.wait:
            self.wait -= 1
            return
        adr = ctx.get(bus.adr)
        if adr in REFUSED:
            ctx.set(bus.err, 1)
        elif ctx.get(bus.we):
            self.memory[adr] = ctx.get(bus.dat_w)
            ctx.set(bus.ack, 1)
        else:
            ctx.set(bus.dat_r, self.memory.get(adr, 0))
            ctx.set(bus.ack, 1)
        self.wait = None   # answered: still offered next cycle, it would be a second access


def _downstream(ctx, bus):
    return tuple(ctx.get(s) for s in (bus.adr, bus.dat_w, bus.sel, bus.we, bus.cyc, bus.stb))


def _upstream_answer(ctx, bus):
    return tuple(ctx.get(s) for s in (bus.ack, bus.err, bus.dat_r))


def _run(seed: int, count: int = 200):
    rng = random.Random(seed)
    dut = WishboneBuffer(ADDR_WIDTH)
    slave = _Slave(rng)
    issued, answers, combinational = [], [], []
    reference = {}

    async def bench(ctx):
        up, down = dut.upstream, dut.downstream
        for _ in range(count):
            access = (rng.randrange(2**ADDR_WIDTH), rng.random() < 0.5, rng.getrandbits(32), rng.getrandbits(4))
            withdraw_after = rng.randrange(1, 4) if rng.random() < 0.15 else None
            for _ in range(rng.randrange(3)):
                slave.cycle(ctx, down)
                await ctx.tick()
            before = _downstream(ctx, down)
            adr, we, dat_w, sel = access
            for signal, value in zip((up.adr, up.we, up.dat_w, up.sel, up.cyc, up.stb), (*access[:2], dat_w, sel, 1, 1)):
                ctx.set(signal, value)
            combinational.append(_downstream(ctx, down) != before)
            answer = None
            for waited in range(1, 12):
                shown = _upstream_answer(ctx, up)
                slave.cycle(ctx, down)
                combinational.append(_upstream_answer(ctx, up) != shown)
                if shown[0] or shown[1]:
                    answer = shown
                    break
                if withdraw_after == waited:
                    break
                await ctx.tick()
            assert answer is not None or withdraw_after is not None, f"access {access} not answered"
            await ctx.tick()
            ctx.set(up.cyc, 0)
            ctx.set(up.stb, 0)
            issued.append((access, answer is not None))
            if answer is None:   # withdrawn: cyc stays low for a cycle, as the protocol asks
                slave.cycle(ctx, down)
                await ctx.tick()
                slave.memory = dict(reference)   # a withdrawn write may or may not have landed
                continue
            if adr in REFUSED:
                expected = (0, 1)
            elif we:
                reference[adr] = dat_w
                expected = (1, 0)
            else:
                expected = (1, 0, reference.get(adr, 0))
            answers.append((answer[:len(expected)], expected))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return issued, slave.seen, answers, combinational


@pytest.mark.parametrize("offset", range(3))
def test_every_access_reaches_the_slave_once_and_its_answer_the_master(seed, offset):
    issued, seen, answers, combinational = _run(seed + offset)
    assert sum(answered for _, answered in issued) > len(issued) // 2
    # the slave saw the master's accesses in order, each once, unchanged: every answered
    # one, and a withdrawn one at most once
    position = 0
    for access, answered in issued:
        if position < len(seen) and seen[position] == access:
            position += 1
        else:
            assert not answered, f"answered access {access} never reached the slave unchanged"
    assert position == len(seen), f"the slave saw {seen[position]} that the master did not issue"
    assert all(got == expected for got, expected in answers)
    assert not any(combinational)


def test_a_withdrawn_access_is_withdrawn_from_the_slave_and_its_answer_is_not_shown():
    dut = WishboneBuffer(4)

    async def bench(ctx):
        up, down = dut.upstream, dut.downstream
        for s, v in ((up.adr, 3), (up.we, 0), (up.cyc, 1), (up.stb, 1)):
            ctx.set(s, v)
        await ctx.tick()
        assert ctx.get(down.cyc) and ctx.get(down.stb) and ctx.get(down.adr) == 3
        ctx.set(up.cyc, 0)
        ctx.set(up.stb, 0)
        ctx.set(down.ack, 1)   # the answer arrives in the cycle the master drops the access
        ctx.set(down.dat_r, 0xDEAD)
        await ctx.tick()
        ctx.set(down.ack, 0)
        assert not ctx.get(down.cyc) and not ctx.get(down.stb)
        for s, v in ((up.adr, 5), (up.cyc, 1), (up.stb, 1)):
            ctx.set(s, v)
        assert not ctx.get(up.ack) and not ctx.get(up.err)   # no stale answer for the new access
        await ctx.tick()
        assert ctx.get(down.adr) == 5 and ctx.get(down.cyc)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
