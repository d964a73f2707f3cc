"""Device statistics against the published formulas, over >= 1e4 devices."""

import math

import numpy as np
import pytest

from neurophase.config import DEVICE_PRESETS, ChipConfig, ConfigError
from neurophase.models.devices import PRESETS, DeviceModel, device_model_from_config

N = 20_000
G_MAX = 25.0


def joshi():
    return DeviceModel.from_preset("pcm-joshi")


def folded_normal_moments(mu, sigma):
    """Mean and standard deviation of |mu + sigma N(0,1)|."""
    mean = sigma * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * sigma**2)) + mu * math.erf(mu / (sigma * math.sqrt(2)))
    return mean, math.sqrt(mu**2 + sigma**2 - mean**2)


def published_mu_sigma_nu(g_us):
    g = max(g_us / G_MAX, 1e-7)
    mu = min(max(-0.0155 * math.log(g) + 0.0244, 0.049), 0.1)
    sigma = min(max(-0.0125 * math.log(g) - 0.0059, 0.008), 0.045)
    return mu, sigma


def test_programming_sigma_formula_matches_crosssim_curve():
    g = np.linspace(0.5, 25, 50)
    crosssim = np.maximum(-0.00178767 * g**2 + 0.07585724 * g + 0.28638599, 0)
    np.testing.assert_allclose(joshi().programming_sigma(g), crosssim, rtol=0.03, atol=0.02)


@pytest.mark.parametrize("g_target", [5.0, 10.0, 15.0, 20.0, 25.0])
def test_programming_noise_sigma(g_target, seed):
    rng = np.random.default_rng(seed)
    g = joshi().program(np.full(N, g_target), rng)
    x = g_target / G_MAX
    expected = 0.26348 + 1.9650 * x - 1.1731 * x**2
    assert np.std(g - g_target) == pytest.approx(expected, rel=0.05), f"seed {seed}"
    assert abs(np.mean(g - g_target)) < 4 * expected / math.sqrt(N)


@pytest.mark.parametrize("g_target", [0.1, 1.0, 5.0, 12.5, 25.0])
def test_drift_exponent_mean_and_spread(g_target, seed):
    rng = np.random.default_rng(seed)
    nu = joshi().draw_drift_exponents(np.full(N, g_target), rng)
    mean, std = folded_normal_moments(*published_mu_sigma_nu(g_target))
    assert np.mean(nu) == pytest.approx(mean, rel=0.03), f"seed {seed}"
    assert np.std(nu) == pytest.approx(std, rel=0.05), f"seed {seed}"
    assert np.all(nu >= 0)


@pytest.mark.parametrize("t_s", [3600.0, 86400.0])
@pytest.mark.parametrize("g_prog", [2.0, 10.0, 25.0])
def test_read_noise_sigma(t_s, g_prog, seed):
    rng = np.random.default_rng(seed)
    device = joshi()
    g = np.full(N, g_prog)
    nu = device.draw_drift_exponents(g, rng)
    reads = device.read(g, nu, t_s, rng)
    relative = (reads - device.drift(g, nu, t_s)) / device.drift(g, nu, t_s)
    q = min(0.0088 / max((g_prog / G_MAX) ** 0.65, 1e-3), 0.2)
    expected = q * math.sqrt(math.log((t_s + 20 + 250e-9) / (2 * 250e-9)))
    assert np.std(relative) == pytest.approx(expected, rel=0.05), f"seed {seed}"


def test_read_noise_grows_with_log_time():
    device = joshi()
    sigmas = [device.read_noise_sigma(10.0, t) for t in (1.0, 3600.0, 86400.0, 3e7)]
    assert np.all(np.diff(sigmas) > 0)


def test_read_noise_is_fresh_at_every_read(seed):
    rng = np.random.default_rng(seed)
    device = joshi()
    g, nu = np.full(1000, 10.0), np.full(1000, 0.05)
    assert not np.array_equal(device.read(g, nu, 60.0, rng), device.read(g, nu, 60.0, rng))


def test_drift_lowers_conductance_monotonically_in_expectation(seed):
    rng = np.random.default_rng(seed)
    device = joshi()
    target = rng.uniform(1, 25, N)
    g_prog, nu = device.program(target, rng), device.draw_drift_exponents(target, rng)
    times = [0.0, 1.0, 60.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0]
    means = [device.read(g_prog, nu, t, rng).mean() for t in times]
    assert np.all(np.diff(means) < 0), means
    assert device.drift(10.0, 0.05, 20.0) == pytest.approx(10.0 * 2**-0.05)


@pytest.mark.parametrize("preset", DEVICE_PRESETS)
def test_every_preset_builds_from_config_and_cites_sources(preset):
    device = device_model_from_config(ChipConfig.from_dict({"device": {"preset": preset}}))
    assert device.preset == preset
    assert all(source for _value, source in PRESETS[preset].values())


def test_projected_pcm_drifts_ten_times_less(seed):
    rng = np.random.default_rng(seed)
    g = np.full(N, 10.0)
    nu_pcm = DeviceModel.from_preset("pcm-joshi").draw_drift_exponents(g, rng)
    nu_proj = DeviceModel.from_preset("pcm-projected").draw_drift_exponents(g, rng)
    assert np.mean(nu_proj) == pytest.approx(0.1 * np.mean(nu_pcm), rel=0.05)


def test_hermes_fit_constants():
    device = DeviceModel.from_preset("pcm-hermes")
    assert device.g_max == 20.7 and device.t0 == 300.0 and device.t_read == 512e-9
    assert device.programming_sigma(20.7) == pytest.approx(0.16603222 + 4.71806468 - 8.48101252 + 4.68961419)
    assert device.drift_mean(0.01 * 20.7) == pytest.approx(np.clip(-0.0387 * math.log(0.01) - 0.0182, 0.072, 0.13))
    assert device.drift_mean(0.5 * 20.7) == pytest.approx(-0.0436 * 0.25 - 0.0126 * 0.5 + 0.0736)
    assert device.read_noise_q(0.5 * 20.7) == pytest.approx(0.0069 * 0.125 - 0.0280 * 0.25 + 0.0211 * 0.5 + 0.0123)


def test_flash_has_256_levels_and_negligible_drift(seed):
    rng = np.random.default_rng(seed)
    device = DeviceModel.from_preset("nor-flash")
    g = device.program(rng.uniform(0, 10, N), rng, noise=False)
    assert len(np.unique(np.round(g, 9))) <= 256
    nu = device.draw_drift_exponents(g, rng)
    assert np.all(nu <= 1e-4 + 1e-12)


def test_rram_telegraph_noise_and_read_disturb(seed):
    rng = np.random.default_rng(seed)
    device = DeviceModel.from_preset("rram")
    n = 20 * N  # the difference of two sample variances: enough reads that it is 6 sigma inside the band
    g, nu = np.full(n, 20.0), np.zeros(n)
    rtn_all, rtn_none = np.ones(n, bool), np.zeros(n, bool)
    extra_var = np.var(device.read(g, nu, 60.0, rng, rtn_all)) - np.var(device.read(g, nu, 60.0, rng, rtn_none))
    assert extra_var == pytest.approx(0.25 * (0.03 * 20.0) ** 2, rel=0.3), f"seed {seed}"
    mean, var = device.read_moments(g[:1], nu[:1], 60.0, rtn_all[:1])
    assert mean[0] == pytest.approx(20.0 * 1.015)
    assert device.read_disturbed(20.0, 10**6) > device.read_disturbed(20.0, 10**3) > 20.0
    assert 0.05 < device.rtn_mask((N,), rng).mean() < 0.15


def test_overrides_apply():
    cfg = ChipConfig.from_dict({"device": {"preset": "pcm-joshi", "overrides": {"g_max": 30.0, "t0": 10}}})
    device = device_model_from_config(cfg)
    assert device.g_max == 30.0 and device.t0 == 10.0


def test_unknown_override_lists_allowed_names():
    with pytest.raises(ConfigError, match=r"unknown device.overrides.gmax for preset 'pcm-joshi'; allowed names: g_max, g_min"):
        DeviceModel.from_preset("pcm-joshi", {"gmax": 1.0})


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"device.preset must be one of 'pcm-joshi', .* not 'pcm-x'"):
        DeviceModel.from_preset("pcm-x")
    with pytest.raises(ConfigError, match=r"device.preset must be one of"):
        ChipConfig.from_dict({"device": {"preset": "pcm-x"}})


def test_out_of_range_override():
    with pytest.raises(ConfigError, match=r"device parameter t0 must be > 0, not -1.0"):
        DeviceModel.from_preset("pcm-joshi", {"t0": -1})
    with pytest.raises(ConfigError, match=r"g_min must be below g_max \(25.0\), not 30.0"):
        DeviceModel.from_preset("pcm-joshi", {"g_min": 30})


def test_bad_time_and_values():
    device = joshi()
    with pytest.raises(ValueError, match=r"t_s must be finite and >= 0 seconds, not -1.0"):
        device.drift(10.0, 0.05, -1.0)
    with pytest.raises(ValueError, match=r"t_s must be finite and >= 0 seconds, not inf"):
        device.read_noise_sigma(10.0, float("inf"))
    with pytest.raises(ValueError, match=r"g_target_us must be finite; found nan at index \(1,\)"):
        device.program(np.array([1.0, np.nan]), np.random.default_rng(0))
