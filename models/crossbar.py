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

ADC noise (``analog.adc_noise_lsb``) is independent and Gaussian too, so in the output-referred
path it joins the read-noise draw: std = sqrt(read variance + adc_noise_lsb**2). A plane vector
that drives no row reads exactly the column offset plus ADC noise (no matmul, no read-noise draw).

Block reads
    :meth:`AnalogTile.block_codes` reads data columns ``cols`` with only rows ``rows`` driven (a
    block of a larger weight matrix): equal in distribution to :meth:`AnalogTile.adc_codes` of
    zero-padded inputs, code for code without read and ADC noise (noise-free column sums are
    formed in float64, so the order of summation does not matter).

Random draws come only from the generator the caller passes; the same seed gives the same
codes bit for bit.
"""

from __future__ import annotations

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.chip_state import ChipState
from neurophase.models.devices import DeviceModel, check_finite, check_real, check_time, device_model_from_config
from neurophase.models.mapping import (
    WeightMapping, digits_to_conductances, expand_devices, quantise_weights, split_slices, sum_devices,
)
from neurophase.models.shift_add import ShiftAddParams, shift_add

__all__ = [
    "AnalogTile", "build_tile", "program_tile", "input_planes", "input_range", "conversion_order", "digital_result",
    "ideal_codes", "exact_adc_full_scale", "exact_config", "required_adc_bits", "REFERENCE_WEIGHT_SEED",
    "Reprogramming",
]

#: Seed of the fixed reference-column weights (the same on every chip instance).
REFERENCE_WEIGHT_SEED = 0x5EF

#: Plane vectors driven and converted per step of a read: keeps the elementwise work in cache.
_CHUNK_VECTORS = 512


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


def check_inputs(cfg: ChipConfig, inputs, rows: int | None = None, what: str = "inputs") -> np.ndarray:
    """``inputs`` as int64 of shape (batch, rows) after shape, type and range checks.

    ``rows`` defaults to ``cfg.tile.rows``; ``what`` names the argument in error messages.
    """
    rows = cfg.tile.rows if rows is None else rows
    x = check_real(what, inputs)
    if x.ndim not in (1, 2) or x.shape[-1] != rows:
        raise ValueError(f"{what} must have shape (batch, {rows}) or ({rows},), not {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)) or np.any(x != np.rint(x)):
            raise ValueError(f"{what} must be integers, not {x.dtype} values")
    lo, hi = input_range(cfg)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(
            f"{what} must lie in [{lo}, {hi}] for {cfg.input.bits}-bit {cfg.input.encoding} inputs; "
            f"found {int(x.min())} .. {int(x.max())}")
    return np.atleast_2d(x.astype(np.int64))


def input_planes(cfg: ChipConfig, inputs) -> np.ndarray:
    """Row drives, shape (planes, batch, rows), float32.

    Bit-serial: plane b is bit b of (x mod 2**B). Pulse-width: one plane, the signed value.
    """
    return drive_planes(cfg, check_inputs(cfg, inputs))


def drive_planes(cfg: ChipConfig, x: np.ndarray) -> np.ndarray:
    """:func:`input_planes` of already checked int64 inputs ``x`` (batch, rows), any row count."""
    if cfg.input.mode == "pulse-width":
        return x[None].astype(np.float32)
    bits = cfg.input.bits
    u = np.mod(x, 2**bits).astype(np.uint8 if bits <= 8 else np.uint16)
    planes = np.empty((bits,) + x.shape, dtype=np.float32)
    bit = np.empty_like(u)
    for b in range(bits):
        np.right_shift(u, b, out=bit)
        np.bitwise_and(bit, 1, out=bit)
        planes[b] = bit
    return planes


def driven_planes(cfg: ChipConfig, source: np.ndarray) -> np.ndarray:
    """Which plane vectors drive any row, bool (planes, batch), from ``source``: the inputs
    (pulse-width) or the inputs mod 2**bits as unsigned integers (bit-serial)."""
    if cfg.input.mode == "pulse-width":
        return np.any(source != 0, axis=1)[None]
    any_bit = np.bitwise_or.reduce(source, axis=1).astype(np.int64)
    return ((any_bit[None] >> np.arange(cfg.input.bits)[:, None]) & 1).astype(bool)


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
    A batch is accumulated for all vectors at once, in the unit's (slice, plane) order and
    saturating after every addition: the same numbers as :func:`shift_add` per vector.

    Raises
    ------
    ValueError
        For codes of the wrong shape, type or outside the signed ADC range.
    """
    params = ShiftAddParams.from_config(cfg)
    codes = np.asarray(codes)
    if codes.ndim == 3:
        return shift_add(params, codes)[0]
    expected = (params.slices, params.planes, params.columns)
    if codes.ndim != 4 or codes.shape[1:] != expected:
        raise ValueError(f"codes must have shape (batch, {expected[0]}, {expected[1]}, {expected[2]}) "
                         f"(batch, slices, planes, columns) or {expected}, not {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, not {codes.dtype}")
    lo, hi = params.code_range
    bad = (codes < lo) | (codes > hi)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"ADC code {int(codes[where])} at (vector, slice, plane, column) {where} is outside "
                         f"the signed {params.adc_bits}-bit range [{lo}, {hi}]")
    out_lo, out_hi = params.out_range
    steps = [(s, b) for s in range(params.slices) for b in range(params.planes)]
    # Saturation is impossible when the largest |partial sum| fits the accumulator: skip the clips.
    may_saturate = sum(abs(params.weight(s, b)) for s, b in steps) * -lo > out_hi
    acc = np.zeros((codes.shape[0], params.columns), dtype=np.int64)
    term = np.empty_like(acc)
    for s, b in steps:
        np.multiply(codes[:, s, b], params.weight(s, b), out=term, dtype=np.int64)
        acc += term
        if may_saturate:
            np.clip(acc, out_lo, out_hi, out=acc)
    return acc


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
        self._blocks = {}
        self._programming = 0  # bumped whenever devices are reprogrammed or the state is replaced

    def restore(self, state: ChipState) -> None:
        """Replace the device state (e.g. by a copy taken before reprogramming); drops cached reads."""
        AnalogTile.__init__(self, self.cfg, state)

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
        elapsed = self.elapsed(t_s)
        if self.cfg.analog.drift == "off":
            return self.device.read_disturbed(self.state.g_prog, self._disturb_reads())
        return self.device.read_disturbed(self.device.drift(self.state.g_prog, self.state.nu, elapsed),
                                          self._disturb_reads())

    def elapsed(self, t_s: float) -> float | np.ndarray:
        """Time since each device was programmed at chip time ``t_s``: ``t_s`` itself while no
        device was reprogrammed, else per device ``t_s - state.t_programmed`` (float64 array).

        Raises
        ------
        ValueError
            For a bad time, or a time before the last reprogramming of some device.
        """
        t_s = check_time(t_s)
        last = float(self.state.t_programmed.max(initial=0.0))
        if last == 0.0:
            return t_s
        if t_s < last:
            raise ValueError(f"time since programming t_s must not precede the last reprogramming of this tile "
                             f"({last:g} s), not {t_s!r}")
        return t_s - self.state.t_programmed

    def _disturb_reads(self) -> int:
        return self.state.reads if self.device.read_disturb_per_read else 0

    def read_matrices(self, t_s: float) -> np.ndarray:
        """Per slice, [mean(G+ - G-) | var(G+) + var(G-)] in LSB units: float32 (S, R, 2 (C+ref)),
        G+ and G- summed over the P devices of each side.

        Cached per (time, read count that matters); computed once per read time, not per vector.
        """
        t_s = check_time(t_s)
        key = (t_s, self._disturb_reads(), self._programming)
        if key != self._cache_key:
            g_prog = self.state.g_prog
            nu = self.state.nu if self.cfg.analog.drift == "on" else np.zeros_like(self.state.nu)
            mean, var = self.device.read_moments(g_prog, nu, self.elapsed(t_s), self.state.rtn, self._disturb_reads())
            mean, var = sum_devices(mean), sum_devices(var)
            if self.cfg.analog.read_noise != "output-referred":
                var = np.zeros_like(var)
            lsb = self.column_lsb_us
            self._matrices = np.concatenate(
                [(mean[0] - mean[1]) / lsb, (var[0] + var[1]) / lsb**2], axis=-1).astype(np.float32)
            self._blocks = {}
            self._cache_key = key
        return self._matrices

    def _block_matrices(self, t_s: float, rows: slice, cols: slice) -> tuple:
        """The read matrices of rows ``rows`` and columns ``cols`` (of data + reference columns),
        cached with :meth:`read_matrices`: ``(mean, var)``, per slice (S, rows, cols) each.

        Read noise off: ``mean`` float64 (sums of the same float32 terms then agree for every
        block) and ``var`` None. Bit-serial: ``mean`` is the float32 stack [mean | var] of shape
        (S, rows, 2 cols) (one matmul gives both; 0/1 drives square to themselves) and ``var``
        None. Pulse-width: two float32 arrays.
        """
        matrices = self.read_matrices(t_s)
        key = (rows.start, rows.stop, cols.start, cols.stop)
        if key not in self._blocks:
            total = self.columns
            mean, var = matrices[:, rows, cols], matrices[:, rows, total + cols.start: total + cols.stop]
            if self.cfg.analog.read_noise == "off":
                block = (mean.astype(np.float64), None)
            elif self.cfg.input.mode == "pulse-width":
                block = (np.ascontiguousarray(mean), np.ascontiguousarray(var))
            elif rows.stop - rows.start == matrices.shape[1] and cols.stop - cols.start == total:
                block = (matrices, None)
            else:
                block = (np.concatenate([mean, var], axis=-1), None)
            self._blocks[key] = block
        return self._blocks[key]

    # -- MVM ------------------------------------------------------------------------
    def analog_outputs(self, inputs, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Column signals in LSB before rounding (offsets and ADC noise included),
        float32 of shape (slices, planes, batch, C + ref)."""
        t_s = check_time(t_s)
        x = check_inputs(self.cfg, inputs)
        if self.cfg.analog.read_noise == "per-device":
            out = self._per_device_outputs(drive_planes(self.cfg, x), t_s, rng)
            out += self.column_offsets()
            self._add_adc_noise(out, rng)
        else:
            out = self._signals(x, t_s, rng, slice(0, self.cfg.tile.rows), slice(0, self.columns))
        self._count_reads(len(x), t_s)
        return out

    def _count_reads(self, batch: int, t_s: float) -> None:
        self.state.reads += self.cfg.input.planes * batch * self.cfg.weights.slices
        self.state.time_s = t_s

    def _add_adc_noise(self, out: np.ndarray, rng: np.random.Generator) -> None:
        if self.cfg.analog.adc_noise_lsb:
            out += np.float32(self.cfg.analog.adc_noise_lsb) * rng.standard_normal(out.shape, dtype=np.float32)

    def _signals(self, x: np.ndarray, t_s: float, rng: np.random.Generator, rows: slice, cols: slice) -> np.ndarray:
        """Output-referred (or noise-free) signals of columns ``cols`` when rows ``rows`` are
        driven by the checked inputs ``x`` (batch, rows in block), offsets and ADC noise
        included: float32 (slices, planes, batch, cols in block).

        A plane vector with no drive reads exactly the column offset (plus ADC noise), so only
        driven plane vectors are multiplied and get read noise. Drives are built and read
        :data:`_CHUNK_VECTORS` vectors at a time so that the elementwise work stays in cache.
        """
        cfg = self.cfg
        pulse = cfg.input.mode == "pulse-width"
        source = x if pulse else np.mod(x, 2**cfg.input.bits).astype(np.uint8 if cfg.input.bits <= 8 else np.uint16)
        driven = driven_planes(cfg, source)
        mean, var = self._block_matrices(t_s, rows, cols)
        offsets = self.column_offsets()[cols]
        n_slices, (n_planes, batch), ncols = mean.shape[0], driven.shape, cols.stop - cols.start
        out = np.empty((n_slices, n_planes, batch, ncols), dtype=np.float32)
        for plane in range(n_planes):
            vectors = np.flatnonzero(driven[plane])
            every = len(vectors) == batch
            if not every:
                out[:, plane] = offsets
            for start in range(0, len(vectors), _CHUNK_VECTORS):
                part = slice(start, start + _CHUNK_VECTORS) if every else vectors[start:start + _CHUNK_VECTORS]
                drive = (source[part] if pulse else (source[part] >> plane) & 1).astype(np.float32)
                target = out[:, plane, part] if every else np.empty((n_slices, len(part), ncols), dtype=np.float32)
                for s in range(n_slices):
                    self._slice_signal(drive, mean[s], None if var is None else var[s], offsets, rng, target[s])
                if not every:
                    out[:, plane, part] = target
        if cfg.analog.read_noise == "off":
            self._add_adc_noise(out, rng)
        elif cfg.analog.adc_noise_lsb and not driven.all():
            undriven = ~driven
            out[:, undriven] += np.float32(cfg.analog.adc_noise_lsb) * rng.standard_normal(
                (n_slices, int(undriven.sum()), ncols), dtype=np.float32)
        return out

    def _slice_signal(self, drive: np.ndarray, mean: np.ndarray, var: np.ndarray | None, offsets: np.ndarray,
                      rng: np.random.Generator, out: np.ndarray) -> None:
        """One slice: ``out`` = offsets + mean + sqrt(read variance + ADC noise variance) * N(0, 1)."""
        ncols = len(offsets)
        if self.cfg.analog.read_noise == "off":
            signal = drive.astype(np.float64) @ mean
            signal += offsets
            out[...] = signal
            return
        if var is None:
            both = drive @ mean
            signal, std = both[:, :ncols], both[:, ncols:]
        else:
            signal, std = drive @ mean, np.square(drive) @ var
        if self.cfg.analog.adc_noise_lsb:  # variances are sums of non-negative terms: no clip at 0 needed
            std += np.float32(self.cfg.analog.adc_noise_lsb) ** 2
        np.sqrt(std, out=std)
        std *= rng.standard_normal(std.shape, dtype=np.float32)
        signal += offsets
        np.add(signal, std, out=out)

    def _per_device_outputs(self, planes: np.ndarray, t_s: float, rng: np.random.Generator) -> np.ndarray:
        n_planes, batch, _rows = planes.shape
        state, lsb = self.state, self.column_lsb_us
        nu = state.nu if self.cfg.analog.drift == "on" else np.zeros_like(state.nu)
        elapsed = self.elapsed(t_s)
        out = np.empty((state.g_prog.shape[1], n_planes, batch, self.columns), dtype=np.float32)
        for p in range(n_planes):
            for b in range(batch):
                g = sum_devices(self.device.read(state.g_prog, nu, elapsed, rng, state.rtn, self._disturb_reads()))
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

    def block_codes(self, inputs, t_s: float, rng: np.random.Generator, rows: slice, cols: slice) -> np.ndarray:
        """ADC codes of data columns ``cols`` when only rows ``rows`` are driven (by ``inputs``)
        and every other row is at zero drive: one block of a larger weight matrix.

        Equal in distribution to ``adc_codes`` of the inputs zero-padded to all rows, sliced to
        ``cols`` (the same column offsets apply), and equal to it code for code when read noise
        and ADC noise are off. Faster: the block's read matrices are cached per read time, plane
        vectors without drive skip the matmul and the read-noise draw, and only the block's
        rows and columns are multiplied. Counts reads in ``state.reads`` like :meth:`adc_codes`.

        Parameters
        ----------
        inputs : int array, shape (batch, rows in block) or (rows in block,)
            Input vectors of the driven rows, in the range of ``cfg.input``.
        t_s : float
            Time since programming, seconds (>= 0).
        rng : numpy.random.Generator
            Source of every random draw of this read.
        rows : slice
            Driven rows, ``slice(start, stop)`` with 0 <= start < stop <= tile.rows, step 1.
        cols : slice
            Data columns read, ``slice(start, stop)`` with 0 <= start < stop <= tile.cols, step 1.

        Returns
        -------
        int16 array, shape (batch, slices, planes, cols in block), or (slices, planes, cols in
        block) for one vector.

        Raises
        ------
        ValueError
            For a bad ``rows``/``cols`` slice or inputs of the wrong shape, type or range.
        """
        cfg = self.cfg
        rows = _check_block_slice("rows", rows, cfg.tile.rows, "tile.rows")
        cols = _check_block_slice("cols", cols, cfg.tile.cols, "tile.cols")
        t_s = check_time(t_s)
        x = check_inputs(cfg, inputs, rows.stop - rows.start, what=f"block inputs for rows {rows.start}:{rows.stop}")
        if cfg.analog.read_noise == "per-device":
            padded = np.zeros((x.shape[0], cfg.tile.rows), dtype=np.int64)
            padded[:, rows] = x
            codes = self.adc_codes(padded, t_s, rng)[..., cols]
        else:
            codes = self.quantise(self._signals(x, t_s, rng, rows, cols)).transpose(2, 0, 1, 3)
            self._count_reads(len(x), t_s)
        return codes[0] if np.ndim(inputs) == 1 else np.ascontiguousarray(codes)

    def reference_codes(self, inputs, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """ADC codes of the reference columns, (batch, slices, planes, reference_columns)."""
        return self.all_codes(inputs, t_s, rng)[..., self.cfg.tile.cols:]

    def weights(self) -> np.ndarray:
        """The quantised weights W_int * scale the tile was programmed with."""
        return self.state.w_int * self.state.scale

    # -- reprogramming -----------------------------------------------------------------
    def device_mask(self, weights: np.ndarray) -> np.ndarray:
        """Every device of the selected weights: bool of the state's shape, True on both sides,
        every slice and every device per polarity of each weight selected in ``weights``
        (bool, shape (tile.rows, tile.cols))."""
        cfg = self.cfg
        weights = np.asarray(weights)
        if weights.shape != (cfg.tile.rows, cfg.tile.cols) or weights.dtype != bool:
            raise ValueError(f"selected weights must be a bool array of shape (tile.rows, tile.cols) = "
                             f"{(cfg.tile.rows, cfg.tile.cols)}, not {weights.dtype} of shape {weights.shape}")
        data = np.zeros((cfg.tile.rows, self.columns), dtype=bool)
        data[:, :cfg.tile.cols] = weights
        data = np.broadcast_to(data[None, None], (2, cfg.weights.slices) + data.shape)
        if self.state.g_prog.ndim == 5:
            data = np.broadcast_to(data[..., None], self.state.g_prog.shape)
        return np.array(data)

    def reprogram(self, weights: np.ndarray, t_s: float, rng: np.random.Generator,
                  target_scale: np.ndarray | None = None) -> "Reprogramming":
        """Re-program every device of the selected weights at chip time ``t_s``.

        Each selected device above ``g_min`` first gets one full-amplitude RESET (melt-quench:
        a new amorphous plug), then program-verify (:func:`neurophase.models.pulse.program_verify`,
        ``analog.pv_tolerance_us`` and ``analog.pv_max_iterations``, endurance counted in
        ``state.pulses``) from ``g_min`` to its target. The new plug gets a fresh drift exponent
        and its drift and 1/f read-noise clocks restart: ``state.t_programmed`` = ``t_s``. A
        device already at ``endurance_cycles`` pulses responds to nothing and keeps its state.

        Parameters
        ----------
        weights : bool array (tile.rows, tile.cols)
            The data weights to re-program.
        t_s : float
            Chip time of the reprogramming, seconds (not before an earlier reprogramming).
        rng : numpy.random.Generator
            Pulse, verify-read and drift-exponent draws.
        target_scale : float array (tile.cols,), optional
            Factor on each data column's targets (default 1). Firmware passes the column's
            present drift level (1 / GDC gain) so that the new devices match the drifted
            devices they sit among and one drift gain serves the whole column.

        Returns
        -------
        Reprogramming
        """
        cfg, state = self.cfg, self.state
        t_s = check_time(t_s)
        self.elapsed(t_s)  # refuses a time before an earlier reprogramming
        mask = self.device_mask(weights)
        scale = np.ones(cfg.tile.cols) if target_scale is None else check_finite("target_scale", target_scale)
        if scale.shape != (cfg.tile.cols,) or np.any(scale <= 0):
            raise ValueError(f"target_scale must hold {cfg.tile.cols} positive factors (one per data column), "
                             f"not shape {scale.shape} with minimum {scale.min(initial=np.inf)!r}")
        column_scale = np.concatenate([scale, np.ones(cfg.analog.reference_columns)])
        column_scale = column_scale[:, None] if state.g_prog.ndim == 5 else column_scale
        target = (target_conductances(cfg, self.mapping, state.w_int, state.ref_w_int) * column_scale)[mask]
        from neurophase.models.pulse import program_verify

        g_now, spent = state.g_prog[mask], state.pulses[mask]
        alive = spent < self.device.endurance_cycles  # a worn-out device responds to no pulse
        melted = alive & (g_now > self.device.g_min)
        used = spent + melted
        result = program_verify(self.device, target, rng, tolerance_us=cfg.analog.pv_tolerance_us,
                                max_iterations=cfg.analog.pv_max_iterations,
                                g_start_us=np.where(melted, self.device.g_min, g_now), used_pulses=used)
        nu = self.device.draw_drift_exponents(target, rng)
        state.g_prog[mask] = result.g
        state.nu[mask] = np.where(alive, nu, state.nu[mask])
        state.pulses[mask] = used + result.pulses
        state.t_programmed[mask] = np.where(alive, t_s, state.t_programmed[mask])
        self._programming += 1
        self._cache_key = None
        return Reprogramming(int(mask.sum()), int(melted.sum()), int(result.pulses.sum()),
                             int(result.iterations.sum()), int(result.converged.sum()))


class Reprogramming:
    """Cost of one reprogramming: devices, pulses and program-verify iterations.

    Parameters
    ----------
    devices : int
        Devices re-programmed.
    resets : int
        Full RESET pulses (devices that were above ``g_min``).
    pv_pulses : int
        SET and partial-RESET pulses of program-verify.
    iterations : int
        Program-verify iterations (verify reads that found a device outside tolerance).
    converged : int
        Devices within tolerance at the last verify read.
    """

    def __init__(self, devices: int = 0, resets: int = 0, pv_pulses: int = 0, iterations: int = 0,
                 converged: int = 0):
        self.devices, self.resets, self.pv_pulses = devices, resets, pv_pulses
        self.iterations, self.converged = iterations, converged

    @property
    def pulses(self) -> int:
        """Every pulse spent: the RESETs plus the program-verify pulses."""
        return self.resets + self.pv_pulses

    def __add__(self, other: "Reprogramming") -> "Reprogramming":
        return Reprogramming(self.devices + other.devices, self.resets + other.resets,
                             self.pv_pulses + other.pv_pulses, self.iterations + other.iterations,
                             self.converged + other.converged)

    def as_dict(self) -> dict:
        """The figures, with means per device (0 when no device was re-programmed)."""
        per = 1 / self.devices if self.devices else 0.0
        return {"devices": self.devices, "pulses": self.pulses, "resets": self.resets,
                "pv_pulses": self.pv_pulses, "pulses_per_device": self.pulses * per,
                "iterations": self.iterations, "iterations_per_device": self.iterations * per,
                "converged": self.converged, "converged_fraction": self.converged * per if self.devices else 1.0}


def _check_block_slice(name: str, value, size: int, limit: str) -> slice:
    """``value`` as ``slice(start, stop)`` after checking 0 <= start < stop <= size, step 1."""
    if not isinstance(value, slice):
        raise ValueError(f"block {name} must be a slice(start, stop), not {value!r}")
    start = 0 if value.start is None else value.start
    stop = size if value.stop is None else value.stop
    for bound in (start, stop):
        if isinstance(bound, bool) or not isinstance(bound, (int, np.integer)):
            raise ValueError(f"block {name} bounds must be integers, not {value!r}")
    if value.step not in (None, 1):
        raise ValueError(f"block {name} must have step 1, not {value!r}")
    if not 0 <= start < stop <= size:
        raise ValueError(f"block {name} must satisfy 0 <= start < stop <= {limit} ({size}), not {value!r}")
    return slice(int(start), int(stop))


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
    w_int, scale = quantise_weights(mapping, w)
    return program_tile(cfg, w_int, scale, seed, program_verify)


def program_tile(cfg: ChipConfig, w_int: np.ndarray, scale: np.ndarray, seed: int,
                 program_verify: bool = False) -> AnalogTile:
    """Program a fresh tile instance with integer weights already quantised by the caller.

    Parameters
    ----------
    cfg : ChipConfig
    w_int : int array, shape (tile.rows, tile.cols)
        Integer weights in [-w_max, w_max] (``analog.weight_bits``).
    scale : float array, shape (tile.cols,)
        The real value of one integer weight step per column (kept in the state for
        :meth:`AnalogTile.weights`).
    seed, program_verify :
        As for :func:`build_tile`.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, not {seed!r}")
    device = device_model_from_config(cfg)
    mapping = WeightMapping.from_config(cfg, device)
    w_int = np.asarray(w_int)
    if w_int.shape != (cfg.tile.rows, cfg.tile.cols) or not np.issubdtype(w_int.dtype, np.integer):
        raise ValueError(f"integer weights must be integers of shape (tile.rows, tile.cols) = "
                         f"{(cfg.tile.rows, cfg.tile.cols)}, not {w_int.dtype} of shape {w_int.shape}")
    scale = np.asarray(scale, dtype=np.float64)
    if scale.shape != (cfg.tile.cols,) or not np.all(np.isfinite(scale)):
        raise ValueError(f"weight scales must be {cfg.tile.cols} finite numbers, not shape {scale.shape}")
    rng = np.random.default_rng(seed)
    ref_w_int = reference_weights(cfg, mapping)
    g_target = target_conductances(cfg, mapping, w_int, ref_w_int)
    g_prog, pulses = _program(cfg, device, g_target, rng, program_verify)
    nu = device.draw_drift_exponents(g_target, rng)
    rtn = device.rtn_mask(g_target.shape, rng)
    n_adc = cfg.tile.cols // cfg.adc.columns_per_adc
    offsets = cfg.analog.adc_offset_sigma_lsb * rng.standard_normal(n_adc)
    state = ChipState(g_prog=g_prog, nu=nu, rtn=rtn, pulses=pulses, w_int=w_int, scale=scale,
                      ref_w_int=ref_w_int, adc_offsets=offsets, seed=int(seed), config=cfg.to_dict(),
                      device={"preset": device.preset, "params": dict(device.params)})
    return AnalogTile(cfg, state)


def target_conductances(cfg: ChipConfig, mapping: WeightMapping, w_int: np.ndarray,
                        ref_w_int: np.ndarray) -> np.ndarray:
    """Target conductances of every device of a tile (data then reference columns), µS:
    shape (2, S, R, C + ref), with a trailing axis of the P devices per polarity when P > 1."""
    g_data = digits_to_conductances(mapping, split_slices(mapping, w_int))
    g_target = np.concatenate([g_data, digits_to_conductances(mapping, split_slices(mapping, ref_w_int))], axis=-1)
    return expand_devices(g_target, cfg.weights.devices_per_polarity)


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
