"""cocotb benches of the program-verify controller under Verilator, against the numpy
device model (through :class:`~neurophase.cosim.device_bridge.DeviceBridge`) and the
golden policy model (:class:`~neurophase.models.program_verify.ControllerModel`).

Parameters come from the runner as JSON in ``NEUROPHASE_PARAMS``: ``config`` (a
ChipConfig as a dict), ``count`` (random rows of ``random_rows``) and, for the
``program_tile`` scenario, ``job`` (an .npz with the targets and start conductances),
``out`` (the results .npz) and ``progress`` (a text file holding the rows done).

Every run is checked against the golden model online: each verify read the bridge
delivers is stepped through the model, and every pulse command the controller issues
must equal the model's next command for that read; after the run the per-device
outcomes and counters read over the bus must equal the model's.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.utils import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge, Timer

from neurophase.atomic import atomic_write, write_text_atomic
from neurophase.config import ChipConfig
from neurophase.cosim.device_bridge import DeviceBridge
from neurophase.cosim.scoreboard import Scoreboard
from neurophase.cosim.wishbone import WishboneMaster
from neurophase.models.devices import DeviceModel, device_model_from_config
from neurophase.models.program_verify import (
    AMPLITUDE_BITS, CLASSES, ControllerModel, DeviceArray, PolicyParams, default_policy, iteration_bits,
    physical_columns, policy_registers, program_verify_register_map, verify_lsb_us,
)
from neurophase.rtl.program_verify import program_verify_layouts

PERIOD_NS = 10
STATUS_BITS = ("busy", "done", "failed", "aborted", "timeout", "bad_range")


def _settings() -> tuple[ChipConfig, dict]:
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return ChipConfig.from_dict(raw.get("config", {})), raw


class GoldenChecker:
    """Steps the golden model with every verify read and checks every pulse command."""

    def __init__(self, params: PolicyParams, targets: np.ndarray, row: int, tag: str):
        self.model = ControllerModel(params, targets, row)
        self.scoreboard = Scoreboard(f"program-verify {tag}")
        self.row = row

    def on_read(self, row: int, codes: np.ndarray) -> None:
        if row != self.row:
            self.scoreboard.errors.append(f"verify read of row {row}, expected row {self.row}")
        if self.model.done:
            self.scoreboard.errors.append(f"verify read after the run was over: {codes.tolist()}")
            return
        self.scoreboard.expect(self.model.step(codes), tag=f"read {self.model.outcome.row_reads}")

    def on_pulse(self, command) -> None:
        self.scoreboard.observe(command)
        self.model.issued(command)


class PvHost:
    """The host's view of the controller: CSR writes and reads over Wishbone."""

    def __init__(self, dut, cfg: ChipConfig):
        self.dut = dut
        self.cfg = cfg
        self.regmap = program_verify_register_map(cfg)
        self.master = WishboneMaster(dut, dut.clk, timeout_cycles=8)
        self.columns = physical_columns(cfg)
        self.target_base = self.regmap.address("PV_TARGET")
        self._written: dict[int, int] = {}
        self.irq_en = 0

    def addr(self, name: str) -> int:
        return self.regmap.address(name)

    async def write_targets(self, targets) -> None:
        for p, value in enumerate(np.asarray(targets, np.int64)):
            address = self.target_base + 4 * p
            if self._written.get(address) != int(value):
                await self.master.write(address, int(value))
                self._written[address] = int(value)

    async def configure(self, params: PolicyParams, row: int) -> None:
        for address, word in policy_registers(self.regmap, params, row).items():
            if self._written.get(address) != word:
                await self.master.write(address, word)
                self._written[address] = word

    async def write(self, name: str, word: int) -> None:
        await self.master.write(self.addr(name), word)
        self._written[self.addr(name)] = word

    async def start(self) -> None:
        await self.master.write(self.addr("PV_CTRL"), 0b01 | self.irq_en << 8)

    async def abort(self) -> None:
        await self.master.write(self.addr("PV_CTRL"), 0b10 | self.irq_en << 8)

    async def enable_irq(self, enable: bool) -> None:
        self.irq_en = int(enable)
        await self.master.write(self.addr("PV_CTRL"), self.irq_en << 8)

    async def wait_idle(self, limit_cycles: int = 10_000_000) -> None:
        """Until ``busy`` falls (no Python per cycle); fails after ``limit_cycles``."""
        await ReadOnly()
        if int(self.dut.busy.value):
            timer = Timer(limit_cycles * PERIOD_NS, unit="ns")
            if await First(FallingEdge(self.dut.busy), timer) is timer:
                raise AssertionError(f"the controller is still busy after {limit_cycles} cycles")
        await RisingEdge(self.dut.clk)

    async def status(self, clear: bool = True) -> dict:
        word = await self.master.read(self.addr("PV_STATUS"))
        if clear:
            await self.master.write(self.addr("PV_STATUS"), word & ~1)
        return {name: bool(word >> i & 1) for i, name in enumerate(STATUS_BITS)}

    async def counters(self) -> dict:
        names = {"row_reads": "PV_ROW_READS", "commands": "PV_COMMANDS", "converged": "PV_CONVERGED",
                 "failed": "PV_FAILED", "device_iterations": "PV_DEVICE_ITERS", "device_pulses": "PV_DEVICE_PULSES"}
        return {key: await self.master.read(self.addr(reg)) for key, reg in names.items()}

    async def outcome(self) -> dict:
        """Per-device (iterations, pulses, converged, failed) through the result window."""
        ibits = iteration_bits(self.cfg)
        out = {k: np.zeros(self.columns, np.int64) for k in ("iterations", "pulses", "converged", "failed")}
        for p in range(self.columns):
            await self.master.write(self.addr("PV_RESULT_INDEX"), p)
            word = await self.master.read(self.addr("PV_RESULT"))
            out["iterations"][p] = word & ((1 << ibits) - 1)
            out["pulses"][p] = (word >> ibits) & ((1 << ibits) - 1)
            out["converged"][p] = (word >> 2 * ibits) & 1
            out["failed"][p] = (word >> (2 * ibits + 1)) & 1
        return out


class PvBench:
    """Clock, reset, host, device array and bridge around one controller."""

    def __init__(self, dut, cfg: ChipConfig, array: DeviceArray):
        self.dut = dut
        self.cfg = cfg
        self.host = PvHost(dut, cfg)
        self.bridge = DeviceBridge(dut, program_verify_layouts(cfg)[0], array, period_ns=PERIOD_NS,
                                   read_latency_cycles=cfg.adc.latency_cycles)
        self.checker: GoldenChecker | None = None

    async def start(self) -> None:
        Clock(self.dut.clk, PERIOD_NS, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        cocotb.start_soon(self.bridge.run())

    def attach(self, params: PolicyParams, targets, row: int, tag: str) -> GoldenChecker:
        self.checker = GoldenChecker(params, targets, row, tag)
        self.bridge.on_read = self.checker.on_read
        self.bridge.on_pulse = self.checker.on_pulse
        return self.checker

    async def program(self, params: PolicyParams, targets, row: int, tag: str, *, abort_after: int | None = None,
                      check_outcome: bool = True) -> dict:
        """Configure, start, wait; check against the golden model; return status, counters, outcome."""
        checker = self.attach(params, targets, row, tag)
        await self.host.write_targets(targets)
        await self.host.configure(params, row)
        await self.host.start()
        if abort_after is not None:
            while True:
                await ReadOnly()
                if checker.model.outcome.commands >= abort_after or not int(self.dut.busy.value):
                    break
                await First(RisingEdge(self.dut.pulse__ready), FallingEdge(self.dut.busy))
            await RisingEdge(self.dut.clk)
            await self.host.abort()
        await self.host.wait_idle()
        result = {"status": await self.host.status(), "counters": await self.host.counters()}
        if check_outcome:
            result["outcome"] = await self.host.outcome()
            self.compare(result, checker, tag, aborted=abort_after is not None)
        return result

    def compare(self, result: dict, checker: GoldenChecker, tag: str, aborted: bool = False) -> None:
        model = checker.model.outcome
        board = checker.scoreboard
        if aborted:
            board.expected.clear()        # commands the abort cut off
        for key in ("iterations", "pulses", "converged", "failed"):
            got, want = result["outcome"][key], getattr(model, key).astype(np.int64)
            if not np.array_equal(got, want):
                where = np.flatnonzero(got != want)[:5]
                board.errors.append(f"{tag}: {key} differ at columns {where.tolist()}: "
                                    f"RTL {got[where].tolist()}, model {want[where].tolist()}")
        want_counts = model.totals
        if result["counters"] != want_counts:
            board.errors.append(f"{tag}: counters RTL {result['counters']}, model {want_counts}")
        status = result["status"]
        expect_failed = bool(model.failed.any())
        if not status["done"] or status["busy"] or status["failed"] != expect_failed \
                or status["aborted"] != aborted or status["timeout"] or status["bad_range"]:
            board.errors.append(f"{tag}: status {status}; expected done, failed={expect_failed}, aborted={aborted}")
        if not aborted and not checker.model.done:
            board.errors.append(f"{tag}: the RTL stopped but the model expects more reads")
        self.dut._log.info(board.report())
        assert board.ok, board.report()


# -- stimulus helpers --------------------------------------------------------------------------------

def _random_policy(rng: random.Random, cfg: ChipConfig, base: PolicyParams) -> PolicyParams:
    n = physical_columns(cfg)
    first = rng.choice([0, 0, rng.randrange(n)])
    last = rng.choice([n - 1, n - 1, rng.randrange(first, n)])
    scale = lambda values, hi: tuple(min(hi, max(0, int(v * rng.uniform(0.6, 1.5)))) for v in values)  # noqa: E731
    return base.replace(tolerance=rng.choice([0, 1, 2, 2, 3]), max_iterations=rng.randrange(1, 41),
                        set_amplitude=scale(base.set_amplitude, 255), set_width=scale(base.set_width, 255),
                        reset_amplitude=scale(base.reset_amplitude, 255), reset_width=base.reset_width,
                        first=first, last=last)


def _setup(dut, seed_offset: int = 0, device: DeviceModel | None = None, lsb_us: float | None = None,
           g_start=None, stuck=None):
    cfg, raw = _settings()
    device = device or device_model_from_config(cfg)
    rng = np.random.default_rng(cocotb.RANDOM_SEED + seed_offset)
    n = physical_columns(cfg)
    g = np.full((cfg.tile.rows, n), device.g_min) if g_start is None else g_start
    array = DeviceArray(device, g, cfg.adc.bits, rng, cfg.analog.adc_noise_lsb, stuck, lsb_us)
    return cfg, raw, PvBench(dut, cfg, array), rng


def _top(cfg: ChipConfig) -> int:
    return 2 ** (cfg.adc.bits - 1) - 1


# -- tests -------------------------------------------------------------------------------------------

@cocotb.test()
async def random_rows(dut):
    """Seeded random targets, start states, stuck devices and policies: RTL == golden."""
    cfg, raw = _settings()
    device = device_model_from_config(cfg)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    n = physical_columns(cfg)
    top_us = device.g_ceiling_factor * device.g_max
    g = rng.uniform(0, top_us, (cfg.tile.rows, n))
    stuck = rng.random((cfg.tile.rows, n)) < 0.03
    array = DeviceArray(device, g, cfg.adc.bits, rng, cfg.analog.adc_noise_lsb, stuck)
    bench = PvBench(dut, cfg, array)
    await bench.start()
    pick = random.Random(cocotb.RANDOM_SEED)
    base = default_policy(cfg)
    for i in range(raw.get("count", 8)):
        row = pick.randrange(cfg.tile.rows)
        params = base if i == 0 else _random_policy(pick, cfg, base)
        targets = rng.integers(0, _top(cfg) + 1, n)
        await bench.program(params, targets, row, f"random row {i} (row {row})")


@cocotb.test()
async def target_already_met(dut):
    """Devices already within tolerance: one read, no pulse, all converged."""
    cfg, _ = _settings()
    device = device_model_from_config(cfg)
    n = physical_columns(cfg)
    lsb = verify_lsb_us(device, cfg.adc.bits)
    targets = np.random.default_rng(cocotb.RANDOM_SEED).integers(0, _top(cfg) - 2, n)
    g = np.tile(targets * lsb, (cfg.tile.rows, 1))
    _, _, bench, _ = _setup(dut, 1, g_start=g)
    await bench.start()
    params = default_policy(cfg).replace(tolerance=3)
    result = await bench.program(params, targets, 1, "already met")
    assert result["counters"]["row_reads"] == 1 and result["counters"]["commands"] == 0, result["counters"]
    assert result["outcome"]["converged"].all() and (result["outcome"]["iterations"] == 1).all()


@cocotb.test()
async def unreachable_target(dut):
    """Devices whose ceiling is below the target fail after exactly N_max reads; the run ends."""
    cfg, _ = _settings()
    nominal = device_model_from_config(cfg)
    weak = DeviceModel(nominal.preset, {**nominal.params, "g_ceiling_factor": 0.5})
    _, _, bench, _ = _setup(dut, 2, device=weak, lsb_us=verify_lsb_us(nominal, cfg.adc.bits))
    await bench.start()
    n = physical_columns(cfg)
    targets = np.full(n, _top(cfg))
    targets[::4] = 0                                   # these are met at once
    params = default_policy(cfg).replace(max_iterations=12)
    result = await bench.program(params, targets, 0, "unreachable")
    out = result["outcome"]
    far = targets > 0
    assert out["failed"][far].all() and not out["failed"][~far].any()
    assert (out["iterations"][far] == 12).all() and (out["pulses"][far] == 11).all()
    assert result["counters"]["row_reads"] == 12 and result["status"]["failed"]


@cocotb.test()
async def stuck_devices(dut):
    """Stuck-at devices fail (unless they already sit in the band); the rest converge."""
    cfg, _ = _settings()
    n = physical_columns(cfg)
    stuck = np.zeros((cfg.tile.rows, n), bool)
    stuck[2, 1::3] = True
    _, _, bench, rng = _setup(dut, 3, stuck=stuck)
    await bench.start()
    targets = rng.integers(20, _top(cfg) - 10, n)
    result = await bench.program(default_policy(cfg), targets, 2, "stuck")
    out = result["outcome"]
    assert out["failed"][1::3].all(), out["failed"]
    assert out["converged"][~stuck[2]].mean() >= 0.9, out["converged"]


@cocotb.test()
async def abort_mid_run(dut):
    """Abort after a few pulse commands: the run ends with aborted, counts match the
    commands actually issued, and the next run works."""
    cfg, _ = _settings()
    _, _, bench, rng = _setup(dut, 4)
    await bench.start()
    n = physical_columns(cfg)
    targets = rng.integers(60, _top(cfg), n)
    result = await bench.program(default_policy(cfg), targets, 3, "abort", abort_after=3)
    assert result["status"]["aborted"] and result["counters"]["commands"] >= 3
    reads_before = len(bench.bridge.reads)
    await ClockCycles(dut.clk, 200)
    assert len(bench.bridge.reads) == reads_before, "the controller kept reading after the abort"
    # abort while idle does nothing; the next run completes normally
    await bench.host.abort()
    await bench.program(default_policy(cfg), targets, 4, "after abort")


@cocotb.test()
async def tolerance_zero(dut):
    """Tolerance 0: only an exact code match converges; still ends after N_max."""
    cfg, _ = _settings()
    _, _, bench, rng = _setup(dut, 5)
    await bench.start()
    n = physical_columns(cfg)
    targets = rng.integers(0, _top(cfg), n)
    await bench.program(default_policy(cfg).replace(tolerance=0, max_iterations=25), targets, 5, "tolerance 0")


@cocotb.test()
async def csr_extremes(dut):
    """Every run parameter at its extremes; bad ranges refused; timeouts; interrupts."""
    cfg, _ = _settings()
    _, _, bench, rng = _setup(dut, 6)
    await bench.start()
    host = bench.host
    n = physical_columns(cfg)
    ibits = iteration_bits(cfg)
    base = default_policy(cfg)
    targets = rng.integers(0, _top(cfg), n)
    zeros, full = (0,) * CLASSES, ((1 << AMPLITUDE_BITS) - 1,) * CLASSES
    cases = [
        ("N_max 1", base.replace(max_iterations=1)),
        ("N_max max, no effect pulses", base.replace(max_iterations=(1 << ibits) - 1, set_amplitude=zeros,
                                                     reset_amplitude=zeros)),
        ("width 0", base.replace(set_width=zeros, reset_width=zeros, max_iterations=6)),
        ("amplitude and width max", base.replace(set_amplitude=full, set_width=full, reset_amplitude=full,
                                                 reset_width=full, max_iterations=8)),
        ("tolerance max", base.replace(tolerance=(1 << cfg.adc.bits) - 1)),
        ("one device, last column", base.replace(first=n - 1, last=n - 1)),
        ("one device, first column", base.replace(first=0, last=0)),
    ]
    for i, (tag, params) in enumerate(cases):
        result = await bench.program(params, targets, i % cfg.tile.rows, tag)
        if tag == "N_max 1":
            assert result["counters"]["row_reads"] == 1 and result["counters"]["commands"] == 0
        if tag.startswith("N_max max"):
            assert result["counters"]["row_reads"] == (1 << ibits) - 1
        if tag == "tolerance max":
            assert result["outcome"]["converged"].all()
        if tag.startswith("one device"):
            assert result["outcome"]["iterations"][[p for p in range(n) if p != params.first]].sum() == 0

    # PV_MAX_ITER = 0 acts as 1
    await host.write("PV_MAX_ITER", 0)
    reads = len(bench.bridge.reads)
    bench.bridge.on_read = bench.bridge.on_pulse = None
    await host.start()
    await host.wait_idle()
    assert len(bench.bridge.reads) == reads + 1 and (await host.counters())["commands"] == 0
    await host.status()

    # refused ranges: done and bad_range, no read
    for first, last in ((3, 2), (0, n), (n, n)):
        await host.write("PV_RANGE", first | last << 16)
        await host.start()
        await ClockCycles(dut.clk, 4)
        status = await host.status()
        assert status["bad_range"] and status["done"] and not status["busy"], (first, last, status)
        assert len(bench.bridge.reads) == reads + 1
    await host.write("PV_RANGE", (n - 1) << 16)

    # an unanswered read ends the run with timeout (PV_TIMEOUT 0 acts as 1)
    for cycles in (40, 0):
        await host.write("PV_MAX_ITER", 5)
        await host.write("PV_TIMEOUT", cycles)
        bench.bridge.answering = False
        await host.start()
        await host.wait_idle(limit_cycles=1000)
        status = await host.status()
        assert status["timeout"] and status["done"], status
        bench.bridge.answering = True
    await host.write("PV_TIMEOUT", 0xFFFF)

    # interrupts: done raises irq when enabled
    await host.write("PV_IRQ_ENABLE", 0b1)            # done
    await host.enable_irq(True)
    await host.write("PV_MAX_ITER", 1)
    await host.start()
    await host.wait_idle()
    await ClockCycles(dut.clk, 2)
    assert int(dut.irq.value) == 1
    await host.status()
    await ClockCycles(dut.clk, 2)
    assert int(dut.irq.value) == 0


# -- the full-tile scenario ----------------------------------------------------------------------------

@cocotb.test(skip="program_tile" not in os.environ.get("COCOTB_TEST_FILTER", ""))
async def program_tile(dut):
    """Program every row of a tile from the job file; write per-device results."""
    cfg, raw = _settings()
    job = np.load(raw["job"])
    device = device_model_from_config(cfg)
    rng = np.random.default_rng(int(job["seed"]))
    array = DeviceArray(device, job["g_start"], cfg.adc.bits, rng, cfg.analog.adc_noise_lsb)
    bench = PvBench(dut, cfg, array)
    await bench.start()
    targets = job["targets"]
    policy = default_policy(cfg)
    rows, n = targets.shape
    results = {k: np.zeros((rows, n), np.int64) for k in ("iterations", "pulses", "converged", "failed")}
    row_reads = np.zeros(rows, np.int64)
    commands = np.zeros(rows, np.int64)
    progress = raw.get("progress")
    for row in range(rows):
        result = await bench.program(policy, targets[row], row, f"row {row}")
        for key in results:
            results[key][row] = result["outcome"][key]
        row_reads[row] = result["counters"]["row_reads"]
        commands[row] = result["counters"]["commands"]
        if progress:
            write_text_atomic(progress, str(row + 1))
    with atomic_write(raw["out"], "wb") as handle:
        np.savez(handle, g=array.g, row_reads=row_reads, commands=commands, device_pulses=array.pulses,
                 sim_time_ns=get_sim_time("ns"), **results)
