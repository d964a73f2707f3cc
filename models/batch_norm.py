"""Bit-true golden model of the batch-norm / ReLU / requantisation unit (plain numpy).

Per column, with ``gamma = S / 2**Fs`` (``S`` a signed ``scale_bits`` integer,
``Fs = scale_frac_bits``) and an integer bias ``beta`` (in accumulator LSBs)::

    z = sat_W(floor(S * y / 2**Fs + 1/2) + beta)          # folded batch-norm
    r = max(z, 0) if relu else z                           # optional ReLU
    q = sat_A(floor(r / 2**shift + 1/2))                   # requantisation

``W`` is the accumulator width, ``A`` the activation width; every rounding is half up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.fixed_point import as_int_array, round_half_up_shift, saturate, signed_range

__all__ = ["BatchNormParams", "batch_norm"]


@dataclass(frozen=True)
class BatchNormParams:
    """Everything that sizes a batch-norm unit; shared by the RTL and this model.

    Parameters
    ----------
    width : int
        Signed width of the input and of the batch-norm result ``z`` (accumulator width).
    out_bits : int
        Signed width of the requantised activation.
    columns, lanes : int
        Columns per MVM and per stream beat.
    scale_bits, scale_frac_bits : int
        Signed scale width and its fractional bits.
    bias_bits : int
        Signed bias width (an integer in accumulator LSBs).
    """

    width: int = 16
    out_bits: int = 8
    columns: int = 256
    lanes: int = 32
    scale_bits: int = 16
    scale_frac_bits: int = 12
    bias_bits: int = 24

    def __post_init__(self):
        for name, lo in (("width", 2), ("out_bits", 2), ("columns", 1), ("lanes", 1), ("scale_bits", 2),
                         ("scale_frac_bits", 0), ("bias_bits", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"batch-norm {name} must be an integer >= {lo}, not {value!r}")
        if self.columns % self.lanes:
            raise ConfigError(f"batch-norm lanes must divide columns ({self.columns}), not {self.lanes!r}")
        if self.scale_frac_bits >= self.scale_bits:
            raise ConfigError(f"batch-norm scale_frac_bits must be less than scale_bits ({self.scale_bits}), "
                              f"not {self.scale_frac_bits!r}")

    @classmethod
    def from_config(cls, cfg: ChipConfig) -> "BatchNormParams":
        return cls(
            width=cfg.accumulator_bits,
            out_bits=cfg.datapath.activation_bits,
            columns=cfg.tile.cols,
            lanes=cfg.datapath.lanes,
            scale_bits=cfg.datapath.bn_scale_bits,
            scale_frac_bits=cfg.datapath.bn_scale_frac_bits,
            bias_bits=cfg.datapath.bn_bias_bits,
        )

    @property
    def groups(self) -> int:
        return self.columns // self.lanes

    @property
    def max_shift(self) -> int:
        """Largest effective requantisation shift: the accumulator width."""
        return self.width

    @property
    def shift_bits(self) -> int:
        """Width of the shift register: ``width.bit_length()``."""
        return self.width.bit_length()

    def check_array(self, name: str, values, bits: int) -> np.ndarray:
        values = np.asarray(values)
        lo, hi = signed_range(bits)
        if values.shape != (self.columns,) or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must be {self.columns} integers, not {values.dtype} of shape {values.shape}")
        if ((values < lo) | (values > hi)).any():
            col = int(np.argwhere((values < lo) | (values > hi))[0][0])
            raise ValueError(f"{name} {int(values[col])} of column {col} is outside the signed "
                             f"{bits}-bit range [{lo}, {hi}]")
        return values.astype(np.int64)

    def check_shift(self, shift) -> int:
        """The effective shift of register value ``shift``: values above ``width`` act as ``width``."""
        top = (1 << self.shift_bits) - 1
        if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or not 0 <= shift <= top:
            raise ValueError(f"requantisation shift must be an integer from 0 to {top}, not {shift!r}")
        return min(int(shift), self.max_shift)


def batch_norm(params: BatchNormParams, values, scale, bias, shift: int, relu: bool) -> dict:
    """Folded batch-norm, optional ReLU and requantisation of one MVM's columns.

    Returns a dict of int64/bool arrays of shape (columns,): ``z`` (batch-norm result),
    ``z_clipped``, ``result`` (the activation) and ``result_clipped``.
    """
    values = params.check_array("values", values, params.width)
    scale = params.check_array("scale", scale, params.scale_bits)
    bias = params.check_array("bias", bias, params.bias_bits)
    shift = params.check_shift(shift)
    bound = max(params.width + params.scale_bits + 1, params.bias_bits) + 1  # product, rounding, bias
    scaled = round_half_up_shift(as_int_array(values, bound) * as_int_array(scale, bound), params.scale_frac_bits)
    z, z_clipped = saturate(scaled + as_int_array(bias, bound), params.width)
    z_relu = np.maximum(z, 0) if relu else z
    result, result_clipped = saturate(round_half_up_shift(z_relu, shift), params.out_bits)
    return {
        "z": z.astype(np.int64),
        "z_clipped": z_clipped,
        "result": result.astype(np.int64),
        "result_clipped": result_clipped,
    }
