"""Bit-true golden model of the ADC interface (plain numpy).

The interface sequences one MVM as conversions in the order slice (outer), input
bit-plane (LSB first), mux phase (inner). With ``M = columns_per_adc`` columns sharing
an ADC, conversion ``k`` of a plane converts the columns ``{c : c % M == k}``; code ``i``
of that conversion belongs to column ``i*M + k``. Each captured code is trimmed,
``code' = sat(code - trim[col])`` to the signed ADC width, and the codes of a plane
leave in column groups of ``lanes`` consecutive columns: the shift-and-add's beat order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.fixed_point import as_int_array, saturate, signed_range

__all__ = ["TIMEOUT_BITS", "AdcInterfaceParams", "conversion_order", "conversion_codes", "adc_trim",
           "adc_interface_beats"]

#: Width of the ADC timeout (the CSR register and the RTL counter), in bits.
TIMEOUT_BITS = 16


@dataclass(frozen=True)
class AdcInterfaceParams:
    """Everything that sizes an ADC interface; shared by the RTL and this model.

    Parameters
    ----------
    adc_bits : int
        Signed ADC code width (also the width of a trim value).
    columns : int
        Columns of the tile.
    columns_per_adc : int
        Columns sharing one ADC through the column mux (M); conversions per plane.
    lanes : int
        Columns per output stream beat.
    slices : int
        Weight slices per MVM.
    planes : int
        Input bit-planes per slice.
    """

    adc_bits: int = 8
    columns: int = 256
    columns_per_adc: int = 1
    lanes: int = 32
    slices: int = 1
    planes: int = 8

    def __post_init__(self):
        for name, lo in (("adc_bits", 2), ("columns", 1), ("columns_per_adc", 1), ("lanes", 1),
                         ("slices", 1), ("planes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"ADC interface {name} must be an integer >= {lo}, not {value!r}")
        if self.columns % self.lanes:
            raise ConfigError(f"ADC interface lanes must divide columns ({self.columns}), not {self.lanes!r}")
        if self.columns % self.columns_per_adc:
            raise ConfigError(
                f"ADC interface columns_per_adc must divide columns ({self.columns}), not {self.columns_per_adc!r}"
            )

    @classmethod
    def from_config(cls, cfg: ChipConfig) -> "AdcInterfaceParams":
        return cls(
            adc_bits=cfg.adc.bits,
            columns=cfg.tile.cols,
            columns_per_adc=cfg.adc.columns_per_adc,
            lanes=cfg.datapath.lanes,
            slices=cfg.weights.slices,
            planes=cfg.input.planes,
        )

    @property
    def groups(self) -> int:
        """Column groups (stream beats) per plane."""
        return self.columns // self.lanes

    @property
    def codes_per_conversion(self) -> int:
        """ADC codes delivered by one conversion: one per ADC."""
        return self.columns // self.columns_per_adc

    @property
    def conversions_per_mvm(self) -> int:
        return self.slices * self.planes * self.columns_per_adc

    @property
    def code_range(self) -> tuple[int, int]:
        return signed_range(self.adc_bits)

    def check_codes(self, codes: np.ndarray, what: str = "codes") -> np.ndarray:
        """``codes`` as int64 of shape (slices, planes, columns), range-checked."""
        codes = np.asarray(codes)
        expected = (self.slices, self.planes, self.columns)
        if codes.shape != expected:
            raise ValueError(f"{what} must have shape {expected} (slices, planes, columns), not {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"{what} must be integers, not {codes.dtype}")
        lo, hi = self.code_range
        bad = (codes < lo) | (codes > hi)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"ADC code {int(codes[where])} at (slice, plane, column) {where} is outside "
                             f"the signed {self.adc_bits}-bit range [{lo}, {hi}]")
        return codes.astype(np.int64)

    def check_trims(self, trims: np.ndarray) -> np.ndarray:
        """``trims`` as int64 of shape (columns,), each a signed ``adc_bits`` integer."""
        trims = np.asarray(trims)
        if trims.shape != (self.columns,) or not np.issubdtype(trims.dtype, np.integer):
            raise ValueError(f"trims must be {self.columns} integers, not {trims.dtype} of shape {trims.shape}")
        lo, hi = self.code_range
        if ((trims < lo) | (trims > hi)).any():
            col = int(np.argwhere((trims < lo) | (trims > hi))[0][0])
            raise ValueError(f"trim {int(trims[col])} of column {col} is outside the signed "
                             f"{self.adc_bits}-bit range [{lo}, {hi}]")
        return trims.astype(np.int64)


def conversion_order(params: AdcInterfaceParams) -> list[tuple[int, int, int]]:
    """The (slice, plane, mux phase) of every conversion of one MVM, in request order."""
    return [(s, b, k) for s in range(params.slices) for b in range(params.planes)
            for k in range(params.columns_per_adc)]


def conversion_codes(params: AdcInterfaceParams, codes: np.ndarray, slice_: int, plane: int,
                     phase: int) -> np.ndarray:
    """The codes the ADCs return for one conversion: code ``i`` is column ``i*M + phase``."""
    return np.asarray(codes)[slice_, plane, phase::params.columns_per_adc]


def adc_trim(params: AdcInterfaceParams, codes: np.ndarray, trims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offset trim of one MVM's codes: ``sat(code - trim[col])`` to ``adc_bits``.

    Returns the trimmed codes (int64, shape (slices, planes, columns)) and a bool mask
    of the codes the saturation clipped.
    """
    codes = params.check_codes(codes)
    trims = params.check_trims(trims)
    trimmed, clipped = saturate(as_int_array(codes - trims[None, None, :], params.adc_bits + 1), params.adc_bits)
    return trimmed.astype(np.int64), clipped


def adc_interface_beats(params: AdcInterfaceParams, codes: np.ndarray, trims: np.ndarray) -> list[dict]:
    """The output beats of one MVM in stream order (slice, plane, column group), as
    payloads of the shift-and-add's input layout ``{"codes": [...]}``."""
    trimmed, _ = adc_trim(params, codes, trims)
    flat = trimmed.reshape(-1, params.lanes)
    return [{"codes": [int(c) for c in beat]} for beat in flat]
