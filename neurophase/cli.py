"""The ``neurophase`` command line: generate, sim, bench, model (and later fpga)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from neurophase.cli_types import FiniteFloat
from neurophase.config import ChipConfig, ConfigError, load_config
from neurophase.paths import check_writable_dir, check_writable_file
from neurophase.toolchain import ToolchainError

console = Console(highlight=False, soft_wrap=True)
#: Progress of long commands goes to stderr, so stdout stays the answer (``--json``).
status_console = Console(stderr=True, highlight=False, soft_wrap=True)


def status_reporter(label: str, total: int | None = None):
    """A :class:`~neurophase.progress.StatusReporter` on stderr for a long job."""
    from neurophase.progress import StatusReporter

    return StatusReporter(label, total, console=status_console)


def print_error(message) -> None:
    """``error: <message>`` on one line; the message is printed literally (brackets in
    it are not taken as rich markup)."""
    console.print(f"[bold red]error:[/] {escape(str(message))}")

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Chip configuration (TOML); the default chip when omitted.",
)


def friendly_errors(func):
    """Turn the framework's own errors into one clear line and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from neurophase.cosim.runner import SimulationError
        from neurophase.folder_lock import FolderInUseError

        try:
            return func(*args, **kwargs)
        except (ConfigError, ToolchainError, SimulationError, FolderInUseError, ValueError) as exc:
            print_error(exc)
            sys.exit(2)
        except OSError as exc:  # a file or folder the command could not read or write
            print_error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else exc)
            sys.exit(2)

    return wrapper


def get_config(path: Path | None, devices_per_polarity: int | None = None) -> ChipConfig:
    """The configuration at ``path`` (the default chip when None), with
    ``weights.devices_per_polarity`` overridden when given."""
    cfg = load_config(path)
    return cfg if devices_per_polarity is None else cfg.replace(weights={"devices_per_polarity": devices_per_polarity})


weight_distribution_option = click.option(
    "--weights", type=click.Choice(["gaussian", "clipped", "uniform"]), default="gaussian", show_default=True,
    help="Distribution of the programmed weights (clipped: Gaussian clipped at +-2.5 sigma).",
)

devices_option = click.option(
    "--devices-per-polarity", "devices", type=int, default=None,
    help="Override weights.devices_per_polarity of the configuration (1..4; 2: the 4-device weights of the "
         "2023 speech chip).",
)


@click.group()
@click.version_option(package_name="neurophase")
def main():
    """NeuroPhase: generate, co-simulate and emulate a PCM-crossbar analog AI accelerator."""


@main.command()
@config_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/rtl"),
              show_default=True, help="Folder for the Verilog and the manifest.")
@click.option("--blocks", "blocks", default=None, metavar="NAME[,NAME...]",
              help="Only these RTL blocks, comma-separated (e.g. chip: chip.v and the tile module "
                   "neurophase_chip_tile.v); all when omitted.")
@friendly_errors
def generate(config_path, out_dir, blocks):
    """Write the Verilog of every RTL block (or of --blocks), the configuration used and a manifest."""
    from neurophase.generate import BLOCKS
    from neurophase.generate import generate as generate_all

    cfg = get_config(config_path)
    selected = None if blocks is None else [name.strip() for name in blocks.split(",")]
    for name in selected or []:
        if name not in BLOCKS:
            raise ValueError(f"--blocks: unknown RTL block {name!r}; known blocks: {', '.join(BLOCKS)}")
    check_writable_dir(out_dir, "--out")
    with status_reporter("generate") as report:
        manifest = generate_all(cfg, out_dir, selected, progress=lambda text: report.update(status=text))
    for entry in manifest["files"]:
        console.print(f"  wrote {escape(str(out_dir / entry['path']))}  [dim]({entry['kind']})[/]")
    console.print(f"manifest: {out_dir / 'manifest.json'}", markup=False)


@main.group()
def sim():
    """cocotb co-simulations of the generated RTL (Verilator by default)."""


def sim_options(func=None, *, length: int = 1000,
                length_help: str = "Random transactions (quick: ~100, exhaustive: 10000+)."):
    """The options every ``neurophase sim`` command shares; ``length`` is the default of
    ``--length`` (each command's own test length)."""
    if func is None:
        return lambda f: sim_options(f, length=length, length_help=length_help)
    for option in reversed([
        config_option,
        click.option("--seed", type=int, default=None, help="Random seed (printed; reuse it to repeat a run)."),
        click.option("--length", type=click.IntRange(1), default=length, show_default=True, help=length_help),
        click.option("--waves", is_flag=True, help="Record waveforms (FST when liblz4 is available, else VCD)."),
        click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
                     show_default=True),
        click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Build folder (default: out/sim/<bench>)."),
        click.option("--verbose", is_flag=True, help="Stream the simulator's output instead of logging it."),
    ]):
        func = option(func)
    return func


def sim_build_dir(build_dir: Path | None, default: str) -> Path:
    """``--build-dir`` (or ``default``), checked writable before any work starts."""
    return check_writable_dir(build_dir or Path(default), "--build-dir")


def print_sim_summary(name: str, run) -> None:
    status = "[bold green]PASS[/]" if run.ok else "[bold red]FAIL[/]"
    console.print(f"{name}: {status}  {run.passed} passed, {run.failed} failed  "
                  f"seed={run.seed}  ({run.wall_s:.1f} s)")
    console.print(f"  results: {run.results_xml}", markup=False)
    if run.log:
        console.print(f"  log:     {run.log}", markup=False)
    for name in run.failures:
        console.print(f"  [red]failed:[/] {escape(name)}")
    if run.waves:
        console.print(f"  waves:   {run.waves}", markup=False)
    if not run.ok:
        console.print(f"  repeat with: --seed {run.seed}")


@sim.command("shift-add")
@sim_options
@friendly_errors
def sim_shift_add(config_path, seed, length, waves, simulator, build_dir, verbose):
    """Co-simulate the shift-and-add Verilog against its golden model."""
    from neurophase.cosim.regressions import run_shift_add
    from neurophase.models.shift_add import ShiftAddParams

    cfg = get_config(config_path)
    params = ShiftAddParams.from_config(cfg)
    build_dir = sim_build_dir(build_dir, "out/sim/shift_add")
    console.print(f"shift-add: {params.columns} columns, {params.lanes} lanes, {params.planes} planes, "
                  f"{params.slices} slice(s), {params.width}-bit result; {length} random MVMs + corner cases")
    with status_reporter("sim shift-add") as report:
        run = run_shift_add(params, build_dir, seed=seed, count=length, waves=waves, simulator=simulator,
                            verbose=verbose, progress=lambda text: report.update(status=text))
    print_sim_summary("shift-add", run)
    sys.exit(0 if run.ok else 1)


@main.group()
def bench():
    """Benchmarks: print their figures (as ratios against a baseline measured in the same run)."""


@main.group()
def model():
    """Device, array and network studies with the analog model; network training."""


def emit_json(data: dict) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@bench.command("model")
@click.option("--batch", type=click.IntRange(1), default=1024, show_default=True, help="Input vectors per MVM batch.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True, help="Timed runs (min and median).")
@click.option("--seed", type=int, default=20260101, show_default=True, help="Seed of weights, inputs and reads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_model_command(batch, repeats, seed, as_json):
    """Analog crossbar model (256 x 256, 8 bit-planes, 1 day) against one float32 matmul; block reads."""
    from neurophase.benchmarks.bench_model import bench_model

    with status_reporter("bench model: timing the analog model and the float32 baseline"):
        figures = bench_model(batch=batch, repeats=repeats, seed=seed)
    if as_json:
        emit_json(figures)
        return
    from rich.table import Table

    table = Table(title="analog model vs one float32 matmul of the batch (1 BLAS thread, process CPU time)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("ratio_vs_matmul", "ratio_vs_matmul_median", "ratio_with_shift_add_vs_matmul", "ratio_cached_vs_matmul",
                "model_s", "model_median_s", "model_cached_s", "shift_add_s", "baseline_s", "baseline_median_s",
                "mvm_per_s", "baseline_mvm_per_s", "peak_memory_mb"):
        table.add_row(key, f"{figures[key]:.4g}")
    for key in ("speedup", "speedup_median", "block_s", "padded_s"):
        table.add_row(f"block_read {key}", f"{figures['block_read'][key]:.4g}")
    console.print(table)
    console.print(f"[dim]configuration: {figures['config']}[/]")


@bench.command("datapath")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_datapath_command(config_path, as_json):
    """Tile top in simulation with an ideal ADC: cycles per MVM against the ADC bound."""
    from neurophase.benchmarks.bench_datapath import run as bench_datapath

    cfg = get_config(config_path)
    with status_reporter("bench datapath: simulating the tile top"):
        figures = bench_datapath(cfg)
    if as_json:
        emit_json(figures)
        return
    console.print(f"cycles per MVM: {figures['cycles_per_mvm']}  ADC bound: {figures['adc_bound_cycles']}  "
                  f"ratio: {figures['ratio_vs_adc_bound']:.3f}  matches golden: {figures['matches_golden']}")
    console.print(f"[dim]configuration: {figures['config']}[/]")


@model.command("drift")
@config_option
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("out/model/drift.png"),
              show_default=True, help="Plot file (PNG).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of weights, programming and reads.")
@weight_distribution_option
@devices_option
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@friendly_errors
def model_drift_command(config_path, out_path, seed, weights, devices, as_json):
    """MVM error versus time since programming, with and without global drift compensation."""
    from neurophase.models.studies import drift_study, plot_drift_study

    cfg = get_config(config_path, devices)
    check_writable_file(out_path, "--out")
    with status_reporter("drift study: time points") as report:
        rows = drift_study(cfg, seed=seed, weights=weights, progress=report.update)
    plot_drift_study(rows, out_path)
    if as_json:
        emit_json({"seed": seed, "weights": weights, "devices_per_polarity": cfg.weights.devices_per_polarity,
                   "plot": str(out_path), "rows": rows})
        return
    for row in rows:
        console.print(f"t = {row['t_s']:>10.3g} s   error {row['error_raw']:.4f}   with GDC {row['error_gdc']:.4f}"
                      f"   ({row['improvement']:.2f}x)")
    console.print(f"plot: {out_path}", markup=False)


@model.command("floor")
@config_option
@click.option("--seeds", type=click.IntRange(1), default=4, show_default=True, help="Seeds 1..N (errors RMS over them).")
@click.option("--t", "t_s", type=FiniteFloat(0.0), default=30 * 86400.0, show_default=True,
              help="Time since programming, s.")
@weight_distribution_option
@devices_option
@click.option("--json", "as_json", is_flag=True, help="Print the decomposition as JSON.")
@friendly_errors
def model_floor_command(config_path, seeds, t_s, weights, devices, as_json):
    """Split the drift-compensated MVM error (the GDC floor) into its sources."""
    from neurophase.models.studies import floor_decomposition

    cfg = get_config(config_path, devices)
    with status_reporter("floor decomposition: error evaluations") as report:
        result = floor_decomposition(cfg, seeds=tuple(range(1, seeds + 1)), t_s=t_s, weights=weights,
                                     progress=report.update)
    if as_json:
        emit_json(result)
        return
    console.print(f"t = {t_s:g} s, {weights} weights: compensated error {100 * result['total']:.2f} %  "
                  f"(every source off: {100 * result['all_off']:.3f} %)")
    for row in result["sources"]:
        console.print(f"{row['source']:<38} without {100 * row['without']:6.2f} %   contribution "
                      f"{100 * row['contribution']:6.2f} %   alone {100 * row['only']:6.2f} %")


@model.command("train")
@config_option
@click.argument("model_path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--hwa", is_flag=True, help="Hardware-aware fine-tuning of MODEL.onnx (default: the shipped CNN) with "
                                          "the chip's weight noise and 8-bit activations in the forward pass.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Your .npz data set (arrays 'inputs' (N, C, H, W) and 'labels'); 25 % is held out for the test "
                   "accuracy. Default: the embedded digits.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write [default: out/model/default_cnn.onnx, with --hwa out/model/default_cnn_hwa.onnx].")
@click.option("--seed", type=int, default=None, help="Seed of initialisation (or noise), minibatches and augmentation "
                                                     "[default: 0].")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Passes over the training set [default: 30, with --hwa 12].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def model_train_command(config_path, model_path, hwa, data_path, out_path, seed, epochs, as_json):
    """Train the CNN (JAX + optax) and write it as ONNX; accuracies measured on the file by onnxruntime.

    With --hwa, fine-tune MODEL.onnx (the shipped CNN when omitted; the architecture that this
    command exports) with the programming noise, drift, read noise and drift compensation of the
    chip's device model (--config) in the forward pass and 8-bit activations."""
    import tempfile

    from neurophase.network import default_model as defaults

    if model_path is not None and not hwa:
        raise ValueError(f"MODEL {model_path} is only read by hardware-aware fine-tuning: add --hwa, or drop MODEL "
                         "to train the CNN from scratch")
    if out_path is None:
        out_path = Path("out/model/default_cnn_hwa.onnx" if hwa else "out/model/default_cnn.onnx")
    if out_path.parent.exists() and not out_path.parent.is_dir():
        raise ValueError(f"--out {out_path}: {out_path.parent} is a file, not a folder")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_path.parent).close()
    except OSError as exc:
        raise ValueError(f"--out {out_path}: cannot write to the folder {out_path.parent} ({exc.strerror or exc})") from None
    cfg = get_config(config_path) if hwa else None
    from neurophase.network.data import digits

    def show_epoch(epoch, total, loss, accuracy):
        click.echo(f"epoch {epoch:>{len(str(total))}}/{total}  loss {loss:.4f}  batch accuracy {100 * accuracy:5.1f} %",
                   err=True)

    if hwa:
        from neurophase.network.hwa import HwaSettings, hwa_train_and_export, load_cnn_onnx
        from neurophase.network.train import load_training_npz

        model_path = defaults.DEFAULT_MODEL_PATH if model_path is None else model_path
        load_cnn_onnx(model_path)  # refuse another architecture before reading the data
        train_set, test_set = digits() if data_path is None else load_training_npz(data_path)[:2]
        settings = HwaSettings(seed=defaults.HWA_SEED if seed is None else seed,
                               epochs=defaults.HWA_EPOCHS if epochs is None else epochs)
        figures = hwa_train_and_export(model_path, train_set, test_set, cfg, out_path, settings, show_epoch)
    else:
        from neurophase.network.train import TrainSettings, load_training_npz, train_and_export

        settings = TrainSettings(seed=defaults.DEFAULT_SEED if seed is None else seed,
                                 epochs=defaults.DEFAULT_EPOCHS if epochs is None else epochs)
        train_set, test_set, classes = (*digits(), None) if data_path is None else load_training_npz(data_path)
        figures = train_and_export(train_set, test_set, out_path, settings, show_epoch, classes)
    if as_json:
        emit_json(figures)
        return
    console.print(f"{train_set.name}: {len(train_set)} examples, {test_set.name}: {len(test_set)} examples")
    if hwa:
        console.print(f"start model {figures['start_model']}: test {100 * figures['start_test_accuracy']:.2f} % "
                      f"(float, onnxruntime)")
    console.print(f"accuracy through onnxruntime: train {100 * figures['train_accuracy']:.2f} %, "
                  f"test {100 * figures['test_accuracy']:.2f} %  (training {figures['cpu_s']:.1f} CPU s)")
    console.print(f"model: {figures['out']}")


@sim.command("program-verify")
@sim_options
@friendly_errors
def sim_program_verify(config_path, seed, length, waves, simulator, build_dir, verbose):
    """Regression of the program-verify controller against its golden model and the device model.

    A random row is about a hundred transactions (reads and pulse commands), so --length N
    programs N // 100 random rows (at least one) besides the corner cases."""
    from neurophase.cosim.regressions import run_program_verify
    from neurophase.models.program_verify import physical_columns

    cfg = get_config(config_path)
    length = max(1, length // 100)
    build_dir = sim_build_dir(build_dir, "out/sim/program_verify_regression")
    console.print(f"program-verify: {physical_columns(cfg)} devices per row, "
                  f"{cfg.datapath.lanes} lanes; {length} random rows + corner cases")
    with status_reporter("sim program-verify") as report:
        run = run_program_verify(cfg, build_dir, seed=seed, count=length, waves=waves, simulator=simulator,
                                 verbose=verbose, progress=lambda text: report.update(status=text))
    print_sim_summary("program-verify", run)
    sys.exit(0 if run.ok else 1)


@sim.command("program")
@config_option
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Weight matrix (.npy, tile.rows x tile.cols); seeded Gaussian weights when omitted.")
@click.option("--seed", type=int, default=20260105, show_default=True, help="Seed of weights and device responses.")
@click.option("--rows", type=click.IntRange(1), default=None, help="Program only the first N rows (default: all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/sim/program"),
              show_default=True, help="Folder for the plot and the per-device results.")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build folder (default: out/sim/program_verify).")
@click.option("--verbose", is_flag=True, help="Stream the simulator's output instead of logging it.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@friendly_errors
def sim_program(config_path, weights_path, seed, rows, out_dir, build_dir, verbose, as_json):
    """Program a tile through the program-verify RTL against the stochastic device model."""
    import numpy as np

    from neurophase.benchmarks.bench_program import plot_programming, print_report, program_tile

    cfg = get_config(config_path)
    check_writable_dir(out_dir, "--out")
    build_dir = sim_build_dir(build_dir, "out/sim/program_verify")
    weights = np.load(weights_path) if weights_path else None
    with status_reporter("programming rows", total=rows or cfg.tile.rows) as report:
        result = program_tile(cfg, build_dir, weights=weights, seed=seed, rows=rows, verbose=verbose,
                              progress=lambda done, total: report.update(done, total))
    figures = result["figures"]
    out_dir.mkdir(parents=True, exist_ok=True)
    figures["plot"] = str(plot_programming(result["g_target"], result["g"], out_dir / "program.png",
                                           f"program-verify RTL, {figures['devices']} devices"))
    from neurophase.atomic import atomic_write

    with atomic_write(out_dir / "program.npz", "wb") as handle:
        np.savez(handle, **{k: v for k, v in result.items() if k != "figures"})
    figures["results"] = str(out_dir / "program.npz")
    if as_json:
        emit_json(figures)
        return
    print_report(console, figures)
    console.print(f"plot: {figures['plot']}\nresults: {figures['results']}\nlog: {figures['log']}", markup=False)


@bench.command("program")
@click.option("--rows", type=click.IntRange(1, 4096), default=256, show_default=True, help="Tile rows.")
@click.option("--cols", type=click.IntRange(1, 4096), default=256, show_default=True, help="Tile columns.")
@click.option("--seed", type=int, default=20260105, show_default=True, help="Seed of weights and device responses.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def bench_program_command(rows, cols, seed, as_json):
    """Program a tile through the program-verify RTL (default PCM preset): convergence,
    iterations, programming error."""
    from neurophase.benchmarks.bench_program import bench_program, print_report

    with status_reporter("programming rows", total=rows) as report:
        figures = bench_program(rows, cols, seed, progress=lambda done, total: report.update(done, total))
    if as_json:
        emit_json(figures)
        return
    print_report(console, figures)



# `neurophase fpga build|program|sim` lives with the FPGA package; imported last because it
# uses console, emit_json and friendly_errors from this module.
from neurophase.fpga.cli import fpga as _fpga_group  # noqa: E402

main.add_command(_fpga_group)

# `neurophase sim mvm|drift` and `neurophase bench cosim` (tile co-simulation with the
# analog crossbar in the loop) live with the co-simulation package.
from neurophase.cosim.commands import register_cosim_commands  # noqa: E402

register_cosim_commands(sim, bench)

# `neurophase model map|network`, `neurophase bench network` and `neurophase compile` live with the
# network flow.
from neurophase.network.commands import register_compile_command, register_network_commands  # noqa: E402

register_network_commands(model, bench, console, emit_json, friendly_errors, config_option, get_config)
register_compile_command(main, console, emit_json, friendly_errors, config_option, get_config)

if __name__ == "__main__":
    main()
