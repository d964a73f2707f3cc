"""The model commands of the CLI run and print what they promise (no wall-clock asserts)."""

import json

from click.testing import CliRunner

from neurophase.benchmarks.bench_model import bench_model
from neurophase.cli import main


def test_bench_model_reports_figures():
    figures = bench_model(batch=4, rows=16, cols=16, repeats=3)
    for key in ("ratio_vs_matmul", "ratio_vs_matmul_median", "ratio_with_shift_add_vs_matmul", "ratio_cached_vs_matmul",
                "mvm_per_s", "baseline_mvm_per_s", "peak_memory_mb", "config"):
        assert key in figures
    assert figures["codes_shape"] == [4, 1, 8, 16] and figures["ratio_vs_matmul"] > 0
    assert 0 < figures["baseline_s"] <= figures["baseline_median_s"] and figures["model_s"] <= figures["model_median_s"]
    block = figures["block_read"]
    assert block["speedup"] > 0 and block["config"]["block_rows"] == 16 and block["config"]["block_cols"] == 16


def test_bench_model_cli_json():
    result = CliRunner().invoke(main, ["bench", "model", "--json", "--batch", "8", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["config"]["batch"] == 8 and figures["config"]["blas_threads"] == 1
    table = CliRunner().invoke(main, ["bench", "model", "--batch", "8", "--repeats", "1"])
    assert table.exit_code == 0 and "ratio_vs_matmul" in table.output and "block_read speedup" in table.output


def test_model_drift_cli(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text("[tile]\nrows = 32\ncols = 16\n[datapath]\nlanes = 16\n")
    out = tmp_path / "drift.png"
    result = CliRunner().invoke(main, ["model", "drift", "--config", str(config), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert out.stat().st_size > 0 and rows[-1]["error_gdc"] < rows[-1]["error_raw"]


def test_model_floor_cli(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text("[tile]\nrows = 32\ncols = 16\n[datapath]\nlanes = 16\n")
    result = CliRunner().invoke(main, ["model", "floor", "--config", str(config), "--seeds", "1", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["t_s"] == 30 * 86400.0 and len(figures["sources"]) == 6
    assert figures["all_off"] < figures["total"]
