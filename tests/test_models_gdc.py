"""Global drift compensation restores the mean output magnitude after a day, a month, a year."""

import numpy as np
import pytest

from neurophase.config import ChipConfig
from neurophase.models.crossbar import build_tile, digital_result
from neurophase.models.gdc import calibrate, calibration_inputs, compensate, gdc_alpha
from neurophase.models.studies import WEIGHT_DISTRIBUTIONS, drift_study, study_weights

DAY = 86400.0


def gdc_config(**analog):
    return ChipConfig().replace(tile={"rows": 128, "cols": 32}, datapath={"lanes": 16},
                                analog={"calibration_vectors": 64, **analog})


@pytest.mark.parametrize("analog", [
    {"gdc": "per-tile"},
    {"gdc": "per-column"},
    {"gdc_source": "reference-columns", "reference_columns": 16},
])
def test_gdc_restores_mean_output_magnitude(analog, seed):
    cfg = gdc_config(**analog)
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, rng.normal(size=(128, 32)), seed)
    test_inputs = rng.integers(-128, 128, size=(128, 128))
    fresh = np.abs(digital_result(cfg, tile.adc_codes(test_inputs, 0.0, rng))).mean()
    r0 = None
    for t in (DAY, 30 * DAY, 365 * DAY):
        alpha, r0 = calibrate(tile, t, rng, r0=r0)
        y = digital_result(cfg, tile.adc_codes(test_inputs, t, rng))
        raw, corrected = np.abs(y).mean(), np.abs(compensate(y, alpha)).mean()
        assert raw < 0.85 * fresh, f"seed {seed}: drift should lower |y| by t={t}"
        tolerance = 0.08 if "gdc_source" in analog else 0.04  # reference columns: other weights, other drift
        assert corrected == pytest.approx(fresh, rel=tolerance), f"seed {seed}, t={t}: {corrected} vs {fresh}"
        assert np.all(alpha > 1)


def test_per_tile_alpha_is_uniform_per_column_alpha_varies(seed):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(128, 32))
    per_tile = calibrate(build_tile(gdc_config(), weights, seed), DAY, np.random.default_rng(seed))[0]
    per_col = calibrate(build_tile(gdc_config(gdc="per-column"), weights, seed), DAY, np.random.default_rng(seed))[0]
    assert np.all(per_tile == per_tile[0]) and per_col.shape == (32,) and np.ptp(per_col) > 0


def test_calibration_set_is_fixed_and_in_range():
    cfg = gdc_config()
    a, b = calibration_inputs(cfg), calibration_inputs(cfg)
    assert np.array_equal(a, b) and a.shape == (64, 128) and a.min() >= -128 and a.max() <= 127


def test_alpha_guards():
    assert gdc_alpha(np.array([10.0, 4.0]), np.array([5.0, 0.0])).tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"r0 and r_t must have the same shape, not \(2,\) and \(3,\)"):
        gdc_alpha(np.ones(2), np.ones(3))


def test_reference_columns_required(seed):
    cfg = gdc_config(gdc_source="reference-columns", reference_columns=0)
    tile = build_tile(cfg, np.ones((128, 32)), seed)
    with pytest.raises(ValueError, match=r"needs analog.reference_columns >= 1, not 0"):
        calibrate(tile, DAY, np.random.default_rng(seed))


def test_gdc_improvement_grows_as_weights_fill_the_conductance_range():
    """Small weights sit on low-conductance devices, whose drift-exponent spread and read
    noise GDC cannot remove: the 1-month improvement orders Gaussian < clipped < uniform."""
    cfg = ChipConfig.from_dict({"tile": {"rows": 256, "cols": 32}, "datapath": {"lanes": 32}})
    month = 30 * 86400.0
    gain = {kind: drift_study(cfg, seed=2, batch=128, times=(0.0, month), weights=kind)[-1]["improvement"]
            for kind in WEIGHT_DISTRIBUTIONS}
    assert 1.5 < gain["gaussian"] < gain["clipped"] < gain["uniform"], gain
    with pytest.raises(ValueError, match=r"^weights must be one of 'gaussian', 'clipped', 'uniform', not 'laplace'$"):
        study_weights("laplace", (2, 2), np.random.default_rng(0))


def test_floor_decomposition_sources_add_in_quadrature():
    """Every source switched off leaves (almost) nothing; the sources alone add up, in
    quadrature, to about the total; programming noise, nu spread and read noise each matter."""
    from neurophase.models.studies import FLOOR_SOURCES, floor_decomposition

    cfg = ChipConfig().replace(tile={"rows": 64, "cols": 32}, datapath={"lanes": 16})
    result = floor_decomposition(cfg, seeds=(3,), batch=64)
    rows = {row["source"]: row for row in result["sources"]}
    assert list(rows) == list(FLOOR_SOURCES)
    assert result["all_off"] < 0.01 < result["total"]
    alone = np.sqrt(sum(row["only"] ** 2 for row in rows.values()))
    assert alone == pytest.approx(result["total"], rel=0.2)
    for name in ("programming noise", "drift-exponent spread (sigma_nu)", "1/f read noise"):
        assert rows[name]["without"] < result["total"] and rows[name]["only"] > 0.03, rows[name]
