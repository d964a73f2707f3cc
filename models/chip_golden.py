"""Bit-true model of the chip running a program: the layer sequencer's interpreter and its
cycle estimate.

:class:`ChipInterpreter` executes a list of :class:`~neurophase.models.chip_isa.Instruction`
exactly as the instruction set (:mod:`neurophase.models.chip_isa`) says, on the chip's
memories: the activation memory (``sequencer.activation_words`` entries), the batch-norm
parameter memories (``sequencer.param_words`` scales and biases), the partial-sum buffer
(``sequencer.psum_words`` entries, kept between instructions like the RTL's) and every
tile's trim and drift-gain registers. The analog part of an MVM comes from a *code
source*, a callable ``codes(tile, drive, block_index, position)`` returning the ADC codes
(slices, planes, tile.cols) of one read of ``tile`` with row drive ``drive`` (tile.rows,);
``block_index`` counts the BLOCK entries of the program in program order, ``position`` is
``oy * out_w + ox``. The digital arithmetic is the models' own: offset trim
(:func:`~neurophase.models.adc_interface.adc_trim`), shift-and-add
(:func:`~neurophase.models.shift_add.shift_add`) and drift gain
(:func:`~neurophase.models.drift_gain.drift_gain`) of the whole tile, the partial-sum adder
saturating to the instruction's ``psum_bits`` after every addition, the batch-norm unit
(:func:`~neurophase.models.batch_norm.batch_norm`) at ``psum_bits``.

Execution is sequential like the hardware's: an MVM reads its inputs position by position
and writes each position's outputs before the next position's reads; pooling, ADD and
RELU read and write element by element in address order of their outputs (a vectorised
path is taken only where no output address is read by the same instruction).

Errors (:class:`ChipProgramError`, codes of :class:`ErrorCode`, the same numbers as the
chip's ``ERROR.code`` register) stop the program where the sequencer stops, with every
write before the failing one done:

* fetch: ``pc >= program_words`` (6); an opcode that is not an instruction, or a BLOCK
  entry reached outside an MVM (1); an MVM whose ``kernel_*`` or ``stride_*`` is 0, whose
  ``outputs`` exceed ``psum_words`` or whose ``psum_bits`` is outside 2 ..
  ``ChipConfig.psum_bits``, a pooling with a zero kernel or
  stride (1); an MVM whose ``param_base + outputs > param_words`` (7), checked at decode;
* MVM, per position and per block in program order: a BLOCK fetched beyond the program
  memory (6) or not a BLOCK (1); a block with ``tile >= tile.count``, ``tile_row + rows >
  tile.rows``, ``tile_col + cols > tile.cols``, ``n_start + cols > psum_words`` or ``>
  outputs`` (5, with the tile; checked when the block is first fetched); an input address
  ``>= activation_words`` (2) at the BLOCK's pc; then an output address ``>=
  activation_words`` (2) at the MVM's pc;
* every other read or write address ``>= activation_words`` (2).

The gather of a block starts at kernel position ``(c0, ky0, kx0)`` and counts ``kx`` then
``ky`` then ``c`` for ``rows`` inputs; ``k_start`` only chooses load (0) or add. ADC
timeouts (3) and aborts (4) are events of the hardware's timing and are not modelled.

:func:`estimate_cycles` is the documented cycle model of the sequencer (constants in
:class:`CycleModel`), to be tuned against the RTL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.adc_interface import AdcInterfaceParams, adc_trim
from neurophase.models.batch_norm import BatchNormParams, batch_norm
from neurophase.models.chip_isa import RECIPROCAL_BITS, Instruction, IsaError, Opcode
from neurophase.models.drift_gain import DriftGainParams, drift_gain
from neurophase.models.fixed_point import round_half_up_shift, saturate, signed_range
from neurophase.models.shift_add import ShiftAddParams, shift_add

#: Width of the statistics windows' entries (saturating).
STATS_BITS = 64

__all__ = ["ErrorCode", "ChipProgramError", "ChipInterpreter", "RunStats", "CycleModel", "CYCLE_MODEL",
           "estimate_cycles", "ideal_code_source", "block_positions"]

#: ``codes(tile, drive, block_index, position) -> (slices, planes, tile.cols)`` ADC codes.
CodeSource = Callable[[int, np.ndarray, int, int], np.ndarray]


class ErrorCode(enum.IntEnum):
    """The sequencer's ``ERROR.code`` values (``neurophase.chip_regmap.ERROR_CODES``)."""

    NONE = 0
    INVALID_INSTRUCTION = 1
    ACTIVATION_ADDRESS = 2
    ADC_TIMEOUT = 3
    ABORTED = 4
    BAD_BLOCK = 5
    PC_OUT_OF_RANGE = 6
    PARAM_ADDRESS = 7


class ChipProgramError(RuntimeError):
    """A program stopped by the sequencer with an error.

    Parameters
    ----------
    code : int
        :class:`ErrorCode` value.
    pc : int
        The instruction (or BLOCK entry) that stopped.
    tile : int
        The tile of a bad block (0 otherwise).
    detail : str
        What was wrong, for the message.
    """

    def __init__(self, code: int, pc: int, tile: int = 0, detail: str = ""):
        self.code, self.pc, self.tile = ErrorCode(code), int(pc), int(tile)
        where = f"pc {self.pc}" + (f", tile {self.tile}" if self.code == ErrorCode.BAD_BLOCK else "")
        super().__init__(f"sequencer error {int(self.code)} ({self.code.name.lower().replace('_', ' ')}) at "
                         f"{where}: {detail}")


@dataclass
class RunStats:
    """What one program run did.

    Parameters
    ----------
    instructions : int
        Instructions executed (END included, BLOCK entries not).
    mvms : int
        Tile MVMs (one per output position and block).
    psum_saturations, bn_saturations : int
        Partial sums clipped by the adder; batch-norm results clipped (``z`` or the activation).
    cycles : int
        :func:`estimate_cycles` summed over the executed instructions.
    per_pc : dict
        ``pc -> {"psum": n, "bn": n, "mvms": n, "cycles": n}`` of every executed instruction.
    """

    instructions: int = 0
    mvms: int = 0
    psum_saturations: int = 0
    bn_saturations: int = 0
    cycles: int = 0
    per_pc: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"instructions": self.instructions, "mvms": self.mvms, "psum_saturations": self.psum_saturations,
                "bn_saturations": self.bn_saturations, "cycles": self.cycles}


@dataclass(frozen=True)
class CycleModel:
    """The constants of the cycle estimate (clock cycles), in one place.

    Per instruction ``fetch``. An MVM, per output position and block: ``block_fetch`` +
    ``rows`` + ``gather`` + ``slices * planes * columns_per_adc * (adc.latency_cycles +
    conversion_overhead)`` + ``tile.cols / lanes`` + ``tile_pipeline`` + (tile-output beats
    overlapping the block's columns) * ``lanes``; per position ``outputs`` + ``batch_norm``.
    A pooling: per output ``kh * kw * pool_per_read + pool_per_output``. ADD and RELU: per
    element ``elementwise``.
    """

    fetch: int = 4
    block_fetch: int = 8
    gather: int = 5
    conversion_overhead: int = 1
    tile_pipeline: int = 9
    batch_norm: int = 11
    pool_per_read: int = 1
    pool_per_output: int = 16
    elementwise: int = 4


CYCLE_MODEL = CycleModel()


def _beats(first_col: int, cols: int, lanes: int) -> int:
    return (first_col + cols - 1) // lanes - first_col // lanes + 1 if cols else 0


def block_cycles(cfg: ChipConfig, block: Instruction, model: CycleModel = CYCLE_MODEL) -> int:
    """Cycles of one block at one output position (see :class:`CycleModel`)."""
    lanes = cfg.datapath.lanes
    conversions = cfg.weights.slices * cfg.input.planes * cfg.adc.columns_per_adc
    return (model.block_fetch + block["rows"] + model.gather
            + conversions * (cfg.adc.latency_cycles + model.conversion_overhead)
            + cfg.tile.cols // lanes + model.tile_pipeline + _beats(block["tile_col"], block["cols"], lanes) * lanes)


def estimate_cycles(cfg: ChipConfig, instruction: Instruction, blocks: Sequence[Instruction] = (),
                    model: CycleModel = CYCLE_MODEL) -> int:
    """Estimated clock cycles of one instruction (an MVM with its ``blocks`` BLOCK entries).

    Parameters
    ----------
    cfg : ChipConfig
    instruction : Instruction
    blocks : sequence of Instruction
        The BLOCK entries of an MVM (ignored for other opcodes).
    model : CycleModel
        The constants.

    Returns
    -------
    int
    """
    op = instruction.opcode
    cycles = model.fetch
    if op == Opcode.MVM:
        positions = instruction["out_h"] * instruction["out_w"]
        per_position = sum(block_cycles(cfg, b, model) for b in blocks) + instruction["outputs"] + model.batch_norm
        cycles += positions * per_position
    elif op in (Opcode.POOL_MAX, Opcode.POOL_AVG):
        outputs = instruction["channels"] * instruction["out_h"] * instruction["out_w"]
        window = instruction["kernel_h"] * instruction["kernel_w"]
        cycles += outputs * (window * model.pool_per_read + model.pool_per_output)
    elif op in (Opcode.ADD, Opcode.RELU):
        cycles += instruction["length"] * model.elementwise
    return cycles


def block_positions(instruction: Instruction, block: Instruction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The im2col inputs a block gathers: channel, kernel row and kernel column (rows,) each,
    counting from ``(c0, ky0, kx0)``."""
    kh, kw = instruction["kernel_h"], instruction["kernel_w"]
    k = (block["c0"] * kh + block["ky0"]) * kw + block["kx0"] + np.arange(block["rows"], dtype=np.int64)
    return k // (kh * kw), (k // kw) % kh, k % kw


def ideal_code_source(cfg: ChipConfig, tile_weights: Sequence[np.ndarray]) -> CodeSource:
    """A code source of noise-free codes with one LSB per unit weight digit
    (:func:`neurophase.models.crossbar.ideal_codes`) of the integer weights of every tile."""
    from neurophase.models.crossbar import ideal_codes

    weights = [np.asarray(w, dtype=np.int64) for w in tile_weights]

    def codes(tile: int, drive: np.ndarray, block_index: int, position: int) -> np.ndarray:
        return ideal_codes(cfg, weights[tile], drive[None])[0]

    return codes


def _check_memory(name: str, values, size: int, bits: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (size,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be {size} integers, not {array.dtype} of shape {array.shape}")
    if bits is not None and array.size:
        lo, hi = signed_range(bits)
        if array.min() < lo or array.max() > hi:
            raise ValueError(f"{name} must hold signed {bits}-bit values [{lo}, {hi}]; found "
                             f"{int(array.min())} .. {int(array.max())}")
    return array.astype(np.int64).copy()


class ChipInterpreter:
    """The chip's memories and registers, and the sequencer executing programs on them.

    Parameters
    ----------
    cfg : ChipConfig
    codes : callable
        The code source ``codes(tile, drive, block_index, position)``.
    activations : int array (activation_words,), optional
        Initial activation memory (zeros by default).
    bn_scale, bn_bias : int arrays (param_words,), optional
        Batch-norm parameter memories (zeros by default).
    trims, gains : int arrays (tile.count, tile.cols), optional
        Trim and drift-gain registers of every tile (0 and the unit gain by default).

    Attributes
    ----------
    activations, bn_scale, bn_bias, trims, gains, psum : int64 arrays
        The memories and registers; write them between runs like the host does.
    statistics : dict or None
        The statistics windows while ``CTRL.stats_en`` is set (:meth:`enable_statistics`):
        ``sum``, ``squares`` and ``abs`` of every batch-norm input, one Python integer per
        parameter entry (64-bit saturating); None while it is clear.
    """

    def __init__(self, cfg: ChipConfig, codes: CodeSource, activations=None, bn_scale=None, bn_bias=None,
                 trims=None, gains=None):
        seq, dp, tiles = cfg.sequencer, cfg.datapath, (cfg.tile.count, cfg.tile.cols)
        self.cfg = cfg
        self.codes = codes
        self.activations = (np.zeros(seq.activation_words, dtype=np.int64) if activations is None else
                            _check_memory("activations", activations, seq.activation_words, cfg.input.bits))
        self.bn_scale = (np.zeros(seq.param_words, dtype=np.int64) if bn_scale is None else
                         _check_memory("bn_scale", bn_scale, seq.param_words, dp.bn_scale_bits))
        self.bn_bias = (np.zeros(seq.param_words, dtype=np.int64) if bn_bias is None else
                        _check_memory("bn_bias", bn_bias, seq.param_words, dp.bn_bias_bits))
        self.trims = np.zeros(tiles, dtype=np.int64) if trims is None else self._registers("trims", trims)
        self.gains = (np.full(tiles, 1 << dp.gain_frac_bits, dtype=np.int64) if gains is None else
                      self._registers("gains", gains))
        self.psum = np.zeros(seq.psum_words, dtype=np.int64)
        self.statistics: dict | None = None
        self._adc = AdcInterfaceParams.from_config(cfg)
        self._shift_add = ShiftAddParams.from_config(cfg)
        self._gain = DriftGainParams.from_config(cfg)
        self._program: list = []

    def _registers(self, name: str, values) -> np.ndarray:
        array = np.asarray(values)
        shape = (self.cfg.tile.count, self.cfg.tile.cols)
        if array.shape != shape or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must be integers of shape (tile.count, tile.cols) = {shape}, not "
                             f"{array.dtype} of shape {array.shape}")
        return array.astype(np.int64).copy()

    def enable_statistics(self, statistics: dict | None = None) -> dict:
        """Accumulate every batch-norm input into the statistics windows (``CTRL.stats_en``):
        into ``statistics`` (windows of an earlier run, kept as the chip keeps them) or into
        cleared ones; returns the windows."""
        entries = self.cfg.sequencer.param_words
        if statistics is None:
            statistics = {name: [0] * entries for name in ("sum", "squares", "abs")}
        elif sorted(statistics) != ["abs", "squares", "sum"] or any(len(v) != entries for v in statistics.values()):
            raise ValueError(f"statistics must map sum, squares and abs to {entries} entries (sequencer.param_words)")
        self.statistics = statistics
        return statistics

    def _accumulate(self, param_base: int, y: np.ndarray) -> None:
        top = (1 << STATS_BITS) - 1
        windows = self.statistics
        for e, value in enumerate(y.tolist(), start=param_base):
            windows["sum"][e] = min(max(windows["sum"][e] + value, -(top + 1) // 2), top // 2)
            windows["squares"][e] = min(windows["squares"][e] + value * value, top)
            windows["abs"][e] = min(windows["abs"][e] + abs(value), top)

    # -- program memory -------------------------------------------------------------
    def load_program(self, program: Sequence) -> None:
        """Write ``program`` (Instructions or 256-bit words) at program address 0; the rest of
        the program memory holds 0 (an invalid instruction)."""
        words = [p.encode() if isinstance(p, Instruction) else int(p) for p in program]
        if len(words) > self.cfg.sequencer.program_words:
            raise ValueError(f"a program of {len(words)} instructions does not fit sequencer.program_words "
                             f"({self.cfg.sequencer.program_words})")
        if any(not 0 <= w < 1 << 256 for w in words):
            raise ValueError("program words must be 256-bit unsigned integers")
        self._program = words

    def _fetch(self, pc: int) -> Instruction:
        if pc >= self.cfg.sequencer.program_words:
            raise ChipProgramError(ErrorCode.PC_OUT_OF_RANGE, pc, detail=f"beyond the {self.cfg.sequencer.program_words}"
                                                                         "-instruction program memory")
        word = self._program[pc] if pc < len(self._program) else 0
        try:
            return Instruction.decode(word)
        except IsaError as exc:
            raise ChipProgramError(ErrorCode.INVALID_INSTRUCTION, pc, detail=str(exc)) from None

    # -- execution ------------------------------------------------------------------------
    def run(self, program: Sequence | None = None, entry: int = 0) -> RunStats:
        """Execute from ``entry`` until END (loading ``program`` first when given).

        Returns
        -------
        RunStats

        Raises
        ------
        ChipProgramError
            Where the sequencer stops with an error.
        """
        if program is not None:
            self.load_program(program)
        stats, pc = RunStats(), int(entry)
        while True:
            ins = self._fetch(pc)
            stats.instructions += 1
            if ins.opcode == Opcode.END:
                self._count(stats, pc, cycles=estimate_cycles(self.cfg, ins))
                return stats
            if ins.opcode == Opcode.BLOCK:
                raise ChipProgramError(ErrorCode.INVALID_INSTRUCTION, pc, detail="a BLOCK entry outside an MVM")
            if ins.opcode == Opcode.MVM:
                blocks = self._mvm(pc, ins, stats)
                self._count(stats, pc, cycles=estimate_cycles(self.cfg, ins, blocks))
                pc += 1 + ins["blocks"]
                continue
            if ins.opcode in (Opcode.POOL_MAX, Opcode.POOL_AVG):
                self._pool(pc, ins)
            elif ins.opcode == Opcode.ADD:
                self._add(pc, ins)
            else:
                self._relu(pc, ins)
            self._count(stats, pc, cycles=estimate_cycles(self.cfg, ins))
            pc += 1

    @staticmethod
    def _count(stats: RunStats, pc: int, **values) -> None:
        entry = stats.per_pc.setdefault(pc, {"psum": 0, "bn": 0, "mvms": 0, "cycles": 0})
        for key, value in values.items():
            entry[key] += value
        stats.cycles += values.get("cycles", 0)

    # -- MVM -----------------------------------------------------------------------------------
    def _check_mvm(self, pc: int, ins: Instruction) -> None:
        zero = [n for n in ("kernel_h", "kernel_w", "stride_h", "stride_w") if ins[n] == 0]
        if zero:
            raise ChipProgramError(ErrorCode.INVALID_INSTRUCTION, pc, detail=f"MVM {zero[0]} is 0")
        if ins["outputs"] > self.cfg.sequencer.psum_words:
            raise ChipProgramError(ErrorCode.INVALID_INSTRUCTION, pc, detail=f"MVM outputs {ins['outputs']} exceed "
                                                                             f"psum_words {self.cfg.sequencer.psum_words}")
        if not 2 <= ins["psum_bits"] <= self.cfg.psum_bits:
            raise ChipProgramError(ErrorCode.INVALID_INSTRUCTION, pc,
                                   detail=f"MVM psum_bits {ins['psum_bits']} outside 2 .. {self.cfg.psum_bits}")
        if ins["param_base"] + ins["outputs"] > self.cfg.sequencer.param_words:
            raise ChipProgramError(ErrorCode.PARAM_ADDRESS, pc,
                                   detail=f"param_base {ins['param_base']} + outputs {ins['outputs']} > "
                                          f"param_words {self.cfg.sequencer.param_words}")

    def _block(self, mvm: Instruction, pc: int) -> Instruction:
        block = self._fetch(pc)
        if block.opcode != Opcode.BLOCK:
            raise ChipProgramError(ErrorCode.INVALID_INSTRUCTION, pc, detail=f"{block.opcode.name} where the MVM's "
                                                                             "BLOCK entry should be")
        cfg, tile = self.cfg, block["tile"]
        limits = (("tile", tile, "tile.count", cfg.tile.count - 1),
                  ("tile_row + rows", block["tile_row"] + block["rows"], "tile.rows", cfg.tile.rows),
                  ("tile_col + cols", block["tile_col"] + block["cols"], "tile.cols", cfg.tile.cols),
                  ("n_start + cols", block["n_start"] + block["cols"], "sequencer.psum_words", cfg.sequencer.psum_words),
                  ("n_start + cols", block["n_start"] + block["cols"], "the MVM's outputs", mvm["outputs"]))
        for what, value, name, top in limits:
            if value > top:
                raise ChipProgramError(ErrorCode.BAD_BLOCK, pc, tile, f"{what} = {value} exceeds {name} ({top})")
        return block

    def _mvm(self, pc: int, ins: Instruction, stats: RunStats) -> list:
        self._check_mvm(pc, ins)
        cfg = self.cfg
        words = cfg.sequencer.activation_words
        out_h, out_w = ins["out_h"], ins["out_w"]
        outputs, psum_bits = ins["outputs"], ins["psum_bits"]
        lo, hi = signed_range(psum_bits)
        bn = BatchNormParams(width=psum_bits, out_bits=cfg.datapath.activation_bits, columns=max(outputs, 1), lanes=1,
                             scale_bits=cfg.datapath.bn_scale_bits, scale_frac_bits=cfg.datapath.bn_scale_frac_bits,
                             bias_bits=cfg.datapath.bn_bias_bits)
        params = slice(ins["param_base"], ins["param_base"] + outputs)
        shift = min(ins["shift"], psum_bits)
        out_offsets = np.arange(outputs, dtype=np.int64) * (out_h * out_w)
        blocks: list = []
        gathers: list = []
        block_base = sum(1 for p in range(min(pc, len(self._program))) if self._program[p] & 0xF == Opcode.BLOCK)
        for position in range(out_h * out_w):
            oy, ox = divmod(position, out_w)
            for j in range(ins["blocks"]):
                if position == 0:
                    blocks.append(self._block(ins, pc + 1 + j))
                    gathers.append(block_positions(ins, blocks[j]))
                block = blocks[j]
                drive = self._gather(pc + 1 + j, ins, gathers[j], oy, ox, block)
                gained = self._tile(block["tile"], drive, block_base + j, position)
                cols = slice(block["n_start"], block["n_start"] + block["cols"])
                part = gained[block["tile_col"]:block["tile_col"] + block["cols"]]
                total = part if block["k_start"] == 0 else self.psum[cols] + part
                clipped = np.clip(total, lo, hi)
                self._count(stats, pc, psum=int(np.count_nonzero(clipped != total)), mvms=1)
                stats.psum_saturations += int(np.count_nonzero(clipped != total))
                stats.mvms += 1
                self.psum[cols] = clipped
            if outputs == 0:
                continue
            if self.statistics is not None:
                self._accumulate(ins["param_base"], self.psum[:outputs])
            out = batch_norm(bn, self.psum[:outputs], self.bn_scale[params], self.bn_bias[params], shift,
                             bool(ins["relu"]))
            saturated = int(np.count_nonzero(out["z_clipped"] | out["result_clipped"]))
            stats.bn_saturations += saturated
            self._count(stats, pc, bn=saturated)
            self._write(pc, ins["out_base"] + out_offsets + oy * out_w + ox, out["result"], words)
        return blocks

    def _gather(self, pc: int, ins: Instruction, gather: tuple, oy: int, ox: int, block: Instruction) -> np.ndarray:
        c, ky, kx = gather
        in_h, in_w = ins["in_h"], ins["in_w"]
        iy = oy * ins["stride_h"] + ky - ins["pad_top"]
        ix = ox * ins["stride_w"] + kx - ins["pad_left"]
        inside = (iy >= 0) & (iy < in_h) & (ix >= 0) & (ix < in_w)
        address = ins["in_base"] + c * (in_h * in_w) + iy * in_w + ix
        self._check_reads(pc, address[inside])
        drive = np.zeros(self.cfg.tile.rows, dtype=np.int64)
        rows = slice(block["tile_row"], block["tile_row"] + block["rows"])
        drive[rows] = np.where(inside, self.activations[np.where(inside, address, 0)], 0)
        return drive

    def _tile(self, tile: int, drive: np.ndarray, block_index: int, position: int) -> np.ndarray:
        cfg = self.cfg
        codes = np.asarray(self.codes(tile, drive, block_index, position))
        expected = (cfg.weights.slices, cfg.input.planes, cfg.tile.cols)
        if codes.shape != expected or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"the code source must return integer codes of shape (slices, planes, tile.cols) = "
                             f"{expected}, not {codes.dtype} of shape {codes.shape}")
        trims, gains = self.trims[tile], self.gains[tile]
        if np.any(trims):
            codes, _ = adc_trim(self._adc, codes, trims)
        acc, _ = shift_add(self._shift_add, codes)
        gained, _ = drift_gain(self._gain, acc, gains)
        return gained

    # -- memory access ---------------------------------------------------------------------------
    def _check_reads(self, pc: int, addresses: np.ndarray) -> None:
        bad = addresses >= self.cfg.sequencer.activation_words
        if np.any(bad):
            raise ChipProgramError(ErrorCode.ACTIVATION_ADDRESS, pc,
                                   detail=f"read of activation address {int(addresses[bad][0])} >= activation_words "
                                          f"{self.cfg.sequencer.activation_words}")

    def _write(self, pc: int, addresses: np.ndarray, values: np.ndarray, words: int) -> None:
        bad = np.flatnonzero(addresses >= words)
        first = bad[0] if len(bad) else len(addresses)
        self.activations[addresses[:first]] = values[:first]
        if len(bad):
            raise ChipProgramError(ErrorCode.ACTIVATION_ADDRESS, pc,
                                   detail=f"write of activation address {int(addresses[first])} >= activation_words "
                                          f"{words}")

    def _elementwise(self, pc: int, reads: np.ndarray, valid: np.ndarray, writes: np.ndarray,
                     compute: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        """Element e reads ``reads[e][valid[e]]`` and writes ``compute(values, valid)`` to
        ``writes[e]``, in element order; errors stop at the first bad element."""
        words = self.cfg.sequencer.activation_words
        bad_read = np.any(valid & (reads >= words), axis=1)
        bad = np.flatnonzero(bad_read | (writes >= words))
        stop = bad[0] if len(bad) else len(writes)
        if np.isin(writes[:stop], reads[:stop][valid[:stop]]).any():  # in-place: element by element
            for e in range(stop):
                values = np.where(valid[e], self.activations[np.where(valid[e], reads[e], 0)], 0)
                self.activations[writes[e]] = compute(values[None], valid[e][None])[0]
        elif stop:
            values = np.where(valid[:stop], self.activations[np.where(valid[:stop], reads[:stop], 0)], 0)
            self.activations[writes[:stop]] = compute(values, valid[:stop])
        if len(bad):
            if bad_read[stop]:
                self._check_reads(pc, reads[stop][valid[stop]])
            raise ChipProgramError(ErrorCode.ACTIVATION_ADDRESS, pc,
                                   detail=f"write of activation address {int(writes[stop])} >= activation_words {words}")

    def _pool(self, pc: int, ins: Instruction) -> None:
        zero = [n for n in ("kernel_h", "kernel_w", "stride_h", "stride_w") if ins[n] == 0]
        if zero:
            raise ChipProgramError(ErrorCode.INVALID_INSTRUCTION, pc, detail=f"{ins.opcode.name} {zero[0]} is 0")
        channels, in_h, in_w, out_h, out_w = (ins[n] for n in ("channels", "in_h", "in_w", "out_h", "out_w"))
        kh, kw = ins["kernel_h"], ins["kernel_w"]
        c, oy, ox = (a.reshape(-1, 1) for a in np.meshgrid(np.arange(channels), np.arange(out_h), np.arange(out_w),
                                                           indexing="ij"))
        ky, kx = (a.reshape(1, -1) for a in np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij"))
        iy = oy * ins["stride_h"] + ky - ins["pad_top"]
        ix = ox * ins["stride_w"] + kx - ins["pad_left"]
        valid = (iy >= 0) & (iy < in_h) & (ix >= 0) & (ix < in_w)
        reads = ins["in_base"] + c * (in_h * in_w) + iy * in_w + ix
        writes = (ins["out_base"] + c * (out_h * out_w) + oy * out_w + ox)[:, 0]
        bits = self.cfg.datapath.activation_bits
        if ins.opcode == Opcode.POOL_MAX:
            smallest = signed_range(bits)[0]

            def compute(values, mask):
                return np.where(mask, values, smallest).max(axis=1)
        else:
            reciprocal = ins["reciprocal"]

            def compute(values, mask):
                total = values.sum(axis=1) * reciprocal
                return saturate(round_half_up_shift(total, RECIPROCAL_BITS), bits)[0].astype(np.int64)

        self._elementwise(pc, reads, valid, writes, compute)

    def _add(self, pc: int, ins: Instruction) -> None:
        i = np.arange(ins["length"], dtype=np.int64)
        reads = np.stack([ins["in_base"] + i, ins["in_b_base"] + i], axis=1)
        bits = self.cfg.datapath.activation_bits
        self._elementwise(pc, reads, np.ones(reads.shape, dtype=bool), ins["out_base"] + i,
                          lambda v, _m: saturate(v[:, 0] + v[:, 1], bits)[0].astype(np.int64))

    def _relu(self, pc: int, ins: Instruction) -> None:
        i = np.arange(ins["length"], dtype=np.int64)
        self._elementwise(pc, (ins["in_base"] + i)[:, None], np.ones((len(i), 1), dtype=bool), ins["out_base"] + i,
                          lambda v, _m: np.maximum(v[:, 0], 0))
