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

import tempfile
import time
from pathlib import Path

import numpy as np

from neurophase.atomic import atomic_write, save_figure_atomic, write_text_if_changed
from neurophase.config import ChipConfig
from neurophase.cosim.runner import SimRun, run_cocotb
from neurophase.folder_lock import folder_lock, run_in_thread
from neurophase.models.devices import device_model_from_config
from neurophase.models.mapping import WeightMapping, expand_devices, map_weights
from neurophase.models.program_verify import (
    default_policy, target_codes, to_physical, verify_lsb_us,
)

__all__ = ["run_program_verify", "program_tile", "tile_job", "summarise", "plot_programming", "bench_program", "bench_config",
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
    write_text_if_changed(source, convert(ProgramVerify(cfg), "program_verify"))
    return source


def run_program_verify(cfg: ChipConfig, build_dir: str | Path, *, seed: int | None = None, count: int = 8,
                       tests: tuple[str, ...] = REGRESSION_TESTS, waves: bool = False,
                       simulator: str = "verilator", verbose: bool = False, progress=None) -> SimRun:
    """The controller's cocotb regression for ``cfg``: ``count`` random rows against the
    golden model, target already met, unreachable target, stuck devices, abort, tolerance
    zero, CSR extremes (bad range, timeout, interrupts)."""
    with folder_lock(build_dir, "simulation") as build_dir:
        source = _write_verilog(cfg, build_dir)
        return run_cocotb(toplevel="program_verify", verilog=[source],
                          test_module="neurophase.cosim.benches.program_verify", build_dir=build_dir,
                          params={"config": cfg.to_dict(), "count": count}, seed=seed, waves=waves,
                          simulator=simulator, testcase=list(tests), verbose=verbose, progress=progress)


# -- the full-tile scenario --------------------------------------------------------------------------

def tile_job(cfg: ChipConfig, weights: np.ndarray | None = None, seed: int = BENCH_SEED) -> dict:
    """Targets of a tile in the controller's layout: weights (Gaussian when None) mapped to
    conductances (rows, P) in µS and to verify codes; devices start fully RESET (g_min)."""
    device = device_model_from_config(cfg)
    rng = np.random.default_rng(seed)
    if weights is None:
        weights = rng.normal(size=(cfg.tile.rows, cfg.tile.cols))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (cfg.tile.rows, cfg.tile.cols):
        raise ValueError(f"weights must have shape (tile.rows, tile.cols) = {(cfg.tile.rows, cfg.tile.cols)}, "
                         f"not {weights.shape}")
    g_target, _, _ = map_weights(WeightMapping.from_config(cfg, device), weights)
    g_target = to_physical(expand_devices(g_target, cfg.weights.devices_per_polarity), cfg.tile.cols)
    lsb = verify_lsb_us(device, cfg.adc.bits)
    return {"g_target": g_target, "targets": target_codes(g_target, lsb, cfg.adc.bits),
            "g_start": np.full(g_target.shape, device.g_min), "seed": np.int64(seed)}


def program_tile(cfg: ChipConfig, build_dir: str | Path, *, weights: np.ndarray | None = None,
                 seed: int = BENCH_SEED, rows: int | None = None, progress=None, verbose: bool = False) -> dict:
    """Program a tile (its first ``rows`` rows, default all) through the controller RTL under
    Verilator; returns :func:`summarise` figures plus the per-device arrays.

    ``progress(done, total)`` is called about twice a second with the rows finished.
    """
    started = time.perf_counter()
    job = tile_job(cfg, weights, seed)
    total = cfg.tile.rows if rows is None else rows
    if isinstance(total, bool) or not isinstance(total, int) or not 1 <= total <= cfg.tile.rows:
        raise ValueError(f"rows must be an integer from 1 to {cfg.tile.rows}, not {rows!r}")
    with folder_lock(build_dir, "simulation") as build_dir:
        return _program_tile_locked(cfg, build_dir, job, total, seed=seed, progress=progress, verbose=verbose,
                                    started=started)


def _program_tile_locked(cfg: ChipConfig, build_dir: Path, job: dict, total: int, *, seed: int, progress,
                         verbose: bool, started: float) -> dict:
    source = _write_verilog(cfg, build_dir)
    job = {**job, "targets": job["targets"][:total], "g_target": job["g_target"][:total],
           "g_start": job["g_start"][:total]}
    job_path, out_path, progress_path = (build_dir / name for name in ("job.npz", "result.npz", "progress.txt"))
    with atomic_write(job_path, "wb") as handle:
        np.savez(handle, **job)
    for path in (out_path, progress_path):
        path.unlink(missing_ok=True)
    outcome: dict = {}

    def simulate():
        try:
            outcome["run"] = run_cocotb(
                toplevel="program_verify", verilog=[source], test_module="neurophase.cosim.benches.program_verify",
                build_dir=build_dir, testcase=["program_tile"], seed=seed, verbose=verbose,
                params={"config": cfg.to_dict(), "job": str(job_path), "out": str(out_path),
                        "progress": str(progress_path)})
        except Exception as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = run_in_thread(simulate, name="program-tile")  # shares this run's folder lock
    while worker.is_alive():
        worker.join(0.5)
        if progress is not None:
            done = int(progress_path.read_text() or 0) if progress_path.exists() else 0
            progress(done, total)
    if "error" in outcome:
        raise outcome["error"]
    run = outcome["run"]
    if not run.ok or not out_path.exists():
        from neurophase.cosim.runner import SimulationError

        raise SimulationError(f"the program_tile simulation failed ({', '.join(run.failures) or 'no result'}); "
                              f"see {run.log or run.results_xml}")
    result = dict(np.load(out_path))
    figures = summarise(cfg, job["g_target"], result)
    figures.update(wall_s=time.perf_counter() - started, sim_wall_s=run.wall_s, seed=seed, rows=total,
                   log=str(run.log) if run.log else None)
    return {"figures": figures, "g_target": job["g_target"], **result}


def summarise(cfg: ChipConfig, g_target: np.ndarray, result: dict) -> dict:
    """Convergence, iterations and programming-error figures of a programmed tile."""
    device = device_model_from_config(cfg)
    policy = default_policy(cfg, device)
    lsb = verify_lsb_us(device, cfg.adc.bits)
    error = result["g"] - g_target
    nonzero = g_target > device.g_min
    iterations = result["iterations"]
    hist = np.bincount(iterations.ravel(), minlength=policy.max_iterations + 1)
    return {
        "devices": int(error.size),
        "converged_fraction": float(result["converged"].mean()),
        "failed_devices": int(result["failed"].sum()),
        "mean_iterations": float(iterations.mean()),
        "mean_iterations_nonzero": float(iterations[nonzero].mean()) if nonzero.any() else 0.0,
        "max_iterations": int(iterations.max()),
        "iterations_histogram": {int(k): int(v) for k, v in enumerate(hist) if v},
        "error_sigma_uS": float(error.std()),
        "error_sigma_nonzero_uS": float(error[nonzero].std()) if nonzero.any() else 0.0,
        "error_mean_nonzero_uS": float(error[nonzero].mean()) if nonzero.any() else 0.0,
        "error_sigma_pct_gmax": float(100 * error.std() / device.g_max),
        "error_max_abs_uS": float(np.abs(error).max()),
        "mean_pulses": float(result["pulses"].mean()),
        "row_reads": int(result["row_reads"].sum()),
        "pulse_commands": int(result["commands"].sum()),
        "tolerance_codes": policy.tolerance,
        "tolerance_uS": policy.tolerance * lsb,
        "code_lsb_uS": lsb,
        "max_iterations_allowed": policy.max_iterations,
        "g_max_uS": device.g_max,
        "preset": device.preset,
    }


def plot_programming(g_target: np.ndarray, g: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Target vs achieved conductance and the error histogram (of the devices whose target
    is above the lowest one; those at g_min stay untouched), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    error = (g - g_target).ravel()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.plot(g_target.ravel(), g.ravel(), ".", ms=1, alpha=0.3)
    top = max(float(g_target.max()), float(g.max()), 1e-9)
    left.plot([0, top], [0, top], "k--", lw=0.8)
    left.set(xlabel="target conductance (µS)", ylabel="achieved conductance (µS)", title="target vs achieved")
    programmed = (g_target > g_target.min()).ravel()           # devices left at g_min are not pulsed
    shown = error[programmed] if programmed.any() else error
    right.hist(shown, bins=101)
    right.set(xlabel="programming error (µS)", ylabel="devices",
              title=f"{shown.size} of {error.size} devices above g_min:\n"
                    f"sigma {shown.std():.3f} µS, mean {shown.mean():+.3f} µS (all: sigma {error.std():.3f} µS)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path


def bench_program(rows: int = 256, cols: int = 256, seed: int = BENCH_SEED, build_dir: str | Path | None = None,
                  progress=None) -> dict:
    """Program a ``rows`` x ``cols`` tile of Gaussian weights at the default PCM preset through
    the RTL; the JSON-ready figures (``converged_fraction``, ``mean_iterations``,
    ``error_sigma_uS``, ...)."""
    cfg = bench_config(rows, cols)
    build_dir = Path(build_dir) if build_dir else Path(tempfile.gettempdir()) / f"neurophase-bench-program-{rows}x{cols}"
    result = program_tile(cfg, build_dir, seed=seed, progress=progress)
    figures = result["figures"]
    figures["config"] = f"{rows} x {cols}, {cfg.device.preset}, {cfg.adc.bits}-bit verify ADC, 1 slice"
    return figures


def print_report(console, figures: dict) -> None:
    """The scenario's figures as text on a rich console."""
    from rich.table import Table

    console.print(f"devices programmed: {figures['devices']} ({figures['rows']} rows)  preset {figures['preset']}  "
                  f"tolerance ±{figures['tolerance_codes']} codes (±{figures['tolerance_uS']:.3f} µS)  "
                  f"N_max {figures['max_iterations_allowed']}")
    console.print(f"converged: {100 * figures['converged_fraction']:.3f} %  ({figures['failed_devices']} failed)")
    console.print(f"iterations: mean {figures['mean_iterations']:.2f} (non-zero targets "
                  f"{figures['mean_iterations_nonzero']:.2f}), max {figures['max_iterations']}; "
                  f"pulses per device {figures['mean_pulses']:.2f}")
    console.print(f"programming error: sigma {figures['error_sigma_uS']:.3f} µS = "
                  f"{figures['error_sigma_pct_gmax']:.2f} % of g_max (non-zero targets "
                  f"{figures['error_sigma_nonzero_uS']:.3f} µS, mean {figures['error_mean_nonzero_uS']:+.3f} µS), "
                  f"max |error| {figures['error_max_abs_uS']:.3f} µS")
    table = Table(title="iterations histogram")
    table.add_column("iterations", justify="right")
    table.add_column("devices", justify="right")
    table.add_column("share", justify="right")
    for k, v in sorted(figures["iterations_histogram"].items()):
        table.add_row(str(k), str(v), f"{100 * v / figures['devices']:.2f} %")
    console.print(table)
    console.print(f"row reads {figures['row_reads']}, pulse commands {figures['pulse_commands']}; "
                  f"wall time {figures['wall_s']:.1f} s (simulation incl. build {figures['sim_wall_s']:.1f} s)")
