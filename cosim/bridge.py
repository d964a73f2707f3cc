"""The crossbar bridge: the analog array model answering the tile RTL's ADC port.

Two halves, shaped like cocotb's ``examples/analog_model/afe.py``:

:class:`CrossbarBridge` (plain Python, no simulator)
    Holds the programmed :class:`~neurophase.models.crossbar.AnalogTile`, the present model
    time and the random generator of every read. :meth:`CrossbarBridge.read` asks the
    model for the ADC codes of every slice, bit-plane and column of a batch of MVMs at the
    present model time, in one numpy call.

:class:`HdlAdcBridge` (cocotb, transaction level)
    Hands one MVM's codes to the HDL ADC server of
    :class:`~neurophase.cosim.harness.TileCosimHarness`, which answers each conversion the
    RTL starts after the configured latency. Python therefore acts once per MVM; counters
    and strobes stay in HDL, and idle time costs no Python at all.

:func:`pack_codes` and :func:`unpack_results` convert between numpy arrays and the packed
integers of the harness ports, vectorised (no per-element Python loop).
"""

from __future__ import annotations

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.crossbar import AnalogTile
from neurophase.models.devices import check_time

__all__ = ["CrossbarBridge", "HdlAdcBridge", "pack_codes", "pack_fields", "unpack_fields", "unpack_results"]


def pack_fields(values: np.ndarray, bits: int) -> int:
    """Pack integers (two's complement, ``bits`` each, element 0 in the LSBs) into one int."""
    flat = np.asarray(values, dtype=np.int64).ravel() & ((1 << bits) - 1)
    if bits in (8, 16, 32):  # byte-aligned fields: their little-endian bytes are the packing
        return int.from_bytes(flat.astype(f"<u{bits // 8}").tobytes(), "little")
    planes = (flat[:, None] >> np.arange(bits, dtype=np.int64)) & 1
    return int.from_bytes(np.packbits(planes.astype(np.uint8).ravel(), bitorder="little").tobytes(), "little")


def _bits(value: int, count: int) -> np.ndarray:
    """The ``count`` low bits of ``value``, LSB first, as a uint8 array."""
    raw = np.frombuffer(int(value).to_bytes((count + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:count]


def _fields_from_bits(bits: np.ndarray, width: int, signed: bool) -> np.ndarray:
    """Rows of ``width`` bits (LSB first) -> int64 values (``width`` <= 62)."""
    out = bits.reshape(-1, width).astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))
    if signed:
        out = np.where(out >> (width - 1), out - (np.int64(1) << width), out)
    return out


def unpack_fields(value: int, count: int, bits: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_fields`: ``count`` fields of ``bits`` (<= 62) from ``value``, int64."""
    return _fields_from_bits(_bits(value, count * bits), bits, signed)


def pack_codes(cfg: ChipConfig, codes: np.ndarray) -> int:
    """One MVM's codes (slices, planes, cols) as the harness's ``mvm_codes`` integer."""
    codes = np.asarray(codes)
    expected = (cfg.weights.slices, cfg.input.planes, cfg.tile.cols)
    if codes.shape != expected:
        raise ValueError(f"codes must have shape {expected} (slices, planes, cols), not {codes.shape}")
    return pack_fields(codes, cfg.adc.bits)


def unpack_results(cfg: ChipConfig, value: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The harness's captured ``result`` integer as (values (cols,), saturated (cols,) bool,
    last (groups,) bool); beat g carries columns g*lanes .. g*lanes+lanes-1."""
    lanes, bits = cfg.datapath.lanes, cfg.datapath.activation_bits
    groups = cfg.tile.cols // lanes
    beat_bits = lanes * bits + lanes + 1
    beats = _bits(value, groups * beat_bits).reshape(groups, beat_bits)
    values = _fields_from_bits(beats[:, : lanes * bits], bits, signed=True)
    saturated = beats[:, lanes * bits: lanes * bits + lanes].astype(bool).ravel()
    last = beats[:, -1].astype(bool)
    return values, saturated, last


class CrossbarBridge:
    """The analog model side of the bridge: a programmed tile read at the model time.

    Parameters
    ----------
    tile : AnalogTile
        The programmed array (:func:`neurophase.models.crossbar.build_tile`).
    rng : numpy.random.Generator
        Source of every read-noise and ADC-noise draw.
    time_s : float
        Initial model time since programming, seconds.

    Attributes
    ----------
    reads : int
        MVMs read from the model so far.
    """

    def __init__(self, tile: AnalogTile, rng: np.random.Generator, time_s: float = 0.0):
        if not isinstance(tile, AnalogTile):
            raise TypeError(f"tile must be an AnalogTile, not {tile!r}")
        self.tile = tile
        self.cfg = tile.cfg
        self.rng = rng
        self._time_s = check_time(time_s)
        self.reads = 0
        self._ideal_matrix: np.ndarray | None = None

    @property
    def time_s(self) -> float:
        """Model time since programming, seconds."""
        return self._time_s

    def advance_to(self, time_s: float) -> None:
        """Step model time forward to ``time_s`` (the drift scenario's time points)."""
        time_s = check_time(time_s)
        if time_s < self._time_s:
            raise ValueError(f"model time can only advance: {time_s!r} s is before the present {self._time_s!r} s")
        self._time_s = time_s

    def read(self, inputs: np.ndarray) -> np.ndarray:
        """ADC codes of a batch of MVMs at the present model time, one model call.

        Parameters
        ----------
        inputs : int array, shape (batch, rows)

        Returns
        -------
        int16 array, shape (batch, slices, planes, cols)
        """
        inputs = np.atleast_2d(inputs)
        codes = self.tile.adc_codes(inputs, self._time_s, self.rng)
        self.reads += len(inputs)
        return codes

    def read_reference(self, inputs: np.ndarray) -> np.ndarray:
        """ADC codes of the reference columns for a batch of MVMs at the present model time,
        laid out as a whole MVM (batch, slices, planes, cols): reference column k in column
        k, zeros beyond the reference columns. The reference columns share the ADCs and the
        digital periphery with the data columns, so the firmware reads them as one MVM
        (:func:`neurophase.models.gdc.gdc_reference` pads them the same way)."""
        inputs = np.atleast_2d(inputs)
        reference = self.tile.reference_codes(inputs, self._time_s, self.rng)
        width = min(reference.shape[-1], self.cfg.tile.cols)
        if width == 0:
            raise ValueError("analog.gdc_source 'reference-columns' needs analog.reference_columns >= 1, not 0")
        codes = np.zeros(reference.shape[:-1] + (self.cfg.tile.cols,), dtype=reference.dtype)
        codes[..., :width] = reference[..., :width]
        self.reads += len(inputs)
        return codes

    @property
    def reference_width(self) -> int:
        """Reference columns read by :meth:`read_reference` (at most a tile's columns)."""
        return min(self.cfg.analog.reference_columns, self.cfg.tile.cols)

    def ideal(self, inputs: np.ndarray) -> np.ndarray:
        """The float MVM ``x . W`` of the programmed (unquantised-scale) weights in
        shift-and-add result units (one unit digit = g_unit / LSB codes), (batch, cols)."""
        if self._ideal_matrix is None:
            tile = self.tile
            self._ideal_matrix = tile.weights() / tile.state.scale * (tile.mapping.g_unit / tile.lsb_us)
        return np.atleast_2d(inputs).astype(np.float64) @ self._ideal_matrix


class HdlAdcBridge:
    """Transaction-level bridge driver: loads one MVM's codes into the harness's HDL ADC
    server, which answers each conversion after the configured latency.

    Parameters
    ----------
    dut : cocotb handle
        The :class:`~neurophase.cosim.harness.TileCosimHarness` top level.
    cfg : ChipConfig
    """

    def __init__(self, dut, cfg: ChipConfig):
        self.dut, self.cfg = dut, cfg
        self.loaded = 0
        dut.adc_external.value = 0
        dut.adc__done.value = 0  # the external ADC port is unused: no X on 4-state simulators
        dut.adc__codes.value = 0
        dut.mvm_codes.value = 0  # defined before the first MVM's codes arrive

    def load(self, codes: np.ndarray) -> None:
        """Present ``codes`` (slices, planes, cols) for the next MVM's conversions."""
        self.dut.mvm_codes.value = pack_codes(self.cfg, codes)
        self.loaded += 1

    def conversions(self) -> int:
        """Conversions the HDL ADC server has answered since reset."""
        return self.dut.conversions.value.to_unsigned()
