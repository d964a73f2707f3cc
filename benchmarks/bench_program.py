"""Programming a tile with the program-verify controller under Verilator against the
stochastic device model: the ``neurophase sim program`` scenario and the
``neurophase bench program`` benchmark.

A weight matrix is mapped (:mod:`neurophase.models.mapping`) to target conductances,
laid out as the controller's physical columns (:func:`~neurophase.models.program_verify.to_physical`)
and quantised to verify codes. The cocotb bench ``program_tile`` then programs every row
in turn through the controller's CSRs, with every pulse and verify read answered by the
numpy device model and checked against the golden policy model. Programming error is the
achieved conductance (noise-free, right after programming) minus the target, in µS.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from neurophase.config import ChipConfig
from neurophase.cosim.runner import SimRun, run_cocotb
from neurophase.models.devices import device_model_from_config
from neurophase.models.mapping import WeightMapping, map_weights
from neurophase.models.program_verify import (
    default_policy, physical_columns, target_codes, to_physical, verify_lsb_us,
)

__all__ = ["run_program_verify", "program_tile", "summarise", "plot_programming", "bench_config",
           "BENCH_SEED", "REGRESSION_TESTS"]

BENCH_SEED = 20260105

#: The cocotb tests of the controller's regression (the scenario is ``program_tile``).
REGRESSION_TESTS = ("random_rows", "target_already_met", "unreachable_target", "stuck_devices", "abort_mid_run",
                    "tolerance_zero", "csr_extremes")


def bench_config(rows: int = 256, cols: int = 256) -> ChipConfig:
    """The benchmark chip: defaults (pcm-joshi, 8-bit ADC, one slice), ``rows`` x ``cols``."""
    cfg = ChipConfig()
    lanes = cfg.datapath.lanes if cols % cfg.datapath.lanes == 0 else 1
    return cfg.replace(tile={"rows": rows, "cols": cols}, datapath={"lanes": lanes})


def _write_verilog(cfg: ChipConfig, build_dir: Path) -> Path:
    from neurophase.generate import convert
    from neurophase.rtl.program_verify import ProgramVerify

    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / "program_verify.v"
    text = convert(ProgramVerify(cfg), "program_verify")
    if not source.exists() or source.read_text(encoding="utf-8") != text:
        source.write_text(text, encoding="utf-8")
    return source


def run_program_verify(cfg: ChipConfig, build_dir: str | Path, *, seed: int | None = None, count: int = 8,
                       tests: tuple[str, ...] = REGRESSION_TESTS, waves: bool = False,
                       simulator: str = "verilator", verbose: bool = False) -> SimRun:
    """The controller's cocotb regression for ``cfg``: ``count`` random rows against the
    golden model, target already met, unreachable target, stuck devices, abort, tolerance
    zero, CSR extremes (bad range, timeout, interrupts)."""
    build_dir = Path(build_dir)
    source = _write_verilog(cfg, build_dir)
    return run_cocotb(toplevel="program_verify", verilog=[source], test_module="neurophase.cosim.benches.program_verify",
                      build_dir=build_dir, params={"config": cfg.to_dict(), "count": count}, seed=seed,
                      waves=waves, simulator=simulator, testcase=list(tests), verbose=verbose)
