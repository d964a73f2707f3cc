"""Drift compensation of the chip by its firmware, over the bus (cocotb).

Global drift compensation (GDC)
    The firmware loads a calibration program after the network's (one MVM of one position
    whose single block covers a whole tile, then END), sets the tile's drift gain to 1 and
    runs it once per calibration vector (:func:`neurophase.models.gdc.calibration_inputs`)
    with ``CTRL.stats_en`` set: the statistics window ``PSUM_ABS`` then holds the sum of
    |y| per tile column. ``r = sum / vectors`` (per column, or its mean per tile), ``r0`` at
    programming, ``alpha = r0 / r(t)`` written into the tile's drift-gain registers, as
    :class:`neurophase.network.compensation.GdcFirmware` does on the model.
Batch-norm recalibration
    Layer by layer, the firmware ends the program right after the layer's MVM (an END
    written over the next instruction, restored afterwards), runs the calibration images
    with ``CTRL.stats_en``, reads the sum and the sum of squares of every output's partial
    sums, and writes the registers :meth:`BatchNormCalibration.registers` computes from their
    mean and deviation: the scale and bias memories and the MVM instruction's ``shift``.
"""

from __future__ import annotations

import numpy as np

from neurophase.models.chip_isa import Instruction, Opcode, operand_layout
from neurophase.models.drift_gain import DriftGainParams, gain_to_fixed
from neurophase.models.gdc import calibration_inputs, gdc_alpha

__all__ = ["GDC_KEY", "CALIBRATION_IMAGE_KEY", "ChipCompensation"]

#: Read keys of the GDC calibration reads: ``[seed, GDC_KEY + time index, tile, vector]``.
GDC_KEY = 1 << 40
#: Image index of calibration image i in the keyed reads: ``CALIBRATION_IMAGE_KEY + i``.
CALIBRATION_IMAGE_KEY = 1 << 30


class ChipCompensation:
    """GDC and batch-norm recalibration run by the firmware of a :class:`ChipSession`."""

    def __init__(self, session, calibration_images: np.ndarray):
        from neurophase.network.compensation import BatchNormCalibration

        self.session = session
        self.cfg = session.cfg
        self.compiled = session.compiled
        self.firmware = session.firmware
        self.vectors = calibration_inputs(self.cfg)
        self.bn = BatchNormCalibration(session.chip, calibration_images)
        self.calibration_images = np.asarray(calibration_images)
        program_end = len(self.compiled.program)
        self.calibration_pc = program_end
        if program_end + 3 > self.cfg.sequencer.program_words:
            raise ValueError(f"the calibration program needs 3 instructions after the network's {program_end}; "
                             f"sequencer.program_words is {self.cfg.sequencer.program_words}")
        self.scratch_param = len(self.compiled.bn_scale)
        self.scratch_in = self.compiled.activation_words
        self.scratch_out = self.scratch_in + self.cfg.tile.rows
        seq = self.cfg.sequencer
        if self.scratch_out + self.cfg.tile.cols > seq.activation_words:
            raise ValueError(f"GDC needs {self.cfg.tile.rows + self.cfg.tile.cols} activation words after the network's "
                             f"{self.scratch_in}; sequencer.activation_words is {seq.activation_words}")
        if self.scratch_param + self.cfg.tile.cols > seq.param_words:
            raise ValueError(f"GDC needs {self.cfg.tile.cols} parameter entries after the network's "
                             f"{self.scratch_param}; sequencer.param_words is {seq.param_words}")
        if self.cfg.analog.gdc_source != "calibration-input":
            raise ValueError("the chip firmware measures GDC on calibration inputs; analog.gdc_source "
                             f"{self.cfg.analog.gdc_source!r} is not supported in the chip co-simulation")
        self.r0: dict = {}

    # -- GDC -----------------------------------------------------------------------------------
    def _calibration_program(self, tile: int) -> list:
        cfg = self.cfg
        mvm = Instruction(Opcode.MVM, {
            "in_base": self.scratch_in, "out_base": self.scratch_out, "channels": cfg.tile.rows, "in_h": 1, "in_w": 1,
            "kernel_h": 1, "kernel_w": 1, "stride_h": 1, "stride_w": 1, "out_h": 1, "out_w": 1,
            "outputs": cfg.tile.cols, "blocks": 1, "param_base": self.scratch_param, "psum_bits": cfg.psum_bits})
        block = Instruction(Opcode.BLOCK, {"tile": tile, "rows": cfg.tile.rows, "cols": cfg.tile.cols})
        return [mvm, block, Instruction(Opcode.END, {})]

    async def set_gains(self, tile: int, gains: np.ndarray, per_column: bool) -> None:
        """Write a tile's drift gains (per column into GAIN, else DRIFT_GAIN) and the mode."""
        fw = self.firmware
        await fw.write_tile_register(tile, "DRIFT", int(per_column))
        if per_column:
            await fw.write_tile_array(tile, "GAIN", gains)
        else:
            await fw.write_tile_register(tile, "DRIFT_GAIN", int(gains[0]) & 0xFFFF_FFFF)
        self.session.replay.registers.gains[tile] = np.asarray(gains, dtype=np.int64).copy()

    async def measure(self, t_index: int) -> dict:
        """``r`` of every used tile at the present model time (drift gains set to 1 first)."""
        fw, cfg, session = self.firmware, self.cfg, self.session
        one = 1 << cfg.datapath.gain_frac_bits
        r = {}
        await fw.set_entry(self.calibration_pc)
        for tile in range(self.compiled.mapped.tiles_used):
            await self.set_gains(tile, np.full(cfg.tile.cols, one), per_column=False)
            for pc, ins in enumerate(self._calibration_program(tile)):
                await fw.write_instruction(self.calibration_pc + pc, ins)
            await fw.clear_statistics(self.scratch_param, cfg.tile.cols)
            await fw.statistics(True)
            analog = session.chip.tiles[tile]
            for v, vector in enumerate(self.vectors):
                rng = np.random.default_rng([session.job["read_seed"], GDC_KEY + t_index, tile, v])
                session.bridge.calibration = lambda _tile, drive, rng=rng: analog.adc_codes(drive[None], session.t_s,
                                                                                           rng)[0]
                await fw.write_activations(self.scratch_in, vector)
                status = await fw.run(session.limit_cycles)
                if status["error"]:
                    raise AssertionError(f"GDC calibration of tile {tile} stopped with {status['error_detail']}")
            await fw.statistics(False)
            sums = np.array((await fw.read_statistics(self.scratch_param, cfg.tile.cols))["abs"], dtype=np.float64)
            per_column = sums / len(self.vectors)
            r[tile] = per_column if cfg.analog.gdc == "per-column" else np.full(cfg.tile.cols, per_column.mean())
        session.bridge.calibration = None
        await fw.set_entry(0)
        return r

    async def reference(self) -> None:
        """Measure ``r0`` (call at the time of programming)."""
        self.r0 = await self.measure(0)

    async def gdc(self, t_index: int) -> dict:
        """Measure r(t), write alpha = r0 / r(t) into every used tile; returns the alphas."""
        cfg = self.cfg
        params = DriftGainParams.from_config(cfg)
        r = await self.measure(t_index)
        alphas = {}
        for tile, r_t in r.items():
            alpha = gdc_alpha(self.r0[tile], r_t)
            gains = np.array([gain_to_fixed(params, a) for a in alpha], dtype=np.int64)
            await self.set_gains(tile, gains, per_column=cfg.analog.gdc == "per-column")
            alphas[tile] = alpha
        return alphas

    async def unit_gains(self) -> None:
        one = 1 << self.cfg.datapath.gain_frac_bits
        for tile in range(self.compiled.mapped.tiles_used):
            await self.set_gains(tile, np.full(self.cfg.tile.cols, one), per_column=False)

    # -- batch-norm ----------------------------------------------------------------------------
    async def compiled_batch_norm(self) -> None:
        """The compiled batch-norm registers and shifts, back in the chip and the replay."""
        fw, compiled = self.firmware, self.compiled
        used = len(compiled.bn_scale)
        await fw.load_params(compiled.bn_scale[:used], compiled.bn_bias[:used])
        await fw.load_program(compiled.program)
        regs = self.session.replay.registers
        for name, layer in compiled.mapped.layers.items():
            regs.bn_scale[name], regs.bn_bias[name] = layer.bn_scale.copy(), layer.bn_bias.copy()
            regs.shift[name] = layer.shift

    async def recalibrate_batch_norm(self) -> None:
        """Every MVM layer in program order: measure on the calibration images, rewrite its registers."""
        fw, session, compiled = self.firmware, self.session, self.compiled
        program = list(compiled.program)
        mvms = [(pc, ins) for pc, ins in enumerate(program) if ins.opcode == Opcode.MVM]
        names = list(compiled.mapped.layers)
        for (pc, ins), name in zip(mvms, names):
            after = pc + 1 + ins["blocks"]
            await fw.write_instruction(after, Instruction(Opcode.END, {}))
            outputs, positions = ins["outputs"], ins["out_h"] * ins["out_w"]
            await fw.clear_statistics(ins["param_base"], outputs)
            await fw.statistics(True)
            for i in range(len(self.calibration_images)):
                x = session.chip.quantise(self.calibration_images[i:i + 1])
                await fw.write_activations(compiled.input.base, x[0])
                session.bridge.start_image(CALIBRATION_IMAGE_KEY + i)
                status = await fw.run(session.limit_cycles)
                if status["error"]:
                    raise AssertionError(f"batch-norm calibration of {name} stopped with {status['error_detail']}")
            await fw.statistics(False)
            stats = await fw.read_statistics(ins["param_base"], outputs)
            n = len(self.calibration_images) * positions
            mean = np.array([s / n for s in stats["sum"]])
            variance = np.array([max(q / n - (s / n) ** 2, 0.0) for s, q in zip(stats["sum"], stats["squares"])])
            scale, bias, shift = self.bn.registers(name, mean, np.sqrt(variance))
            await fw.load_params_at(ins["param_base"], scale, bias)
            operands = {k: ins[k] for k in operand_layout(Opcode.MVM)} | {"shift": int(shift)}
            program[pc] = Instruction(Opcode.MVM, operands)
            await fw.write_instruction(pc, program[pc])
            await fw.write_instruction(after, program[after])
            regs = session.replay.registers
            regs.bn_scale[name], regs.bn_bias[name], regs.shift[name] = scale, bias, int(shift)
