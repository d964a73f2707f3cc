"""Benchmark: cycles per MVM of the tile top against the ADC bound.

Simulates the tile (Amaranth simulator) with an ideal ADC responder that answers every
conversion after exactly ``adc.latency_cycles``, an always-ready result sink, and the
start command written over the Wishbone CSR bus. ``cycles_per_mvm`` counts from the
cycle the datapath accepts the start command (the cycle before the first conversion
request) to the cycle the last result beat leaves, inclusive. The ADC bound is
``slices x bit-planes x conversions per plane x latency``; the ratio is the figure of
merit (1.0 = the ADCs are the only limit).
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from neurophase.config import ChipConfig
from neurophase.cosim.ports import pack
from neurophase.models.adc_interface import conversion_codes
from neurophase.models.datapath import DatapathParams, DatapathSettings, datapath_output_beats
from neurophase.regmap import WORD_BYTES
from neurophase.rtl.tile import Tile

__all__ = ["measure_mvm_cycles", "run"]


def measure_mvm_cycles(cfg: ChipConfig, codes: np.ndarray | None = None, seed: int = 1) -> dict:
    """Run one MVM of ``codes`` (random when None) through the tile with register reset
    values; returns the measured cycles, the ADC bound and whether the result matched the
    golden model."""
    params = DatapathParams.from_config(cfg)
    if codes is None:
        lo, hi = params.adc.code_range
        codes = np.random.default_rng(seed).integers(lo, hi + 1, size=(params.adc.slices, params.adc.planes,
                                                                          params.columns))
    dut = Tile(cfg)
    latency = cfg.adc.latency_cycles
    ctrl = dut.regmap.register("CTRL")
    start_word = 1 << ctrl.field("start").offset
    ctrl_addr = dut.regmap.address("CTRL") // WORD_BYTES
    code_layout = dut.adc.codes.shape()
    cycle = [0]
    requests, beats, last_cycle = [], [], []

    async def adc(ctx):
        pending = None
        async for _, _, start, s, b, k in ctx.tick().sample(dut.adc.start, dut.adc.slice, dut.adc.plane,
                                                             dut.adc.phase):
            if start:
                requests.append(cycle[0])
                pending = [(int(s), int(b), int(k)), latency]
            cycle[0] += 1
            ctx.set(dut.adc.done, 0)
            if pending is not None:
                pending[1] -= 1
                if pending[1] == 0:
                    chunk = conversion_codes(params.adc, codes, *pending[0])
                    ctx.set(dut.adc.codes.as_value(), pack(code_layout, [int(c) for c in chunk]))
                    ctx.set(dut.adc.done, 1)
                    pending = None

    async def sink(ctx):
        ctx.set(dut.o_stream.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload):
            if valid:
                beats.append([int(payload.data[i]) for i in range(params.lanes)])
                if payload.last:
                    last_cycle.append(cycle[0] - 1)

    async def host(ctx):
        await ctx.tick().repeat(2)
        for name, value in (("adr", ctrl_addr), ("dat_w", start_word), ("sel", 0b1111), ("we", 1), ("cyc", 1),
                            ("stb", 1)):
            ctx.set(getattr(dut.bus, name), value)
        await ctx.tick().until(dut.bus.ack | dut.bus.err)
        for name in ("cyc", "stb", "we"):
            ctx.set(getattr(dut.bus, name), 0)
        await ctx.tick().until(dut.o_stream.valid & dut.o_stream.payload.last)
        await ctx.tick().repeat(3)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(adc)
    sim.add_process(sink)
    sim.add_testbench(host)
    sim.run()
    accepted = requests[0] - 1
    cycles = last_cycle[0] - accepted + 1
    bn_ctrl = dut.regmap.register("BN_CTRL")
    settings = DatapathSettings.identity(params, shift=min(bn_ctrl.field("requant_shift").reset,
                                                           params.batch_norm.width),
                                         relu=bool(bn_ctrl.field("relu_en").reset))
    want = datapath_output_beats(params, codes, settings)
    return {
        "cycles_per_mvm": cycles,
        "adc_bound_cycles": params.adc_bound_cycles,
        "ratio_vs_adc_bound": cycles / params.adc_bound_cycles,
        "conversions": len(requests),
        "matches_golden": beats == [w["data"] for w in want],
    }


def run(cfg: ChipConfig | None = None) -> dict:
    """The benchmark's JSON figures at ``cfg`` (default: the default chip)."""
    cfg = cfg or ChipConfig()
    result = measure_mvm_cycles(cfg)
    return {
        "cycles_per_mvm": result["cycles_per_mvm"],
        "ratio_vs_adc_bound": round(result["ratio_vs_adc_bound"], 4),
        "adc_bound_cycles": result["adc_bound_cycles"],
        "matches_golden": result["matches_golden"],
        "config": {
            "columns": cfg.tile.cols,
            "lanes": cfg.datapath.lanes,
            "slices": cfg.weights.slices,
            "planes": cfg.input.planes,
            "columns_per_adc": cfg.adc.columns_per_adc,
            "adc_latency_cycles": cfg.adc.latency_cycles,
        },
        "simulator": "amaranth",
    }
