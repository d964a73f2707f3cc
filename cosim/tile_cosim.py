"""Run the tile co-simulations (crossbar bridge in the loop) from Python: the CLI's
``neurophase sim mvm``, ``neurophase sim drift`` and ``neurophase bench cosim``, and pytest.

Each run writes the harness Verilog (only when the configuration changed, so Verilator
rebuilds only then), runs one cocotb test of :mod:`neurophase.cosim.benches.tile_mvm` or
:mod:`neurophase.cosim.benches.drift`, and returns the :class:`SimRun` with the summary the
test wrote as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from neurophase.atomic import write_text_atomic, write_text_if_changed
from neurophase.config import ChipConfig
from neurophase.cosim.runner import SimRun, SimulationError, run_cocotb
from neurophase.folder_lock import folder_lock
from neurophase.models.studies import WEIGHT_DISTRIBUTIONS, plot_error_vs_time

__all__ = ["TOPLEVEL", "harness_verilog", "run_mvm_cosim", "run_drift_cosim", "run_cosim_bench", "plot_drift",
           "DRIFT_TIMES_S", "DRIFT_LABELS"]

#: Module name of the harness in the generated Verilog.
TOPLEVEL = "tile_cosim"
#: 1 s, 1 h, 1 day, 1 month (30 days), 1 year.
DRIFT_TIMES_S = (1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0)
#: Human names of the drift time points.
DRIFT_LABELS = {1.0: "1 s", 3600.0: "1 h", 86400.0: "1 day", 30 * 86400.0: "1 month", 365 * 86400.0: "1 year"}


def harness_verilog(cfg: ChipConfig, build_dir: str | Path) -> Path:
    """``build_dir/tile_cosim.v`` for ``cfg``, regenerated only when ``cfg`` or the HDL
    sources (``rtl/``, the harness) changed."""
    from neurophase.cosim.harness import TileCosimHarness, sim_clock_verilog
    from neurophase.generate import convert

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    source, stamp = build_dir / f"{TOPLEVEL}.v", build_dir / f"{TOPLEVEL}.config.json"
    wanted = json.dumps({"config": cfg.to_dict(), "sources": _hdl_sources_digest()}, sort_keys=True)
    if source.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return source
    text = convert(TileCosimHarness(cfg), TOPLEVEL) + sim_clock_verilog()
    write_text_if_changed(source, text)
    write_text_atomic(stamp, wanted)
    return source


def _hdl_sources_digest() -> str:
    """SHA-256 over the Python sources the harness Verilog is generated from."""
    import neurophase.cosim.harness as harness
    import neurophase.rtl as rtl

    digest = hashlib.sha256()
    for path in sorted(Path(rtl.__file__).parent.glob("*.py")) + [Path(harness.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run(cfg: ChipConfig, build_dir, bench: str, testcase: str, settings: dict, *, seed, waves, simulator,
         verbose, progress=None) -> tuple[SimRun, dict]:
    with folder_lock(build_dir, "simulation") as build_dir:
        return _run_locked(cfg, build_dir, bench, testcase, settings, seed=seed, waves=waves, simulator=simulator,
                           verbose=verbose, progress=progress)


def _run_locked(cfg: ChipConfig, build_dir: Path, bench: str, testcase: str, settings: dict, *, seed, waves,
                simulator, verbose, progress) -> tuple[SimRun, dict]:
    source = harness_verilog(cfg, build_dir)
    # The simulator process shares two cores with numpy: one BLAS thread per process is
    # faster than threads fighting the simulator (a user's own setting wins).
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    results = build_dir / f"{testcase}.json"
    results.unlink(missing_ok=True)
    run = run_cocotb(toplevel=TOPLEVEL, verilog=[source], test_module=f"neurophase.cosim.benches.{bench}",
                     build_dir=build_dir, params={"config": cfg.to_dict(), "results_json": str(results.resolve()),
                                                  **settings},
                     seed=seed, waves=waves, simulator=simulator, testcase=[testcase], verbose=verbose,
                     timing=True, progress=progress)
    if not results.exists():
        where = run.log or run.results_xml
        raise SimulationError(f"the {testcase} test wrote no results (it stopped early); see {where}")
    return run, json.loads(results.read_text(encoding="utf-8"))


def run_mvm_cosim(cfg: ChipConfig, build_dir, *, count: int = 200, time_s: float = 3600.0, gdc: str = "per-tile",
                  seed: int | None = None, waves: bool = False, simulator: str = "verilator",
                  verbose: bool = False, progress=None) -> tuple[SimRun, dict]:
    """``count`` seeded random MVMs at model time ``time_s`` after GDC of ``gdc``
    (``"none"``, ``"per-tile"``, ``"per-column"``); exact and error-budget checks.
    ``progress``: see :func:`~neurophase.cosim.runner.run_cocotb`."""
    if gdc not in ("none", "per-tile", "per-column"):
        raise ValueError(f"gdc must be one of 'none', 'per-tile', 'per-column', not {gdc!r}")
    return _run(cfg, build_dir, "tile_mvm", "mvm_regression", {"count": count, "time_s": time_s, "gdc": gdc},
                seed=seed, waves=waves, simulator=simulator, verbose=verbose, progress=progress)


def run_drift_cosim(cfg: ChipConfig, build_dir, *, count: int = 64, times_s=DRIFT_TIMES_S, seed: int | None = None,
                    waves: bool = False, simulator: str = "verilator", verbose: bool = False,
                    weights: str = "gaussian", progress=None) -> tuple[SimRun, dict]:
    """The drift scenario at ``times_s``; ``count`` evaluation MVMs per time point and mode;
    programmed weights of distribution ``weights`` (:func:`neurophase.models.studies.study_weights`)."""
    if weights not in WEIGHT_DISTRIBUTIONS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHT_DISTRIBUTIONS))}, not {weights!r}")
    return _run(cfg, build_dir, "drift", "drift_scenario",
                {"count": count, "times_s": list(times_s), "weights": weights},
                seed=seed, waves=waves, simulator=simulator, verbose=verbose, progress=progress)


def run_cosim_bench(cfg: ChipConfig, build_dir, *, count: int = 100, seed: int | None = None,
                    simulator: str = "verilator", progress=None) -> tuple[SimRun, dict]:
    """``count`` MVMs through the transaction-level bridge, then the same through the naive
    one, in one simulation; returns the figures (see :func:`neurophase.cosim.benches.tile_mvm.cosim_speed`)."""
    return _run(cfg, build_dir, "tile_mvm", "cosim_speed", {"count": count}, seed=seed, waves=False,
                simulator=simulator, verbose=False, progress=progress)


def improvement(rows: list[dict], t_s: float, mode: str = "per-tile") -> float:
    """Error without compensation over error with ``mode`` at time ``t_s``."""
    row = next(r for r in rows if r["t_s"] == t_s)
    return row["error_pct_none"] / row[f"error_pct_{mode}"]


def plot_drift(rows: list[dict], path: str | Path) -> Path:
    """MVM error (% of full scale) versus time, per compensation mode, as a PNG (Agg)."""
    t = [row["t_s"] for row in rows]
    series = [([row[f"error_pct_{mode}"] for row in rows], marker, label)
              for mode, marker, label in (("none", "o-", "no compensation"), ("per-tile", "s-", "per-tile GDC"),
                                          ("per-column", "^-", "per-column GDC"))]
    return plot_error_vs_time(t, series, path, ylabel="MVM error, RMS % of full scale",
                              xlabel="time since programming", title="Tile RTL + analog crossbar co-simulation",
                              tick_labels=[DRIFT_LABELS.get(x, f"{x:g} s") for x in t], log_y=True)
