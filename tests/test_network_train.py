"""The default CNN: the shipped ONNX file, retraining it with JAX + optax, bad training data, the CLI."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from neurophase.cli import main
from neurophase.network import default_model as defaults
from neurophase.network.data import TEST_FRACTION, Dataset, digits
from neurophase.network.train import (NODE_TYPES, TrainSettings, holdout_split, load_training_npz, onnx_accuracy,
                                      onnx_logits, save_onnx, train)

TILE_ROWS = 256


@pytest.fixture(scope="module")
def digit_sets():
    return digits()


@pytest.fixture(scope="module")
def retrained(digit_sets, tmp_path_factory):
    """The default network trained again with the default seed and written as ONNX."""
    network = train(digit_sets[0])
    return network, save_onnx(network, tmp_path_factory.mktemp("train") / "retrained.onnx")


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_shipped_model_is_valid_onnx_with_the_documented_graph():
    model = onnx.load(defaults.DEFAULT_MODEL_PATH)
    onnx.checker.check_model(model, full_check=True)
    assert tuple(node.op_type for node in model.graph.node) == NODE_TYPES
    assert [(o.domain, o.version) for o in model.opset_import] == [("", defaults.OPSET)]
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == "input" and graph_output.name == "logits"
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [1, 8, 8]
    weights = initializers(model)
    assert all(array.dtype == np.float32 for array in weights.values())
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    assert weights[gemm.input[1]].shape == (10, 32 * 4 * 4)
    inputs_longer_than_a_tile = [name for name, w in weights.items() if w.ndim == 2 and w.shape[1] > TILE_ROWS]
    assert inputs_longer_than_a_tile == [gemm.input[1]]
    batch_norms = [node for node in model.graph.node if node.op_type == "BatchNormalization"]
    running_vars = [weights[node.input[4]] for node in batch_norms]
    assert all(np.all(v > 0) and not np.allclose(v, 1.0) for v in running_vars)  # trained, not initial


def test_shipped_model_accuracy_through_onnxruntime(digit_sets):
    _, test_set = digit_sets
    assert onnx_accuracy(defaults.DEFAULT_MODEL_PATH, test_set) >= 0.97
    logits = onnx_logits(defaults.DEFAULT_MODEL_PATH, test_set.inputs[:3])
    assert logits.shape == (3, 10) and logits.dtype == np.float32


def test_retraining_with_the_default_seed_reproduces_the_shipped_accuracy(digit_sets, retrained):
    _, test_set = digit_sets
    network, path = retrained
    accuracy = onnx_accuracy(path, test_set)
    assert accuracy >= 0.97
    assert abs(accuracy - onnx_accuracy(defaults.DEFAULT_MODEL_PATH, test_set)) <= 0.01
    assert len(network.history) == defaults.DEFAULT_EPOCHS


def test_exported_onnx_computes_what_jax_computes(digit_sets, retrained):
    network, path = retrained
    inputs = digit_sets[1].inputs[:64]
    np.testing.assert_allclose(onnx_logits(path, inputs), network.logits(inputs), rtol=1e-4, atol=1e-4)


def test_same_seed_same_weights_other_seed_other_weights(digit_sets):
    small = digit_sets[0].head(256)
    first, again, other = (train(small, TrainSettings(seed=seed, epochs=2)) for seed in (5, 5, 6))
    assert first.tensors.keys() == again.tensors.keys()
    assert all(np.array_equal(first.tensors[k], again.tensors[k]) for k in first.tensors)
    assert not np.array_equal(first.tensors["fc.weight"], other.tensors["fc.weight"])


def test_holdout_split_is_fixed_stratified_and_disjoint():
    inputs = np.arange(80, dtype=np.float32).reshape(20, 1, 2, 2)
    data = Dataset(inputs, np.arange(20) % 2, "toy")
    train_set, test_set = holdout_split(data)
    again, _ = holdout_split(data)
    assert len(test_set) == round(TEST_FRACTION * 20) and len(train_set) + len(test_set) == 20
    assert np.array_equal(train_set.inputs, again.inputs)
    assert not set(train_set.inputs[:, 0, 0, 0]) & set(test_set.inputs[:, 0, 0, 0])
    assert abs(np.mean(test_set.labels) - 0.5) <= 0.1


@pytest.mark.parametrize("inputs, labels, message", [
    (np.random.default_rng(0).random((40, 64)), np.arange(40) % 2, "must be images shaped"),
    (np.random.default_rng(0).random((40, 8, 8)), np.arange(40) % 2, "add a channel axis"),
    (np.random.default_rng(0).random((40, 1, 8, 8)), np.arange(39) % 2, "labels must have shape (40,)"),
    (np.random.default_rng(0).random((40, 1, 8, 8)), np.zeros(40, int), "at least 2 classes"),
    (np.random.default_rng(0).random((40, 1, 1, 8)), np.arange(40) % 2, "height and width >= 2"),
])
def test_bad_training_data_is_refused_clearly(tmp_path, inputs, labels, message):
    path = tmp_path / "user.npz"
    np.savez(path, inputs=inputs, labels=labels)
    with pytest.raises(ValueError, match="user.npz") as info:
        load_training_npz(path)
    assert message in str(info.value)


def test_bad_training_settings_are_refused():
    with pytest.raises(ValueError, match="epochs = 0 .* >= 1"):
        TrainSettings(epochs=0)


def test_cli_train_json_on_user_data(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.arange(48) % 3
    inputs = rng.random((48, 2, 6, 5)) * 0.2 + labels[:, None, None, None] / 3
    np.savez(tmp_path / "user.npz", inputs=inputs, labels=labels)
    out = tmp_path / "models" / "user.onnx"
    result = CliRunner().invoke(main, ["model", "train", "--data", str(tmp_path / "user.npz"), "--out", str(out),
                                       "--epochs", "2", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(figures) == {"train_accuracy", "test_accuracy", "epochs", "seed", "out", "cpu_s"}
    assert figures["epochs"] == 2 and figures["seed"] == 3 and figures["out"] == str(out)
    assert 0 <= figures["test_accuracy"] <= 1 and figures["cpu_s"] > 0
    model = onnx.load(out)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]] == [2, 6, 5]
    assert initializers(model)["fc.weight"].shape == (3, 32 * 3 * 2)
    assert "epoch 2/2" in result.stderr


def test_cli_train_refuses_an_unwritable_out_before_training(tmp_path):
    (tmp_path / "afile").write_text("")
    result = CliRunner().invoke(main, ["model", "train", "--out", str(tmp_path / "afile" / "m.onnx")])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    assert "epoch" not in result.output


def test_only_training_imports_jax():
    """The default model's module, the data and the CLI load neither JAX nor optax."""
    code = ("import sys, neurophase.network.default_model, neurophase.network.data, neurophase.cli\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'optax'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"pulled in: {out.stdout.strip()}"
