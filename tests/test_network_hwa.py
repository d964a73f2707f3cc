"""Hardware-aware training: the injected noise is the analog model's, the shipped HWA network
holds its accuracy better than the plain one, the CLI, the study's HWA columns, bad models."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from scipy.stats import ks_2samp

from neurophase.cli import main
from neurophase.config import ChipConfig
from neurophase.models.crossbar import program_tile
from neurophase.models.gdc import calibrate
from neurophase.network import default_model as defaults
from neurophase.network.data import digits
from neurophase.network.golden import NetworkChip
from neurophase.network.mapping import map_network, quantise_matrix
from neurophase.network.onnx_import import load_onnx
from neurophase.network.study import HWA_COMPENSATIONS, _rng, accuracy, compensated_accuracy, network_study
from neurophase.network.train import NODE_TYPES
from neurophase.network.weight_noise import ChipWeightNoise, conv_matrix

MONTH = 30 * 86400.0
YEAR = 365 * 86400.0


@pytest.fixture(scope="module")
def digit_sets():
    return digits()


@pytest.fixture(scope="module")
def conv2_matrix():
    """The shipped network's second convolution as the crossbar holds it (144 x 32)."""
    return conv_matrix(load_onnx(defaults.DEFAULT_MODEL_PATH).mvm_layers[1].weight)


def tile_integer_weights(cfg: ChipConfig, matrix: np.ndarray, seed: int, t_s: float) -> np.ndarray:
    """The matrix programmed on an AnalogTile (rows 0.., columns 0..) and read row by row at ``t_s``:
    one-hot inputs give each row's column signals before the ADC, in integer weight units."""
    k, n = matrix.shape
    w_int, scale = quantise_matrix(cfg, matrix)
    tile_w = np.zeros((cfg.tile.rows, cfg.tile.cols), np.int64)
    tile_w[:k, :n] = w_int
    tile_scale = np.ones(cfg.tile.cols)
    tile_scale[:n] = scale
    tile = program_tile(cfg, tile_w, tile_scale, seed)
    one_hot = np.zeros((k, cfg.tile.rows), np.int64)
    one_hot[np.arange(k), np.arange(k)] = 1
    signals = tile.analog_outputs(one_hot, t_s, np.random.default_rng(seed + 100))[:, 0, :, :n]  # (S, K, N) LSB
    digits_ = signals.astype(np.float64) * tile.lsb_us / tile.mapping.g_unit
    factors = tile.mapping.factor ** np.arange(cfg.weights.slices)
    return np.tensordot(factors, digits_, axes=1)


@pytest.mark.parametrize("overrides", [{}, {"weights": {"devices_per_polarity": 2}}])
def test_injected_weights_equal_the_analog_tile_reads_in_distribution(conv2_matrix, overrides):
    """Per weight magnitude bin, the error of the HWA noise model's read weights and of the
    AnalogTile's row-by-row reads (same device preset, same weights, 1 month, four chip
    instances) have the same median, interquartile range and distribution (two-sample KS test)."""
    cfg = ChipConfig().replace(**overrides) if overrides else ChipConfig()
    noise = ChipWeightNoise(cfg)
    w_int, _ = quantise_matrix(cfg, conv2_matrix)
    seeds = range(4)
    ours = np.stack([noise.read(noise.program(conv2_matrix, np.random.default_rng(s)), MONTH,
                                np.random.default_rng(s + 50)) for s in seeds]) - w_int
    tiles = np.stack([tile_integer_weights(cfg, conv2_matrix, s, MONTH) for s in seeds]) - w_int
    magnitude = np.broadcast_to(np.abs(w_int), ours.shape)
    for low, high in ((0, 0), (1, 15), (16, 47), (48, 127)):
        chosen = (magnitude >= low) & (magnitude <= high)
        a, b = ours[chosen], tiles[chosen]
        assert a.size > 100
        spread = np.subtract(*np.percentile(b, [75, 25]))  # robust: drift and read noise have heavy tails
        assert abs(np.median(a) - np.median(b)) < 0.1 * spread, (low, high)
        assert np.subtract(*np.percentile(a, [75, 25])) == pytest.approx(spread, rel=0.1 + 2 / np.sqrt(a.size))
        assert ks_2samp(a, b).pvalue > 1e-3, (low, high)


def test_injected_drift_compensation_equals_the_gdc_firmware_on_average(conv2_matrix):
    """The noise model's GDC gain of a block matches the GDC firmware's on a tile that holds that
    block alone (per-tile GDC, 1 year), averaged over four chip instances."""
    cfg = ChipConfig()
    noise = ChipWeightNoise(cfg)
    ours, chips = [], []
    for seed in range(4):
        programmed = noise.program(conv2_matrix, np.random.default_rng(seed))
        rng = np.random.default_rng(seed + 50)
        fresh, read = (noise.slice_digits(noise.read_conductances(programmed, t, rng)) for t in (0.0, YEAR))
        ours.append(noise.gdc_alpha(fresh, read, YEAR, rng)[0, 0])
        w_int, scale = quantise_matrix(cfg, conv2_matrix)
        tile_w = np.zeros((cfg.tile.rows, cfg.tile.cols), np.int64)
        tile_w[:w_int.shape[0], :w_int.shape[1]] = w_int
        tile = program_tile(cfg, tile_w, np.ones(cfg.tile.cols), seed)
        chips.append(calibrate(tile, YEAR, np.random.default_rng(seed))[0][0])
    assert np.mean(ours) > 1.5  # a year of drift: a real correction, not 1
    assert np.mean(ours) == pytest.approx(np.mean(chips), rel=0.02)


def test_the_jax_side_adds_exactly_the_numpy_models_perturbation(conv2_matrix):
    """perturbations() is noisy_matrix() - clean per tensor (same draws), reshaped to the tensor;
    fake quantisation sits on the 8-bit grid with an identity gradient."""
    import jax
    import jax.numpy as jnp

    from neurophase.network.hwa import NOISY_TENSORS, fake_quantise, load_cnn_onnx, perturbations

    cfg = ChipConfig()
    noise = ChipWeightNoise(cfg)
    tensors = load_cnn_onnx(defaults.DEFAULT_MODEL_PATH).tensors
    deltas = perturbations(noise, tensors, MONTH, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    for name in NOISY_TENSORS:
        weight = tensors[name].astype(np.float64)
        noisy = noise.noisy_matrix(conv_matrix(weight), MONTH, rng).T.reshape(weight.shape)
        np.testing.assert_allclose(deltas[name], (noisy - weight).astype(np.float32), rtol=0, atol=1e-7)
        assert np.abs(deltas[name]).max() > 0
    x = jnp.linspace(-3.0, 3.0, 101)
    q = fake_quantise(x, 0.02, 8)
    assert np.allclose(np.asarray(q) / 0.02, np.round(np.asarray(q) / 0.02)) and float(q.max()) == pytest.approx(2.54)
    np.testing.assert_allclose(jax.grad(lambda v: fake_quantise(v, 0.02, 8).sum())(x), np.ones(101))


def test_hwa_trained_default_network_loses_less_accuracy_at_one_month(digit_sets):
    """Shipped HWA network against the plain one on the chips of seeds 1-3, 200 test images, 1 month,
    without compensation: on every seed the HWA network loses less from its own fresh accuracy,
    by more than 5 points on average.

    Why without compensation: it is the comparison that separates the networks robustly
    (measured drops 49.5-65.5 points plain, 34-52 HWA; 13.5-17 points apart on each seed). With GDC
    both networks lose 0-3 points at 1 month, within one to three images of 200 of each other
    and with no consistent sign across seeds (measured: plain 1.5, 0.0, 3.0; HWA 2.5, 0.5, 1.5),
    so a test on it would test the seeds, not the training; docs/network.md gives the 450-image
    study with every column.
    """
    train_set, test_set = digit_sets
    test = test_set.head(200)
    cfg = ChipConfig()
    drops = {}
    for name, path in (("plain", defaults.DEFAULT_MODEL_PATH), ("hwa", defaults.DEFAULT_HWA_MODEL_PATH)):
        mapped = map_network(load_onnx(path), cfg, train_set.inputs[:512])
        drops[name] = []
        for seed in (1, 2, 3):
            chip = NetworkChip(mapped, seed)
            fresh = accuracy(chip, test, 0.0, _rng(seed, 2))
            drops[name].append(fresh - compensated_accuracy(chip, None, None, test, MONTH, _rng(seed, 3)))
    assert all(h < p for h, p in zip(drops["hwa"], drops["plain"])), drops
    assert np.mean(drops["plain"]) - np.mean(drops["hwa"]) > 0.05, drops


def test_shipped_hwa_model_is_the_plain_format_and_accurate(digit_sets):
    from neurophase.network.train import onnx_accuracy

    model = onnx.load(defaults.DEFAULT_HWA_MODEL_PATH)
    onnx.checker.check_model(model, full_check=True)
    assert tuple(node.op_type for node in model.graph.node) == NODE_TYPES
    props = {p.key: p.value for p in model.metadata_props}
    assert props["hwa"] == "true" and props["hwa_start_model"] == "default_cnn.onnx"
    assert onnx_accuracy(defaults.DEFAULT_HWA_MODEL_PATH, digit_sets[1]) >= 0.97


def test_cli_hwa_json_with_one_epoch(tmp_path):
    out = tmp_path / "hwa.onnx"
    result = CliRunner().invoke(main, ["model", "train", "--hwa", "--epochs", "1", "--seed", "4", "--out", str(out),
                                       "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout[result.stdout.index("{"):])
    assert figures["hwa"] is True and figures["epochs"] == 1 and figures["seed"] == 4
    assert figures["out"] == str(out) and out.exists()
    assert figures["device_preset"] == "pcm-joshi" and figures["time_range_s"] == [1.0, YEAR]
    assert 0.9 <= figures["test_accuracy"] <= 1 and 0.9 <= figures["start_test_accuracy"] <= 1
    assert figures["cpu_s"] > 0
    assert tuple(node.op_type for node in onnx.load(out).graph.node) == NODE_TYPES
    assert not list(tmp_path.glob(".*.tmp"))


def gemm_only_model(path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [10, 64], np.zeros(640, np.float32))
    b = helper.make_tensor("b", TensorProto.FLOAT, [10], np.zeros(10, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "w", "b"],
                                                                                      ["logits"], transB=1)],
        "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], initializer=[w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_other_architectures_are_refused_clearly(tmp_path):
    mlp = tmp_path / "mlp.onnx"
    gemm_only_model(mlp)
    result = CliRunner().invoke(main, ["model", "train", "--hwa", str(mlp), "--out", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2
    assert "mlp.onnx: its operators are Flatten, Gemm" in result.output
    assert "supports only the CNN family" in result.output
    strided = onnx.load(defaults.DEFAULT_MODEL_PATH)
    conv = strided.graph.node[3]
    conv.attribute.remove(next(a for a in conv.attribute if a.name == "strides"))
    conv.attribute.append(helper.make_attribute("strides", [2, 2]))
    onnx.save(strided, tmp_path / "strided.onnx")
    from neurophase.network.hwa import ArchitectureError, load_cnn_onnx

    with pytest.raises(ArchitectureError, match="convolution 'conv2' is not a 3x3 convolution with padding 1, stride 1"):
        load_cnn_onnx(tmp_path / "strided.onnx")
    result = CliRunner().invoke(main, ["model", "train", str(mlp)])
    assert result.exit_code == 2 and "only read by hardware-aware fine-tuning: add --hwa" in result.output


def test_study_hwa_columns_measure_from_the_hwa_networks_own_fresh_accuracy(digit_sets):
    train_set, test_set = digit_sets
    cfg = ChipConfig()
    plain = map_network(load_onnx(defaults.DEFAULT_MODEL_PATH), cfg, train_set.inputs[:512])
    hwa = map_network(load_onnx(defaults.DEFAULT_HWA_MODEL_PATH), cfg, train_set.inputs[:512])
    test = test_set.head(60)
    result = network_study(plain, test, train_set, seeds=(1,), times=(3600.0, YEAR), diagnose_at=None,
                           hwa_mapped=hwa)
    assert result["compensations"] == ["none", "gdc", "gdc+bn", *HWA_COMPENSATIONS]
    year = {r["compensation"]: r["mean"] for r in result["rows"] if r["time_s"] == YEAR}
    for comp in HWA_COMPENSATIONS:
        assert result["drop_1y"][comp] == pytest.approx(result["fresh_accuracy_hwa"] - year[comp])
    assert result["drop_1y"]["gdc+bn"] == pytest.approx(result["fresh_accuracy"] - year["gdc+bn"])
    assert result["drop_1y_prong_hwa"] == pytest.approx(100 * result["drop_1y"]["gdc+hwa"])  # percentage points
    assert result["drop_1y_prongs_hwa_bn"] == pytest.approx(100 * result["drop_1y"]["gdc+bn+hwa"])  # percentage points
    assert result["drop_1y_prong_bn"] == pytest.approx(100 * result["drop_1y"]["gdc+bn"])  # percentage points
    assert {"fp32_accuracy_hwa", "quantised_accuracy_hwa", "fresh_per_seed_hwa"} <= result.keys()
    without = network_study(plain, test, train_set, seeds=(1,), times=(3600.0, YEAR), diagnose_at=None)
    assert without["rows"] == [r for r in result["rows"] if r["compensation"] not in HWA_COMPENSATIONS]
    assert "drop_1y_prong_hwa" not in without
