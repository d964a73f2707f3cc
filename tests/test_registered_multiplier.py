"""RegisteredMultiplier: behavioural form in simulation, the ECP5 DSP form against the
MULT18X18D subset model, and the blocks that use it elaborated for the board."""

import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from neurophase.config import ChipConfig
from neurophase.cosim.ecp5_models import mult18x18d_model
from neurophase.cosim.runner import lint_verilog
from neurophase.cosim.regressions import run_batch_norm, run_drift_gain
from neurophase.fpga.cli import CHIP_PRESET
from neurophase.fpga.platforms import get_board
from neurophase.models.batch_norm import BatchNormParams
from neurophase.models.drift_gain import DriftGainParams
from neurophase.rtl.registered_multiplier import RegisteredMultiplier

PRESET = ChipConfig.from_toml(CHIP_PRESET)


@pytest.fixture(scope="module")
def board_platform():
    return get_board(PRESET.fpga.board).make_platform()


@pytest.mark.parametrize("bits", [1, True, 2.5, "8"])
def test_widths_are_checked(bits):
    with pytest.raises(ValueError, match=rf"a_bits must be an integer of at least 2, not {bits!r}"):
        RegisteredMultiplier(bits, 8)


def test_behavioural_form_matches_the_register_model(seed):
    dut = RegisteredMultiplier(18, 16)
    rng = random.Random(seed)
    corners = [(-2**17, -2**15), (2**17 - 1, 2**15 - 1), (-2**17, 2**15 - 1), (0, -1)]
    stimulus = corners + [(rng.randrange(-2**17, 2**17), rng.randrange(-2**15, 2**15)) for _ in range(300)]

    async def bench(ctx):
        operands, product = (0, 0), 0
        for a, b in stimulus:
            load_operands, load_product = rng.random() < 0.7, rng.random() < 0.7
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.load_operands, load_operands)
            ctx.set(dut.load_product, load_product)
            await ctx.tick()
            if load_product:  # the product of the operands held before this edge
                product = operands[0] * operands[1]
            if load_operands:
                operands = (a, b)
            assert ctx.get(dut.product) == product, f"seed {seed}: {a} * {b}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_ecp5_form_is_one_dsp_block_with_its_registers(board_platform):
    text = verilog.convert(RegisteredMultiplier(18, 16), name="top", platform=board_platform)
    assert text.count("MULT18X18D #(") == 1
    for setting in ('.REG_INPUTA_CLK("CLK0")', '.REG_INPUTB_CLK("CLK0")', '.REG_OUTPUT_CLK("CLK0")',
                    '.REG_INPUTA_CE("CE0")', '.REG_OUTPUT_CE("CE1")', '.REG_PIPELINE_CLK("NONE")'):
        assert setting in text, setting
    wide = verilog.convert(RegisteredMultiplier(19, 16), name="top", platform=board_platform)
    assert "MULT18X18D" not in wide  # wider than a block: yosys maps the '*' itself
    assert "MULT18X18D" not in verilog.convert(RegisteredMultiplier(18, 16), name="top")


def test_the_dsp_model_is_lint_clean(tmp_path):
    source = tmp_path / "MULT18X18D.v"
    source.write_text(mult18x18d_model())
    clean, output = lint_verilog([source], "MULT18X18D")
    assert clean, output


def test_drift_gain_for_the_board_matches_golden(board_platform, seed, length, build_root):
    params = DriftGainParams.from_config(PRESET)
    run = run_drift_gain(params, build_root / "drift_gain_ecp5", seed=seed, count=length(300),
                         platform=board_platform)
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; results {run.results_xml}; seed {seed}"


def test_batch_norm_for_the_board_matches_golden(board_platform, seed, length, build_root):
    params = BatchNormParams.from_config(PRESET)
    run = run_batch_norm(params, build_root / "batch_norm_ecp5", seed=seed, count=length(300),
                         platform=board_platform)
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; results {run.results_xml}; seed {seed}"
