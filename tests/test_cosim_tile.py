"""Co-simulation of tile inference: the tile RTL under a simulator with the analog crossbar
model behind its ADC port, the firmware on its CSR bus.

One harness build per configuration and session (Verilator builds take a minute);
every test reuses it.
"""

import json
import shutil

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import data
from click.testing import CliRunner

from neurophase.cli import main
from neurophase.config import ChipConfig
from neurophase.cosim.bridge import CrossbarBridge, pack_codes, pack_fields, unpack_results
from neurophase.cosim.ports import pack
from neurophase.cosim.runner import SimulationError, run_cocotb
from neurophase.cosim.tile_cosim import improvement, run_cosim_bench, run_drift_cosim, run_mvm_cosim
from neurophase.models.crossbar import build_tile
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.toolchain import ToolchainError

DEFAULT = ChipConfig()
#: A reduced tile for the simulators that are slow on the full one (Icarus).
SMALL = ChipConfig().replace(tile={"rows": 32, "cols": 32}, datapath={"lanes": 8})
MONTH_S = 30 * 86400.0


@pytest.fixture(scope="session")
def default_build(tmp_path_factory):
    """Build folder of the default configuration's harness, shared by every test."""
    return tmp_path_factory.mktemp("tile_cosim_default")


# -- bridge data conversion ---------------------------------------------------------

def test_codes_and_results_pack_like_the_harness_layouts():
    rng = np.random.default_rng(3)
    codes = rng.integers(-128, 128, size=(1, 8, 256))
    layout = data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(signed(8), 256), 8), 1)
    assert pack_codes(DEFAULT, codes) == pack(layout, codes.tolist())
    six_bit = rng.integers(-32, 32, size=(2, 4, 16))  # fields that are not whole bytes
    layout6 = data.ArrayLayout(data.ArrayLayout(data.ArrayLayout(signed(6), 16), 4), 2)
    assert pack_fields(six_bit, 6) == pack(layout6, six_bit.tolist())
    values, saturated = rng.integers(-128, 128, 256), rng.integers(0, 2, 256).astype(bool)
    beats = [{"data": values[g * 32:(g + 1) * 32].tolist(),
              "saturated": sum(int(s) << i for i, s in enumerate(saturated[g * 32:(g + 1) * 32])),
              "last": int(g == 7)} for g in range(8)]
    got_values, got_saturated, last = unpack_results(DEFAULT, pack(data.ArrayLayout(column_values_layout(8, 32), 8),
                                                                   beats))
    assert np.array_equal(got_values, values) and np.array_equal(got_saturated, saturated)
    assert last.tolist() == [False] * 7 + [True]


def test_bridge_errors_name_the_value():
    tile = build_tile(SMALL, np.random.default_rng(1).normal(size=(32, 32)), 1)
    bridge = CrossbarBridge(tile, np.random.default_rng(2), time_s=10.0)
    with pytest.raises(ValueError, match=r"model time can only advance: 5.0 s is before the present 10.0 s"):
        bridge.advance_to(5.0)
    with pytest.raises(ValueError, match=r"codes must have shape \(1, 8, 32\) \(slices, planes, cols\), not \(8, 32\)"):
        pack_codes(SMALL, np.zeros((8, 32)))
    with pytest.raises(TypeError, match="tile must be an AnalogTile, not 'x'"):
        CrossbarBridge("x", np.random.default_rng(0))
    with pytest.raises(ValueError, match="gdc must be one of 'none', 'per-tile', 'per-column', not 'global'"):
        run_mvm_cosim(SMALL, "unused", gdc="global")


# -- the full loop under Verilator ------------------------------------------------------

@pytest.mark.verilator
def test_mvms_exact_against_golden_and_within_the_error_budget(default_build, seed, length):
    count = length(200)
    run, res = run_mvm_cosim(DEFAULT, default_build, count=count, time_s=3600.0, gdc="per-tile", seed=seed)
    assert run.ok, f"{run.failures}; see {run.log} (seed {run.seed})"
    assert res["checked_mvms"] == count and res["exact"] == res["mvms"] >= count and res["mismatched"] == 0
    assert res["mvm_count_register"] == res["mvms"]
    # The budget is a real one: programming, read noise and quantisation give a visible
    # error, and the RTL's error sits at the model's prediction.
    assert res["predicted_pct"] > 0.5
    assert res["error_pct"] <= res["budget_pct"]
    assert 0.8 * res["predicted_pct"] <= res["error_pct"]


@pytest.mark.verilator
@pytest.mark.parametrize("weights, devices, least_cut", [("gaussian", 1, 2.0), ("uniform", 1, 2.7),
                                                         ("gaussian", 2, 3.0)])
def test_per_tile_gdc_cuts_the_one_month_error_as_the_model_predicts(default_build, seed, weights, devices,
                                                                      least_cut):
    cfg = DEFAULT.replace(weights={"devices_per_polarity": devices})
    run, res = run_drift_cosim(cfg, default_build, count=16, times_s=(1.0, MONTH_S), seed=seed, weights=weights)
    assert run.ok, f"{run.failures}; see {run.log} (seed {run.seed})"
    assert res["exact"] == res["mvms"] > 0
    rows = res["rows"]
    # pcm-joshi statistics: 1/f read noise, the drift-exponent spread and programming noise
    # leave a GDC floor (`neurophase model floor`), so with one device per polarity the model
    # itself predicts a ~2.4x cut at one month for Gaussian weights and ~3.1x for uniform ones;
    # two devices per polarity (the 2023 speech chip's 4-device weights) shrink that floor by
    # sqrt(2): ~3.3x for Gaussian weights (docs/cosim.md). The RTL loop must deliver the
    # cut and agree with the model's own prediction of each mode.
    assert improvement(rows, MONTH_S, "per-tile") >= least_cut, rows
    for mode in ("none", "per-tile", "per-column"):
        assert rows[1][f"error_pct_{mode}"] == pytest.approx(rows[1][f"predicted_pct_{mode}"], rel=0.2), mode
    assert rows[1]["error_pct_none"] > 2 * rows[0]["error_pct_none"], "drift must grow the uncompensated error"
    assert rows[1]["error_pct_per-column"] <= 1.2 * rows[1]["error_pct_per-tile"], rows


@pytest.mark.verilator
def test_bench_cosim_reports_both_bridges(default_build, seed):
    run, figures = run_cosim_bench(DEFAULT, default_build, count=4, seed=seed)
    assert run.ok and figures["exact"] == 8
    for key in ("mvm_per_s", "naive_mvm_per_s", "speedup_vs_naive", "rtl_cycles_per_s", "idle_rtl_cycles_per_s",
                "speedup_ceiling", "model_read_s_per_mvm", "speedup_bound_with_model"):
        assert figures[key] > 0, key
    assert figures["fast_cycles"] == figures["naive_cycles"], "both bridges must simulate the same cycles"


@pytest.mark.verilator
def test_cli_sim_mvm_prints_a_summary(default_build, seed):
    result = CliRunner().invoke(main, ["sim", "mvm", "--length", "3", "--seed", str(seed),
                                       "--build-dir", str(default_build)])
    assert result.exit_code == 0, result.output
    assert "exact against the golden periphery" in result.output
    assert "% of full scale (RMS)" in result.output and f"seed={seed}" in result.output


#: Pulse-width inputs on a reduced tile (one Verilator build, kept small).
PULSE_WIDTH = ChipConfig().replace(tile={"rows": 64, "cols": 64}, datapath={"lanes": 16},
                                   input={"mode": "pulse-width"})


@pytest.mark.verilator
def test_pulse_width_tile_cosim_exact_and_reference_column_gdc(tmp_path, seed):
    """Pulse-width inputs reach the RTL: ``neurophase sim mvm --config pw.toml`` is exact
    against the golden model; on the same build, the firmware's GDC with
    ``analog.gdc_source = "reference-columns"`` reads the reference columns through the RTL."""
    build = tmp_path / "build"
    config = tmp_path / "pw.toml"
    config.write_text(PULSE_WIDTH.to_toml(), encoding="utf-8")
    result = CliRunner().invoke(main, ["sim", "mvm", "--config", str(config), "--length", "5", "--seed", str(seed),
                                       "--build-dir", str(build)])
    assert result.exit_code == 0, result.output
    res = json.loads((build / "mvm_regression.json").read_text(encoding="utf-8"))
    assert res["checked_mvms"] == 5 and res["exact"] == res["mvms"] > 5 and res["mismatched"] == 0
    assert res["error_pct"] <= res["budget_pct"] and res["reference_mvms"] == 0
    assert "simulating" in result.stderr, "the run shows its progress"

    reference = PULSE_WIDTH.replace(analog={"gdc_source": "reference-columns"})
    run, res = run_drift_cosim(reference, build, count=8, times_s=(1.0, MONTH_S), seed=seed)
    assert run.ok, f"{run.failures}; see {run.log} (seed {run.seed})"
    assert res["gdc_source"] == "reference-columns" and res["reference_mvms"] > 0
    assert res["exact"] == res["mvms"] > res["reference_mvms"]
    # a tile-wide reference: every column gets the same alpha, per-tile and per-column alike
    assert all(row["alpha_column_spread"] == 0.0 for row in res["rows"]), res["rows"]
    assert improvement(res["rows"], MONTH_S, "per-tile") >= 2.0, res["rows"]


@pytest.mark.slow
@pytest.mark.verilator
def test_exhaustive_mvms_and_full_drift_scenario(default_build, seed):
    run, res = run_mvm_cosim(DEFAULT, default_build, count=2000, seed=seed)
    assert run.ok and res["exact"] == res["mvms"] and res["error_pct"] <= res["budget_pct"]
    run, res = run_drift_cosim(DEFAULT, default_build, count=128, seed=seed)
    assert run.ok and improvement(res["rows"], MONTH_S, "per-tile") >= 2.0


# -- simulators and failure messages ----------------------------------------------------

@pytest.mark.skipif(shutil.which("iverilog") is None,
                    reason="Icarus Verilog ('iverilog') is not installed; apt-get install iverilog to run this")
def test_icarus_runs_the_same_loop(tmp_path, seed):
    run, res = run_mvm_cosim(SMALL, tmp_path, count=5, seed=seed, simulator="icarus")
    assert run.ok, f"{run.failures}; see {run.log} (seed {run.seed})"
    assert res["checked_mvms"] == 5 and res["exact"] == res["mvms"] >= 5 and res["mismatched"] == 0
    assert res["error_pct"] <= res["budget_pct"]


def test_missing_simulator_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr("neurophase.cosim.runner.shutil.which", lambda name: None)
    with pytest.raises(ToolchainError, match="simulator 'icarus' selected but 'iverilog' is not on PATH"):
        run_mvm_cosim(SMALL, tmp_path, count=1, simulator="icarus")


@pytest.mark.verilator
def test_build_failure_names_the_log(tmp_path):
    broken = tmp_path / "tile_cosim.v"
    broken.write_text("module tile_cosim(input clk); wire x = ; endmodule\n", encoding="utf-8")
    with pytest.raises(SimulationError, match=r"building tile_cosim with verilator failed .*; see .*build\.log"):
        run_cocotb(toplevel="tile_cosim", verilog=[broken], test_module="neurophase.cosim.benches.tile_mvm",
                   build_dir=tmp_path)
