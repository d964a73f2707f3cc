# amaranth: UnusedElaboratable=no
"""Program-verify controller: the golden policy model, the device array, the register map,
the RTL's interface and lint, and the RTL against the golden model and the device model
under Verilator (cocotb)."""

from __future__ import annotations

import numpy as np
import pytest

from neurophase.config import ChipConfig
from neurophase.models.devices import device_model_from_config
from neurophase.models.mapping import WeightMapping, map_weights
from neurophase.models.program_verify import (
    CLASSES, RESET, SET, ControllerModel, DeviceArray, PulseCommand, decide, default_policy, error_class,
    from_physical, iteration_bits, physical_columns, policy_registers, program_verify_register_map,
    simulate_rows, target_codes, to_physical, verify_lsb_us,
)

SMALL = ChipConfig().replace(tile={"rows": 8, "cols": 8}, datapath={"lanes": 4})


# -- golden model ------------------------------------------------------------------------------------

def test_error_class_is_bit_length_minus_one_saturated():
    mags = np.array([1, 2, 3, 4, 7, 8, 15, 16, 127, 128, 255, 1000])
    assert error_class(mags).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 6, 7, 7, 7]


def test_decide_by_hand():
    params = default_policy(SMALL).replace(tolerance=2, max_iterations=3)
    targets = np.array([50, 50, 50, 50, 50, 50])
    codes = np.array([49, 52, 40, 70, 10, 50])
    iterations = np.array([0, 0, 0, 0, 2, 0])
    in_range = np.array([1, 1, 1, 1, 1, 0], bool)
    it, conv, fail, pulse, pol, cls = decide(params, targets, codes, iterations, np.zeros(6, bool),
                                             np.zeros(6, bool), in_range)
    assert it.tolist() == [1, 1, 1, 1, 3, 0]
    assert conv.tolist() == [True, True, False, False, False, False]
    assert fail.tolist() == [False, False, False, False, True, False]   # third read, still 40 codes off
    assert pulse.tolist() == [False, False, True, True, False, False]
    assert pol[2] == SET and pol[3] == RESET
    assert cls[2] == 3 and cls[3] == 4                                   # |e| = 10 -> 3, |e| = 20 -> 4


def test_controller_model_orders_commands_and_ends():
    params = default_policy(SMALL).replace(tolerance=1, max_iterations=4, first=0, last=5)
    model = ControllerModel(params, np.array([10, 10, 10, 10, 10, 10, 10, 10]), row=3)
    commands = model.step(np.array([9, 0, 30, 11, 2, 12, 0, 0]))
    # SET classes ascending (|e| 10 -> class 3, |e| 8 -> class 3), then RESET (|e| 20 -> 4, |e| 2 -> 1)
    assert [(c.polarity, c.mask) for c in commands] == [(SET, 0b10010), (RESET, 0b100000), (RESET, 0b100)]
    assert all(c.row == 3 for c in commands)
    assert commands[0].amplitude == params.set_amplitude[3] and commands[0].width == params.set_width[3]
    for c in commands:
        model.issued(c)
    for _ in range(3):
        assert not model.done
        model.step(np.full(8, 0))
    assert model.done and model.outcome.row_reads == 4
    assert model.outcome.failed.tolist() == [False, True, True, False, True, True, False, False]
    assert model.outcome.pulses[:6].tolist() == [0, 1, 1, 0, 1, 1]
    with pytest.raises(RuntimeError, match="already over"):
        model.step(np.zeros(8))


def test_policy_checks_name_field_value_and_range():
    ok = default_policy(SMALL)
    n, bits, ibits = physical_columns(SMALL), SMALL.adc.bits, iteration_bits(SMALL)
    ok.check(n, bits, ibits)
    cases = [
        (dict(tolerance=-1), r"tolerance must be an integer from 0 to 255, not -1"),
        (dict(max_iterations=0), r"max_iterations must be an integer from 1 to 255, not 0"),
        (dict(set_width=(1,) * 7), r"set_width must be a tuple of 8 integers, not \(1, 1, 1, 1, 1, 1, 1\)"),
        (dict(reset_amplitude=(0,) * 7 + (256,)), r"reset_amplitude\[7\] must be an integer from 0 to 255, not 256"),
        (dict(first=n), rf"first must be an integer from 0 to {n - 1}, not {n}"),
        (dict(first=5, last=4), rf"last must be an integer from 5 to {n - 1}, not 4"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            ok.replace(**change).check(n, bits, ibits)


def test_physical_layout_round_trip_and_addressing():
    cfg = SMALL.replace(weights={"slices": 2, "significance_factor": 4})
    rng = np.random.default_rng(0)
    g = rng.random((2, 2, cfg.tile.rows, cfg.tile.cols + 3))      # with reference columns, dropped
    phys = to_physical(g, cfg.tile.cols)
    assert phys.shape == (cfg.tile.rows, physical_columns(cfg)) == (8, 32)
    s, c, side, r = 1, 5, 1, 6
    assert phys[r, 2 * (s * cfg.tile.cols + c) + side] == g[side, s, r, c]
    assert np.array_equal(from_physical(phys, 2), g[..., : cfg.tile.cols])
    with pytest.raises(ValueError, match=r"conductances must have shape \(2, slices, rows, >= 8\) or "
                       r"\(2, slices, rows, >= 8, devices\), not \(8, 8\)"):
        to_physical(np.zeros((8, 8)), 8)


def test_verify_scale_and_target_codes():
    device = device_model_from_config(SMALL)
    lsb = verify_lsb_us(device, 8)
    assert lsb == pytest.approx(1.2 * 25 / 127)
    assert target_codes([0.0, lsb * 10.4, 1e3], lsb, 8).tolist() == [0, 10, 127]


def test_device_array_pulses_reads_stuck_and_width_zero():
    device = device_model_from_config(SMALL)
    rng = np.random.default_rng(1)
    array = DeviceArray(device, np.full((2, 6), 5.0), 8, rng, stuck=np.array([[0, 0, 0, 0, 0, 1]] * 2, bool))
    before = array.g.copy()
    array.pulse(0, np.array([1, 1, 0, 1, 1, 1], bool), np.array([SET, SET, SET, RESET, RESET, SET]),
                np.array([255, 255, 255, 255, 0, 255]), np.array([3, 0, 3, 1, 1, 3]))
    assert array.g[0, 0] > before[0, 0]                 # SET x3
    assert array.g[0, 1] == before[0, 1]                # width 0: no effect, one pulse counted
    assert array.g[0, 2] == before[0, 2]                # not in the mask
    assert array.g[0, 3] == device.g_min                # full RESET
    assert array.g[0, 4] == before[0, 4]                # amplitude 0: below threshold
    assert array.g[0, 5] == before[0, 5]                # stuck
    assert array.pulses[0].tolist() == [1, 1, 0, 1, 1, 1] and not array.pulses[1].any()
    codes = array.read(1)
    assert codes.shape == (6,) and np.all(np.abs(codes - round(5.0 / array.lsb_us)) <= 2)


def test_golden_policy_programs_a_tile_within_published_figures(seed):
    """The default policy on the numpy device model (no RTL): >= 99 % converged, mean
    iterations <= 15, error sigma <= 1.2 µS on a 64 x 64 tile of Gaussian weights."""
    cfg = ChipConfig().replace(tile={"rows": 64, "cols": 64})
    device = device_model_from_config(cfg)
    rng = np.random.default_rng(seed)
    g_target, _, _ = map_weights(WeightMapping.from_config(cfg, device), rng.normal(size=(64, 64)))
    g_target = to_physical(g_target, 64)
    lsb = verify_lsb_us(device, cfg.adc.bits)
    array = DeviceArray(device, np.full(g_target.shape, device.g_min), cfg.adc.bits, rng)
    out = simulate_rows(default_policy(cfg), target_codes(g_target, lsb, cfg.adc.bits), array)
    error = array.g - g_target
    assert out.converged.mean() >= 0.99, f"seed {seed}"
    assert out.iterations.mean() <= 15 and out.iterations.max() <= default_policy(cfg).max_iterations
    assert error.std() <= 1.2
    assert np.array_equal(out.pulses, array.pulses)


def test_unreachable_targets_end_after_n_max():
    cfg = SMALL
    device = device_model_from_config(cfg)
    params = default_policy(cfg).replace(max_iterations=7)
    n = physical_columns(cfg)
    array = DeviceArray(device, np.zeros((2, n)), cfg.adc.bits, np.random.default_rng(2), stuck=np.ones((2, n), bool))
    out = simulate_rows(params, np.full((2, n), 100), array)
    assert out.failed.all() and (out.iterations == 7).all() and (out.pulses == 6).all()
    assert out.row_reads == 2 * 7


# -- register map ---------------------------------------------------------------------------------------

def test_register_map_resets_to_the_default_policy():
    rmap = program_verify_register_map(SMALL)
    policy = default_policy(SMALL)
    n = physical_columns(SMALL)
    assert rmap.register("PV_TOLERANCE").field("codes").reset == policy.tolerance
    assert rmap.register("PV_MAX_ITER").field("count").reset == policy.max_iterations == 30
    assert rmap.register("PV_RANGE").field("last").reset == n - 1
    for k in range(CLASSES):
        assert rmap.register(f"PV_SET_{k}").field("amplitude").reset == policy.set_amplitude[k]
        assert rmap.register(f"PV_RESET_{k}").field("width").reset == policy.reset_width[k]
    target = rmap.item("PV_TARGET")
    assert (target.length, target.width, target.lanes) == (n, SMALL.adc.bits - 1, SMALL.datapath.lanes)
    words = policy_registers(rmap, policy.replace(first=2, last=9), row=5)
    assert words[rmap.address("PV_ROW")] == 5 and words[rmap.address("PV_RANGE")] == 2 | 9 << 16
    assert words[rmap.address("PV_SET_3")] == policy.set_amplitude[3] | policy.set_width[3] << 8


def test_iteration_counters_widen_with_the_configured_limit():
    cfg = SMALL.replace(analog={"pv_max_iterations": 1000})
    assert iteration_bits(cfg) == 10
    assert program_verify_register_map(cfg).register("PV_MAX_ITER").field("count").width == 10


# -- RTL ------------------------------------------------------------------------------------------------

def test_component_checks_and_ports():
    from neurophase.rtl.program_verify import ProgramVerify, program_verify_layouts

    with pytest.raises(TypeError, match=r"cfg must be a ChipConfig, not 3"):
        ProgramVerify(3)
    dut = ProgramVerify(SMALL)
    pulse, request, response = program_verify_layouts(SMALL)
    assert dut.pulse.payload.shape() == pulse
    assert pulse.size == 3 + 16 + 1 + 8 + 8
    assert dut.read_req.payload.shape() == request
    assert dut.read_resp.payload.shape() == response and response.size == 16 * 8


def test_verilog_lints_clean(tmp_path):
    from neurophase.cosim.runner import lint_verilog
    from neurophase.generate import convert
    from neurophase.rtl.program_verify import ProgramVerify

    path = tmp_path / "program_verify.v"
    path.write_text(convert(ProgramVerify(SMALL), "program_verify"), encoding="utf-8")
    clean, output = lint_verilog([path], "program_verify")
    assert clean, output


def test_rtl_against_golden_and_device_model_under_verilator(build_root, seed, length):
    """Random rows (targets, start states, stuck devices, policies), target already met,
    unreachable target, stuck devices, abort, tolerance 0, CSR extremes (N_max 1 and max,
    amplitude/width 0 and max, tolerance max, one device, bad ranges, timeouts, irq)."""
    from neurophase.benchmarks.bench_program import run_program_verify

    run = run_program_verify(SMALL, build_root / "program_verify", seed=seed, count=length(8))
    assert run.ok, f"failed: {run.failures}; log {run.log}; repeat with --seed {run.seed}"
    assert run.tests == 7


@pytest.mark.slow
def test_full_tile_scenario_meets_the_published_figures(tmp_path):
    from neurophase.benchmarks.bench_program import bench_config, program_tile

    result = program_tile(bench_config(256, 256), tmp_path / "tile", rows=32)
    figures = result["figures"]
    assert figures["converged_fraction"] >= 0.99
    assert figures["mean_iterations"] <= 15
    assert figures["error_sigma_uS"] <= 1.2


def test_committed_register_reference_is_current():
    from pathlib import Path

    from neurophase.regmap_export import to_markdown

    committed = (Path(__file__).parent.parent / "docs" / "program_verify_regs.md").read_text(encoding="utf-8")
    assert committed == to_markdown(program_verify_register_map(ChipConfig())), (
        "docs/program_verify_regs.md is stale: regenerate it with to_markdown(program_verify_register_map(ChipConfig()))")


# -- command line -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [["sim", "program"], ["bench", "program"]])
def test_program_commands_have_help(path):
    from click.testing import CliRunner

    from neurophase.cli import main

    result = CliRunner().invoke(main, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0 and "Usage: " in result.output


def test_sim_program_rejects_a_weight_matrix_of_the_wrong_shape(tmp_path):
    from click.testing import CliRunner

    from neurophase.cli import main

    weights = tmp_path / "w.npy"
    np.save(weights, np.zeros((3, 4)))
    result = CliRunner().invoke(main, ["sim", "program", "--weights", str(weights), "--out", str(tmp_path / "out"),
                                       "--build-dir", str(tmp_path / "build")], catch_exceptions=False)
    assert result.exit_code == 2
    assert "weights must have shape (tile.rows, tile.cols) = (256, 256), not (3, 4)" in result.output
    assert not (tmp_path / "build").exists()


# -- Amaranth simulation ------------------------------------------------------------------------------

ODD = ChipConfig().replace(tile={"rows": 4, "cols": 6}, datapath={"lanes": 3},
                           weights={"slices": 2, "significance_factor": 4})


@pytest.mark.parametrize("cfg", [SMALL, ODD], ids=["8x8-4-lanes", "2-slices-3-lanes"])
def test_rtl_in_amaranth_simulation_matches_the_golden_model(cfg, seed):
    """One row programmed in Amaranth's simulator: a bus master, a device-model responder
    on the read and pulse ports; commands and per-device outcomes equal the golden model's
    (also with two slices and a lane count that is not a power of two: P = 24, 8 groups)."""
    from amaranth.sim import Simulator

    from neurophase.rtl.program_verify import ProgramVerify

    dut = ProgramVerify(cfg)
    rmap = dut.regmap
    n = physical_columns(cfg)
    rng = np.random.default_rng(seed)
    device = device_model_from_config(cfg)
    array = DeviceArray(device, rng.uniform(0, 30, (cfg.tile.rows, n)), cfg.adc.bits, rng)
    targets = rng.integers(0, 120, n)
    params = default_policy(cfg).replace(max_iterations=12)
    row = cfg.tile.rows - 1
    model = ControllerModel(params, targets, row=row)
    seen, expected, outcome = [], [], {}

    async def access(ctx, address, data=None):
        bus = dut.bus
        ctx.set(bus.adr, address // 4)
        ctx.set(bus.we, data is not None)
        ctx.set(bus.dat_w, data or 0)
        ctx.set(bus.sel, 0b1111)
        ctx.set(bus.cyc, 1)
        ctx.set(bus.stb, 1)
        for _ in range(4):
            await ctx.tick()
            if ctx.get(bus.ack):
                value = ctx.get(bus.dat_r)
                await ctx.tick()
                ctx.set(bus.cyc, 0)
                ctx.set(bus.stb, 0)
                return value
        raise AssertionError(f"no ack from {address:#x}")

    async def host(ctx):
        for p, value in enumerate(targets):
            await access(ctx, rmap.address("PV_TARGET") + 4 * p, int(value))
        for address, word in policy_registers(rmap, params, row=row).items():
            await access(ctx, address, word)
        await access(ctx, rmap.address("PV_CTRL"), 1)
        for _ in range(20000):
            await ctx.tick()
            if not ctx.get(dut.busy):
                break
        assert not ctx.get(dut.busy)
        outcome["status"] = await access(ctx, rmap.address("PV_STATUS"))
        outcome["reads"] = await access(ctx, rmap.address("PV_ROW_READS"))
        ibits = iteration_bits(cfg)
        words = []
        for p in range(n):
            await access(ctx, rmap.address("PV_RESULT_INDEX"), p)
            words.append(await access(ctx, rmap.address("PV_RESULT")))
        outcome["iterations"] = [w & (1 << ibits) - 1 for w in words]
        outcome["converged"] = [w >> 2 * ibits & 1 for w in words]

    async def devices(ctx):
        while True:
            await ctx.tick()
            if ctx.get(dut.read_req.valid):
                ctx.set(dut.read_req.ready, 1)
                await ctx.tick()
                ctx.set(dut.read_req.ready, 0)
                codes = array.read(ctx.get(dut.read_req.payload.row))
                expected.extend(model.step(codes))
                ctx.set(dut.read_resp.payload.codes, [int(c) for c in codes])
                ctx.set(dut.read_resp.valid, 1)
                await ctx.tick()
                ctx.set(dut.read_resp.valid, 0)
            elif ctx.get(dut.pulse.valid):
                p = dut.pulse.payload
                command = PulseCommand(ctx.get(p.row), ctx.get(p.mask), ctx.get(p.polarity), ctx.get(p.amplitude),
                                       ctx.get(p.width))
                ctx.set(dut.pulse.ready, 1)
                await ctx.tick()
                ctx.set(dut.pulse.ready, 0)
                seen.append(command)
                model.issued(command)
                array.pulse(command.row, command.columns(n), command.polarity, command.amplitude, command.width)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(devices, background=True)
    sim.run()
    assert seen == expected and len(seen) >= 2 and model.outcome.row_reads >= 2
    assert outcome["status"] & 0b10 and outcome["reads"] == model.outcome.row_reads
    assert outcome["iterations"] == model.outcome.iterations.tolist()
    assert outcome["converged"] == model.outcome.converged.astype(int).tolist()
