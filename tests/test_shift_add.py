"""Shift-and-add at three levels, one set of cases: golden model vs plain integers,
Amaranth simulation vs golden, generated Verilog under Verilator (cocotb) vs golden."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from neurophase.config import ChipConfig, ConfigError
from neurophase.cosim.regressions import run_shift_add
from neurophase.cosim.runner import lint_verilog
from neurophase.generate import convert
from neurophase.models.shift_add import (
    ShiftAddParams,
    shift_add,
    shift_add_beats,
    shift_add_ideal,
    shift_add_output_beats,
)
from neurophase.models.stimulus import shift_add_cases, shift_add_random_cases
from neurophase.rtl.shift_add import ShiftAdd

DEFAULT = ShiftAddParams.from_config(ChipConfig())
#: Parameter sets every level runs: the default chip, a saturating multi-slice variant
#: with column groups, and unsigned inputs with a single column group (lanes == columns).
VARIANTS = {
    "default": DEFAULT,
    "sliced_saturating": ShiftAddParams(adc_bits=6, planes=5, slices=3, factor=4, columns=32, lanes=8, out_bits=12),
    "unsigned_one_group": ShiftAddParams(adc_bits=5, planes=4, msb_negative=False, slices=2, factor=3,
                                         columns=8, lanes=8),
}


# -- level 1: golden model against plain integer arithmetic -----------------------

@pytest.mark.parametrize("name", VARIANTS)
def test_golden_equals_integer_arithmetic_at_full_precision(name, seed):
    params = dataclasses.replace(VARIANTS[name], out_bits=0)
    for _, codes in shift_add_cases(params, seed, 50):
        result, saturated = shift_add(params, codes)
        assert list(result) == list(shift_add_ideal(params, codes))
        assert not saturated.any()


def test_golden_saturates_stepwise_like_a_clipping_accumulator(seed):
    params = VARIANTS["sliced_saturating"]
    lo, hi = params.out_range
    saturated_somewhere = False
    for _, codes in shift_add_cases(params, seed, 30):
        result, saturated = shift_add(params, codes)
        for col in range(params.columns):
            acc, clipped = 0, False
            for s in range(params.slices):
                for b in range(params.planes):
                    total = acc + int(codes[s, b, col]) * params.weight(s, b)
                    acc = min(max(total, lo), hi)
                    clipped |= acc != total
            assert (result[col], saturated[col]) == (acc, clipped)
            saturated_somewhere |= clipped
    assert saturated_somewhere, "the saturating variant must exercise saturation"


def test_twos_complement_input_reconstruction():
    """Codes equal to the input bits of x (one column, weight 1) reproduce x itself."""
    params = ShiftAddParams(adc_bits=2, planes=8, columns=1, lanes=1)
    for x in (-128, -1, 0, 1, 77, 127):
        bits = [(x >> b) & 1 for b in range(8)]
        codes = np.array(bits, dtype=np.int64).reshape(1, 8, 1)
        assert shift_add(params, codes)[0][0] == x


def test_code_and_parameter_errors():
    with pytest.raises(ValueError, match=r"ADC code 128 at \(slice, plane, column\) \(0, 3, 5\) is outside the signed 8-bit range \[-128, 127\]"):
        codes = np.zeros((1, 8, 256), dtype=np.int64)
        codes[0, 3, 5] = 128
        shift_add(DEFAULT, codes)
    with pytest.raises(ValueError, match=r"codes must have shape \(1, 8, 256\)"):
        shift_add(DEFAULT, np.zeros((8, 256), dtype=np.int64))
    with pytest.raises(ValueError, match="codes must be integers, not float64"):
        shift_add(DEFAULT, np.zeros((1, 8, 256)))
    with pytest.raises(ConfigError, match=r"shift-add lanes must divide columns \(256\), not 7"):
        ShiftAddParams(lanes=7)
    with pytest.raises(ConfigError, match="shift-add out_bits must be 0 or at least adc_bits"):
        ShiftAddParams(out_bits=4)
    with pytest.raises(TypeError, match="params must be a ShiftAddParams, not 3"):
        ShiftAdd(3)


# -- level 2: Amaranth simulation against the golden model ------------------------

def simulate_amaranth(params, cases, seed, idle=0.2, stall=0.3):
    """Drive ``cases`` through the Amaranth model with random idle cycles and back-pressure;
    returns the observed output beats."""
    dut = ShiftAdd(params)
    rng = random.Random(seed)
    expected_beats = len(cases) * params.groups
    observed = []

    async def producer(ctx):
        for _, codes in cases:
            for beat in shift_add_beats(params, codes):
                while rng.random() < idle:
                    await ctx.tick()
                ctx.set(dut.i_stream.payload, {"codes": [int(c) for c in beat]})
                ctx.set(dut.i_stream.valid, 1)
                await ctx.tick().until(dut.i_stream.ready)
                ctx.set(dut.i_stream.valid, 0)

    async def consumer(ctx):
        while len(observed) < expected_beats:
            ctx.set(dut.o_stream.ready, int(rng.random() >= stall))
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload)
            if valid and ready:
                observed.append({
                    "data": [int(payload.data[i]) for i in range(params.lanes)],
                    "saturated": int(payload.saturated),
                    "last": int(payload.last),
                })

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-8 * (expected_beats * params.planes * params.slices * 10 + 1000))
    return observed


@pytest.mark.parametrize("name", VARIANTS)
def test_amaranth_matches_golden(name, seed, length):
    params = VARIANTS[name]
    count = length(30 if params.columns > 64 else 150)
    cases = shift_add_cases(params, seed, count)
    observed = simulate_amaranth(params, cases, seed)
    expected = [beat for _, codes in cases for beat in shift_add_output_beats(params, codes)]
    assert len(observed) == len(expected)
    for i, (got, want) in enumerate(zip(observed, expected)):
        assert got == want, f"beat {i} (case {cases[i // params.groups][0]}), seed {seed}"


def test_amaranth_restart_drops_partial_mvm(seed):
    params = VARIANTS["sliced_saturating"]
    (_, partial), (_, full) = shift_add_random_cases(params, seed, 2)
    dut = ShiftAdd(params)
    observed = []

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for beat in shift_add_beats(params, partial)[: params.beats_per_mvm // 2]:
            ctx.set(dut.i_stream.payload, {"codes": [int(c) for c in beat]})
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick().until(dut.i_stream.ready)
        ctx.set(dut.i_stream.valid, 0)
        assert ctx.get(dut.busy)
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        assert not ctx.get(dut.busy)
        for beat in shift_add_beats(params, full):
            ctx.set(dut.i_stream.payload, {"codes": [int(c) for c in beat]})
            ctx.set(dut.i_stream.valid, 1)
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload)
            if valid:
                observed.append([int(payload.data[i]) for i in range(params.lanes)])
        ctx.set(dut.i_stream.valid, 0)
        for _ in range(3):
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload)
            if valid:
                observed.append([int(payload.data[i]) for i in range(params.lanes)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert observed == [beat["data"] for beat in shift_add_output_beats(params, full)]


# -- level 3: generated Verilog under Verilator through cocotb --------------------

@pytest.mark.parametrize("name, count", [("default", 120), ("sliced_saturating", 1000), ("unsigned_one_group", 1000)])
def test_verilator_matches_golden(name, count, seed, length, build_root):
    run = run_shift_add(VARIANTS[name], build_root / name, seed=seed, count=length(count))
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; results {run.results_xml}; seed {seed}"
    assert run.tests == 4


@pytest.mark.parametrize("name", VARIANTS)
def test_generated_verilog_is_lint_clean(name, tmp_path):
    source = tmp_path / "shift_add.v"
    source.write_text(convert(ShiftAdd(VARIANTS[name]), "shift_add"))
    clean, output = lint_verilog([source], "shift_add")
    assert clean, output


@pytest.mark.slow
def test_verilator_exhaustive(seed, build_root):
    run = run_shift_add(VARIANTS["default"], build_root / "exhaustive", seed=seed, count=2000)
    assert run.ok
