"""Hardware-aware (HWA) fine-tuning of the CNN family of :mod:`neurophase.network.train`, with JAX + optax.

Starts from an ONNX file that ``neurophase model train`` exports (or any ONNX file of the same
operator sequence and shapes, :func:`load_cnn_onnx`) and fine-tunes it with the chip in the
forward pass:

* **Weight noise, one source of truth.** Before every minibatch a time since programming is
  drawn log-uniformly in ``time_range_s`` (1 s to 1 year by default) and every weight tensor
  of the three MVM layers goes through
  :meth:`neurophase.network.weight_noise.ChipWeightNoise.noisy_matrix` — the numpy device model
  of the chip's configuration: integer weights, conductances, programming noise, drift
  exponents, drift to that time, read noise and RTN, back to weights with the global drift
  compensation. The JAX forward pass adds ``noisy - clean`` as a constant
  (``stop_gradient``): the loss is evaluated at the noisy weights, its gradient applied to
  the clean ones (straight through). Weight quantisation is part of that difference.
* **8-bit activations.** The network input, both ReLU outputs (which feed the next MVM) and
  the logits are quantised as the chip does, ``clip(floor(x / s + 1/2))`` with one scale per
  tensor ``s = max |x| / (2**(bits-1) - 1)`` from the clean network on the first 512
  training images (recomputed every epoch), with straight-through gradients.
* **BatchNorm frozen.** Inference-mode BatchNorm (the running statistics of the start model
  stay; scale and shift are trained), so that the fine-tuned network is robust with the
  statistics the chip's batch-norm registers compile from.

Optimiser: AdamW (warm-up, cosine decay) with the training module's weight decay and random
shifts; all randomness (noise, times, minibatches, shifts) from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from neurophase.config import ChipConfig
from neurophase.network import default_model as defaults
from neurophase.network.data import Dataset
from neurophase.network.train import (NODE_TYPES, EpochCallback, TrainedNetwork, TrainSettings, _batch_norm, _channel,
                                      _conv, _shifted, _STAT_NAMES, _DECAYED, check_settings, class_count, image_shape,
                                      onnx_accuracy, save_model, to_onnx)
from neurophase.network.weight_noise import ChipWeightNoise, conv_matrix

__all__ = ["HwaSettings", "NOISY_TENSORS", "QUANTISED_TENSORS", "load_cnn_onnx", "perturbations", "fake_quantise",
           "hwa_train", "hwa_train_and_export", "ArchitectureError"]

#: The weight tensors that sit on crossbar tiles and receive the chip's noise.
NOISY_TENSORS = ("conv1.weight", "conv2.weight", "fc.weight")
#: The activations quantised to the chip's input width (each feeds an MVM or is the output).
QUANTISED_TENSORS = ("input", "relu1", "relu2", "logits")
#: Training images whose clean activations set the quantisation scales (as the mapping does).
SCALE_IMAGES = 512


class ArchitectureError(ValueError):
    """An ONNX model outside the CNN family that HWA fine-tuning supports; the message says why."""


@dataclass(frozen=True)
class HwaSettings:
    """Hyper-parameters of a hardware-aware fine-tuning run.

    Parameters
    ----------
    seed : int
        Seed of the noise draws, the times, the minibatch order and the augmentation.
    epochs : int
        Passes over the training set (>= 1).
    batch_size : int
        Examples per minibatch (>= 1); one noise draw per minibatch.
    learning_rate : float
        Peak AdamW learning rate (> 0).
    weight_decay : float
        AdamW weight decay on the weight tensors (>= 0).
    shift : int
        Largest random shift of a training image per axis, pixels (>= 0).
    time_range_s : (float, float)
        Times since programming drawn log-uniformly per minibatch, s (0 < low <= high).
    """

    seed: int = defaults.HWA_SEED
    epochs: int = defaults.HWA_EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    learning_rate: float = defaults.HWA_LEARNING_RATE
    weight_decay: float = defaults.WEIGHT_DECAY
    shift: int = defaults.SHIFT_AUGMENT
    time_range_s: tuple = defaults.HWA_TIME_RANGE_S

    def __post_init__(self):
        low, high = self.time_range_s
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("shift", self.shift >= 0, ">= 0"),
            ("time_range_s", 0 < low <= high and np.isfinite(high), "two finite times with 0 < low <= high"),
        ]
        check_settings(self, "HWA setting", checks)

    def draw_time(self, rng: np.random.Generator) -> float:
        """A time since programming, log-uniform in ``time_range_s``."""
        low, high = np.log(self.time_range_s)
        return float(np.exp(rng.uniform(low, high)))


# -- the supported architecture ------------------------------------------------------------------
def load_cnn_onnx(path: str | Path) -> TrainedNetwork:
    """The tensors of an ONNX model of the :mod:`neurophase.network.train` CNN family.

    Accepted: the operator sequence ``Conv, BatchNormalization, Relu, Conv, BatchNormalization,
    Relu, MaxPool, Flatten, Gemm`` as one chain from the single input to the single output, 3x3
    convolutions with padding 1 and stride 1 (bias optional; a second-convolution bias is
    folded into the BatchNorm mean), a 2x2 / stride 2 max pooling, Flatten(axis 1), a Gemm with
    ``transB = 1``, one BatchNorm epsilon and consistent shapes.

    Raises
    ------
    ArchitectureError
        Naming the file, what differs and the supported family.
    """
    from onnx import helper, numpy_helper

    from neurophase.network.onnx_import import read_onnx_model

    path = Path(path)
    model = read_onnx_model(path, ArchitectureError)

    def refuse(detail: str):
        raise ArchitectureError(
            f"{path.name}: {detail}; hardware-aware training supports only the CNN family that 'neurophase model "
            f"train' exports ({', '.join(NODE_TYPES)}: 3x3 convolutions with padding 1, 2x2 max pooling, Gemm)")

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
    ops = tuple(node.op_type for node in graph.node)
    if ops != NODE_TYPES:
        refuse(f"its operators are {', '.join(ops) or 'none'}")
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        refuse(f"it has {len(inputs)} input(s) and {len(graph.output)} output(s), not one each")
    previous = inputs[0].name
    for node in graph.node:
        if node.input[0] != previous:
            refuse(f"node {node.name or node.op_type!r} does not read the previous node's output (not one chain)")
        missing = [name for name in node.input[1:] if name and name not in constants]
        if missing:
            refuse(f"node {node.name or node.op_type!r} has computed (non-constant) parameters {missing}")
        previous = node.output[0]
    if graph.output[0].name != previous:
        refuse("the graph's output is not the Gemm's output")
    conv1, bn1, _, conv2, bn2, _, pool, flatten, gemm = graph.node
    attrs = {id(node): {a.name: helper.get_attribute_value(a) for a in node.attribute} for node in graph.node}

    def attr(node, name, default):
        return attrs[id(node)].get(name, default)

    for conv in (conv1, conv2):
        if (list(attr(conv, "pads", [1, 1, 1, 1])) != [1, 1, 1, 1] or list(attr(conv, "strides", [1, 1])) != [1, 1]
                or attr(conv, "group", 1) != 1 or list(attr(conv, "dilations", [1, 1])) != [1, 1]
                or attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            refuse(f"convolution {conv.name!r} is not a 3x3 convolution with padding 1, stride 1, group 1")
    if list(attr(pool, "kernel_shape", [])) != [2, 2] or list(attr(pool, "strides", [1, 1])) != [2, 2] \
            or any(attr(pool, "pads", [0, 0, 0, 0])) or attr(pool, "ceil_mode", 0):
        refuse(f"max pooling {pool.name!r} is not 2x2 with stride 2 and no padding")
    if attr(flatten, "axis", 1) != 1:
        refuse(f"flatten {flatten.name!r} has axis {attr(flatten, 'axis', 1)}, not 1")
    if attr(gemm, "transB", 0) != 1 or attr(gemm, "transA", 0) or attr(gemm, "alpha", 1.0) != 1.0 \
            or attr(gemm, "beta", 1.0) != 1.0 or len(gemm.input) != 3:
        refuse(f"Gemm {gemm.name!r} must have transB = 1, no transA, alpha = beta = 1 and a bias")
    epsilons = {float(attr(bn, "epsilon", 1e-5)) for bn in (bn1, bn2)}
    if len(epsilons) != 1:
        refuse(f"its BatchNormalization nodes use different epsilons {sorted(epsilons)}")

    tensors = {"conv1.weight": constants[conv1.input[1]], "conv2.weight": constants[conv2.input[1]],
               "fc.weight": constants[gemm.input[1]], "fc.bias": constants[gemm.input[2]]}
    c1, c2 = tensors["conv1.weight"].shape[0], tensors["conv2.weight"].shape[0]
    has_bias = len(conv1.input) > 2 and conv1.input[2]
    tensors["conv1.bias"] = constants[conv1.input[2]] if has_bias else np.zeros(c1, np.float32)
    for bn, name in ((bn1, "bn1"), (bn2, "bn2")):
        for slot, part in enumerate(("scale", "bias", "mean", "var"), start=1):
            tensors[f"{name}.{part}"] = constants[bn.input[slot]]
    if len(conv2.input) > 2 and conv2.input[2]:
        tensors["bn2.mean"] = tensors["bn2.mean"] - constants[conv2.input[2]]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]):
        refuse(f"its input has shape {dims}, not (batch, channels, height, width) with fixed sizes")
    channels, height, width = dims[1:]
    classes = tensors["fc.weight"].shape[0]
    expected = {"conv1.weight": (c1, channels, 3, 3), "conv1.bias": (c1,), "conv2.weight": (c2, c1, 3, 3),
                "fc.weight": (classes, c2 * (height // 2) * (width // 2)), "fc.bias": (classes,),
                **{f"bn1.{p}": (c1,) for p in ("scale", "bias", "mean", "var")},
                **{f"bn2.{p}": (c2,) for p in ("scale", "bias", "mean", "var")}}
    for name, shape in expected.items():
        if tensors[name].shape != shape:
            refuse(f"tensor {name} has shape {tensors[name].shape}, the architecture needs {shape}")
    settings = TrainSettings(bn_epsilon=epsilons.pop())
    return TrainedNetwork({k: np.asarray(tensors[k], np.float32) for k in expected}, (channels, height, width),
                          classes, settings, data_name=path.name)


# -- noise and quantisation ------------------------------------------------------------------------
def perturbations(noise: ChipWeightNoise, tensors: dict, t_s: float, rng: np.random.Generator) -> dict:
    """``noisy - clean`` of every tensor of :data:`NOISY_TENSORS`, drawn by ``noise`` at ``t_s`` (float32)."""
    deltas = {}
    for name in NOISY_TENSORS:
        weight = np.asarray(tensors[name], np.float64)
        noisy = noise.noisy_matrix(conv_matrix(weight), t_s, rng).T.reshape(weight.shape)
        deltas[name] = (noisy - weight).astype(np.float32)
    return deltas


def fake_quantise(x, scale, bits: int):
    """``clip(floor(x / scale + 1/2)) * scale`` to ``bits``-bit two's complement, straight-through gradient."""
    top = 2 ** (bits - 1)
    q = jnp.clip(jnp.floor(x / scale + 0.5), -top, top - 1) * scale
    return x + jax.lax.stop_gradient(q - x)


def _forward(params, stats, deltas, scales, x, epsilon, bits):
    """Inference-mode forward pass with weight perturbations and fake-quantised activations."""
    def weight(name):
        return params[name] + jax.lax.stop_gradient(deltas[name])

    def quantise(v, name):
        return v if scales is None else fake_quantise(v, scales[name], bits)

    h = quantise(x, "input")
    h = _conv(h, weight("conv1.weight")) + _channel(params["conv1.bias"])
    h, _ = _batch_norm(h, params, stats, "bn1", False, 0.0, epsilon)
    h = quantise(jax.nn.relu(h), "relu1")
    h = _conv(h, weight("conv2.weight"))
    h, _ = _batch_norm(h, params, stats, "bn2", False, 0.0, epsilon)
    h = quantise(jax.nn.relu(h), "relu2")
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = h.reshape(h.shape[0], -1)
    return quantise(h @ weight("fc.weight").T + params["fc.bias"], "logits")


def _clean_peaks(params, stats, x, epsilon):
    h = _conv(x, params["conv1.weight"]) + _channel(params["conv1.bias"])
    relu1 = jax.nn.relu(_batch_norm(h, params, stats, "bn1", False, 0.0, epsilon)[0])
    relu2 = jax.nn.relu(_batch_norm(_conv(relu1, params["conv2.weight"]), params, stats, "bn2", False, 0.0,
                                    epsilon)[0])
    pooled = jax.lax.reduce_window(relu2, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    logits = pooled.reshape(pooled.shape[0], -1) @ params["fc.weight"].T + params["fc.bias"]
    return {name: jnp.max(jnp.abs(v)) for name, v in zip(QUANTISED_TENSORS, (x, relu1, relu2, logits))}


def _scales(peaks_fn, params, stats, images, bits) -> dict:
    top = 2 ** (bits - 1) - 1
    return {name: jnp.where(peak > 0, peak / top, 1.0) for name, peak in peaks_fn(params, stats, images).items()}


# -- training ------------------------------------------------------------------------------------------
def hwa_train(start: TrainedNetwork, data: Dataset, cfg: ChipConfig, settings: HwaSettings = HwaSettings(),
              on_epoch: EpochCallback | None = None) -> TrainedNetwork:
    """Fine-tune ``start`` on ``data`` with the chip of ``cfg`` in the forward pass.

    Parameters
    ----------
    start : TrainedNetwork
        The network to start from (:func:`load_cnn_onnx` or :func:`neurophase.network.train.train`).
    data : Dataset
        Training images (N, C, H, W) of the network's input shape, integer labels below its class count.
    cfg : ChipConfig
        Chip whose device preset, mapping, noise switches and GDC the noise follows; its
        ``input.bits`` is the activation width.
    settings : HwaSettings
    on_epoch : callable, optional
        ``on_epoch(epoch, epochs, loss, batch_accuracy)`` after every epoch.

    Returns
    -------
    TrainedNetwork
        Same architecture and BatchNorm statistics, fine-tuned weights, ``history`` of the run.
    """
    if image_shape(data) != tuple(start.input_shape):
        raise ValueError(f"{data.name}: images of shape {data.inputs.shape[1:]} do not fit the network's input "
                         f"{tuple(start.input_shape)}")
    if class_count(data) > start.classes:
        raise ValueError(f"{data.name}: labels up to {class_count(data) - 1} do not fit the network's "
                         f"{start.classes} outputs")
    bits, epsilon = cfg.input.bits, start.settings.bn_epsilon
    noise = ChipWeightNoise(cfg)
    rng = np.random.default_rng(settings.seed)
    params = {k: jnp.asarray(v) for k, v in start.tensors.items() if k not in _STAT_NAMES}
    stats = {k: jnp.asarray(v) for k, v in start.tensors.items() if k in _STAT_NAMES}
    batch = min(settings.batch_size, len(data))
    steps = len(data) // batch
    total = steps * settings.epochs
    schedule = optax.warmup_cosine_decay_schedule(0.0, settings.learning_rate, warmup_steps=min(steps, total // 2),
                                                  decay_steps=total, end_value=0.0)
    optimizer = optax.adamw(schedule, weight_decay=settings.weight_decay, mask={k: k in _DECAYED for k in params})
    opt_state = optimizer.init(params)
    peaks = jax.jit(lambda p, s, x: _clean_peaks(p, s, x, epsilon))
    scale_images = jnp.asarray(data.inputs[:SCALE_IMAGES], jnp.float32)

    def loss(params, deltas, scales, x, y):
        logits = _forward(params, stats, deltas, scales, x, epsilon, bits)
        hits = jnp.sum(jnp.argmax(logits, axis=1) == y)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), hits

    @jax.jit
    def step(params, opt_state, deltas, scales, x, y):
        (value, hits), grads = jax.value_and_grad(loss, has_aux=True)(params, deltas, scales, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, hits

    history = []
    for epoch in range(1, settings.epochs + 1):
        scales = _scales(peaks, params, stats, scale_images, bits)
        order = rng.permutation(len(data))[:steps * batch]
        shifts = rng.integers(-settings.shift, settings.shift + 1, size=(order.size, 2))
        xs = _shifted(data.inputs[order], shifts, settings.shift).reshape(steps, batch, *start.input_shape)
        ys = data.labels[order].astype(np.int32).reshape(steps, batch)
        losses, correct = [], []
        for x, y in zip(xs, ys):
            clean = {name: np.asarray(params[name]) for name in NOISY_TENSORS}
            deltas = perturbations(noise, clean, settings.draw_time(rng), rng)
            params, opt_state, value, hits = step(params, opt_state, deltas, scales, x, y)
            losses.append(value)
            correct.append(hits)
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "batch_accuracy": float(np.sum(correct)) / order.size}
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, settings.epochs, record["loss"], record["batch_accuracy"])
    tensors = {k: np.asarray(v, np.float32) for k, v in {**params, **stats}.items()}
    return TrainedNetwork({k: tensors[k] for k in start.tensors}, start.input_shape, start.classes,
                          replace(start.settings, seed=settings.seed, epochs=settings.epochs,
                                  learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
                                  shift=settings.shift), data.name, history)


def to_hwa_onnx(network: TrainedNetwork, settings: HwaSettings, cfg: ChipConfig, start_name: str):
    """The fine-tuned network as ONNX (the plain training's format) with the HWA settings in its metadata."""
    model = to_onnx(network)
    model.doc_string = "NeuroPhase CNN, hardware-aware fine-tuned with JAX + optax (neurophase model train --hwa)"
    extra = {"hwa": "true", "hwa_start_model": start_name, "hwa_device_preset": cfg.device.preset,
             **{f"hwa_{k}": repr(v) for k, v in asdict(settings).items()}}
    for key, value in extra.items():
        model.metadata_props.add(key=key, value=value)
    return model


def hwa_train_and_export(start_path: str | Path, train_set: Dataset, test_set: Dataset, cfg: ChipConfig,
                         out: str | Path, settings: HwaSettings = HwaSettings(),
                         on_epoch: EpochCallback | None = None) -> dict:
    """Load ``start_path`` (:func:`load_cnn_onnx`), fine-tune (:func:`hwa_train`), write ``out`` atomically.

    Returns
    -------
    dict
        ``train_accuracy``, ``test_accuracy`` (the written file through onnxruntime),
        ``start_test_accuracy`` (the start file), ``epochs``, ``seed``, ``out``, ``start_model``,
        ``device_preset``, ``time_range_s``, ``hwa`` (True) and ``cpu_s`` (process CPU seconds of
        the fine-tuning, JIT compilation included).
    """
    start = load_cnn_onnx(start_path)
    began = time.process_time()
    network = hwa_train(start, train_set, cfg, settings, on_epoch)
    cpu_s = time.process_time() - began
    path = save_model(to_hwa_onnx(network, settings, cfg, Path(start_path).name), out)
    return {"hwa": True, "train_accuracy": onnx_accuracy(path, train_set),
            "test_accuracy": onnx_accuracy(path, test_set), "start_test_accuracy": onnx_accuracy(start_path, test_set),
            "epochs": settings.epochs, "seed": settings.seed, "out": str(path), "start_model": str(start_path),
            "device_preset": cfg.device.preset, "time_range_s": list(settings.time_range_s),
            "cpu_s": round(cpu_s, 2)}
