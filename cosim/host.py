"""Host firmware sequences over the tile's CSR bus, running inside cocotb.

:class:`TileFirmware` does what the chip's firmware does, and only through the register map
(:func:`neurophase.regmap.tile_register_map`): configure the output stage, start an MVM,
read and clear STATUS, and run global drift compensation (GDC):

1. set a unit drift gain (``DRIFT.per_column = 0``, ``DRIFT_GAIN.alpha = 1.0``);
2. run the fixed calibration input set and form ``r = mean |q| * 2**shift`` from the tile's
   outputs ``q`` (per column and over the whole tile); with ``analog.gdc_source =
   "reference-columns"`` from the outputs of the reference columns instead, a tile-wide
   figure (every column gets the same alpha, as in :func:`neurophase.models.gdc.gdc_reference`);
3. ``alpha = r0 / r(t)`` against the reference taken right after programming;
4. write the gains: per tile into ``DRIFT_GAIN`` with ``DRIFT.per_column = 0``, per column
   into the ``GAIN`` array with ``DRIFT.per_column = 1``.

Running an MVM needs the rows driven with a vector, which on the chip is the activation
path and here is the co-simulation's driver: the firmware gets it as a coroutine
``run_batch(inputs) -> outputs`` (shape (batch, cols)), and the read of the reference
columns as ``run_reference(inputs) -> outputs`` (shape (batch, reference columns)).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.drift_gain import DriftGainParams, gain_to_fixed
from neurophase.models.gdc import gdc_alpha
from neurophase.regmap import TILE_MAGIC, WORD_BYTES, tile_register_map

__all__ = ["TileFirmware", "DriftReference", "FirmwareError"]

RunBatch = Callable[[np.ndarray], Awaitable[np.ndarray]]


class FirmwareError(RuntimeError):
    """The tile answered in a way the firmware cannot accept (wrong ID, configuration)."""


@dataclass(frozen=True)
class DriftReference:
    """GDC reference ``r = mean |y|`` in shift-and-add units.

    Parameters
    ----------
    per_column : float array (cols,)
        Mean over the calibration set, per column.
    per_tile : float
        Mean over the calibration set and every column.
    """

    per_column: np.ndarray
    per_tile: float


class TileFirmware:
    """Firmware of one tile, talking to it over a bus master with ``read``/``write``.

    Parameters
    ----------
    bus : object
        A bus master with ``async read(address)`` and ``async write(address, data)``
        (:class:`~neurophase.cosim.wishbone.WishboneMaster`).
    cfg : ChipConfig
        The configuration the RTL was generated for.
    """

    def __init__(self, bus, cfg: ChipConfig):
        self.bus, self.cfg = bus, cfg
        self.regmap = tile_register_map(cfg)
        self.gain_params = DriftGainParams.from_config(cfg)
        self.shift = 0
        #: Drift gains as last written: one register value (per tile) or one per column.
        self.gains: int | np.ndarray = 1 << cfg.datapath.gain_frac_bits

    # -- register access -------------------------------------------------------------
    def _field(self, register: str, field: str):
        return self.regmap.address(register), self.regmap.register(register).field(field)

    async def read_field(self, register: str, field: str) -> int:
        address, f = self._field(register, field)
        return ((await self.bus.read(address)) >> f.offset) & ((1 << f.width) - 1)

    async def write_field(self, register: str, field: str, value: int) -> None:
        """Read-modify-write of one field."""
        address, f = self._field(register, field)
        word = await self.bus.read(address)
        await self.bus.write(address, (word & ~f.mask) | f.encode(value))

    async def write_array(self, name: str, values) -> None:
        base = self.regmap.address(name)
        for index, value in enumerate(np.asarray(values).tolist()):
            await self.bus.write(base + index * WORD_BYTES, int(value) & 0xFFFF_FFFF)

    # -- sequences ------------------------------------------------------------------------
    async def identify(self) -> None:
        """Check the ID magic and that the RTL was generated for this configuration."""
        magic = await self.read_field("ID", "magic")
        if magic != TILE_MAGIC:
            raise FirmwareError(f"ID.magic is {magic:#010x}, expected {TILE_MAGIC:#010x}")
        for register, field, want in (("CONFIG0", "rows", self.cfg.tile.rows), ("CONFIG0", "cols", self.cfg.tile.cols),
                                      ("CONFIG1", "lanes", self.cfg.datapath.lanes)):
            got = await self.read_field(register, field)
            if got != want:
                raise FirmwareError(f"{register}.{field} is {got}; the firmware was built for {want}")

    async def configure_output(self, shift: int, relu: bool = False) -> None:
        """Requantisation shift and ReLU of the output stage (batch-norm left at reset: unit
        scale, zero bias)."""
        await self.write_field("BN_CTRL", "requant_shift", shift)
        await self.write_field("BN_CTRL", "relu_en", int(relu))
        self.shift = shift

    async def start_mvm(self) -> None:
        address, f = self._field("CTRL", "start")
        await self.bus.write(address, f.encode(1))

    async def status(self) -> dict[str, int]:
        word = await self.bus.read(self.regmap.address("STATUS"))
        return {f.name: (word >> f.offset) & 1 for f in self.regmap.register("STATUS").fields}

    async def clear_status(self) -> None:
        await self.bus.write(self.regmap.address("STATUS"), 0xFFFF_FFFF)

    async def mvm_count(self) -> int:
        return await self.read_field("MVM_COUNT", "count")

    async def set_tile_gain(self, alpha: float) -> int:
        """One drift gain for every column; returns the register value written."""
        code = gain_to_fixed(self.gain_params, float(alpha))
        await self.write_field("DRIFT_GAIN", "alpha", code)
        await self.write_field("DRIFT", "per_column", 0)
        self.gains = code
        return code

    async def set_column_gains(self, alphas) -> np.ndarray:
        """A drift gain per column (GAIN array); returns the register values written."""
        codes = np.array([gain_to_fixed(self.gain_params, float(a)) for a in np.asarray(alphas)], dtype=np.int64)
        await self.write_array("GAIN", codes)
        await self.write_field("DRIFT", "per_column", 1)
        self.gains = codes
        return codes

    async def measure_reference(self, run_batch: RunBatch, inputs: np.ndarray,
                                run_reference: RunBatch | None = None) -> DriftReference:
        """Calibration reads at unit gain: ``r = mean |q| * 2**shift`` per column and per tile
        from the data columns, or, when ``analog.gdc_source`` is ``"reference-columns"``, from
        the reference columns read by ``run_reference`` (the same figure for every column).

        Raises
        ------
        FirmwareError
            When the configuration asks for reference columns and no ``run_reference`` is given.
        """
        await self.set_tile_gain(1.0)
        if self.cfg.analog.gdc_source == "reference-columns":
            if run_reference is None:
                raise FirmwareError("analog.gdc_source is 'reference-columns' but no reference-column read was given")
            outputs = np.abs(np.asarray(await run_reference(inputs), dtype=np.float64)) * (1 << self.shift)
            per_tile = float(outputs.mean())
            return DriftReference(np.full(self.cfg.tile.cols, per_tile), per_tile)
        outputs = np.abs(np.asarray(await run_batch(inputs), dtype=np.float64)) * (1 << self.shift)
        return DriftReference(outputs.mean(axis=0), float(outputs.mean()))

    async def compensate_drift(self, run_batch: RunBatch, inputs: np.ndarray, r0: DriftReference,
                               granularity: str, run_reference: RunBatch | None = None) -> np.ndarray:
        """Measure ``r(t)``, compute ``alpha = r0 / r(t)`` and write it; ``granularity`` is
        ``"per-tile"`` or ``"per-column"``. Returns the register value(s) written."""
        if granularity not in ("per-tile", "per-column"):
            raise ValueError(f"granularity must be 'per-tile' or 'per-column', not {granularity!r}")
        r_t = await self.measure_reference(run_batch, inputs, run_reference)
        return await self.apply_gdc(r0, r_t, granularity)

    def alpha(self, r0: DriftReference, r_t: DriftReference, granularity: str) -> np.ndarray:
        """Per-column alpha of ``granularity`` from two references."""
        if granularity == "per-tile":
            return np.full(self.cfg.tile.cols, float(gdc_alpha(np.array(r0.per_tile), np.array(r_t.per_tile))))
        return gdc_alpha(r0.per_column, r_t.per_column)

    async def apply_gdc(self, r0: DriftReference, r_t: DriftReference, granularity: str):
        """Write the gains of ``granularity`` computed from ``r0`` and ``r_t``; returns the
        register value(s) written (one int per tile, an int array per column)."""
        alpha = self.alpha(r0, r_t, granularity)
        if granularity == "per-tile":
            return await self.set_tile_gain(alpha[0])
        return await self.set_column_gains(alpha)
