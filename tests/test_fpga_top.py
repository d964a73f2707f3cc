"""FPGA top structure: address windows, register maps, decoder checks, Verilog generation."""

import gc
import warnings

import pytest

from neurophase.config import ChipConfig
from neurophase.fpga.cli import PRESET
from neurophase.fpga.regmap import FPGA_MAGIC, FpgaAddressMap
from neurophase.fpga.top import FpgaTop
from neurophase.rtl.wishbone_decoder import WishboneDecoder
from neurophase.generate import convert
from neurophase.regmap import tile_register_map


def test_windows_keep_the_tile_map_intact_and_do_not_overlap():
    cfg = ChipConfig.from_toml(PRESET)
    amap = FpgaAddressMap(cfg)
    tile = amap.window("tile")
    assert tile.base == 0
    assert [(a, i.name) for a, i in tile.regmap.entries()] == [(a, i.name) for a, i in tile_register_map(cfg).entries()]
    spans = sorted((w.base, w.base + w.regmap.size) for w in amap.windows)
    assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
    assert all(w.base % w.regmap.size == 0 for w in amap.windows)
    fpga = amap.window("fpga").regmap
    assert fpga.register("FPGA_ID").fields[0].reset == FPGA_MAGIC
    weights = amap.window("weights").regmap
    assert weights.item("WEIGHT").length == cfg.tile.rows * cfg.tile.cols * cfg.weights.slices
    data = amap.to_dict()
    assert [w["name"] for w in data["windows"]] == ["tile", "fpga", "weights", "results"]
    assert data["addr_width"] == amap.addr_width


def test_decoder_checks_its_windows():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # half-built components are never elaborated
        with pytest.raises(ValueError, match=r"^base of window 'a' must be a multiple of its size 0x40, not 32$"):
            WishboneDecoder(8, [("a", 32, 4)])
        with pytest.raises(ValueError, match=r"^window 'b' at 0x40 overlaps window 'a' at 0x0$"):
            WishboneDecoder(8, [("a", 0, 5), ("b", 0x40, 4)])
        with pytest.raises(ValueError, match=r"^window 'a' at 0x400 \(size 0x400\) does not fit a 8-bit word address$"):
            WishboneDecoder(8, [("a", 0x400, 8)])
        gc.collect()


def test_fpga_top_generates_verilog():
    cfg = ChipConfig.from_toml(PRESET)
    text = convert(FpgaTop(cfg, cfg.fpga.sim_clocks_per_bit), "fpga_top")
    assert "module fpga_top" in text
    for port in ("uart_rx", "uart_tx", "status"):
        assert port in text
    board_top = FpgaTop(cfg, 100)
    assert board_top.frame_timeout_cycles == cfg.fpga.bridge_timeout_bytes * 10 * 100
    assert "module fpga_top" in convert(board_top, "fpga_top")


def test_weight_memory_writes_elements_and_refuses_reads():
    from amaranth.sim import Simulator

    from neurophase.fpga.regmap import weight_register_map
    from neurophase.fpga.weight_memory import WEIGHT_READ_LATENCY, WeightMemory

    cfg = ChipConfig.from_toml(PRESET)
    dut = WeightMemory(weight_register_map(cfg))
    cols = cfg.tile.cols
    answers, rows = [], []

    async def access(ctx, address, data=None, sel=0b1111):
        bus = dut.bus
        ctx.set(bus.adr, address // 4)
        ctx.set(bus.we, int(data is not None))
        ctx.set(bus.dat_w, data or 0)
        ctx.set(bus.sel, sel)
        ctx.set(bus.cyc, 1)
        ctx.set(bus.stb, 1)
        for _ in range(4):
            await ctx.tick()
            ack, err = ctx.get(bus.ack), ctx.get(bus.err)
            if ack or err:
                break
        ctx.set(bus.cyc, 0)
        ctx.set(bus.stb, 0)
        await ctx.tick()
        answers.append("ack" if ack else "err" if err else "none")

    async def bench(ctx):
        await access(ctx, 4 * (cols + 3), 0x1234)        # row 1, column 3
        await access(ctx, 4 * (cols + 4), 0x0ABC)        # row 1, column 4
        await access(ctx, 4 * (cols + 5), 0x1, sel=0b0001)  # partial write: err
        await access(ctx, 4 * (cols + 3))                # read: err (write-only)
        ctx.set(dut.rd.addr, 1)
        await ctx.tick().repeat(WEIGHT_READ_LATENCY)
        rows.append([int(v) for v in ctx.get(dut.rd.data)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert answers == ["ack", "ack", "err", "err"]
    mask = (1 << (2 * cfg.fpga.conductance_bits)) - 1
    assert rows[0][3] == 0x1234 & mask and rows[0][4] == 0x0ABC & mask and rows[0][5] == 0


def test_emulator_and_weight_memory_agree_on_the_read_latency():
    from neurophase.fpga.crossbar_emulator import WEIGHT_LATENCY
    from neurophase.fpga.weight_memory import WEIGHT_READ_LATENCY

    assert WEIGHT_LATENCY == WEIGHT_READ_LATENCY == 2
