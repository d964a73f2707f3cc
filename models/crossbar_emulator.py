"""Bit-true golden model of the FPGA's digital crossbar emulator (plain numpy).

The emulator stands where the analog array and its ADCs are on the chip. It answers the
tile's ADC port (:class:`neurophase.rtl.adc_interface.AdcPortSignature`) with codes
computed from integer conductance codes held in block RAM:

Weights
    Per slice ``s``, row ``r``, column ``c`` a differential pair of unsigned conductance
    codes ``G+`` and ``G-`` of ``conductance_bits`` each; the emulated device pair
    contributes ``d = G+ - G-``. One ``WEIGHT`` array element packs ``G+`` in its low
    ``conductance_bits`` and ``G-`` just above (:func:`pack_pair`).

Conversion ``(s, b, k)`` (slice, input bit-plane, column-mux phase)
    ``sum_c = sum_r bit_b(x_r mod 2**B) * d[s, r, c]`` (exact integers), for the
    columns ``c = i*M + k`` (``M`` = ``columns_per_adc``, ``i`` = code index);
    ``noisy_i = sum_c + noise_i``;
    ``code_i = sat(floor((noisy_i * scale + 2**(F-1)) / 2**F))`` to the signed ADC width,
    with ``scale`` the host-written drift/range factor (unsigned ``SCALE_BITS``,
    ``F = SCALE_FRAC_BITS`` fractional bits: ``2**F`` is 1.0).

Read noise (deterministic pseudo-random)
    Code ``i`` has its own 16-bit Galois LFSR (taps ``0xB400``), seeded with
    ``seed ^ K_i`` (``K_i = 0x9E37 * (i+1) mod 2**16``, or ``0xACE1`` where that gives 0).
    Every conversion start advances every LFSR by one step *before* use;
    ``noise_i = (state_i mod 2**n) - 2**(n-1)`` for ``n = noise_bits`` > 0 (uniform in
    ``[-2**(n-1), 2**(n-1) - 1]``), 0 when ``n`` = 0. A reseed (or reset) loads the seeds.

Drift step
    The host ages the emulated devices by writing a new ``scale``: the factor
    ``(t / t0) ** -nu`` times the ADC range factor (:func:`drift_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig, ConfigError

__all__ = [
    "EmulatorParams", "CrossbarEmulatorModel", "pack_pair", "unpack_pair", "drift_scale",
    "lfsr_step", "lfsr_seed", "emulated_mvm", "EmulatedChipArrays", "SCALE_BITS", "SCALE_FRAC_BITS",
    "NOISE_MAX_BITS", "LFSR_TAPS",
]

#: Width of the unsigned scale (drift x range) factor.
SCALE_BITS = 16
#: Fractional bits of the scale factor: ``1 << SCALE_FRAC_BITS`` is 1.0.
SCALE_FRAC_BITS = 12
#: Largest noise width (noise is uniform in [-2**(n-1), 2**(n-1)-1] for n <= this).
NOISE_MAX_BITS = 8
#: Galois LFSR taps (x^16 + x^14 + x^13 + x^11 + 1, maximal length).
LFSR_TAPS = 0xB400
#: State used where a seed would be 0 (a Galois LFSR stays at 0 forever).
LFSR_ZERO_SEED = 0xACE1


def lfsr_step(state: int) -> int:
    """One step of the right-shifting 16-bit Galois LFSR."""
    return (state >> 1) ^ (LFSR_TAPS if state & 1 else 0)


def lfsr_seed(seed: int, index: int) -> int:
    """Initial state of the LFSR of code ``index`` for the 16-bit ``seed``."""
    value = (seed ^ ((0x9E37 * (index + 1)) & 0xFFFF)) & 0xFFFF
    return value or LFSR_ZERO_SEED


def pack_pair(g_plus, g_minus, bits: int):
    """WEIGHT element(s) holding conductance codes ``G+`` (low bits) and ``G-``."""
    return np.asarray(g_plus, dtype=np.int64) | (np.asarray(g_minus, dtype=np.int64) << bits)


def unpack_pair(word, bits: int):
    """(G+, G-) of WEIGHT element(s)."""
    word = np.asarray(word, dtype=np.int64)
    mask = (1 << bits) - 1
    return word & mask, (word >> bits) & mask


def drift_scale(t_s: float, nu: float, *, t0_s: float = 1.0, range_factor: float = 1.0) -> int:
    """The scale register value that ages the emulated devices to ``t_s`` seconds after
    programming: ``round(2**F * range_factor * (max(t, t0) / t0) ** -nu)``, saturated to
    the register width.

    Raises
    ------
    ValueError
        When ``t_s``, ``t0_s`` or ``range_factor`` is not a positive number or ``nu`` is negative.
    """
    for name, value in (("t_s", t_s), ("t0_s", t0_s), ("range_factor", range_factor)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    if not isinstance(nu, (int, float)) or not np.isfinite(nu) or nu < 0:
        raise ValueError(f"nu must be a non-negative number, not {nu!r}")
    factor = range_factor * (max(t_s, t0_s) / t0_s) ** -nu
    return int(min((1 << SCALE_BITS) - 1, round(factor * (1 << SCALE_FRAC_BITS))))


@dataclass(frozen=True)
class EmulatorParams:
    """Sizes of the crossbar emulator; shared by the RTL and this model.

    Parameters
    ----------
    rows, cols : int
        Tile size.
    slices : int
        Weight slices (one WEIGHT plane each).
    planes : int
        Input bit-planes per slice (the input width for bit-serial inputs).
    input_bits : int
        Stored input width.
    input_signed : bool
        Inputs are two's complement (plane ``b`` is still bit ``b`` of ``x mod 2**B``).
    columns_per_adc : int
        Columns sharing one ADC (``M``); codes per conversion is ``cols // M``.
    adc_bits : int
        Signed code width.
    conductance_bits : int
        Width of each conductance code.
    lanes : int
        Columns per datapath beat of the tile (part of the ADC port's description only).
    """

    rows: int = 32
    cols: int = 32
    slices: int = 1
    planes: int = 8
    input_bits: int = 8
    input_signed: bool = True
    columns_per_adc: int = 1
    adc_bits: int = 10
    conductance_bits: int = 7
    lanes: int = 8

    def __post_init__(self):
        for name in ("rows", "cols", "slices", "planes", "input_bits", "columns_per_adc", "adc_bits",
                     "conductance_bits", "lanes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"crossbar emulator {name} must be a positive integer, not {value!r}")
        if self.cols % self.columns_per_adc:
            raise ConfigError(f"crossbar emulator columns_per_adc must divide cols ({self.cols}), "
                              f"not {self.columns_per_adc!r}")

    @classmethod
    def from_config(cls, cfg: ChipConfig) -> "EmulatorParams":
        """Parameters of ``cfg``'s emulator. ``weights.devices_per_polarity`` does not enter:
        an emulated pair of codes stands for the summed pair, and codes keep their units
        for every number of devices per polarity (the analog model scales its ADC LSB)."""
        if cfg.input.mode != "bit-serial":
            raise ConfigError(f"input.mode must be 'bit-serial' for the FPGA crossbar emulator, not {cfg.input.mode!r}")
        return cls(rows=cfg.tile.rows, cols=cfg.tile.cols, slices=cfg.weights.slices, planes=cfg.input.planes,
                   input_bits=cfg.input.bits, input_signed=cfg.input.signed,
                   columns_per_adc=cfg.adc.columns_per_adc, adc_bits=cfg.adc.bits,
                   conductance_bits=cfg.fpga.conductance_bits, lanes=cfg.datapath.lanes)

    @property
    def codes_per_conversion(self) -> int:
        return self.cols // self.columns_per_adc

    @property
    def sum_bits(self) -> int:
        """Signed width of an exact column sum plus the largest noise."""
        bound = self.rows * ((1 << self.conductance_bits) - 1) + (1 << (NOISE_MAX_BITS - 1))
        return bound.bit_length() + 1

    @property
    def weight_words(self) -> int:
        """WEIGHT elements: slices x rows x cols, index ``(s*rows + r)*cols + c``."""
        return self.slices * self.rows * self.cols

    @property
    def input_range(self) -> tuple[int, int]:
        if self.input_signed:
            return -(1 << (self.input_bits - 1)), (1 << (self.input_bits - 1)) - 1
        return 0, (1 << self.input_bits) - 1


class CrossbarEmulatorModel:
    """The emulator's state (conductance codes, inputs, registers, LFSRs) and its answers.

    Parameters
    ----------
    params : EmulatorParams
    seed : int
        Initial noise seed (the reset value of the seed register).
    """

    def __init__(self, params: EmulatorParams, seed: int = 1):
        self.params = params
        p = params
        self.g_plus = np.zeros((p.slices, p.rows, p.cols), dtype=np.int64)
        self.g_minus = np.zeros((p.slices, p.rows, p.cols), dtype=np.int64)
        self.inputs = np.zeros(p.rows, dtype=np.int64)
        self.scale = 1 << SCALE_FRAC_BITS
        self.noise_bits = 0
        self.seed = seed & 0xFFFF
        self.conversions = 0
        self.reseed()

    # -- host-visible state --------------------------------------------------------
    def reseed(self, seed: int | None = None) -> None:
        """Load every LFSR from ``seed`` (default: the current seed register)."""
        if seed is not None:
            self.seed = seed & 0xFFFF
        self.lfsr = [lfsr_seed(self.seed, i) for i in range(self.params.codes_per_conversion)]

    def set_conductances(self, g_plus, g_minus) -> None:
        """Load codes of shape (slices, rows, cols), each in [0, 2**conductance_bits)."""
        p = self.params
        hi = (1 << p.conductance_bits) - 1
        for name, g in (("g_plus", g_plus), ("g_minus", g_minus)):
            g = np.asarray(g)
            if g.shape != (p.slices, p.rows, p.cols):
                raise ValueError(f"{name} must have shape {(p.slices, p.rows, p.cols)}, not {g.shape}")
            if g.size and (g.min() < 0 or g.max() > hi):
                raise ValueError(f"{name} codes must lie in [0, {hi}], found {int(g.min())} .. {int(g.max())}")
        self.g_plus = np.asarray(g_plus, dtype=np.int64).copy()
        self.g_minus = np.asarray(g_minus, dtype=np.int64).copy()

    def set_inputs(self, inputs) -> None:
        p = self.params
        x = np.asarray(inputs, dtype=np.int64)
        lo, hi = p.input_range
        if x.shape != (p.rows,) or (x.size and (x.min() < lo or x.max() > hi)):
            raise ValueError(f"inputs must be {p.rows} integers in [{lo}, {hi}], not shape {x.shape} "
                             f"range {int(x.min())} .. {int(x.max())}")
        self.inputs = x.copy()

    @property
    def weight_words(self) -> np.ndarray:
        """The WEIGHT array contents, in element order."""
        return pack_pair(self.g_plus, self.g_minus, self.params.conductance_bits).reshape(-1)

    # -- conversions -----------------------------------------------------------------
    def column_sums(self, slice_: int, plane: int) -> np.ndarray:
        """Exact ``sum_r bit_plane(x_r) * (G+ - G-)`` of every column."""
        p = self.params
        bits = (np.mod(self.inputs, 1 << p.input_bits) >> plane) & 1
        return bits @ (self.g_plus[slice_] - self.g_minus[slice_])

    def _noise(self) -> np.ndarray:
        n = self.noise_bits
        states = np.array(self.lfsr, dtype=np.int64)
        if n == 0:
            return np.zeros(len(states), dtype=np.int64)
        return (states & ((1 << n) - 1)) - (1 << (n - 1))

    def convert(self, slice_: int, plane: int, phase: int) -> np.ndarray:
        """Codes of conversion ``(slice_, plane, phase)``: code ``i`` of column ``i*M + phase``."""
        p = self.params
        self.lfsr = [lfsr_step(s) for s in self.lfsr]
        self.conversions += 1
        sums = self.column_sums(slice_, plane)[phase::p.columns_per_adc]
        noisy = sums + self._noise()
        scaled = (noisy * self.scale + (1 << (SCALE_FRAC_BITS - 1))) >> SCALE_FRAC_BITS
        half = 1 << (p.adc_bits - 1)
        return np.clip(scaled, -half, half - 1)

    def mvm_codes(self, inputs=None) -> np.ndarray:
        """Codes of a whole MVM, shape (slices, planes, cols) in column order, converted in
        the ADC interface's order (slice, plane LSB first, phase)."""
        p = self.params
        if inputs is not None:
            self.set_inputs(inputs)
        codes = np.zeros((p.slices, p.planes, p.cols), dtype=np.int64)
        for s in range(p.slices):
            for b in range(p.planes):
                for k in range(p.columns_per_adc):
                    codes[s, b, k::p.columns_per_adc] = self.convert(s, b, k)
        return codes


def emulated_mvm(cfg: ChipConfig, emulator: CrossbarEmulatorModel, settings, inputs) -> dict:
    """The FPGA top's result for one MVM: the emulator's codes for ``inputs`` (advancing its
    noise LFSRs) through the tile's bit-true datapath golden model with ``settings``
    (a :class:`neurophase.models.datapath.DatapathSettings`). Returns the datapath's
    per-stage dict plus ``codes``."""
    from neurophase.models.datapath import DatapathParams, datapath

    codes = emulator.mvm_codes(inputs)
    out = datapath(DatapathParams.from_config(cfg), codes, settings)
    return {**out, "codes": codes}


class EmulatedChipArrays:
    """The FPGA chip top's analog side: one crossbar emulator shared by every tile, as a
    code source of :class:`neurophase.models.chip_golden.ChipInterpreter`.

    One tile converts at a time on the chip, so the FPGA chip top answers every tile's
    conversions with one emulator: the codes of tile ``t`` come from its own conductance
    codes, and the noise LFSRs step once per conversion, whichever tile asked. Calling this
    object as ``codes(tile, drive, block_index, position)`` converts one MVM of ``tile`` with
    ``drive`` on its rows (the interpreter calls it in the chip's order).

    Parameters
    ----------
    params : EmulatorParams
    tiles : int
        Tiles on the chip.
    seed : int
        Initial noise seed.

    Attributes
    ----------
    emulator : CrossbarEmulatorModel
        The shared emulator (``scale``, ``noise_bits``, :meth:`~CrossbarEmulatorModel.reseed`).
    """

    def __init__(self, params: EmulatorParams, tiles: int, seed: int = 1):
        if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 1:
            raise ValueError(f"tiles must be a positive integer, not {tiles!r}")
        self.params = params
        self.tiles = tiles
        shape = (tiles, params.slices, params.rows, params.cols)
        self.g_plus = np.zeros(shape, dtype=np.int64)
        self.g_minus = np.zeros(shape, dtype=np.int64)
        self.emulator = CrossbarEmulatorModel(params, seed)

    def load_weights(self, tile: int, weights) -> None:
        """Integer weights of ``tile``, (rows, cols) or (slices, rows, cols), as differential
        code pairs ``G+ = max(w, 0)``, ``G- = max(-w, 0)`` (what the host writes).

        Raises
        ------
        ValueError
            For a tile outside the chip, another shape, or a magnitude above the largest code.
        """
        p = self.params
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or not 0 <= tile < self.tiles:
            raise ValueError(f"tile must be an integer from 0 to {self.tiles - 1}, not {tile!r}")
        w = np.asarray(weights)
        if w.shape == (p.rows, p.cols) and p.slices == 1:
            w = w[None]
        hi = (1 << p.conductance_bits) - 1
        if w.shape != (p.slices, p.rows, p.cols) or not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"weights of tile {tile} must be integers of shape {(p.slices, p.rows, p.cols)}, "
                             f"not {w.dtype} of shape {w.shape}")
        if w.size and np.abs(w).max() > hi:
            raise ValueError(f"weights of tile {tile} must lie in [-{hi}, {hi}] for {p.conductance_bits}-bit "
                             f"conductance codes, found {int(np.abs(w).max())}")
        self.g_plus[tile], self.g_minus[tile] = np.maximum(w, 0), np.maximum(-w, 0)

    def __call__(self, tile: int, drive, block_index: int, position: int) -> np.ndarray:
        em = self.emulator
        em.g_plus, em.g_minus = self.g_plus[tile], self.g_minus[tile]
        em.set_inputs(drive)
        return em.mvm_codes()
