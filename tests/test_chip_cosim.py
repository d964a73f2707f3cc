"""The chip RTL under Verilator running compiled networks, checked against the golden network model.

One small chip (8 tiles of 16 x 16, 16-bit ADCs) is built once; random small networks
(strided and padded convolutions, a layer split over row blocks, residual add, max and
average pooling, dense layers) run on it with ideal codes and with the analog model's noisy,
drifted codes; the faults stop the program with their error codes and the next inference
is exact again.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurophase.config import ChipConfig
from neurophase.cosim.chip_cosim import run_chip_network
from neurophase.cosim.runner import SimulationError
from neurophase.models.chip_golden import ChipInterpreter, ChipProgramError
from neurophase.models.chip_isa import Instruction, Opcode
from neurophase.models.crossbar import exact_config
from neurophase.network.compiler import compile_network
from neurophase.network.mapping import map_network
from test_chip_compiler import random_network

IMAGES = 3
#: Each chip is built once per session; its tests run on one xdist worker (``--dist loadgroup``).
BIT_SERIAL = pytest.mark.xdist_group("chip_bit_serial")
PULSE_WIDTH = pytest.mark.xdist_group("chip_pulse_width")


def small_chip(noisy: bool) -> ChipConfig:
    """Bit-serial with ideal codes, or pulse-width inputs read with noise and drift."""
    base = ChipConfig().replace(tile={"rows": 16, "cols": 16, "count": 8}, adc={"bits": 16, "latency_cycles": 8},
                                datapath={"lanes": 8})
    if noisy:  # the default analog model (noise, drift, an ADC range that clips) with 12-bit ADCs
        return base.replace(input={"mode": "pulse-width"}, adc={"bits": 12}, analog={"calibration_vectors": 8})
    return exact_config(base)


def compiled_network(variant: int, seed: int, noisy: bool):
    rng = np.random.default_rng(seed)
    network = random_network(rng, variant)
    x = rng.uniform(-1, 1, size=(IMAGES, 2, 9, 9)).astype(np.float32)
    mapped = map_network(network, small_chip(noisy), x)
    assert max(m.row_blocks for m in mapped.layers.values()) >= 2
    labels = rng.integers(0, 5, size=IMAGES)
    return compile_network(mapped), x, labels


@pytest.fixture(scope="session")
def build_dirs(tmp_path_factory):
    """Build folder per chip, shared by the tests of the session (worker)."""
    return {noisy: tmp_path_factory.mktemp("chip_pulse_width" if noisy else "chip_bit_serial") for noisy in (False, True)}


@pytest.mark.parametrize("variant, seed, noisy", [pytest.param(0, 1, False, marks=BIT_SERIAL),
                                                   pytest.param(1, 2, True, marks=PULSE_WIDTH)])
def test_compiled_networks_run_exactly_on_the_chip_rtl(build_dirs, variant, seed, noisy):
    """Bit-serial rows with ideal codes; pulse-width rows with programming noise, drift and
    read noise (keyed reads: the model path's classes for the same seed)."""
    compiled, x, labels = compiled_network(variant, seed, noisy)
    opcodes = {ins.opcode for ins in compiled.program}
    assert {Opcode.MVM, Opcode.BLOCK, Opcode.ADD, Opcode.POOL_MAX, Opcode.END} <= opcodes
    run, res = run_chip_network(compiled, x, labels, build_dirs[noisy], seed=seed, times=(86400.0,), sim_seed=seed)
    assert run.ok, run.failed_tests
    assert res["images"] == IMAGES
    assert res["mismatches"] == 0 and res["row_mismatches"] == 0 and res["unknown_tags"] == 0
    assert res["model_agrees"] and res["accuracy"] == res["model_accuracy"]
    for row in res["per_image"]:
        assert set(row["per_tensor"]) >= {name for name, t in compiled.tensors.items() if t.alias_of is None}
        assert row["nonzero"] > 0  # the comparison is not of two empty memories
    expected_mvms = sum(ins["blocks"] * ins["out_h"] * ins["out_w"] for ins in compiled.program
                        if ins.opcode == Opcode.MVM)
    assert res["mvms_per_image"] == expected_mvms
    assert res["conversions"] == IMAGES * expected_mvms * small_chip(noisy).input.planes


@BIT_SERIAL
def test_a_golden_model_one_lsb_off_is_caught(build_dirs):
    """The comparison can fail: a golden model with one batch-norm bias off by one LSB."""
    compiled, x, labels = compiled_network(0, 1, False)
    with pytest.raises(SimulationError):
        run_chip_network(compiled, x[:1], labels[:1], build_dirs[False], seed=1, golden_bias_offset=1)
    res = json.loads((build_dirs[False] / "network_inference.json").read_text(encoding="utf-8"))
    assert res["mismatches"] > 0 and res["images"] == 1


@BIT_SERIAL
def test_faults_stop_the_program_and_the_next_inference_is_exact(build_dirs):
    """Abort mid-network, an ADC that never answers, an invalid instruction, the memories
    locked while the program runs (assertions inside the cocotb test)."""
    compiled, x, labels = compiled_network(0, 1, False)
    run, res = run_chip_network(compiled, x[:1], labels[:1], build_dirs[False], seed=1, testcase="faults")
    assert run.ok, run.failed_tests
    assert res["abort"]["error"]["code"] == 4
    assert res["timeout"]["error"]["code"] == 3
    assert res["invalid"]["code"] == 1
    assert res["locked_memory_refused"] and res["tile_start_refused"]
    for key in ("after_abort", "after_timeout", "after_invalid"):
        assert res[key]["mismatches"] == 0


@PULSE_WIDTH
def test_drift_scenario_with_firmware_compensation_over_the_bus(build_dirs):
    """At one month the firmware's GDC (calibration vectors through each tile, |y| sums from
    the statistics window) raises the gains, batch-norm recalibration rewrites the registers
    from the chip's own partial-sum statistics, and every inference equals the golden model
    with the registers the firmware wrote."""
    compiled, x, labels = compiled_network(1, 2, True)
    month = 30 * 86400.0
    run, res = run_chip_network(compiled, x[:2], labels[:2], build_dirs[True], seed=2, times=(month,), testcase="drift",
                                calibration_images=x[1:3])
    assert run.ok, run.failed_tests
    assert res["mismatches"] == 0 and res["row_mismatches"] == 0 and res["unknown_tags"] == 0
    row = res["rows"][0]
    assert row["t_s"] == month and row["alpha_mean"] > 1.0  # drift lowers the conductances; GDC raises the gain
    assert {"none", "gdc", "gdc+bn"} <= set(row)


def bad_programs(cfg: ChipConfig) -> list:
    """One program per sequencer error the RTL can meet without a timing event (codes 1, 2, 5,
    6, 7), sized for ``cfg``; each ends in an invalid word so nothing of an earlier one is run."""
    seq, rows, cols = cfg.sequencer, cfg.tile.rows, cfg.tile.cols
    end = Instruction(Opcode.END, {})

    def mvm(**operands):
        base = {"in_base": 0, "out_base": 64, "channels": 4, "in_h": 1, "in_w": 1, "kernel_h": 1, "kernel_w": 1,
                "stride_h": 1, "stride_w": 1, "out_h": 1, "out_w": 1, "outputs": 4, "blocks": 1, "param_base": 0,
                "psum_bits": cfg.psum_bits}
        return Instruction(Opcode.MVM, dict(base, **operands))

    def block(**operands):
        return Instruction(Opcode.BLOCK, dict({"tile": 0, "rows": 4, "cols": 4}, **operands))

    relu = Instruction(Opcode.RELU, {"in_base": 0, "out_base": 32, "length": 2})
    last = seq.activation_words
    programs = [
        [0],
        [relu, 9],
        [block(), end],
        [mvm(blocks=2), block(), relu, end],
        [mvm(kernel_h=0), block(), end],
        [mvm(outputs=seq.psum_words + 1), block(), end],
        [mvm(psum_bits=cfg.psum_bits + 1), block(), end],
        [Instruction(Opcode.RELU, {"in_base": last - 1, "out_base": 0, "length": 4}), end],
        [Instruction(Opcode.ADD, {"in_base": 0, "in_b_base": last - 1, "out_base": 8, "length": 2}), end],
        [Instruction(Opcode.ADD, {"in_base": 0, "in_b_base": 4, "out_base": last - 2, "length": 3}), end],
        [mvm(in_base=last - 2), block(), end],
        [mvm(out_base=last - 2), block(), end],
        [Instruction(Opcode.POOL_MAX, {"channels": 2, "in_h": 4, "in_w": 4, "kernel_h": 2, "kernel_w": 2,
                                       "stride_h": 2, "stride_w": 2, "out_h": 2, "out_w": 2, "out_base": last - 3}),
         end],
        [mvm(), block(tile=cfg.tile.count), end],
        [mvm(), block(tile=2, tile_row=rows - 3), end],
        [mvm(), block(tile=1, tile_col=cols - 3), end],
        [mvm(), block(n_start=2), end],
        [mvm(param_base=seq.param_words - 3), block(), end],
        [relu] * seq.program_words,
        [relu] * (seq.program_words - 2) + [mvm(blocks=2), block()],
    ]
    return [[p.encode() if isinstance(p, Instruction) else p for p in program] + [0] * (program[-1] != 0)
            for program in programs]


@BIT_SERIAL
def test_every_sequencer_error_matches_the_chip_interpreter(build_dirs):
    """Invalid opcodes, stray or missing BLOCK entries, zero shapes, addresses beyond the
    activation memory in gathers, writes, pooling and element-wise reads, blocks outside their
    tile, a program counter beyond the program memory, parameters beyond their memory: the
    RTL stops with the interpreter's error code, pc and tile, and is idle."""
    compiled, x, labels = compiled_network(0, 1, False)
    cfg = compiled.cfg
    programs = [p[:cfg.sequencer.program_words] for p in bad_programs(cfg)]
    expected = []
    for words in programs:
        chip = ChipInterpreter(cfg, lambda tile, drive, block, position: np.zeros(
            (cfg.weights.slices, cfg.input.planes, cfg.tile.cols), dtype=np.int64))
        with pytest.raises(ChipProgramError) as caught:
            chip.run(words)
        expected.append((caught.value.code, caught.value.pc, caught.value.tile))
    assert {code for code, _, _ in expected} == {1, 2, 5, 6, 7}
    run, res = run_chip_network(compiled, x[:1], labels[:1], build_dirs[False], seed=1, testcase="error_programs",
                                programs=programs)
    assert run.ok, run.failed_tests
    got = [(r["code"], r["pc"], r["tile"]) for r in res["reports"]]
    assert got == expected
    assert all(r["error"] and not r["done"] for r in res["reports"])


def test_sim_network_refuses_bad_options_before_any_work(tmp_path):
    """A bad drift time or too few tiles: one line naming the option, status 2, nothing built."""
    from click.testing import CliRunner

    from neurophase.cli import main

    build = tmp_path / "build"
    result = CliRunner().invoke(main, ["sim", "network", "--drift", "1x", "--build-dir", str(build)])
    assert result.exit_code == 2 and "--drift: '1x' is not a time" in result.output
    result = CliRunner().invoke(main, ["sim", "network", "--tiles", "1", "--build-dir", str(build)])
    assert result.exit_code == 2 and "--tiles must be at least the 3 tiles the network uses, not 1" in result.output
    assert not any(build.glob("*.v"))
