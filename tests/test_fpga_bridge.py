"""UART bridge (UARTBone framing) and UART PHY in Amaranth simulation: register access,
bursts, and recovery from garbage bytes, truncated frames, stalls and bus errors."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from neurophase.fpga.uart_bridge import CMD_READ_FIXED, CMD_READ_INCR, CMD_WRITE_INCR, UartBridge
from neurophase.fpga.uart_rx import UartRx
from neurophase.fpga.uart_tx import UartTx
from neurophase.rtl.wishbone_decoder import WishboneDecoder
from neurophase.regmap import Access, Field, Register, RegisterMap
from neurophase.rtl.csr_bank import CsrBank

TIMEOUT = 200
BUS_TIMEOUT = 12
ADDR_WIDTH = 8  # 1 KiB of bus: the bank at 0x000, a silent window at 0x200


def small_map() -> RegisterMap:
    rmap = RegisterMap("bench")
    rmap.add(Register("MAGIC", (Field("value", 32, Access.CONST, 0x5A5AA5A5),)))
    for i in range(4):
        rmap.add(Register(f"SCRATCH{i}", (Field("value", 32, Access.RW, i),)))
    return rmap


class BridgeHarness(Elaboratable):
    def __init__(self):
        self.bridge = UartBridge(ADDR_WIDTH, timeout_cycles=TIMEOUT, bus_timeout_cycles=BUS_TIMEOUT)
        self.regmap = small_map()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.decoder = decoder = WishboneDecoder(ADDR_WIDTH, [("bank", 0, self.regmap.addr_width),
                                                                      ("silent", 0x200, 4)])
        m.submodules.bank = bank = CsrBank(self.regmap)
        wiring.connect(m, bridge.bus, decoder.bus)
        wiring.connect(m, decoder.bank_bus, bank.bus)
        return m  # the silent window's slave never answers


def frame(command, address, words=(), length=None):
    length = len(words) if length is None else length
    body = b"".join(w.to_bytes(4, "big") for w in words)
    return bytes([command, length]) + (address // 4).to_bytes(4, "big") + body


def run_bridge(script):
    """Run ``script(ctx, bridge, send, received)``; ``received`` collects answer bytes."""
    harness = BridgeHarness()
    bridge = harness.bridge
    received = []
    sim = Simulator(harness)
    sim.add_clock(1e-8)

    async def collect(ctx):
        ctx.set(bridge.o_stream.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(bridge.o_stream.valid, bridge.o_stream.payload):
            if valid:
                received.append(payload)

    async def send(ctx, data, gap=0):
        for value in data:
            ctx.set(bridge.i_stream.payload, value)
            ctx.set(bridge.i_stream.valid, 1)
            await ctx.tick().until(bridge.i_stream.ready)
            ctx.set(bridge.i_stream.valid, 0)
            if gap:
                await ctx.tick().repeat(gap)

    async def main(ctx):
        await script(ctx, bridge, send, received)

    sim.add_testbench(collect, background=True)
    sim.add_testbench(main)
    sim.run()
    return received


async def read_words(ctx, send, received, address, count, command=CMD_READ_INCR):
    start = len(received)
    await send(ctx, frame(command, address, length=count))
    for _ in range(100 * count + 4 * BUS_TIMEOUT):
        if len(received) >= start + 4 * count:
            break
        await ctx.tick()
    data = bytes(received[start:])
    assert len(data) == 4 * count, f"expected {4 * count} answer bytes, got {len(data)}"
    return [int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4)]


def counters(ctx, bridge):
    return {name: ctx.get(getattr(bridge, name)) for name in ("frames", "bad_commands", "frame_timeouts", "bus_errors")}


def test_writes_reads_and_bursts():
    async def script(ctx, bridge, send, received):
        assert await read_words(ctx, send, received, 0, 1) == [0x5A5AA5A5]
        await send(ctx, frame(CMD_WRITE_INCR, 4, [0x11111111, 0x22222222, 0xDEADBEEF]))
        assert await read_words(ctx, send, received, 4, 4) == [0x11111111, 0x22222222, 0xDEADBEEF, 3]
        assert await read_words(ctx, send, received, 12, 3, CMD_READ_FIXED) == [0xDEADBEEF] * 3
        await send(ctx, frame(CMD_WRITE_INCR, 16, length=0))  # empty frame
        assert counters(ctx, bridge) == {"frames": 5, "bad_commands": 0, "frame_timeouts": 0, "bus_errors": 0}

    run_bridge(script)


def test_garbage_bytes_are_dropped_and_counted(seed):
    rng = random.Random(seed)
    garbage = bytes(rng.choice([0x00, 0x05, 0x7F, 0xFF, 0xAA, 0x55]) for _ in range(20))

    async def script(ctx, bridge, send, received):
        await send(ctx, garbage)
        assert counters(ctx, bridge)["bad_commands"] == len(garbage)
        assert await read_words(ctx, send, received, 0, 1) == [0x5A5AA5A5]
        assert received[:-4] == [], "garbage must not produce answers"

    run_bridge(script)


@pytest.mark.parametrize("cut", [1, 2, 4, 6, 9, 10, 12])
def test_truncated_frame_times_out_and_the_bridge_recovers(cut):
    """A frame cut after ``cut`` bytes, then silence: the bridge drops it after the timeout,
    counts it, and the next frame works. Bytes of the cut frame write nothing partial."""
    async def script(ctx, bridge, send, received):
        await send(ctx, frame(CMD_WRITE_INCR, 4, [0xCAFEF00D, 0x12345678])[:cut])
        # the timeout, plus the bus access of a complete word (the decoder registers answers)
        await ctx.tick().repeat(TIMEOUT + 8)
        assert counters(ctx, bridge)["frame_timeouts"] == 1
        words = await read_words(ctx, send, received, 4, 2)
        assert words == [0xCAFEF00D if cut >= 10 else 0, 1]

    run_bridge(script)


def test_slow_bytes_within_the_timeout_are_not_a_stall():
    async def script(ctx, bridge, send, received):
        await send(ctx, frame(CMD_WRITE_INCR, 8, [0x0BADCAFE]), gap=TIMEOUT - 10)
        assert await read_words(ctx, send, received, 8, 1) == [0x0BADCAFE]
        assert counters(ctx, bridge)["frame_timeouts"] == 0

    run_bridge(script)


def test_read_frame_stalled_after_a_command_byte_recovers():
    """A stray read command followed by silence (a lost host) must not lock the bridge."""
    async def script(ctx, bridge, send, received):
        await send(ctx, bytes([CMD_READ_INCR, 3, 0]))
        await ctx.tick().repeat(TIMEOUT + 4)
        assert received == []
        assert await read_words(ctx, send, received, 0, 1) == [0x5A5AA5A5]
        assert counters(ctx, bridge)["frame_timeouts"] == 1

    run_bridge(script)


def test_bus_errors_answer_zero_and_are_counted():
    async def script(ctx, bridge, send, received):
        await send(ctx, frame(CMD_WRITE_INCR, 0, [1]))  # read-only register: err
        assert await read_words(ctx, send, received, 0x100, 1) == [0]  # unmapped: decoder err
        assert await read_words(ctx, send, received, 0x200, 2) == [0, 0]  # silent slave: bus timeout
        assert await read_words(ctx, send, received, 1 << 12, 1) == [0]  # beyond the bus width
        assert counters(ctx, bridge)["bus_errors"] == 5
        assert await read_words(ctx, send, received, 0, 1) == [0x5A5AA5A5]  # still alive

    run_bridge(script)


def test_constructor_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the half-built components are never elaborated
        with pytest.raises(ValueError, match=r"^bridge timeout_cycles must be an integer from 2 to 4294967295, not 1$"):
            UartBridge(8, timeout_cycles=1)
        with pytest.raises(ValueError, match=r"^UART clock cycles per bit must be an integer of at least 4, not 3$"):
            UartRx(3)
        gc.collect()


class Loopback(Elaboratable):
    def __init__(self, divisor):
        self.tx, self.rx = UartTx(divisor), UartRx(divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_uart_loopback(seed, divisor):
    data = bytes(random.Random(seed).randrange(256) for _ in range(24))
    dut = Loopback(divisor)
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def sender(ctx):
        for value in data:
            ctx.set(dut.tx.i_stream.payload, value)
            ctx.set(dut.tx.i_stream.valid, 1)
            await ctx.tick().until(dut.tx.i_stream.ready)
        ctx.set(dut.tx.i_stream.valid, 0)
        await ctx.tick().repeat(12 * divisor)

    async def receiver(ctx):
        ctx.set(dut.rx.o_stream.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(dut.rx.o_stream.valid, dut.rx.o_stream.payload):
            if valid:
                got.append(payload)

    sim.add_testbench(receiver, background=True)
    sim.add_testbench(sender)
    sim.run()
    assert bytes(got) == data


def test_uart_rx_counts_a_missing_stop_bit():
    divisor = 8
    dut = UartRx(divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    result = {}

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for bit in [0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1]:  # start, 0x55, stop bit low, ...
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(divisor)
        await ctx.tick().repeat(2 * divisor)
        result["framing"] = ctx.get(dut.framing_errors)
        result["valid"] = ctx.get(dut.o_stream.valid)

    sim.add_testbench(bench)
    sim.run()
    assert result == {"framing": 1, "valid": 0}
