# amaranth: UnusedElaboratable=no
"""The CSR bank in Amaranth simulation against the reference model, and its Verilog under
Verilator (cocotb, ≥ 1000 random transactions)."""

from __future__ import annotations

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from neurophase.config import ChipConfig
from neurophase.cosim.runner import lint_verilog
from neurophase.generate import convert
from neurophase.models.csr_model import CsrModel, Operation, Response, corner_operations, random_operations
from neurophase.regmap import Access, Array, Field, Register, RegisterMap, Source, tile_register_map
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.interfaces import ParamReadSignature
from neurophase.rtl.wishbone import WishboneSignature
from sim_bus import SimBusMaster

SMALL = ChipConfig().replace(tile={"rows": 16, "cols": 16}, datapath={"lanes": 4})


def demo_map() -> RegisterMap:
    """A map exercising what the tile map does not: byte writes, a multi-bit RW1C field,
    an unsigned array with a lane count that is not a power of two, interrupts without
    a master enable, and no error counter."""
    rmap = RegisterMap("demo")
    rmap.add(Register("SCRATCH", (Field("low", 12, signed=True, reset=-5), Field("high", 20, offset=12)),
                      byte_writes=True, doc="byte-writable scratch"))
    rmap.add(Register("FLAGS", (Field("events", 4, Access.RW1C), Field("go", 3, Access.W1P, offset=8),
                                Field("level", 5, Access.R, offset=16), Field("oops", access=Access.RW1C,
                                                                              source=Source.BUS_ERROR))))
    rmap.add(Array("TABLE", 6, 10, lanes=3, reset=7, doc="unsigned, 3 lanes"))
    rmap.add_interrupts("FLAGS")
    return rmap


def run_bench(bank: CsrBank, bench) -> None:
    sim = Simulator(bank)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class ModelChecker:
    """Applies operations to the bank (bus and hardware ports) and to the model, comparing
    every answer, the W1P pulses and the ``irq`` output."""

    def __init__(self, ctx, bank: CsrBank, model: CsrModel):
        self.ctx, self.bank, self.model = ctx, bank, model
        self.master = SimBusMaster(ctx, bank.bus)
        self.pulses = {name: [] for name in model.pulses}

    def _record_pulses(self):
        for name, seen in self.pulses.items():
            value = self.ctx.get(getattr(self.bank, name))
            if value:
                seen.append(value)

    async def apply(self, op: Operation, tag: str = "") -> None:
        expected = self.model.apply(op)
        if op.kind == "input":
            self.ctx.set(getattr(self.bank, op.target), op.data)
            await self.ctx.tick()
        elif op.kind == "set":
            self.ctx.set(getattr(self.bank, f"{op.target}_set"), op.data)
            await self.ctx.tick()
            self.ctx.set(getattr(self.bank, f"{op.target}_set"), 0)
        else:
            data = op.data if op.kind == "write" else None
            got = await self.master.access(op.target, data, op.sel, on_answer=self._record_pulses)
            assert got == expected, f"{tag}: {op} answered {got}, model says {expected}"
        if hasattr(self.bank, "irq"):
            assert self.ctx.get(self.bank.irq) == self.model.irq, f"{tag}: irq differs after {op}"

    def check_pulses(self):
        assert self.pulses == self.model.pulses


# -- construction ------------------------------------------------------------------------------


def test_constructor_checks():
    with pytest.raises(TypeError, match=r"^regmap must be a RegisterMap, not 3$"):
        CsrBank(3)
    with pytest.raises(ValueError, match=r"^regmap 'empty' must hold at least one register or array$"):
        CsrBank(RegisterMap("empty"))
    read_only = RegisterMap("window")
    read_only.add(Array("RESULT", 4, 8, access="ro"))
    with pytest.raises(ValueError, match=r"^array RESULT of regmap 'window' has access 'ro'; the CSR bank "
                                         r"implements read-write \('rw'\) arrays only$"):
        CsrBank(read_only)
    with pytest.raises(TypeError, match=r"^Wishbone address width must be an integer from 1 to 30, not 0$"):
        WishboneSignature(0)


def test_signature_follows_the_naming_rule():
    bank = CsrBank(tile_register_map(ChipConfig()))
    members = bank.signature.members
    assert members["bus"].signature == WishboneSignature(11).flip()
    assert members["ctrl_start"].flow == Out and members["ctrl_start"].shape == unsigned(1)
    assert members["status_busy"].flow == In
    assert members["status_done_set"].flow == In
    assert members["status_done"].flow == Out
    assert members["drift_gain_alpha"].shape == signed(16)
    assert members["gain_rd"].signature == ParamReadSignature(signed(16), 32, 8).flip()
    assert members["adc_trim_rd"].signature == ParamReadSignature(signed(8), 32, 8).flip()
    assert members["bn_bias_rd"].signature == ParamReadSignature(signed(24), 32, 8).flip()
    assert "status_bus_error_set" not in members and "id_magic" not in members
    assert sorted(members) == sorted(["bus", *(m.name for m in bank.regmap.members())])


@pytest.mark.parametrize("cfg", [ChipConfig(), SMALL.replace(tile={"cols": 24}, datapath={"lanes": 6})],
                         ids=["default", "lanes6"])
def test_verilog_lint_clean(tmp_path, cfg):
    path = tmp_path / "csr_bank.v"
    path.write_text(convert(CsrBank(tile_register_map(cfg)), "csr_bank"))
    clean, output = lint_verilog([path], "csr_bank")
    assert clean, output


# -- Amaranth simulation ----------------------------------------------------------------------


def test_reset_values_and_identity():
    rmap = tile_register_map(SMALL)
    bank, model = CsrBank(rmap), CsrModel(rmap)

    async def bench(ctx):
        master = SimBusMaster(ctx, bank.bus)
        for address, register in rmap.registers:
            assert await master.read(address) == model.register_word(register.name), register.name
        assert await master.read(rmap.address("ID")) == 0x4E504854
        config0 = await master.read(rmap.address("CONFIG0"))
        assert (config0 & 0x1FFF, config0 >> 13 & 0x1FFF, config0 >> 26) == (16, 16, 8)
        assert await master.read(rmap.address("GAIN")) == 1 << 12
        assert master.answer_cycles == [1] * len(master.answer_cycles)

    run_bench(bank, bench)


def test_rw1c_w1p_and_hardware_strobes():
    rmap = tile_register_map(SMALL)
    bank = CsrBank(rmap)
    status, ctrl = rmap.address("STATUS"), rmap.address("CTRL")
    done, timeout = rmap.register("STATUS").field("done"), rmap.register("STATUS").field("adc_timeout")

    async def bench(ctx):
        master = SimBusMaster(ctx, bank.bus)
        ctx.set(bank.status_done_set, 1)
        await ctx.tick()
        ctx.set(bank.status_done_set, 0)
        ctx.set(bank.status_adc_timeout_set, 1)
        await ctx.tick()
        ctx.set(bank.status_adc_timeout_set, 0)
        assert ctx.get(bank.status_done) == 1
        assert await master.read(status) == done.mask | timeout.mask
        await master.write(status, done.mask)  # clears done only
        assert await master.read(status) == timeout.mask
        await master.write(status, 0)  # writing 0 clears nothing
        assert await master.read(status) == timeout.mask
        # a hardware set in the clear's own cycle wins
        ctx.set(bank.status_adc_timeout_set, 1)
        await master.write(status, timeout.mask)
        ctx.set(bank.status_adc_timeout_set, 0)
        assert await master.read(status) == timeout.mask
        # W1P: high for exactly the answer cycle, reads back 0
        seen = []
        await master.access(ctrl, 0b101, on_answer=lambda: seen.append((ctx.get(bank.ctrl_start),
                                                                         ctx.get(bank.ctrl_soft_reset),
                                                                         ctx.get(bank.ctrl_abort))))
        assert seen == [(1, 1, 0)]
        assert (ctx.get(bank.ctrl_start), ctx.get(bank.ctrl_soft_reset)) == (0, 0)
        assert await master.read(ctrl) == 0

    run_bench(bank, bench)


def test_interrupts():
    rmap = tile_register_map(SMALL)
    bank = CsrBank(rmap)
    enable, ctrl, status = rmap.address("IRQ_ENABLE"), rmap.address("CTRL"), rmap.address("STATUS")
    irq_en = rmap.register("CTRL").field("irq_en").mask
    done = rmap.register("STATUS").field("done").mask

    async def bench(ctx):
        master = SimBusMaster(ctx, bank.bus)
        ctx.set(bank.status_done_set, 1)
        await ctx.tick()
        ctx.set(bank.status_done_set, 0)
        assert ctx.get(bank.irq) == 0  # not enabled
        await master.write(enable, 0b1)
        assert await master.read(rmap.address("IRQ_PENDING")) == 1
        assert ctx.get(bank.irq) == 0  # master enable off
        await master.write(ctrl, irq_en)
        assert ctx.get(bank.irq) == 1
        await master.write(status, done)
        assert ctx.get(bank.irq) == 0
        assert await master.read(rmap.address("IRQ_PENDING")) == 0

    run_bench(bank, bench)


def test_errors_never_lock_the_bus_and_are_counted():
    rmap = tile_register_map(SMALL)
    bank = CsrBank(rmap)
    status, count = rmap.address("STATUS"), rmap.address("ERROR_COUNT")
    bus_error = rmap.register("STATUS").field("bus_error").mask
    hole = rmap.address("IRQ_PENDING") + 4

    async def bench(ctx):
        master = SimBusMaster(ctx, bank.bus)
        assert await master.access(hole) == Response(False)  # unmapped read
        assert await master.read(rmap.address("ID")) == 0x4E504854  # the bus still works
        assert await master.access(rmap.address("ID"), 0) == Response(False)  # read-only
        assert await master.access(rmap.address("ADC_TIMEOUT"), 0, sel=0b0011) == Response(False)  # partial
        assert await master.access(rmap.address("GAIN"), 5, sel=0b0001) == Response(False)  # partial, array
        assert await master.access(rmap.address("BN_BIAS") + 16 * 4) == Response(False)  # past the last array
        assert await master.read(count) == 5
        assert await master.read(status) & bus_error
        assert ctx.get(bank.status_bus_error) == 1
        await master.write(status, bus_error)
        assert not await master.read(status) & bus_error
        assert await master.read(rmap.address("ADC_TIMEOUT")) == SMALL.datapath.adc_timeout_cycles
        assert await master.read(rmap.address("GAIN")) == 1 << 12  # the refused writes changed nothing

    run_bench(bank, bench)


def test_dropped_cycle_returns_to_idle():
    rmap = tile_register_map(SMALL)
    bank = CsrBank(rmap)

    async def bench(ctx):
        bus = bank.bus
        master = SimBusMaster(ctx, bus)
        ctx.set(bus.adr, rmap.address("MVM_COUNT") // 4)
        ctx.set(bus.cyc, 1)
        ctx.set(bus.stb, 1)
        await ctx.tick()
        ctx.set(bus.cyc, 0)  # master gives up before taking the answer
        assert ctx.get(bus.ack) == 0 and ctx.get(bus.err) == 0
        await ctx.tick()
        ctx.set(bank.mvm_count_count, 1234)
        assert await master.read(rmap.address("MVM_COUNT")) == 1234
        assert master.answer_cycles == [1]

    run_bench(bank, bench)


def test_arrays_through_bus_and_datapath_ports():
    rmap = tile_register_map(SMALL)
    bank = CsrBank(rmap)
    base = rmap.address("BN_BIAS")
    values = [(-1) ** i * (i * 37_000) for i in range(16)]

    async def bench(ctx):
        master = SimBusMaster(ctx, bank.bus)
        for i, value in enumerate(values):
            await master.write(base + 4 * i, value & 0xFFFF_FFFF)
        for i, value in enumerate(values):
            assert await master.read(base + 4 * i) == value & 0xFFFF_FFFF  # sign-extended
        for group in range(4):
            ctx.set(bank.bn_bias_rd.addr, group)
            await ctx.tick()
            assert list(ctx.get(bank.bn_bias_rd.data)) == values[4 * group:4 * group + 4]
            ctx.set(bank.gain_rd.addr, group)
            await ctx.tick()
            assert list(ctx.get(bank.gain_rd.data)) == [1 << 12] * 4

    run_bench(bank, bench)


@pytest.mark.parametrize("make_map", [lambda: tile_register_map(SMALL), demo_map], ids=["tile", "demo"])
def test_random_operations_match_the_model(make_map):
    rmap = make_map()
    bank, model = CsrBank(rmap), CsrModel(rmap)
    operations = [op for _, ops in corner_operations(rmap) for op in ops] + random_operations(rmap, 7, 400)

    async def bench(ctx):
        checker = ModelChecker(ctx, bank, model)
        for i, op in enumerate(operations):
            await checker.apply(op, tag=f"operation {i}")
        checker.check_pulses()
        for _, array in rmap.arrays:
            port = getattr(bank, f"{array.name.lower()}_rd")
            for group in range(array.groups):
                ctx.set(port.addr, group)
                await ctx.tick()
                assert list(ctx.get(port.data)) == model.array_group(array.name, group)

    run_bench(bank, bench)


def test_byte_writes_change_only_selected_bytes():
    rmap = demo_map()
    bank = CsrBank(rmap)

    async def bench(ctx):
        master = SimBusMaster(ctx, bank.bus)
        await master.write(0, 0x1234_5678)
        await master.write(0, 0xAABB_CCDD, sel=0b0100)
        assert await master.read(0) == 0x12BB_5678
        assert ctx.get(bank.scratch_low) == 0x678
        assert ctx.get(bank.scratch_high) == 0x12BB5

    run_bench(bank, bench)


# -- Verilog under Verilator -------------------------------------------------------------------


@pytest.mark.verilator
def test_cocotb_regression(tmp_path_factory):
    from neurophase.cosim.regressions import run_csr_bank

    build_dir = tmp_path_factory.mktemp("csr_bank")
    run = run_csr_bank(ChipConfig(), build_dir, seed=20261122, count=1200)
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; seed {run.seed}; see {run.results_xml}"
    assert run.tests >= 4
