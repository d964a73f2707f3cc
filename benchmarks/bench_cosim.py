"""Benchmark: tile MVMs through the full RTL + analog-model loop, transaction-level bridge
against a naive bridge that wakes Python on every clock edge, in the same simulation.

Both bridges read the same model (one call per batch of MVMs, at the same model time) and
check every result exactly against the golden periphery; the timed region of each is its
whole batch: model read, codes to the RTL, simulation, result decoding and checking.
"""

from __future__ import annotations

from pathlib import Path

from neurophase.config import ChipConfig
from neurophase.cosim.tile_cosim import run_cosim_bench

__all__ = ["bench_cosim"]


def bench_cosim(cfg: ChipConfig, build_dir: str | Path, *, count: int = 100, seed: int = 20260106,
                simulator: str = "verilator", progress=None) -> dict:
    """Figures: ``mvm_per_s``, ``naive_mvm_per_s``, ``speedup_vs_naive``, ``rtl_cycles_per_s``
    (and the raw times), for ``count`` MVMs of ``cfg`` per bridge; ``idle_rtl_cycles_per_s``
    (the simulator with no Python awake) and ``speedup_ceiling`` (its ratio to the naive
    bridge's cycles per second: no bridge can beat it); ``model_read_s_per_mvm`` (the analog
    model's share, paid by every bridge) and ``speedup_bound_with_model`` (the naive time per
    MVM over the idle simulator's plus the model's: the bound with the model in the loop).
    ``progress`` receives the stages (see :func:`~neurophase.cosim.runner.run_cocotb`)."""
    run, figures = run_cosim_bench(cfg, build_dir, count=count, seed=seed, simulator=simulator, progress=progress)
    return {
        **figures,
        "seed": run.seed,
        "simulator": simulator,
        "all_exact": run.ok,
        "config": f"{cfg.tile.rows}x{cfg.tile.cols}, {cfg.input.bits}-bit inputs, {cfg.adc.bits}-bit ADC, "
                  f"latency {cfg.adc.latency_cycles} cycles, {cfg.datapath.lanes} lanes",
    }
