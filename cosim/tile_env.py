"""Verification environment of the tile with the analog crossbar in the loop.

Shaped like cocotb's ``examples/matrix_multiplier``: a driver (:class:`MvmDriver`: codes
to the bridge, ``CTRL.start`` over the bus), a monitor (:class:`ResultMonitor`: one
captured MVM result per transaction), a transaction-level model (the bit-true golden
periphery, :func:`neurophase.models.datapath.datapath`, applied to the same ADC codes),
an in-order scoreboard (:class:`MvmScoreboard`) and a :class:`TileTestbench` that wires them
with the crossbar bridge and the firmware.

Every MVM gets two checks:

(a) exact: the RTL's activations and saturation bits equal the golden model's for the ADC
    codes the bridge delivered;
(b) accuracy: the error of the activations ``q`` against the ideal float MVM,
    ``e = q - (x . W) / 2**shift`` in output LSBs, stays within the error budget the model
    predicts. Errors are reported as % of full scale, ``FS = 2**(activation_bits-1) - 1``
    output LSBs (the largest |activation| the tile can deliver), as RMS over columns and MVMs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cocotb.triggers import ClockCycles, ReadWrite, RisingEdge

from neurophase.config import ChipConfig
from neurophase.cosim.bridge import CrossbarBridge, HdlAdcBridge, unpack_results
from neurophase.cosim.host import TileFirmware
from neurophase.cosim.naive_bridge import NaiveAdcBridge, NaiveResultMonitor
from neurophase.cosim.wishbone import WishboneMaster
from neurophase.models.datapath import DatapathParams, DatapathSettings, datapath_batch
from neurophase.models.gdc import calibration_inputs

__all__ = ["MvmDriver", "ResultMonitor", "MvmScoreboard", "TileTestbench", "full_scale", "output_shift",
           "predicted_error_pct", "golden_settings"]

#: Headroom of the output range over the largest ideal output of the calibration set.
OUTPUT_HEADROOM = 1.5


def full_scale(cfg: ChipConfig) -> int:
    """Full scale of the MVM output in output LSBs: the largest |activation|."""
    return 2 ** (cfg.datapath.activation_bits - 1) - 1


def output_shift(cfg: ChipConfig, ideal: np.ndarray) -> int:
    """Smallest requantisation shift that keeps ``OUTPUT_HEADROOM`` x the largest |ideal|
    output (shift-and-add units) inside the activation range."""
    peak = OUTPUT_HEADROOM * float(np.max(np.abs(ideal)))
    shift = 0
    while peak / 2**shift > full_scale(cfg):
        shift += 1
    return shift


def golden_settings(cfg: ChipConfig, gains, shift: int, relu: bool = False) -> DatapathSettings:
    """The register state the firmware leaves: no trim, gains, unit BN scale, zero bias."""
    params = DatapathParams.from_config(cfg)
    identity = DatapathSettings.identity(params, shift=shift, relu=relu)
    return DatapathSettings(identity.trims, gains, identity.scale, identity.bias, shift, relu)


def error_pct(cfg: ChipConfig, outputs: np.ndarray, ideal_out: np.ndarray) -> float:
    """RMS of ``outputs - ideal_out`` (output LSBs) as % of :func:`full_scale`."""
    diff = np.asarray(outputs, dtype=np.float64) - ideal_out
    return float(100.0 * np.sqrt(np.mean(diff**2)) / full_scale(cfg))


def predicted_error_pct(bridge: CrossbarBridge, settings: DatapathSettings, inputs: np.ndarray,
                        rng: np.random.Generator) -> float:
    """The error budget from the model alone (pure numpy, its own random draws): the
    analog tile read at the bridge's model time, through the golden periphery with
    ``settings``, against the ideal float MVM; RMS % of full scale."""
    cfg = bridge.cfg
    params = DatapathParams.from_config(cfg)
    codes = bridge.tile.adc_codes(inputs, bridge.time_s, rng)
    outputs = datapath_batch(params, codes, settings)["result"]
    return error_pct(cfg, outputs, bridge.ideal(inputs) / 2**settings.shift)


class MvmDriver:
    """Drives one MVM: the bridge gets its codes, the firmware writes ``CTRL.start``."""

    def __init__(self, adc, firmware: TileFirmware):
        self.adc, self.firmware = adc, firmware

    async def send(self, codes: np.ndarray) -> None:
        self.adc.load(codes)
        await self.firmware.start_mvm()


class ResultMonitor:
    """Transaction-level monitor: waits for the harness's ``result_strobe`` and decodes the
    captured result of the whole MVM at once."""

    def __init__(self, dut, cfg: ChipConfig):
        self.dut, self.cfg = dut, cfg
        dut.o_stream__ready.value = 1

    async def receive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        await RisingEdge(self.dut.result_strobe)
        # The strobe and the last beat's word of ``result`` are written by the same clock
        # edge: an event-driven simulator (Icarus) may wake this coroutine before the word
        # is updated. Sample after that edge's nonblocking updates, in the same time step.
        await ReadWrite()
        return unpack_results(self.cfg, self.dut.result.value.to_unsigned())


@dataclass
class MvmScoreboard:
    """In-order checker of MVM results against the golden model, plus error statistics.

    Attributes
    ----------
    matched : int
        MVMs exactly equal to the golden model.
    errors : list of str
        The first mismatches, described.
    squared_error, outputs : float, int
        Sum of squared errors against the ideal MVM (output LSBs) and outputs counted.
    worst_mvm_pct : float
        Largest per-MVM RMS error, % of full scale.
    """

    cfg: ChipConfig
    matched: int = 0
    mismatched: int = 0
    errors: list = field(default_factory=list)
    squared_error: float = 0.0
    outputs: int = 0
    worst_mvm_pct: float = 0.0
    flags: dict = field(default_factory=dict)

    def check(self, tag: str, expected: dict, got: tuple, ideal_out: np.ndarray | None) -> np.ndarray:
        """Compare one MVM; returns the activations observed. ``ideal_out`` None (reference
        column reads): exactness only, no error statistics."""
        values, saturated, last = got
        groups = len(last)
        ok = (np.array_equal(values, expected["result"]) and np.array_equal(saturated, expected["saturated"])
              and list(last) == [False] * (groups - 1) + [True])
        if ok:
            self.matched += 1
        else:
            self.mismatched += 1
            if len(self.errors) < 5:
                bad = np.flatnonzero((values != expected["result"]) | (saturated != expected["saturated"]))
                self.errors.append(f"{tag}: {len(bad)} columns differ, first {bad[:8].tolist()}: got "
                                   f"{values[bad[:8]].tolist()}, expected {expected['result'][bad[:8]].tolist()}; "
                                   f"last flags {last.astype(int).tolist()}")
        if ideal_out is None:
            return values
        diff = values - ideal_out
        self.squared_error += float(np.sum(diff**2))
        self.outputs += diff.size
        self.worst_mvm_pct = max(self.worst_mvm_pct, error_pct(self.cfg, values, ideal_out))
        return values

    def add_flags(self, flags: dict) -> None:
        """OR the golden model's sticky status flags of checked MVMs into :attr:`flags`."""
        for name, value in flags.items():
            self.flags[name] = self.flags.get(name, False) or value

    @property
    def error_pct(self) -> float:
        """RMS error of every output checked, % of full scale."""
        return float(100.0 * np.sqrt(self.squared_error / max(self.outputs, 1)) / full_scale(self.cfg))

    def reset_errors(self) -> None:
        """Restart the error statistics (not the exactness counts)."""
        self.squared_error, self.outputs, self.worst_mvm_pct = 0.0, 0, 0.0

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.matched > 0

    def report(self) -> str:
        return "\n".join([f"tile MVMs: {self.matched} exact, {self.mismatched} mismatched", *self.errors])


class TileTestbench:
    """The harness, its bus master and firmware, the crossbar bridge, driver, monitor and
    scoreboard.

    Parameters
    ----------
    dut : cocotb handle
        :class:`~neurophase.cosim.harness.TileCosimHarness` top level.
    cfg : ChipConfig
    bridge : CrossbarBridge
        The programmed analog tile at its model time.
    naive : bool
        Use the per-cycle Python bridge and monitor (the speed baseline) instead of the
        transaction-level ones.
    """

    def __init__(self, dut, cfg: ChipConfig, bridge: CrossbarBridge, naive: bool = False):
        self.dut, self.cfg, self.bridge = dut, cfg, bridge
        self.params = DatapathParams.from_config(cfg)
        self.bus = WishboneMaster(dut, dut.clk, "bus")
        self.firmware = TileFirmware(self.bus, cfg)
        self.scoreboard = MvmScoreboard(cfg)
        self.mvms = 0
        #: MVMs that read the reference columns (``analog.gdc_source = "reference-columns"``).
        self.reference_mvms = 0
        self.calibration: np.ndarray | None = None
        self.use(naive)

    def use(self, naive: bool) -> None:
        """Switch between the transaction-level and the naive bridge and monitor."""
        self.naive = naive
        if naive:
            self.adc = NaiveAdcBridge(self.dut, self.cfg)
            self.monitor = NaiveResultMonitor(self.dut, self.cfg)
        else:
            self.adc = HdlAdcBridge(self.dut, self.cfg)
            self.monitor = ResultMonitor(self.dut, self.cfg)
        self.driver = MvmDriver(self.adc, self.firmware)

    async def reset(self) -> None:
        self.dut.rst.value = 1  # the harness registers rst: it acts one cycle later
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        await self.firmware.identify()

    def settings(self) -> DatapathSettings:
        return golden_settings(self.cfg, self.firmware.gains, self.firmware.shift)

    async def run_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Run ``inputs`` (batch, rows) through RTL and model, one MVM each; checks each
        result (scoreboard) and returns the activations (batch, cols)."""
        ideal_out = self.bridge.ideal(inputs) / 2**self.firmware.shift
        return await self._run_codes(self.bridge.read(inputs), ideal_out, "MVM")

    async def run_reference_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Read the reference columns for ``inputs``: their codes go through the RTL as one
        MVM each (checked exactly against the golden periphery); returns the activations
        of the reference columns, (batch, reference columns)."""
        outputs = await self._run_codes(self.bridge.read_reference(inputs), None, "reference MVM")
        self.reference_mvms += len(inputs)
        return outputs[:, :self.bridge.reference_width]

    async def measure_reference(self):
        """The firmware's GDC reference at the present model time, from the calibration set
        (:meth:`~neurophase.cosim.host.TileFirmware.measure_reference`)."""
        return await self.firmware.measure_reference(self.run_batch, self.calibration, self.run_reference_batch)

    async def _run_codes(self, codes: np.ndarray, ideal_out: np.ndarray | None, tag: str) -> np.ndarray:
        golden = datapath_batch(self.params, codes, self.settings())
        self.scoreboard.add_flags(golden["flags"])
        outputs = np.empty((len(codes), self.cfg.tile.cols), dtype=np.int64)
        served = self.adc.conversions()
        for i, mvm_codes in enumerate(codes):
            expected = {"result": golden["result"][i], "saturated": golden["saturated"][i]}
            await self.driver.send(mvm_codes)
            got = await self.monitor.receive()
            outputs[i] = self.scoreboard.check(f"{tag} {self.mvms} at t={self.bridge.time_s:g} s", expected, got,
                                               None if ideal_out is None else ideal_out[i])
            self.mvms += 1
        conversions = self.adc.conversions() - served
        assert conversions == len(codes) * self.params.adc.conversions_per_mvm, \
            f"{len(codes)} MVMs took {conversions} conversions, not {self.params.adc.conversions_per_mvm} each"
        return outputs

    async def configure(self, calibration: np.ndarray | None = None) -> np.ndarray:
        """Choose and write the output shift from the ideal outputs of the calibration
        set (:func:`output_shift`); keeps and returns the calibration set."""
        calibration = calibration_inputs(self.cfg) if calibration is None else calibration
        await self.firmware.configure_output(output_shift(self.cfg, self.bridge.ideal(calibration)))
        self.calibration = calibration
        return calibration

    async def set_gains(self, granularity: str | None, r0=None, r_t=None) -> None:
        """No compensation (``None``: unit tile gain) or GDC of ``granularity`` from two
        references, written by the firmware (which keeps the register state the golden
        model is given)."""
        if granularity is None:
            await self.firmware.set_tile_gain(1.0)
        else:
            await self.firmware.apply_gdc(r0, r_t, granularity)

    async def check_status(self) -> dict:
        """STATUS after a batch: done, no timeout, saturation bits as the golden model
        predicts over the batch; then cleared. Returns the STATUS fields."""
        status = await self.firmware.status()
        flags = self.scoreboard.flags
        want = {"done": 1, "busy": 0, "adc_timeout": 0,
                "sat_shift_add": int(flags.get("trim_saturated", False) or flags.get("acc_saturated", False)),
                "sat_drift_gain": int(flags.get("gain_saturated", False)),
                "sat_batch_norm": int(flags.get("bn_saturated", False) or flags.get("requant_saturated", False))}
        got = {k: status[k] for k in want}
        assert got == want, f"STATUS {got}, expected {want}"
        await self.firmware.clear_status()
        self.scoreboard.flags = {}
        return status

