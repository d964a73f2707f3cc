"""Drift compensation of the chip by its firmware, over the bus (cocotb).

The algorithm's transport-independent parts (calibration program, scratch space, registers
from the statistics) are :class:`neurophase.network.firmware.FirmwareCompensation`, which
the FPGA board's host runs over its UART link too.

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

from neurophase.models.chip_isa import Instruction, Opcode
from neurophase.network.firmware import FirmwareCompensation

__all__ = ["GDC_KEY", "CALIBRATION_IMAGE_KEY", "ChipCompensation"]

#: Read keys of the GDC calibration reads: ``[seed, GDC_KEY + time index, tile, vector]``.
GDC_KEY = 1 << 40
#: Image index of calibration image i in the keyed reads: ``CALIBRATION_IMAGE_KEY + i``.
CALIBRATION_IMAGE_KEY = 1 << 30


class ChipCompensation:
    """GDC and batch-norm recalibration run by the firmware of a :class:`ChipSession`."""

    def __init__(self, session, calibration_images: np.ndarray):
        self.session = session
        self.cfg = session.cfg
        self.compiled = session.compiled
        self.firmware = session.firmware
        self.plan = FirmwareCompensation(self.compiled, calibration_images)
        self.vectors = self.plan.vectors
        self.calibration_images = np.asarray(calibration_images)
        self.r0: dict = {}

    # -- GDC -----------------------------------------------------------------------------------
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
        fw, cfg, session, plan = self.firmware, self.cfg, self.session, self.plan
        r = {}
        await fw.set_entry(plan.calibration_pc)
        for tile in plan.tiles:
            await self.set_gains(tile, plan.unit_gains(), per_column=False)
            for pc, ins in enumerate(plan.calibration_program(tile)):
                await fw.write_instruction(plan.calibration_pc + pc, ins)
            await fw.clear_statistics(plan.scratch_param, cfg.tile.cols)
            await fw.statistics(True)
            analog = session.chip.tiles[tile]
            for v, vector in enumerate(self.vectors):
                rng = np.random.default_rng([session.job["read_seed"], GDC_KEY + t_index, tile, v])
                session.bridge.calibration = lambda _tile, drive, rng=rng: analog.adc_codes(drive[None], session.t_s,
                                                                                           rng)[0]
                await fw.write_activations(plan.scratch_in, vector)
                status = await fw.run(session.limit_cycles)
                if status["error"]:
                    raise AssertionError(f"GDC calibration of tile {tile} stopped with {status['error_detail']}")
            await fw.statistics(False)
            sums = (await fw.read_statistics(plan.scratch_param, cfg.tile.cols))["abs"]
            r[tile] = plan.gdc_r(sums)
        session.bridge.calibration = None
        await fw.set_entry(0)
        return r

    async def reference(self) -> None:
        """Measure ``r0`` (call at the time of programming)."""
        self.r0 = await self.measure(0)

    async def gdc(self, t_index: int) -> dict:
        """Measure r(t), write alpha = r0 / r(t) into every used tile; returns the alphas."""
        r = await self.measure(t_index)
        alphas = {}
        for tile, r_t in r.items():
            alphas[tile], gains = self.plan.gdc_gains(self.r0[tile], r_t)
            await self.set_gains(tile, gains, per_column=self.plan.per_column)
        return alphas

    async def unit_gains(self) -> None:
        for tile in self.plan.tiles:
            await self.set_gains(tile, self.plan.unit_gains(), per_column=False)

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
        for step in self.plan.batch_norm_steps(program):
            await fw.write_instruction(step.end_pc, Instruction(Opcode.END, {}))
            await fw.clear_statistics(step.param_base, step.outputs)
            await fw.statistics(True)
            for i in range(len(self.calibration_images)):
                x = session.chip.quantise(self.calibration_images[i:i + 1])
                await fw.write_activations(compiled.input.base, x[0])
                session.bridge.start_image(CALIBRATION_IMAGE_KEY + i)
                status = await fw.run(session.limit_cycles)
                if status["error"]:
                    raise AssertionError(f"batch-norm calibration of {step.layer} stopped with "
                                         f"{status['error_detail']}")
            await fw.statistics(False)
            stats = await fw.read_statistics(step.param_base, step.outputs)
            scale, bias, shift = self.plan.batch_norm_registers(step, stats["sum"], stats["squares"])
            await fw.load_params_at(step.param_base, scale, bias)
            program[step.pc] = self.plan.with_shift(step, shift)
            await fw.write_instruction(step.pc, program[step.pc])
            await fw.write_instruction(step.end_pc, program[step.end_pc])
            regs = session.replay.registers
            regs.bn_scale[step.layer], regs.bn_bias[step.layer], regs.shift[step.layer] = scale, bias, int(shift)
