"""cocotb regression of the generated CSR bank Verilog against the reference model.

Parameters come from the runner as JSON in ``NEUROPHASE_PARAMS``: ``config`` (a
ChipConfig as a dict; the bank is the tile's register map for it) and ``count`` (random
bus transactions). Port names are derived from the register map, never typed.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from neurophase.config import ChipConfig
from neurophase.cosim.ports import port_name
from neurophase.cosim.scoreboard import Scoreboard
from neurophase.cosim.wishbone import WishboneMaster
from neurophase.models.csr_model import CsrModel, Operation, Response, corner_operations, random_operations
from neurophase.regmap import Access, RegisterMap, tile_register_map


def _settings() -> tuple[RegisterMap, dict]:
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return tile_register_map(ChipConfig.from_dict(raw.get("config", {}))), raw


class CsrBankBench:
    """Bus master, hardware-port driver, W1P monitor and scoreboard around one bank."""

    def __init__(self, dut, regmap: RegisterMap):
        self.dut = dut
        self.regmap = regmap
        self.model = CsrModel(regmap)
        self.master = WishboneMaster(dut, dut.clk)
        self.scoreboard = Scoreboard("csr_bank")
        self.pulses = {name: [] for name in self.model.pulses}
        for member in regmap.members():
            if member.direction == "in" and member.kind != "array":
                getattr(dut, member.name).value = 0
            elif member.kind == "array":
                getattr(dut, port_name(member.name, "addr")).value = 0

    async def start(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await self._restore_arrays()
        cocotb.start_soon(self._watch_pulses())

    async def _restore_arrays(self):
        """Reset leaves memories alone, and every cocotb test shares one simulation: write
        each element's reset value through the bus so the model and the bank agree."""
        for base, array in self.regmap.arrays:
            for index in range(array.length):
                await self.master.write(base + 4 * index, array.reset & 0xFFFF_FFFF)
        self.master.cycles = 0

    async def _watch_pulses(self):
        ports = {name: getattr(self.dut, name) for name in self.pulses}
        while True:
            await ReadOnly()
            for name, port in ports.items():
                value = int(port.value)
                if value:
                    self.pulses[name].append(value)
            await RisingEdge(self.dut.clk)

    async def apply(self, op: Operation, tag: str) -> None:
        expected = self.model.apply(op)
        if op.kind == "input":
            getattr(self.dut, op.target).value = op.data
            await RisingEdge(self.dut.clk)
        elif op.kind == "set":
            strobe = getattr(self.dut, f"{op.target}_set")
            strobe.value = op.data
            await RisingEdge(self.dut.clk)
            strobe.value = 0
        else:
            self.scoreboard.expect([expected], tag=f"{tag}: {op}")
            got = await self.master.access(op.target, op.data if op.kind == "write" else None, op.sel)
            self.scoreboard.observe(got)
        if hasattr(self.dut, "irq"):
            await ReadOnly()
            self.scoreboard.expect([self.model.irq], tag=f"{tag}: irq after {op}")
            self.scoreboard.observe(bool(int(self.dut.irq.value)))
            await RisingEdge(self.dut.clk)

    async def run(self, operations, tag: str) -> None:
        for i, op in enumerate(operations):
            await self.apply(op, f"{tag} #{i}")

    async def check_datapath_ports(self) -> None:
        """Every lane group of every array read through its ParamReadSignature port."""
        for _, array in self.regmap.arrays:
            addr = getattr(self.dut, port_name(f"{array.name.lower()}_rd", "addr"))
            data = getattr(self.dut, port_name(f"{array.name.lower()}_rd", "data"))
            for group in range(array.groups):
                addr.value = group
                await RisingEdge(self.dut.clk)
                await ReadOnly()
                got = _split_lanes(data.value.to_unsigned(), array.width, array.lanes, array.signed)
                self.scoreboard.expect([self.model.array_group(array.name, group)], tag=f"{array.name} group {group}")
                self.scoreboard.observe(got)
                await RisingEdge(self.dut.clk)

    def finish(self) -> None:
        if self.pulses != self.model.pulses:
            self.scoreboard.errors.append(f"W1P pulses {self.pulses} differ from the model's {self.model.pulses}")
        self.dut._log.info(self.scoreboard.report())
        assert self.scoreboard.ok, self.scoreboard.report()


def _split_lanes(bits: int, width: int, lanes: int, signed: bool) -> list[int]:
    values = []
    for lane in range(lanes):
        value = (bits >> (lane * width)) & ((1 << width) - 1)
        if signed and value >> (width - 1):
            value -= 1 << width
        values.append(value)
    return values


@cocotb.test()
async def corner_cases(dut):
    """Reset values, all-ones/all-zeros writes, array extremes, errors back to back."""
    regmap, _ = _settings()
    bench = CsrBankBench(dut, regmap)
    await bench.start()
    for name, operations in corner_operations(regmap):
        await bench.run(operations, name)
    await bench.check_datapath_ports()
    bench.finish()


@cocotb.test()
async def random_transactions(dut):
    """Seeded random accesses to registers, array elements and unmapped addresses, partial
    writes and hardware events, checked against the model; then the datapath ports."""
    regmap, raw = _settings()
    bench = CsrBankBench(dut, regmap)
    await bench.start()
    operations = random_operations(regmap, cocotb.RANDOM_SEED, raw.get("count", 1000))
    await bench.run(operations, "random")
    await bench.check_datapath_ports()
    accesses = sum(op.kind in ("read", "write") for op in operations)
    assert bench.master.cycles == 2 * accesses, f"{accesses} accesses took {bench.master.cycles} bus cycles"
    bench.finish()


@cocotb.test()
async def abandoned_accesses(dut):
    """A master that drops cyc before the answer leaves the bank idle for the next access."""
    regmap, _ = _settings()
    bench = CsrBankBench(dut, regmap)
    await bench.start()
    identity = regmap.address("ID")
    hole = regmap.address(regmap.registers[-1][1].name) + 4
    await bench.master.abandon(hole)
    await bench.master.abandon(regmap.address("ADC_TIMEOUT"), 77)
    assert await bench.master.read(identity) == bench.model.register_word("ID")
    assert await bench.master.read(regmap.address("ADC_TIMEOUT")) == 77  # the write took effect
    assert await bench.master.read(regmap.address("ERROR_COUNT")) == 1  # the unmapped access counted


@cocotb.test()
async def hardware_set_beats_clear(dut):
    """An RW1C set strobe in the same cycle as a bus clear keeps the bit set."""
    regmap, _ = _settings()
    bench = CsrBankBench(dut, regmap)
    await bench.start()
    status = regmap.register("STATUS")
    sticky = next(f for f in status.fields if f.access is Access.RW1C and f.source is None)
    strobe = getattr(dut, f"status_{sticky.name}_set")

    async def pulse_on_the_access_edge():
        strobe.value = 1
        await RisingEdge(dut.clk)
        strobe.value = 0

    cocotb.start_soon(pulse_on_the_access_edge())
    answer = await bench.master.access(regmap.address("STATUS"), sticky.mask)
    assert answer == Response(True)
    assert await bench.master.read(regmap.address("STATUS")) & sticky.mask
