"""Pulse response of a device and the program-verify loop; endurance counting.

SET (crystallisation, gradual and saturating), for a normalised amplitude A in [0, 1]::

    a     = max(0, (A - set_threshold) / (1 - set_threshold))
    dG    = set_gain * a * (g_ceil - G) * (1 + set_noise * N(0,1)),   g_ceil = g_ceiling_factor * g_max

so each pulse closes a fixed fraction of the remaining headroom: large steps from the
amorphous state, ever smaller ones near saturation, never beyond g_ceil.

RESET (amorphisation, abrupt and partial)::

    a     = max(0, (A - reset_threshold) / (1 - reset_threshold))
    G'    = g_min + (G - g_min) * (1 - a (1 + reset_noise (1 - a) N(0,1)))   (clipped to [g_min, G])

a full-amplitude RESET melts the cell back to g_min in one pulse.

Program-verify (per device, vectorised): read (with the 1/f read noise accumulated over the
VERIFY_DELAY_S between pulse and verify, sigma = Q_s sqrt(ln((1 µs + t_read) / (2 t_read)))), stop when
|G - target| <= tolerance; too low -> SET with amplitude growing with the error; too high ->
a partial RESET sized to the overshoot, after which SET pulses climb again. Every pulse counts
towards the device's endurance; a device at ``endurance_cycles`` no longer responds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.models.devices import DeviceModel, check_finite, check_real

__all__ = ["set_pulse", "reset_pulse", "program_verify", "verify_read_q", "ProgramVerifyResult", "VERIFY_DELAY_S"]

#: Time from a pulse to its verify read (model assumption: 1 µs).
VERIFY_DELAY_S = 1e-6


def _strength(amplitude, threshold: float) -> np.ndarray:
    a = check_real("pulse amplitude", amplitude).astype(np.float64)
    if np.any((a < 0) | (a > 1)) or not np.all(np.isfinite(a)):
        raise ValueError(f"pulse amplitude must be a normalised value from 0 to 1, not {a[(a < 0) | (a > 1)][:1]}")
    return np.clip((a - threshold) / (1 - threshold), 0.0, 1.0)


def set_pulse(device: DeviceModel, g_us: np.ndarray, amplitude, rng: np.random.Generator) -> np.ndarray:
    """Conductance after one SET pulse of normalised ``amplitude`` (µS)."""
    g = np.asarray(g_us, dtype=np.float64)
    ceiling = device.g_ceiling_factor * device.g_max
    a = _strength(amplitude, device.set_threshold)
    step = device.set_gain * a * np.maximum(ceiling - g, 0.0)
    step = step * (1 + device.set_noise * rng.standard_normal(g.shape))
    return np.clip(g + np.maximum(step, 0.0), 0.0, ceiling)


def reset_pulse(device: DeviceModel, g_us: np.ndarray, amplitude, rng: np.random.Generator) -> np.ndarray:
    """Conductance after one RESET pulse of normalised ``amplitude`` (µS)."""
    g = np.asarray(g_us, dtype=np.float64)
    a = _strength(amplitude, device.reset_threshold)
    depth = np.clip(a * (1 + device.reset_noise * (1 - a) * rng.standard_normal(g.shape)), 0.0, 1.0)
    lowered = device.g_min + (g - device.g_min) * (1 - depth)
    return np.minimum(np.maximum(lowered, device.g_min), np.maximum(g, device.g_min))


@dataclass
class ProgramVerifyResult:
    """Outcome of :func:`program_verify`.

    Members
    -------
    g : float64 array
        Programmed conductances, µS.
    pulses : int64 array
        Pulses applied to each device (its endurance count increment).
    iterations : int64 array
        Verify iterations until success (or the limit).
    converged : bool array
        Within tolerance at the last verify read.
    """

    g: np.ndarray
    pulses: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def verify_read_q(device: DeviceModel, g_us: np.ndarray) -> np.ndarray:
    """Relative standard deviation of a verify read at conductance ``g_us``: the read
    follows its pulse by ~VERIFY_DELAY_S, so 1/f noise is integrated over that span only."""
    return device.read_noise_q(g_us) * np.sqrt(np.log((VERIFY_DELAY_S + device.t_read) / (2 * device.t_read)))


def program_verify(device: DeviceModel, g_target_us: np.ndarray, rng: np.random.Generator,
                   tolerance_us: float = 0.5, max_iterations: int = 30,
                   g_start_us: np.ndarray | None = None, used_pulses: np.ndarray | None = None
                   ) -> ProgramVerifyResult:
    """Program every device to its target with SET/RESET pulses and verify reads.

    Parameters
    ----------
    device : DeviceModel
    g_target_us : float array
        Targets in µS (any shape).
    rng : numpy.random.Generator
    tolerance_us : float
        Acceptance band, µS (> 0).
    max_iterations : int
        Verify iterations per device (>= 1).
    g_start_us : float array, optional
        Start conductances; default: every device fully RESET to g_min.
    used_pulses : int array, optional
        Pulses already spent (endurance); devices at ``endurance_cycles`` do not respond.
    """
    if not tolerance_us > 0:
        raise ValueError(f"tolerance_us must be > 0, not {tolerance_us!r}")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, not {max_iterations!r}")
    target = device.quantise_target(check_finite("g_target_us", g_target_us))
    g = np.full(target.shape, device.g_min) if g_start_us is None else check_finite("g_start_us", g_start_us)
    spent = np.zeros(target.shape, np.int64) if used_pulses is None else np.asarray(used_pulses, np.int64)
    pulses = np.zeros(target.shape, np.int64)
    iterations = np.zeros(target.shape, np.int64)
    done = np.zeros(target.shape, bool)
    q_read = verify_read_q(device, target)
    for _ in range(max_iterations):
        read = g + np.abs(g) * q_read * rng.standard_normal(g.shape)
        error = target - read
        done |= np.abs(error) <= tolerance_us
        alive = ~done & (spent + pulses < device.endurance_cycles)
        iterations += ~done
        if not alive.any():
            break
        low, high = alive & (error > 0), alive & (error < 0)
        headroom = np.maximum(device.g_ceiling_factor * device.g_max - g, 1e-9)
        set_amp = np.clip(device.set_threshold + error / (device.set_gain * headroom), 0.0, 1.0)
        reset_amp = np.clip(device.reset_threshold + 2 * (-error) / np.maximum(g - device.g_min, 1e-9), 0.0, 1.0)
        g = np.where(low, set_pulse(device, g, np.where(low, set_amp, 0.0), rng), g)
        g = np.where(high, reset_pulse(device, g, np.where(high, reset_amp, 0.0), rng), g)
        pulses += low | high
    final = g + np.abs(g) * q_read * rng.standard_normal(g.shape)
    done |= np.abs(target - final) <= tolerance_us
    return ProgramVerifyResult(g, pulses, iterations, done)
