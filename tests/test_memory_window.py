# amaranth: UnusedElaboratable=no
"""The memory window: random bus reads and writes against a dictionary model (sign
extension, several bus words per entry), refusals while locked and beyond the memory, the
answer latencies, and the sequencer's ports while locked."""

import random

import pytest
from amaranth.sim import Simulator

from neurophase.rtl.memory_window import MemoryWindow

TIMEOUT = 8


async def _access(ctx, dut, word: int, data: int | None = None):
    """One Wishbone-classic access; returns (ack, err, dat_r, cycles until the answer).
    Unlike tests/sim_bus.py's master it drops the strobe in the answer's cycle, as the
    chip's bus decoder does, so every access is seen exactly once."""
    bus = dut.bus
    ctx.set(bus.adr, word)
    ctx.set(bus.we, data is not None)
    ctx.set(bus.dat_w, data or 0)
    ctx.set(bus.cyc, 1)
    ctx.set(bus.stb, 1)
    for waited in range(1, TIMEOUT + 1):
        await ctx.tick()
        ack, err, dat_r = ctx.get(bus.ack), ctx.get(bus.err), ctx.get(bus.dat_r)
        if ack or err:
            assert not (ack and err)
            ctx.set(bus.cyc, 0)
            ctx.set(bus.stb, 0)
            return ack, err, dat_r, waited
    raise AssertionError(f"no answer {TIMEOUT} cycles after an access to word {word}")


def _expected_read(value: int, width: int, signed: bool) -> int:
    if signed and value >> (width - 1):
        return (value - (1 << width)) & 0xFFFF_FFFF
    return value


@pytest.mark.parametrize("depth, width, words, signed", [(16, 8, 1, True), (8, 32, 2, False), (5, 12, 3, True)])
def test_random_bus_accesses_match_a_model(depth, width, words, signed):
    dut = MemoryWindow(depth, width, words, signed=signed, addr_width=(depth * words).bit_length() + 1)
    rng = random.Random(depth * 1000 + width)
    model = {}
    latencies = {"read": set(), "write": set(), "refused": set()}

    async def bench(ctx):
        idle = True   # back to back, an access waits out the previous answer's cycle
        for _ in range(300):
            word = rng.randrange(depth * words + 4)   # a few words beyond the memory
            write = rng.random() < 0.5
            data = rng.getrandbits(32) if write else None
            ack, err, dat_r, waited = await _access(ctx, dut, word, data)
            if word >= depth * words:
                kind = "refused"
                assert (ack, err) == (0, 1), f"word {word} beyond the memory"
            elif write:
                kind = "write"
                assert (ack, err) == (1, 0)
                model[word] = data & ((1 << width) - 1)
            else:
                kind = "read"
                assert (ack, err) == (1, 0)
                assert dat_r == _expected_read(model.get(word, 0), width, signed), f"word {word}"
            latencies[kind].add(waited - (0 if idle else 1))
            gap = rng.randrange(3)
            idle = gap > 0
            for _ in range(gap):
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert latencies == {"read": {2}, "write": {1}, "refused": {1}}


def test_locked_window_refuses_the_bus_and_serves_the_sequencer():
    depth, width = 8, 8
    dut = MemoryWindow(depth, width, signed=True, addr_width=4)

    async def bench(ctx):
        assert (await _access(ctx, dut, 3, 0x1A5))[:2] == (1, 0)
        ctx.set(dut.locked, 1)
        for data in (None, 0x55):
            await ctx.tick()
            ack, err, _, waited = await _access(ctx, dut, 3, data)
            assert (ack, err, waited) == (0, 1, 1)
        ctx.set(dut.raddr, 3)
        await ctx.tick()
        assert ctx.get(dut.rdata) == 0xA5   # the refused write changed nothing
        ctx.set(dut.waddr, 5)
        ctx.set(dut.wdata, 0x81)
        ctx.set(dut.we, 1)
        await ctx.tick()
        ctx.set(dut.we, 0)
        ctx.set(dut.raddr, 5)
        await ctx.tick()
        assert ctx.get(dut.rdata) == 0x81
        ctx.set(dut.locked, 0)
        assert (await _access(ctx, dut, 5))[:3] == (1, 0, 0xFFFF_FF81)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("field, value", [("depth", 0), ("width", 33), ("words", True)])
def test_bad_shape_is_refused(field, value):
    kwargs = {"depth": 4, "width": 8, "words": 1, field: value}
    with pytest.raises(ValueError, match=field):
        MemoryWindow(**kwargs)
