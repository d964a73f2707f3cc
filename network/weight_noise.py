"""Effective weights of a layer on the chip at a time since programming, drawn with the device model.

The single source of the noise that hardware-aware training injects
(:mod:`neurophase.network.hwa`): a float weight matrix goes the way the chip mapping takes it,

1. integer weights: ``analog.weight_bits``-bit, one scale per output or per layer
   (:func:`neurophase.network.mapping.quantise_matrix`, exactly what the network mapping uses);
2. slice digits and differential conductances with ``weights.devices_per_polarity`` devices
   per side (:mod:`neurophase.models.mapping`);
3. :meth:`DeviceModel.program` (programming noise), :meth:`DeviceModel.draw_drift_exponents`,
   the RTN mask, then one :meth:`DeviceModel.read` at time t (drift, 1/f read noise, RTN) —
   each switched off where ``analog.programming_noise``, ``analog.drift`` or
   ``analog.read_noise`` is ``"off"``;
4. back to weights: per slice ``(sum G+ - sum G-) / (P g_unit)``, slices recombined with
   their significance ``F**s`` (not rounded: the analog value the column sums);
5. a global drift compensation as the GDC firmware computes it: per block of ``tile.rows``
   matrix rows (one tile's share of the layer), ``alpha = mean |X w(0)| / mean |X w(t)|`` with
   ``X`` the fixed calibration input set (:func:`neurophase.models.gdc.calibration_inputs`),
   ``w(0)`` the programmed weights before drift and read noise, ``w(t)`` the read ones; per
   column (``analog.gdc = "per-column"``) or one value for the block (``"per-tile"``, and for
   ``gdc_source = "reference-columns"``, whose alpha is tile-wide as well);
6. the effective float weights ``alpha * w(t) * scale``.

Left out: ADC offsets, ADC noise and ADC rounding (periphery, not weights). The read noise is
one draw per device for the whole matrix, where the chip draws it fresh at every read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.devices import DeviceModel, check_time, device_model_from_config
from neurophase.models.gdc import calibration_inputs
from neurophase.models.mapping import (WeightMapping, digits_to_conductances, expand_devices, split_slices,
                                       sum_devices)
from neurophase.network.mapping import quantise_matrix

__all__ = ["ProgrammedMatrix", "ChipWeightNoise", "conv_matrix"]


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
        self.calibration = calibration_inputs(cfg).astype(np.float64)

    @property
    def _factors(self) -> np.ndarray:
        return np.array([self.mapping.factor ** s for s in range(self.mapping.slices)], dtype=np.float64)

    def program(self, matrix: np.ndarray, rng: np.random.Generator) -> ProgrammedMatrix:
        """Quantise ``matrix`` (K, N) and program its devices (programming noise, drift exponents, RTN)."""
        cfg, device = self.cfg, self.device
        w_int, scale = quantise_matrix(cfg, np.asarray(matrix, dtype=np.float64))
        target = expand_devices(digits_to_conductances(self.mapping, split_slices(self.mapping, w_int)),
                                cfg.weights.devices_per_polarity)
        g_prog = device.program(target, rng, noise=cfg.analog.programming_noise == "on")
        nu = device.draw_drift_exponents(target, rng)
        if cfg.analog.drift == "off":
            nu = np.zeros_like(nu)
        return ProgrammedMatrix(w_int, scale, g_prog, nu, device.rtn_mask(target.shape, rng))

    def integer_weights(self, conductances: np.ndarray) -> np.ndarray:
        """Analog integer-unit weights (K, N) of conductances (2, S, K, N[, P]), slices recombined."""
        g = sum_devices(conductances)
        digits = (g[0] - g[1]) / (self.cfg.weights.devices_per_polarity * self.mapping.g_unit)
        return np.tensordot(self._factors, digits, axes=1)

    def read(self, programmed: ProgrammedMatrix, t_s: float, rng: np.random.Generator) -> np.ndarray:
        """Integer-unit weights (K, N) read at ``t_s``: drift, one draw of read noise and RTN."""
        device = self.device
        if self.cfg.analog.read_noise == "off":
            g = device.drift(programmed.g_prog, programmed.nu, t_s)
        else:
            g = device.read(programmed.g_prog, programmed.nu, t_s, rng, programmed.rtn)
        return self.integer_weights(g)

    def gdc_alpha(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Per row (K, N) the GDC gain ``mean |X before| / mean |X after|`` of its block of ``tile.rows`` rows."""
        rows = self.cfg.tile.rows
        per_column = self.cfg.analog.gdc == "per-column" and self.cfg.analog.gdc_source == "calibration-input"
        alpha = np.ones_like(before)
        for start in range(0, before.shape[0], rows):
            block = slice(start, start + rows)
            x = self.calibration[:, :before[block].shape[0]]
            r0, rt = np.abs(x @ before[block]), np.abs(x @ after[block])
            r0, rt = (r0.mean(axis=0), rt.mean(axis=0)) if per_column else (r0.mean(), rt.mean())
            alpha[block] = np.where(rt > 0, r0 / np.where(rt > 0, rt, 1.0), 1.0)
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
        before = self.integer_weights(programmed.g_prog)
        after = self.read(programmed, t_s, rng)
        return self.gdc_alpha(before, after) * after * programmed.scale


def conv_matrix(weight: np.ndarray) -> np.ndarray:
    """A convolution weight (O, C, kh, kw) or dense weight (O, I) as the crossbar matrix (K, O)."""
    return weight.reshape(weight.shape[0], -1).T
