"""Drift gain at three levels, one set of cases: golden model vs exact fractions,
Amaranth simulation vs golden, generated Verilog under Verilator (cocotb) vs golden."""

import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import signed

from datapath_sim import ParamTables, simulate_stream_block
from neurophase.config import ChipConfig, ConfigError
from neurophase.cosim.benches.drift_gain import expected_beats, input_beats
from neurophase.cosim.regressions import run_drift_gain
from neurophase.cosim.runner import lint_verilog
from neurophase.generate import convert
from neurophase.models.datapath_stimulus import drift_gain_cases
from neurophase.models.drift_gain import DriftGainParams, drift_gain, gain_to_fixed
from neurophase.rtl.drift_gain import DriftGain, column_values_layout

DEFAULT = DriftGainParams.from_config(ChipConfig())
VARIANTS = {
    "default": DEFAULT,
    "small": DriftGainParams(width=12, columns=32, lanes=8, gain_bits=10, gain_frac_bits=6),
    "integer_gain": DriftGainParams(width=9, columns=8, lanes=8, gain_bits=5, gain_frac_bits=0, per_column=False),
}


# -- level 1: golden model against exact rational arithmetic -----------------------

def reference(params, values, gains):
    """floor(alpha * y + 1/2) with alpha = G / 2**F as an exact Fraction, then clipped."""
    lo, hi = params.value_range
    gains = np.broadcast_to(np.asarray(gains), (params.columns,))
    out, clipped = [], []
    for y, g in zip(values, gains):
        exact = math.floor(Fraction(int(g), 2 ** params.gain_frac_bits) * int(y) + Fraction(1, 2))
        out.append(min(max(exact, lo), hi))
        clipped.append(out[-1] != exact)
    return out, clipped


@pytest.mark.parametrize("name", VARIANTS)
def test_golden_equals_exact_fractions(name, seed):
    params = VARIANTS[name]
    clipped_somewhere = False
    for case, values, gains in drift_gain_cases(params, seed, 60):
        result, clipped = drift_gain(params, values, gains)
        want, want_clipped = reference(params, values, gains)
        assert list(result) == want, f"{case}, seed {seed}"
        assert list(clipped) == want_clipped, case
        clipped_somewhere |= clipped.any()
    assert clipped_somewhere


def test_rounding_is_half_up():
    params = DriftGainParams(width=8, columns=4, lanes=4, gain_bits=4, gain_frac_bits=1)
    # alpha = 1/2: 5 -> 2.5 -> 3, -5 -> -2.5 -> -2, 3 -> 1.5 -> 2, -3 -> -1.5 -> -1
    result, _ = drift_gain(params, np.array([5, -5, 3, -3]), np.full(4, 1))
    assert list(result) == [3, -2, 2, -1]


def test_gain_to_fixed():
    assert gain_to_fixed(DEFAULT, 1.0) == 4096
    assert gain_to_fixed(DEFAULT, 1.25) == 5120
    assert gain_to_fixed(DEFAULT, 100.0) == 32767
    assert gain_to_fixed(DEFAULT, -100.0) == -32768


def test_parameter_errors():
    with pytest.raises(ConfigError, match=r"drift-gain gain_frac_bits must be less than gain_bits \(8\), not 8"):
        DriftGainParams(gain_bits=8, gain_frac_bits=8)
    with pytest.raises(ConfigError, match=r"drift-gain lanes must divide columns \(256\), not 7"):
        DriftGainParams(lanes=7)
    with pytest.raises(ValueError, match=r"gain 32768 of column 3 is outside the signed 16-bit range \[-32768, 32767\]"):
        gains = np.zeros(256, dtype=np.int64)
        gains[3] = 32768
        drift_gain(DEFAULT, np.zeros(256, dtype=np.int64), gains)
    with pytest.raises(ValueError, match="the per-tile gain must be one integer, not 1.5"):
        drift_gain(DEFAULT, np.zeros(256, dtype=np.int64), 1.5)
    with pytest.raises(TypeError, match="params must be a DriftGainParams, not 3"):
        DriftGain(3)


def test_ports_follow_the_documented_format():
    dut = DriftGain(DEFAULT)
    dut._MustUse__silence = True
    assert dut.gain.signature.shape == signed(ChipConfig().datapath.gain_bits)
    assert dut.tile_gain.shape() == signed(ChipConfig().datapath.gain_bits)
    assert dut.signature.members["per_column"].init == 1


# -- level 2: Amaranth simulation against the golden model -------------------------

def simulate(params, cases, seed, idle=0.2, stall=0.3):
    dut = DriftGain(params)
    layout = column_values_layout(params.width, params.lanes)
    mvms = [input_beats(params, values, seed + i) for i, (_, values, _) in enumerate(cases)]
    tables = [g if not isinstance(g, int) else np.zeros(params.columns, dtype=np.int64) for _, _, g in cases]

    def side_inputs(index):
        gains = cases[index][2]
        return [(dut.per_column, int(not isinstance(gains, int))), (dut.tile_gain, gains if isinstance(gains, int) else 0)]

    observed, counts = simulate_stream_block(
        dut, layout, layout, mvms, seed=seed, groups=params.groups,
        params=[ParamTables(dut.gain, params.lanes, tables)], per_beat_inputs=side_inputs,
        strobes=[("clipped", dut.clipped)], idle=idle, stall=stall)
    expected, strobes = [], 0
    for (_, values, gains), beats in zip(cases, mvms):
        out, n = expected_beats(params, values, gains, beats)
        expected += out
        strobes += n
    return observed, expected, counts["clipped"], strobes


@pytest.mark.parametrize("name", VARIANTS)
def test_amaranth_matches_golden(name, seed, length):
    params = VARIANTS[name]
    cases = drift_gain_cases(params, seed, length(12 if params.columns > 64 else 60))
    observed, expected, strobes, want_strobes = simulate(params, cases, seed)
    assert len(observed) == len(expected)
    for i, (got, want) in enumerate(zip(observed, expected)):
        assert got == want, f"beat {i} (case {cases[i // params.groups][0]}), seed {seed}"
    assert strobes == want_strobes > 0


# -- level 3: generated Verilog under Verilator through cocotb ---------------------

@pytest.mark.parametrize("name, count", [("small", 1000), pytest.param("integer_gain", 300, marks=pytest.mark.slow)])
def test_verilator_matches_golden(name, count, seed, length, build_root):
    run = run_drift_gain(VARIANTS[name], build_root / name, seed=seed, count=length(count))
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; results {run.results_xml}; seed {seed}"
    assert run.tests == 2


@pytest.mark.parametrize("name", VARIANTS)
def test_generated_verilog_is_lint_clean(name, tmp_path):
    source = tmp_path / "drift_gain.v"
    source.write_text(convert(DriftGain(VARIANTS[name]), "drift_gain"))
    clean, output = lint_verilog([source], "drift_gain")
    assert clean, output
