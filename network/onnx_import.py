"""Import a trained network from ONNX (what ``torch.onnx.export`` and tf2onnx write).

Supported operators: Gemm, MatMul (+ Add of a constant bias), Conv (any kernel, stride and
padding, groups = 1, dilation 1), BatchNormalization, Relu, Add (residual), Flatten,
Reshape to (N, features), MaxPool, AveragePool (no padding), GlobalAveragePool, Identity
and Dropout (inference). Anything else is refused naming the operator and the node. The
result is a :class:`neurophase.network.graph.Network` whose float inference reproduces
onnxruntime's outputs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from neurophase.network.graph import GraphBuilder, Network, NetworkError

__all__ = ["load_onnx", "read_onnx_model", "SUPPORTED_OPERATORS"]

SUPPORTED_OPERATORS = ("Gemm", "MatMul", "Conv", "BatchNormalization", "Relu", "Add", "Flatten", "Reshape",
                       "MaxPool", "AveragePool", "GlobalAveragePool", "Identity", "Dropout")


def load_onnx(path: str | Path) -> Network:
    """The float network of the ONNX model at ``path``.

    Raises
    ------
    NetworkError
        For an unreadable file, an unsupported operator or attribute (naming the node), a
        graph with other than one input and one output, or NaN/infinite weights.
    """
    path = Path(path)
    return from_onnx_model(read_onnx_model(path), path.name)


def read_onnx_model(path: str | Path, error: type[Exception] = NetworkError):
    """The ``onnx.ModelProto`` at ``path``; a missing or unreadable file raises ``error`` naming it."""
    import onnx

    path = Path(path)
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise error(f"ONNX model {str(path)!r} does not exist") from None
    except Exception as exc:  # onnx raises DecodeError and friends
        raise error(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def from_onnx_model(model, label: str = "model") -> Network:
    """The float network of an in-memory ``onnx.ModelProto``."""
    from onnx import numpy_helper

    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise NetworkError(f"{label}: the graph must have one input and one output, not {len(inputs)} and "
                           f"{len(graph.output)}")
    builder = GraphBuilder(inputs[0].name, _input_shape(inputs[0], label))
    readers = Counter(name for node in graph.node for name in node.input)
    readers.update(o.name for o in graph.output)
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        if node.op_type not in _HANDLERS:
            raise NetworkError(f"unsupported operator {node.op_type!r} in node {node.name or node.output[0]!r}; "
                               f"supported: {', '.join(SUPPORTED_OPERATORS)}")
        _HANDLERS[node.op_type](builder, node, constants, readers)
    return builder.build(graph.output[0].name)


def _input_shape(value_info, label: str) -> tuple:
    dims = value_info.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) < 2 or any(s is None or s < 1 for s in shape[1:]):
        raise NetworkError(f"{label}: input {value_info.name!r} must have a batch axis and fixed sizes after it, "
                           f"not {shape}")
    return tuple(shape[1:])


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _name(node) -> str:
    return node.name or node.output[0]


def _constant(node, constants: dict, index: int, what: str) -> np.ndarray:
    if index >= len(node.input) or node.input[index] == "":
        return None
    name = node.input[index]
    if name not in constants:
        raise NetworkError(f"{node.op_type} node {_name(node)!r}: its {what} {name!r} must be a constant "
                           "(an initializer), not a computed tensor")
    return constants[name]


def _refuse(node, attr: str, value, allowed: str):
    raise NetworkError(f"{node.op_type} node {_name(node)!r}: attribute {attr} = {value!r} is not supported; "
                       f"allowed: {allowed}")


def _onnx_pads(node, attrs: dict, spatial_in: tuple, kernel: tuple, strides: tuple) -> tuple:
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", "VALID"):
        pads = list(attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
        return pads[0], pads[1], pads[2], pads[3]
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        _refuse(node, "auto_pad", auto_pad, "NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    total = [max((-(-size // s) - 1) * s + k - size, 0) for size, k, s in zip(spatial_in, kernel, strides)]
    lo = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
    return lo[0], lo[1], total[0] - lo[0], total[1] - lo[1]


def _conv(builder, node, constants, readers):
    attrs = _attrs(node)
    weight = _constant(node, constants, 1, "weight")
    if weight.ndim != 4:
        raise NetworkError(f"Conv node {_name(node)!r}: only 2-D convolutions are supported, not weights of shape "
                           f"{weight.shape}")
    if attrs.get("group", 1) != 1:
        _refuse(node, "group", attrs["group"], "1")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        _refuse(node, "dilations", attrs["dilations"], "[1, 1]")
    kernel = tuple(weight.shape[2:])
    strides = tuple(attrs.get("strides", [1, 1]))
    shape = builder.shape(node.input[0])
    pads = _onnx_pads(node, attrs, shape[1:], kernel, strides)
    builder.conv(_name(node), node.input[0], node.output[0], weight, _constant(node, constants, 2, "bias"),
                 strides, pads)


def _gemm(builder, node, constants, readers):
    attrs = _attrs(node)
    if attrs.get("transA", 0):
        _refuse(node, "transA", attrs["transA"], "0")
    weight = _constant(node, constants, 1, "weight").astype(np.float64)
    weight = weight if attrs.get("transB", 0) else weight.T
    weight = weight * attrs.get("alpha", 1.0)
    bias = _constant(node, constants, 2, "bias")
    if bias is not None:
        bias = np.broadcast_to(np.asarray(bias, dtype=np.float64).reshape(-1), (weight.shape[0],)) * \
            attrs.get("beta", 1.0)
    builder.dense(_name(node), node.input[0], node.output[0], weight, bias)


def _matmul(builder, node, constants, readers):
    weight = _constant(node, constants, 1, "second operand")
    if weight.ndim != 2:
        raise NetworkError(f"MatMul node {_name(node)!r}: the constant operand must be 2-D, not shape {weight.shape}")
    builder.dense(_name(node), node.input[0], node.output[0], np.asarray(weight).T)


def _add(builder, node, constants, readers):
    names = list(node.input)
    const = [n for n in names if n in constants]
    if len(const) == 2:
        raise NetworkError(f"Add node {_name(node)!r} adds two constants; fold it before export")
    if const:
        x = names[0] if names[1] in constants else names[1]
        builder.bias_add(_name(node), x, node.output[0], constants[const[0]], fuse=readers[x] == 1)
        return
    builder.add(_name(node), names[0], names[1], node.output[0])


def _batch_norm(builder, node, constants, readers):
    attrs = _attrs(node)
    if attrs.get("training_mode", 0):
        _refuse(node, "training_mode", attrs["training_mode"], "0 (inference)")
    gamma, beta, mean, var = (_constant(node, constants, i, what)
                              for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    builder.batch_norm(_name(node), node.input[0], node.output[0], gamma, beta, mean, var,
                       attrs.get("epsilon", 1e-5), fuse=readers[node.input[0]] == 1)


def _relu(builder, node, constants, readers):
    builder.relu(_name(node), node.input[0], node.output[0], fuse=readers[node.input[0]] == 1)


def _flatten(builder, node, constants, readers):
    if _attrs(node).get("axis", 1) != 1:
        _refuse(node, "axis", _attrs(node)["axis"], "1")
    builder.flatten(_name(node), node.input[0], node.output[0])


def _reshape(builder, node, constants, readers):
    target = [int(v) for v in _constant(node, constants, 1, "shape")]
    features = int(np.prod(builder.shape(node.input[0])))
    if len(target) != 2 or target[1] not in (-1, features) or (target[1] == -1 and target[0] in (-1,)):
        raise NetworkError(f"Reshape node {_name(node)!r}: only a reshape to (batch, {features}) is supported, "
                           f"not {target}")
    builder.flatten(_name(node), node.input[0], node.output[0])


def _pool(builder, node, constants, readers):
    attrs = _attrs(node)
    if node.op_type == "GlobalAveragePool":
        builder.pool(_name(node), node.input[0], node.output[0], "global-avg")
        return
    for attr, ok in (("ceil_mode", 0), ("storage_order", 0)):
        if attrs.get(attr, 0) != ok:
            _refuse(node, attr, attrs[attr], str(ok))
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        _refuse(node, "dilations", attrs["dilations"], "[1, 1]")
    if len(node.output) > 1 and node.output[1]:
        raise NetworkError(f"MaxPool node {_name(node)!r}: the indices output is not supported")
    kernel = tuple(attrs["kernel_shape"])
    strides = tuple(attrs.get("strides", [1, 1]))
    pads = _onnx_pads(node, attrs, builder.shape(node.input[0])[1:], kernel, strides)
    kind = "max" if node.op_type == "MaxPool" else "avg"
    if kind == "avg" and any(pads) and not attrs.get("count_include_pad", 0):
        _refuse(node, "pads", list(pads), "no padding for AveragePool")
    builder.pool(_name(node), node.input[0], node.output[0], kind, kernel, strides, pads)


def _identity(builder, node, constants, readers):
    builder.identity(_name(node), node.input[0], node.output[0])


_HANDLERS = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "BatchNormalization": _batch_norm,
    "Relu": _relu, "Flatten": _flatten, "Reshape": _reshape, "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _pool, "Identity": _identity, "Dropout": _identity,
}
