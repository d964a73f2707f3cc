"""Weight mapping: real weights -> integer weights -> slice digits -> differential conductances.

Steps (all exact and invertible up to the first quantisation):

1. Scale. ``scale[col] = max_r |W[r, col]| / w_max`` (per column) or one ``max |W| / w_max``
   for the tile (per tile), with ``w_max = 2**(weight_bits-1) - 1``; an all-zero column
   gets scale 1. ``W_int = rint(W / scale)`` lies in [-w_max, w_max]; ``W ≈ W_int * scale``.
2. Slices. ``|W_int|`` is written in base F (the significance factor), least significant
   slice first: digit s < S-1 is ``(|W_int| // F**s) % F``, the top slice takes the rest,
   ``|W_int| // F**(S-1)``. Every digit carries the weight's sign:
   ``W_int = sum_s F**s * d_s``.
3. Conductances. One unit digit is ``g_unit = (g_max - g_min) / d_max`` with ``d_max`` the
   largest digit any slice can hold, so every slice shares the same current per unit and the
   digital shift-and-add recombines them exactly. A positive digit programs
   ``G+ = g_min + d g_unit, G- = g_min``, a negative one the mirror; zero weights leave both
   devices at the equal low conductance ``g_min``. The largest |W| of each column (or tile)
   lands on g_max when it needs the top digit ``d_max``.

4. Devices per polarity. With ``weights.devices_per_polarity`` P > 1 every side of a pair is
   P devices programmed to the same target (:func:`expand_devices`), their currents summed on
   the bit line: targets get a trailing device axis, shape (2, slices, rows, cols, P).

The inverse (:func:`unmap_conductances`) reads ``d_s = rint((G+ - G-) / g_unit)`` (the mean over
the P devices of a side) and recombines; without noise it returns ``W_int`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.devices import DeviceModel, check_finite

__all__ = ["WeightMapping", "map_weights", "unmap_conductances", "split_slices", "join_slices", "expand_devices",
           "sum_devices"]


@dataclass(frozen=True)
class WeightMapping:
    """How integer weights sit on the devices.

    Parameters
    ----------
    weight_bits : int
        Signed integer weight width.
    slices : int
        Differential pairs per weight (S).
    factor : int
        Significance factor F.
    per_column : bool
        Per-column scales (True) or one scale per tile.
    g_min, g_max : float
        Lowest and highest programmed conductance, µS.
    """

    weight_bits: int
    slices: int
    factor: int
    per_column: bool
    g_min: float
    g_max: float

    @classmethod
    def from_config(cls, cfg: ChipConfig, device: DeviceModel) -> "WeightMapping":
        return cls(cfg.analog.weight_bits, cfg.weights.slices, cfg.weights.significance_factor,
                   cfg.weights.scaling == "per-column", device.g_min, device.g_max)

    def __post_init__(self):
        if self.top_digit < 1:
            raise ConfigError(
                f"weights.slices {self.slices} with weights.significance_factor {self.factor} need at least "
                f"{self.factor ** (self.slices - 1)} integer weight levels; analog.weight_bits "
                f"{self.weight_bits} gives only {self.w_max}")

    @property
    def w_max(self) -> int:
        """Largest integer weight magnitude."""
        return 2 ** (self.weight_bits - 1) - 1

    @property
    def top_digit(self) -> int:
        """Largest digit of the most significant slice."""
        return self.w_max // self.factor ** (self.slices - 1)

    @property
    def d_max(self) -> int:
        """Largest digit of any slice."""
        return max(self.top_digit, self.factor - 1) if self.slices > 1 else self.top_digit

    @property
    def g_unit(self) -> float:
        """Conductance of one unit digit, µS."""
        return (self.g_max - self.g_min) / self.d_max


def quantise_weights(mapping: WeightMapping, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights and their scales: ``W ≈ W_int * scale``.

    Returns
    -------
    w_int : int64 array, shape (rows, cols)
    scale : float64 array, shape (cols,)
    """
    w = check_finite("weights", weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D array (rows, cols), not shape {w.shape}")
    peak = np.abs(w).max(axis=0) if mapping.per_column else np.full(w.shape[1], np.abs(w).max(initial=0.0))
    scale = np.where(peak > 0, peak / mapping.w_max, 1.0)
    w_int = np.clip(np.rint(w / scale), -mapping.w_max, mapping.w_max).astype(np.int64)
    return w_int, scale


def split_slices(mapping: WeightMapping, w_int: np.ndarray) -> np.ndarray:
    """Signed digits per slice, shape (slices, rows, cols), least significant first."""
    w_int = np.asarray(w_int, dtype=np.int64)
    if np.abs(w_int).max(initial=0) > mapping.w_max:
        raise ValueError(f"integer weights must lie in [-{mapping.w_max}, {mapping.w_max}]")
    mag, sign = np.abs(w_int), np.sign(w_int)
    digits = [(mag // mapping.factor**s) % mapping.factor for s in range(mapping.slices - 1)]
    digits.append(mag // mapping.factor ** (mapping.slices - 1))
    return np.stack(digits) * sign


def join_slices(mapping: WeightMapping, digits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`split_slices`: sum_s F**s d_s."""
    factors = np.array([mapping.factor**s for s in range(mapping.slices)], dtype=np.int64)
    return np.tensordot(factors, np.asarray(digits, dtype=np.int64), axes=1)


def map_weights(mapping: WeightMapping, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target conductances of the differential pairs.

    Returns
    -------
    g_target : float64 array, shape (2, slices, rows, cols)
        ``g_target[0]`` is G+, ``g_target[1]`` is G-, in µS.
    w_int : int64 array, shape (rows, cols)
    scale : float64 array, shape (cols,)
    """
    w_int, scale = quantise_weights(mapping, weights)
    return digits_to_conductances(mapping, split_slices(mapping, w_int)), w_int, scale


def digits_to_conductances(mapping: WeightMapping, digits: np.ndarray) -> np.ndarray:
    """(slices, rows, cols) signed digits -> (2, slices, rows, cols) conductances in µS."""
    g_pos = mapping.g_min + np.maximum(digits, 0) * mapping.g_unit
    g_neg = mapping.g_min + np.maximum(-digits, 0) * mapping.g_unit
    return np.stack([g_pos, g_neg])


def expand_devices(g_target: np.ndarray, devices: int) -> np.ndarray:
    """Targets of P = ``devices`` devices per polarity: (2, S, R, C) -> (2, S, R, C, P), every
    device of a side at the pair's target; P = 1 returns ``g_target`` unchanged (4-D)."""
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices per polarity must be a positive integer, not {devices!r}")
    g_target = np.asarray(g_target)
    if g_target.ndim != 4:
        raise ValueError(f"pair targets must have shape (2, slices, rows, cols), not {g_target.shape}")
    if devices == 1:
        return g_target
    return np.repeat(g_target[..., None], devices, axis=-1)


def sum_devices(values: np.ndarray) -> np.ndarray:
    """Per-device values (2, S, R, C, P) summed over each side's P devices -> (2, S, R, C);
    4-D values (one device per polarity) are returned unchanged."""
    values = np.asarray(values)
    return values.sum(axis=-1) if values.ndim == 5 else values


def unmap_conductances(mapping: WeightMapping, g: np.ndarray) -> np.ndarray:
    """Integer weights read back from (2, slices, rows, cols) conductances, or
    (2, slices, rows, cols, P) with P devices per polarity (exact without noise)."""
    g = np.asarray(g, dtype=np.float64)
    if g.ndim not in (4, 5) or g.shape[:2] != (2, mapping.slices):
        raise ValueError(f"conductances must have shape (2, {mapping.slices}, rows, cols) or "
                         f"(2, {mapping.slices}, rows, cols, devices), not {g.shape}")
    if g.ndim == 5:
        g = g.mean(axis=-1)
    digits = np.rint((g[0] - g[1]) / mapping.g_unit).astype(np.int64)
    return join_slices(mapping, digits)
