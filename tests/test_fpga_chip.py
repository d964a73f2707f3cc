"""The FPGA chip top: its address map, the shared emulator's bit-true model, the chip preset
with the shipped network, and a compiled network on the simulated board exact against the
model, through link faults."""

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
from neurophase.models.crossbar_emulator import CrossbarEmulatorModel, EmulatedChipArrays, EmulatorParams
from neurophase.network.data import load_dataset


def chip_preset() -> ChipConfig:
    return ChipConfig.from_toml(CHIP_PRESET)


def small_chip() -> ChipConfig:
    """The chip preset shrunk for a fast simulated board: 2 tiles of 48 x 16."""
    return chip_preset().replace(tile={"rows": 48, "cols": 16, "count": 2}, adc={"latency_cycles": 72},
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
    with pytest.raises(ValueError, match=r"datapath.adc_timeout_cycles must exceed the emulator's 296 cycles"):
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


@pytest.mark.verilator
def test_a_network_on_the_simulated_chip_board_is_exact_through_link_faults(tmp_path):
    from neurophase.fpga.sim_board import SimBoard

    cfg = small_chip()
    model_path = small_onnx(tmp_path / "small.onnx")
    compiled = compile_for_board(cfg, model_path)
    assert [(b.tile, b.row, b.col) for b in compiled.mapped.blocks] == [(0, 0, 0), (1, 0, 0), (0, 9, 4)]
    test = load_dataset(None, "test").head(4)
    x = quantise_images(compiled, test.inputs)
    with SimBoard(cfg, tmp_path / "board", sessions=2, chip=True) as board:
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


def test_infer_needs_exactly_one_target_and_a_drift_to_compensate():
    result = CliRunner().invoke(main, ["fpga", "infer"])
    assert result.exit_code == 2 and "give exactly one of --sim and --port DEV" in result.output
    result = CliRunner().invoke(main, ["fpga", "infer", "--sim", "--gdc"])
    assert result.exit_code == 2 and "--gdc compensates a drift: give --drift-s too" in result.output


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
