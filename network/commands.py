"""``neurophase model map|network|sweep``, ``neurophase bench network`` and ``neurophase compile``:
the network flow's commands.

Registered on the CLI's groups by :func:`register_network_commands` and
:func:`register_compile_command`; the heavy modules are imported inside each command.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from neurophase.cli_types import FiniteFloat

__all__ = ["register_network_commands", "register_compile_command"]


def _model_argument(func):
    return click.argument("model_path", required=False, type=click.Path(dir_okay=False, path_type=Path))(func)


def _data_options(func):
    func = click.option("--calibration-data", "calib_path", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, help="Training data (.npz with inputs, labels) for activation ranges and the "
                                           "batch-norm calibration images (default: the digits training split).")(func)
    return click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Test data (.npz with inputs, labels; default: the digits test split).")(func)


def load_flow(config_path, model_path, data_path, calib_path, get_config, images=None):
    """Configuration, float network, mapped network, test and calibration data of a command."""
    from neurophase.network.data import load_dataset
    from neurophase.network.mapping import map_network
    from neurophase.network.onnx_import import load_onnx

    cfg = get_config(config_path)
    if model_path is None:
        from neurophase.network.default_model import DEFAULT_MODEL_PATH

        model_path = DEFAULT_MODEL_PATH
    network = load_onnx(model_path)
    test = load_dataset(data_path, "test").head(images)
    calib = load_dataset(calib_path, "train") if (calib_path or not data_path) else test
    for name, data in (("--data", test), ("--calibration-data", calib)):
        if data.inputs.shape[1:] != network.input_shape:
            raise ValueError(f"{name}: inputs of shape {data.inputs.shape[1:]} per example do not fit the network's "
                             f"input {network.input_shape}")
    mapped = map_network(network, cfg, calib.inputs[:512])
    return cfg, network, mapped, test, calib


def load_mapped(config_path, model_path, data_path, get_config):
    """Configuration and mapped network of a command that needs no test data: MODEL.onnx (the
    shipped network when None) quantised with the calibration data at ``data_path`` (the
    digits training split when None)."""
    from neurophase.network.data import load_dataset
    from neurophase.network.mapping import map_network
    from neurophase.network.onnx_import import load_onnx

    cfg = get_config(config_path)
    if model_path is None:
        from neurophase.network.default_model import DEFAULT_MODEL_PATH

        model_path = DEFAULT_MODEL_PATH
    network = load_onnx(model_path)
    calib = load_dataset(data_path, "train")
    if calib.inputs.shape[1:] != network.input_shape:
        raise ValueError(f"--data: inputs of shape {calib.inputs.shape[1:]} per example do not fit the network's "
                         f"input {network.input_shape}")
    return cfg, map_network(network, cfg, calib.inputs[:512])


def register_compile_command(main, console, emit_json, friendly_errors, config_option, get_config):
    """Add ``neurophase compile`` to the ``main`` group."""

    @main.command("compile")
    @config_option
    @_model_argument
    @click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Calibration data (.npz with inputs, labels) for the activation ranges "
                       "(default: the digits training split).")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Folder for the program, the memory images, the listing and the manifest.")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary and the files as JSON.")
    @friendly_errors
    def compile_command(config_path, model_path, data_path, out_dir, as_json):
        """Compile MODEL.onnx (default: the shipped digits CNN) into the layer sequencer's program,
        the activation layout, the batch-norm parameter and tile images, and a listing with a
        cycle estimate."""
        from neurophase.network.compiler import compile_network, write_compiled
        from neurophase.paths import check_writable_dir

        check_writable_dir(out_dir, "--out")
        _cfg, mapped = load_mapped(config_path, model_path, data_path, get_config)
        compiled = compile_network(mapped)
        manifest = write_compiled(compiled, out_dir)
        summary = dict(manifest["summary"], out=str(out_dir), files=[str(out_dir / f["path"]) for f in manifest["files"]]
                       + [str(out_dir / "manifest.json")])
        if as_json:
            emit_json(summary)
            return
        s = summary
        console.print(f"{s['tiles']} of {s['tiles_configured']} tiles, {s['instructions']} of {s['program_words']} "
                      f"instructions, {s['activation_words_used']} of {s['activation_words']} activation words, "
                      f"{s['param_words_used']} of {s['param_words']} parameter words")
        console.print(f"estimated {s['cycles_per_image']} cycles per image = {s['time_per_image_us']:.3f} us at "
                      f"{s['clock_mhz']:g} MHz ({s['images_per_s']:.0f} images/s)")
        console.print(f"wrote {len(s['files'])} files to {out_dir} (listing: {out_dir / 'listing.txt'}, "
                      f"manifest: {out_dir / 'manifest.json'})", markup=False)


def _or(given, default):
    return default if given is None else given


def load_sweep_setup(config_path, model_path, data_path, calib_path, get_config, images, grid):
    """The sweep's setup; the network mapped once on every configuration of the grid, so that one
    that does not fit is refused before any work."""
    from neurophase.network.mapping import map_network
    from neurophase.network.sweep import make_setup

    cfg, network, _mapped, test, calib = load_flow(config_path, model_path, data_path, calib_path, get_config,
                                                   images)
    if model_path is None:
        from neurophase.network.default_model import DEFAULT_MODEL_PATH

        model_path = DEFAULT_MODEL_PATH
    setup = make_setup(network, Path(model_path).read_bytes(), cfg, test, calib)
    for point_cfg in grid.configurations(cfg).values():
        map_network(network, point_cfg, setup.calibration.inputs)
    return setup


@contextlib.contextmanager
def sweep_client(serial: bool, scheduler: str | None, workers: int, warn):
    """None for a serial run, else a Dask client of the scheduler at ``scheduler`` or of a
    local cluster of ``workers`` processes with one thread each (closed on exit)."""
    from neurophase.network.sweep import local_cluster, slow_malloc_workers

    if serial:
        yield None
        return
    if not scheduler:
        with local_cluster(workers) as client:
            yield client
        return
    from distributed import Client

    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
    with client:
        slow = slow_malloc_workers(client)
        if slow:
            warn(f"{len(slow)} of the scheduler's workers run with MALLOC_TRIM_THRESHOLD_ set (Dask's default), which "
                 f"makes the chip model about 3 times slower; see 'Sweeps' in docs/network.md")
        yield client


@contextlib.contextmanager
def sweep_progress(console, total: int, finished: list):
    """A progress bar on ``console``; yields the callback advancing it by one point (and
    appending the point's row to ``finished``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        task = progress.add_task("points", total=total)
        def advance(row: dict) -> None:
            finished.append(row)
            progress.advance(task)

        yield advance


def print_sweep(console, summary: dict) -> None:
    """Mean +- std of every preset, devices per polarity, time and compensation, and where the results went."""
    from rich.table import Table

    cells = summary["summary"]
    for preset, p in dict.fromkeys((c["preset"], c["devices_per_polarity"]) for c in cells):
        panel = [c for c in cells if (c["preset"], c["devices_per_polarity"]) == (preset, p)]
        comps = list(dict.fromkeys(c["compensation"] for c in panel))
        table = Table(title=f"{preset}, {p} per polarity: test accuracy (%), mean +- std over {panel[0]['seeds']} seeds")
        table.add_column("time since programming")
        for comp in comps:
            table.add_column(comp, justify="right")
        for t_s in dict.fromkeys(c["time_s"] for c in panel):
            row = {c["compensation"]: c for c in panel if c["time_s"] == t_s}
            table.add_row(row[comps[0]]["time"], *(f"{100 * row[c]['mean']:.2f} +- {100 * row[c]['std']:.2f}"
                                                  for c in comps))
        console.print(table)
    console.print(f"{summary['points']} points: {summary['reused']} reused from the cache, {summary['computed']} "
                  f"computed in {summary['compute_s']:.1f} s ({summary['engine']})")
    console.print(f"table: {summary['table']}   plot: {summary['plot']}")


def load_hwa_flow(cfg, model_path, hwa_path, calib):
    """The hardware-aware trained network mapped like the study's network, or None.

    ``hwa_path`` when given; else the shipped HWA network when ``model_path`` is the default
    network (None or the shipped file); else None (a user's model has no HWA version unless given).
    """
    from neurophase.network.default_model import DEFAULT_HWA_MODEL_PATH, DEFAULT_MODEL_PATH
    from neurophase.network.mapping import map_network
    from neurophase.network.onnx_import import load_onnx

    if hwa_path is None:
        is_default = model_path is None or Path(model_path).resolve() == DEFAULT_MODEL_PATH.resolve()
        if not is_default:
            return None
        hwa_path = DEFAULT_HWA_MODEL_PATH
    network = load_onnx(hwa_path)
    if network.input_shape != tuple(calib.inputs.shape[1:]):
        raise ValueError(f"--hwa-model {hwa_path}: its input {network.input_shape} does not fit the data's "
                         f"{tuple(calib.inputs.shape[1:])}")
    return map_network(network, cfg, calib.inputs[:512])


def placement_table(placement: dict):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"placement: {placement['tiles_used']} of {placement['tiles_configured']} tiles of "
                        f"{placement['tile_shape'][0]} x {placement['tile_shape'][1]}")
    for column in ("layer", "kind", "matrix (rows x outputs)", "row x col blocks", "tiles", "psum bits"):
        table.add_column(column)
    for layer in placement["layers"]:
        table.add_row(escape(layer["layer"]), layer["kind"], f"{layer['rows']} x {layer['cols']}",
                      f"{layer['row_blocks']} x {layer['col_blocks']}", ", ".join(map(str, layer["tiles"])),
                      str(layer["psum_bits"]))
    return table


def register_network_commands(model, bench, console, emit_json, friendly_errors, config_option, get_config):
    """Add the network commands to the ``model`` and ``bench`` groups."""
    progress_console = type(console)(stderr=True, highlight=False, soft_wrap=True)

    @model.command("map")
    @config_option
    @_model_argument
    @_data_options
    @click.option("--json", "as_json", is_flag=True, help="Print the placement report as JSON.")
    @friendly_errors
    def model_map_command(config_path, model_path, data_path, calib_path, as_json):
        """Quantise MODEL.onnx (default: the shipped digits CNN) and place it on the chip's tiles."""
        _cfg, _net, mapped, _test, _calib = load_flow(config_path, model_path, data_path, calib_path, get_config)
        placement = mapped.placement()
        if as_json:
            emit_json(placement)
            return
        console.print(placement_table(placement))
        console.print(f"weights {placement['weights']}, devices {placement['devices_used']}, utilisation "
                      f"{100 * placement['utilisation_of_used_tiles']:.1f} % of the used tiles, "
                      f"{100 * placement['utilisation_of_chip']:.2f} % of the chip")

    @model.command("network")
    @config_option
    @_model_argument
    @_data_options
    @click.option("--seeds", type=click.IntRange(1, 1000), default=3, show_default=True,
                  help="Chip instances 1..N (mean +- std over them).")
    @click.option("--images", type=click.IntRange(1), default=None, help="Use the first N test images (default: all).")
    @click.option("--no-diagnosis", is_flag=True, help="Skip the per-layer and per-source loss attribution.")
    @click.option("--reprogram-percent", type=FiniteFloat(0, 100), default=5.0, show_default=True,
                  help="Weights (percent of all mapped weights, ranked by Fisher information) re-programmed at each "
                       "time in the gdc+bn+reprogram column.")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                  default=Path("out/model/network.png"), show_default=True,
                  help="Plot (PNG); the results go beside it as JSON.")
    @click.option("--hwa-model", "hwa_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Hardware-aware trained version of MODEL.onnx for the columns gdc+hwa and gdc+bn+hwa "
                       "[default: the shipped HWA network when MODEL is the default one; none otherwise].")
    @click.option("--no-hwa", is_flag=True, help="Leave out the hardware-aware trained network's columns.")
    @click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
    @friendly_errors
    def model_network_command(config_path, model_path, data_path, calib_path, seeds, images, no_diagnosis,
                              reprogram_percent, out_path, hwa_path, no_hwa, as_json):
        """Accuracy of MODEL.onnx on the chip model versus time since programming, with no compensation,
        GDC, GDC + batch-norm recalibration and selective reprogramming before both; and of its
        hardware-aware trained version (--hwa-model) with GDC, with GDC + batch-norm recalibration and
        with all three prongs."""
        from neurophase.atomic import write_text_atomic
        from neurophase.network.study import network_study, plot_study
        from neurophase.paths import check_writable_file

        if no_hwa and hwa_path is not None:
            raise ValueError("--no-hwa and --hwa-model exclude each other")
        check_writable_file(out_path, "--out")
        cfg, _net, mapped, test, calib = load_flow(config_path, model_path, data_path, calib_path, get_config,
                                                  images)
        hwa_mapped = None if no_hwa else load_hwa_flow(cfg, model_path, hwa_path, calib)

        def say(line: str) -> None:
            progress_console.print(line, style="dim", markup=False)

        result = network_study(mapped, test, calib, seeds=tuple(range(1, seeds + 1)),
                               diagnose_at=None if no_diagnosis else 30 * 86400.0, progress=say,
                               reprogram_percent=reprogram_percent, hwa_mapped=hwa_mapped)
        result["plot"] = str(out_path)
        result["results"] = str(out_path.with_suffix(".json"))
        plot_study(result, out_path)
        write_text_atomic(out_path.with_suffix(".json"), json.dumps(result, indent=2, sort_keys=True) + "\n")
        if as_json:
            emit_json(result)
            return
        print_study(console, result)

    @model.command("sweep")
    @config_option
    @_model_argument
    @_data_options
    @click.option("--images", type=click.IntRange(1), default=None, help="Use the first N test images (default: all).")
    @click.option("--seeds", "seeds_text", default="3", show_default=True,
                  help="Chip instances: a count N (seeds 1..N) or a list such as 1,2,5.")
    @click.option("--times", "times_text", default="1s,1h,1d,1mo,1y,10y", show_default=True,
                  help="Times since programming: seconds or a number with s, min, h, d, w, mo (30 d) or y (365 d).")
    @click.option("--presets", "presets_text", default=None,
                  help="Device presets, e.g. pcm-joshi,pcm-hermes (default: the configuration's).")
    @click.option("--compensations", "compensations_text", default=None,
                  help="Compensation kinds, e.g. none,gdc,gdc+bn (default: all).")
    @click.option("--devices-per-polarity", "devices_text", default=None,
                  help="Devices per polarity, 1..4, e.g. 1,2 (default: the configuration's).")
    @click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True,
                  help="Worker processes of the local Dask cluster (one thread each).")
    @click.option("--scheduler", "scheduler", default=None,
                  help="Address of an existing Dask scheduler (tcp://HOST:PORT); no local cluster is started.")
    @click.option("--serial", is_flag=True, help="Run every point in this process, without Dask.")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                  default=Path("out/model/sweep.csv"), show_default=True,
                  help="Result table: CSV, or Parquet when the name ends in .parquet; the plot goes beside it (.png).")
    @click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Folder of finished points (default: beside --out, its name with .cache).")
    @click.option("--no-cache", is_flag=True, help="Neither read nor write finished points.")
    @click.option("--json", "as_json", is_flag=True, help="Print a summary (points, reused, speed, files) as JSON.")
    @friendly_errors
    def model_sweep_command(config_path, model_path, data_path, calib_path, images, seeds_text, times_text,
                            presets_text, compensations_text, devices_text, workers, scheduler, serial, out_path,
                            cache_dir, no_cache, as_json):
        """Accuracy of MODEL.onnx over a grid of seeds x times x device presets x compensations x devices
        per polarity, one task per point on a Dask cluster (local by default), with a cache of finished points."""
        from neurophase.config import DEVICE_PRESETS
        from neurophase.network import sweep
        from neurophase.paths import check_writable_dir, check_writable_file

        cfg = get_config(config_path)
        grid = sweep.SweepGrid(
            seeds=sweep.parse_seeds(seeds_text), times=sweep.parse_times(times_text),
            presets=sweep.parse_names(_or(presets_text, cfg.device.preset), "--presets", DEVICE_PRESETS),
            compensations=sweep.parse_names(_or(compensations_text, ",".join(sweep.SWEEP_COMPENSATIONS)),
                                            "--compensations", tuple(sweep.SWEEP_COMPENSATIONS)),
            devices_per_polarity=sweep.parse_devices_per_polarity(
                _or(devices_text, str(cfg.weights.devices_per_polarity))))
        if serial and scheduler:
            raise ValueError("--serial and --scheduler exclude each other: --serial runs without Dask")
        if out_path.suffix.lower() == ".parquet" and sweep.parquet_writer_missing():
            raise ValueError(f"--out {out_path}: writing Parquet needs the {sweep.parquet_writer_missing()} package "
                             f"(pip install 'neurophase[parquet]'); or write CSV with a .csv name")
        plot_path = out_path.with_suffix(".png")
        cache_dir = cache_dir or out_path.with_suffix(".cache")
        check_writable_file(out_path, "--out")
        if not no_cache:
            check_writable_dir(cache_dir, "--cache")
        setup = load_sweep_setup(config_path, model_path, data_path, calib_path, get_config, images, grid)

        def warn(message: str) -> None:
            progress_console.print(f"warning: {message}", style="yellow", markup=False)

        cache = None if no_cache else sweep.PointCache(cache_dir, setup.fingerprint, on_warning=warn)
        points = len(grid.points())
        finished = []
        try:
            with sweep_client(serial, scheduler, workers, warn) as client, \
                    sweep_progress(progress_console, points, finished) as advance:
                result = sweep.run_sweep(setup, grid, client=client, cache=cache, on_point=advance)
        except KeyboardInterrupt:
            where = "nothing was cached (--no-cache)" if no_cache else \
                f"they are cached in {cache_dir}: rerun the same command to compute only the others"
            console.print(f"interrupted: {len(finished)} of {points} points finished; {where}")
            sys.exit(130)
        sweep.write_table(result.rows, out_path)
        sweep.plot_sweep(result.rows, plot_path)
        summary = {"points": points, "reused": result.reused, "computed": result.computed,
                   "compute_s": result.compute_s, "points_per_s": result.points_per_s,
                   "engine": "serial" if serial else (scheduler or f"local cluster, {workers} workers"),
                   "table": str(out_path), "plot": str(plot_path), "cache": None if no_cache else str(cache_dir),
                   "summary": sweep.summarise(result.rows)}
        if as_json:
            emit_json(summary)
            return
        print_sweep(console, summary)

    @bench.command("network")
    @config_option
    @click.option("--images", type=click.IntRange(1), default=200, show_default=True, help="Test images per timed run.")
    @click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Timed runs of each side.")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @friendly_errors
    def bench_network_command(config_path, images, repeats, as_json):
        """Test-set inference of the default network through the analog model at 1 day against
        float inference of the same network (process CPU time, single-threaded BLAS)."""
        from neurophase.benchmarks.bench_network import bench_network

        figures = bench_network(get_config(config_path), images=images, repeats=repeats)
        if as_json:
            emit_json(figures)
            return
        for key in ("images_per_s", "float_images_per_s", "ratio_vs_float", "images_per_s_pulse_width",
                    "ratio_vs_float_pulse_width"):
            console.print(f"{key:<28} {figures[key]:.4g}")


def print_study(console, result: dict) -> None:
    """The study as tables: accuracy versus time per compensation, baselines, diagnosis."""
    from rich.table import Table

    from neurophase.network.compensation import COMPENSATIONS

    columns = result.get("compensations", COMPENSATIONS)
    console.print(placement_table(result["placement"]))
    table = Table(title=f"test accuracy (%), mean +- std over {len(result['seeds'])} seeds, {result['images']} images")
    table.add_column("time since programming")
    for comp in columns:
        table.add_column(comp, justify="right")
    for t_s in result["times_s"]:
        cells = [r for r in result["rows"] if r["time_s"] == t_s]
        table.add_row(cells[0]["time"], *(f"{100 * c['mean']:.2f} +- {100 * c['std']:.2f}" for c in cells))
    console.print(table)
    console.print(f"FP32 {100 * result['fp32_accuracy']:.2f} %   8-bit digital {100 * result['quantised_accuracy']:.2f} %"
                  f"   fresh chip (t = 0) {100 * result['fresh_accuracy']:.2f} %   fresh / FP32 "
                  f"{result['fresh_over_fp32']:.4f}")
    if "fresh_accuracy_hwa" in result:
        console.print(f"HWA network: FP32 {100 * result['fp32_accuracy_hwa']:.2f} %   8-bit digital "
                      f"{100 * result['quantised_accuracy_hwa']:.2f} %   fresh chip (t = 0) "
                      f"{100 * result['fresh_accuracy_hwa']:.2f} % (the baseline of its columns' drops)")
    if "drop_1y" in result:
        console.print("drop at 1 year (points): " + ", ".join(
            f"{c} {100 * v:.2f}" for c, v in result["drop_1y"].items()))
    cost = result.get("reprogramming")
    if cost:
        console.print(f"reprogramming {cost['percent']:g} % of the weights ({cost['weights']:.0f}, Fisher-ranked) at each "
                      "time: " + "; ".join(f"{row['time']} {row['devices']:.0f} devices, {row['pulses']:.0f} pulses "
                                          f"({row['pulses_per_device']:.1f}/device), {row['iterations_per_device']:.1f} "
                                          f"iterations/device, {100 * row['converged_fraction']:.1f} % converged"
                                          for row in cost["per_time"]))
    diagnosis = result.get("diagnosis")
    if diagnosis:
        console.print(f"where accuracy goes at {diagnosis['time']} (GDC):")
        for name, acc in diagnosis["layer_alone_on_analog"].items():
            console.print(f"  layer {name} alone on the analog tiles: {100 * acc:.2f} %", markup=False)
        for source, acc in diagnosis["source_alone"].items():
            console.print(f"  {source}: {100 * acc:.2f} %")
    console.print(f"plot: {result['plot']}   results: {result['results']}", markup=False)
