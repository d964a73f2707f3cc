"""The network flow: ONNX import against onnxruntime, mapping onto tiles, the golden network
model against integer arithmetic, compensation, bad inputs."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from network_helpers import integer_reference, residual_onnx, small_cnn
from neurophase.config import ChipConfig, ConfigError
from neurophase.models.crossbar import exact_config
from neurophase.network import native as nn
from neurophase.network.data import Dataset, load_npz
from neurophase.network.golden import NetworkChip
from neurophase.network.graph import NetworkError
from neurophase.network.mapping import map_network
from neurophase.network.onnx_import import from_onnx_model, load_onnx


def exact_chip(rows=128, cols=128, count=16):
    return exact_config(ChipConfig().replace(tile={"rows": rows, "cols": cols, "count": count}, adc={"bits": 16},
                                             datapath={"lanes": 32}))


def test_import_reproduces_onnxruntime():
    rng = np.random.default_rng(11)
    model = residual_onnx(rng)
    onnx.checker.check_model(model)
    network = from_onnx_model(model)
    x = rng.normal(size=(7, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(network.run(x), expected, rtol=1e-4, atol=1e-4)
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds == ["Mvm", "Mvm", "Add", "Relu", "Pool", "Pool", "Flatten", "Mvm", "Mvm"]
    assert network.layer("conv1").relu and network.layer("conv1").has_batch_norm


def test_import_of_a_file_and_strided_padded_conv(tmp_path):
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.normal(size=(3, 2, 3, 2)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 1], pads=[1, 0, 2, 1], name="c")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 7, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = rng.normal(size=(3, 2, 7, 5)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(load_onnx(path).run(x), expected, rtol=1e-4, atol=1e-5)


def _single_node_model(op, inputs, inits, **attrs):
    node = helper.make_node(op, inputs, ["y"], name="odd_node", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_operator_is_refused_by_name():
    with pytest.raises(NetworkError, match="unsupported operator 'Sigmoid' in node 'odd_node'; supported: Gemm"):
        from_onnx_model(_single_node_model("Sigmoid", ["x"], []))


def test_nan_weights_are_refused():
    w = np.ones((3, 4), dtype=np.float32)
    w[1, 2] = np.nan
    model = _single_node_model("Gemm", ["x", "w"], [numpy_helper.from_array(w, "w")], transB=1)
    with pytest.raises(NetworkError, match="weights of 'odd_node' contain NaN or infinite values"):
        from_onnx_model(model)


def test_unreadable_model_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(NetworkError, match="bad.onnx"):
        load_onnx(bad)
    with pytest.raises(NetworkError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")


def test_native_description_equals_onnx_import():
    rng = np.random.default_rng(2)
    w1, b1, wf, bf = rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), rng.normal(size=(10, 64)), rng.normal(size=10)
    native = nn.sequential((1, 8, 8), [nn.Conv2d(w1, b1, padding=1), nn.ReLU(), nn.MaxPool(2), nn.Flatten(),
                                       nn.Dense(wf, bf)])
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (("w1", w1), ("b1", b1), ("wf", wf), ("bf", bf))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2],
                                                                      strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    imported = from_onnx_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.uniform(size=(5, 1, 8, 8))
    np.testing.assert_allclose(native.run(x), imported.run(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode, weights", [
    ("bit-serial", {}), ("pulse-width", {}), ("bit-serial", {"slices": 2}), ("bit-serial", {"devices_per_polarity": 2}),
])
def test_noise_free_golden_network_equals_integer_arithmetic(mode, weights):
    """Noise off and the exact ADC range: every output equals the quantised network computed with
    integer matrix products, including a layer split over three tiles and a strided convolution,
    with weight slices and with two devices per polarity."""
    rng = np.random.default_rng(3)
    network = small_cnn(rng, stride=2)
    cfg = ChipConfig().replace(tile={"rows": 128, "cols": 128, "count": 16}, adc={"bits": 16},
                               datapath={"lanes": 32}, input={"mode": mode}, weights=weights)
    cfg = exact_config(cfg) if mode == "bit-serial" else exact_config(cfg.replace(tile={"rows": 2}))
    if mode == "pulse-width":  # 128 rows x 127 x 128 drive needs 22 ADC bits: exact pulse width on 2-row tiles
        network = nn.sequential((4,), [nn.Dense(rng.normal(size=(6, 4))), nn.ReLU(), nn.Dense(rng.normal(size=(3, 6)))])
        x = rng.normal(size=(30, 4)).astype(np.float32)
    else:
        x = rng.uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    mapped = map_network(network, cfg, x)
    assert max(m.row_blocks for m in mapped.layers.values()) >= 2
    out = NetworkChip(mapped, seed=1).run(x, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, integer_reference(mapped, x))


def test_split_layer_equals_unsplit_layer():
    rng = np.random.default_rng(4)
    network = small_cnn(rng, stride=2, hidden=200)
    x = rng.uniform(0, 1, size=(30, 1, 8, 8)).astype(np.float32)
    split = map_network(network, exact_chip(rows=128), x)
    whole = map_network(network, exact_chip(rows=256), x)
    assert split.layers["dense9"].row_blocks == 2 and whole.layers["dense9"].row_blocks == 1
    a = NetworkChip(split, 1).run(x, 0.0, np.random.default_rng(0))
    b = NetworkChip(whole, 1).run(x, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)


def test_small_layers_share_a_tile_and_report():
    rng = np.random.default_rng(6)
    network = small_cnn(rng, channels=(4, 8), hidden=20)
    mapped = map_network(network, ChipConfig(), rng.uniform(size=(10, 1, 8, 8)))
    report = mapped.placement()
    tiles = {layer["layer"]: layer["tiles"] for layer in report["layers"]}
    assert tiles["conv2d1"] == tiles["conv2d4"] == [0]
    blocks = mapped.blocks
    for i, a in enumerate(blocks):  # blocks on one tile never share a row or a column
        for b in blocks[i + 1:]:
            if a.tile == b.tile:
                assert a.row + a.rows <= b.row or b.row + b.rows <= a.row
                assert a.col + a.cols <= b.col or b.col + b.cols <= a.col
    assert report["weights"] == sum(m.k * m.n for m in mapped.layers.values())
    assert report["devices_used"] == 2 * report["weights"]
    json.dumps(report)


def test_network_too_large_for_the_chip():
    rng = np.random.default_rng(7)
    network = small_cnn(rng, hidden=300)
    cfg = ChipConfig().replace(tile={"rows": 64, "cols": 64, "count": 4}, datapath={"lanes": 32})
    with pytest.raises(ConfigError, match=r"the network needs \d+ tiles of 64 x 64 but the chip has tile.count = 4"):
        map_network(network, cfg, rng.uniform(size=(4, 1, 8, 8)))


def test_bad_data_gets_clear_errors(tmp_path):
    rng = np.random.default_rng(8)
    network = small_cnn(rng)
    with pytest.raises(NetworkError, match=r"network inputs must have shape \(N, 1, 8, 8\), not \(3, 64\)"):
        network.run(np.zeros((3, 64)))
    with pytest.raises(NetworkError, match="NaN"):
        network.run(np.full((1, 1, 8, 8), np.nan))
    with pytest.raises(NetworkError, match="real numbers"):
        network.run(np.zeros((1, 1, 8, 8), dtype=complex))
    path = tmp_path / "d.npz"
    np.savez(path, inputs=np.zeros((3, 1, 8, 8)), labels=np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        load_npz(path)
    np.savez(path, images=np.zeros((3, 1, 8, 8)))
    with pytest.raises(ValueError, match="missing array\\(s\\) inputs, labels"):
        load_npz(path)
    with pytest.raises(ConfigError, match="input.encoding must be 'twos-complement'"):
        map_network(network, ChipConfig().replace(input={"encoding": "unsigned"}), np.zeros((1, 1, 8, 8)))
    assert len(Dataset(np.zeros((2, 3)), np.array([0, 1]))) == 2


@pytest.fixture(scope="module")
def default_flow():
    from neurophase.network.data import digits
    from neurophase.network.default_model import DEFAULT_MODEL_PATH

    train, test = digits()
    network = load_onnx(DEFAULT_MODEL_PATH)
    return map_network(network, ChipConfig(), train.inputs[:512]), train, test.head(240)


@pytest.mark.parametrize("seed", [1, 2])
def test_gdc_and_batch_norm_recalibration_each_improve_one_month(default_flow, seed):
    """At 1 month, GDC alone and batch-norm recalibration alone each recover most of the accuracy
    drift took, and the two together are at least as good as GDC alone."""
    from neurophase.network.compensation import BatchNormCalibration, GdcFirmware
    from neurophase.network.study import compensated_accuracy

    mapped, train, test = default_flow
    month = 30 * 86400.0
    chip = NetworkChip(mapped, seed)
    gdc, bn = GdcFirmware(chip, np.random.default_rng([seed, 1])), BatchNormCalibration(chip, train.inputs[:100])

    def acc(g, b, key):
        return compensated_accuracy(chip, g, b, test, month, np.random.default_rng([seed, key]))

    none, with_gdc, with_bn, both = acc(None, None, 2), acc(gdc, None, 3), acc(None, bn, 4), acc(gdc, bn, 5)
    assert with_gdc > none + 0.2 and with_bn > none + 0.2
    assert both >= with_gdc
    fresh = float(np.mean(chip.predict(test.inputs, 0.0, np.random.default_rng(0)) == test.labels))
    assert both > fresh - 0.03


def test_gdc_writes_fixed_point_gains(default_flow):
    from neurophase.models.drift_gain import DriftGainParams
    from neurophase.network.compensation import GdcFirmware

    mapped = default_flow[0]
    chip = NetworkChip(mapped, 3)
    gains = GdcFirmware(chip, np.random.default_rng(1)).apply(365 * 86400.0, np.random.default_rng(2))
    lo, hi = DriftGainParams.from_config(mapped.cfg).gain_range
    one = 1 << mapped.cfg.datapath.gain_frac_bits
    for tile_gains in gains:
        assert tile_gains.dtype == np.int64 and lo <= tile_gains.min() and tile_gains.max() <= hi
        assert np.all(tile_gains == tile_gains[0])  # per-tile GDC: one value per tile
        assert tile_gains[0] > one  # drift lowered the signal: alpha > 1
    assert chip.registers.gains is gains


def test_model_network_command_json(tmp_path):
    from neurophase.cli import main

    out = tmp_path / "study" / "network.png"
    result = CliRunner().invoke(main, ["model", "network", "--seeds", "1", "--images", "40", "--no-diagnosis",
                                       "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("fp32_accuracy", "fresh_accuracy", "fresh_over_fp32", "quantised_accuracy", "rows", "drop_1y",
                "fresh_accuracy_hwa", "drop_1y_prong_hwa", "drop_1y_prongs_hwa_bn", "drop_1y_prong_bn",
                "drop_1y_prong_reprogram", "drop_1y_all_prongs", "reprogramming"):
        assert key in data
    assert data["compensations"] == ["none", "gdc", "gdc+bn", "gdc+bn+reprogram", "gdc+hwa", "gdc+bn+hwa",
                                     "gdc+bn+hwa+reprogram"]  # --reprogram-percent 5 and the default's HWA twin
    assert len(data["rows"]) == 6 * 7
    assert all(len(row["per_seed"]) == 1 for row in data["rows"])  # one chip instance, one figure per cell
    assert out.exists() and out.with_suffix(".json").exists()
    assert data["fresh_over_fp32"] == pytest.approx(data["fresh_accuracy"] / data["fp32_accuracy"])
    assert data["drop_1y_all_prongs"] == pytest.approx(100 * data["drop_1y"]["gdc+bn+hwa+reprogram"])


def test_model_map_command_refuses_an_unsupported_model(tmp_path):
    from neurophase.cli import main

    path = tmp_path / "sig.onnx"
    onnx.save(_single_node_model("Sigmoid", ["x"], []), path)
    result = CliRunner().invoke(main, ["model", "map", str(path)])
    assert result.exit_code == 2
    assert "unsupported operator 'Sigmoid' in node 'odd_node'" in result.output
    result = CliRunner().invoke(main, ["model", "map", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["tiles_used"] == 3


def test_a_multiplier_the_batch_norm_registers_cannot_hold_is_refused():
    rng = np.random.default_rng(9)
    network = nn.sequential((16,), [nn.Dense(rng.normal(size=(8, 16)))])
    cfg = ChipConfig().replace(analog={"adc_full_scale": 64.0})  # few ADC codes per unit: a large multiplier
    with pytest.raises(ConfigError, match=r"layer 'dense1' needs a requantisation multiplier of [\d.]+, more than "
                                          r"datapath.bn_scale_bits 16"):
        map_network(network, cfg, rng.normal(size=(50, 16)))
