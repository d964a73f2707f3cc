"""Bit-true golden model of the shift-and-add unit (plain numpy).

For each weight slice ``s`` and input bit-plane ``b`` (LSB first) the unit adds the ADC
code ``c[s, b, col]`` times the constant weight ``F**s * 2**b`` (negated for the MSB
plane of two's-complement inputs) into the column's accumulator, saturating to the
accumulator width after every addition. With the full-precision width this equals
``y[col] = sum_s F**s * acc_s[col]`` exactly; with a narrower width the result is the
same clipped sequence the RTL computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig, ConfigError, full_precision_bits

__all__ = ["ShiftAddParams", "shift_add", "shift_add_ideal", "shift_add_beats", "shift_add_output_beats"]


@dataclass(frozen=True)
class ShiftAddParams:
    """Everything that sizes a shift-and-add unit; shared by the RTL and this model.

    Parameters
    ----------
    adc_bits : int
        Signed ADC code width.
    planes : int
        Input bit-planes per slice (1 for pulse-width inputs).
    msb_negative : bool
        Whether the last plane counts negatively (two's-complement bit-serial inputs).
    slices : int
        Weight slices S.
    factor : int
        Significance factor F between slices.
    columns : int
        Columns per MVM.
    lanes : int
        Columns per stream beat.
    out_bits : int
        Signed accumulator/result width; 0 selects full precision.
    """

    adc_bits: int = 8
    planes: int = 8
    msb_negative: bool = True
    slices: int = 1
    factor: int = 8
    columns: int = 256
    lanes: int = 16
    out_bits: int = 0

    def __post_init__(self):
        for name, lo in (("adc_bits", 2), ("planes", 1), ("slices", 1), ("factor", 2),
                         ("columns", 1), ("lanes", 1), ("out_bits", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"shift-add {name} must be an integer >= {lo}, not {value!r}")
        if self.columns % self.lanes:
            raise ConfigError(f"shift-add lanes must divide columns ({self.columns}), not {self.lanes!r}")
        if self.out_bits and self.out_bits < self.adc_bits:
            raise ConfigError(
                f"shift-add out_bits must be 0 or at least adc_bits ({self.adc_bits}), not {self.out_bits!r}"
            )
        if self.full_bits > 62:
            raise ConfigError(
                f"shift-add full precision needs {self.full_bits} bits; at most 62 are supported "
                "(reduce slices, significance factor, input or ADC bits)"
            )

    @classmethod
    def from_config(cls, cfg: ChipConfig) -> "ShiftAddParams":
        return cls(
            adc_bits=cfg.adc.bits,
            planes=cfg.input.planes,
            msb_negative=cfg.input.signed and cfg.input.mode == "bit-serial",
            slices=cfg.weights.slices,
            factor=cfg.weights.significance_factor,
            columns=cfg.tile.cols,
            lanes=cfg.datapath.lanes,
            out_bits=cfg.accumulator_bits,  # the chip's one derivation of the width
        )

    @property
    def full_bits(self) -> int:
        return full_precision_bits(self.adc_bits, self.planes, self.slices, self.factor)

    @property
    def width(self) -> int:
        """The accumulator/result width actually built."""
        return self.out_bits or self.full_bits

    @property
    def groups(self) -> int:
        """Stream beats per (slice, plane): columns / lanes."""
        return self.columns // self.lanes

    @property
    def beats_per_mvm(self) -> int:
        return self.slices * self.planes * self.groups

    @property
    def code_range(self) -> tuple[int, int]:
        return -(2 ** (self.adc_bits - 1)), 2 ** (self.adc_bits - 1) - 1

    @property
    def out_range(self) -> tuple[int, int]:
        return -(2 ** (self.width - 1)), 2 ** (self.width - 1) - 1

    def weight(self, slice_: int, plane: int) -> int:
        """Constant multiplying the code of (slice, plane)."""
        sign = -1 if self.msb_negative and plane == self.planes - 1 else 1
        return sign * (1 << plane) * self.factor**slice_

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` as int64 of shape (slices, planes, columns), range-checked."""
        codes = np.asarray(codes)
        expected = (self.slices, self.planes, self.columns)
        if codes.shape != expected:
            raise ValueError(f"codes must have shape {expected} (slices, planes, columns), not {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, not {codes.dtype}")
        lo, hi = self.code_range
        bad = (codes < lo) | (codes > hi)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"ADC code {int(codes[where])} at (slice, plane, column) {where} is outside "
                f"the signed {self.adc_bits}-bit range [{lo}, {hi}]"
            )
        return codes.astype(np.int64)


def shift_add(params: ShiftAddParams, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unit's result for one MVM.

    Parameters
    ----------
    params : ShiftAddParams
    codes : array of int, shape (slices, planes, columns)

    Returns
    -------
    result : int64 array, shape (columns,)
        Saturated accumulations.
    saturated : bool array, shape (columns,)
        Whether any addition of that column was clipped.
    """
    codes = params.check_codes(codes)
    lo, hi = params.out_range
    acc = np.zeros(params.columns, dtype=np.int64)
    saturated = np.zeros(params.columns, dtype=bool)
    for s in range(params.slices):
        for b in range(params.planes):
            total = acc + codes[s, b] * params.weight(s, b)
            acc = np.clip(total, lo, hi)
            saturated |= acc != total
    return acc, saturated


def shift_add_ideal(params: ShiftAddParams, codes: np.ndarray) -> np.ndarray:
    """Plain integer arithmetic, y = sum_s F**s sum_b (+-2**b) c[s, b] in Python ints,
    with no saturation: the reference the golden model is tested against."""
    codes = params.check_codes(codes)
    result = []
    for col in range(params.columns):
        acc_slices = [
            sum(int(codes[s, b, col]) * (1 << b) * (-1 if params.msb_negative and b == params.planes - 1 else 1)
                for b in range(params.planes))
            for s in range(params.slices)
        ]
        result.append(sum(params.factor**s * acc for s, acc in enumerate(acc_slices)))
    return np.array(result, dtype=object)


def shift_add_beats(params: ShiftAddParams, codes: np.ndarray) -> np.ndarray:
    """The input beats of one MVM in stream order (slice, plane, group): shape
    (beats_per_mvm, lanes)."""
    codes = params.check_codes(codes)
    return codes.reshape(params.slices * params.planes * params.groups, params.lanes)


def shift_add_output_beats(params: ShiftAddParams, codes: np.ndarray) -> list[dict]:
    """The output beats the unit emits for one MVM: per column group, the results,
    a saturation bit per lane and the ``last`` marker."""
    result, saturated = shift_add(params, codes)
    beats = []
    for g in range(params.groups):
        lanes = slice(g * params.lanes, (g + 1) * params.lanes)
        mask = sum(int(bit) << i for i, bit in enumerate(saturated[lanes]))
        beats.append({
            "data": [int(v) for v in result[lanes]],
            "saturated": mask,
            "last": int(g == params.groups - 1),
        })
    return beats
