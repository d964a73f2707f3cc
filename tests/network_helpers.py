"""Small networks and an independent integer reference for the network tests."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from neurophase.network import native as nn
from neurophase.network.graph import Add, Flatten, Mvm, Pool, Relu, im2col


def residual_onnx(rng: np.random.Generator):
    """An ONNX model with every supported operator kind: conv, batch-norm, relu, residual add,
    max/average pooling, flatten, gemm, matmul + bias add."""
    arrays = {
        "w1": rng.normal(size=(4, 1, 3, 3)), "b1": rng.normal(size=4),
        "g": rng.uniform(0.5, 1.5, 4), "be": rng.normal(size=4), "m": rng.normal(size=4), "v": rng.uniform(0.5, 2, 4),
        "w2": rng.normal(size=(4, 4, 3, 3)) * 0.3, "wf": rng.normal(size=(12, 16)), "bf": rng.normal(size=12),
        "wm": rng.normal(size=(12, 10)), "bm": rng.normal(size=10), "shape": np.array([-1, 16]),
    }
    inits = [numpy_helper.from_array(a.astype(np.int64 if n == "shape" else np.float32), n) for n, a in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn1"], name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="residual"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
        helper.make_node("AveragePool", ["p"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], name="avgpool"),
        helper.make_node("Reshape", ["p2", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu3"),
        helper.make_node("MatMul", ["hr", "wm"], ["mm"], name="fc2"),
        helper.make_node("Add", ["mm", "bm"], ["y"], name="fc2_bias"),
    ]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def small_cnn(rng: np.random.Generator, channels=(4, 8), hidden: int = 300, stride: int = 1):
    """Conv (stride, padding) + BN + ReLU, conv + ReLU, max pool, a dense layer with more
    inputs than a small tile has rows, a dense output layer."""
    c1, c2 = channels
    return nn.sequential((1, 8, 8), [
        nn.Conv2d(rng.normal(size=(c1, 1, 3, 3)), rng.normal(size=c1) * 0.1, stride=stride, padding=1),
        nn.BatchNorm(rng.uniform(0.5, 1.5, c1), rng.normal(size=c1) * 0.1, rng.normal(size=c1) * 0.1,
                     rng.uniform(0.5, 2, c1)),
        nn.ReLU(),
        nn.Conv2d(rng.normal(size=(c2, c1, 3, 3)) * 0.3, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Dense(rng.normal(size=(hidden, c2 * (8 // stride) ** 2)) * 0.05, rng.normal(size=hidden) * 0.1), nn.ReLU(),
        nn.Dense(rng.normal(size=(10, hidden)) * 0.1),
    ])


def _round_shift(v: np.ndarray, shift: int) -> np.ndarray:
    return v if shift == 0 else (v + (1 << (shift - 1))) // (1 << shift)


def integer_reference(mapped, inputs: np.ndarray) -> np.ndarray:
    """The quantised network in plain integer arithmetic (matrix products of the integer
    weights, no ADC, no tiles), written independently of the golden model's code."""
    cfg, net = mapped.cfg, mapped.network
    bits = cfg.datapath.activation_bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    tensors = {net.input_name: np.clip(np.floor(inputs / mapped.scales[net.input_name] + 0.5), lo, hi).astype(np.int64)}
    for layer in net.layers:
        x = tensors[layer.inputs[0]]
        if isinstance(layer, Mvm):
            m = mapped.layers[layer.name]
            patches = im2col(x, layer.kernel, layer.stride, layer.pads) if layer.kind == "conv" else x
            acc = patches.reshape(-1, m.k) @ m.w_int
            z = _round_shift(acc * m.bn_scale, cfg.datapath.bn_scale_frac_bits) + m.bn_bias
            z = np.maximum(z, 0) if layer.relu else z
            q = np.clip(_round_shift(z, m.shift), lo, hi)
            if layer.kind == "conv":
                n, ho, wo = patches.shape[:3]
                q = q.reshape(n, ho, wo, m.n).transpose(0, 3, 1, 2)
            out = q
        elif isinstance(layer, Pool) and layer.kind == "max":
            out = np.full((len(x), x.shape[1], *net.shapes[layer.output][1:]), lo, dtype=np.int64)
            t, left = layer.pads[0], layer.pads[1]
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    for di in range(layer.kernel[0]):
                        for dj in range(layer.kernel[1]):
                            r, c = i * layer.stride[0] + di - t, j * layer.stride[1] + dj - left
                            if 0 <= r < x.shape[2] and 0 <= c < x.shape[3]:
                                out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, r, c])
        elif isinstance(layer, Add):
            out = np.clip(x + tensors[layer.b], lo, hi)
        elif isinstance(layer, Relu):
            out = np.maximum(x, 0)
        elif isinstance(layer, Flatten):
            out = x.reshape(len(x), -1)
        else:
            raise AssertionError(f"no reference for {layer!r}")
        tensors[layer.output] = out
    return tensors[net.output_name]
