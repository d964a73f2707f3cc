"""Training of the default CNN with JAX + optax, its export to ONNX, its accuracy through onnxruntime.

The only module of the network flow that imports JAX; nothing imports it but the training
command of the CLI (lazily) and its tests.

Architecture (input ``(N, C, H, W)`` images, ``K`` classes; the default digits: C = 1,
H = W = 8, K = 10)::

    conv1    Conv 3x3, C -> 16, pad 1, stride 1, bias     (N, 16, H, W)
    bn1      BatchNormalization (running mean and variance)
    relu1    Relu
    conv2    Conv 3x3, 16 -> 32, pad 1, stride 1, no bias  (N, 32, H, W)
    bn2      BatchNormalization
    relu2    Relu
    pool     MaxPool 2x2, stride 2 (floor)                 (N, 32, H // 2, W // 2)
    flatten  Flatten (axis 1, channel-major)               (N, 32 * (H // 2) * (W // 2))
    fc       Gemm, transB = 1, bias                        logits (N, K)

For the digits the flattened length is 32 * 4 * 4 = 512, on purpose larger than a 256-row
tile, so that the last layer must be split across tiles. A BatchNormalization follows each
convolution and cancels a constant per channel, so a convolution bias adds nothing there: the
second convolution has none; the first keeps one so that the importer meets a Conv with a
bias (the running mean of bn1 absorbs whatever value it takes).

Training: weights initialised from ``numpy.random.default_rng(seed)`` (He normal for the
convolutions, LeCun normal for the Gemm), AdamW with a warm-up and cosine decay of the
learning rate, shuffled minibatches from the same generator, random shifts of up to
:data:`~neurophase.network.default_model.SHIFT_AUGMENT` pixel per axis, softmax cross
entropy. BatchNorm normalises with the batch statistics while training and keeps running
averages, which inference and the exported BatchNormalization nodes use. Same data, same
settings, same seed: same weights.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurophase.network import default_model as defaults
from neurophase.network.data import SPLIT_SEED, TEST_FRACTION, Dataset

__all__ = [
    "TrainSettings", "TrainedNetwork", "image_shape", "class_count", "holdout_split", "load_training_npz", "train",
    "to_onnx", "save_onnx", "save_model", "onnx_logits", "onnx_accuracy", "train_and_export", "NODE_TYPES",
]

#: Operator types of the exported graph, in order.
NODE_TYPES = ("Conv", "BatchNormalization", "Relu", "Conv", "BatchNormalization", "Relu",
              "MaxPool", "Flatten", "Gemm")

EpochCallback = Callable[[int, int, float, float], None]


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of a training run (defaults: :mod:`neurophase.network.default_model`).

    Parameters
    ----------
    seed : int
        Seed of the initialisation, the minibatch order and the augmentation.
    epochs : int
        Passes over the training set (>= 1).
    batch_size : int
        Examples per minibatch (>= 1; capped at the training set size).
    learning_rate : float
        Peak AdamW learning rate (> 0).
    weight_decay : float
        Decoupled AdamW weight decay on the weight tensors (>= 0).
    bn_momentum : float
        Factor of the old value in the BatchNorm running averages (0 <= m < 1).
    bn_epsilon : float
        BatchNorm epsilon (> 0).
    shift : int
        Largest random shift of a training image per axis, pixels (>= 0; 0: no augmentation).
    """

    seed: int = defaults.DEFAULT_SEED
    epochs: int = defaults.DEFAULT_EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    learning_rate: float = defaults.LEARNING_RATE
    weight_decay: float = defaults.WEIGHT_DECAY
    bn_momentum: float = defaults.BN_MOMENTUM
    bn_epsilon: float = defaults.BN_EPSILON
    shift: int = defaults.SHIFT_AUGMENT

    def __post_init__(self):
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("bn_momentum", 0 <= self.bn_momentum < 1, "in [0, 1)"),
            ("bn_epsilon", self.bn_epsilon > 0, "> 0"),
            ("shift", self.shift >= 0, ">= 0"),
        ]
        check_settings(self, "training setting", checks)


def check_settings(settings, what: str, checks: list) -> None:
    """Raise for the first ``(name, ok, allowed)`` of ``checks`` that is not ok, naming the setting,
    its value and what is allowed."""
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"{what} {name} = {getattr(settings, name)!r} is not allowed; it must be {allowed}")


@dataclass
class TrainedNetwork:
    """The trained weights and BatchNorm running statistics, as float32 numpy arrays.

    Parameters
    ----------
    tensors : dict of str to ndarray
        ``conv1.weight`` (16, C, 3, 3), ``conv1.bias``, ``bn1.scale``, ``bn1.bias``,
        ``bn1.mean``, ``bn1.var``, ``conv2.weight`` (32, 16, 3, 3), ``bn2.*``,
        ``fc.weight`` (K, 32 * (H // 2) * (W // 2)), ``fc.bias``.
    input_shape : tuple of int
        (C, H, W) of one input image.
    classes : int
        Number of outputs K.
    settings : TrainSettings
    data_name : str
        Name of the training data set.
    history : list of dict
        Per epoch: ``epoch``, ``loss`` and ``batch_accuracy`` (training mode, augmented).
    """

    tensors: dict[str, np.ndarray]
    input_shape: tuple[int, int, int]
    classes: int
    settings: TrainSettings
    data_name: str = "data"
    history: list[dict] = field(default_factory=list)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Inference logits (running BatchNorm statistics) of ``inputs`` (N, C, H, W), computed by JAX."""
        params = {k: jnp.asarray(v) for k, v in self.tensors.items() if k not in _STAT_NAMES}
        stats = {k: jnp.asarray(v) for k, v in self.tensors.items() if k in _STAT_NAMES}
        logits, _ = _forward(params, stats, jnp.asarray(inputs, jnp.float32), False,
                             self.settings.bn_momentum, self.settings.bn_epsilon)
        return np.asarray(logits)


_STAT_NAMES = ("bn1.mean", "bn1.var", "bn2.mean", "bn2.var")
_DECAYED = ("conv1.weight", "conv2.weight", "fc.weight")


def image_shape(dataset: Dataset) -> tuple[int, int, int]:
    """(C, H, W) of the images of ``dataset``; a clear error for anything but (N, C, H, W) images."""
    shape = dataset.inputs.shape
    if len(shape) != 4:
        hint = " (add a channel axis: inputs[:, None])" if len(shape) == 3 else ""
        raise ValueError(f"{dataset.name}: inputs must be images shaped (N, channels, height, width) to train the "
                         f"CNN, not shape {shape}{hint}")
    _, channels, height, width = shape
    if channels < 1 or height < 2 or width < 2:
        raise ValueError(f"{dataset.name}: images of shape (channels, height, width) = {shape[1:]} are too small; "
                         f"the 2x2 max pooling needs height and width >= 2 and at least one channel")
    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: no examples to train on")
    return int(channels), int(height), int(width)


def class_count(dataset: Dataset) -> int:
    """Number of classes, ``max(labels) + 1``; at least two classes must occur."""
    present = np.unique(dataset.labels)
    if present.size < 2:
        raise ValueError(f"{dataset.name}: labels must contain at least 2 classes, found {present.tolist()}")
    return int(present[-1]) + 1


def holdout_split(dataset: Dataset, fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> tuple[Dataset, Dataset]:
    """Fixed (train, test) split of a user's data set, stratified when every class allows it.

    Parameters
    ----------
    dataset : Dataset
    fraction : float
        Share of the examples held out for the test set, in (0, 1).
    seed : int
        Seed of the split (the digits' split seed by default).

    Returns
    -------
    tuple of Dataset
        ``(train, test)``, named ``<name>-train`` and ``<name>-test``.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise ValueError(f"test fraction = {fraction!r} is not allowed; it must be in (0, 1)")
    count = len(dataset)
    test_count = int(np.ceil(fraction * count))
    if count < 2 or test_count >= count:
        raise ValueError(f"{dataset.name}: {count} example(s) are too few to hold out {fraction:.0%} for a test set")
    _, per_class = np.unique(dataset.labels, return_counts=True)
    stratify = dataset.labels if per_class.min() >= 2 and test_count >= per_class.size else None
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.inputs, dataset.labels, test_size=fraction, random_state=seed, stratify=stratify)
    return Dataset(x_train, y_train, f"{dataset.name}-train"), Dataset(x_test, y_test, f"{dataset.name}-test")


def load_training_npz(path: str | Path) -> tuple[Dataset, Dataset, int]:
    """A user's ``.npz`` checked for training and split: ``(train, test, classes)``.

    The inputs must be (N, C, H, W) images with at least two classes among the labels; the
    split is :func:`holdout_split`'s fixed 25 % and ``classes`` counts the whole file's labels.
    """
    from neurophase.network.data import load_npz

    data = load_npz(path)
    image_shape(data)
    classes = class_count(data)
    train_set, test_set = holdout_split(data)
    return train_set, test_set, classes


def _initial_tensors(rng: np.random.Generator, input_shape: tuple[int, int, int], classes: int) -> dict[str, np.ndarray]:
    channels, height, width = input_shape
    c1, c2 = defaults.CONV1_CHANNELS, defaults.CONV2_CHANNELS
    flat = c2 * (height // 2) * (width // 2)

    def normal(shape, fan_in, gain):
        return (rng.standard_normal(shape) * np.sqrt(gain / fan_in)).astype(np.float32)

    return {
        "conv1.weight": normal((c1, channels, 3, 3), channels * 9, 2.0),
        "conv1.bias": np.zeros(c1, np.float32),
        "bn1.scale": np.ones(c1, np.float32), "bn1.bias": np.zeros(c1, np.float32),
        "bn1.mean": np.zeros(c1, np.float32), "bn1.var": np.ones(c1, np.float32),
        "conv2.weight": normal((c2, c1, 3, 3), c1 * 9, 2.0),
        "bn2.scale": np.ones(c2, np.float32), "bn2.bias": np.zeros(c2, np.float32),
        "bn2.mean": np.zeros(c2, np.float32), "bn2.var": np.ones(c2, np.float32),
        "fc.weight": normal((classes, flat), flat, 1.0),
        "fc.bias": np.zeros(classes, np.float32),
    }


def _channel(v):
    return v[None, :, None, None]


def _conv(x, weight):
    return jax.lax.conv_general_dilated(x, weight, window_strides=(1, 1), padding=((1, 1), (1, 1)),
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))


def _batch_norm(x, params, stats, name, train, momentum, epsilon):
    if train:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        stats = {**stats,
                 f"{name}.mean": momentum * stats[f"{name}.mean"] + (1 - momentum) * jax.lax.stop_gradient(mean),
                 f"{name}.var": momentum * stats[f"{name}.var"] + (1 - momentum) * jax.lax.stop_gradient(var)}
    else:
        mean, var = stats[f"{name}.mean"], stats[f"{name}.var"]
    scale = params[f"{name}.scale"] / jnp.sqrt(var + epsilon)
    return (x - _channel(mean)) * _channel(scale) + _channel(params[f"{name}.bias"]), stats


def _forward(params, stats, x, train, momentum, epsilon):
    h = _conv(x, params["conv1.weight"]) + _channel(params["conv1.bias"])
    h, stats = _batch_norm(h, params, stats, "bn1", train, momentum, epsilon)
    h = jax.nn.relu(h)
    h = _conv(h, params["conv2.weight"])
    h, stats = _batch_norm(h, params, stats, "bn2", train, momentum, epsilon)
    h = jax.nn.relu(h)
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = h.reshape(h.shape[0], -1)
    return h @ params["fc.weight"].T + params["fc.bias"], stats


def _shifted(images: np.ndarray, shifts: np.ndarray, limit: int) -> np.ndarray:
    """Each image moved by its (dy, dx) in ``shifts``, zero filled."""
    if limit == 0:
        return images
    _, _, height, width = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (limit, limit), (limit, limit)))
    out = np.empty_like(images)
    for dy in range(-limit, limit + 1):
        for dx in range(-limit, limit + 1):
            chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[chosen] = padded[chosen, :, limit - dy:limit - dy + height, limit - dx:limit - dx + width]
    return out


def _step_function(optimizer, momentum, epsilon):
    def loss(params, stats, x, y):
        logits, stats = _forward(params, stats, x, True, momentum, epsilon)
        correct = jnp.sum(jnp.argmax(logits, axis=1) == y)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (stats, correct)

    # One jitted step called from Python: on the CPU, XLA runs the convolutions about ten
    # times slower inside a lax.scan loop than at the top level of a computation.
    @jax.jit
    def step(params, stats, opt_state, x, y):
        (value, (stats, correct)), grads = jax.value_and_grad(loss, has_aux=True)(params, stats, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, value, correct

    return step


def train(data: Dataset, settings: TrainSettings = TrainSettings(), on_epoch: EpochCallback | None = None,
          classes: int | None = None) -> TrainedNetwork:
    """Train the CNN on ``data`` (images (N, C, H, W), integer labels).

    Parameters
    ----------
    data : Dataset
        Training set.
    settings : TrainSettings
        Hyper-parameters and seed.
    on_epoch : callable, optional
        Called after every epoch as ``on_epoch(epoch, epochs, loss, batch_accuracy)`` (epoch from 1).
    classes : int, optional
        Number of outputs; ``max(labels) + 1`` of ``data`` when None (give it when a class may
        be missing from the training part of a split).

    Returns
    -------
    TrainedNetwork
    """
    input_shape = image_shape(data)
    least = class_count(data)
    if classes is None:
        classes = least
    elif classes < least:
        raise ValueError(f"classes = {classes} is not allowed: {data.name} has labels up to {least - 1}, so at least {least}")
    rng = np.random.default_rng(settings.seed)
    tensors = _initial_tensors(rng, input_shape, classes)
    params = {k: jnp.asarray(v) for k, v in tensors.items() if k not in _STAT_NAMES}
    stats = {k: jnp.asarray(v) for k, v in tensors.items() if k in _STAT_NAMES}

    batch = min(settings.batch_size, len(data))
    steps = len(data) // batch
    total_steps = steps * settings.epochs
    schedule = optax.warmup_cosine_decay_schedule(0.0, settings.learning_rate, warmup_steps=min(steps, total_steps // 2),
                                                  decay_steps=total_steps, end_value=0.0)
    optimizer = optax.adamw(schedule, weight_decay=settings.weight_decay,
                            mask={k: k in _DECAYED for k in params})
    step = _step_function(optimizer, settings.bn_momentum, settings.bn_epsilon)
    opt_state = optimizer.init(params)

    history = []
    for epoch in range(1, settings.epochs + 1):
        order = rng.permutation(len(data))[:steps * batch]
        shifts = rng.integers(-settings.shift, settings.shift + 1, size=(order.size, 2))
        xs = _shifted(data.inputs[order], shifts, settings.shift).reshape(steps, batch, *input_shape)
        ys = data.labels[order].astype(np.int32).reshape(steps, batch)
        losses, correct = [], []
        for x, y in zip(xs, ys):
            params, stats, opt_state, value, hits = step(params, stats, opt_state, x, y)
            losses.append(value)
            correct.append(hits)
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "batch_accuracy": float(np.sum(correct)) / order.size}
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, settings.epochs, record["loss"], record["batch_accuracy"])

    trained = {k: np.asarray(v, np.float32) for k, v in {**params, **stats}.items()}
    return TrainedNetwork({k: trained[k] for k in tensors}, input_shape, classes, settings, data.name, history)


def to_onnx(network: TrainedNetwork):
    """The network as an ONNX model (opset 17, IR 8): input ``input`` (batch, C, H, W), output ``logits``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    t = network.tensors
    eps = network.settings.bn_epsilon
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["conv1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["bn1"],
                         name="bn1", epsilon=eps),
        helper.make_node("Relu", ["bn1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "conv2.weight"], ["conv2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["conv2", "bn2.scale", "bn2.bias", "bn2.mean", "bn2.var"], ["bn2"],
                         name="bn2", epsilon=eps),
        helper.make_node("Relu", ["bn2"], ["relu2"], name="relu2"),
        helper.make_node("MaxPool", ["relu2"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flatten"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flatten", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    initializers = [numpy_helper.from_array(np.ascontiguousarray(t[name], np.float32), name) for name in t]
    graph = helper.make_graph(
        nodes, "neurophase_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *network.input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", network.classes])],
        initializer=initializers)
    model = helper.make_model(graph, producer_name="neurophase", opset_imports=[helper.make_opsetid("", defaults.OPSET)],
                              doc_string="NeuroPhase CNN trained with JAX + optax (neurophase model train)")
    model.ir_version = 8
    settings = asdict(network.settings)
    helper.set_model_props(model, {"data": network.data_name, **{k: repr(v) for k, v in settings.items()}})
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(network: TrainedNetwork, path: str | Path) -> Path:
    """Write the network's ONNX file atomically (temporary file in the same folder, then rename)."""
    return save_model(to_onnx(network), path)


def save_model(model, path: str | Path) -> Path:
    """Write an ONNX ``ModelProto`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    data = model.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # plain open: the usual umask permissions
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    source = str(source) if isinstance(source, Path) else source
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_logits(model, inputs: np.ndarray) -> np.ndarray:
    """Outputs of an ONNX model (path, bytes or ``ModelProto``) on ``inputs``, by onnxruntime on one CPU thread."""
    session = _session(model)
    declared = session.get_inputs()[0]
    inputs = np.asarray(inputs, np.float32)
    expected = tuple(declared.shape[1:])
    if inputs.ndim != len(declared.shape) or any(isinstance(d, int) and d != s for d, s in zip(expected, inputs.shape[1:])):
        raise ValueError(f"inputs of shape {inputs.shape} do not fit the model's input '{declared.name}' of shape "
                         f"{tuple(declared.shape)}")
    return session.run(None, {declared.name: inputs})[0]


def onnx_accuracy(model, dataset: Dataset) -> float:
    """Share of ``dataset`` whose label is the arg-max of the ONNX model's output (onnxruntime, CPU)."""
    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: no examples to evaluate")
    return float(np.mean(np.argmax(onnx_logits(model, dataset.inputs), axis=1) == dataset.labels))


def train_and_export(train_set: Dataset, test_set: Dataset, out: str | Path, settings: TrainSettings = TrainSettings(),
                     on_epoch: EpochCallback | None = None, classes: int | None = None) -> dict:
    """Train (see :func:`train`), write the ONNX file to ``out`` and measure it through onnxruntime.

    Returns
    -------
    dict
        ``train_accuracy`` and ``test_accuracy`` (of the written file), ``epochs``, ``seed``,
        ``out`` (path as a string) and ``cpu_s`` (process CPU seconds of the training alone,
        all threads, JIT compilation included).
    """
    start = time.process_time()
    network = train(train_set, settings, on_epoch, classes)
    cpu_s = time.process_time() - start
    path = save_onnx(network, out)
    return {"train_accuracy": onnx_accuracy(path, train_set), "test_accuracy": onnx_accuracy(path, test_set),
            "epochs": settings.epochs, "seed": settings.seed, "out": str(path), "cpu_s": round(cpu_s, 2)}
