"""``neurophase fpga build|program|sim``: the emulation board from the command line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from neurophase.cli_types import FiniteFloat

__all__ = ["fpga", "PRESET", "CHIP_PRESET"]

#: The FPGA configuration used when ``--config`` is not given (ULX3S ECP5-85F, 32 x 32 tile).
PRESET = Path(__file__).resolve().parent / "ulx3s.toml"
#: The configuration of the FPGA chip top (``--chip``, ``fpga infer``): 4 tiles of 256 x 32.
CHIP_PRESET = Path(__file__).resolve().parent / "ulx3s_chip.toml"


def fpga_config(path: Path | None, chip: bool = False):
    from neurophase.config import ChipConfig

    return ChipConfig.from_toml(path or (CHIP_PRESET if chip else PRESET))


def friendly_errors(func):
    """``neurophase.cli.friendly_errors``, looked up at call time: ``neurophase.cli`` imports
    this module at its end, so importing it here at module level would be circular."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from neurophase.cli import friendly_errors as shared

        return shared(func)(*args, **kwargs)

    return wrapper


def _console():
    from neurophase.cli import console

    return console


def link_errors(func):
    """Also turn FPGA build, programming and host-link errors into one clear line."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from neurophase.fpga.build import BuildError
        from neurophase.fpga.host import HostError
        from neurophase.fpga.transports import LinkError

        try:
            return func(*args, **kwargs)
        except (BuildError, HostError, LinkError) as exc:
            from neurophase.cli import print_error

            print_error(exc)
            sys.exit(2 if not isinstance(exc, BuildError) or getattr(exc, "report", None) is None else 1)

    return wrapper


config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help=f"FPGA configuration (TOML); default: the ULX3S preset {PRESET.name} ({CHIP_PRESET.name} with --chip).",
)

chip_option = click.option("--chip", is_flag=True,
                           help=f"The FPGA chip top (sequencer, memories, every tile, one shared crossbar emulator) "
                                f"instead of the one-tile top; default configuration {CHIP_PRESET.name}.")


def board_option(func):
    from neurophase.fpga.platforms import BOARDS

    return click.option("--board", type=click.Choice(sorted(BOARDS)), default=None,
                        help="Board (default: fpga.board of the configuration, ulx3s-85f).")(func)


@click.group()
def fpga():
    """FPGA emulation board: bitstream, programming, simulated board for the host driver."""


def print_report(report) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"{report.board}: utilisation and timing")
    table.add_column("resource")
    table.add_column("used", justify="right")
    table.add_column("available", justify="right")
    table.add_column("%", justify="right")
    for key, label in (("luts", "LUT4"), ("registers", "registers (FF)"), ("bram", "block RAM (DP16KD)"),
                       ("dsp", "DSP (MULT18X18D)")):
        used, avail = report.utilisation[key]["used"], report.utilisation[key]["available"]
        table.add_row(label, str(used), str(avail), f"{100 * used / avail:.1f}" if avail else "-")
    console.print(table)
    verdict = "[green]met[/]" if report.timing_met else "[red]NOT met[/]"
    console.print(f"Fmax {report.fmax_mhz:.2f} MHz vs {report.clock_mhz:g} MHz clock: timing {verdict}")
    seed = f", placement seed {report.placement_seed}" if report.placement_seed else ""
    console.print(f"bitstream: {report.bitstream}  ({report.build_s:.0f} s, {report.toolchain} toolchain{seed})",
                  markup=False)


@fpga.command("build")
@config_option
@board_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/fpga"),
              show_default=True, help="Build folder (bitstream, reports, register map).")
@click.option("--toolchain", type=click.Choice(["auto", "system", "yowasp"]), default="auto", show_default=True,
              help="ECP5 tools: system ones when complete, else the YoWASP builds from PyPI.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object (key fmax_mhz).")
@click.option("--verbose", is_flag=True, help="Stream the tools' output.")
@click.option("--seed", type=click.IntRange(0, (1 << 31) - 1), default=None,
              help="nextpnr placement seed, instead of fpga.placement_seed (0: nextpnr's default).")
@chip_option
@friendly_errors
@link_errors
def build_command(config_path, board, out_dir, toolchain, as_json, verbose, seed, chip):
    """Build the bitstream of the FPGA top; print utilisation and Fmax against the board clock."""
    from neurophase.cli import console, emit_json, print_error, status_reporter
    from neurophase.fpga.build import BuildError, build_bitstream
    from neurophase.folder_lock import folder_lock
    from neurophase.fpga.regmap import FpgaAddressMap
    from neurophase.paths import check_writable_dir

    cfg = fpga_config(config_path, chip)
    if seed is not None:
        cfg = cfg.replace(fpga={"placement_seed": seed})
    check_writable_dir(out_dir, "--out")
    if chip:
        from neurophase.fpga.chip_top import FpgaChipAddressMap as map_class
    else:
        map_class = FpgaAddressMap
    if not as_json:
        size = f"{cfg.tile.rows} x {cfg.tile.cols}"
        what = f"chip top, {cfg.tile.count} tiles of {size}" if chip else f"{size} tile"
        console.print(f"building for {board or cfg.fpga.board}: {what}, {cfg.datapath.lanes} lanes, "
                      f"{cfg.clock_mhz:g} MHz (takes minutes) ...")
    try:
        with folder_lock(out_dir, "FPGA build"), status_reporter("fpga build") as status:
            map_class(cfg).write(out_dir)  # the map and the bitstream of one build
            report = build_bitstream(cfg, out_dir, board=board, toolchain=toolchain, verbose=verbose, chip=chip,
                                     progress=lambda stage: status.update(status=stage))
    except BuildError as exc:
        report = getattr(exc, "report", None)
        if report is None:
            raise
        # timing not met: the report is still the answer (exit status 1)
        if as_json:
            emit_json(report.to_dict())
        else:
            print_report(report)
            print_error(exc)
        sys.exit(1)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_report(report)
        console.print(f"register map for the host: {out_dir / 'fpga_map.json'}", markup=False)


@fpga.command("program")
@config_option
@board_option
@click.option("--bitstream", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("out/fpga/neurophase_fpga.bit"), show_default=True)
@click.option("--flash", is_flag=True, help="Write the SPI flash (kept at power-off) instead of the SRAM.")
@click.option("--dry-run", is_flag=True,
              help="Print the openFPGALoader command without running it; warn (exit 1) when it cannot run here.")
@friendly_errors
def program_command(config_path, board, bitstream, flash, dry_run):
    """Load the bitstream into the board with openFPGALoader."""
    from neurophase.fpga.program import plan_programming, program_board

    console = _console()
    cfg = fpga_config(config_path)
    board = board or cfg.fpga.board
    if dry_run:
        plan = plan_programming(bitstream, board, flash=flash)
        if plan.problem is not None:
            console.print("warning: " + plan.problem, style="bold yellow", markup=False)
            console.print("no command: it cannot run here (openFPGALoader arguments: " + " ".join(plan.command[1:]) + ")",
                          markup=False)
            sys.exit(1)
        console.print("would run: " + " ".join(plan.command), markup=False)
        return
    program_board(bitstream, board, flash=flash)
    console.print(f"programmed {board} with {bitstream}", markup=False)


@fpga.command("sim")
@config_option
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/fpga/sim"),
              show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=4567, show_default=True,
              help="TCP port the simulated board listens on (0: any free port).")
@click.option("--sessions", type=click.IntRange(0), default=0, show_default=True,
              help="Host connections to serve before stopping (0: until interrupted).")
@click.option("--waves", is_flag=True, help="Record waveforms.")
@chip_option
@friendly_errors
@link_errors
def sim_command(config_path, build_dir, port, sessions, waves, chip):
    """Run the FPGA top under Verilator as a simulated board for the host driver."""
    from neurophase.fpga.sim_board import SimBoard

    from neurophase.paths import check_writable_dir

    console = _console()
    cfg = fpga_config(config_path, chip)
    check_writable_dir(build_dir, "--build-dir")
    what = f"chip top, {cfg.tile.count} tiles of {cfg.tile.rows} x {cfg.tile.cols}" if chip else \
        f"{cfg.tile.rows} x {cfg.tile.cols} tile"
    console.print(f"building the simulated board ({what}, "
                  f"{cfg.fpga.sim_clocks_per_bit} clocks per UART bit) in {build_dir} ...", markup=False)
    board = SimBoard(cfg, build_dir, sessions=sessions, port=port, waves=waves, chip=chip)
    with board:
        console.print(f"simulated board listening: {board.url}", markup=False)
        console.print(f"register map: {board.map_path}  (LiteX csr.csv: {board.map_path.with_suffix('.csv')})",
                      markup=False)
        driver = "ChipHost" if chip else "NeuroPhaseHost"
        console.print(f"host: {driver}.connect(url, map), or LiteX: "
                      f"litex_server --uart --uart-port {board.url} --bind-ip 127.0.0.1  (Ctrl-C stops)", markup=False)
        board.wait()
    run = board.run
    console.print(f"simulation ended: {'ok' if run and run.ok else 'FAILED'}  (log: {run.log if run else '-'})", markup=False)
    sys.exit(0 if run and run.ok else 1)


@fpga.command("infer")
@click.argument("model_path", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"FPGA chip configuration (TOML); default: the ULX3S chip preset {CHIP_PRESET.name}.")
@click.option("--sim", is_flag=True, help="Run on the simulated board (Verilator), started here.")
@click.option("--port", "device", default=None, help="Serial port of the board (e.g. /dev/ttyUSB0) or a pyserial URL.")
@click.option("--map", "map_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The board's fpga_map.json (default: the map of the configuration).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Test data (.npz with inputs, labels; default: the digits test split).")
@click.option("--images", type=click.IntRange(1), default=None,
              help="Images to run (default: all on the board, 8 on the simulated board).")
@click.option("--noise-bits", type=click.IntRange(0, 8), default=0, show_default=True,
              help="Emulated read noise: uniform in [-2**(n-1), 2**(n-1)-1] per code, deterministic.")
@click.option("--seed", type=click.IntRange(0, 0xFFFF), default=1, show_default=True,
              help="Noise seed; image i reseeds with seed + i.")
@click.option("--drift-s", type=FiniteFloat(min=1.0), default=None,
              help="Age the emulated devices to this many seconds after programming (EMU_SCALE).")
@click.option("--nu", type=FiniteFloat(0.0, 1.0), default=0.05, show_default=True,
              help="Drift exponent of --drift-s and --drift: conductance x (t / 1 s) ** -nu.")
@click.option("--gdc", is_flag=True, help="With --drift-s: compensate the drift in every used tile's GAIN "
                                           "with the drift law's factor.")
@click.option("--drift", "drift_times", default=None,
              help="Drift scenario at these times since programming (e.g. 1h,1mo,1y; each >= 1 s): r0 measured "
                   "after loading; at each time the devices age and the host runs the firmware's measured GDC and "
                   "batch-norm recalibration over the link; accuracy per compensation.")
@click.option("--calibration-images", type=click.IntRange(1), default=None,
              help="Batch-norm recalibration images of --drift (training split; default 100 on the board, 4 on "
                   "the simulated board).")
@click.option("--calibration-vectors", type=click.IntRange(1, 65536), default=None,
              help="GDC calibration vectors per tile of --drift (default: analog.calibration_vectors of the "
                   "configuration, 64).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("out/fpga/infer_drift.png"), show_default=True, help="Plot of --drift (PNG).")
@click.option("--no-check", is_flag=True, help="Skip the comparison with the bit-true model.")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/fpga/sim_chip"),
              show_default=True, help="Folder of the simulated board (--sim).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (images, accuracy, mismatches, "
                                                      "cycles_per_image, images_per_s, link_faults; with --drift: "
                                                      "rows per time with none, gdc, gdc+bn).")
@friendly_errors
@link_errors
def infer_command(model_path, config_path, sim, device, map_path, data_path, images, noise_bits, seed, drift_s, nu,
                  gdc, drift_times, calibration_images, calibration_vectors, out_path, no_check, build_dir, as_json):
    """Run MODEL.onnx (default: the shipped digits CNN) on the FPGA chip top: compile it for the
    preset, load program, weights and parameters over the link, stream test images, read the
    classes; print accuracy, images/s over the link and the board's cycles per image. With
    --drift, the drift scenario with the firmware's compensation over the link."""
    import contextlib

    from neurophase.cli import console, emit_json
    from neurophase.fpga.chip_host import ChipHost
    from neurophase.fpga.infer import compile_for_board, quantise_images, run_images
    from neurophase.network.data import load_dataset

    if sim == (device is not None):
        raise click.UsageError("give exactly one of --sim and --port DEV")
    if gdc and drift_s is None:
        raise click.UsageError("--gdc compensates a drift: give --drift-s too")
    times = _drift_times(drift_times, drift_s, gdc, calibration_images, calibration_vectors, out_path)
    board_cfg = cfg = fpga_config(config_path, chip=True)
    if calibration_vectors is not None:  # the firmware's setting: the board is the same
        cfg = board_cfg.replace(analog={"calibration_vectors": calibration_vectors})
    test = load_dataset(data_path, "test").head(images or (8 if sim else None))
    compiled = compile_for_board(cfg, model_path)
    x_int = quantise_images(compiled, test.inputs)
    with contextlib.ExitStack() as stack:
        if sim:
            from neurophase.fpga.sim_board import SimBoard
            from neurophase.paths import check_writable_dir

            check_writable_dir(build_dir, "--build-dir")
            if not as_json:
                console.print(f"building the simulated board in {build_dir} ...", markup=False)
            board = stack.enter_context(SimBoard(board_cfg, build_dir, sessions=1, chip=True))
            url, timeout = board.url, 1800.0
        else:  # a socket URL is a simulated board started elsewhere: it loads far slower than the board
            url, timeout = device, (1800.0 if device.startswith("socket://") else None)
        host = stack.enter_context(ChipHost.connect(url, map_path or board_cfg, baud=cfg.fpga.baud,
                                                      timeout=timeout))
        host.identify()
        host.load_network(compiled)
        host.set_noise(noise_bits, seed)
        if times is not None:
            calibration = load_dataset(None, "train").inputs[:calibration_images or (4 if sim else 100)]
            _infer_drift(host, compiled, x_int, test.labels, times, calibration, nu, seed, not no_check, out_path,
                         "simulated board" if sim else str(device), as_json)
            return
        if drift_s is not None:
            host.drift_step(drift_s, nu)
            if gdc:
                host.compensate_drift(drift_s ** nu)

        def progress(done, total):
            if not as_json:
                console.print(f"  image {done}/{total}", markup=False)

        report = run_images(host, compiled, x_int, test.labels, seed=seed, check=not no_check, progress=progress)
    summary = {k: v for k, v in report.to_dict().items() if k != "per_image"}
    if as_json:
        emit_json({**summary, "target": "simulated board" if sim else str(device), "per_image": report.per_image})
        return
    console.print(f"{report.images} images on the {'simulated board' if sim else 'board ' + str(device)}: "
                  f"accuracy {report.accuracy:.4f}", markup=False)
    if report.mismatches is not None:
        console.print(f"outputs differing from the bit-true model: {report.mismatches} "
                      f"(model accuracy {report.model_accuracy:.4f})", markup=False)
    console.print(f"{report.images_per_s:.2f} images/s over the link; {report.cycles_per_image:.0f} cycles per "
                  f"image on the board ({report.cycles_per_image / cfg.clock_mhz:.0f} us at {cfg.clock_mhz:g} MHz)",
                  markup=False)
    if report.link_faults:
        console.print(f"link faults: {report.link_faults} image(s) were run again", style="bold yellow", markup=False)


def _drift_times(drift_times, drift_s, gdc, calibration_images, calibration_vectors, out_path):
    """The times of ``--drift`` (None without it), after checking the options that go with it."""
    if drift_times is None:
        for name, value in (("--calibration-images", calibration_images),
                            ("--calibration-vectors", calibration_vectors)):
            if value is not None:
                raise click.UsageError(f"{name} is for the --drift scenario: give --drift too")
        return None
    if drift_s is not None or gdc:
        raise click.UsageError("--drift runs its own drift steps and compensation: drop --drift-s and --gdc")
    from neurophase.network.sweep import parse_times
    from neurophase.paths import check_writable_file

    try:
        times = parse_times(drift_times)
    except ValueError as exc:
        raise click.BadParameter(str(exc).replace("--times: ", "", 1), param_hint="--drift") from None
    early = [t for t in times if t < 1.0]
    if early:
        raise click.BadParameter(f"{early[0]:g} s is before the drift law's t0 of 1 s; give times >= 1 s",
                                 param_hint="--drift")
    check_writable_file(out_path, "--out")
    return times


def _infer_drift(host, compiled, x_int, labels, times, calibration, nu, seed, check, out_path, target, as_json):
    from neurophase.cli import console, emit_json, status_reporter
    from neurophase.cosim.chip_cosim import plot_network_drift
    from neurophase.fpga.infer import run_drift_scenario
    from neurophase.network.study import time_label

    where = target if target == "simulated board" else f"board {target}"
    if not as_json:
        console.print(f"drift scenario on the {where}: {len(x_int)} test images, {len(calibration)} calibration "
                      f"images, nu {nu:g}, times {', '.join(time_label(t) for t in times)}", markup=False)
    with status_reporter("fpga infer --drift") as report:
        res = run_drift_scenario(host, compiled, x_int, labels, times, calibration, nu=nu, seed=seed, check=check,
                                 progress=lambda text: report.update(status=text))
    plot_network_drift(res["rows"], out_path, target=f"the {where}")
    if as_json:
        emit_json({**res, "target": target, "plot": str(out_path)})
        return
    from rich.table import Table

    table = Table(title=f"Accuracy on the {where} (%), firmware compensation over the link")
    for name in ("time", "none", "GDC", "GDC + BN recal.", "mean alpha", "(t/1 s)^nu"):
        table.add_column(name, justify="right")
    for row in res["rows"]:
        table.add_row(time_label(row["t_s"]), *(f"{100 * row[c]['accuracy']:.1f}" for c in ("none", "gdc", "gdc+bn")),
                      f"{row['alpha_mean']:.3f}", f"{1 / row['drift_factor']:.3f}")
    _console().print(table)
    if res["mismatches"] is not None:
        console.print(f"  {res['mismatches']} output values differ from the bit-true model (registers as the host "
                      "wrote them)", markup=False)
    console.print(f"  plot: {out_path}", markup=False)
