"""Pulse response (gradual SET, abrupt partial RESET), program-verify convergence, endurance."""

import numpy as np
import pytest

from neurophase.models.devices import DeviceModel
from neurophase.models.pulse import program_verify, reset_pulse, set_pulse


@pytest.fixture
def device():
    return DeviceModel.from_preset("pcm-joshi")


def test_set_is_gradual_and_saturating(device, seed):
    rng = np.random.default_rng(seed)
    g = np.zeros(10_000)
    means = [0.0]
    for _ in range(60):
        g = set_pulse(device, g, 1.0, rng)
        means.append(g.mean())
    steps = np.diff(means)
    assert np.all(steps > 0)
    assert steps[0] < 0.1 * device.g_max                # gradual: no single pulse programs the cell
    assert steps[-1] < 0.2 * steps[0]                    # saturating
    assert g.max() <= device.g_ceiling_factor * device.g_max
    assert np.std(g) > 0                                 # noisy


def test_set_grows_with_amplitude(device, seed):
    rng = np.random.default_rng(seed)
    g = np.full(10_000, 5.0)
    weak, strong = set_pulse(device, g, 0.3, rng).mean(), set_pulse(device, g, 1.0, rng).mean()
    assert 5.0 < weak < strong
    assert np.all(set_pulse(device, g, 0.01, rng) == g)  # below threshold: no change


def test_reset_is_abrupt_and_partial(device, seed):
    rng = np.random.default_rng(seed)
    g = np.full(10_000, 20.0)
    assert np.allclose(reset_pulse(device, g, 1.0, rng), device.g_min)   # full amplitude: one pulse
    partial = reset_pulse(device, g, 0.6, rng)
    assert 2.0 < partial.mean() < 18.0 and np.all(partial <= 20.0)
    assert np.all(reset_pulse(device, g, 0.1, rng) == 20.0)


def test_program_verify_converges_in_tens_of_iterations(device, seed):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.0, device.g_max, 10_000)
    result = program_verify(device, target, rng, tolerance_us=0.5, max_iterations=30)
    assert result.converged.mean() >= 0.99, f"seed {seed}"
    assert 5 <= np.median(result.iterations) <= 30
    assert np.percentile(result.iterations, 90) >= 10
    error = (result.g - target)[result.converged]
    assert np.std(error) < 1.2                           # Joshi 2020: sigma < 1.2 µS
    assert np.all(result.pulses <= 30) and result.pulses.mean() > 3


def test_endurance_limit_stops_a_device(device, seed):
    rng = np.random.default_rng(seed)
    worn = np.full(100, int(device.endurance_cycles))
    result = program_verify(device, np.full(100, 20.0), rng, used_pulses=worn)
    assert np.all(result.pulses == 0) and not result.converged.any()
    assert np.all(result.g == device.g_min)


def test_bad_pulse_arguments(device):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"pulse amplitude must be a normalised value from 0 to 1, not \[1.5\]"):
        set_pulse(device, np.ones(2), 1.5, rng)
    with pytest.raises(ValueError, match=r"tolerance_us must be > 0, not 0"):
        program_verify(device, np.ones(2), rng, tolerance_us=0)
    with pytest.raises(ValueError, match=r"max_iterations must be an integer >= 1, not 0"):
        program_verify(device, np.ones(2), rng, max_iterations=0)
