"""Host driver of the FPGA chip top: load a compiled network, stream images, read classes.
::

    from neurophase.fpga.chip_host import ChipHost

    with ChipHost.connect("socket://127.0.0.1:4567", cfg) as host:   # the board: "/dev/ttyUSB0"
        host.identify()
        host.load_network(compiled)          # program, batch-norm memories, tile registers, weights
        result = host.infer(x_int)           # one image: .output, .predicted, .cycles, .link_errors

The same calls drive the board (serial port) and the simulated board (socket), including
the firmware's drift compensation over the link (the algorithm of
:class:`~neurophase.network.firmware.FirmwareCompensation`, shared with the chip
co-simulation)::

    host.measure_gdc_reference()         # r0 per tile, right after load_network
    host.drift_step(86400, 0.05)         # the devices age (EMU_SCALE)
    host.gdc()                           # r(t) measured, alpha = r0 / r(t) into the gains
    host.recalibrate_batch_norm(images)  # statistics windows -> scale, bias, shift

:class:`EmulatedChipModel` is the bit-true model of what the board computes: the compiled
program on the chip interpreter with the shared crossbar emulator's codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from neurophase.fpga.host import HostError, NeuroPhaseHost, RegisterFile
from neurophase.fpga.transports import open_transport
from neurophase.network.firmware import program_words

__all__ = ["ChipHost", "ChipRunError", "Inference", "EmulatedChipModel", "emulator_scale"]

#: Counters of the link whose increase during an inference is reported.
LINK_COUNTERS = ("bad_commands", "frame_timeouts", "bus_errors", "uart_framing", "uart_overruns")


class ChipRunError(HostError):
    """The chip's program stopped with an error, or did not finish in time."""


def emulator_scale(cfg) -> int:
    """``EMU_SCALE.factor`` that gives the emulated codes the ADC range of ``cfg``'s analog
    model: ``round(2**12 x codes_per_unit(cfg))`` (codes per unit weight digit and row bit)."""
    from neurophase.models.crossbar_emulator import drift_scale
    from neurophase.network.mapping import codes_per_unit

    return drift_scale(1.0, 0.0, range_factor=codes_per_unit(cfg))


@dataclass
class Inference:
    """One image through the chip on the board.

    Parameters
    ----------
    output : ndarray of int64
        The output tensor read back from the activation memory (flattened).
    cycles : int
        The chip's own cycle count of the run (``CYCLES``).
    mvms : int
        Tile MVMs of the run (``MVMS``).
    link_errors : dict
        Increase of every link error counter during the inference (all 0 on a clean link).
    seconds : float
        Wall time over the link: image written, program run, output read.
    """

    output: np.ndarray
    cycles: int
    mvms: int
    link_errors: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def predicted(self) -> int:
        """The class: first maximum of the output."""
        return int(np.argmax(self.output))

    @property
    def link_fault(self) -> bool:
        return any(self.link_errors.values())


class EmulatedChipModel:
    """Bit-true model of the FPGA chip top running ``compiled``: the chip interpreter
    (:func:`neurophase.network.compiler.interpreter`) with the shared emulator's codes
    (:class:`~neurophase.models.crossbar_emulator.EmulatedChipArrays`).

    Parameters
    ----------
    compiled : CompiledNetwork
    scale : int
        ``EMU_SCALE.factor`` (default :func:`emulator_scale`).
    noise_bits : int
        ``EMU_NOISE.bits``.
    gains : dict or None
        ``tile -> drift-gain values`` (one per column) replacing the compiled unit gains
        (drift compensation written by :meth:`ChipHost.compensate_drift` or :meth:`ChipHost.gdc`).
    program : list or None
        The program memory (Instructions or 256-bit words) in place of the compiled program
        (the shifts batch-norm recalibration wrote).
    bn_scale, bn_bias : int arrays (sequencer.param_words,) or None
        The batch-norm parameter memories in place of the compiled ones.
    """

    def __init__(self, compiled, *, scale: int | None = None, noise_bits: int = 0, gains: dict | None = None,
                 program=None, bn_scale=None, bn_bias=None):
        from neurophase.models.crossbar_emulator import EmulatedChipArrays, EmulatorParams

        cfg = compiled.cfg
        self.compiled = compiled
        self.arrays = EmulatedChipArrays(EmulatorParams.from_config(cfg), cfg.tile.count)
        for image in compiled.tiles:
            self.arrays.load_weights(image.tile, image.w_int)
        self.arrays.emulator.scale = emulator_scale(cfg) if scale is None else scale
        self.arrays.emulator.noise_bits = noise_bits
        self.gains = {int(t): np.asarray(g, dtype=np.int64) for t, g in (gains or {}).items()}
        self.program = None if program is None else list(program)
        self.bn_scale = None if bn_scale is None else np.asarray(bn_scale, dtype=np.int64)
        self.bn_bias = None if bn_bias is None else np.asarray(bn_bias, dtype=np.int64)

    @classmethod
    def from_board(cls, host: "ChipHost") -> "EmulatedChipModel":
        """The model of what ``host``'s board holds now: its loaded network, noise width and
        ``EMU_SCALE``, and the drift gains, program and batch-norm memories read back."""
        compiled = host._loaded()
        return cls(compiled, scale=host.field("EMU_SCALE", "factor"), noise_bits=host.noise_bits,
                   gains=host.tile_gains(), program=host.read_program(),
                   bn_scale=host.read_array("bn_scale.BN_SCALE"), bn_bias=host.read_array("bn_bias.BN_BIAS"))

    def loaded_chip(self):
        """A chip interpreter loaded as the board is (program, memories, gains)."""
        from neurophase.network.compiler import interpreter

        chip = interpreter(self.compiled, self.arrays)
        for tile, gains in self.gains.items():
            chip.gains[tile] = gains
        if self.program is not None:
            chip.load_program(self.program)
        if self.bn_scale is not None:
            chip.bn_scale[:] = self.bn_scale
        if self.bn_bias is not None:
            chip.bn_bias[:] = self.bn_bias
        return chip

    def run(self, x_int, seed: int | None = 1, *, statistics: dict | None = None) -> tuple[np.ndarray, object]:
        """The output tensor (flattened) and the run's statistics for one quantised image,
        the noise LFSRs reseeded with ``seed`` first (as :meth:`ChipHost.infer` does; None
        continues the sequence). ``statistics``: statistics windows
        (:meth:`~neurophase.models.chip_golden.ChipInterpreter.enable_statistics`) the run's
        batch-norm inputs accumulate into, as with ``CTRL.stats_en``."""
        compiled = self.compiled
        if seed is not None:
            self.arrays.emulator.reseed(seed)
        chip = self.loaded_chip()
        if statistics is not None:
            chip.enable_statistics(statistics)
        region, out = compiled.input, compiled.output
        chip.activations[region.base:region.base + region.size] = np.asarray(x_int).reshape(-1)
        stats = chip.run()
        return chip.activations[out.base:out.base + out.size].copy(), stats


class ChipHost(NeuroPhaseHost):
    """The FPGA chip top over a :class:`~neurophase.fpga.transports.UartBoneLink`.

    Registers and arrays are addressed as ``<window>.<NAME>`` (``chip.STATUS``,
    ``activations.ACTIVATIONS``, ``tile1.GAIN``); the emulator and link registers
    (``EMU_SCALE``, ``LINK_ERRORS``, ...) and :meth:`drift_step`, :meth:`set_noise`,
    :meth:`link_errors`, :meth:`resynchronise` are those of :class:`NeuroPhaseHost`.

    Parameters
    ----------
    transport, regs, poll_timeout_s
        As :class:`NeuroPhaseHost`; ``regs`` holds the chip top's map.
    """

    def __init__(self, transport, regs: RegisterFile, *, poll_timeout_s: float = 60.0):
        super().__init__(transport, regs, poll_timeout_s=poll_timeout_s)
        if "chip.STATUS" not in regs.registers or "weights.WEIGHT" not in regs.arrays:
            raise HostError("the register map is not the FPGA chip top's (no chip.STATUS or weights.WEIGHT); "
                            "build or simulate the chip top (neurophase fpga build/sim --chip)")
        self.compiled = None
        self.noise_bits = 0
        #: The program as the host last wrote it (batch-norm recalibration changes shifts).
        self.program: list = []
        #: ``tile -> r0`` of GDC (:meth:`measure_gdc_reference`).
        self.gdc_r0: dict = {}
        self._ctrl_keep = 0

    @classmethod
    def connect(cls, url: str, register_map, *, baud: int = 1_000_000, timeout: float | None = None) -> "ChipHost":
        """Open ``url`` with the chip top's map: a ChipConfig, a RegisterFile or the path of
        the ``fpga_map.json`` written by ``neurophase fpga build/sim --chip``."""
        from neurophase.config import ChipConfig

        if isinstance(register_map, RegisterFile):
            regs = register_map
        elif isinstance(register_map, ChipConfig):
            from neurophase.fpga.chip_top import FpgaChipAddressMap

            regs = RegisterFile(FpgaChipAddressMap(register_map).to_dict())
        else:
            regs = RegisterFile.from_json(register_map)
        transport = open_transport(url, baud=baud, timeout=timeout)
        transport.open()
        host = cls(transport, regs)
        if transport.resync_on_open:
            host.resynchronise()
        return host

    # -- identity ---------------------------------------------------------------------------
    def identify(self) -> dict:
        """Check the chip's and the FPGA top's magic words; return the chip configuration.

        Raises
        ------
        HostError
            When either answers with another word (wrong bitstream, baud rate or port).
        """
        from neurophase.chip_regmap import CHIP_MAGIC
        from neurophase.fpga.regmap import FPGA_MAGIC

        for register, magic in (("chip.ID", CHIP_MAGIC), ("fpga.FPGA_ID", FPGA_MAGIC)):
            got = self.read(register)
            if got != magic:
                raise HostError(f"register {register} reads 0x{got:08x}, expected 0x{magic:08x}: wrong bitstream "
                                "(not the FPGA chip top), wrong baud rate or no board on this port")
        return {**self.fields("chip.CONFIG0"), **self.fields("chip.CONFIG1"), **self.fields("fpga.FPGA_CONFIG")}

    # -- loading ------------------------------------------------------------------------------
    def _ctrl_bit(self, name: str) -> int:
        return 1 << self.regs.field("chip.CTRL", name)["offset"]

    def _stop_if_busy(self) -> None:
        if self.field("chip.STATUS", "busy"):
            self.write("chip.CTRL", self._ctrl_keep | self._ctrl_bit("abort"))

    def load_network(self, compiled, *, scale: int | None = None, full_tiles: bool = False) -> None:
        """Load ``compiled`` (a :class:`~neurophase.network.compiler.CompiledNetwork` for this
        board's configuration): program, batch-norm memories, every used tile's trims and
        drift gains, the conductance codes and ``EMU_SCALE`` (default :func:`emulator_scale`).

        Only each block's rectangle of weights is written unless ``full_tiles``: rows outside a
        running block are driven with 0 and columns outside it are not used, so the outputs
        do not depend on what the rest of a tile holds.

        Raises
        ------
        ValueError
            When the network was compiled for another tile geometry or memory size, or a weight
            does not fit the conductance codes.
        """
        self._check_compiled(compiled)
        self._stop_if_busy()
        self.statistics(False)
        self.write("chip.ENTRY", 0)
        self.write_array("program.PROGRAM", program_words(compiled.program))
        if len(compiled.bn_scale):
            self.write_array("bn_scale.BN_SCALE", compiled.bn_scale)
            self.write_array("bn_bias.BN_BIAS", compiled.bn_bias)
        per_column = compiled.cfg.datapath.gain_mode == "per-column"
        for image in compiled.tiles:
            self.write_array(f"tile{image.tile}.ADC_TRIM", image.trims)
            if per_column:
                self.write_array(f"tile{image.tile}.GAIN", image.gains)
                self.set_fields(f"tile{image.tile}.DRIFT", per_column=1)
        self._load_weights(compiled, full_tiles)
        self.set_fields("EMU_SCALE", factor=emulator_scale(compiled.cfg) if scale is None else scale)
        self.compiled = compiled
        self.program = list(compiled.program)
        self.gdc_r0 = {}

    def _check_compiled(self, compiled) -> None:
        cfg = compiled.cfg
        info = self.identify()
        for name, mine, theirs in (("tile.count", info["tiles"], cfg.tile.count), ("tile.rows", info["rows"],
                                   cfg.tile.rows), ("sequencer.activation_words", info["activation_words"],
                                   cfg.sequencer.activation_words)):
            if mine != theirs:
                raise ValueError(f"the network was compiled for {name} = {theirs}, the board has {mine}")
        words = self.regs.array("weights.WEIGHT")["length"]
        if words != cfg.tile.count * cfg.weights.slices * cfg.tile.rows * cfg.tile.cols:
            raise ValueError(f"the board's WEIGHT memory ({words} codes) does not fit the network's configuration "
                             f"({cfg.tile.count} tiles of {cfg.weights.slices} x {cfg.tile.rows} x {cfg.tile.cols})")
        hi = (1 << self.conductance_bits) - 1
        for image in compiled.tiles:
            if image.w_int.size and np.abs(image.w_int).max() > hi:
                raise ValueError(f"weights of tile {image.tile} reach {int(np.abs(image.w_int).max())}; the board's "
                                 f"{self.conductance_bits}-bit conductance codes hold at most {hi}")

    def _load_weights(self, compiled, full_tiles: bool) -> None:
        cfg, bits = compiled.cfg, self.conductance_bits
        rows, cols, slices = cfg.tile.rows, cfg.tile.cols, cfg.weights.slices
        if slices != 1:
            raise ValueError(f"the FPGA chip top loads networks with weights.slices = 1, not {slices}")
        images = {image.tile: np.asarray(image.w_int, dtype=np.int64) for image in compiled.tiles}
        packed = {t: np.maximum(w, 0) | (np.maximum(-w, 0) << bits) for t, w in images.items()}
        if full_tiles:
            for t, codes in packed.items():
                self.write_array("weights.WEIGHT", codes.reshape(-1), start=t * rows * cols)
            return
        for block in compiled.mapped.blocks:
            height, width = block.k_stop - block.k_start, block.n_stop - block.n_start
            codes = packed[block.tile]
            for r in range(block.row, block.row + height):
                start = (block.tile * rows + r) * cols + block.col
                self.write_array("weights.WEIGHT", codes[r, block.col:block.col + width], start=start)

    def mvm(self, inputs):
        """Not available: the chip's tiles start only from the sequencer's program.

        Raises
        ------
        HostError
            Always; run a network with :meth:`load_network` and :meth:`infer`.
        """
        raise HostError("the FPGA chip top runs MVMs only through its program (a tile's CTRL.start is refused): "
                        "load a compiled network with load_network() and run images with infer()")

    # -- drift --------------------------------------------------------------------------------
    def drift_step(self, t_s: float, nu: float, *, t0_s: float = 1.0, range_factor: float | None = None) -> int:
        """Age every emulated tile to ``t_s`` after programming: ``EMU_SCALE`` becomes the ADC
        range factor (default that of the loaded network's configuration) times
        ``(t / t0) ** -nu``; returns the factor written."""
        if range_factor is None:
            from neurophase.network.mapping import codes_per_unit

            range_factor = codes_per_unit(self._loaded().cfg)
        return super().drift_step(t_s, nu, t0_s=t0_s, range_factor=range_factor)

    def compensate_drift(self, alpha: float) -> dict:
        """Global drift compensation: every used tile's per-column ``GAIN`` set to ``alpha``
        times its compiled gain (rounded half up, saturated to the register); returns
        ``tile -> gains written``.

        Raises
        ------
        ValueError
            When ``alpha`` is not a positive finite number.
        """
        from neurophase.models.drift_gain import DriftGainParams, gain_to_fixed

        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a positive number, not {alpha!r}")
        compiled = self._loaded()
        params = DriftGainParams.from_config(compiled.cfg)
        unit = 1 << compiled.cfg.datapath.gain_frac_bits
        written = {}
        for image in compiled.tiles:
            gains = np.array([gain_to_fixed(params, alpha * g / unit) for g in image.gains], dtype=np.int64)
            self.write_array(f"tile{image.tile}.GAIN", gains)
            self.set_fields(f"tile{image.tile}.DRIFT", per_column=1)
            written[image.tile] = gains
        return written

    def tile_gains(self) -> dict:
        """``tile -> drift gain of every column`` read back from every tile the loaded network
        uses: its ``GAIN`` array, or ``DRIFT_GAIN.alpha`` in every column while
        ``DRIFT.per_column`` is 0."""
        gains = {}
        for image in self._loaded().tiles:
            tile = f"tile{image.tile}"
            if self.field(f"{tile}.DRIFT", "per_column"):
                gains[image.tile] = self.read_array(f"{tile}.GAIN")
            else:
                cols = self.regs.array(f"{tile}.GAIN")["length"]
                gains[image.tile] = np.full(cols, self.field(f"{tile}.DRIFT_GAIN", "alpha"), dtype=np.int64)
        return gains

    def set_tile_gains(self, tile: int, gains, *, per_column: bool) -> None:
        """Write ``tile``'s drift gains and select them: the ``GAIN`` array (one value per
        column) with ``per_column``, else ``DRIFT_GAIN.alpha`` = ``gains[0]`` for the tile.

        Raises
        ------
        ValueError
            For a tile the loaded network does not use, or gains outside the register format.
        """
        used = [image.tile for image in self._loaded().tiles]
        if isinstance(tile, bool) or tile not in used:
            raise ValueError(f"tile must be one the loaded network uses ({', '.join(map(str, used))}), not {tile!r}")
        gains = np.asarray(gains)
        if per_column:
            self.write_array(f"tile{tile}.GAIN", gains)
        else:
            self.set_fields(f"tile{tile}.DRIFT_GAIN", alpha=int(gains.reshape(-1)[0]))
        self.set_fields(f"tile{tile}.DRIFT", per_column=int(bool(per_column)))

    # -- firmware compensation over the link -------------------------------------------------
    def compensation(self, calibration_images=None):
        """The firmware's compensation plan (:class:`~neurophase.network.firmware.FirmwareCompensation`)
        for the loaded network, with ``calibration_images`` for batch-norm recalibration."""
        from neurophase.network.firmware import FirmwareCompensation

        return FirmwareCompensation(self._loaded(), calibration_images)

    def statistics(self, enabled: bool) -> None:
        """Set or clear ``CTRL.stats_en`` (kept by every later command of :meth:`start`)."""
        bit = self._ctrl_bit("stats_en")
        self._ctrl_keep = (self._ctrl_keep | bit) if enabled else (self._ctrl_keep & ~bit)
        self.write("chip.CTRL", self._ctrl_keep)

    def clear_statistics(self, first: int, count: int) -> None:
        """Zero parameter entries ``first .. first + count - 1`` of every statistics window."""
        from neurophase.network.firmware import STATS_WINDOWS

        for window in STATS_WINDOWS:
            self.write_array(f"{window}.{window.upper()}", np.zeros(2 * count, dtype=np.int64), start=2 * first)

    def read_statistics(self, first: int, count: int) -> dict:
        """Entries ``first ..`` of the statistics windows: ``sum`` (signed), ``squares``,
        ``abs``, each a list of Python integers."""
        from neurophase.network.firmware import STATS_WINDOWS, statistics_from_words

        return {window.removeprefix("psum_"): statistics_from_words(
                    window, self.read_array(f"{window}.{window.upper()}", 2 * count, start=2 * first))
                for window in STATS_WINDOWS}

    def read_program(self) -> list[int]:
        """The whole program memory as 256-bit words (word 0 of each instruction in bits 31:0)."""
        from neurophase.models.chip_isa import WORDS_PER_INSTRUCTION

        words = self.read_array("program.PROGRAM")
        return [sum(int(w) << (32 * j) for j, w in enumerate(words[i:i + WORDS_PER_INSTRUCTION]))
                for i in range(0, len(words), WORDS_PER_INSTRUCTION)]

    def write_instruction(self, pc: int, instruction) -> None:
        """Write one instruction at program address ``pc``."""
        from neurophase.models.chip_isa import WORDS_PER_INSTRUCTION

        self.write_array("program.PROGRAM", instruction.words(), start=pc * WORDS_PER_INSTRUCTION)

    def _run_calibration(self, what: str) -> None:
        self.start()
        try:
            self.wait()
        except ChipRunError as exc:
            raise ChipRunError(f"{what}: {exc}") from None

    def measure_gdc(self) -> dict:
        """``tile -> r`` of every used tile now: the tile's drift gain set to 1, the
        calibration program run once per calibration vector with the statistics on,
        ``r`` from ``PSUM_ABS`` (mean |y| per column, or its tile mean: ``analog.gdc``).
        The gains stay 1 afterwards.

        Raises
        ------
        ValueError
            When the calibration program or its scratch space does not fit the board's memories.
        ChipRunError
            When a calibration run stops with an error.
        """
        plan = self.compensation()
        cols = plan.cfg.tile.cols
        r = {}
        self.write("chip.ENTRY", plan.calibration_pc)
        try:
            for tile in plan.tiles:
                self.set_tile_gains(tile, plan.unit_gains(), per_column=False)
                self.write_array("program.PROGRAM", program_words(plan.calibration_program(tile)),
                                 start=plan.word_address(plan.calibration_pc))
                self.clear_statistics(plan.scratch_param, cols)
                self.statistics(True)
                for v, vector in enumerate(plan.vectors):
                    self.write_array("activations.ACTIVATIONS", vector, start=plan.scratch_in)
                    self._run_calibration(f"GDC calibration of tile {tile}, vector {v}")
                self.statistics(False)
                r[tile] = plan.gdc_r(self.read_statistics(plan.scratch_param, cols)["abs"])
        finally:
            self.statistics(False)
            self.write("chip.ENTRY", 0)
        return r

    def measure_gdc_reference(self) -> dict:
        """Measure and keep ``r0`` (call right after :meth:`load_network`, before any drift
        step); returns ``tile -> r0``. The tiles' drift gains are 1 afterwards."""
        self.gdc_r0 = self.measure_gdc()
        return dict(self.gdc_r0)

    def gdc(self) -> dict:
        """Measured global drift compensation: ``r(t)`` of every used tile, ``alpha = r0 / r(t)``
        written into its drift gains (``GAIN`` per column with ``analog.gdc = "per-column"``,
        else ``DRIFT_GAIN``); returns ``tile -> alpha`` (one per column).

        Raises
        ------
        HostError
            When no reference was measured (:meth:`measure_gdc_reference`).
        """
        if not self.gdc_r0:
            raise HostError("GDC needs the reference r0: call measure_gdc_reference() right after load_network()")
        plan = self.compensation()
        alphas = {}
        for tile, r_t in self.measure_gdc().items():
            alphas[tile], gains = plan.gdc_gains(self.gdc_r0[tile], r_t)
            self.set_tile_gains(tile, gains, per_column=plan.per_column)
        return alphas

    def unit_gains(self) -> None:
        """Every used tile's drift gain back to 1 (no compensation)."""
        plan = self.compensation()
        for tile in plan.tiles:
            self.set_tile_gains(tile, plan.unit_gains(), per_column=False)

    def restore_batch_norm(self) -> None:
        """The compiled batch-norm memories and program (its shifts) back in the chip."""
        compiled = self._loaded()
        self._stop_if_busy()
        if len(compiled.bn_scale):
            self.write_array("bn_scale.BN_SCALE", compiled.bn_scale)
            self.write_array("bn_bias.BN_BIAS", compiled.bn_bias)
        self.write_array("program.PROGRAM", program_words(compiled.program))
        self.program = list(compiled.program)

    def recalibrate_batch_norm(self, images) -> dict:
        """Batch-norm recalibration over the link: every MVM layer in program order is run
        alone (END written after it) on the calibration ``images`` with the statistics on;
        its scale and bias entries and its MVM's ``shift`` are rewritten from the measured
        mean and deviation (:meth:`BatchNormCalibration.registers`). Later layers are
        measured after the earlier ones are recalibrated.

        Parameters
        ----------
        images : float array (n, *input_shape)
            Calibration images (the training split's, not the test images).

        Returns
        -------
        dict
            ``layer -> {"scale", "bias", "shift", "sum", "squares"}``: the registers written
            and the statistics they were computed from.

        Raises
        ------
        ValueError
            When ``images`` do not have the network's input shape or are empty.
        ChipRunError
            When a calibration run stops with an error.
        """
        from neurophase.fpga.infer import quantise_images
        from neurophase.models.chip_isa import Instruction, Opcode

        plan = self.compensation(images)
        x_int = quantise_images(self._loaded(), plan.calibration_images)
        program = list(self.program)
        written = {}
        for step in plan.batch_norm_steps(program):
            self.write_instruction(step.end_pc, Instruction(Opcode.END, {}))
            try:
                self.clear_statistics(step.param_base, step.outputs)
                self.statistics(True)
                for i, x in enumerate(x_int):
                    self.write_image(x)
                    self._run_calibration(f"batch-norm calibration of layer {step.layer}, image {i}")
            finally:
                self.statistics(False)
                self.write_instruction(step.end_pc, program[step.end_pc])
            stats = self.read_statistics(step.param_base, step.outputs)
            scale, bias, shift = plan.batch_norm_registers(step, stats["sum"], stats["squares"])
            self.write_array("bn_scale.BN_SCALE", scale, start=step.param_base)
            self.write_array("bn_bias.BN_BIAS", bias, start=step.param_base)
            program[step.pc] = plan.with_shift(step, shift)
            self.write_instruction(step.pc, program[step.pc])
            self.program = list(program)
            written[step.layer] = {"scale": scale, "bias": bias, "shift": int(shift), "sum": stats["sum"],
                                   "squares": stats["squares"]}
        return written

    # -- running --------------------------------------------------------------------------------
    def set_noise(self, bits: int, seed: int) -> None:
        """Read-noise width and seed; reloads the LFSRs (remembered for :meth:`infer`)."""
        super().set_noise(bits, seed)
        self.noise_bits = bits

    def write_image(self, x_int) -> None:
        """Write one quantised input image into the input tensor's region."""
        region = self._loaded().input
        self.write_array("activations.ACTIVATIONS", np.asarray(x_int).reshape(-1), start=region.base)

    def start(self) -> None:
        """Clear the sticky status bits and start the program at ``ENTRY`` (pc 0 but during
        a GDC measurement), keeping ``CTRL.stats_en``."""
        self.write("chip.STATUS", 0xFFFF_FFFF)
        self.write("chip.CTRL", self._ctrl_keep | self._ctrl_bit("start"))

    def wait(self, poll_s: float = 0.0) -> dict:
        """Poll ``STATUS`` until the program ends; returns the status fields.

        Raises
        ------
        ChipRunError
            When the program stops with an error (``ERROR`` decoded in the message) or does
            not end within ``poll_timeout_s`` of the first ``STATUS`` answer (the link
            delivers that answer only after every write queued before it).
        """
        from neurophase.chip_regmap import ERROR_CODES

        deadline = None
        while True:
            status = self.fields("chip.STATUS")
            if deadline is None:  # from the first answer: the writes queued before it (a network load) are done
                deadline = time.monotonic() + self.poll_timeout_s
            if status["error"]:
                error = self.fields("chip.ERROR")
                raise ChipRunError(f"the program stopped with error {error['code']} "
                                   f"({ERROR_CODES.get(error['code'], 'unknown')}) at pc {error['pc']}, "
                                   f"tile {error['tile']}")
            if status["done"] and not status["busy"]:
                return status
            if time.monotonic() > deadline:
                raise ChipRunError(f"the program did not end within {self.poll_timeout_s} s (STATUS {status})")
            if poll_s:
                time.sleep(poll_s)

    def read_output(self) -> np.ndarray:
        """The output tensor (flattened) from the activation memory."""
        region = self._loaded().output
        return self.read_array("activations.ACTIVATIONS", region.size, start=region.base)

    def _link_counts(self) -> dict:
        errors = self.link_errors()
        return {name: errors[name] for name in LINK_COUNTERS}

    def infer(self, x_int, *, seed: int | None = None, poll_s: float = 0.0) -> Inference:
        """One image: write it, (reseed the noise with ``seed``), run, read the output.

        The link's error counters are read before and after; their increase is in
        :attr:`Inference.link_errors` (a frame the board dropped may have been part of the
        image: :attr:`Inference.link_fault` tells the caller to run the image again).
        """
        started = time.perf_counter()
        before = self._link_counts()
        self.write_image(x_int)
        if seed is not None:
            self.set_noise(self.noise_bits, seed)
        self.start()
        self.wait(poll_s)
        output = self.read_output()
        cycles, mvms = self.field("chip.CYCLES", "count"), self.field("chip.MVMS", "count")
        after = self._link_counts()
        increase = {name: (after[name] - before[name]) % (1 << 16) for name in LINK_COUNTERS}
        return Inference(output, cycles, mvms, increase, time.perf_counter() - started)

    def _loaded(self):
        if self.compiled is None:
            raise HostError("no network loaded: call load_network(compiled) first")
        return self.compiled
