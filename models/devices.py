"""Device statistics of the memory cells: programming noise, drift, read noise.

Every constant of every preset lives in :data:`PRESETS`, each with its source. Units:
conductances in µS, times in seconds. ``g`` is the normalised conductance G / g_max.

Equations (PCM, Nandakumar et al. 2019 / Joshi et al., Nat. Commun. 11, 2473, 2020, as in
IBM's aihwkit ``inference/noise/pcm.py``)::

    sigma_prog(G_T) = (c0 + c1 g + c2 g^2 + c3 g^3) * g_max / g_ref          [µS]
    G_prog          = max(0, G_T + sigma_prog * N(0,1))
    nu              = |mu_nu(g) + sigma_nu(g) * N(0,1)| * nu_scale           (once per device)
    G_drift(t)      = G_prog * ((t + t0) / t0) ** -nu
    sigma_read(t)   = Q_s(g_prog) * sqrt(ln((t + t0 + t_read) / (2 t_read)))
    G_read          = max(0, G_drift + |G_drift| * sigma_read * N(0,1))     (fresh per read)

Extra mechanisms of the non-PCM presets: random telegraph noise (a device is RTN-active with
probability ``rtn_probability``; at each read it sits in its high state with probability
1/2, adding ``rtn_amplitude`` * G), read disturb (every array read moves G towards g_max by
the fraction ``read_disturb_per_read``), and level quantisation (``levels`` > 0: targets
snap to that many equally spaced conductances, NOR Flash).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import DEVICE_PRESETS, ChipConfig, ConfigError

__all__ = ["PRESETS", "PRESET_SOURCES", "DeviceModel", "device_model_from_config"]

_JOSHI = "Nandakumar 2019 / Joshi 2020 (Nat. Commun. 11, 2473), aihwkit inference/noise/pcm.py"
_HERMES = "HERMES-chip fit, aihwkit inference/noise/hermes.py"
_SEED = "published device-family comparisons (qualitative: RRAM low drift and RTN, NOR Flash 256 levels; the number is our assumption)"
_PULSE = "model assumption, tuned so program-verify converges in tens of pulses (HERMES chip: <= 30 iterations)"

#: Shared pulse-response and endurance parameters (see :mod:`neurophase.models.pulse`).
_PULSE_PARAMS = {
    "set_gain": (0.06, _PULSE),             # fraction of the headroom gained by a full SET pulse
    "set_noise": (0.35, _PULSE),            # relative sigma of a SET increment
    "set_threshold": (0.05, _PULSE),        # normalised SET amplitude below which nothing happens
    "reset_threshold": (0.3, _PULSE),       # normalised RESET amplitude below which nothing happens
    "reset_noise": (0.15, _PULSE),          # relative sigma of the RESET depth
    "g_ceiling_factor": (1.2, _PULSE),      # fully crystalline conductance / g_max
}

#: Every preset: parameter name -> (value, source). Override names are checked against these.
PRESETS: dict[str, dict[str, tuple[float, str]]] = {
    "pcm-joshi": {
        "g_max": (25.0, _JOSHI),
        "g_min": (0.0, _JOSHI + " (zero weight: both devices at 0 µS)"),
        "g_ref": (25.0, _JOSHI + " (sigma_prog scales with g_max / 25)"),
        "t0": (20.0, _JOSHI),
        "t_read": (250e-9, _JOSHI),
        "prog_c0": (0.26348, _JOSHI),
        "prog_c1": (1.9650, _JOSHI),
        "prog_c2": (-1.1731, _JOSHI),
        "prog_c3": (0.0, _JOSHI),
        "nu_mu_slope": (-0.0155, _JOSHI),
        "nu_mu_offset": (0.0244, _JOSHI),
        "nu_mu_min": (0.049, _JOSHI),
        "nu_mu_max": (0.1, _JOSHI),
        "nu_sigma_slope": (-0.0125, _JOSHI),
        "nu_sigma_offset": (-0.0059, _JOSHI),
        "nu_sigma_min": (0.008, _JOSHI),
        "nu_sigma_max": (0.045, _JOSHI),
        "nu_scale": (1.0, _JOSHI),
        "read_q_coeff": (0.0088, _JOSHI),
        "read_q_exponent": (0.65, _JOSHI),
        "read_q_max": (0.2, _JOSHI),
        "rtn_probability": (0.0, _JOSHI + " (no RTN term)"),
        "rtn_amplitude": (0.0, _JOSHI + " (no RTN term)"),
        "read_disturb_per_read": (0.0, _JOSHI + " (no read-disturb term)"),
        "levels": (0.0, "analog PCM: continuous levels"),
        "endurance_cycles": (1e8, "published PCM endurance 1e8-1e9 cycles (lower end)"),
    },
}

# HERMES fit: its own laws (piecewise); g_max 20.7 µS, t0 300 s, t_read 512 ns.
PRESETS["pcm-hermes"] = {
    **PRESETS["pcm-joshi"],
    "g_max": (20.7, _HERMES),
    "g_ref": (20.7, _HERMES + " (cubic in µS at g_max 20.7)"),
    "t0": (300.0, _HERMES),
    "t_read": (512e-9, _HERMES),
    "prog_c0": (0.16603222, _HERMES),
    "prog_c1": (4.71806468, _HERMES),
    "prog_c2": (-8.48101252, _HERMES),
    "prog_c3": (4.68961419, _HERMES),
}
for _name in ("nu_mu_slope", "nu_mu_offset", "nu_mu_min", "nu_mu_max", "nu_sigma_slope",
              "nu_sigma_offset", "nu_sigma_min", "nu_sigma_max", "read_q_coeff", "read_q_exponent",
              "read_q_max"):
    del PRESETS["pcm-hermes"][_name]

# Projected PCM: same device, drift ~10x lower thanks to the non-drifting liner.
PRESETS["pcm-projected"] = {
    **PRESETS["pcm-joshi"],
    "nu_scale": (0.1, "published projected-PCM figures: nu ~10x lower than plain PCM"),
}

PRESETS["rram"] = {
    **PRESETS["pcm-joshi"],
    "g_max": (50.0, _SEED + ": filamentary RRAM LRS ~ 50 µS"),
    "g_min": (2.0, _SEED + ": RRAM HRS floor ~ 2 µS"),
    "g_ref": (50.0, _SEED),
    "prog_c0": (0.5, _SEED + ": ~4-5 reliable bits -> sigma ~ 1 µS over 50 µS"),
    "prog_c1": (1.5, _SEED),
    "prog_c2": (0.0, _SEED),
    "nu_mu_slope": (0.0, _SEED + ": low drift"),
    "nu_mu_offset": (0.005, _SEED + ": low drift"),
    "nu_mu_min": (0.0, _SEED),
    "nu_mu_max": (0.005, _SEED),
    "nu_sigma_slope": (0.0, _SEED),
    "nu_sigma_offset": (0.002, _SEED),
    "nu_sigma_min": (0.0, _SEED),
    "nu_sigma_max": (0.002, _SEED),
    "read_q_coeff": (0.005, _SEED + ": small 1/f noise"),
    "rtn_probability": (0.1, _SEED + ": random telegraph noise"),
    "rtn_amplitude": (0.03, _SEED + ": random telegraph noise"),
    "read_disturb_per_read": (1e-9, _SEED + ": read disturb"),
    "endurance_cycles": (1e6, _SEED),
}

PRESETS["nor-flash"] = {
    **PRESETS["pcm-joshi"],
    "g_max": (10.0, _SEED + ": subthreshold cell current scale"),
    "g_ref": (10.0, _SEED),
    "prog_c0": (0.01, _SEED + ": well below one level (10/255 µS)"),
    "prog_c1": (0.0, _SEED),
    "prog_c2": (0.0, _SEED),
    "nu_mu_slope": (0.0, _SEED + ": negligible drift"),
    "nu_mu_offset": (1e-4, _SEED + ": negligible drift"),
    "nu_mu_min": (0.0, _SEED),
    "nu_mu_max": (1e-4, _SEED),
    "nu_sigma_slope": (0.0, _SEED),
    "nu_sigma_offset": (0.0, _SEED),
    "nu_sigma_min": (0.0, _SEED),
    "nu_sigma_max": (0.0, _SEED),
    "read_q_coeff": (0.002, _SEED),
    "levels": (256.0, "published NOR Flash figures: 8 bit (256 levels) per cell"),
    "endurance_cycles": (1e4, "published NOR Flash figures: endurance 1e4-1e5"),
}

for _preset in PRESETS.values():
    _preset.update(_PULSE_PARAMS)

#: Where each preset's numbers come from, for docs and reports.
PRESET_SOURCES = {"pcm-joshi": _JOSHI, "pcm-hermes": _HERMES, "pcm-projected": _JOSHI + "; nu / 10",
                  "rram": _SEED, "nor-flash": _SEED}

assert set(PRESETS) == set(DEVICE_PRESETS)

_POSITIVE = ("g_max", "g_ref", "t0", "t_read", "g_ceiling_factor")
_NON_NEGATIVE = ("g_min", "nu_scale", "rtn_probability", "rtn_amplitude", "read_disturb_per_read", "levels",
                 "endurance_cycles", "set_gain", "set_noise", "reset_noise")


@dataclass(frozen=True)
class DeviceModel:
    """Statistics of one device family with its parameters.

    Parameters
    ----------
    preset : str
        One of :data:`neurophase.config.DEVICE_PRESETS`.
    params : dict
        Parameter name -> value; must hold exactly the names of the preset.

    Raises
    ------
    ConfigError
        For an unknown preset or parameter name or an out-of-range value.
    """

    preset: str
    params: dict

    @classmethod
    def from_preset(cls, preset: str, overrides: dict | None = None) -> "DeviceModel":
        """The preset's parameters with ``overrides`` (name -> number) applied."""
        if preset not in PRESETS:
            allowed = ", ".join(repr(p) for p in PRESETS)
            raise ConfigError(f"device.preset must be one of {allowed}, not {preset!r}")
        params = {name: value for name, (value, _source) in PRESETS[preset].items()}
        for name, value in (overrides or {}).items():
            if name not in params:
                raise ConfigError(
                    f"unknown device.overrides.{name} for preset {preset!r}; allowed names: {', '.join(params)}")
            params[name] = float(value)
        return cls(preset, params)

    def __post_init__(self):
        p = self.params
        for name in _POSITIVE:
            if not p[name] > 0:
                raise ConfigError(f"device parameter {name} must be > 0, not {p[name]!r}")
        for name in _NON_NEGATIVE:
            if not p[name] >= 0:
                raise ConfigError(f"device parameter {name} must be >= 0, not {p[name]!r}")
        if not p["g_min"] < p["g_max"]:
            raise ConfigError(f"device parameter g_min must be below g_max ({p['g_max']}), not {p['g_min']!r}")
        if p["rtn_probability"] > 1:
            raise ConfigError(f"device parameter rtn_probability must be from 0 to 1, not {p['rtn_probability']!r}")
        if p["levels"] and p["levels"] < 2:
            raise ConfigError(f"device parameter levels must be 0 (continuous) or >= 2, not {p['levels']!r}")

    def __getattr__(self, name):
        params = object.__getattribute__(self, "params")
        if name in params:
            return params[name]
        raise AttributeError(name)

    def __hash__(self):
        return hash((self.preset, tuple(sorted(self.params.items()))))

    # -- laws ------------------------------------------------------------------
    def normalised(self, g_us: np.ndarray) -> np.ndarray:
        """g = G / g_max, clipped to [1e-7, inf) as the published laws require."""
        return np.maximum(np.asarray(g_us, dtype=np.float64) / self.g_max, 1e-7)

    def programming_sigma(self, g_target_us: np.ndarray) -> np.ndarray:
        """Programming-noise sigma in µS at the target conductance."""
        g = np.clip(np.asarray(g_target_us, dtype=np.float64) / self.g_max, 0.0, None)
        p = self.params
        poly = p["prog_c0"] + g * (p["prog_c1"] + g * (p["prog_c2"] + g * p["prog_c3"]))
        return np.maximum(poly, 0.0) * self.g_max / self.g_ref

    def drift_mean(self, g_us: np.ndarray) -> np.ndarray:
        """Mean drift exponent mu_nu at the target conductance (before ``nu_scale``)."""
        g = self.normalised(g_us)
        if self.preset == "pcm-hermes":
            low = np.clip(-0.0387 * np.log(g) - 0.0182, 0.072, 0.13)  # hermes.py, g < 0.0945
            high = -0.0436 * g**2 - 0.0126 * g + 0.0736                # hermes.py, g >= 0.0945
            return np.where(g < 0.0945, low, high)
        p = self.params
        return np.clip(p["nu_mu_slope"] * np.log(g) + p["nu_mu_offset"], p["nu_mu_min"], p["nu_mu_max"])

    def drift_spread(self, g_us: np.ndarray) -> np.ndarray:
        """Spread sigma_nu of the drift exponent at the target conductance (before ``nu_scale``)."""
        g = self.normalised(g_us)
        if self.preset == "pcm-hermes":
            low = np.clip(-0.0117 * np.log(g) - 0.0057, 0.0091, 0.04)  # hermes.py, g < 0.3055
            high = -0.0118 * g**2 + 0.0093 * g + 0.0073                # hermes.py, g >= 0.3055
            return np.where(g < 0.3055, low, high)
        p = self.params
        return np.clip(p["nu_sigma_slope"] * np.log(g) + p["nu_sigma_offset"], p["nu_sigma_min"], p["nu_sigma_max"])

    def read_noise_q(self, g_prog_us: np.ndarray) -> np.ndarray:
        """1/f read-noise amplitude Q_s at the programmed conductance."""
        if self.preset == "pcm-hermes":
            g = self.normalised(g_prog_us)
            low = np.clip(-0.0117 * np.log(g) - 0.0069, 0.015, 0.04)                   # hermes.py, g < 0.16
            high = 0.0069 * g**3 - 0.0280 * g**2 + 0.0211 * g + 0.0123                 # hermes.py, g >= 0.16
            return np.where(g < 0.16, low, high)
        g = np.asarray(g_prog_us, dtype=np.float64) / self.g_max
        p = self.params
        return np.minimum(p["read_q_coeff"] / np.maximum(np.abs(g) ** p["read_q_exponent"], 1e-3), p["read_q_max"])

    def read_noise_time_factor(self, t_s: float | np.ndarray) -> float | np.ndarray:
        """sqrt(ln((t + t0 + t_read) / (2 t_read))): the 1/f growth with time since programming.

        ``t_s`` is one time (returns a float) or an array of per-device times (returns an array):
        a device reprogrammed later restarts its 1/f clock.
        """
        t_s = check_times(t_s)
        factor = np.sqrt(np.log((t_s + self.t0 + self.t_read) / (2 * self.t_read)))
        return float(factor) if np.ndim(t_s) == 0 else factor

    def read_noise_sigma(self, g_prog_us: np.ndarray, t_s: float | np.ndarray) -> np.ndarray:
        """Relative read-noise sigma (a fraction of G_drift) at time ``t_s`` since programming
        (one time, or per-device times broadcasting against ``g_prog_us``)."""
        return self.read_noise_q(g_prog_us) * self.read_noise_time_factor(t_s)

    # -- draws -------------------------------------------------------------------
    def quantise_target(self, g_target_us: np.ndarray) -> np.ndarray:
        """Targets snapped to the device's discrete levels (``levels`` > 0), else unchanged."""
        if not self.levels:
            return np.asarray(g_target_us, dtype=np.float64)
        step = (self.g_max - self.g_min) / (self.levels - 1)
        return self.g_min + np.clip(np.rint((g_target_us - self.g_min) / step), 0, self.levels - 1) * step

    def program(self, g_target_us: np.ndarray, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
        """One-shot programming (the statistical outcome of program-verify): G_prog in µS."""
        target = self.quantise_target(check_finite("g_target_us", g_target_us))
        if not noise:
            return target.copy()
        return np.maximum(target + self.programming_sigma(target) * rng.standard_normal(target.shape), 0.0)

    def draw_drift_exponents(self, g_target_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """nu = |mu_nu + sigma_nu N(0,1)| * nu_scale, one per device, drawn at programming."""
        g = np.asarray(g_target_us, dtype=np.float64)
        return np.abs(self.drift_mean(g) + self.drift_spread(g) * rng.standard_normal(g.shape)) * self.nu_scale

    def drift(self, g_prog_us: np.ndarray, nu: np.ndarray, t_s: float | np.ndarray) -> np.ndarray:
        """G_drift(t) = G_prog ((t + t0) / t0) ** -nu, with ``t_s`` the time since programming:
        one time, or per-device times (broadcasting against ``g_prog_us``) when devices were
        programmed at different moments."""
        t_s = check_times(t_s)
        return np.asarray(g_prog_us) * ((t_s + self.t0) / self.t0) ** (-np.asarray(nu))

    def read_disturbed(self, g_us: np.ndarray, reads: int) -> np.ndarray:
        """Conductance after ``reads`` array reads of read disturb (towards g_max)."""
        if not self.read_disturb_per_read or not reads:
            return g_us
        keep = (1.0 - self.read_disturb_per_read) ** reads
        return self.g_max - (self.g_max - g_us) * keep

    def rtn_mask(self, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        """Which devices show random telegraph noise (drawn once at programming)."""
        if not self.rtn_probability:
            return np.zeros(shape, dtype=bool)
        return rng.random(shape) < self.rtn_probability

    def read(self, g_prog_us: np.ndarray, nu: np.ndarray, t_s: float | np.ndarray, rng: np.random.Generator,
             rtn: np.ndarray | None = None, reads: int = 0) -> np.ndarray:
        """One read of every device, with fresh 1/f noise (and RTN state): G in µS.

        This is the exact per-device path; :mod:`neurophase.models.crossbar` uses the
        output-referred equivalent for speed.
        """
        g_drift = self.read_disturbed(self.drift(g_prog_us, nu, t_s), reads)
        sigma = self.read_noise_sigma(g_prog_us, t_s)
        g = g_drift + np.abs(g_drift) * sigma * rng.standard_normal(np.shape(g_drift))
        if rtn is not None and self.rtn_amplitude:
            high = rng.random(np.shape(g_drift)) < 0.5
            g = g + np.where(rtn & high, self.rtn_amplitude * g_drift, 0.0)
        return np.maximum(g, 0.0)

    def read_moments(self, g_prog_us: np.ndarray, nu: np.ndarray, t_s: float | np.ndarray,
                     rtn: np.ndarray | None = None, reads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (µS, µS²) of one read of every device, as :meth:`read` draws it
        (ignoring the clip at 0, which is many sigmas away for these noise levels)."""
        g_drift = self.read_disturbed(self.drift(g_prog_us, nu, t_s), reads)
        var = (g_drift * self.read_noise_sigma(g_prog_us, t_s)) ** 2
        mean = g_drift
        if rtn is not None and self.rtn_amplitude:
            step = np.where(rtn, self.rtn_amplitude * g_drift, 0.0)
            mean = mean + 0.5 * step
            var = var + 0.25 * step**2
        return mean, var


def device_model_from_config(cfg: ChipConfig) -> DeviceModel:
    """The :class:`DeviceModel` of ``cfg.device`` (preset plus checked overrides)."""
    return DeviceModel.from_preset(cfg.device.preset, cfg.device.overrides)


def check_time(t_s) -> float:
    """``t_s`` as a float after checking it is a finite time >= 0 (seconds)."""
    if isinstance(t_s, bool) or not isinstance(t_s, (int, float, np.integer, np.floating)):
        raise ValueError(f"time since programming t_s must be a number of seconds, not {t_s!r}")
    if not np.isfinite(t_s) or t_s < 0:
        raise ValueError(f"time since programming t_s must be finite and >= 0 seconds, not {t_s!r}")
    return float(t_s)


def check_real(name: str, values) -> np.ndarray:
    """``values`` as an array after checking they are real numbers (integer, float or bool):
    complex values would silently lose their imaginary part in a float conversion, and
    strings or objects are no numbers at all."""
    arr = np.asarray(values)
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real numbers, not complex ({arr.dtype})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be real numbers, not {arr.dtype} values")
    return arr


def check_times(t_s) -> float | np.ndarray:
    """:func:`check_time` for one time (returns a float) or an array of per-device times
    (returns float64; every entry finite and >= 0)."""
    if np.ndim(t_s) == 0:
        return check_time(t_s.item() if isinstance(t_s, np.ndarray) else t_s)
    times = np.asarray(t_s)
    if not (np.issubdtype(times.dtype, np.integer) or np.issubdtype(times.dtype, np.floating)):
        raise ValueError(f"times since programming t_s must be numbers of seconds, not {times.dtype} values")
    times = times.astype(np.float64)
    bad = ~np.isfinite(times) | (times < 0)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"times since programming t_s must be finite and >= 0 seconds; found "
                         f"{float(times[where])!r} at index {where}")
    return times


def check_finite(name: str, values) -> np.ndarray:
    """``values`` as float64 after checking they are real (:func:`check_real`) and finite."""
    arr = check_real(name, values).astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite; found {float(arr[where])!r} at index {where}")
    return arr
