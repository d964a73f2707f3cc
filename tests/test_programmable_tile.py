# amaranth: UnusedElaboratable=no
"""The programmable tile: both register maps behind one bus, the pulse and verify-read
ports at the tile boundary, and the interlock between MVMs and program-verify."""

import pytest
from amaranth.sim import Simulator

from neurophase.config import ChipConfig
from neurophase.cosim.runner import lint_verilog
from neurophase.generate import convert
from neurophase.models.program_verify import program_verify_register_map
from neurophase.regmap import tile_register_map
from neurophase.rtl.command_guard import CommandGuard
from neurophase.rtl.programmable_tile import ProgrammableTile, tile_windows
from sim_bus import SimBusMaster

SMALL = ChipConfig().replace(tile={"rows": 8, "cols": 8}, datapath={"lanes": 4})


def command(regmap, register, field):
    """(byte address, data word) that sets one W1P command bit."""
    return regmap.address(register), 1 << regmap.register(register).field(field).offset


def unmapped_address(dut) -> int:
    """A byte address in no window, or in a window but on no register of its map."""
    covered = [(base, base + (4 << width)) for _, base, width in dut.windows]
    for address in range(0, 4 << dut.addr_width, 4):
        if not any(lo <= address < hi for lo, hi in covered):
            return address
    used = {address for address, _ in tile_register_map(dut.cfg).entries()}
    return next(a for a in range(0, 4 << dut.windows[0][2], 4) if a not in used)


def run(dut, *benches):
    """Simulate ``dut`` with the first testbench in front and the others in the background."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(benches[0])
    for bench in benches[1:]:
        sim.add_testbench(bench, background=True)
    sim.run()


def test_windows_are_aligned_and_disjoint():
    windows = tile_windows(ChipConfig())
    (_, tile_base, tile_width), (_, pv_base, pv_width) = windows
    assert tile_base == 0
    assert pv_base % (4 << pv_width) == 0 and pv_base >= 4 << tile_width


def test_both_maps_reachable_and_unmapped_is_err():
    dut = ProgrammableTile(SMALL)
    pv_base = dut.windows[1][1]
    tile_map, pv_map = tile_register_map(SMALL), program_verify_register_map(SMALL)

    async def bench(ctx):
        master = SimBusMaster(ctx, dut.bus)
        assert await master.read(tile_map.address("ID")) == tile_map.register("ID").reset
        info = await master.read(pv_base + pv_map.address("PV_INFO"))
        assert info == pv_map.register("PV_INFO").reset
        response = await master.access(unmapped_address(dut))
        assert not response.ok
        assert await master.read(tile_map.address("ID")) == tile_map.register("ID").reset  # bus not locked

    run(dut, bench)


def test_mvm_and_program_verify_lock_each_other_out():
    dut = ProgrammableTile(SMALL)
    pv_base = dut.windows[1][1]
    tile_map, pv_map = tile_register_map(SMALL), program_verify_register_map(SMALL)
    mvm_start = command(tile_map, "CTRL", "start")
    mvm_abort = command(tile_map, "CTRL", "abort")
    pv_start = command(pv_map, "PV_CTRL", "start")
    busy_bit = 1 << tile_map.register("STATUS").field("busy").offset
    pv_busy_bit = 1 << pv_map.register("PV_STATUS").field("busy").offset
    adc_starts = []

    async def watch_adc(ctx):
        async for _, _, start in ctx.tick().sample(dut.adc.start):
            adc_starts.append(start)

    async def bench(ctx):
        master = SimBusMaster(ctx, dut.bus)
        ctx.set(dut.read_resp.valid, 0)
        await master.write(pv_base + pv_start[0], pv_start[1])
        assert await master.read(pv_base + pv_map.address("PV_STATUS")) & pv_busy_bit
        for _ in range(100):
            if ctx.get(dut.read_req.valid):
                break
            await ctx.tick()
        else:
            raise AssertionError("the verify read request must reach the tile boundary")

        adc_starts.clear()
        refused = await master.access(*mvm_start)
        assert not refused.ok, "an MVM start during program-verify must be refused"
        assert not await master.read(tile_map.address("STATUS")) & busy_bit
        assert not any(adc_starts)

        # answer the verify read with the targets (reset value 0): every device converges
        ctx.set(dut.read_resp.payload, {"codes": [0] * (2 * SMALL.weights.slices * SMALL.tile.cols)})
        ctx.set(dut.read_req.ready, 1)
        await ctx.tick()
        ctx.set(dut.read_req.ready, 0)
        ctx.set(dut.read_resp.valid, 1)
        await ctx.tick()
        ctx.set(dut.read_resp.valid, 0)
        for _ in range(200):
            if not await master.read(pv_base + pv_map.address("PV_STATUS")) & pv_busy_bit:
                break
        else:
            raise AssertionError("program-verify did not finish")

        await master.write(*mvm_start)
        assert await master.read(tile_map.address("STATUS")) & busy_bit
        assert any(adc_starts), "the MVM's conversion request must reach the ADC port"
        refused = await master.access(pv_base + pv_start[0], pv_start[1])
        assert not refused.ok, "a program-verify start during an MVM must be refused"
        await master.write(*mvm_abort)
        assert not await master.read(tile_map.address("STATUS")) & busy_bit
        await master.write(pv_base + pv_start[0], pv_start[1])  # accepted again once idle
        assert await master.read(pv_base + pv_map.address("PV_STATUS")) & pv_busy_bit

    run(dut, bench, watch_adc)


def test_guard_checks_its_arguments():
    with pytest.raises(ValueError, match="word_address must be an integer from 0 to 15, not 16"):
        CommandGuard(4, 16, 0)
    with pytest.raises(ValueError, match="bit must be an integer from 0 to 31, not 32"):
        CommandGuard(4, 0, 32)


def test_generated_verilog_is_lint_clean(tmp_path):
    source = tmp_path / "programmable_tile.v"
    source.write_text(convert(ProgrammableTile(SMALL), "programmable_tile"))
    clean, output = lint_verilog([source], "programmable_tile")
    assert clean, output
