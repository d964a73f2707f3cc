"""Bit-true golden model of the whole tile datapath (plain numpy).

ADC codes -> offset trim (ADC interface) -> shift-and-add -> drift gain -> batch-norm,
ReLU and requantisation. Given the same ADC codes and the same parameter registers, the
RTL tile produces exactly :func:`datapath_output_beats`. The fixed-point formats of
every stage are listed by :func:`fixed_point_formats`, which also writes the table in
``docs/fixed-point.md`` (a test keeps the two identical).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.adc_interface import TIMEOUT_BITS, AdcInterfaceParams, adc_trim
from neurophase.models.batch_norm import BatchNormParams, batch_norm
from neurophase.models.drift_gain import DriftGainParams, drift_gain
from neurophase.models.shift_add import ShiftAddParams, shift_add

__all__ = ["DatapathParams", "DatapathSettings", "datapath", "datapath_batch", "datapath_output_beats",
           "fixed_point_formats", "fixed_point_table", "STATUS_FLAGS"]

#: Sticky status flags the datapath raises, in the order of the tile's status bits.
STATUS_FLAGS = ("trim_saturated", "acc_saturated", "gain_saturated", "bn_saturated", "requant_saturated",
                "adc_timeout")


@dataclass(frozen=True)
class DatapathParams:
    """The sizes of every block of the datapath, derived together from one configuration.

    Parameters
    ----------
    adc : AdcInterfaceParams
    shift_add : ShiftAddParams
    drift_gain : DriftGainParams
    batch_norm : BatchNormParams
    timeout_cycles : int
        Reset value of the ADC timeout register.
    latency_cycles : int
        The ADCs' conversion latency (start to done).
    """

    adc: AdcInterfaceParams
    shift_add: ShiftAddParams
    drift_gain: DriftGainParams
    batch_norm: BatchNormParams
    timeout_cycles: int = 1024
    latency_cycles: int = 16

    @classmethod
    def from_config(cls, cfg: ChipConfig) -> "DatapathParams":
        return cls(
            adc=AdcInterfaceParams.from_config(cfg),
            shift_add=ShiftAddParams.from_config(cfg),
            drift_gain=DriftGainParams.from_config(cfg),
            batch_norm=BatchNormParams.from_config(cfg),
            timeout_cycles=cfg.datapath.adc_timeout_cycles,
            latency_cycles=cfg.adc.latency_cycles,
        )

    @property
    def columns(self) -> int:
        return self.adc.columns

    @property
    def lanes(self) -> int:
        return self.adc.lanes

    @property
    def groups(self) -> int:
        return self.adc.groups

    @property
    def adc_bound_cycles(self) -> int:
        """Cycles the ADCs alone need per MVM: conversions x latency."""
        return self.adc.conversions_per_mvm * self.latency_cycles


@dataclass
class DatapathSettings:
    """The run-time parameters of the datapath (the CSR-written registers).

    Parameters
    ----------
    trims : int array (columns,)
        ADC offset trims, signed ``adc_bits``.
    gains : int array (columns,) or int
        Drift gains (per column) or the tile's gain, signed ``gain_bits``.
    scale, bias : int arrays (columns,)
        Batch-norm scale (signed ``scale_bits``) and bias (signed ``bias_bits``).
    shift : int
        Requantisation shift, 0 to the accumulator width.
    relu : bool
        Apply ReLU before requantisation.
    """

    trims: np.ndarray
    gains: object
    scale: np.ndarray
    bias: np.ndarray
    shift: int = 0
    relu: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def identity(cls, params: DatapathParams, shift: int = 0, relu: bool = False) -> "DatapathSettings":
        """No trim, unit gain and scale, zero bias."""
        cols = params.columns
        one_gain = 1 << params.drift_gain.gain_frac_bits
        gains = np.full(cols, one_gain, dtype=np.int64) if params.drift_gain.per_column else one_gain
        return cls(np.zeros(cols, dtype=np.int64), gains,
                   np.full(cols, 1 << params.batch_norm.scale_frac_bits, dtype=np.int64),
                   np.zeros(cols, dtype=np.int64), shift, relu)


def datapath(params: DatapathParams, codes: np.ndarray, settings: DatapathSettings) -> dict:
    """Every stage's result for one MVM of ADC codes (shape (slices, planes, columns)).

    Returns a dict of per-column arrays (``trimmed`` codes, ``accumulated``, ``gained``,
    ``z``, ``result``), the per-column cumulative saturation mask ``saturated`` and the
    MVM's sticky status ``flags`` (a dict over :data:`STATUS_FLAGS`).
    """
    trimmed, trim_clipped = adc_trim(params.adc, codes, settings.trims)
    accumulated, acc_sat = shift_add(params.shift_add, trimmed)
    gained, gain_clipped = drift_gain(params.drift_gain, accumulated, settings.gains)
    bn = batch_norm(params.batch_norm, gained, settings.scale, settings.bias, settings.shift, settings.relu)
    saturated = acc_sat | gain_clipped | bn["z_clipped"] | bn["result_clipped"]
    return {
        "trimmed": trimmed,
        "accumulated": accumulated,
        "gained": gained,
        "z": bn["z"],
        "result": bn["result"],
        "saturated": saturated,
        "flags": {
            "trim_saturated": bool(trim_clipped.any()),
            "acc_saturated": bool(acc_sat.any()),
            "gain_saturated": bool(gain_clipped.any()),
            "bn_saturated": bool(bn["z_clipped"].any()),
            "requant_saturated": bool(bn["result_clipped"].any()),
            "adc_timeout": False,
        },
    }


def datapath_batch(params: DatapathParams, codes: np.ndarray, settings: DatapathSettings) -> dict:
    """:func:`datapath` of a batch of MVMs in one pass (shape (batch, slices, planes, columns)).

    Every stage works column by column, so the batch is evaluated as one MVM of
    ``batch x columns`` columns with the per-column settings repeated: the same arithmetic,
    without a numpy call sequence per MVM. Returns ``result`` and ``saturated`` of shape
    (batch, columns) and the batch's sticky ``flags`` (OR over its MVMs).
    """
    codes = np.asarray(codes)
    if codes.ndim != 4:
        raise ValueError(f"codes must have shape (batch, slices, planes, columns), not {codes.shape}")
    batch, columns = codes.shape[0], params.columns
    if batch == 0 or codes.shape[3] != columns:
        raise ValueError(f"codes must have shape (batch >= 1, slices, planes, {columns}), not {codes.shape}")
    wide = replace(params, **{stage: replace(getattr(params, stage), columns=batch * columns)
                              for stage in ("adc", "shift_add", "drift_gain", "batch_norm")})

    def repeat(values):
        return np.tile(np.asarray(values), batch) if np.ndim(values) else values

    wide_settings = replace(settings, trims=repeat(settings.trims), gains=repeat(settings.gains),
                            scale=repeat(settings.scale), bias=repeat(settings.bias))
    flat = np.moveaxis(codes, 0, 2).reshape(*codes.shape[1:3], batch * columns)
    out = datapath(wide, flat, wide_settings)
    return {"result": out["result"].reshape(batch, columns), "saturated": out["saturated"].reshape(batch, columns),
            "flags": out["flags"]}


def column_beats(lanes: int, values: np.ndarray, saturated: np.ndarray) -> list[dict]:
    """Per-column values and saturation bits as stream beats ``{data, saturated, last}``."""
    groups = len(values) // lanes
    beats = []
    for g in range(groups):
        part = slice(g * lanes, (g + 1) * lanes)
        beats.append({
            "data": [int(v) for v in values[part]],
            "saturated": sum(int(bool(s)) << i for i, s in enumerate(saturated[part])),
            "last": int(g == groups - 1),
        })
    return beats


def datapath_output_beats(params: DatapathParams, codes: np.ndarray, settings: DatapathSettings) -> list[dict]:
    """The tile's result beats for one MVM: per column group, the activations, the
    cumulative saturation bit of each lane and ``last`` on the final group."""
    out = datapath(params, codes, settings)
    return column_beats(params.lanes, out["result"], out["saturated"])


def _q(bits: int, frac: int) -> str:
    return f"Q{bits - frac}.{frac}" if frac else f"Q{bits}.0 (integer)"


def fixed_point_formats(cfg: ChipConfig) -> list[dict]:
    """Every number format of the datapath for ``cfg``: name, width, fractional bits,
    signedness and the rounding/saturation rule applied when it is produced."""
    p = DatapathParams.from_config(cfg)
    W, A = p.shift_add.width, p.batch_norm.out_bits
    dp = cfg.datapath
    rows = [
        ("ADC code", cfg.adc.bits, 0, "signed", "as delivered by the ADC"),
        ("ADC trim", cfg.adc.bits, 0, "signed", "register; applied as sat(code - trim) to the ADC width"),
        ("trimmed code", cfg.adc.bits, 0, "signed", "saturated to the ADC width"),
        ("accumulator y", W, 0, "signed", "exact; saturated after every addition"),
        ("drift gain alpha", dp.gain_bits, dp.gain_frac_bits, "signed", "register"),
        ("drift-gain result y'", W, 0, "signed", "round half up, saturated to the accumulator width"),
        ("BN scale gamma", dp.bn_scale_bits, dp.bn_scale_frac_bits, "signed", "register"),
        ("BN bias beta", dp.bn_bias_bits, 0, "signed", "register, in accumulator LSBs"),
        ("BN result z", W, 0, "signed", "round(gamma*y') half up, + beta, saturated to the accumulator width"),
        ("requant shift", p.batch_norm.shift_bits, 0, "unsigned", f"register; values above {W} act as {W}"),
        ("activation q", A, 0, "signed", "ReLU (optional), round half up of z / 2**shift, saturated"),
        ("ADC timeout", TIMEOUT_BITS, 0, "unsigned", f"register, cycles; reset value {dp.adc_timeout_cycles}"),
    ]
    return [{"quantity": name, "bits": bits, "frac_bits": frac, "signedness": sign,
             "format": _q(bits, frac) if sign == "signed" else f"U{bits}", "rule": rule}
            for name, bits, frac, sign, rule in rows]


def fixed_point_table(cfg: ChipConfig) -> str:
    """The Markdown table of :func:`fixed_point_formats` (as written in docs/fixed-point.md)."""
    lines = ["| quantity | bits | fractional bits | format | produced by |", "|---|---|---|---|---|"]
    for row in fixed_point_formats(cfg):
        lines.append(f"| {row['quantity']} | {row['bits']} | {row['frac_bits']} | {row['format']} | {row['rule']} |")
    return "\n".join(lines) + "\n"
