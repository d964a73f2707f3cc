"""Run the chip co-simulation from Python: harness Verilog (regenerated only when the
configuration or the HDL sources change), the job file, the cocotb run, the results."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np

from neurophase.atomic import write_bytes_atomic, write_text_atomic, write_text_if_changed
from neurophase.config import ChipConfig
from neurophase.cosim.runner import SimRun, SimulationError, run_cocotb

__all__ = ["TOPLEVEL", "chip_harness_verilog", "run_chip_network", "write_job", "sized_chip", "plot_network_drift"]

TOPLEVEL = "chip_cosim"


def _sources_digest() -> str:
    import neurophase.cosim.chip_harness as harness
    import neurophase.rtl as rtl

    digest = hashlib.sha256()
    for path in sorted(Path(rtl.__file__).parent.glob("*.py")) + [Path(harness.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def chip_harness_verilog(cfg: ChipConfig, build_dir: str | Path) -> list[Path]:
    """``[chip_cosim.v, neurophase_chip_tile.v, chip_cosim.vlt]`` in ``build_dir`` for ``cfg``.

    The Verilator control file keeps the tile a module of its own (``no_inline``): its C++
    is compiled once and instantiated per tile instead of being flattened ``tile.count``
    times into the top, which multiplied the C++ compile time by the tile count."""
    from neurophase.cosim.chip_harness import ChipCosimHarness
    from neurophase.cosim.harness import sim_clock_verilog
    from neurophase.generate import convert
    from neurophase.rtl.chip import TILE_MODULE
    from neurophase.rtl.tile import Tile

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    top, tile = build_dir / f"{TOPLEVEL}.v", build_dir / f"{TILE_MODULE}.v"
    control = build_dir / f"{TOPLEVEL}.vlt"
    write_text_if_changed(control, f'`verilator_config\nno_inline -module "{TILE_MODULE}"\n')
    stamp = build_dir / f"{TOPLEVEL}.config.json"
    wanted = json.dumps({"config": cfg.to_dict(), "sources": _sources_digest()}, sort_keys=True)
    if top.exists() and tile.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return [top, tile, control]
    write_text_if_changed(tile, convert(Tile(cfg, on_chip=True), TILE_MODULE))
    write_text_if_changed(top, convert(ChipCosimHarness(cfg), TOPLEVEL) + sim_clock_verilog())
    write_text_atomic(stamp, wanted)
    return [top, tile, control]


def sized_chip(mapped, calibration_inputs, tiles: int | None = None):
    """``mapped`` on a chip of ``tiles`` tiles (default: the tiles the network uses), so the
    simulated chip holds no idle tiles; the placement is unchanged."""
    from neurophase.config import ConfigError
    from neurophase.network.mapping import map_network

    count = mapped.tiles_used if tiles is None else tiles
    if count < mapped.tiles_used:
        raise ConfigError(f"--tiles must be at least the {mapped.tiles_used} tiles the network uses, not {count}")
    if count == mapped.cfg.tile.count:
        return mapped
    return map_network(mapped.network, mapped.cfg.replace(tile={"count": count}), calibration_inputs)


def write_job(path: Path, compiled, images: np.ndarray, labels: np.ndarray, *, seed: int, read_seed: int,
              times, check_layers: bool, golden_bias_offset: int = 0, repeats: int = 3,
              calibration_images=None, programs=None) -> Path:
    """The pickle the cocotb bench loads: everything one co-simulation run needs."""
    job = {"compiled": compiled, "images": np.asarray(images, dtype=np.float32), "labels": np.asarray(labels),
           "seed": int(seed), "read_seed": int(read_seed), "times": [float(t) for t in times],
           "check_layers": bool(check_layers), "golden_bias_offset": int(golden_bias_offset),
           "repeats": int(repeats),
           "calibration_images": None if calibration_images is None else np.asarray(calibration_images, np.float32),
           "programs": programs}
    write_bytes_atomic(path, pickle.dumps(job))
    return path


def run_chip_network(compiled, images, labels, build_dir, *, seed: int = 0, read_seed: int | None = None,
                     times=(1.0,), check_layers: bool = True, testcase: str = "network_inference",
                     sim_seed: int | None = None, waves: bool = False, simulator: str = "verilator",
                     verbose: bool = False, progress=None, golden_bias_offset: int = 0, repeats: int = 3,
                     calibration_images=None, programs=None) -> tuple[SimRun, dict]:
    """Run ``images`` through the compiled network on the chip RTL (cocotb test ``testcase``
    of ``neurophase.cosim.benches.chip_network``); returns the run and its results.
    ``golden_bias_offset`` moves every batch-norm bias of the golden model by that many output
    LSBs (to show that the comparison catches a one-LSB difference; 0 otherwise)."""
    cfg = compiled.cfg
    build_dir = Path(build_dir)
    sources = chip_harness_verilog(cfg, build_dir)
    if simulator != "verilator":
        sources = [s for s in sources if s.suffix == ".v"]
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    job = write_job(build_dir / "job.pkl", compiled, images, labels, seed=seed,
                    read_seed=seed if read_seed is None else read_seed, times=times, check_layers=check_layers,
                    golden_bias_offset=golden_bias_offset, repeats=repeats, calibration_images=calibration_images,
                    programs=programs)
    results = build_dir / f"{testcase}.json"
    results.unlink(missing_ok=True)
    run = run_cocotb(toplevel=TOPLEVEL, verilog=sources, test_module="neurophase.cosim.benches.chip_network",
                     build_dir=build_dir, params={"config": cfg.to_dict(), "job": str(job.resolve()),
                                                  "results_json": str(results.resolve())},
                     seed=sim_seed, waves=waves, simulator=simulator, testcase=[testcase], verbose=verbose, timing=True, progress=progress)
    if not results.exists():
        raise SimulationError(f"the {testcase} test wrote no results (it stopped early); see {run.log or run.results_xml}")
    return run, json.loads(results.read_text(encoding="utf-8"))


def plot_network_drift(rows: list[dict], path: str | Path, target: str = "the chip RTL") -> Path:
    """Accuracy on ``target`` against time since programming, one line per compensation (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurophase.atomic import save_figure_atomic

    fig, ax = plt.subplots(figsize=(6, 4))
    times = [r["t_s"] for r in rows]
    for name, label in (("none", "no compensation"), ("gdc", "GDC"), ("gdc+bn", "GDC + batch-norm recalibration")):
        ax.plot(times, [100 * r[name]["accuracy"] for r in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("time since programming (s)")
    ax.set_ylabel(f"accuracy on {target} (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return Path(path)
