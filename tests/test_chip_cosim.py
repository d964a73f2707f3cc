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
from neurophase.models.chip_isa import Opcode
from neurophase.models.crossbar import exact_config
from neurophase.network.compiler import compile_network
from neurophase.network.mapping import map_network
from test_chip_compiler import random_network

IMAGES = 3


def small_chip(noisy: bool) -> ChipConfig:
    cfg = exact_config(ChipConfig().replace(tile={"rows": 16, "cols": 16, "count": 8},
                                            adc={"bits": 16, "latency_cycles": 8}, datapath={"lanes": 8}))
    if noisy:  # the same RTL (the ADC width is unchanged); the analog model reads with noise and drift
        cfg = cfg.replace(analog={"programming_noise": "on", "drift": "on", "read_noise": "output-referred",
                                  "adc_full_scale": cfg.analog.adc_full_scale / 4})
    return cfg


def compiled_network(variant: int, seed: int, noisy: bool):
    rng = np.random.default_rng(seed)
    network = random_network(rng, variant)
    x = rng.uniform(-1, 1, size=(IMAGES, 2, 9, 9)).astype(np.float32)
    mapped = map_network(network, small_chip(noisy), x)
    assert max(m.row_blocks for m in mapped.layers.values()) >= 2
    labels = rng.integers(0, 5, size=IMAGES)
    return compile_network(mapped), x, labels


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("chip_cosim")


@pytest.mark.parametrize("variant, seed, noisy", [(0, 1, False), (1, 2, True)])
def test_compiled_networks_run_exactly_on_the_chip_rtl(build_dir, variant, seed, noisy):
    compiled, x, labels = compiled_network(variant, seed, noisy)
    opcodes = {ins.opcode for ins in compiled.program}
    assert {Opcode.MVM, Opcode.BLOCK, Opcode.ADD, Opcode.POOL_MAX, Opcode.END} <= opcodes
    run, res = run_chip_network(compiled, x, labels, build_dir, seed=seed, times=(86400.0,), sim_seed=seed)
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


def test_a_golden_model_one_lsb_off_is_caught(build_dir):
    """The comparison can fail: a golden model with one batch-norm bias off by one LSB."""
    compiled, x, labels = compiled_network(0, 1, False)
    with pytest.raises(SimulationError):
        run_chip_network(compiled, x[:1], labels[:1], build_dir, seed=1, golden_bias_offset=1)
    res = json.loads((build_dir / "network_inference.json").read_text(encoding="utf-8"))
    assert res["mismatches"] > 0 and res["images"] == 1


def test_faults_stop_the_program_and_the_next_inference_is_exact(build_dir):
    """Abort mid-network, an ADC that never answers, an invalid instruction, the memories
    locked while the program runs (assertions inside the cocotb test)."""
    compiled, x, labels = compiled_network(0, 1, False)
    run, res = run_chip_network(compiled, x[:1], labels[:1], build_dir, seed=1, testcase="faults")
    assert run.ok, run.failed_tests
    assert res["abort"]["error"]["code"] == 4
    assert res["timeout"]["error"]["code"] == 3
    assert res["invalid"]["code"] == 1
    assert res["locked_memory_refused"]
    for key in ("after_abort", "after_timeout", "after_invalid"):
        assert res[key]["mismatches"] == 0
