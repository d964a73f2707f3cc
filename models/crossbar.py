"""Crossbar MVM with DAC and ADC: what the RTL's ADC port receives.

A tile holds, per weight slice s, R rows x (C + reference) columns of differential pairs.
For a batch of integer inputs x (shape (batch, R)) it returns signed ADC codes of shape
(batch, slices, planes, C) — per vector exactly the (slices, planes, columns) layout of
:meth:`neurophase.models.shift_add.ShiftAddParams.check_codes`.

Row drive (DAC)
    bit-serial: plane b of x is bit b of (x mod 2**B), LSB first, applied as 0/1 per row;
    the MSB plane of two's-complement inputs is weighted negatively by the digital
    shift-and-add, not by the array. pulse-width: one plane; row r is driven for x_r pulse
    LSBs with the sign of x_r (drive in [-2**(B-1), 2**(B-1)-1], or [0, 2**B-1] unsigned).

Column signal and ADC
    I[c] = V_read * sum_r drive_r * (G+_rc(t) - G-_rc(t)), with G(t) the drifted, read-noisy
    conductances at time t since programming. The ADC converts
    ``code = clip(rint(I / I_lsb + offset_c + n_adc), -2**(bits-1), 2**(bits-1)-1)`` with
    ``I_lsb = P * adc_full_scale * R * g_max * V_read * drive_max / 2**(bits-1)``.

Devices per polarity (``weights.devices_per_polarity = P``)
    Each side of a pair is P devices programmed independently to the same target (own
    programming noise, drift exponent, RTN, read noise); G+ and G- above are the sums over
    the P devices. The ADC range, and so ``I_lsb``, grows by P: codes keep their units, the
    signal grows P-fold and independent noise sqrt(P)-fold. :attr:`AnalogTile.lsb_us` is the
    LSB referred to one device per polarity (the units of ``g_unit``), the same for every P.

Read noise (``analog.read_noise = "output-referred"``, the default)
    Independent per-device Gaussian noise of variance (G_drift sigma_read)^2 sums, on each
    output, to a Gaussian of variance sum_r drive_r^2 (var+_rc + var-_rc): one exact draw per
    output. With 0/1 planes drive^2 = drive, so mean and variance come from a single matmul
    of the planes with the stacked matrix [G+ - G- | var+ + var-]. ``"per-device"`` draws every
    device at every read instead (slow; for checking), ``"off"`` reads G_drift.

Column sharing (``adc.columns_per_adc = M``)
    ADC j serves columns j*M .. j*M+M-1. Conversion k (k = 0 .. M-1) of a plane converts, on
    every ADC at once, the columns {c : c % M == k}; a plane therefore takes M conversions,
    in that order, and column c always goes through ADC c // M (and carries its offset).
    See :func:`conversion_order`. Codes are returned in column order regardless.

Random draws come only from the generator the caller passes; the same seed gives the same
codes bit for bit.
"""

from __future__ import annotations

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.chip_state import ChipState
from neurophase.models.devices import DeviceModel, check_real, check_time, device_model_from_config
from neurophase.models.mapping import (
    WeightMapping, digits_to_conductances, expand_devices, map_weights, split_slices, sum_devices,
)
from neurophase.models.shift_add import ShiftAddParams, shift_add

__all__ = [
    "AnalogTile", "build_tile", "input_planes", "input_range", "conversion_order", "digital_result",
    "ideal_codes", "exact_adc_full_scale", "exact_config", "required_adc_bits", "REFERENCE_WEIGHT_SEED",
]

#: Seed of the fixed reference-column weights (the same on every chip instance).
REFERENCE_WEIGHT_SEED = 0x5EF


def input_range(cfg: ChipConfig) -> tuple[int, int]:
    """Smallest and largest input value for ``cfg.input``."""
    bits = cfg.input.bits
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if cfg.input.signed else (0, 2**bits - 1)


def drive_max(cfg: ChipConfig) -> int:
    """Largest |row drive|: 1 for bit-planes, the largest |input| for pulse widths."""
    if cfg.input.mode == "bit-serial":
        return 1
    lo, hi = input_range(cfg)
    return max(-lo, hi)


def check_inputs(cfg: ChipConfig, inputs) -> np.ndarray:
    """``inputs`` as int64 of shape (batch, rows) after shape, type and range checks."""
    x = check_real("inputs", inputs)
    if x.ndim not in (1, 2) or x.shape[-1] != cfg.tile.rows:
        raise ValueError(f"inputs must have shape (batch, {cfg.tile.rows}) or ({cfg.tile.rows},), not {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)) or np.any(x != np.rint(x)):
            raise ValueError(f"inputs must be integers, not {x.dtype} values")
    lo, hi = input_range(cfg)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(
            f"inputs must lie in [{lo}, {hi}] for {cfg.input.bits}-bit {cfg.input.encoding} inputs; "
            f"found {int(x.min())} .. {int(x.max())}")
    return np.atleast_2d(x.astype(np.int64))


def input_planes(cfg: ChipConfig, inputs) -> np.ndarray:
    """Row drives, shape (planes, batch, rows), float32.

    Bit-serial: plane b is bit b of (x mod 2**B). Pulse-width: one plane, the signed value.
    """
    x = check_inputs(cfg, inputs)
    if cfg.input.mode == "pulse-width":
        return x[None].astype(np.float32)
    u = np.mod(x, 2**cfg.input.bits)
    shifts = np.arange(cfg.input.bits, dtype=np.int64)[:, None, None]
    return ((u[None] >> shifts) & 1).astype(np.float32)


def conversion_order(cfg: ChipConfig) -> list[np.ndarray]:
    """Columns converted by each conversion of one plane: entry k is {c : c % M == k},
    ascending; column c is converted by ADC c // M."""
    m, cols = cfg.adc.columns_per_adc, cfg.tile.cols
    return [np.arange(k, cols, m) for k in range(m)]


def ideal_codes(cfg: ChipConfig, w_int: np.ndarray, inputs) -> np.ndarray:
    """Integer codes without any noise, drift or ADC limit, with one LSB per unit digit:
    sum_r drive_r * d_s[r, c]; shape (batch, slices, planes, cols), int64."""
    mapping = WeightMapping(cfg.analog.weight_bits, cfg.weights.slices, cfg.weights.significance_factor,
                            True, 0.0, 1.0)
    digits = split_slices(mapping, w_int)
    planes = input_planes(cfg, inputs).astype(np.int64)
    return np.einsum("pbr,src->bspc", planes, digits)


def required_adc_bits(cfg: ChipConfig, device: DeviceModel | None = None) -> int:
    """ADC bits that hold every ideal code when one LSB is one unit digit."""
    device = device or device_model_from_config(cfg)
    mapping = WeightMapping.from_config(cfg, device)
    worst = cfg.tile.rows * mapping.d_max * drive_max(cfg)
    return int(worst).bit_length() + 1


def exact_adc_full_scale(cfg: ChipConfig, device: DeviceModel | None = None) -> float:
    """The ``analog.adc_full_scale`` that makes one ADC LSB equal one unit digit (g_unit),
    so that noise-free codes are the exact integers of :func:`ideal_codes`."""
    device = device or device_model_from_config(cfg)
    mapping = WeightMapping.from_config(cfg, device)
    half = 2 ** (cfg.adc.bits - 1)
    return mapping.g_unit * half / (cfg.tile.rows * device.g_max * drive_max(cfg))


def exact_config(cfg: ChipConfig) -> ChipConfig:
    """``cfg`` with noise, drift, ADC offsets off and the exact ADC range
    (:func:`exact_adc_full_scale`).

    Raises
    ------
    ConfigError
        When ``adc.bits`` is too small for exact arithmetic (names the bits needed).
    """
    needed = required_adc_bits(cfg)
    if cfg.adc.bits < needed:
        raise ConfigError(
            f"adc.bits must be at least {needed} for exact integer arithmetic with {cfg.tile.rows} rows, "
            f"analog.weight_bits {cfg.analog.weight_bits} and {cfg.input.mode} inputs, not {cfg.adc.bits}")
    off = {"programming_noise": "off", "drift": "off", "read_noise": "off", "adc_offset_lsb": 0.0,
           "adc_offset_sigma_lsb": 0.0, "adc_noise_lsb": 0.0}
    cfg = cfg.replace(analog=off)
    return cfg.replace(analog={"adc_full_scale": exact_adc_full_scale(cfg)})


def digital_result(cfg: ChipConfig, codes: np.ndarray) -> np.ndarray:
    """Codes -> :func:`neurophase.models.shift_add.shift_add` -> results.

    ``codes`` of shape (batch, slices, planes, cols) give int64 results (batch, cols);
    (slices, planes, cols) gives (cols,). With exact ADC range and no noise this is x . W_int.
    """
    params = ShiftAddParams.from_config(cfg)
    codes = np.asarray(codes)
    if codes.ndim == 3:
        return shift_add(params, codes)[0]
    return np.stack([shift_add(params, one)[0] for one in codes]) if len(codes) else \
        np.zeros((0, cfg.tile.cols), dtype=np.int64)


class AnalogTile:
    """One programmed tile instance: device state plus the configuration that reads it.

    Parameters
    ----------
    cfg : ChipConfig
    state : ChipState
        From :func:`build_tile` or :func:`neurophase.models.chip_state.load_state`.

    Raises
    ------
    ConfigError
        When the state's shape does not fit ``cfg``.
    """

    def __init__(self, cfg: ChipConfig, state: ChipState):
        self.cfg = cfg
        self.state = state
        self.device = DeviceModel(state.device["preset"], dict(state.device["params"]))
        self.mapping = WeightMapping.from_config(cfg, self.device)
        devices = cfg.weights.devices_per_polarity
        expected = (2, cfg.weights.slices, cfg.tile.rows, self.columns) + ((devices,) if devices > 1 else ())
        if state.g_prog.shape != expected:
            raise ConfigError(
                f"chip state conductances have shape {state.g_prog.shape}; the configuration needs {expected} "
                "(2, slices, rows, cols + analog.reference_columns[, weights.devices_per_polarity when > 1])")
        self._cache_key = None
        self._matrices = None

    # -- geometry --------------------------------------------------------------
    @property
    def columns(self) -> int:
        """Data plus reference columns."""
        return self.cfg.tile.cols + self.cfg.analog.reference_columns

    @property
    def lsb_us(self) -> float:
        """ADC LSB as a conductance-times-drive sum in µS, referred to one device per polarity
        (the units of ``mapping.g_unit``; the same for every ``weights.devices_per_polarity``)."""
        cfg = self.cfg
        return cfg.analog.adc_full_scale * cfg.tile.rows * self.device.g_max * drive_max(cfg) / 2 ** (cfg.adc.bits - 1)

    @property
    def column_lsb_us(self) -> float:
        """ADC LSB of the summed column signal in µS: P x :attr:`lsb_us` for P devices per polarity."""
        return self.cfg.weights.devices_per_polarity * self.lsb_us

    @property
    def lsb_ua(self) -> float:
        """ADC LSB current in µA (of the summed column signal)."""
        return self.column_lsb_us * self.cfg.analog.read_voltage_v

    def column_offsets(self) -> np.ndarray:
        """Offset in LSB of every column (data columns, then reference columns), float32."""
        cfg = self.cfg
        per_adc = np.repeat(self.state.adc_offsets, cfg.adc.columns_per_adc)
        ref = np.zeros(cfg.analog.reference_columns)
        return (cfg.analog.adc_offset_lsb + np.concatenate([per_adc, ref])).astype(np.float32)

    # -- device reads ------------------------------------------------------------
    def conductances(self, t_s: float) -> np.ndarray:
        """Noise-free conductances at ``t_s`` (drift and read disturb), (2, S, R, C+ref), µS,
        with a trailing axis of the P devices per polarity when P > 1."""
        t_s = check_time(t_s)
        if self.cfg.analog.drift == "off":
            return self.device.read_disturbed(self.state.g_prog, self._disturb_reads())
        return self.device.read_disturbed(self.device.drift(self.state.g_prog, self.state.nu, t_s),
                                          self._disturb_reads())

    def _disturb_reads(self) -> int:
        return self.state.reads if self.device.read_disturb_per_read else 0

    def read_matrices(self, t_s: float) -> np.ndarray:
        """Per slice, [mean(G+ - G-) | var(G+) + var(G-)] in LSB units: float32 (S, R, 2 (C+ref)),
        G+ and G- summed over the P devices of each side.

        Cached per (time, read count that matters); computed once per read time, not per vector.
        """
        t_s = check_time(t_s)
        key = (t_s, self._disturb_reads())
        if key != self._cache_key:
            g_prog = self.state.g_prog
            nu = self.state.nu if self.cfg.analog.drift == "on" else np.zeros_like(self.state.nu)
            mean, var = self.device.read_moments(g_prog, nu, t_s, self.state.rtn, self._disturb_reads())
            mean, var = sum_devices(mean), sum_devices(var)
            if self.cfg.analog.read_noise != "output-referred":
                var = np.zeros_like(var)
            lsb = self.column_lsb_us
            self._matrices = np.concatenate(
                [(mean[0] - mean[1]) / lsb, (var[0] + var[1]) / lsb**2], axis=-1).astype(np.float32)
            self._cache_key = key
        return self._matrices

    # -- MVM ------------------------------------------------------------------------
    def analog_outputs(self, inputs, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Column signals in LSB before rounding (offsets and ADC noise included),
        float32 of shape (slices, planes, batch, C + ref)."""
        t_s = check_time(t_s)
        planes = input_planes(self.cfg, inputs)
        if self.cfg.analog.read_noise == "per-device":
            out = self._per_device_outputs(planes, t_s, rng)
        else:
            out = self._output_referred(planes, t_s, rng)
        out += self.column_offsets()
        if self.cfg.analog.adc_noise_lsb:
            out += np.float32(self.cfg.analog.adc_noise_lsb) * rng.standard_normal(out.shape, dtype=np.float32)
        self.state.reads += planes.shape[0] * planes.shape[1] * self.cfg.weights.slices
        self.state.time_s = t_s
        return out

    def _output_referred(self, planes: np.ndarray, t_s: float, rng: np.random.Generator) -> np.ndarray:
        n_planes, batch, rows = planes.shape
        cols = self.columns
        matrices = self.read_matrices(t_s)
        flat = planes.reshape(n_planes * batch, rows)
        noisy = self.cfg.analog.read_noise == "output-referred"
        pulse = self.cfg.input.mode == "pulse-width"
        out = np.empty((matrices.shape[0], n_planes * batch, cols), dtype=np.float32)
        for s, matrix in enumerate(matrices):
            if not noisy:
                np.matmul(flat, matrix[:, :cols], out=out[s])
                continue
            if pulse:
                mean, var = flat @ matrix[:, :cols], np.square(flat) @ matrix[:, cols:]
            else:
                both = flat @ matrix
                mean, var = both[:, :cols], both[:, cols:]
            np.maximum(var, 0.0, out=var)
            np.sqrt(var, out=var)
            var *= rng.standard_normal(var.shape, dtype=np.float32)
            np.add(mean, var, out=out[s])
        return out.reshape(matrices.shape[0], n_planes, batch, cols)

    def _per_device_outputs(self, planes: np.ndarray, t_s: float, rng: np.random.Generator) -> np.ndarray:
        n_planes, batch, _rows = planes.shape
        state, lsb = self.state, self.column_lsb_us
        nu = state.nu if self.cfg.analog.drift == "on" else np.zeros_like(state.nu)
        out = np.empty((state.g_prog.shape[1], n_planes, batch, self.columns), dtype=np.float32)
        for p in range(n_planes):
            for b in range(batch):
                g = sum_devices(self.device.read(state.g_prog, nu, t_s, rng, state.rtn, self._disturb_reads()))
                out[:, p, b] = np.einsum("r,src->sc", planes[p, b].astype(np.float64), g[0] - g[1]) / lsb
        return out

    def quantise(self, signals: np.ndarray) -> np.ndarray:
        """Signals in LSB -> signed codes, rounded half to even and saturated, int16."""
        half = 2 ** (self.cfg.adc.bits - 1)
        np.rint(signals, out=signals)
        np.clip(signals, -half, half - 1, out=signals)
        return signals.astype(np.int16)

    def all_codes(self, inputs, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Codes of data and reference columns, (batch, slices, planes, C + ref), int16."""
        codes = self.quantise(self.analog_outputs(inputs, t_s, rng))
        return codes.transpose(2, 0, 1, 3)

    def adc_codes(self, inputs, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """ADC codes of the data columns: what the RTL's ADC port receives.

        Parameters
        ----------
        inputs : int array, shape (batch, rows) or (rows,)
            Input vectors in the range of ``cfg.input``.
        t_s : float
            Time since programming, seconds (>= 0).
        rng : numpy.random.Generator
            Source of every random draw of this read.

        Returns
        -------
        int16 array, shape (batch, slices, planes, cols), or (slices, planes, cols) for one vector.
        """
        codes = self.all_codes(inputs, t_s, rng)[..., : self.cfg.tile.cols]
        return codes[0] if np.ndim(inputs) == 1 else np.ascontiguousarray(codes)

    def reference_codes(self, inputs, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """ADC codes of the reference columns, (batch, slices, planes, reference_columns)."""
        return self.all_codes(inputs, t_s, rng)[..., self.cfg.tile.cols:]

    def weights(self) -> np.ndarray:
        """The quantised weights W_int * scale the tile was programmed with."""
        return self.state.w_int * self.state.scale


def build_tile(cfg: ChipConfig, weights: np.ndarray, seed: int, program_verify: bool = False) -> AnalogTile:
    """Map ``weights`` (rows x cols) and program a fresh tile instance.

    Parameters
    ----------
    cfg : ChipConfig
    weights : float array, shape (tile.rows, tile.cols)
    seed : int
        Seeds every draw of programming (noise, drift exponents, RTN, ADC offsets).
    program_verify : bool
        Program with the pulse-level program-verify loop of :mod:`neurophase.models.pulse`
        (slower) instead of the statistical one-shot programming-noise model.

    Raises
    ------
    ValueError
        For weights of the wrong shape or with NaN/infinite values.
    ConfigError
        For unknown device presets or override names.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, not {seed!r}")
    device = device_model_from_config(cfg)
    mapping = WeightMapping.from_config(cfg, device)
    w = check_real("weights", weights)
    w = w.astype(np.float64) if w.ndim == 2 else w
    if w.shape != (cfg.tile.rows, cfg.tile.cols):
        raise ValueError(f"weights must have shape (tile.rows, tile.cols) = {(cfg.tile.rows, cfg.tile.cols)}, "
                         f"not {w.shape}")
    rng = np.random.default_rng(seed)
    g_data, w_int, scale = map_weights(mapping, w)
    ref_w_int = reference_weights(cfg, mapping)
    g_target = np.concatenate([g_data, digits_to_conductances(mapping, split_slices(mapping, ref_w_int))], axis=-1)
    g_target = expand_devices(g_target, cfg.weights.devices_per_polarity)
    g_prog, pulses = _program(cfg, device, g_target, rng, program_verify)
    nu = device.draw_drift_exponents(g_target, rng)
    rtn = device.rtn_mask(g_target.shape, rng)
    n_adc = cfg.tile.cols // cfg.adc.columns_per_adc
    offsets = cfg.analog.adc_offset_sigma_lsb * rng.standard_normal(n_adc)
    state = ChipState(g_prog=g_prog, nu=nu, rtn=rtn, pulses=pulses, w_int=w_int, scale=scale,
                      ref_w_int=ref_w_int, adc_offsets=offsets, seed=int(seed), config=cfg.to_dict(),
                      device={"preset": device.preset, "params": dict(device.params)})
    return AnalogTile(cfg, state)


def _program(cfg, device, g_target, rng, program_verify):
    noise = cfg.analog.programming_noise == "on"
    if not program_verify:
        pulses = np.where(g_target > device.g_min, 1, 0).astype(np.int64)
        return device.program(g_target, rng, noise=noise), pulses
    from neurophase.models.pulse import program_verify as run_pv

    result = run_pv(device, g_target, rng, tolerance_us=cfg.analog.pv_tolerance_us,
                    max_iterations=cfg.analog.pv_max_iterations)
    return result.g, result.pulses


def reference_weights(cfg: ChipConfig, mapping: WeightMapping) -> np.ndarray:
    """Fixed integer weights of the reference columns (seed :data:`REFERENCE_WEIGHT_SEED`):
    Gaussian with sigma w_max / 3, clipped, like typical trained weights scaled per column, so
    that their conductances (and hence drift exponents) are distributed like the data's."""
    rng = np.random.default_rng(REFERENCE_WEIGHT_SEED)
    shape = (cfg.tile.rows, cfg.analog.reference_columns)
    values = np.rint(rng.normal(scale=mapping.w_max / 3, size=shape))
    return np.clip(values, -mapping.w_max, mapping.w_max).astype(np.int64)
