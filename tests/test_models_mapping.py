"""Weight mapping: exact round trip, zero weights, scaling onto g_max, bad input."""

import numpy as np
import pytest

from neurophase.config import ConfigError
from neurophase.models.mapping import (WeightMapping, join_slices, map_weights, quantise_weights,
                                       split_slices, unmap_conductances)


def mapping(slices=1, factor=8, per_column=True, bits=8, g_min=0.0):
    return WeightMapping(bits, slices, factor, per_column, g_min, 25.0)


@pytest.mark.parametrize("slices,factor", [(1, 8), (2, 4), (2, 16), (3, 4)])
@pytest.mark.parametrize("per_column", [True, False])
def test_round_trip_is_exact(slices, factor, per_column, seed):
    rng = np.random.default_rng(seed)
    m = mapping(slices, factor, per_column, g_min=0.5)
    weights = rng.normal(size=(64, 32))
    g, w_int, scale = map_weights(m, weights)
    assert g.shape == (2, slices, 64, 32)
    assert np.array_equal(unmap_conductances(m, g), w_int)
    assert np.array_equal(join_slices(m, split_slices(m, w_int)), w_int)
    on_grid = w_int * scale
    g2, w_int2, scale2 = map_weights(m, on_grid)
    assert np.array_equal(w_int2, w_int) and np.array_equal(g2, g)
    assert np.all(np.abs(weights - on_grid) <= scale / 2 + 1e-12)
    assert g.min() >= 0.5 - 1e-12 and g.max() <= 25.0 + 1e-12


def test_largest_weight_lands_on_g_max_per_column():
    m = mapping()
    weights = np.array([[1.0, -0.2], [0.5, 0.05]])
    g, w_int, scale = map_weights(m, weights)
    assert g[0, 0, 0, 0] == pytest.approx(25.0) and g[1, 0, 0, 1] == pytest.approx(25.0)
    assert np.array_equal(w_int, [[127, -127], [64, 32]])
    np.testing.assert_allclose(scale, [1 / 127, 0.2 / 127])


def test_per_tile_scaling_shares_one_scale():
    w_int, scale = quantise_weights(mapping(per_column=False), np.array([[1.0, -0.5]]))
    assert np.array_equal(w_int, [[127, -64]]) and scale[0] == scale[1]


def test_zero_weights_are_equal_low_conductances():
    m = mapping(slices=2, factor=4, g_min=0.3)
    g, w_int, _ = map_weights(m, np.zeros((4, 3)))
    assert np.all(w_int == 0) and np.all(g == 0.3)


def test_slices_least_significant_first():
    m = mapping(slices=2, factor=8)
    digits = split_slices(m, np.array([[-83]]))
    assert digits[:, 0, 0].tolist() == [-3, -10]  # -83 = -3 - 10 * 8


def test_bad_weights():
    m = mapping()
    with pytest.raises(ValueError, match=r"weights must be finite; found nan at index \(0, 1\)"):
        map_weights(m, np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"weights must be finite; found inf"):
        map_weights(m, np.array([[np.inf, 1.0]]))
    with pytest.raises(ValueError, match=r"weights must be a 2-D array \(rows, cols\), not shape \(3,\)"):
        map_weights(m, np.ones(3))
    with pytest.raises(ValueError, match=r"conductances must have shape \(2, 1, rows, cols\)"):
        unmap_conductances(m, np.ones((2, 2, 3, 3)))


def test_too_many_slices_for_the_weight_width():
    with pytest.raises(ConfigError, match=r"weights.slices 3 with weights.significance_factor 16 need at least 256"):
        mapping(slices=3, factor=16)
