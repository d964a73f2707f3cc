"""``neurophase model map|network`` and ``neurophase bench network``: the network flow's commands.

Registered on the CLI's groups by :func:`register_network_commands`; the heavy modules are
imported inside each command.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["register_network_commands"]


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
    from rich.table import Table

    table = Table(title=f"placement: {placement['tiles_used']} of {placement['tiles_configured']} tiles of "
                        f"{placement['tile_shape'][0]} x {placement['tile_shape'][1]}")
    for column in ("layer", "kind", "matrix (rows x outputs)", "row x col blocks", "tiles", "psum bits"):
        table.add_column(column)
    for layer in placement["layers"]:
        table.add_row(layer["layer"], layer["kind"], f"{layer['rows']} x {layer['cols']}",
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
                              out_path, hwa_path, no_hwa, as_json):
        """Accuracy of MODEL.onnx on the chip model versus time since programming, with no compensation,
        GDC and GDC + batch-norm recalibration; and of its hardware-aware trained version (--hwa-model)
        with GDC and with GDC + batch-norm recalibration."""
        from neurophase.network.files import check_output_folder, write_json_atomic
        from neurophase.network.study import network_study, plot_study

        if no_hwa and hwa_path is not None:
            raise ValueError("--no-hwa and --hwa-model exclude each other")
        check_output_folder(out_path.parent)
        cfg, _net, mapped, test, calib = load_flow(config_path, model_path, data_path, calib_path, get_config,
                                                  images)
        hwa_mapped = None if no_hwa else load_hwa_flow(cfg, model_path, hwa_path, calib)
        def say(line: str) -> None:
            progress_console.print(line, style="dim", markup=False)

        result = network_study(mapped, test, calib, seeds=tuple(range(1, seeds + 1)),
                               diagnose_at=None if no_diagnosis else 30 * 86400.0, progress=say,
                               hwa_mapped=hwa_mapped)
        result["plot"] = str(out_path)
        result["results"] = str(out_path.with_suffix(".json"))
        plot_study(result, out_path)
        write_json_atomic(out_path.with_suffix(".json"), result)
        if as_json:
            emit_json(result)
            return
        print_study(console, result)

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
    diagnosis = result.get("diagnosis")
    if diagnosis:
        console.print(f"where accuracy goes at {diagnosis['time']} (GDC):")
        for name, acc in diagnosis["layer_alone_on_analog"].items():
            console.print(f"  layer {name} alone on the analog tiles: {100 * acc:.2f} %")
        for source, acc in diagnosis["source_alone"].items():
            console.print(f"  {source}: {100 * acc:.2f} %")
    console.print(f"plot: {result['plot']}   results: {result['results']}")
