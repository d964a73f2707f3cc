"""The FPGA chip top: its address map, the shared emulator's bit-true model, the chip preset
with the shipped network, and a compiled network on the simulated board exact against the
model, through link faults."""

from __future__ import annotations

import time

import numpy as np
import pytest

from neurophase.config import ChipConfig
from neurophase.fpga.chip_host import ChipHost, EmulatedChipModel, emulator_scale
from neurophase.fpga.chip_top import FpgaChipAddressMap, FpgaChipTop
from neurophase.fpga.cli import CHIP_PRESET
from neurophase.fpga.host import HostError, RegisterFile
from neurophase.fpga.infer import compile_for_board, image_seed, quantise_images, run_images
from neurophase.models.crossbar_emulator import CrossbarEmulatorModel, EmulatedChipArrays, EmulatorParams
from neurophase.network import native as nn
from neurophase.network.data import load_dataset


def chip_preset() -> ChipConfig:
    return ChipConfig.from_toml(CHIP_PRESET)


def small_chip() -> ChipConfig:
    """The chip preset shrunk for a fast simulated board: 3 tiles of 32 x 16."""
    return chip_preset().replace(tile={"rows": 32, "cols": 16, "count": 3}, adc={"latency_cycles": 56},
                                 sequencer={"activation_words": 512, "program_words": 16, "param_words": 32,
                                            "psum_words": 16, "max_row_blocks": 2})


def small_network(rng: np.random.Generator):
    """Conv 1 -> 4 (9 rows), max pooling, dense 64 -> 10 (two row blocks of a 32-row tile)."""
    return nn.sequential((1, 8, 8), [
        nn.Conv2d(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4) * 0.1, padding=1), nn.ReLU(),
        nn.MaxPool(2, stride=2), nn.Flatten(),
        nn.Dense(rng.normal(size=(10, 64)) * 0.2, rng.normal(size=10) * 0.1),
    ])


def compile_small(cfg: ChipConfig):
    from neurophase.network.compiler import compile_network
    from neurophase.network.mapping import map_network

    train = load_dataset(None, "train")
    return compile_network(map_network(small_network(np.random.default_rng(5)), cfg, train.inputs[:256]))


def test_address_map_places_the_chip_then_the_emulator_windows():
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
    compiled = compile_small(cfg)
    assert len(compiled.tiles) == 3 and max(m.row_blocks for m in compiled.mapped.layers.values()) == 2
    test = load_dataset(None, "test").head(4)
    x = quantise_images(compiled, test.inputs)
    with SimBoard(cfg, tmp_path / "board", sessions=1, chip=True) as board:
        with ChipHost.connect(board.url, board.map_path, timeout=600) as host:
            with pytest.raises(HostError, match="no network loaded"):
                host.read_output()
            host.load_network(compiled)
            host.set_noise(2, 11)
            report = run_images(host, compiled, x[:2], test.labels[:2], seed=11)
            assert report.mismatches == 0 and report.link_faults == 0, report
            assert report.cycles_per_image > 0
            model = EmulatedChipModel(compiled, noise_bits=2, scale=emulator_scale(cfg))
            check_garbage_mid_inference(host, model, x)
            check_stalled_frame_mid_inference(host, model, x)


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
