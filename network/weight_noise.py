"""Effective weights of a layer on the chip at a time since programming, drawn with the device model.

The single source of the noise that hardware-aware training injects
(:mod:`neurophase.network.hwa`): a float weight matrix goes the way the chip mapping takes it,

1. integer weights: ``analog.weight_bits``-bit, one scale per output or per layer
   (:func:`neurophase.network.mapping.quantise_matrix`, exactly what the network mapping uses);
2. slice digits and differential conductances with ``weights.devices_per_polarity`` devices
   per side (:mod:`neurophase.models.mapping`);
3. :meth:`DeviceModel.program` (programming noise), :meth:`DeviceModel.draw_drift_exponents`,
   the RTN mask, then one read at time t: drift, 1/f read noise and RTN drawn per device as
   the tile's default output-referred read does (Gaussian with
   :meth:`DeviceModel.read_moments`' mean and variance, no clip at 0), or
   :meth:`DeviceModel.read` itself with ``analog.read_noise = "per-device"`` — each switched
   off where ``analog.programming_noise``, ``analog.drift`` or ``analog.read_noise`` is ``"off"``;
4. back to weights: per slice ``(sum G+ - sum G-) / (P g_unit)``, slices recombined with
   their significance ``F**s`` (not rounded: the analog value the column sums);
5. a global drift compensation as the GDC firmware computes it: per block of ``tile.rows``
   matrix rows (one tile's share of the layer), ``alpha = r(0) / r(t)`` with ``r = mean |y|``
   and ``y`` the shift-and-add result of the ADC codes of the fixed calibration input set
   (:func:`neurophase.models.gdc.calibration_inputs`; bit-planes or pulse widths, every code
   rounded and clipped to the ADC range as the chip's are), from a read right after
   programming (t = 0, with its read noise, as the firmware measures ``r0``) and the read at t; per column
   (``analog.gdc = "per-column"``) or one value for the tile (``"per-tile"``, and for
   ``gdc_source = "reference-columns"``, whose alpha is tile-wide as well). Each block of at
   most ``tile.rows`` x ``tile.cols`` is measured as if alone on its tile: the tile's other
   cells hold zero weights, programmed and drifting like every device (the calibration
   inputs drive every row, so with per-tile GDC those cells weigh in as on the chip; the
   unused columns through a sample of :data:`EMPTY_COLUMN_SAMPLE`);
6. the effective float weights ``alpha * w(t) * scale``.

Left out: ADC offsets, ADC noise and the ADC rounding of the inference reads (periphery,
not weights; the GDC measurement above does round). The read noise is
one draw per device for the whole matrix, where the chip draws it fresh at every read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.crossbar import drive_max, drive_planes
from neurophase.models.devices import DeviceModel, check_time, device_model_from_config
from neurophase.models.gdc import calibration_inputs
from neurophase.models.mapping import (WeightMapping, digits_to_conductances, expand_devices, split_slices,
                                       sum_devices)
from neurophase.models.shift_add import ShiftAddParams
from neurophase.network.mapping import quantise_matrix

__all__ = ["ProgrammedMatrix", "ChipWeightNoise", "conv_matrix", "EMPTY_COLUMN_SAMPLE"]

#: Zero-weight columns drawn to stand for a tile's unused columns in a per-tile GDC measurement.
EMPTY_COLUMN_SAMPLE = 32


@dataclass
class ProgrammedMatrix:
    """One weight matrix programmed on devices.

    Parameters
    ----------
    w_int : int64 array (K, N)
        Integer weights.
    scale : float array (N,)
        Real value of one integer step per output.
    g_prog : float array (2, S, K, N[, P])
        Programmed conductances, µS.
    nu : float array, same shape
        Drift exponents (zeros with drift off).
    rtn : bool array, same shape
        Devices with random telegraph noise.
    """

    w_int: np.ndarray
    scale: np.ndarray
    g_prog: np.ndarray
    nu: np.ndarray
    rtn: np.ndarray


class ChipWeightNoise:
    """Draws the effective weights of a matrix on the chip of ``cfg``.

    Parameters
    ----------
    cfg : ChipConfig
        Device preset and overrides, weight bits, slices, devices per polarity, noise switches,
        GDC granularity and calibration set, tile rows.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.device: DeviceModel = device_model_from_config(cfg)
        self.mapping = WeightMapping.from_config(cfg, self.device)
        x = calibration_inputs(cfg)
        self.planes = drive_planes(cfg, x)  # float32 (planes, vectors, tile.rows)
        params = ShiftAddParams.from_config(cfg)
        self.plane_weights = np.array([[params.weight(s, b) for b in range(params.planes)]
                                       for s in range(params.slices)], dtype=np.float64)
        lsb_us = (cfg.analog.adc_full_scale * cfg.tile.rows * self.device.g_max * drive_max(cfg)
                  / 2 ** (cfg.adc.bits - 1))
        self.codes_per_digit = self.mapping.g_unit / lsb_us
        self.adc_half = 2 ** (cfg.adc.bits - 1)

    @property
    def _factors(self) -> np.ndarray:
        return np.array([self.mapping.factor ** s for s in range(self.mapping.slices)], dtype=np.float64)

    def slice_digits(self, conductances: np.ndarray) -> np.ndarray:
        """Analog digits per slice (S, K, N) of conductances (2, S, K, N[, P]), in units of ``g_unit``."""
        g = sum_devices(conductances)
        return (g[0] - g[1]) / (self.cfg.weights.devices_per_polarity * self.mapping.g_unit)

    def program(self, matrix: np.ndarray, rng: np.random.Generator) -> ProgrammedMatrix:
        """Quantise ``matrix`` (K, N) and program its devices (programming noise, drift exponents, RTN)."""
        w_int, scale = quantise_matrix(self.cfg, np.asarray(matrix, dtype=np.float64))
        return self.program_integers(w_int, scale, rng)

    def program_integers(self, w_int: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> ProgrammedMatrix:
        """Program integer weights (K, N) with their scales (N,)."""
        cfg, device = self.cfg, self.device
        target = expand_devices(digits_to_conductances(self.mapping, split_slices(self.mapping, w_int)),
                                cfg.weights.devices_per_polarity)
        g_prog = device.program(target, rng, noise=cfg.analog.programming_noise == "on")
        nu = device.draw_drift_exponents(target, rng)
        if cfg.analog.drift == "off":
            nu = np.zeros_like(nu)
        return ProgrammedMatrix(w_int, scale, g_prog, nu, device.rtn_mask(target.shape, rng))

    def integer_weights(self, conductances: np.ndarray) -> np.ndarray:
        """Analog integer-unit weights (K, N) of conductances (2, S, K, N[, P]), slices recombined."""
        return np.tensordot(self._factors, self.slice_digits(conductances), axes=1)

    def read_conductances(self, programmed: ProgrammedMatrix, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Conductances (2, S, K, N[, P]) read at ``t_s``: drift, one draw of read noise and RTN."""
        mode = self.cfg.analog.read_noise
        if mode == "off":
            return self.device.drift(programmed.g_prog, programmed.nu, t_s)
        if mode == "per-device":
            return self.device.read(programmed.g_prog, programmed.nu, t_s, rng, programmed.rtn)
        mean, var = self.device.read_moments(programmed.g_prog, programmed.nu, t_s, programmed.rtn)
        return mean + np.sqrt(var) * rng.standard_normal(mean.shape)

    def read(self, programmed: ProgrammedMatrix, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Integer-unit weights (K, N) read at ``t_s``: drift, one draw of read noise and RTN."""
        return self.integer_weights(self.read_conductances(programmed, t_s, rng))

    def gdc_results(self, digits: np.ndarray) -> np.ndarray:
        """Shift-and-add results (vectors, N) of the calibration set on digits (S, rows, N) of one
        block: per slice and plane, ADC codes rounded (half to even) and clipped as the chip's."""
        n_planes, vectors, _ = self.planes.shape
        planes = np.ascontiguousarray(self.planes[:, :, :digits.shape[1]]).reshape(n_planes * vectors, -1)
        y = np.zeros((vectors, digits.shape[2]))
        for s, slice_digits in enumerate(digits):
            signal = planes @ (slice_digits * self.codes_per_digit).astype(np.float32)
            codes = np.clip(np.rint(signal), -self.adc_half, self.adc_half - 1)
            y += np.tensordot(self.plane_weights[s], codes.reshape(n_planes, vectors, -1), axes=1)
        return y

    def empty_cells(self, rows: int, cols: int, t_s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Slice digits (S, rows, cols) of zero-weight cells read at 0 and at ``t_s``."""
        programmed = self.program_integers(np.zeros((rows, cols), dtype=np.int64), np.ones(cols), rng)
        return (self.slice_digits(self.read_conductances(programmed, 0.0, rng)),
                self.slice_digits(self.read_conductances(programmed, t_s, rng)))

    def gdc_alpha(self, before: np.ndarray, after: np.ndarray, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Per weight (K, N) the GDC gain ``r(0) / r(t)`` of its block of at most ``tile.rows`` x
        ``tile.cols``, from the slice digits (S, K, N) read at t = 0 (``before``) and at
        ``t_s`` (``after``), each block alone on a tile of otherwise zero weights.

        The tile's rows below the block are drawn in full; with per-tile GDC the columns right
        of the block enter through :data:`EMPTY_COLUMN_SAMPLE` drawn zero-weight columns whose
        mean ``|y|`` stands for all of them.
        """
        cfg = self.cfg
        per_column = cfg.analog.gdc == "per-column" and cfg.analog.gdc_source == "calibration-input"
        alpha = np.ones(before.shape[1:])
        for r in range(0, before.shape[1], cfg.tile.rows):
            for c in range(0, before.shape[2], cfg.tile.cols):
                block = (slice(None), slice(r, r + cfg.tile.rows), slice(c, c + cfg.tile.cols))
                rows, cols = before[block].shape[1:]
                empty = 0 if per_column else min(EMPTY_COLUMN_SAMPLE, cfg.tile.cols - cols)
                tile0, tile_t = self.empty_cells(cfg.tile.rows, cols + empty, t_s, rng)
                tile0[:, :rows, :cols], tile_t[:, :rows, :cols] = before[block], after[block]
                r0, rt = np.abs(self.gdc_results(tile0)).mean(axis=0), np.abs(self.gdc_results(tile_t)).mean(axis=0)
                if not per_column:
                    weights = np.r_[np.ones(cols), np.full(empty, (cfg.tile.cols - cols) / max(empty, 1))]
                    r0, rt = r0 @ weights, rt @ weights
                alpha[block[1:]] = np.where(rt > 0, r0 / np.where(rt > 0, rt, 1.0), 1.0)
        return alpha

    def noisy_matrix(self, matrix: np.ndarray, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Effective float weights (K, N) of ``matrix`` on a freshly programmed chip read at ``t_s``, after GDC.

        Parameters
        ----------
        matrix : float array (K, N)
            Weights as the crossbar holds them (im2col rows, one column per output).
        t_s : float
            Time since programming, s (>= 0).
        rng : numpy.random.Generator
            Every draw (programming, drift exponents, RTN, read).
        """
        t_s = check_time(t_s)
        programmed = self.program(matrix, rng)
        before = self.slice_digits(self.read_conductances(programmed, 0.0, rng))
        after = self.slice_digits(self.read_conductances(programmed, t_s, rng))
        weights = np.tensordot(self._factors, after, axes=1)
        return self.gdc_alpha(before, after, t_s, rng) * weights * programmed.scale


def conv_matrix(weight: np.ndarray) -> np.ndarray:
    """A convolution weight (O, C, kh, kw) or dense weight (O, I) as the crossbar matrix (K, O)."""
    return weight.reshape(weight.shape[0], -1).T
