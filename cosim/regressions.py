"""The cocotb regressions of each RTL block, callable from the CLI and from pytest alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from neurophase.atomic import write_text_if_changed
from neurophase.cosim.ecp5_models import MULT18X18D_MODULE, mult18x18d_model
from neurophase.cosim.runner import SimRun, run_cocotb
from neurophase.folder_lock import folder_lock
from neurophase.generate import convert
from neurophase.models.shift_add import ShiftAddParams
from neurophase.rtl.shift_add import ShiftAdd

__all__ = ["run_shift_add", "run_drift_gain", "run_batch_norm", "run_adc_interface", "run_tile", "run_csr_bank",
           "run_program_verify"]


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
    verbose: bool = False,
    progress=None,
) -> SimRun:
    """Generate the shift-and-add Verilog for ``params`` and run its cocotb regression
    (corner cases, ``count`` random MVMs, back-pressure, throughput, restart); ``progress``
    receives the stages (:func:`~neurophase.cosim.runner.run_cocotb`)."""
    with folder_lock(build_dir, "simulation") as build_dir:
        source = build_dir / "shift_add.v"
        write_text_if_changed(source, convert(ShiftAdd(params), "shift_add"))
        return run_cocotb(
            toplevel="shift_add",
            verilog=[source],
            test_module="neurophase.cosim.benches.shift_add",
            build_dir=build_dir,
            params={"params": dataclasses.asdict(params), "count": count, "idle": idle, "stall": stall},
            seed=seed,
            waves=waves,
            simulator=simulator,
            verbose=verbose,
            progress=progress,
        )


# -- datapath blocks behind the shift-and-add (ADC interface, drift gain, batch-norm, tile) --

def _run_block(component, module: str, bench: str, build_dir: str | Path, settings: dict, *,
               seed: int | None, waves: bool, simulator: str, extra_sources=(), platform=None) -> SimRun:
    """Write ``component``'s Verilog as ``module`` (only when it changed, so Verilator
    rebuilds only then) and run the cocotb module ``neurophase.cosim.benches.<bench>``.
    Elaborated for ``platform``, the Verilog may instantiate ECP5 primitives: their models
    (:mod:`neurophase.cosim.ecp5_models`) join the sources."""
    with folder_lock(build_dir, "simulation") as build_dir:
        source = build_dir / f"{module}.v"
        text = convert(component, module, platform)
        write_text_if_changed(source, text)
        sources = [source, *extra_sources]
        if platform is not None and f"{MULT18X18D_MODULE} #(" in text:
            model = build_dir / f"{MULT18X18D_MODULE}.v"
            write_text_if_changed(model, mult18x18d_model())
            sources.append(model)
        return run_cocotb(toplevel=module, verilog=sources,
                          test_module=f"neurophase.cosim.benches.{bench}", build_dir=build_dir,
                          params=settings, seed=seed, waves=waves, simulator=simulator)


def run_drift_gain(params, build_dir: str | Path, *, seed: int | None = None, count: int = 1000,
                   idle: float = 0.2, stall: float = 0.3, waves: bool = False,
                   simulator: str = "verilator", platform=None) -> SimRun:
    """Drift-gain Verilog for ``params`` (a DriftGainParams), elaborated for ``platform``
    (None: target-independent), against its golden model: corner cases, ``count`` random
    cases, back-pressure, throughput."""
    from neurophase.rtl.drift_gain import DriftGain

    return _run_block(DriftGain(params), "drift_gain", "drift_gain", build_dir,
                      {"params": dataclasses.asdict(params), "count": count, "idle": idle, "stall": stall},
                      seed=seed, waves=waves, simulator=simulator, platform=platform)


def run_batch_norm(params, build_dir: str | Path, *, seed: int | None = None, count: int = 1000,
                   idle: float = 0.2, stall: float = 0.3, waves: bool = False,
                   simulator: str = "verilator", platform=None) -> SimRun:
    """Batch-norm Verilog for ``params`` (a BatchNormParams), elaborated for ``platform``
    (None: target-independent), against its golden model: corner cases (every shift,
    saturation of both stages), ``count`` random cases, back-pressure, throughput."""
    from neurophase.rtl.batch_norm import BatchNorm

    return _run_block(BatchNorm(params), "batch_norm", "batch_norm", build_dir,
                      {"params": dataclasses.asdict(params), "count": count, "idle": idle, "stall": stall},
                      seed=seed, waves=waves, simulator=simulator, platform=platform)


def run_adc_interface(params, build_dir: str | Path, *, latency: int = 4, seed: int | None = None,
                      count: int = 1000, stall: float = 0.3, waves: bool = False,
                      simulator: str = "verilator") -> SimRun:
    """ADC-interface Verilog for ``params`` (an AdcInterfaceParams) with an ADC responder of
    ``latency`` cycles: trimmed codes against the golden model, request order, ADC
    timeout, abort mid-MVM, back-pressure, throughput at the ADC bound."""
    from neurophase.rtl.adc_interface import AdcInterface

    return _run_block(AdcInterface(params), "adc_interface", "adc_interface", build_dir,
                      {"params": dataclasses.asdict(params), "count": count, "latency": latency, "stall": stall},
                      seed=seed, waves=waves, simulator=simulator)


# -- CSR bank -------------------------------------------------------------------------------------

def run_csr_bank(cfg, build_dir: str | Path, *, seed: int | None = None, count: int = 1000,
                 waves: bool = False, simulator: str = "verilator") -> SimRun:
    """The tile's CSR bank Verilog for ``cfg`` (a ChipConfig) against the reference model:
    corner cases, ``count`` random bus transactions with hardware events, abandoned
    accesses, set-beats-clear, and every lane group through the datapath read ports."""
    from neurophase.regmap import tile_register_map
    from neurophase.rtl.csr_bank import CsrBank

    with folder_lock(build_dir, "simulation") as build_dir:
        source = build_dir / "csr_bank.v"
        write_text_if_changed(source, convert(CsrBank(tile_register_map(cfg)), "csr_bank"))
        return run_cocotb(toplevel="csr_bank", verilog=[source], test_module="neurophase.cosim.benches.csr_bank",
                          build_dir=build_dir, params={"config": cfg.to_dict(), "count": count},
                          seed=seed, waves=waves, simulator=simulator)


def run_tile(cfg, build_dir: str | Path, *, seed: int | None = None, count: int = 1000, stall: float = 0.3,
             settings_every: int = 50, waves: bool = False, simulator: str = "verilator") -> SimRun:
    """Tile-top Verilog for ``cfg`` (a ChipConfig) against the datapath golden model, with
    register settings written over its Wishbone bus and the ADC responder: ``count``
    random MVMs plus corner cases, ADC timeout, abort and soft reset mid-MVM, unmapped
    bus accesses."""
    from neurophase.rtl.tile import Tile

    return _run_block(Tile(cfg), "tile", "tile", build_dir,
                      {"config": cfg.to_dict(), "count": count, "stall": stall, "settings_every": settings_every},
                      seed=seed, waves=waves, simulator=simulator)


def run_program_verify(cfg, build_dir: str | Path, *, seed: int | None = None, count: int = 8, waves: bool = False,
                       simulator: str = "verilator", verbose: bool = False, progress=None) -> SimRun:
    """Program-verify controller Verilog for ``cfg`` against the golden policy model and the
    numpy device model (see :func:`neurophase.benchmarks.bench_program.run_program_verify`);
    ``progress`` receives the stages (:func:`~neurophase.cosim.runner.run_cocotb`)."""
    from neurophase.benchmarks.bench_program import run_program_verify as run

    return run(cfg, build_dir, seed=seed, count=count, waves=waves, simulator=simulator, verbose=verbose,
               progress=progress)
