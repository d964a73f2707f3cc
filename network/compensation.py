"""Drift compensation of a network chip, written as its firmware does it: measurements
through the chip, results written into the drift-gain and batch-norm registers in their
fixed-point formats.

Global drift compensation (GDC)
    Per tile, the fixed calibration input set (:func:`neurophase.models.gdc.calibration_inputs`)
    is read right after programming (``r0 = mean |y|``, stored) and at time t (``r(t)``); the
    drift-gain registers receive ``alpha = r0 / r(t)`` rounded to ``datapath.gain_frac_bits``
    — one value per column (``analog.gdc = "per-column"``) or the same for every column of
    the tile (``"per-tile"``), from the data columns or the reference columns
    (``analog.gdc_source``).

Batch-norm recalibration
    The chip keeps a calibration set of images (100 by default) and, per MVM layer and
    output channel, the reference mean and standard deviation of the layer's pre-batch-norm
    value, computed by the compiler from the float network on those images. At time t the
    firmware runs the images layer by layer, measures each channel's mean and deviation of
    the partial sums, and rewrites that layer's batch-norm registers so that the measured
    statistics map onto the reference ones before the layer's trained affine map (the
    statistics of a batch-norm, re-estimated on the drifted hardware). Earlier layers are
    recalibrated before later ones are measured.
"""

from __future__ import annotations

import numpy as np

from neurophase.models.drift_gain import DriftGainParams, gain_to_fixed
from neurophase.models.gdc import gdc_alpha, gdc_reference
from neurophase.network.graph import im2col
from neurophase.network.golden import NetworkChip, Registers
from neurophase.network.mapping import MappedNetwork, requant_registers

__all__ = ["GdcFirmware", "BatchNormCalibration", "COMPENSATIONS", "REPROGRAM", "CALIBRATION_IMAGES"]

#: The compensation columns of the network study, in order.
COMPENSATIONS = ("none", "gdc", "gdc+bn")
#: The column of selective reprogramming followed by GDC and batch-norm recalibration.
REPROGRAM = "gdc+bn+reprogram"
#: Calibration images stored on chip for batch-norm recalibration.
CALIBRATION_IMAGES = 100


class GdcFirmware:
    """Global drift compensation of every tile of ``chip``: ``r0`` measured at programming.

    Parameters
    ----------
    chip : NetworkChip
    rng : numpy.random.Generator
        Noise of the calibration reads.
    t0_s : float
        When r0 is measured (right after programming by default).
    """

    def __init__(self, chip: NetworkChip, rng: np.random.Generator, t0_s: float = 0.0):
        self.chip = chip
        self.r0 = [gdc_reference(tile, t0_s, rng) for tile in chip.tiles]

    def alphas(self, t_s: float, rng: np.random.Generator) -> list[np.ndarray]:
        """alpha = r0 / r(t) of every tile, per column."""
        return [gdc_alpha(r0, gdc_reference(tile, t_s, rng)) for r0, tile in zip(self.r0, self.chip.tiles)]

    def apply(self, t_s: float, rng: np.random.Generator) -> list[np.ndarray]:
        """Measure r(t) and write every tile's drift-gain registers; returns the register values."""
        params = DriftGainParams.from_config(self.chip.cfg)
        gains = [np.array([gain_to_fixed(params, a) for a in alpha], dtype=np.int64) for alpha in self.alphas(t_s, rng)]
        self.chip.registers.gains = gains
        return gains


class BatchNormCalibration:
    """Batch-norm recalibration from calibration images stored with the compiled network.

    Parameters
    ----------
    chip : NetworkChip or MappedNetwork
        The chip :meth:`apply` measures; a mapped network alone is enough for
        :meth:`registers` (a firmware that measures the statistics itself).
    images : float array (n, *input_shape)
        The calibration images (``CALIBRATION_IMAGES`` of the training set by default).
    """

    def __init__(self, chip: NetworkChip | MappedNetwork, images: np.ndarray):
        self.chip = chip if isinstance(chip, NetworkChip) else None
        self.mapped = chip.mapped if isinstance(chip, NetworkChip) else chip
        self.images = self.mapped.network.check_inputs(images)
        self.reference = self._reference_statistics()

    def _reference_statistics(self) -> dict:
        """Per layer, mean and std of the float pre-affine value W x, in partial-sum units."""
        mapped = self.mapped
        tensors = mapped.network.run(self.images, keep=True)
        stats = {}
        for name, layer in mapped.layers.items():
            x = tensors[layer.layer.input]
            patches = im2col(x, layer.layer.kernel, layer.layer.stride, layer.layer.pads) \
                if layer.layer.kind == "conv" else x
            y = patches.reshape(-1, layer.k) @ layer.layer.matrix
            units = layer.w_scale * layer.in_scale / mapped.codes_per_unit  # float value of one psum LSB
            stats[name] = (y.mean(axis=0) / units, y.std(axis=0) / units)
        return stats

    def apply(self, t_s: float, rng: np.random.Generator) -> Registers:
        """Measure every layer at ``t_s`` and rewrite its batch-norm registers; returns the registers."""
        chip, mapped = self.chip, self.mapped
        if chip is None:
            raise ValueError("BatchNormCalibration.apply measures a NetworkChip; this one was made from a "
                             "MappedNetwork (registers() only)")
        for name, layer in mapped.layers.items():
            psum = chip.run(self.images, t_s, rng, trace=True).psums[name].reshape(-1, layer.n)
            scale, bias, shift = self.registers(name, psum.mean(axis=0), psum.std(axis=0))
            chip.registers.bn_scale[name], chip.registers.bn_bias[name] = scale, bias
            chip.registers.shift[name] = shift
        return chip.registers

    def registers(self, name: str, mean_t: np.ndarray, std_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Batch-norm registers (S, beta, shift) of layer ``name`` that map partial sums of
        measured per-channel mean ``mean_t`` and deviation ``std_t`` onto the reference ones."""
        mapped = self.mapped
        layer = mapped.layers[name]
        mean_ref, std_ref = self.reference[name]
        gain = np.where(std_t > 0, std_ref / np.where(std_t > 0, std_t, 1.0), 1.0)
        units = layer.w_scale * layer.in_scale / mapped.codes_per_unit
        multiplier = layer.layer.scale * units / layer.out_scale * gain
        offset = (layer.layer.shift + layer.layer.scale * units * (mean_ref - mean_t * gain)) / layer.out_scale
        return requant_registers(mapped.cfg, multiplier, offset, layer.psum_bits)
