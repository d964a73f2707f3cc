"""The network compiler and the bit-true chip interpreter: the compiled program run by the
interpreter equals the golden network model tensor for tensor (exact codes and keyed analog
reads), every sequencer error code, compile errors that name the resource, the CLI."""

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from neurophase.chip_regmap import ERROR_CODES
from neurophase.config import ChipConfig, ConfigError
from neurophase.models.chip_golden import (
    CYCLE_MODEL, ChipInterpreter, ChipProgramError, ErrorCode, estimate_cycles, ideal_code_source,
)
from neurophase.models.chip_isa import Instruction, Opcode
from neurophase.models.crossbar import exact_config
from neurophase.network import native as nn
from neurophase.network.compiler import compile_network, run_compiled, write_compiled
from neurophase.network.data import load_dataset
from neurophase.network.default_model import DEFAULT_MODEL_PATH
from neurophase.network.golden import NetworkChip, ReadKeys, keyed_code_source
from neurophase.network.mapping import map_network
from neurophase.network.onnx_import import load_onnx


@pytest.fixture(scope="module")
def digits():
    return load_dataset(None, "train").inputs[:256], load_dataset(None, "test").inputs


@pytest.fixture(scope="module")
def default_network():
    return load_onnx(DEFAULT_MODEL_PATH)


def assert_same_tensors(trace, tensors):
    assert set(trace.tensors) == set(tensors)
    for name, expected in trace.tensors.items():
        np.testing.assert_array_equal(tensors[name], expected, err_msg=f"tensor {name}")


def assert_same_saturations(trace, stats):
    psum = sum(s["psum"] for s in trace.saturations.values())
    bn = sum(s["bn"] for s in trace.saturations.values())
    assert sum(s.psum_saturations for s in stats) == psum
    assert sum(s.bn_saturations for s in stats) == bn


def test_default_network_with_exact_codes_equals_the_golden_model(digits, default_network):
    calib, test = digits
    cfg = exact_config(ChipConfig().replace(adc={"bits": 16}))
    mapped = map_network(default_network, cfg, calib)
    compiled = compile_network(mapped)
    chip = NetworkChip(mapped, seed=1)
    x = test[:3]
    trace = chip.run(x, 0.0, np.random.default_rng(0), trace=True)
    source = ideal_code_source(cfg, [t.w_int for t in compiled.tiles])
    tensors, stats = run_compiled(compiled, chip.quantise(x), lambda i: source)
    assert_same_tensors(trace, tensors)
    assert_same_saturations(trace, stats)
    assert stats[0].mvms == 64 + 64 + 2  # conv1, conv2 (8 x 8 positions, one block each), fc (two row blocks)
    assert stats[0].cycles == compiled.cycles_per_image


def random_network(rng: np.random.Generator, variant: int):
    """Strided, padded convolution with batch-norm, a residual block (ADD, and a separate RELU
    in variant 0), max pooling with padding (of signed values in variant 1), average or
    global-average pooling, dense layers; the second convolution has 9 c > 16 inputs, so it is
    split over row blocks of 16-row tiles."""
    c = int(rng.integers(2, 4))
    tail = ([nn.AvgPool(2, stride=1), nn.Flatten(), nn.Dense(rng.normal(size=(12, 4 * c)) * 0.3, rng.normal(size=12)),
             nn.ReLU()] if variant == 0 else
            [nn.GlobalAvgPool(), nn.ReLU(), nn.Flatten(), nn.Dense(rng.normal(size=(12, c)) * 0.5)])
    return nn.sequential((2, 9, 9), [
        nn.Conv2d(rng.normal(size=(c, 2, 3, 3)), rng.normal(size=c) * 0.1, stride=2, padding=1),
        nn.BatchNorm(rng.uniform(0.5, 1.5, c), rng.normal(size=c) * 0.1, rng.normal(size=c) * 0.1,
                     rng.uniform(0.5, 2, c)),
        nn.ReLU(),
        nn.Residual([nn.Conv2d(rng.normal(size=(c, c, 3, 3)) * 0.3, padding=1)], relu=variant == 0),
        nn.MaxPool(3, stride=2, padding=1),
        *tail,
        nn.Dense(rng.normal(size=(5, 12)) * 0.3),
    ])


@pytest.mark.parametrize("variant, seed, chip", [
    (0, 1, {}), (1, 2, {}), (0, 3, {"weights": {"slices": 2}, "datapath": {"lanes": 8, "gain_mode": "per-tile"}}),
])
def test_random_small_networks_equal_the_golden_model(variant, seed, chip):
    rng = np.random.default_rng(seed)
    network = random_network(rng, variant)
    cfg = ChipConfig().replace(tile={"rows": 16, "cols": 16, "count": 8}, adc={"bits": 16}, datapath={"lanes": 16})
    cfg = exact_config(cfg.replace(**chip))
    x = rng.uniform(-1, 1, size=(4, 2, 9, 9)).astype(np.float32)
    mapped = map_network(network, cfg, x)
    assert max(m.row_blocks for m in mapped.layers.values()) >= 2
    compiled = compile_network(mapped)
    opcodes = {ins.opcode for ins in compiled.program}
    assert {Opcode.MVM, Opcode.BLOCK, Opcode.ADD, Opcode.RELU, Opcode.POOL_MAX, Opcode.POOL_AVG} <= opcodes
    chip = NetworkChip(mapped, seed=1)
    trace = chip.run(x, 0.0, np.random.default_rng(0), trace=True)
    source = ideal_code_source(cfg, [t.w_int for t in compiled.tiles])
    tensors, stats = run_compiled(compiled, chip.quantise(x), lambda i: source)
    assert_same_tensors(trace, tensors)
    assert_same_saturations(trace, stats)


def test_keyed_analog_reads_equal_the_golden_model(digits, default_network):
    """Noise, drift and an 8-bit ADC: the interpreter reading the analog tiles with the same
    keys as the golden model's ReadKeys gives the same tensors, bit for bit; keyed reads do
    not depend on how the images are batched."""
    calib, test = digits
    cfg = ChipConfig()
    mapped = map_network(default_network, cfg, calib)
    compiled = compile_network(mapped)
    x, t_s, keys = test[:2], 86400.0, ReadKeys(seed=7)
    trace = NetworkChip(mapped, seed=3).run(x, t_s, keys, trace=True)
    reader = NetworkChip(mapped, seed=3)
    tensors, stats = run_compiled(compiled, reader.quantise(x),
                                  lambda i: keyed_code_source(reader, t_s, keys, keys.first_image + i))
    assert_same_tensors(trace, tensors)
    assert_same_saturations(trace, stats)

    golden = NetworkChip(mapped, seed=3)  # offset trims and drift gains as firmware writes them
    rng = np.random.default_rng(5)
    for t in range(mapped.tiles_used):
        golden.registers.trims[t] = rng.integers(-3, 4, cfg.tile.cols)
        golden.registers.gains[t] = rng.integers(3800, 4600, cfg.tile.cols)
    trimmed = golden.run(x, t_s, keys, trace=True)
    tensors, stats = run_compiled(compiled, reader.quantise(x), lambda i: keyed_code_source(reader, t_s, keys, i),
                                  trims=golden.registers.trims, gains=golden.registers.gains)
    assert_same_tensors(trimmed, tensors)
    assert_same_saturations(trimmed, stats)
    assert not np.array_equal(trimmed.tensors["relu2"], trace.tensors["relu2"])
    second = NetworkChip(mapped, seed=3).run(x[1:], t_s, ReadKeys(seed=7, first_image=1))
    np.testing.assert_array_equal(second, trace.tensors[default_network.output_name][1:])
    other = NetworkChip(mapped, seed=3).run(x, t_s, ReadKeys(seed=8), trace=True)
    assert not np.array_equal(other.tensors["relu2"], trace.tensors["relu2"])  # the keys do draw the noise


# -- sequencer errors -------------------------------------------------------------------------------------
def small_chip(**sequencer):
    seq = {"activation_words": 64, "program_words": 8, "param_words": 32, "psum_words": 16, "max_row_blocks": 2}
    return ChipConfig().replace(tile={"rows": 16, "cols": 16, "count": 4}, datapath={"lanes": 16},
                                sequencer=dict(seq, **sequencer))


def zero_codes(cfg):
    shape = (cfg.weights.slices, cfg.input.planes, cfg.tile.cols)
    return lambda tile, drive, block, position: np.zeros(shape, dtype=np.int64)


END = Instruction(Opcode.END, {})


def mvm(**operands):
    base = {"in_base": 0, "out_base": 32, "channels": 4, "in_h": 1, "in_w": 1, "kernel_h": 1, "kernel_w": 1,
            "stride_h": 1, "stride_w": 1, "out_h": 1, "out_w": 1, "outputs": 4, "blocks": 1, "param_base": 0,
            "psum_bits": 16}
    return Instruction(Opcode.MVM, dict(base, **operands))


def block(**operands):
    return Instruction(Opcode.BLOCK, dict({"tile": 0, "rows": 4, "cols": 4}, **operands))


@pytest.mark.parametrize("program, code, pc, tile", [
    ([0], 1, 0, 0),  # opcode 0
    ([Instruction(Opcode.RELU, {"length": 1}), 9 | (1 << 8)], 1, 1, 0),  # opcode 9
    ([block(), END], 1, 0, 0),  # a BLOCK entry outside an MVM
    ([mvm(blocks=2), block(), Instruction(Opcode.RELU, {}), END], 1, 2, 0),  # an MVM short of BLOCK entries
    ([mvm(kernel_h=0), block(), END], 1, 0, 0),
    ([mvm(outputs=17), block(), END], 1, 0, 0),  # more outputs than the partial-sum buffer (16)
    ([mvm(psum_bits=18), block(), END], 1, 0, 0),  # wider than the chip's adder (17 bits)
    ([Instruction(Opcode.RELU, {"in_base": 60, "out_base": 0, "length": 8}), END], 2, 0, 0),
    ([Instruction(Opcode.RELU, {"in_base": 0, "out_base": 60, "length": 8}), END], 2, 0, 0),
    ([Instruction(Opcode.ADD, {"in_base": 0, "in_b_base": 63, "out_base": 8, "length": 2}), END], 2, 0, 0),
    ([mvm(in_base=62), block(), END], 2, 1, 0),  # the gather reads 62 .. 65
    ([mvm(out_base=62), block(), END], 2, 0, 0),  # the outputs go to 62 .. 65
    ([Instruction(Opcode.POOL_MAX, {"channels": 2, "in_h": 4, "in_w": 4, "kernel_h": 2, "kernel_w": 2, "stride_h": 2,
                                    "stride_w": 2, "out_h": 2, "out_w": 2, "out_base": 58}), END], 2, 0, 0),
    ([mvm(), block(tile=4), END], 5, 1, 4),  # tile >= tile.count
    ([mvm(), block(tile=2, tile_row=13), END], 5, 1, 2),  # rows beyond the tile
    ([mvm(), block(tile=1, tile_col=13), END], 5, 1, 1),  # columns beyond the tile
    ([mvm(), block(n_start=2), END], 5, 1, 0),  # beyond the MVM's 4 outputs
    ([Instruction(Opcode.RELU, {})] * 8, 6, 8, 0),  # runs off the program memory
    ([Instruction(Opcode.RELU, {})] * 6 + [mvm(blocks=2), block()], 6, 8, 0),  # BLOCK entries beyond it
    ([mvm(param_base=29), block(), END], 7, 0, 0),  # 29 + 4 > param_words (32)
])
def test_each_error_code(program, code, pc, tile):
    cfg = small_chip()
    chip = ChipInterpreter(cfg, zero_codes(cfg))
    with pytest.raises(ChipProgramError) as caught:
        chip.run(program)
    assert (caught.value.code, caught.value.pc, caught.value.tile) == (code, pc, tile)
    assert f"sequencer error {code} " in str(caught.value)


def test_error_codes_match_the_chip_address_map():
    assert {int(c) for c in ErrorCode} == set(ERROR_CODES)
    assert "timeout" in ERROR_CODES[ErrorCode.ADC_TIMEOUT] and "program counter" in ERROR_CODES[ErrorCode.PC_OUT_OF_RANGE]


def test_an_error_keeps_the_writes_before_it_and_in_place_relu():
    cfg = small_chip()
    values = np.arange(-32, 32, dtype=np.int64) % 17 - 8
    chip = ChipInterpreter(cfg, zero_codes(cfg), activations=values)
    with pytest.raises(ChipProgramError):
        chip.run([Instruction(Opcode.RELU, {"in_base": 0, "out_base": 60, "length": 8}), END])
    np.testing.assert_array_equal(chip.activations[60:], np.maximum(values[:4], 0))
    chip = ChipInterpreter(cfg, zero_codes(cfg), activations=values)
    chip.run([Instruction(Opcode.RELU, {"in_base": 0, "out_base": 0, "length": 64}), END])
    np.testing.assert_array_equal(chip.activations, np.maximum(values, 0))


def test_cycle_estimate_follows_its_formula():
    cfg = ChipConfig()  # 256 columns, 32 lanes, 8 planes, 1 slice, 1 column per ADC, 16-cycle ADC
    ins = mvm(out_h=2, out_w=3, outputs=40)
    blocks = [block(rows=100, tile_col=30, cols=40)]  # columns 30 .. 69 touch beats 0, 1, 2
    per_block = 8 + 100 + 5 + 8 * 1 * (16 + 1) + 256 // 32 + 9 + 3 * 32
    assert estimate_cycles(cfg, ins, blocks) == 4 + 6 * (per_block + 40 + 11)
    pool = Instruction(Opcode.POOL_MAX, {"channels": 3, "kernel_h": 2, "kernel_w": 2, "out_h": 2, "out_w": 2})
    assert estimate_cycles(cfg, pool) == 4 + 12 * (4 * 1 + 16)
    assert estimate_cycles(cfg, Instruction(Opcode.ADD, {"length": 10})) == 4 + 40
    assert CYCLE_MODEL.fetch == 4


# -- compile errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sequencer, message", [
    ({"activation_words": 1024}, r"activations need 3658 activation memory words .* sequencer.activation_words = 1024"),
    ({"program_words": 8}, r"program needs 9 instructions .* sequencer.program_words = 8"),
    ({"param_words": 32}, r"parameters need 58 words .* sequencer.param_words = 32"),
    ({"psum_words": 16}, r"layer 'conv2' has 32 outputs .* sequencer.psum_words = 16"),
    ({"max_row_blocks": 1}, r"layer 'fc' needs 2 row blocks \(512 inputs on tiles of 256 rows\) .* "
                            r"sequencer.max_row_blocks = 1"),
])
def test_a_network_that_does_not_fit_is_refused_with_numbers(digits, default_network, sequencer, message):
    mapped = map_network(default_network, ChipConfig().replace(sequencer=sequencer), digits[0][:64])
    with pytest.raises(ConfigError, match=message):
        compile_network(mapped)


def test_an_operand_field_too_narrow_is_refused():
    rng = np.random.default_rng(4)
    network = nn.sequential((1, 16, 2), [nn.Conv2d(rng.normal(size=(2, 1, 16, 1))), nn.Flatten(),
                                         nn.Dense(rng.normal(size=(3, 4)))])
    mapped = map_network(network, ChipConfig(), rng.uniform(size=(8, 1, 16, 2)))
    with pytest.raises(ConfigError, match=r"layer 'conv2d1' needs kernel height = 16, but the MVM instruction's "
                                          r"kernel_h field holds 0 .. 15 \(4 bits\)"):
        compile_network(mapped)


# -- files and CLI ---------------------------------------------------------------------------------------------
def test_compile_command_writes_the_files(tmp_path):
    from neurophase.cli import main

    out = tmp_path / "compiled"
    result = CliRunner().invoke(main, ["compile", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["instructions"] == 9 and summary["tiles"] == 3 and summary["cycles_per_image"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    lines = (out / "program.hex").read_text().splitlines()
    program = json.loads((out / "program.json").read_text())["instructions"]
    assert len(lines) == len(program) == 9 and all(len(line) == 64 for line in lines)
    decoded = [Instruction.decode(int(line, 16)) for line in lines]
    assert [d.opcode.name for d in decoded] == [p["opcode"] for p in program]
    assert all(d.operands == p["operands"] for d, p in zip(decoded, program))
    layout = json.loads((out / "layout.json").read_text())
    bases = {t["name"]: t["base"] for t in layout["tensors"]}
    assert bases["input"] == 0 and bases["flatten"] == bases["pool"]
    with np.load(out / "tiles.npz") as tiles, np.load(out / "params.npz") as params:
        assert tiles["w_int"].shape == (3, 256, 256) and tiles["g_target"].shape[:3] == (3, 2, 1)
        assert len(params["bn_scale"]) == summary["param_words_used"] == 58
    listing = (out / "listing.txt").read_text()
    assert f"total: {summary['cycles_per_image']} cycles per image" in listing and "BLOCK tile=2" in listing

    plain = CliRunner().invoke(main, ["compile", "--out", str(out)])
    assert plain.exit_code == 0 and "cycles per image" in plain.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused = CliRunner().invoke(main, ["compile", "--out", str(blocker / "sub")])
    assert refused.exit_code == 2 and "error: --out" in refused.output and "is a file" in refused.output


def test_write_compiled_round_trips_the_images(tmp_path, digits, default_network):
    mapped = map_network(default_network, ChipConfig(), digits[0][:64])
    compiled = compile_network(mapped)
    write_compiled(compiled, tmp_path)
    with np.load(tmp_path / "tiles.npz") as tiles:
        for t in compiled.tiles:
            np.testing.assert_array_equal(tiles["w_int"][t.tile], mapped.tile_weights(t.tile)[0])
            np.testing.assert_array_equal(tiles["gains"][t.tile], 1 << mapped.cfg.datapath.gain_frac_bits)
    programmed = NetworkChip(mapped, seed=1).tiles[0]
    from neurophase.models.crossbar import target_conductances, reference_weights

    expected = target_conductances(mapped.cfg, programmed.mapping, programmed.state.w_int,
                                   reference_weights(mapped.cfg, programmed.mapping))
    np.testing.assert_array_equal(compiled.tiles[0].g_target, expected)
