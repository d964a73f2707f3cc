"""The FPGA chip top: its address map, the shared emulator's bit-true model, the chip preset
with the shipped network, a compiled network on the simulated board exact against the
model through link faults, and the firmware's measured GDC and batch-norm recalibration
over the link."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner

from neurophase.cli import main
from neurophase.config import ChipConfig
from neurophase.fpga.chip_host import ChipHost, EmulatedChipModel, emulator_scale
from neurophase.fpga.chip_top import FpgaChipAddressMap, FpgaChipTop
from neurophase.fpga.cli import CHIP_PRESET
from neurophase.fpga.host import HostError, RegisterFile
from neurophase.fpga.infer import compile_for_board, image_seed, quantise_images, run_images
from neurophase.models.chip_isa import Instruction
from neurophase.models.crossbar_emulator import CrossbarEmulatorModel, EmulatedChipArrays, EmulatorParams
from neurophase.network.data import load_dataset


def chip_preset() -> ChipConfig:
    return ChipConfig.from_toml(CHIP_PRESET)


def small_chip() -> ChipConfig:
    """The chip preset shrunk for a fast simulated board: 2 tiles of 48 x 16."""
    return chip_preset().replace(tile={"rows": 48, "cols": 16, "count": 2}, adc={"latency_cycles": 73},
                                 sequencer={"activation_words": 512, "program_words": 16, "param_words": 32,
                                            "psum_words": 16, "max_row_blocks": 2})


def small_onnx(path):
    """Conv 1 -> 4 (9 rows), max pooling, dense 64 -> 10 (two row blocks of a 48-row tile, the
    second beside the convolution's block), as an ONNX file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    arrays = {"w1": rng.normal(size=(4, 1, 3, 3)), "b1": rng.normal(size=4) * 0.1,
              "wf": rng.normal(size=(10, 64)) * 0.2, "bf": rng.normal(size=10) * 0.1, "shape": np.array([-1, 64])}
    inits = [numpy_helper.from_array(a.astype(np.int64 if n == "shape" else np.float32), n) for n, a in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_address_map_places_the_chip_then_the_emulator_windows(tmp_path):
    cfg = chip_preset()
    amap = FpgaChipAddressMap(cfg)
    names = [w.name for w in amap.windows]
    assert names[0] == "chip" and {f"tile{t}" for t in range(cfg.tile.count)} <= set(names)
    assert names[-2:] == ["fpga", "weights"]
    for name, base, width in amap.bus_windows:
        assert base % (4 << width) == 0, name
    weights = amap.window("weights").regmap.item("WEIGHT")
    assert weights.length == cfg.tile.count * cfg.tile.rows * cfg.tile.cols
    regs = RegisterFile(amap.to_dict())
    assert regs.register("STATUS") is regs.register("chip.STATUS")  # the first window's name wins
    assert regs.array("tile3.GAIN")["base"] == amap.window("tile3").base + amap.window("tile3").regmap.address("GAIN")
    assert "INPUT" not in regs.arrays and "RESULT_COUNT" not in regs.registers
    with pytest.raises(KeyError, match="no register 'tile9.GAIN'"):
        regs.register("tile9.GAIN")
    paths = amap.write(tmp_path)
    assert RegisterFile.from_json(paths["fpga-map"]).register("tile3.DRIFT") == regs.register("tile3.DRIFT")
    csv = paths["fpga-map-csv"].read_text()
    assert f"csr_base,tile3,0x{amap.window('tile3').base:08x}" in csv and "weights_weight" in csv
    from systemrdl import RDLCompiler

    compiler = RDLCompiler()
    compiler.compile_file(str(paths["fpga-map-systemrdl"]))
    root = compiler.elaborate(top_def_name="neurophase_fpga_chip")
    tile3 = root.top.get_child_by_name("tile3")
    assert tile3.absolute_address == amap.window("tile3").base
    assert tile3.get_child_by_name("GAIN").raw_absolute_address == regs.array("tile3.GAIN")["base"]


def test_the_12m5_preset_is_the_chip_preset_at_the_clock_it_meets():
    from neurophase.fpga.top import uart_divisor

    slow = ChipConfig.from_toml(CHIP_PRESET.with_name("ulx3s_chip_12m5.toml"))
    assert (slow.clock_mhz, slow.fpga.baud, uart_divisor(slow)) == (12.5, 500_000, 25)
    assert slow.replace(clock_mhz=100.0, fpga={"baud": 1_000_000}) == chip_preset()


def test_chip_top_refuses_an_adc_timeout_shorter_than_a_conversion():
    cfg = chip_preset().replace(adc={"latency_cycles": 100}, datapath={"adc_timeout_cycles": 200})
    with pytest.raises(ValueError, match=r"datapath.adc_timeout_cycles must exceed the emulator's 297 cycles"):
        FpgaChipTop(cfg, 8)


def test_shared_emulator_model_converts_each_tile_with_one_noise_sequence():
    rng = np.random.default_rng(3)
    params = EmulatorParams(rows=16, cols=8, adc_bits=10, conductance_bits=7)
    arrays = EmulatedChipArrays(params, tiles=2, seed=9)
    weights = rng.integers(-127, 128, size=(2, 16, 8))
    for t in range(2):
        arrays.load_weights(t, weights[t])
    arrays.emulator.noise_bits = 3
    reference = CrossbarEmulatorModel(params, seed=9)
    reference.noise_bits = 3
    for tile in (1, 0, 1):
        drive = rng.integers(-128, 128, size=16)
        reference.set_conductances(np.maximum(weights[tile], 0)[None], np.maximum(-weights[tile], 0)[None])
        assert np.array_equal(arrays(tile, drive, 0, 0), reference.mvm_codes(drive))
    with pytest.raises(ValueError, match=r"weights of tile 0 must lie in \[-127, 127\]"):
        arrays.load_weights(0, np.full((16, 8), 128))
    with pytest.raises(ValueError, match="tile must be an integer from 0 to 1"):
        arrays.load_weights(2, weights[0])


def test_the_shipped_network_fits_the_chip_preset_with_the_emulator_arithmetic():
    cfg = chip_preset()
    compiled = compile_for_board(cfg)
    assert len(compiled.tiles) == cfg.tile.count == 4
    assert [b.tile for b in compiled.mapped.blocks] == [0, 1, 2, 3]
    test = load_dataset(None, "test").head(24)
    model = EmulatedChipModel(compiled, noise_bits=0)
    assert model.arrays.emulator.scale == emulator_scale(cfg) == 1032
    outputs = [model.run(x)[0] for x in quantise_images(compiled, test.inputs)]
    accuracy = np.mean(np.argmax(outputs, axis=1) == test.labels)
    assert accuracy >= 0.9, accuracy


#: The simulated chip board is built once per module; its tests run on one xdist worker.
BOARD = pytest.mark.xdist_group("fpga_chip_board")


@pytest.fixture(scope="module")
def chip_board(tmp_path_factory):
    """The simulated board of :func:`small_chip`, serving host sessions until the module ends."""
    from neurophase.fpga.sim_board import SimBoard

    with SimBoard(small_chip(), tmp_path_factory.mktemp("chip_board"), sessions=0, chip=True) as board:
        yield board


@BOARD
@pytest.mark.verilator
def test_a_network_on_the_simulated_chip_board_is_exact_through_link_faults(tmp_path, chip_board):
    cfg = small_chip()
    model_path = small_onnx(tmp_path / "small.onnx")
    compiled = compile_for_board(cfg, model_path)
    assert [(b.tile, b.row, b.col) for b in compiled.mapped.blocks] == [(0, 0, 0), (1, 0, 0), (0, 9, 4)]
    test = load_dataset(None, "test").head(4)
    x = quantise_images(compiled, test.inputs)
    board = chip_board
    with ChipHost.connect(board.url, board.map_path, timeout=600) as host:
        with pytest.raises(HostError, match="no network loaded"):
            host.read_output()
        with pytest.raises(HostError, match="runs MVMs only through its program"):
            host.mvm(np.zeros(cfg.tile.rows, dtype=int))
        host.load_network(compiled)
        host.set_noise(2, 11)
        report = run_images(host, compiled, x[:2], test.labels[:2], seed=11)
        assert report.mismatches == 0 and report.link_faults == 0, report
        assert report.cycles_per_image > 0
        model = EmulatedChipModel(compiled, noise_bits=2, scale=emulator_scale(cfg))
        check_garbage_mid_inference(host, model, x)
        check_stalled_frame_mid_inference(host, model, x)
    # the command line, in the board's place: the same flow over the socket, the devices aged
    # (EMU_SCALE) and the drift compensated in the tiles' GAIN registers
    config = tmp_path / "small_chip.toml"
    config.write_text(cfg.to_toml())
    result = CliRunner().invoke(main, ["fpga", "infer", "--port", board.url, "--map", str(board.map_path),
                                       str(model_path), "--config", str(config), "--images", "3",
                                       "--noise-bits", "1", "--drift-s", "1e4", "--nu", "0.05", "--gdc", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["images"] == 3 and summary["mismatches"] == 0 and summary["link_faults"] == 0
    assert summary["accuracy"] == summary["model_accuracy"]
    assert summary["cycles_per_image"] == report.cycles_per_image  # the program's timing is data-independent


def calibration_windows(model: EmulatedChipModel, plan, tile: int, windows: dict | None = None) -> dict:
    """The statistics windows after the calibration vectors through ``tile`` on the bit-true
    model (accumulated into ``windows`` when given, else into cleared ones)."""
    chip = model.loaded_chip()
    chip.gains[tile] = plan.unit_gains()
    chip.load_program(list(model.compiled.program) + plan.calibration_program(tile))
    windows = chip.enable_statistics(windows)
    for vector in plan.vectors:
        chip.activations[plan.scratch_in:plan.scratch_in + len(vector)] = vector
        chip.run(entry=plan.calibration_pc)
    return windows


def model_gdc_sums(model: EmulatedChipModel, plan, tile: int) -> list:
    """``PSUM_ABS`` after the calibration vectors through ``tile`` on the bit-true model."""
    return calibration_windows(model, plan, tile)["abs"][plan.scratch_param:plan.scratch_param + plan.cfg.tile.cols]


def model_batch_norm(model: EmulatedChipModel, plan, x_int, written: dict) -> None:
    """Every layer measured on the bit-true model as the host measured it on the board (END
    after the layer, the layers before it recalibrated): the same statistics, and the same
    registers from :class:`BatchNormCalibration` as the host wrote."""
    from neurophase.models.chip_isa import Instruction, Opcode
    from neurophase.network.compensation import BatchNormCalibration

    bn = BatchNormCalibration(model.compiled.mapped, plan.calibration_images)
    program = list(model.compiled.program)
    for step in plan.batch_norm_steps(program):
        model.program = program[:step.end_pc] + [Instruction(Opcode.END, {})]
        windows = model.loaded_chip().enable_statistics()
        for x in x_int:
            model.run(x, seed=None, statistics=windows)
        part = slice(step.param_base, step.param_base + step.outputs)
        got = written[step.layer]
        assert got["sum"] == windows["sum"][part] and got["squares"] == windows["squares"][part], step.layer
        n = len(x_int) * step.positions
        mean = np.array(windows["sum"][part]) / n
        std = np.sqrt(np.maximum(np.array(windows["squares"][part]) / n - mean ** 2, 0.0))
        scale, bias, shift = bn.registers(step.layer, mean, std)
        assert np.array_equal(got["scale"], scale) and np.array_equal(got["bias"], bias) and got["shift"] == shift
        model.bn_scale[part], model.bn_bias[part] = scale, bias
        program[step.pc] = plan.with_shift(step, shift)
    model.program = program


@BOARD
@pytest.mark.verilator
def test_firmware_compensation_over_the_link_on_the_simulated_board(tmp_path, chip_board):
    """Measured GDC and batch-norm recalibration through the register interface: the
    calibration statistics equal the bit-true model's, alpha is the drift law's factor, and
    every inference after each compensation is exact against the model of what the host wrote."""
    from neurophase.models.drift_gain import DriftGainParams, gain_to_fixed

    cfg = small_chip().replace(analog={"calibration_vectors": 6})
    compiled = compile_for_board(cfg, small_onnx(tmp_path / "small.onnx"))
    test = load_dataset(None, "test").head(2)
    x = quantise_images(compiled, test.inputs)
    calibration = load_dataset(None, "train").inputs[:2]
    with ChipHost.connect(chip_board.url, chip_board.map_path, timeout=600) as host:
        host.load_network(compiled, full_tiles=True)  # the calibration program reads whole tiles
        host.set_noise(0, 1)
        with pytest.raises(HostError, match="call measure_gdc_reference"):
            host.gdc()
        r0 = host.measure_gdc_reference()
        plan = host.compensation()
        fresh = EmulatedChipModel.from_board(host)
        for tile in plan.tiles:
            assert np.array_equal(r0[tile], plan.gdc_r(model_gdc_sums(fresh, plan, tile))), tile
        reference = [fresh.run(xi)[0] for xi in x]

        host.drift_step(1e4, 0.05)
        drifted = [host.infer(xi, seed=1).output for xi in x]
        alphas = host.gdc()
        aged = EmulatedChipModel.from_board(host)
        params = DriftGainParams.from_config(cfg)
        for tile, alpha in alphas.items():  # per-tile GDC: one alpha per tile, in DRIFT_GAIN
            assert np.array_equal(alpha, r0[tile] / plan.gdc_r(model_gdc_sums(aged, plan, tile))), tile
            assert np.array_equal(host.tile_gains()[tile], np.full(cfg.tile.cols, gain_to_fixed(params, alpha[0])))
        # tile 0 (conv and half the dense layer) reads its calibration vectors unclipped: alpha is the drift
        # law's factor; tile 1's 48 dense rows clip the 10-bit ADC at programming, so r0 is low and so is alpha
        expected = 1e4 ** 0.05
        assert abs(alphas[0][0] / expected - 1) < 0.005, alphas[0][0]
        assert 1.3 < alphas[1][0] < expected, alphas[1][0]
        report = run_images(host, compiled, x, test.labels)
        assert report.mismatches == 0, report
        compensated = [host.infer(xi, seed=1).output for xi in x]
        for ref, old, new in zip(reference, drifted, compensated):
            assert np.abs(new - ref).sum() < np.abs(old - ref).sum() / 3

        before = EmulatedChipModel.from_board(host)
        written = host.recalibrate_batch_norm(calibration)
        assert set(written) == set(compiled.mapped.layers)
        model_batch_norm(before, host.compensation(calibration), quantise_images(compiled, calibration), written)
        after = EmulatedChipModel.from_board(host)  # what the host wrote is what the model says it wrote
        assert after.program[:len(compiled.program)] == [ins.encode() for ins in before.program]
        assert np.array_equal(after.bn_scale, before.bn_scale) and np.array_equal(after.bn_bias, before.bn_bias)
        assert any(Instruction.decode(a)["shift"] != c["shift"] for a, c in
                   zip(after.program, compiled.program) if c.opcode.name == "MVM") or \
            not np.array_equal(after.bn_scale[:len(compiled.bn_scale)], compiled.bn_scale)
        report = run_images(host, compiled, x, test.labels)
        assert report.mismatches == 0, report

        host.restore_batch_norm()
        host.unit_gains()
        assert EmulatedChipModel.from_board(host).program[:len(compiled.program)] == \
            [ins.encode() for ins in compiled.program]
        with pytest.raises(ValueError, match="must have shape"):
            host.recalibrate_batch_norm(np.zeros((2, 3, 3), dtype=np.float32))
        with pytest.raises(ValueError, match=r"tile must be one the loaded network uses \(0, 1\), not 5"):
            host.set_tile_gains(5, plan.unit_gains(), per_column=True)
    # the command line: the drift scenario over the socket, every inference exact against the model
    config = tmp_path / "small_chip.toml"
    config.write_text(small_chip().to_toml())
    result = CliRunner().invoke(main, ["fpga", "infer", "--port", chip_board.url, "--map", str(chip_board.map_path),
                                       str(tmp_path / "small.onnx"), "--config", str(config), "--images", "2",
                                       "--drift", "1d", "--calibration-images", "2", "--calibration-vectors", "4",
                                       "--out", str(tmp_path / "drift.png"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["mismatches"] == 0 and summary["calibration_vectors"] == 4 and summary["calibration_images"] == 2
    (row,) = summary["rows"]
    assert row["t_s"] == 86400.0 and row["alpha_mean"] > 1.2 and {"none", "gdc", "gdc+bn"} <= set(row)
    assert (tmp_path / "drift.png").stat().st_size > 0


def test_firmware_compensation_refuses_what_does_not_fit(tmp_path):
    from neurophase.fpga.infer import run_drift_scenario
    from neurophase.network.firmware import FirmwareCompensation

    model_path = small_onnx(tmp_path / "small.onnx")
    compiled = compile_for_board(small_chip(), model_path)
    words = len(compiled.program)
    tight = compile_for_board(small_chip().replace(sequencer={"program_words": words + 2}), model_path)
    with pytest.raises(ValueError, match=rf"needs 3 instructions after the network's {words}; "
                                         rf"sequencer.program_words is {words + 2}"):
        FirmwareCompensation(tight)
    columns = compile_for_board(small_chip().replace(analog={"gdc_source": "reference-columns",
                                                             "reference_columns": 1}), model_path)
    with pytest.raises(ValueError, match="analog.gdc_source 'reference-columns' is not supported"):
        FirmwareCompensation(columns)
    plan = FirmwareCompensation(compiled)
    with pytest.raises(ValueError, match="needs calibration images"):
        plan.batch_norm_registers(plan.batch_norm_steps()[0], [0] * 4, [0] * 4)
    with pytest.raises(ValueError, match=r"tile must be one the network uses \(0, 1\), not 3"):
        plan.calibration_program(3)
    with pytest.raises(ValueError, match="abs_sums must hold one sum per tile column"):
        plan.gdc_r([1, 2, 3])
    for times, message in (([], "at least one time"), ([0.5], "at least 1 s"), ([10.0, 10.0], "more than once")):
        with pytest.raises(ValueError, match=message):
            run_drift_scenario(None, compiled, [], [], times, [])
    with pytest.raises(ValueError, match=r"nu must be a number in \[0, 1\], not 2"):
        run_drift_scenario(None, compiled, [], [], [10.0], [], nu=2)


def test_model_statistics_windows_accumulate_and_saturate(tmp_path):
    """The interpreter's statistics windows, as the chip's: kept across runs, 64-bit saturating."""
    from neurophase.network.firmware import FirmwareCompensation

    compiled = compile_for_board(small_chip().replace(analog={"calibration_vectors": 3}),
                                 small_onnx(tmp_path / "small.onnx"))
    plan = FirmwareCompensation(compiled)
    model = EmulatedChipModel(compiled)
    first, cols = plan.scratch_param, compiled.cfg.tile.cols
    clean = calibration_windows(model, plan, 0)
    assert clean["abs"][first] > 0 and clean["squares"][first] > 0
    twice = calibration_windows(model, plan, 0, calibration_windows(model, plan, 0))
    for name in ("sum", "squares", "abs"):
        assert twice[name] == [2 * v for v in clean[name]], name
    negative = first + int(np.argmin(clean["sum"][first:first + cols]))
    assert clean["sum"][negative] < -1
    entries = compiled.cfg.sequencer.param_words
    near_top = {"sum": [0] * entries, "squares": [0] * entries, "abs": [0] * entries}
    near_top["abs"][first], near_top["sum"][negative] = (1 << 64) - 2, -(1 << 63) + 1
    calibration_windows(model, plan, 0, near_top)
    assert near_top["abs"][first] == (1 << 64) - 1 and near_top["sum"][negative] == -(1 << 63)
    assert near_top["abs"][first + 1:first + cols] == clean["abs"][first + 1:first + cols]
    chip = model.loaded_chip()
    with pytest.raises(ValueError, match=rf"statistics must map sum, squares and abs to {entries} entries"):
        chip.enable_statistics({"sum": [0] * entries})


def test_infer_needs_exactly_one_target_and_a_drift_to_compensate():
    result = CliRunner().invoke(main, ["fpga", "infer"])
    assert result.exit_code == 2 and "give exactly one of --sim and --port DEV" in result.output
    result = CliRunner().invoke(main, ["fpga", "infer", "--sim", "--gdc"])
    assert result.exit_code == 2 and "--gdc compensates a drift: give --drift-s too" in result.output
    for args, message in ((["--drift", "1d", "--drift-s", "10"], "--drift runs its own drift steps and compensation"),
                          (["--calibration-images", "3"], "--calibration-images is for the --drift scenario"),
                          (["--calibration-vectors", "3"], "--calibration-vectors is for the --drift scenario"),
                          (["--drift", "1d,0.5"], "0.5 s is before the drift law's t0 of 1 s"),
                          (["--drift", "1d,soon"], "'soon' is not a time")):
        result = CliRunner().invoke(main, ["fpga", "infer", "--sim", *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_drift_compensation_in_the_gains_restores_the_outputs(tmp_path):
    cfg = small_chip()
    compiled = compile_for_board(cfg, small_onnx(tmp_path / "small.onnx"))
    x = quantise_images(compiled, load_dataset(None, "test").head(3).inputs)
    fresh = EmulatedChipModel(compiled)
    factor = 1e4 ** -0.05
    aged = EmulatedChipModel(compiled, scale=round(emulator_scale(cfg) * factor))
    unit = 1 << cfg.datapath.gain_frac_bits
    gains = {image.tile: np.full(cfg.tile.cols, round(unit / factor)) for image in compiled.tiles}
    compensated = EmulatedChipModel(compiled, scale=round(emulator_scale(cfg) * factor), gains=gains)
    for xi in x:
        reference = fresh.run(xi)[0]
        drifted = np.abs(aged.run(xi)[0] - reference).sum()
        assert np.abs(compensated.run(xi)[0] - reference).sum() < drifted / 3


def check_garbage_mid_inference(host: ChipHost, model: EmulatedChipModel, x) -> None:
    before = host.link_errors()
    host.write_image(x[2])
    host.set_noise(2, image_seed(11, 2))
    host.start()
    host.transport.write(bytes([0x00, 0xFF, 0x42]))  # garbage where a frame must start
    host.wait()
    assert host.link_errors()["bad_commands"] - before["bad_commands"] == 3
    assert np.array_equal(host.read_output(), model.run(x[2], seed=image_seed(11, 2))[0])
    result = host.infer(x[3], seed=image_seed(11, 3))
    assert not result.link_fault
    assert np.array_equal(result.output, model.run(x[3], seed=image_seed(11, 3))[0])


def check_stalled_frame_mid_inference(host: ChipHost, model: EmulatedChipModel, x) -> None:
    before = host.link_errors()
    host.write_image(x[0])
    host.set_noise(2, 40)
    host.start()
    host.transport.write(bytes([0x01, 0x02, 0x00, 0x00]))  # a write frame cut short, then silence
    time.sleep(0.2)
    host.resynchronise()  # quiet for longer than the bridge's frame timeout
    host.wait()
    assert host.link_errors()["frame_timeouts"] - before["frame_timeouts"] == 1
    assert np.array_equal(host.read_output(), model.run(x[0], seed=40)[0])
    result = host.infer(x[1], seed=41)
    assert np.array_equal(result.output, model.run(x[1], seed=41)[0])
