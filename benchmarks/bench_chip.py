"""Benchmark: images per second through the whole chip co-simulation against the same RTL
with no Python awake during an inference.

Both sides run the same compiled network on the same simulated chip in one simulation: the
full co-simulation (the bridge wakes once per tile MVM, reads the analog model with the
row drive the RTL presents and writes the codes), then the RTL alone (every MVM's codes,
recorded in the first pass, queued in HDL before the image starts). The timed region of
each side is the firmware's work per image (input written, start, interrupt, outputs read)
in process CPU time; each side runs ``repeats`` times, min and median reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from neurophase.cosim.chip_cosim import run_chip_network

__all__ = ["bench_chip"]


def bench_chip(compiled, images: np.ndarray, labels: np.ndarray, build_dir: str | Path, *, repeats: int = 3,
               seed: int = 0, progress=None) -> dict:
    """Figures of :func:`neurophase.cosim.benches.chip_network.speed`: ``images_per_s``,
    ``rtl_only_images_per_s``, ``fraction_of_rtl_only``, ``cycles_per_image``,
    ``images_per_s_at_clock`` (and medians and raw CPU times)."""
    with threadpool_limits(1):
        run, figures = run_chip_network(compiled, images, labels, build_dir, seed=seed, testcase="speed",
                                        check_layers=False, repeats=repeats, progress=progress)
    cfg = compiled.cfg
    return {
        **figures,
        "sim_seed": run.seed,
        "ok": run.ok,
        "config": f"{cfg.tile.count} tiles of {cfg.tile.rows}x{cfg.tile.cols}, {cfg.input.bits}-bit inputs, "
                  f"{cfg.adc.bits}-bit ADC, latency {cfg.adc.latency_cycles} cycles, {cfg.datapath.lanes} lanes, "
                  f"{cfg.clock_mhz:g} MHz",
    }
