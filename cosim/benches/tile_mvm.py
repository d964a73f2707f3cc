"""cocotb tests of the tile RTL with the analog crossbar in the loop (harness top level).

``NEUROPHASE_PARAMS``: ``config`` (ChipConfig dict), ``count`` (MVMs), ``time_s`` (model
time of the MVMs), ``gdc`` (``"none"``, ``"per-tile"``, ``"per-column"``), ``batch`` (MVMs
between STATUS checks), ``results_json`` (where the summary is written).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer
from cocotb.utils import get_sim_time

from neurophase.atomic import write_text_atomic
from neurophase.config import ChipConfig
from neurophase.cosim.bridge import CrossbarBridge
from neurophase.cosim.harness import CLOCK_PERIOD_NS
from neurophase.cosim.tile_env import TileTestbench, predicted_error_pct
from neurophase.models.crossbar import build_tile, input_range
from neurophase.models.studies import study_weights

#: Clock period of the simulation, ns (the harness generates its clock).
CLOCK_NS = CLOCK_PERIOD_NS
#: The measured RMS error may exceed the model's predicted one by at most this factor.
BUDGET_TOLERANCE = 1.25
#: Idle cycles simulated to measure the simulator's own speed (no Python awake).
IDLE_CYCLES = 20000


def load_params() -> tuple[ChipConfig, dict]:
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    return ChipConfig.from_dict(raw.get("config", {})), raw


def random_inputs(cfg: ChipConfig, rng: np.random.Generator, count: int) -> np.ndarray:
    lo, hi = input_range(cfg)
    return rng.integers(lo, hi + 1, size=(count, cfg.tile.rows))


async def programmed_testbench(dut, cfg: ChipConfig, seed: int,
                               weights: str = "gaussian") -> tuple[TileTestbench, np.random.Generator]:
    """A tile programmed with seeded weights of distribution ``weights``
    (:func:`~neurophase.models.studies.study_weights`), reset, output stage set up."""
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, study_weights(weights, (cfg.tile.rows, cfg.tile.cols), rng), seed)
    bench = TileTestbench(dut, cfg, CrossbarBridge(tile, np.random.default_rng(seed + 1)))
    await bench.reset()
    bench.calibration = await bench.configure()
    return bench, rng


def write_results(raw: dict, results: dict) -> None:
    path = raw.get("results_json")
    if path:
        write_text_atomic(path, json.dumps(results, indent=2))


async def run_checked(bench: TileTestbench, inputs: np.ndarray, batch: int) -> None:
    for first in range(0, len(inputs), batch):
        await bench.run_batch(inputs[first: first + batch])
        await bench.check_status()
        bench.dut._log.info("progress: %d/%d MVMs", min(first + batch, len(inputs)), len(inputs))


@cocotb.test()
async def mvm_regression(dut):
    """Seeded random MVMs at model time ``time_s`` after GDC: every result exact against the
    golden periphery on the same ADC codes, the error within the model's budget."""
    cfg, raw = load_params()
    bench, rng = await programmed_testbench(dut, cfg, cocotb.RANDOM_SEED)
    r0 = await bench.measure_reference()
    bench.bridge.advance_to(float(raw.get("time_s", 3600.0)))
    gdc = raw.get("gdc", "per-tile")
    r_t = await bench.measure_reference()
    await bench.set_gains(None if gdc == "none" else gdc, r0, r_t)
    await bench.firmware.clear_status()
    bench.scoreboard.flags = {}
    bench.scoreboard.reset_errors()
    inputs = random_inputs(cfg, rng, int(raw.get("count", 200)))
    started, cycles0 = time.perf_counter(), get_sim_time("ns") / CLOCK_NS
    await run_checked(bench, inputs, int(raw.get("batch", 50)))
    wall, cycles = time.perf_counter() - started, get_sim_time("ns") / CLOCK_NS - cycles0
    # The prediction sees the same vectors (its own read-noise draws): a few MVMs' error
    # swings with the vectors drawn, which a budget from other vectors would not follow.
    predicted = predicted_error_pct(bench.bridge, bench.settings(), inputs,
                                    np.random.default_rng(cocotb.RANDOM_SEED + 2))
    board = bench.scoreboard
    results = {
        "time_s": bench.bridge.time_s, "gdc": gdc, "mvms": bench.mvms,
        "exact": board.matched, "mismatched": board.mismatched, "checked_mvms": int(raw.get("count", 200)),
        "error_pct": board.error_pct, "worst_mvm_pct": board.worst_mvm_pct, "predicted_pct": predicted,
        "budget_pct": BUDGET_TOLERANCE * predicted, "shift": bench.firmware.shift,
        "mvm_count_register": await bench.firmware.mvm_count(), "wall_s": wall, "cycles": cycles,
        "gdc_source": cfg.analog.gdc_source, "reference_mvms": bench.reference_mvms,
        "full_scale_lsb": 2 ** (cfg.datapath.activation_bits - 1) - 1,
    }
    write_results(raw, results)
    assert board.ok, board.report()
    assert results["mvm_count_register"] == bench.mvms, results
    assert board.error_pct <= BUDGET_TOLERANCE * predicted, (
        f"MVM error {board.error_pct:.3f} % FS exceeds the budget {BUDGET_TOLERANCE} x {predicted:.3f} % FS")


@cocotb.test()
async def cosim_speed(dut):
    """The same seeded MVMs through the transaction-level bridge and through the naive
    per-cycle one, timed in one run; both exact against the golden model."""
    cfg, raw = load_params()
    count = int(raw.get("count", 50))
    bench, rng = await programmed_testbench(dut, cfg, cocotb.RANDOM_SEED)
    bench.bridge.advance_to(float(raw.get("time_s", 3600.0)))
    inputs = random_inputs(cfg, rng, count)
    figures = {"mvms": count}
    # The simulator alone, no Python awake: the ceiling of any bridge's speed.
    started = time.perf_counter()
    await Timer(IDLE_CYCLES * CLOCK_NS, unit="ns")
    figures["idle_rtl_cycles_per_s"] = IDLE_CYCLES / (time.perf_counter() - started)
    # The analog model's read of the batch, which every bridge pays (its own generator, so
    # the bridges' codes are unchanged).
    started = time.perf_counter()
    bench.bridge.tile.adc_codes(inputs, bench.bridge.time_s, np.random.default_rng(0))
    figures["model_read_s_per_mvm"] = (time.perf_counter() - started) / count
    await RisingEdge(dut.clk)  # both bridges start just after a clock edge, as the naive one does
    for label, naive in (("fast", False), ("naive", True)):
        bench.use(naive)
        if naive:
            cocotb.start_soon(bench.adc.run())
        started, cycles0 = time.perf_counter(), get_sim_time("ns") / CLOCK_NS
        await bench.run_batch(inputs)
        figures[f"{label}_wall_s"] = time.perf_counter() - started
        figures[f"{label}_cycles"] = get_sim_time("ns") / CLOCK_NS - cycles0
    figures["mvm_per_s"] = count / figures["fast_wall_s"]
    figures["naive_mvm_per_s"] = count / figures["naive_wall_s"]
    figures["speedup_vs_naive"] = figures["mvm_per_s"] / figures["naive_mvm_per_s"]
    figures["rtl_cycles_per_s"] = figures["fast_cycles"] / figures["fast_wall_s"]
    figures["naive_rtl_cycles_per_s"] = figures["naive_cycles"] / figures["naive_wall_s"]
    figures["cycles_per_mvm"] = figures["fast_cycles"] / count
    figures["speedup_ceiling"] = figures["idle_rtl_cycles_per_s"] / figures["naive_rtl_cycles_per_s"]
    # No bridge is faster than the idle simulator plus the model read, per MVM.
    fastest_s_per_mvm = figures["cycles_per_mvm"] / figures["idle_rtl_cycles_per_s"] + figures["model_read_s_per_mvm"]
    figures["speedup_bound_with_model"] = figures["naive_wall_s"] / count / fastest_s_per_mvm
    figures["exact"] = bench.scoreboard.matched
    write_results(raw, figures)
    assert bench.scoreboard.ok and bench.scoreboard.matched == 2 * count, bench.scoreboard.report()
