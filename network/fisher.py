"""Diagonal (empirical) Fisher information of the MVM weights of a float network, numpy only.

For labelled examples (x_n, y_n) the Fisher information of weight w is estimated as

    F(w) = 1/N sum_n (d log p(y_n | x_n) / dw)**2,   p = softmax(network output),

with the per-example gradient (squared before averaging). The gradients come from a float64
backward pass through the graph of :mod:`neurophase.network.graph`: softmax cross-entropy,
dense and convolutional (im2col) layers with their affine map and ReLU, max, average and
global-average pooling, residual add, separate ReLU and flatten. Gradients are returned in
the crossbar's matrix layout (K inputs in im2col order, N outputs), like ``Mvm.matrix``.
"""

from __future__ import annotations

import numpy as np

from neurophase.network.graph import Add, Flatten, Mvm, Network, Pool, Relu, im2col, pool_windows

__all__ = ["forward64", "log_likelihood", "weight_gradients", "fisher_information"]

#: Examples per backward pass (bounds the memory of the per-example weight gradients).
CHUNK_EXAMPLES = 32


def _check_labels(network: Network, inputs, labels) -> tuple[np.ndarray, np.ndarray]:
    x = network.check_inputs(inputs).astype(np.float64)
    y = np.asarray(labels)
    classes = int(np.prod(network.shapes[network.output_name]))
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or
                                                                                    y.max() >= classes)):
        raise ValueError(f"labels must be {len(x)} integers in [0, {classes}) (one per input), not "
                         f"{y.dtype} of shape {y.shape}")
    return x, y.astype(np.int64)


def _patches(layer: Mvm, x: np.ndarray) -> np.ndarray:
    """The layer's input rows: (N, K) for dense layers, (N, Ho, Wo, K) for convolutions."""
    return im2col(x, layer.kernel, layer.stride, layer.pads) if layer.kind == "conv" else x


def forward64(network: Network, x: np.ndarray) -> dict:
    """Float64 inference keeping every tensor; an MVM layer's pre-ReLU value under ``"<name>:z"``."""
    tensors = {network.input_name: x}
    for layer in network.layers:
        inputs = [tensors[name] for name in layer.inputs]
        if isinstance(layer, Mvm):
            z = _patches(layer, inputs[0]) @ layer.matrix * layer.scale + layer.shift
            z = z.transpose(0, 3, 1, 2) if layer.kind == "conv" else z
            tensors[f"{layer.name}:z"] = z
            out = np.maximum(z, 0) if layer.relu else z
        elif isinstance(layer, Pool):
            out = _pool(layer, inputs[0])
        elif isinstance(layer, Add):
            out = inputs[0] + inputs[1]
        elif isinstance(layer, Relu):
            out = np.maximum(inputs[0], 0)
        else:
            out = inputs[0].reshape(len(inputs[0]), -1)
        tensors[layer.output] = out
    return tensors


def _pool(layer: Pool, x: np.ndarray) -> np.ndarray:
    if layer.kind == "global-avg":
        return x.mean(axis=(2, 3), keepdims=True)
    if layer.kind == "max":
        return pool_windows(x, layer, -np.inf).max(axis=-1)
    return pool_windows(x, layer, 0.0).mean(axis=-1)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_likelihood(network: Network, inputs, labels) -> np.ndarray:
    """log p(y_n | x_n) of every example (float64, shape (N,))."""
    x, y = _check_labels(network, inputs, labels)
    logits = forward64(network, x)[network.output_name].reshape(len(x), -1)
    return _log_softmax(logits)[np.arange(len(x)), y]


def _scatter_windows(grad_windows: np.ndarray, shape: tuple, kernel: tuple, stride: tuple, pads: tuple) -> np.ndarray:
    """Adjoint of window extraction: ``grad_windows`` (N, C, Ho, Wo, kh, kw) summed back onto
    the input (N, C, H, W) (padding cropped)."""
    n, c, h, w = shape
    top, left, bottom, right = pads
    padded = np.zeros((n, c, h + top + bottom, w + left + right))
    ho, wo = grad_windows.shape[2:4]
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            padded[:, :, i:i + stride[0] * (ho - 1) + 1:stride[0], j:j + stride[1] * (wo - 1) + 1:stride[1]] += \
                grad_windows[:, :, :, :, i, j]
    return padded[:, :, top:top + h, left:left + w]


def _mvm_backward(layer: Mvm, x: np.ndarray, z: np.ndarray, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example weight gradients (N, K, outputs) and the input gradient of one MVM layer."""
    grad_z = grad_out * (z > 0) if layer.relu else grad_out
    if layer.kind == "dense":
        grad_u = grad_z * layer.scale
        return np.einsum("nk,no->nko", x, grad_u), grad_u @ layer.matrix.T
    grad_u = grad_z.transpose(0, 2, 3, 1) * layer.scale  # (N, Ho, Wo, out)
    patches = _patches(layer, x)
    n, ho, wo, k = patches.shape
    weight_grad = np.einsum("npk,npo->nko", patches.reshape(n, ho * wo, k), grad_u.reshape(n, ho * wo, -1))
    grad_patches = (grad_u @ layer.matrix.T).reshape(n, ho, wo, x.shape[1], *layer.kernel)
    grad_x = _scatter_windows(grad_patches.transpose(0, 3, 1, 2, 4, 5), x.shape, layer.kernel, layer.stride,
                              layer.pads)
    return weight_grad, grad_x


def _pool_backward(layer: Pool, x: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    if layer.kind == "global-avg":
        return np.broadcast_to(grad_out / (x.shape[2] * x.shape[3]), x.shape).copy()
    kh, kw = layer.kernel
    if layer.kind == "max":
        windows = pool_windows(x, layer, -np.inf)
        first_max = np.argmax(windows, axis=-1)  # ties: the first maximum takes the gradient
        spread = (first_max[..., None] == np.arange(kh * kw)) * grad_out[..., None]
    else:
        spread = np.repeat(grad_out[..., None] / (kh * kw), kh * kw, axis=-1)
    return _scatter_windows(spread.reshape(*spread.shape[:4], kh, kw), x.shape, layer.kernel, layer.stride,
                            layer.pads)


def weight_gradients(network: Network, inputs, labels) -> dict[str, np.ndarray]:
    """Per-example gradients of log p(y_n | x_n) with respect to every MVM layer's matrix.

    Parameters
    ----------
    network : Network
    inputs : float array (N, *input_shape)
    labels : int array (N,)
        Class of every example (index into the flattened network output).

    Returns
    -------
    dict
        Layer name -> float64 array (N, K, outputs), the matrix layout of ``Mvm.matrix``.
    """
    x, y = _check_labels(network, inputs, labels)
    tensors = forward64(network, x)
    logits = tensors[network.output_name].reshape(len(x), -1)
    grad_logits = -np.exp(_log_softmax(logits))
    grad_logits[np.arange(len(x)), y] += 1.0
    grads = {network.output_name: grad_logits.reshape(tensors[network.output_name].shape)}
    weights = {}
    for layer in reversed(network.layers):
        grad_out = grads.pop(layer.output, None)
        if grad_out is None:  # the output feeds nothing that reaches the loss
            continue
        inputs_ = [tensors[name] for name in layer.inputs]
        if isinstance(layer, Mvm):
            weights[layer.name], grad_in = _mvm_backward(layer, inputs_[0], tensors[f"{layer.name}:z"], grad_out)
            grad_ins = [grad_in]
        elif isinstance(layer, Pool):
            grad_ins = [_pool_backward(layer, inputs_[0], grad_out)]
        elif isinstance(layer, Add):
            grad_ins = [grad_out, grad_out]
        elif isinstance(layer, Relu):
            grad_ins = [grad_out * (inputs_[0] > 0)]
        elif isinstance(layer, Flatten):
            grad_ins = [grad_out.reshape(inputs_[0].shape)]
        else:
            raise TypeError(f"no backward pass for layer {layer.name!r} of type {type(layer).__name__}")
        for name, grad in zip(layer.inputs, grad_ins):
            grads[name] = grads[name] + grad if name in grads else grad
    for layer in network.mvm_layers:  # layers that do not reach the output have zero gradient
        weights.setdefault(layer.name, np.zeros((len(x),) + layer.matrix.shape))
    return weights


def fisher_information(network: Network, inputs, labels) -> dict[str, np.ndarray]:
    """Empirical diagonal Fisher information of every MVM weight, E_n[(d log p(y_n|x_n)/dw)**2].

    Parameters
    ----------
    network : Network
    inputs : float array (N, *input_shape)
        Calibration images (N >= 1).
    labels : int array (N,)

    Returns
    -------
    dict
        Layer name -> float64 array (K, outputs) in the layout of ``Mvm.matrix``.
    """
    x, y = _check_labels(network, inputs, labels)
    if not len(x):
        raise ValueError("the Fisher information needs at least one labelled example, not 0")
    total = {layer.name: np.zeros(layer.matrix.shape) for layer in network.mvm_layers}
    for start in range(0, len(x), CHUNK_EXAMPLES):
        for name, grad in weight_gradients(network, x[start:start + CHUNK_EXAMPLES],
                                           y[start:start + CHUNK_EXAMPLES]).items():
            total[name] += np.einsum("nko,nko->ko", grad, grad)
    return {name: value / len(x) for name, value in total.items()}
