"""The cocotb regressions of each RTL block, callable from the CLI and from pytest alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from neurophase.cosim.runner import SimRun, run_cocotb
from neurophase.generate import convert
from neurophase.models.shift_add import ShiftAddParams
from neurophase.rtl.shift_add import ShiftAdd

__all__ = ["run_shift_add"]


def run_shift_add(
    params: ShiftAddParams,
    build_dir: str | Path,
    *,
    seed: int | None = None,
    count: int = 1000,
    idle: float = 0.2,
    stall: float = 0.3,
    waves: bool = False,
    simulator: str = "verilator",
) -> SimRun:
    """Generate the shift-and-add Verilog for ``params`` and run its cocotb regression
    (corner cases, ``count`` random MVMs, back-pressure, throughput, restart)."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / "shift_add.v"
    text = convert(ShiftAdd(params), "shift_add")
    if not source.exists() or source.read_text(encoding="utf-8") != text:
        source.write_text(text, encoding="utf-8")
    return run_cocotb(
        toplevel="shift_add",
        verilog=[source],
        test_module="neurophase.cosim.benches.shift_add",
        build_dir=build_dir,
        params={"params": dataclasses.asdict(params), "count": count, "idle": idle, "stall": stall},
        seed=seed,
        waves=waves,
        simulator=simulator,
    )
