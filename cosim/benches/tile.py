"""cocotb regression of the generated tile top against the datapath golden model.

The host side goes through the Wishbone CSR bus (:class:`WishboneMaster`), the array side
through the ADC responder, results through a stream sink with back-pressure.
``NEUROPHASE_PARAMS``: ``config`` (a ChipConfig dict), ``count`` (random MVMs),
``stall`` (back-pressure probability), ``settings_every`` (MVMs between new random
register settings).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from neurophase.config import ChipConfig
from neurophase.cosim.adc_responder import AdcResponder
from neurophase.cosim.scoreboard import Scoreboard
from neurophase.cosim.streams import StreamMonitor, StreamSink
from neurophase.cosim.wishbone import WishboneMaster
from neurophase.models.adc_interface import conversion_order
from neurophase.models.datapath import DatapathParams, DatapathSettings, column_beats, datapath
from neurophase.models.datapath_stimulus import random_settings, tile_cases
from neurophase.regmap import WORD_BYTES, field_member, tile_register_map
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.rtl.tile import BATCH_NORM_MEMBERS, TILE_BANK_MEMBERS

#: STATUS bits the golden model predicts, by field name.
STATUS_FROM_GOLDEN = {
    "sat_shift_add": ("trim_saturated", "acc_saturated"),
    "sat_drift_gain": ("gain_saturated",),
    "sat_batch_norm": ("bn_saturated", "requant_saturated"),
}


def _settings():
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return ChipConfig.from_dict(raw.get("config", {})), raw


class TileBench:
    """Bus master, ADC responder, result sink/monitor and scoreboard around the tile."""

    def __init__(self, dut, cfg: ChipConfig, *, stall=0.0):
        self.dut, self.cfg = dut, cfg
        self.params = DatapathParams.from_config(cfg)
        self.regmap = tile_register_map(cfg)
        self.rng = random.Random(cocotb.RANDOM_SEED)
        self.bus = WishboneMaster(dut, dut.clk, "bus")
        self.adc = AdcResponder(dut, dut.clk, self.params.adc, cfg.adc.latency_cycles)
        layout = column_values_layout(self.params.batch_norm.out_bits, self.params.lanes)
        self.sink = StreamSink(dut, "o_stream", layout, dut.clk, rng=self.rng, stall=stall)
        self.scoreboard = Scoreboard("tile")
        self.monitor = StreamMonitor(dut, "o_stream", layout, dut.clk, self.scoreboard.observe)
        self.settings = None

    def field(self, member: str):
        """(byte address, bit offset, width) of the register field behind a bank member."""
        for address, register in self.regmap.registers:
            for f in register.fields:
                if field_member(register, f) == member:
                    return address, f.offset, f.width
        raise KeyError(member)

    async def write_field(self, role: str, value: int):
        address, offset, width = self.field({**TILE_BANK_MEMBERS, **BATCH_NORM_MEMBERS}[role])
        word = await self.bus.read(address)
        mask = ((1 << width) - 1) << offset
        await self.bus.write(address, (word & ~mask) | ((value << offset) & mask))

    async def command(self, role: str):
        address, offset, _ = self.field({**TILE_BANK_MEMBERS, **BATCH_NORM_MEMBERS}[role])
        await self.bus.write(address, 1 << offset)

    async def status(self) -> dict:
        address = self.regmap.address("STATUS")
        word = await self.bus.read(address)
        register = self.regmap.register("STATUS")
        return {f.name: (word >> f.offset) & 1 for f in register.fields}

    async def clear_status(self):
        await self.bus.write(self.regmap.address("STATUS"), 0xFFFF_FFFF)

    async def write_array(self, name: str, values):
        base = self.regmap.address(name)
        for col, value in enumerate(np.asarray(values)):
            await self.bus.write(base + col * WORD_BYTES, int(value) & 0xFFFF_FFFF)

    async def apply(self, settings: DatapathSettings):
        per_column = not isinstance(settings.gains, int)
        await self.write_array("ADC_TRIM", settings.trims)
        if per_column:
            await self.write_array("GAIN", settings.gains)
        await self.write_array("BN_SCALE", settings.scale)
        await self.write_array("BN_BIAS", settings.bias)
        await self.write_field("per_column", int(per_column))
        await self.write_field("tile_gain", (0 if per_column else settings.gains) & 0xFFFF)
        await self.write_field("relu", int(settings.relu))
        await self.write_field("shift", settings.shift)
        self.settings = settings

    def golden_settings(self) -> DatapathSettings:
        s = self.settings
        return DatapathSettings(s.trims, s.gains, s.scale, s.bias, min(s.shift, self.params.batch_norm.width), s.relu)

    async def start(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        self.dut.adc__done.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        for coro in (self.adc.run(), self.sink.run(), self.monitor.run()):
            cocotb.start_soon(coro)
        await ClockCycles(self.dut.clk, 2)
        # a reset leaves the parameter arrays as they were: write every register explicitly
        await self.apply(DatapathSettings.identity(self.params, relu=True))

    async def wait_last_beat(self, limit=1_000_000):
        for _ in range(limit):
            await ReadOnly()
            if int(self.dut.o_stream__valid.value) and int(self.dut.o_stream__ready.value) \
                    and (self.dut.o_stream__payload.value.to_unsigned() >> (len(self.dut.o_stream__payload) - 1)) & 1:
                await RisingEdge(self.dut.clk)
                return
            await RisingEdge(self.dut.clk)
        raise AssertionError("no last result beat")

    async def run_mvm(self, name: str, codes: np.ndarray, check_status: bool = True):
        out = datapath(self.params, codes, self.golden_settings())
        self.scoreboard.expect(column_beats(self.params.lanes, out["result"], out["saturated"]), tag=name)
        self.adc.codes = codes
        first = len(self.adc.requests)
        await self.command("start")
        await self.wait_last_beat()
        assert [r[1:] for r in self.adc.requests[first:]] == conversion_order(self.params.adc), name
        if check_status:
            status = await self.status()
            want = {"busy": 0, "done": 1, "adc_timeout": 0}
            for bit, sources in STATUS_FROM_GOLDEN.items():
                want[bit] = int(any(out["flags"][s] for s in sources))
            got = {k: status[k] for k in want}
            assert got == want, f"{name}: STATUS {got}, expected {want}"
            await self.clear_status()

    def check(self):
        assert self.scoreboard.ok, self.scoreboard.report()
        self.dut._log.info(self.scoreboard.report())


@cocotb.test()
async def random_mvms_through_the_bus(dut):
    """Corner-case and seeded random MVMs under identity, typical and extreme register
    settings written over the bus; results, request order and STATUS bits checked."""
    cfg, raw = _settings()
    bench = TileBench(dut, cfg, stall=raw.get("stall", 0.3))
    await bench.start()
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    every = raw.get("settings_every", 50)
    kinds = ["identity", "typical", "extreme"]
    for i, (name, codes) in enumerate(tile_cases(bench.params, cocotb.RANDOM_SEED, raw.get("count", 100))):
        if i % every == 0:
            await bench.apply(random_settings(bench.params, rng, kinds[(i // every) % 3]))
        await bench.run_mvm(name, codes)
    bench.check()
    count = await bench.bus.read(bench.field(TILE_BANK_MEMBERS["mvm_count"])[0])
    assert count == len(tile_cases(bench.params, cocotb.RANDOM_SEED, raw.get("count", 100)))


@cocotb.test()
async def adc_timeout_sets_status_and_idles(dut):
    """A silent ADC: STATUS.adc_timeout set, busy clear, nothing emitted; the next MVM is exact."""
    cfg, _ = _settings()
    bench = TileBench(dut, cfg)
    await bench.start()
    await bench.write_field("timeout_cycles", cfg.adc.latency_cycles + 5)
    (_, codes), (name, codes2) = tile_cases(bench.params, cocotb.RANDOM_SEED + 1, 2)[-2:]
    bench.adc.silent = True
    bench.adc.codes = codes
    await bench.command("start")
    await ClockCycles(dut.clk, cfg.adc.latency_cycles + 10)
    status = await bench.status()
    assert status["adc_timeout"] == 1 and status["busy"] == 0 and status["done"] == 0, status
    assert bench.adc.cancels, "the timed-out conversion must be cancelled"
    await bench.clear_status()
    bench.adc.silent = False
    await bench.run_mvm(name, codes2)
    bench.check()


@cocotb.test()
async def abort_and_soft_reset_mid_mvm(dut):
    """CTRL.abort and CTRL.soft_reset in the middle of an MVM (results stalled): nothing
    of it comes out, busy clears, registers survive, the following MVMs are exact."""
    cfg, _ = _settings()
    bench = TileBench(dut, cfg, stall=0.2)
    await bench.start()
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 2)
    await bench.apply(random_settings(bench.params, rng, "typical"))
    cases = tile_cases(bench.params, cocotb.RANDOM_SEED + 2, 4)[-4:]
    for role, (_, codes), (name, codes2) in (("abort", cases[0], cases[1]), ("soft_reset", cases[2], cases[3])):
        bench.sink.stall = 1.0
        bench.adc.codes = codes
        await bench.command("start")
        await ClockCycles(dut.clk, bench.params.adc_bound_cycles // 2)
        await bench.command(role)
        status = await bench.status()
        assert status["busy"] == 0, f"busy after {role}"
        assert bench.adc.cancels, f"{role} must cancel the conversion in flight"
        bench.sink.stall = 0.2
        await ClockCycles(dut.clk, 10)
        await bench.clear_status()
        await bench.run_mvm(name, codes2)
    bench.check()
    assert await bench.bus.read(bench.field(TILE_BANK_MEMBERS["mvm_count"])[0]) == 1  # soft reset cleared it


@cocotb.test()
async def unmapped_access_is_refused(dut):
    """A read and a write beyond the register map are answered with err, set
    STATUS.bus_error, and leave the datapath working."""
    cfg, _ = _settings()
    bench = TileBench(dut, cfg)
    await bench.start()
    top = (1 << (bench.regmap.addr_width + 2)) - WORD_BYTES
    assert not (await bench.bus.access(top)).ok
    assert not (await bench.bus.access(top, 0x1234)).ok
    status = await bench.status()
    assert status["bus_error"] == 1
    await bench.clear_status()
    name, codes = tile_cases(bench.params, cocotb.RANDOM_SEED + 3, 1)[-1]
    await bench.run_mvm(name, codes)
    bench.check()
