"""The chip firmware's drift compensation, independent of how it reaches the chip's registers.

The chip co-simulation's firmware (:mod:`neurophase.cosim.chip_compensation`, over the chip's
Wishbone bus) and the FPGA board's host (:class:`neurophase.fpga.chip_host.ChipHost`, over
the UART link) run the same algorithm; this module holds what does not depend on the
transport: where the calibration program and its scratch data go, the program itself, the
batch-norm steps, and the registers computed from the statistics windows.

Global drift compensation (GDC)
    A calibration program after the network's (one MVM of one position whose single block
    covers a whole tile, then END) runs once per calibration vector
    (:func:`neurophase.models.gdc.calibration_inputs`) with ``CTRL.stats_en`` set and the
    tile's drift gain 1: the statistics window ``PSUM_ABS`` then holds the sum of |y| per
    tile column. ``r = sum / vectors`` (per column, or its mean per tile: ``analog.gdc``),
    ``r0`` at programming, ``alpha = r0 / r(t)`` written into the tile's drift-gain
    registers (``GAIN`` per column, or ``DRIFT_GAIN`` for the whole tile).
Batch-norm recalibration
    Layer by layer in program order, END is written right after the layer's MVM (restored
    afterwards), the calibration images run with ``CTRL.stats_en``, and the sum and the sum
    of squares of every output's partial sums give its mean and deviation;
    :meth:`BatchNormCalibration.registers` turns them into the scale and bias memories' entries
    and the MVM instruction's ``shift``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.models.chip_isa import WORDS_PER_INSTRUCTION, Instruction, Opcode, operand_layout
from neurophase.models.drift_gain import DriftGainParams, gain_to_fixed
from neurophase.models.gdc import calibration_inputs, gdc_alpha

__all__ = ["STATS_WINDOWS", "CALIBRATION_INSTRUCTIONS", "BatchNormStep", "FirmwareCompensation",
           "statistics_from_words", "program_words"]

#: The statistics windows: sum of y, of y squared, of |y| per batch-norm parameter entry.
STATS_WINDOWS = ("psum_sum", "psum_squares", "psum_abs")
#: Instructions of the GDC calibration program (MVM, its BLOCK entry, END).
CALIBRATION_INSTRUCTIONS = 3


def statistics_from_words(window: str, words) -> list[int]:
    """The 64-bit entries of statistics window ``window`` from its 32-bit words (low word
    at 2e, high word at 2e + 1) as Python integers; ``psum_sum``'s are signed."""
    if window not in STATS_WINDOWS:
        raise ValueError(f"window must be one of {', '.join(STATS_WINDOWS)}, not {window!r}")
    words = [int(w) & 0xFFFF_FFFF for w in words]
    if len(words) % 2:
        raise ValueError(f"statistics words come in low/high pairs; got {len(words)} words")
    values = [low | high << 32 for low, high in zip(words[0::2], words[1::2])]
    if window == "psum_sum":
        values = [v - (1 << 64) if v >> 63 else v for v in values]
    return values


def program_words(program) -> list[int]:
    """The 32-bit words of ``program`` (Instructions) as the program memory holds them."""
    return [w for ins in program for w in ins.words()]


@dataclass(frozen=True)
class BatchNormStep:
    """One MVM layer of batch-norm recalibration.

    Parameters
    ----------
    layer : str
        The mapped layer's name.
    pc : int
        The MVM instruction's address.
    instruction : Instruction
        The MVM as the program holds it now.
    end_pc : int
        The instruction after the MVM and its BLOCK entries: END while the layer is measured.
    """

    layer: str
    pc: int
    instruction: Instruction
    end_pc: int

    @property
    def outputs(self) -> int:
        return self.instruction["outputs"]

    @property
    def param_base(self) -> int:
        return self.instruction["param_base"]

    @property
    def positions(self) -> int:
        return self.instruction["out_h"] * self.instruction["out_w"]


class FirmwareCompensation:
    """Layout and arithmetic of the firmware's GDC and batch-norm recalibration for a
    compiled network, whatever carries the register accesses.

    Scratch space: the calibration program at the first program address after the network's;
    its input (``tile.rows`` words) and output (``tile.cols`` words) after the network's
    activations; its parameter entries are the last ``tile.cols`` of the parameter memory
    (they may be the network's too: the calibration MVM's outputs are never used, and the
    statistics windows are cleared before every measurement).

    Parameters
    ----------
    compiled : CompiledNetwork
    calibration_images : float array (n, *input_shape) or None
        Batch-norm recalibration images (None: GDC only).

    Raises
    ------
    ValueError
        When the scratch space does not fit the sequencer's memories, or
        ``analog.gdc_source`` is not ``"calibration-input"``.
    """

    def __init__(self, compiled, calibration_images=None):
        cfg = compiled.cfg
        seq, rows, cols = cfg.sequencer, cfg.tile.rows, cfg.tile.cols
        self.compiled, self.cfg = compiled, cfg
        if cfg.analog.gdc_source != "calibration-input":
            raise ValueError("the chip firmware measures GDC on calibration inputs; analog.gdc_source "
                             f"{cfg.analog.gdc_source!r} is not supported (allowed: 'calibration-input')")
        self.calibration_pc = len(compiled.program)
        if self.calibration_pc + CALIBRATION_INSTRUCTIONS > seq.program_words:
            raise ValueError(f"the GDC calibration program needs {CALIBRATION_INSTRUCTIONS} instructions after the "
                             f"network's {self.calibration_pc}; sequencer.program_words is {seq.program_words}")
        self.scratch_in = compiled.activation_words
        self.scratch_out = self.scratch_in + rows
        if self.scratch_out + cols > seq.activation_words:
            raise ValueError(f"GDC needs {rows + cols} activation words after the network's {self.scratch_in}; "
                             f"sequencer.activation_words is {seq.activation_words}")
        for name, size in (("param_words", seq.param_words), ("psum_words", seq.psum_words)):
            if cols > size:
                raise ValueError(f"GDC reads a whole tile row of {cols} columns; sequencer.{name} is {size}")
        self.scratch_param = seq.param_words - cols
        self.vectors = calibration_inputs(cfg)
        self.unit_gain = 1 << cfg.datapath.gain_frac_bits
        self.per_column = cfg.analog.gdc == "per-column"
        self.calibration_images = None
        self.bn = None
        if calibration_images is not None:
            from neurophase.network.compensation import BatchNormCalibration

            images = np.asarray(calibration_images)
            if images.ndim < 1 or len(images) == 0:
                raise ValueError("calibration_images must hold at least one image")
            self.bn = BatchNormCalibration(compiled.mapped, images)
            self.calibration_images = self.bn.images

    # -- GDC -----------------------------------------------------------------------------------
    @property
    def tiles(self) -> list[int]:
        """The tiles the network uses (each gets its own alpha)."""
        return [image.tile for image in self.compiled.tiles]

    def calibration_program(self, tile: int) -> list[Instruction]:
        """MVM over the whole of ``tile`` at one position, its BLOCK entry, END."""
        cfg = self.cfg
        if tile not in self.tiles:
            raise ValueError(f"tile must be one the network uses ({', '.join(map(str, self.tiles))}), not {tile!r}")
        mvm = Instruction(Opcode.MVM, {
            "in_base": self.scratch_in, "out_base": self.scratch_out, "channels": cfg.tile.rows, "in_h": 1, "in_w": 1,
            "kernel_h": 1, "kernel_w": 1, "stride_h": 1, "stride_w": 1, "out_h": 1, "out_w": 1,
            "outputs": cfg.tile.cols, "blocks": 1, "param_base": self.scratch_param, "psum_bits": cfg.psum_bits})
        block = Instruction(Opcode.BLOCK, {"tile": tile, "rows": cfg.tile.rows, "cols": cfg.tile.cols})
        return [mvm, block, Instruction(Opcode.END, {})]

    def gdc_r(self, abs_sums) -> np.ndarray:
        """``r`` of a tile from its ``PSUM_ABS`` entries after the calibration vectors: the
        mean |y| per column, or its mean over the tile in every column (``analog.gdc``)."""
        sums = np.asarray(abs_sums, dtype=np.float64)
        if sums.shape != (self.cfg.tile.cols,):
            raise ValueError(f"abs_sums must hold one sum per tile column ({self.cfg.tile.cols}), "
                             f"not shape {sums.shape}")
        per_column = sums / len(self.vectors)
        return per_column if self.per_column else np.full(self.cfg.tile.cols, per_column.mean())

    def gdc_gains(self, r0, r_t) -> tuple[np.ndarray, np.ndarray]:
        """``alpha = r0 / r(t)`` per column and the drift-gain register values (the
        ``datapath`` gain format, rounded and saturated)."""
        alpha = gdc_alpha(np.asarray(r0, dtype=np.float64), np.asarray(r_t, dtype=np.float64))
        params = DriftGainParams.from_config(self.cfg)
        return alpha, np.array([gain_to_fixed(params, a) for a in alpha], dtype=np.int64)

    def unit_gains(self) -> np.ndarray:
        """One tile's drift gains of 1 (what GDC measures with)."""
        return np.full(self.cfg.tile.cols, self.unit_gain, dtype=np.int64)

    # -- batch-norm ----------------------------------------------------------------------------
    def batch_norm_steps(self, program=None) -> list[BatchNormStep]:
        """The MVM layers of ``program`` (default: the compiled one) in program order."""
        program = list(self.compiled.program if program is None else program)
        steps = []
        for pc, ins in enumerate(program):
            if ins.opcode != Opcode.MVM:
                continue
            layer = self.compiled.pc_layer[pc]
            if layer not in self.compiled.mapped.layers:
                raise ValueError(f"the MVM at pc {pc} belongs to {layer!r}, not a mapped layer")
            steps.append(BatchNormStep(layer, pc, ins, pc + 1 + ins["blocks"]))
        return steps

    def batch_norm_registers(self, step: BatchNormStep, sums, squares) -> tuple[np.ndarray, np.ndarray, int]:
        """Scale, bias and shift of ``step``'s layer from its statistics windows' ``sum`` and
        ``squares`` entries after every calibration image.

        Raises
        ------
        ValueError
            Without calibration images, or when the entries are not one per output.
        """
        if self.bn is None:
            raise ValueError("batch-norm recalibration needs calibration images: FirmwareCompensation(compiled, "
                             "calibration_images)")
        if len(sums) != step.outputs or len(squares) != step.outputs:
            raise ValueError(f"layer {step.layer} has {step.outputs} outputs; got {len(sums)} sums and "
                             f"{len(squares)} sums of squares")
        n = len(self.calibration_images) * step.positions
        mean = np.array([s / n for s in sums], dtype=np.float64)
        variance = np.array([max(q / n - (s / n) ** 2, 0.0) for s, q in zip(sums, squares)], dtype=np.float64)
        return self.bn.registers(step.layer, mean, np.sqrt(variance))

    @staticmethod
    def with_shift(step: BatchNormStep, shift: int) -> Instruction:
        """``step``'s MVM instruction with its requantisation ``shift`` replaced."""
        operands = {k: step.instruction[k] for k in operand_layout(Opcode.MVM)} | {"shift": int(shift)}
        return Instruction(Opcode.MVM, operands)

    @staticmethod
    def word_address(pc: int) -> int:
        """Index of instruction ``pc``'s first 32-bit word in the program memory."""
        return pc * WORDS_PER_INSTRUCTION
