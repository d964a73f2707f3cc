"""Fixed-point helpers shared by the golden models of the datapath (plain Python/numpy).

Every rounding in the datapath is *round half up*: ``round(x) = floor(x + 1/2)``, so
``+2.5 -> 3`` and ``-2.5 -> -2``. For an integer ``v`` scaled by ``2**-f`` this is
``(v + 2**(f-1)) >> f`` with an arithmetic (flooring) shift, exactly what the RTL does.
Every saturation clips to the signed range of the result width.
"""

from __future__ import annotations

import numpy as np

__all__ = ["signed_range", "round_half_up_shift", "saturate", "as_int_array"]


def signed_range(bits: int) -> tuple[int, int]:
    """Smallest and largest value of a ``bits``-wide two's-complement integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def as_int_array(values, bits: int | None = None) -> np.ndarray:
    """``values`` as an exact integer array.

    ``bits`` bounds the signed width of every result the caller computes from these
    values; when it is at most 62 the array is int64 (exact, and fast), otherwise (or
    when None) an array of Python ints (dtype object), which never overflows.
    """
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int64 if bits is not None and bits <= 62 else object)
    return np.array([int(v) for v in np.ravel(values)], dtype=object).reshape(np.shape(values))


def round_half_up_shift(value: np.ndarray, shift: int) -> np.ndarray:
    """``floor(value / 2**shift + 1/2)`` elementwise on integer arrays; ``shift`` >= 0."""
    if shift == 0:
        return value
    return (value + (1 << (shift - 1))) >> shift


def saturate(value: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``value`` clipped to the signed ``bits`` range, and a bool mask of clipped elements."""
    lo, hi = signed_range(bits)
    value = np.asarray(value)
    if value.dtype.kind not in "iuO":
        value = value.astype(object)
    clipped = np.minimum(np.maximum(value, lo), hi)
    return clipped, np.asarray(clipped != value, dtype=bool).reshape(value.shape)
