"""ADC interface at three levels, one set of cases: golden model vs plain integer
arithmetic, Amaranth simulation vs golden, generated Verilog under Verilator (cocotb)."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from neurophase.config import ChipConfig, ConfigError
from neurophase.cosim.ports import pack, unpack
from neurophase.cosim.regressions import run_adc_interface
from neurophase.cosim.runner import lint_verilog
from neurophase.generate import convert
from neurophase.models.adc_interface import (
    AdcInterfaceParams,
    adc_interface_beats,
    adc_trim,
    conversion_codes,
    conversion_order,
)
from neurophase.models.datapath_stimulus import adc_interface_cases
from neurophase.rtl.adc_interface import AdcInterface, adc_codes_layout

DEFAULT = AdcInterfaceParams.from_config(ChipConfig())
VARIANTS = {
    "default": DEFAULT,
    "muxed_sliced": AdcInterfaceParams(adc_bits=6, columns=32, columns_per_adc=2, lanes=8, slices=2, planes=4),
    "one_group_mux4": AdcInterfaceParams(adc_bits=5, columns=8, columns_per_adc=4, lanes=8, slices=1, planes=3),
}


# -- level 1: golden model against plain integer arithmetic ------------------------

@pytest.mark.parametrize("name", VARIANTS)
def test_golden_equals_integer_arithmetic(name, seed):
    params = VARIANTS[name]
    lo, hi = params.code_range
    clipped_somewhere = False
    for case, codes, trims in adc_interface_cases(params, seed, 30):
        beats = adc_interface_beats(params, codes, trims)
        flat = [c for beat in beats for c in beat["codes"]]
        want = [min(max(int(codes[s, b, c]) - int(trims[c]), lo), hi)
                for s in range(params.slices) for b in range(params.planes) for c in range(params.columns)]
        assert flat == want, f"{case}, seed {seed}"
        clipped_somewhere |= adc_trim(params, codes, trims)[1].any()
    assert clipped_somewhere


def test_conversions_cover_every_column_once():
    params = VARIANTS["muxed_sliced"]
    codes = np.arange(params.columns, dtype=np.int64)[None, None, :] % 31 * np.ones((2, 4, 1), dtype=np.int64)
    order = conversion_order(params)
    assert order[:3] == [(0, 0, 0), (0, 0, 1), (0, 1, 0)] and len(order) == params.conversions_per_mvm
    seen = {}
    for s, b, k in order:
        for i, code in enumerate(conversion_codes(params, codes, s, b, k)):
            seen[(s, b, i * params.columns_per_adc + k)] = code
    assert len(seen) == params.slices * params.planes * params.columns
    assert all(seen[(s, b, c)] == codes[s, b, c] for s, b, c in seen)


def test_parameter_errors():
    with pytest.raises(ConfigError, match=r"ADC interface columns_per_adc must divide columns \(256\), not 3"):
        AdcInterfaceParams(columns_per_adc=3)
    with pytest.raises(ValueError, match=r"trim -129 of column 0 is outside the signed 8-bit range \[-128, 127\]"):
        adc_trim(DEFAULT, np.zeros((1, 8, 256), dtype=np.int64), np.full(256, -129))
    with pytest.raises(TypeError, match="params must be an AdcInterfaceParams, not 'x'"):
        AdcInterface("x")


# -- level 2: Amaranth simulation against the golden model -------------------------

def simulate(params, cases, seed, latency=3, stall=0.3, timeout_cycles=1000, silent_first=False):
    """Run ``cases`` (start each when the previous one's conversions are in) with an ADC
    responder of ``latency`` cycles; returns output beats, request log, timeout cycles."""
    dut = AdcInterface(params)
    rng = random.Random(seed)
    layout = adc_codes_layout(params)
    code_layout = dut.adc.codes.shape()
    trim_layout = dut.trim.data.shape()
    beats_per_mvm = params.slices * params.planes * params.groups
    state = {"codes": None, "silent": silent_first, "cycle": 0, "mvm": -1, "beats": 0}
    observed, requests, timeouts = [], [], []

    async def adc(ctx):
        pending = None
        async for _, _, start, cancel, s, b, k, timeout in ctx.tick().sample(
                dut.adc.start, dut.adc.cancel, dut.adc.slice, dut.adc.plane, dut.adc.phase, dut.timeout):
            if timeout:
                timeouts.append(state["cycle"])
            if cancel:
                pending = None
            if start:
                requests.append((state["cycle"], int(s), int(b), int(k)))
                pending = None if state["silent"] else [(int(s), int(b), int(k)), latency]
            state["cycle"] += 1
            ctx.set(dut.adc.done, 0)
            if pending is not None:
                pending[1] -= 1
                if pending[1] == 0:
                    codes = conversion_codes(params, state["codes"], *pending[0])
                    ctx.set(dut.adc.codes.as_value(), pack(code_layout, [int(c) for c in codes]))
                    ctx.set(dut.adc.done, 1)
                    pending = None

    async def trims(ctx):
        async for _, _, addr, valid, ready in ctx.tick().sample(dut.trim.addr, dut.o_stream.valid, dut.o_stream.ready):
            if valid and ready:
                state["beats"] += 1
            # the data meets the next beat to enter the output register: count the one waiting there
            entered = state["beats"] + ctx.get(dut.o_stream.valid)
            table = cases[min(entered // beats_per_mvm, len(cases) - 1)][2].reshape(-1, params.lanes)
            ctx.set(dut.trim.data.as_value(), pack(trim_layout, [int(v) for v in table[int(addr) % len(table)]]))

    async def consumer(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload.as_value()):
            if valid and ready:
                observed.append(unpack(layout, int(payload)))
            ctx.set(dut.o_stream.ready, int(rng.random() >= stall))

    async def control(ctx):
        ctx.set(dut.timeout_cycles, timeout_cycles)
        await ctx.tick().repeat(2)
        for _, codes, _ in cases:
            await ctx.tick().until(~dut.running)
            state["codes"] = codes
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick()
        await ctx.tick().until(~dut.busy)
        await ctx.tick().repeat(4)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(adc)
    sim.add_testbench(trims, background=True)
    sim.add_process(consumer)
    sim.add_testbench(control)
    sim.run()
    return observed, requests, timeouts


@pytest.mark.parametrize("name", VARIANTS)
def test_amaranth_matches_golden(name, seed, length):
    params = VARIANTS[name]
    cases = adc_interface_cases(params, seed, length(3 if params.columns > 64 else 20))
    observed, requests, timeouts = simulate(params, cases, seed)
    expected = [beat for _, codes, trims in cases for beat in adc_interface_beats(params, codes, trims)]
    assert observed == expected, f"seed {seed}"
    assert [r[1:] for r in requests] == conversion_order(params) * len(cases)
    assert not timeouts


def test_amaranth_back_to_back_conversions_at_default():
    params = DEFAULT
    cases = adc_interface_cases(params, 1, 1)[-1:]
    latency = ChipConfig().adc.latency_cycles
    observed, requests, _ = simulate(params, cases, 1, latency=latency, stall=0.0)
    gaps = {b[0] - a[0] for a, b in zip(requests, requests[1:])}
    assert gaps == {latency}
    assert len(observed) == params.slices * params.planes * params.groups


def test_amaranth_timeout_returns_to_idle(seed):
    params = VARIANTS["muxed_sliced"]
    cases = adc_interface_cases(params, seed, 1)[-1:]
    observed, requests, timeouts = simulate(params, cases, seed, timeout_cycles=9, silent_first=True)
    assert observed == [] and len(requests) == 1
    assert timeouts == [requests[0][0] + 9]


# -- level 3: generated Verilog under Verilator through cocotb ---------------------

@pytest.mark.parametrize("name, count, latency", [("muxed_sliced", 1000, 4),
                                                   pytest.param("one_group_mux4", 300, 2, marks=pytest.mark.slow)])
def test_verilator_matches_golden(name, count, latency, seed, length, build_root):
    run = run_adc_interface(VARIANTS[name], build_root / name, latency=latency, seed=seed, count=length(count))
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; results {run.results_xml}; seed {seed}"
    assert run.tests == 4


@pytest.mark.parametrize("name", VARIANTS)
def test_generated_verilog_is_lint_clean(name, tmp_path):
    source = tmp_path / "adc_interface.v"
    source.write_text(convert(AdcInterface(VARIANTS[name]), "adc_interface"))
    clean, output = lint_verilog([source], "adc_interface")
    assert clean, output
