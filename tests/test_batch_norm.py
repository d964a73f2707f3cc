"""Batch-norm at three levels, one set of cases: golden model vs exact fractions,
Amaranth simulation vs golden, generated Verilog under Verilator (cocotb) vs golden."""

import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from datapath_sim import ParamTables, simulate_stream_block
from neurophase.config import ChipConfig, ConfigError
from neurophase.cosim.benches.batch_norm import expected_beats, input_beats
from neurophase.cosim.regressions import run_batch_norm
from neurophase.cosim.runner import lint_verilog
from neurophase.generate import convert
from neurophase.models.batch_norm import BatchNormParams, batch_norm
from neurophase.models.datapath_stimulus import batch_norm_cases
from neurophase.rtl.batch_norm import BatchNorm
from neurophase.rtl.drift_gain import column_values_layout

DEFAULT = BatchNormParams.from_config(ChipConfig())
VARIANTS = {
    "default": DEFAULT,
    "small": BatchNormParams(width=12, out_bits=6, columns=32, lanes=8, scale_bits=9, scale_frac_bits=5, bias_bits=10),
    "integer_scale": BatchNormParams(width=7, out_bits=4, columns=8, lanes=8, scale_bits=4, scale_frac_bits=0,
                                     bias_bits=3),
}


# -- level 1: golden model against exact rational arithmetic -----------------------

def reference(params, values, scale, bias, shift, relu):
    """z = clip(floor(gamma*y + 1/2) + beta), r = ReLU(z), q = clip(floor(r / 2**shift + 1/2))."""
    zlo, zhi = -(2 ** (params.width - 1)), 2 ** (params.width - 1) - 1
    qlo, qhi = -(2 ** (params.out_bits - 1)), 2 ** (params.out_bits - 1) - 1
    shift = min(shift, params.width)
    out = []
    for y, s, b in zip(values, scale, bias):
        exact_z = math.floor(Fraction(int(s), 2 ** params.scale_frac_bits) * int(y) + Fraction(1, 2)) + int(b)
        z = min(max(exact_z, zlo), zhi)
        r = max(z, 0) if relu else z
        exact_q = math.floor(Fraction(r, 2 ** shift) + Fraction(1, 2))
        q = min(max(exact_q, qlo), qhi)
        out.append((z, z != exact_z, q, q != exact_q))
    return out


@pytest.mark.parametrize("name", VARIANTS)
def test_golden_equals_exact_fractions(name, seed):
    params = VARIANTS[name]
    seen = np.zeros(2, dtype=bool)
    for case in batch_norm_cases(params, seed, 60):
        got = batch_norm(params, *case[1:])
        want = reference(params, *case[1:])
        assert list(got["z"]) == [w[0] for w in want], f"{case[0]}, seed {seed}"
        assert list(got["z_clipped"]) == [w[1] for w in want], case[0]
        assert list(got["result"]) == [w[2] for w in want], case[0]
        assert list(got["result_clipped"]) == [w[3] for w in want], case[0]
        seen |= [got["z_clipped"].any(), got["result_clipped"].any()]
    assert seen.all(), "both saturations must be exercised"


def test_rounding_is_half_up_and_relu():
    params = BatchNormParams(width=8, out_bits=8, columns=4, lanes=4, scale_bits=4, scale_frac_bits=1, bias_bits=4)
    half = np.full(4, 1)  # gamma = 1/2
    out = batch_norm(params, np.array([5, -5, 3, -3]), half, np.zeros(4, dtype=np.int64), 0, False)
    assert list(out["result"]) == [3, -2, 2, -1]
    one = np.full(4, 2)
    out = batch_norm(params, np.array([6, -6, 2, -7]), one, np.zeros(4, dtype=np.int64), 2, True)
    assert list(out["result"]) == [2, 0, 1, 0]  # 1.5 -> 2, relu, 0.5 -> 1, relu


def test_parameter_errors():
    with pytest.raises(ConfigError, match=r"batch-norm scale_frac_bits must be less than scale_bits \(8\), not 9"):
        BatchNormParams(scale_bits=8, scale_frac_bits=9)
    with pytest.raises(ValueError, match="requantisation shift must be an integer from 0 to 31, not 32"):
        batch_norm(DEFAULT, *[np.zeros(256, dtype=np.int64)] * 3, 32, False)
    with pytest.raises(ValueError, match=r"bias 8388608 of column 0 is outside the signed 24-bit range"):
        batch_norm(DEFAULT, *[np.zeros(256, dtype=np.int64)] * 2, np.full(256, 1 << 23), 0, False)
    with pytest.raises(TypeError, match="params must be a BatchNormParams, not None"):
        BatchNorm(None)


def test_ports_follow_the_documented_format():
    cfg = ChipConfig()
    dut = BatchNorm(DEFAULT)
    dut._MustUse__silence = True
    assert dut.scale.signature.shape == signed(cfg.datapath.bn_scale_bits)
    assert dut.bias.signature.shape == signed(cfg.datapath.bn_bias_bits)
    assert dut.shift.shape() == unsigned(cfg.accumulator_bits.bit_length())
    assert dut.o_stream.payload.data.shape().elem_shape == signed(cfg.datapath.activation_bits)


# -- level 2: Amaranth simulation against the golden model -------------------------

def simulate(params, cases, seed, idle=0.2, stall=0.3):
    dut = BatchNorm(params)
    mvms = [input_beats(params, case[1], seed + i) for i, case in enumerate(cases)]
    observed, counts = simulate_stream_block(
        dut, column_values_layout(params.width, params.lanes), column_values_layout(params.out_bits, params.lanes),
        mvms, seed=seed, groups=params.groups,
        params=[ParamTables(dut.scale, params.lanes, [c[2] for c in cases]),
                ParamTables(dut.bias, params.lanes, [c[3] for c in cases])],
        per_beat_inputs=lambda i: [(dut.shift, cases[i][4]), (dut.relu, int(cases[i][5]))],
        strobes=[("bn", dut.bn_clipped), ("requant", dut.requant_clipped)], idle=idle, stall=stall)
    expected, strobes = [], [0, 0]
    for case, beats in zip(cases, mvms):
        out, bn, requant = expected_beats(params, case, beats)
        expected += out
        strobes = [strobes[0] + bn, strobes[1] + requant]
    return observed, expected, [counts["bn"], counts["requant"]], strobes


@pytest.mark.parametrize("name", VARIANTS)
def test_amaranth_matches_golden(name, seed, length):
    params = VARIANTS[name]
    cases = batch_norm_cases(params, seed, length(10 if params.columns > 64 else 60))
    observed, expected, strobes, want_strobes = simulate(params, cases, seed)
    assert len(observed) == len(expected)
    for i, (got, want) in enumerate(zip(observed, expected)):
        assert got == want, f"beat {i} (case {cases[i // params.groups][0]}), seed {seed}"
    assert strobes == want_strobes and min(want_strobes) > 0


# -- level 3: generated Verilog under Verilator through cocotb ---------------------

@pytest.mark.parametrize("name, count", [("small", 1000), pytest.param("integer_scale", 300, marks=pytest.mark.slow)])
def test_verilator_matches_golden(name, count, seed, length, build_root):
    run = run_batch_norm(VARIANTS[name], build_root / name, seed=seed, count=length(count))
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; results {run.results_xml}; seed {seed}"
    assert run.tests == 2


@pytest.mark.parametrize("name", VARIANTS)
def test_generated_verilog_is_lint_clean(name, tmp_path):
    source = tmp_path / "batch_norm.v"
    source.write_text(convert(BatchNorm(VARIANTS[name]), "batch_norm"))
    clean, output = lint_verilog([source], "batch_norm")
    assert clean, output
