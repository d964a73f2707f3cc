"""Tile top and whole datapath at three levels: golden model vs exact fractions,
Amaranth simulation vs golden (with the ADC-bound benchmark), generated Verilog under
Verilator (cocotb, through the Wishbone bus) vs golden; formats documented = formats used."""

import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from neurophase.benchmarks.bench_datapath import measure_mvm_cycles
from neurophase.config import ChipConfig, ConfigError
from neurophase.cosim.regressions import run_tile
from neurophase.cosim.runner import lint_verilog
from neurophase.generate import BLOCKS, convert
from neurophase.models.datapath import DatapathParams, datapath, datapath_batch, fixed_point_formats, fixed_point_table
from neurophase.models.datapath_stimulus import random_settings, tile_cases
from neurophase.rtl.tile import Tile

DOCS = Path(__file__).resolve().parents[1] / "docs"
SMALL = ChipConfig.from_dict({"tile": {"rows": 32, "cols": 32}, "datapath": {"lanes": 8},
                              "adc": {"latency_cycles": 4, "columns_per_adc": 2}})
NARROW = ChipConfig.from_dict({"tile": {"rows": 16, "cols": 16}, "datapath": {"lanes": 8, "accumulator_bits": 10},
                               "adc": {"bits": 6, "latency_cycles": 3}, "input": {"bits": 4},
                               "weights": {"slices": 2, "significance_factor": 4}})


# -- level 1: golden model against exact arithmetic --------------------------------

def reference(params, codes, settings):
    """Column by column with Python ints and Fractions: trim, clipping accumulation,
    gain, batch-norm, ReLU, requantisation."""
    clip = lambda v, bits: min(max(v, -(2 ** (bits - 1))), 2 ** (bits - 1) - 1)  # noqa: E731
    sa, dg, bn = params.shift_add, params.drift_gain, params.batch_norm
    gains = np.broadcast_to(np.asarray(settings.gains), (params.columns,))
    out = []
    for col in range(params.columns):
        acc = 0
        for s in range(sa.slices):
            for b in range(sa.planes):
                acc = clip(acc + clip(int(codes[s, b, col]) - int(settings.trims[col]), sa.adc_bits) * sa.weight(s, b),
                           sa.width)
        y = clip(math.floor(Fraction(int(gains[col]), 2 ** dg.gain_frac_bits) * acc + Fraction(1, 2)), dg.width)
        z = clip(math.floor(Fraction(int(settings.scale[col]), 2 ** bn.scale_frac_bits) * y + Fraction(1, 2))
                 + int(settings.bias[col]), bn.width)
        r = max(z, 0) if settings.relu else z
        shift = min(settings.shift, bn.width)
        out.append(clip(math.floor(Fraction(r, 2 ** shift) + Fraction(1, 2)), bn.out_bits))
    return out


@pytest.mark.parametrize("cfg", [SMALL, NARROW, ChipConfig()], ids=["small", "narrow", "default"])
def test_golden_datapath_equals_exact_arithmetic(cfg, seed):
    params = DatapathParams.from_config(cfg)
    rng = np.random.default_rng(seed)
    cases = tile_cases(params, seed, 6 if cfg.tile.cols > 64 else 30)
    for i, (name, codes) in enumerate(cases):
        settings = random_settings(params, rng, ("identity", "typical", "extreme")[i % 3])
        assert list(datapath(params, codes, settings)["result"]) == reference(params, codes, settings), \
            f"{name}, seed {seed}"


@pytest.mark.parametrize("cfg", [SMALL, NARROW, ChipConfig()], ids=["small", "narrow", "default"])
def test_batched_golden_equals_one_mvm_at_a_time(cfg, seed):
    params = DatapathParams.from_config(cfg)
    rng = np.random.default_rng(seed)
    cases = [codes for _, codes in tile_cases(params, seed, 12)]
    for kind in ("identity", "typical", "extreme"):
        settings = random_settings(params, rng, kind)
        batch = datapath_batch(params, np.stack(cases), settings)
        singles = [datapath(params, codes, settings) for codes in cases]
        assert np.array_equal(batch["result"], [one["result"] for one in singles]), kind
        assert np.array_equal(batch["saturated"], [one["saturated"] for one in singles]), kind
        assert batch["flags"] == {name: any(one["flags"][name] for one in singles) for name in batch["flags"]}, kind
    with pytest.raises(ValueError, match=r"^codes must have shape \(batch, slices, planes, columns\), not \(1, 8\)$"):
        datapath_batch(params, np.zeros((1, 8), dtype=int), settings)


def test_golden_is_exact_beyond_int64():
    """Widths whose products overflow int64 fall back to Python ints: still exact."""
    wide = ChipConfig.from_dict({"tile": {"rows": 16, "cols": 16}, "datapath": {"lanes": 8, "accumulator_bits": 48,
                                 "gain_bits": 24, "gain_frac_bits": 12}})
    params = DatapathParams.from_config(wide)
    rng = np.random.default_rng(3)
    for name, codes in tile_cases(params, 3, 10):
        settings = random_settings(params, rng, "extreme")
        assert list(datapath(params, codes, settings)["result"]) == reference(params, codes, settings), name


def test_datapath_config_errors():
    with pytest.raises(ConfigError, match=r"datapath.bn_scale_frac_bits must be at most datapath.bn_scale_bits - 2 "
                                          r"\(14\) so that the unit scale 1.0 fits the signed 16-bit batch-norm scale, "
                                          r"not 16"):
        ChipConfig.from_dict({"datapath": {"bn_scale_frac_bits": 16}})
    with pytest.raises(ConfigError, match=r"datapath.adc_timeout_cycles must be at least adc.latency_cycles \(16\), not 8"):
        ChipConfig.from_dict({"datapath": {"adc_timeout_cycles": 8}})
    with pytest.raises(ConfigError, match="datapath.gain_mode must be one of 'per-column', 'per-tile', not 'global'"):
        ChipConfig.from_dict({"datapath": {"gain_mode": "global"}})
    with pytest.raises(TypeError, match="cfg must be a ChipConfig, not 1"):
        Tile(1)


def test_documented_formats_are_the_ones_used():
    """docs/fixed-point.md carries the table generated from the same constants the RTL
    and the golden model use, and the RTL ports have those widths."""
    text = (DOCS / "fixed-point.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- formats:begin -->\n(.*?)<!-- formats:end -->", text, re.S)
    assert match, "docs/fixed-point.md lacks the generated formats table"
    assert match.group(1) == fixed_point_table(ChipConfig()), "regenerate the table with fixed_point_table()"
    cfg = ChipConfig()
    tile = Tile(cfg)
    tile._MustUse__silence = True
    formats = {row["quantity"]: row for row in fixed_point_formats(cfg)}
    assert tile.adc.codes.shape().elem_shape.width == formats["ADC code"]["bits"]
    assert tile.o_stream.payload.data.shape().elem_shape.width == formats["activation q"]["bits"]
    arrays = {a.name: a for _, a in tile.regmap.arrays}
    assert arrays["GAIN"].width == formats["drift gain alpha"]["bits"]
    assert arrays["BN_SCALE"].width == formats["BN scale gamma"]["bits"]
    assert arrays["BN_BIAS"].width == formats["BN bias beta"]["bits"]
    assert arrays["ADC_TRIM"].width == formats["ADC trim"]["bits"]


def test_every_block_is_generated():
    assert {"adc_interface", "drift_gain", "batch_norm", "tile"} <= set(BLOCKS)


# -- level 2: Amaranth simulation of the tile top ----------------------------------

@pytest.mark.parametrize("cfg", [SMALL, NARROW], ids=["small", "narrow"])
def test_amaranth_tile_matches_golden(cfg, seed):
    params = DatapathParams.from_config(cfg)
    for name, codes in tile_cases(params, seed, 3)[-4:]:
        result = measure_mvm_cycles(cfg, codes)
        assert result["matches_golden"], f"{name}, seed {seed}"
        assert result["conversions"] == params.adc.conversions_per_mvm


def test_default_tile_keeps_up_with_the_adcs():
    result = measure_mvm_cycles(ChipConfig())
    assert result["matches_golden"]
    assert result["ratio_vs_adc_bound"] <= 1.2, result


# -- level 3: generated Verilog under Verilator through cocotb ---------------------

@pytest.mark.parametrize("cfg, count", [(SMALL, 1000), pytest.param(NARROW, 200, marks=pytest.mark.slow),
                                        (ChipConfig(), 12)], ids=["small", "narrow", "default"])
def test_verilator_tile_matches_golden(cfg, count, seed, length, build_root):
    run = run_tile(cfg, build_root / "tile", seed=seed, count=length(count), settings_every=max(count // 6, 2))
    assert run.ok, f"{run.failed} of {run.tests} cocotb tests failed; results {run.results_xml}; seed {seed}"
    assert run.tests == 4


@pytest.mark.parametrize("cfg", [SMALL, ChipConfig()], ids=["small", "default"])
def test_generated_tile_verilog_is_lint_clean(cfg, tmp_path):
    source = tmp_path / "tile.v"
    source.write_text(convert(Tile(cfg), "tile"))
    clean, output = lint_verilog([source], "tile")
    assert clean, output
