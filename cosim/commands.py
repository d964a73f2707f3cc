"""CLI commands of the tile co-simulation: ``neurophase sim mvm``, ``neurophase sim drift``
and ``neurophase bench cosim`` (registered on the groups of :mod:`neurophase.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["register_cosim_commands"]


def _time_label(t_s: float) -> str:
    from neurophase.cosim.tile_cosim import DRIFT_LABELS

    return DRIFT_LABELS.get(t_s, f"{t_s:g} s")


def register_cosim_commands(sim: click.Group, bench: click.Group) -> None:
    """Add ``mvm`` and ``drift`` to ``sim`` and ``cosim`` to ``bench``."""
    from neurophase.cli import (FiniteFloat, config_option, console, devices_option, emit_json, friendly_errors,
                                get_config, print_sim_summary, sim_build_dir, sim_options, status_reporter,
                                weight_distribution_option)
    from neurophase.paths import check_writable_file

    @sim.command("mvm")
    @sim_options(length=200, length_help="Random MVMs checked (quick: 20, exhaustive: 2000+).")
    @click.option("--time", "time_s", type=FiniteFloat(0.0), default=3600.0, show_default=True,
                  help="Model time since programming of the MVMs, seconds.")
    @click.option("--gdc", type=click.Choice(["none", "per-tile", "per-column"]), default="per-tile",
                  show_default=True, help="Drift compensation the firmware applies first.")
    @friendly_errors
    def sim_mvm(config_path, seed, length, waves, simulator, build_dir, verbose, time_s, gdc):
        """Tile RTL with the analog crossbar in the loop: seeded random MVMs, each exact
        against the golden periphery and within the model's error budget (--length MVMs)."""
        from neurophase.cosim.tile_cosim import run_mvm_cosim

        cfg = get_config(config_path)
        build_dir = sim_build_dir(build_dir, "out/sim/tile_cosim")
        console.print(f"tile MVMs: {cfg.tile.rows} x {cfg.tile.cols}, {cfg.input.bits}-bit inputs, "
                      f"{cfg.adc.bits}-bit ADCs, {cfg.device.preset}; {length} random MVMs at t = {time_s:g} s "
                      f"after {gdc} GDC, {simulator}")
        with status_reporter("sim mvm") as report:
            run, res = run_mvm_cosim(cfg, build_dir, count=length, time_s=time_s, gdc=gdc, seed=seed, waves=waves,
                                     simulator=simulator, verbose=verbose, progress=lambda text: report.update(status=text))
        console.print(f"  exact against the golden periphery: {res['exact']} of {res['mvms']} MVMs "
                      f"({res['checked_mvms']} random, the rest calibration reads)")
        verdict = "[green]within[/]" if res["error_pct"] <= res["budget_pct"] else "[red]OVER[/]"
        console.print(f"  MVM error vs ideal float MVM: {res['error_pct']:.3f} % of full scale (RMS), "
                      f"worst MVM {res['worst_mvm_pct']:.3f} %; model predicts {res['predicted_pct']:.3f} %, "
                      f"budget {res['budget_pct']:.3f} % -> {verdict}")
        console.print(f"  full scale {res['full_scale_lsb']} output LSBs, requantisation shift {res['shift']}; "
                      f"{res['cycles'] / max(res['checked_mvms'], 1):.0f} cycles per MVM")
        print_sim_summary("sim mvm", run)
        sys.exit(0 if run.ok else 1)

    @sim.command("drift")
    @sim_options(length=64, length_help="Evaluation MVMs per time point and compensation mode.")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                  default=Path("out/sim/drift.png"), show_default=True, help="Plot file (PNG).")
    @weight_distribution_option
    @devices_option
    @click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
    @friendly_errors
    def sim_drift(config_path, seed, length, waves, simulator, build_dir, verbose, out_path, weights, devices,
                  as_json):
        """Drift scenario: program a tile, step model time 1 s .. 1 year; at each point the
        firmware recalibrates over the CSR bus. MVM error with no, per-tile and per-column
        GDC (--length evaluation MVMs per point and mode)."""
        from neurophase.cosim.tile_cosim import improvement, plot_drift, run_drift_cosim

        cfg = get_config(config_path, devices)
        build_dir = sim_build_dir(build_dir, "out/sim/tile_cosim")
        check_writable_file(out_path, "--out")
        with status_reporter("sim drift") as report:
            run, res = run_drift_cosim(cfg, build_dir, count=length, seed=seed, waves=waves, simulator=simulator,
                                       verbose=verbose, weights=weights, progress=lambda text: report.update(status=text))
        rows = res["rows"]
        plot_drift(rows, out_path)
        month = 30 * 86400.0
        factors = {mode: improvement(rows, month, mode) for mode in ("per-tile", "per-column")} \
            if any(r["t_s"] == month for r in rows) else {}
        if as_json:
            emit_json({**res, "sim_seed": run.seed, "plot": str(out_path), "ok": run.ok,
                       "devices_per_polarity": cfg.weights.devices_per_polarity, "month_improvement": factors})
            sys.exit(0 if run.ok else 1)
        from rich.table import Table

        table = Table(title=f"MVM error, RMS % of full scale (RTL + analog model, {weights} weights, "
                            f"{cfg.weights.devices_per_polarity} device(s) per polarity)")
        for name in ("time", "no compensation", "per-tile GDC", "per-column GDC", "tile alpha"):
            table.add_column(name, justify="right")
        for row in rows:
            table.add_row(_time_label(row["t_s"]), f"{row['error_pct_none']:.3f}", f"{row['error_pct_per-tile']:.3f}",
                          f"{row['error_pct_per-column']:.3f}", f"{row['alpha_tile']:.4f}")
        console.print(table)
        for mode, factor in factors.items():
            console.print(f"  1 month: {mode} GDC cuts the error {factor:.1f}x")
        console.print(f"  {res['exact']} of {res['mvms']} MVMs exact against the golden periphery")
        console.print(f"  plot: {out_path}", markup=False)
        print_sim_summary("sim drift", run)
        sys.exit(0 if run.ok else 1)

    @sim.command("network")
    @sim_options(length=4, length_help="Test images run through the chip (quick: 2, full test set: 450).")
    @click.argument("model_path", required=False, type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Test data (.npz with inputs, labels; default: the digits test split).")
    @click.option("--calibration-data", "calib_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Training data for the activation ranges (default: the digits training split).")
    @click.option("--time", "time_s", type=FiniteFloat(0.0), default=1.0, show_default=True,
                  help="Model time since programming of every read, seconds.")
    @click.option("--chip-seed", type=click.IntRange(0), default=0, show_default=True,
                  help="Seed of the chip's programming and of its keyed reads (as `neurophase model network`).")
    @click.option("--tiles", type=click.IntRange(1), default=None,
                  help="Tiles of the simulated chip (default: the tiles the network uses).")
    @click.option("--outputs-only", is_flag=True, help="Check only the network outputs, not every layer's tensor.")
    @click.option("--drift", "drift_times", default=None,
                  help="Drift scenario at these times since programming (e.g. 1d,1mo,1y): at each the firmware runs "
                       "GDC and batch-norm recalibration over the bus; accuracy per compensation.")
    @click.option("--calibration-images", type=click.IntRange(1), default=100, show_default=True,
                  help="Batch-norm recalibration images of the drift scenario (training split).")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                  default=Path("out/sim/network_drift.png"), show_default=True, help="Drift plot (PNG).")
    @click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
    @friendly_errors
    def sim_network(config_path, seed, length, waves, simulator, build_dir, verbose, model_path, data_path, calib_path,
                    time_s, chip_seed, tiles, outputs_only, drift_times, calibration_images, out_path, as_json):
        """The compiled network on the chip RTL with one analog crossbar model per tile:
        firmware loads the program and parameters over the bus, writes each test image into
        activation memory, starts and reads the outputs; every layer's activations are
        checked against the golden network model on the same ADC codes (--length images)."""
        from neurophase.cosim.chip_cosim import run_chip_network, sized_chip
        from neurophase.network.commands import load_flow
        from neurophase.network.compiler import compile_network

        build_dir = sim_build_dir(build_dir, "out/sim/chip_cosim")
        if drift_times is not None:
            from neurophase.network.sweep import parse_times

            try:
                times = parse_times(drift_times)
            except ValueError as exc:
                raise ValueError(str(exc).replace("--times", "--drift", 1)) from None
            check_writable_file(out_path, "--out")
        cfg, _network, mapped, test, calib = load_flow(config_path, model_path, data_path, calib_path, get_config,
                                                       images=length)
        mapped = sized_chip(mapped, calib.inputs[:512], tiles)
        compiled = compile_network(mapped)
        cfg = compiled.cfg
        if drift_times is not None:
            _sim_network_drift(compiled, test, calib.inputs[:calibration_images], times, build_dir, chip_seed, seed,
                               waves, simulator, verbose, not outputs_only, out_path, as_json)
            return
        if not as_json:
            console.print(f"chip: {cfg.tile.count} tiles of {cfg.tile.rows} x {cfg.tile.cols}, {len(compiled.program)} "
                          f"instructions; {len(test.inputs)} images at t = {time_s:g} s, chip seed {chip_seed}, "
                          f"{simulator}")
        with status_reporter("sim network") as report:
            run, res = run_chip_network(compiled, test.inputs, test.labels, build_dir, seed=chip_seed,
                                        times=(time_s,), check_layers=not outputs_only, sim_seed=seed, waves=waves,
                                        simulator=simulator, verbose=verbose,
                                        progress=lambda text: report.update(status=text))
        summary = {k: v for k, v in res.items() if k != "per_image"}
        if as_json:
            emit_json({**summary, "ok": run.ok, "sim_seed": run.seed, "results_xml": str(run.results_xml),
                       "images_per_s_at_clock": cfg.clock_mhz * 1e6 / max(res["cycles_per_image"], 1)})
            sys.exit(0 if run.ok else 1)
        console.print(f"  accuracy {100 * res['accuracy']:.1f} % on {res['images']} images (model path, same seed: "
                      f"{100 * res['model_accuracy']:.1f} %, same classes: {res['model_agrees']})")
        checked = "every layer's activations" if not outputs_only else "the outputs"
        console.print(f"  {checked}: {res['mismatches']} values differ from the golden network model")
        console.print(f"  {res['cycles_per_image']:.0f} cycles per image ({res['mvms_per_image']:.0f} tile MVMs) = "
                      f"{cfg.clock_mhz * 1e6 / max(res['cycles_per_image'], 1):.0f} images/s at {cfg.clock_mhz:g} MHz")
        console.print(f"  per-image results: {build_dir / 'network_inference.json'}", markup=False)
        print_sim_summary("sim network", run)
        sys.exit(0 if run.ok else 1)

    def _sim_network_drift(compiled, test, calibration, times, build_dir, chip_seed, seed, waves, simulator, verbose,
                           check_layers, out_path, as_json):
        from neurophase.cosim.chip_cosim import plot_network_drift, run_chip_network

        cfg = compiled.cfg
        if not as_json:
            console.print(f"drift scenario on the chip RTL: {cfg.tile.count} tiles, {len(test.inputs)} test images, "
                          f"{len(calibration)} calibration images, times {', '.join(f'{t:g} s' for t in times)}")
        with status_reporter("sim network --drift") as report:
            run, res = run_chip_network(compiled, test.inputs, test.labels, build_dir, seed=chip_seed, times=times,
                                        check_layers=check_layers, testcase="drift", sim_seed=seed, waves=waves,
                                        simulator=simulator, verbose=verbose, calibration_images=calibration,
                                        progress=lambda text: report.update(status=text))
        plot_network_drift(res["rows"], out_path)
        if as_json:
            emit_json({**res, "ok": run.ok, "sim_seed": run.seed, "plot": str(out_path)})
            sys.exit(0 if run.ok else 1)
        from rich.table import Table

        table = Table(title="Accuracy on the chip RTL (%), firmware compensation over the bus")
        for name in ("time", "none", "GDC", "GDC + BN recal.", "mean alpha"):
            table.add_column(name, justify="right")
        for row in res["rows"]:
            table.add_row(_time_label(row["t_s"]), *(f"{100 * row[c]['accuracy']:.1f}" for c in ("none", "gdc", "gdc+bn")),
                          f"{row['alpha_mean']:.3f}")
        console.print(table)
        console.print(f"  {res['mismatches']} activations differ from the golden network model (registers as the "
                      "firmware wrote them)")
        console.print(f"  plot: {out_path}", markup=False)
        print_sim_summary("sim network --drift", run)
        sys.exit(0 if run.ok else 1)

    @bench.command("chip")
    @config_option
    @click.argument("model_path", required=False, type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--images", type=click.IntRange(1), default=4, show_default=True, help="Test images per timed run.")
    @click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Timed runs of each side.")
    @click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Build folder (default: out/sim/chip_cosim).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @friendly_errors
    def bench_chip_command(config_path, model_path, images, repeats, build_dir, as_json):
        """Images per second through the chip co-simulation (analog model in the loop)
        against the same RTL with no Python awake during inference, in one simulation."""
        from neurophase.benchmarks.bench_chip import bench_chip
        from neurophase.cosim.chip_cosim import sized_chip
        from neurophase.network.commands import load_flow
        from neurophase.network.compiler import compile_network

        build_dir = sim_build_dir(build_dir, "out/sim/chip_cosim")
        _cfg, _network, mapped, test, calib = load_flow(config_path, model_path, None, None, get_config,
                                                        images=images)
        compiled = compile_network(sized_chip(mapped, calib.inputs[:512]))
        with status_reporter("bench chip") as report:
            figures = bench_chip(compiled, test.inputs, test.labels, build_dir, repeats=repeats,
                                 progress=lambda text: report.update(status=text))
        if as_json:
            emit_json(figures)
            return
        console.print(f"chip co-simulation: {figures['images_per_s']:.2f} images/s (median "
                      f"{figures['images_per_s_median']:.2f}); RTL alone: {figures['rtl_only_images_per_s']:.2f} "
                      f"images/s -> {figures['fraction_of_rtl_only']:.2f} of the RTL-only speed")
        console.print(f"{figures['cycles_per_image']:.0f} cycles per image = {figures['images_per_s_at_clock']:.0f} "
                      f"images/s on the chip ({figures['config']})")

    @bench.command("cosim")
    @config_option
    @click.option("--count", type=click.IntRange(1), default=100, show_default=True, help="MVMs per bridge.")
    @click.option("--seed", type=int, default=20260106, show_default=True, help="Seed of weights, inputs, reads.")
    @click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator", show_default=True)
    @click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Build folder (default: out/sim/tile_cosim).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @friendly_errors
    def bench_cosim_command(config_path, count, seed, simulator, build_dir, as_json):
        """Tile MVMs through RTL + analog model: transaction-level bridge against a naive
        per-cycle bridge, measured in the same simulation."""
        from neurophase.benchmarks.bench_cosim import bench_cosim

        cfg = get_config(config_path)
        build_dir = sim_build_dir(build_dir, "out/sim/tile_cosim")
        with status_reporter("bench cosim") as report:
            figures = bench_cosim(cfg, build_dir, count=count, seed=seed, simulator=simulator,
                                  progress=lambda text: report.update(status=text))
        if as_json:
            emit_json(figures)
            return
        console.print(f"transaction-level bridge: {figures['mvm_per_s']:.1f} MVM/s, "
                      f"{figures['rtl_cycles_per_s']:.0f} RTL cycles/s ({figures['cycles_per_mvm']:.0f} cycles/MVM)")
        console.print(f"naive per-cycle bridge:   {figures['naive_mvm_per_s']:.1f} MVM/s")
        console.print(f"speedup vs naive: {figures['speedup_vs_naive']:.1f}x   "
                      f"({figures['mvms']} MVMs each, all exact: {figures['all_exact']})")
        console.print(f"simulator alone (no Python awake): {figures['idle_rtl_cycles_per_s']:.0f} cycles/s, "
                      f"a ceiling of {figures['speedup_ceiling']:.1f}x for any bridge")
