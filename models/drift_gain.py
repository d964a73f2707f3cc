"""Bit-true golden model of the drift-gain unit (plain numpy).

``y' = sat(round(alpha * y))`` with ``alpha = G / 2**F`` (``G`` a signed ``gain_bits``
integer, ``F = gain_frac_bits``), rounding half up (``floor(x + 1/2)``) and saturating
to the signed result width (the accumulator width, unchanged by the gain). One gain per
column (an array of gains) or one for the whole tile (a single gain); the RTL selects
between the two at run time (``per_column`` input, reset value from
``datapath.gain_mode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.fixed_point import as_int_array, round_half_up_shift, saturate, signed_range

__all__ = ["DriftGainParams", "drift_gain", "gain_to_fixed"]


@dataclass(frozen=True)
class DriftGainParams:
    """Everything that sizes a drift-gain unit; shared by the RTL and this model.

    Parameters
    ----------
    width : int
        Signed width of the input and output values (the accumulator width).
    columns, lanes : int
        Columns per MVM and per stream beat.
    gain_bits, gain_frac_bits : int
        Signed gain width and its fractional bits.
    per_column : bool
        The mode after reset: a gain per column (True) or one per tile.
    """

    width: int = 16
    columns: int = 256
    lanes: int = 32
    gain_bits: int = 16
    gain_frac_bits: int = 12
    per_column: bool = True

    def __post_init__(self):
        for name, lo in (("width", 2), ("columns", 1), ("lanes", 1), ("gain_bits", 2), ("gain_frac_bits", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"drift-gain {name} must be an integer >= {lo}, not {value!r}")
        if self.columns % self.lanes:
            raise ConfigError(f"drift-gain lanes must divide columns ({self.columns}), not {self.lanes!r}")
        if self.gain_frac_bits >= self.gain_bits:
            raise ConfigError(f"drift-gain gain_frac_bits must be less than gain_bits ({self.gain_bits}), "
                              f"not {self.gain_frac_bits!r}")
        if not isinstance(self.per_column, bool):
            raise ConfigError(f"drift-gain per_column must be a bool, not {self.per_column!r}")

    @classmethod
    def from_config(cls, cfg: ChipConfig) -> "DriftGainParams":
        return cls(
            width=cfg.accumulator_bits,
            columns=cfg.tile.cols,
            lanes=cfg.datapath.lanes,
            gain_bits=cfg.datapath.gain_bits,
            gain_frac_bits=cfg.datapath.gain_frac_bits,
            per_column=cfg.datapath.gain_mode == "per-column",
        )

    @property
    def groups(self) -> int:
        return self.columns // self.lanes

    @property
    def gain_range(self) -> tuple[int, int]:
        return signed_range(self.gain_bits)

    @property
    def value_range(self) -> tuple[int, int]:
        return signed_range(self.width)

    def check_gains(self, gains) -> np.ndarray:
        """Per-column gains (an array of ``columns`` integers) or the tile's gain
        (one integer), broadcast to one per column."""
        lo, hi = self.gain_range
        if isinstance(gains, (list, tuple, np.ndarray)):
            gains = np.asarray(gains)
            if gains.shape != (self.columns,) or not np.issubdtype(gains.dtype, np.integer):
                raise ValueError(f"per-column gains must be {self.columns} integers, not {gains.dtype} "
                                 f"of shape {gains.shape}")
        else:
            if isinstance(gains, bool) or not isinstance(gains, (int, np.integer)):
                raise ValueError(f"the per-tile gain must be one integer, not {gains!r}")
            gains = np.full(self.columns, int(gains), dtype=np.int64)
        if ((gains < lo) | (gains > hi)).any():
            col = int(np.argwhere((gains < lo) | (gains > hi))[0][0])
            raise ValueError(f"gain {int(gains[col])} of column {col} is outside the signed "
                             f"{self.gain_bits}-bit range [{lo}, {hi}]")
        return gains.astype(np.int64)


def gain_to_fixed(params: DriftGainParams, alpha: float) -> int:
    """The gain register value closest to ``alpha`` (round half up), saturated."""
    lo, hi = params.gain_range
    return int(min(max(np.floor(alpha * (1 << params.gain_frac_bits) + 0.5), lo), hi))


def drift_gain(params: DriftGainParams, values, gains) -> tuple[np.ndarray, np.ndarray]:
    """``sat(round(alpha[col] * y[col]))`` for one MVM's results.

    Parameters
    ----------
    values : array of int, shape (columns,)
        Signed ``width``-bit inputs (the shift-and-add results).
    gains : array of int, shape (columns,), or int
        Gain register values ``G``; ``alpha = G / 2**gain_frac_bits``.

    Returns
    -------
    result : int64 array, shape (columns,)
    clipped : bool array, shape (columns,)
        Whether the saturation clipped that column.
    """
    values = np.asarray(values)
    lo, hi = params.value_range
    if values.shape != (params.columns,) or ((values < lo) | (values > hi)).any():
        raise ValueError(f"values must be {params.columns} signed {params.width}-bit integers")
    gains = params.check_gains(gains)
    bound = params.width + params.gain_bits + 1  # product, plus the rounding carry
    product = as_int_array(values, bound) * as_int_array(gains, bound)
    result, clipped = saturate(round_half_up_shift(product, params.gain_frac_bits), params.width)
    return result.astype(np.int64), clipped
