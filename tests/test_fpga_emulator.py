"""Crossbar emulator: RTL (Amaranth simulation) against its bit-true golden model, and the
golden model against plain integer arithmetic."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed, unsigned
from amaranth.lib import data, memory
from amaranth.sim import Simulator

from neurophase.config import ChipConfig, ConfigError
from neurophase.fpga.crossbar_emulator import CrossbarEmulator
from neurophase.models.crossbar_emulator import (
    SCALE_FRAC_BITS, CrossbarEmulatorModel, EmulatorParams, drift_scale, lfsr_seed, lfsr_step, pack_pair, unpack_pair,
)

SMALL = EmulatorParams(rows=8, cols=8, slices=2, planes=4, input_bits=4, input_signed=True, columns_per_adc=2,
                       adc_bits=6, conductance_bits=3, lanes=4)


def random_model(params: EmulatorParams, rng, seed=1) -> CrossbarEmulatorModel:
    model = CrossbarEmulatorModel(params, seed=seed)
    hi = (1 << params.conductance_bits) - 1
    shape = (params.slices, params.rows, params.cols)
    model.set_conductances(rng.integers(0, hi + 1, shape), rng.integers(0, hi + 1, shape))
    lo, top = params.input_range
    model.set_inputs(rng.integers(lo, top + 1, params.rows))
    return model


class EmulatorHarness(Elaboratable):
    """The emulator with WEIGHT and INPUT memories initialised from a model."""

    def __init__(self, model: CrossbarEmulatorModel, input_latency: int = 1):
        self.model = model
        self.input_latency = input_latency
        self.emulator = CrossbarEmulator(model.params, input_latency=input_latency)

    def elaborate(self, platform):
        m = Module()
        p = self.model.params
        m.submodules.emulator = emu = self.emulator
        words = pack_pair(self.model.g_plus, self.model.g_minus, p.conductance_bits).reshape(p.slices * p.rows, p.cols)
        weight_layout = data.ArrayLayout(unsigned(2 * p.conductance_bits), p.cols)
        m.submodules.weights = weights = memory.Memory(shape=weight_layout, depth=p.slices * p.rows,
                                                       init=[[int(v) for v in row] for row in words])
        input_shape = signed(p.input_bits) if p.input_signed else unsigned(p.input_bits)
        m.submodules.inputs = inputs = memory.Memory(shape=data.ArrayLayout(input_shape, 1), depth=p.rows,
                                                     init=[[int(v)] for v in self.model.inputs])
        w_rd, x_rd = weights.read_port(), inputs.read_port()
        # WEIGHT data two cycles after the address (as WeightMemory delivers it), INPUT one
        # (a memory) or two (an output register after it, as the chip top's row buffer)
        m.d.comb += [w_rd.addr.eq(emu.weight_rd.addr), x_rd.addr.eq(emu.input_rd.addr)]
        if self.input_latency == 1:
            m.d.comb += emu.input_rd.data.eq(x_rd.data)
        else:
            m.d.sync += emu.input_rd.data.eq(x_rd.data)
        m.d.sync += emu.weight_rd.data.eq(w_rd.data)
        return m


def run_harness(model: CrossbarEmulatorModel, testbench, input_latency: int = 1):
    harness = EmulatorHarness(model, input_latency)
    sim = Simulator(harness)
    sim.add_clock(1e-8)

    async def bench(ctx):
        await testbench(ctx, harness.emulator)

    sim.add_testbench(bench)
    sim.run()


async def request(ctx, emu, s, b, k):
    ctx.set(emu.adc.slice, s)
    ctx.set(emu.adc.plane, b)
    ctx.set(emu.adc.phase, k)
    ctx.set(emu.adc.start, 1)
    await ctx.tick()
    ctx.set(emu.adc.start, 0)


async def wait_done(ctx, emu, limit=400):
    for cycle in range(limit):
        if ctx.get(emu.adc.done):
            return [int(v) for v in ctx.get(emu.adc.codes)], cycle
        await ctx.tick()
    raise AssertionError(f"no done within {limit} cycles")


@pytest.mark.parametrize("input_latency", [1, 2])
def test_conversions_match_golden_model(seed, input_latency):
    rng = np.random.default_rng(seed)
    model = random_model(SMALL, rng)
    expected_model = random_model(SMALL, np.random.default_rng(seed))
    order = [(s, b, k) for s in range(SMALL.slices) for b in range(SMALL.planes) for k in range(SMALL.columns_per_adc)]
    results = []

    async def testbench(ctx, emu):
        ctx.set(emu.noise_bits, 3)
        ctx.set(emu.scale, 7 << SCALE_FRAC_BITS)  # 7.0: codes saturate often
        for s, b, k in order:
            await request(ctx, emu, s, b, k)
            codes, cycles = await wait_done(ctx, emu)
            results.append(codes)
            assert cycles == SMALL.rows + SMALL.codes_per_conversion + 8  # as documented
        await ctx.tick()
        assert ctx.get(emu.conversions) == len(order)

    expected_model.noise_bits = 3
    expected_model.scale = 7 << SCALE_FRAC_BITS
    expected = [list(expected_model.convert(s, b, k)) for s, b, k in order]
    run_harness(model, testbench, input_latency)
    assert results == expected
    assert any(abs(c) == 32 or c == 31 for codes in expected for c in codes), "the case should reach saturation"


def test_request_in_the_done_cycle_and_cancel(seed):
    """The tile starts the next conversion in the same cycle as a done; a cancelled
    conversion never answers, and the next one is still exact (its LFSR step counts)."""
    rng = np.random.default_rng(seed + 1)
    model = random_model(SMALL, rng)
    expected_model = random_model(SMALL, np.random.default_rng(seed + 1))
    expected_model.noise_bits = 2
    got = []

    async def testbench(ctx, emu):
        ctx.set(emu.noise_bits, 2)
        await request(ctx, emu, 0, 0, 0)
        for s, b, k in ((0, 1, 1), (1, 3, 0)):
            for _ in range(400):
                if ctx.get(emu.adc.done):
                    break
                await ctx.tick()
            got.append([int(v) for v in ctx.get(emu.adc.codes)])
            await request(ctx, emu, s, b, k)  # in the done cycle
        codes, _ = await wait_done(ctx, emu)
        got.append(codes)
        # cancel a conversion halfway: no done may follow
        await request(ctx, emu, 1, 1, 1)
        for _ in range(5):
            await ctx.tick()
        ctx.set(emu.adc.cancel, 1)
        await ctx.tick()
        ctx.set(emu.adc.cancel, 0)
        for _ in range(60):
            assert not ctx.get(emu.adc.done)
            assert not ctx.get(emu.busy)
            await ctx.tick()
        await request(ctx, emu, 1, 2, 0)
        codes, _ = await wait_done(ctx, emu)
        got.append(codes)

    run_harness(model, testbench)
    expected = [list(expected_model.convert(*req)) for req in ((0, 0, 0), (0, 1, 1), (1, 3, 0))]
    expected_model.convert(1, 1, 1)  # cancelled, but its LFSR step happened
    expected.append(list(expected_model.convert(1, 2, 0)))
    assert got == expected


def test_reseed_restarts_the_noise_sequence(seed):
    model = random_model(SMALL, np.random.default_rng(seed))
    got = []

    async def testbench(ctx, emu):
        ctx.set(emu.noise_bits, 8)
        for _ in range(2):
            ctx.set(emu.seed, 0xBEEF)
            ctx.set(emu.reseed, 1)
            await ctx.tick()
            ctx.set(emu.reseed, 0)
            await request(ctx, emu, 0, 2, 1)
            got.append((await wait_done(ctx, emu))[0])

    run_harness(model, testbench)
    expected_model = random_model(SMALL, np.random.default_rng(seed))
    expected_model.noise_bits = 8
    expected_model.reseed(0xBEEF)
    first = list(expected_model.convert(0, 2, 1))
    assert got == [first, first]


def test_golden_model_without_noise_is_the_integer_product(seed):
    params = EmulatorParams(rows=16, cols=8, slices=1, planes=8, input_bits=8, adc_bits=16, conductance_bits=7)
    rng = np.random.default_rng(seed)
    model = random_model(params, rng)
    x = model.inputs
    codes = model.mvm_codes()
    d = model.g_plus[0] - model.g_minus[0]
    for b in range(8):
        bits = (np.mod(x, 256) >> b) & 1
        assert np.array_equal(codes[0, b], bits @ d)
    # two's complement recombination of the planes gives x . W
    recombined = sum(codes[0, b] * (1 << b) for b in range(7)) - codes[0, 7] * (1 << 7)
    assert np.array_equal(recombined, x @ d)


def test_lfsr_has_full_period_and_seeds_are_never_zero():
    state, seen = 1, set()
    for _ in range(65535):
        seen.add(state)
        state = lfsr_step(state)
    assert len(seen) == 65535 and state == 1
    assert all(lfsr_seed(s, i) != 0 for s in (0, 0x9E37, 0xFFFF) for i in range(64))


def test_pairs_and_drift_scale():
    g_plus, g_minus = np.array([0, 5, 127]), np.array([127, 3, 0])
    assert [list(a) for a in unpack_pair(pack_pair(g_plus, g_minus, 7), 7)] == [list(g_plus), list(g_minus)]
    assert drift_scale(1.0, 0.05) == 1 << SCALE_FRAC_BITS
    assert drift_scale(1e4, 0.05) == round((1e4 ** -0.05) * (1 << SCALE_FRAC_BITS))
    assert drift_scale(10.0, 0.1, range_factor=100.0) == (1 << 16) - 1  # saturates
    with pytest.raises(ValueError, match=r"^t_s must be a positive number, not -1$"):
        drift_scale(-1, 0.05)
    with pytest.raises(ValueError, match=r"^nu must be a non-negative number, not -0.1$"):
        drift_scale(1.0, -0.1)


def test_params_errors():
    with pytest.raises(ConfigError, match=r"^crossbar emulator rows must be a positive integer, not 0$"):
        EmulatorParams(rows=0)
    with pytest.raises(ConfigError, match=r"^crossbar emulator columns_per_adc must divide cols \(8\), not 3$"):
        EmulatorParams(cols=8, columns_per_adc=3)
    cfg = ChipConfig.from_dict({"input": {"mode": "pulse-width"}})
    with pytest.raises(ConfigError, match=r"^input.mode must be 'bit-serial' for the FPGA crossbar emulator, "
                                          r"not 'pulse-width'$"):
        EmulatorParams.from_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the half-built component is never elaborated
        with pytest.raises(TypeError, match=r"^params must be an EmulatorParams, not 3$"):
            CrossbarEmulator(3)
        for latency in (0, 3, True):
            with pytest.raises(ValueError, match=rf"^input_latency must be 1 or 2 cycles, not {latency!r}$"):
                CrossbarEmulator(SMALL, input_latency=latency)
        gc.collect()
