"""The float network: a small graph of the layers the chip runs, and its float inference.

A :class:`Network` is a list of layers in execution order over named tensors, one input
and one output. Every tensor is an image ``(C, H, W)`` or a vector ``(F,)`` per example
(the batch axis is implicit). The layers:

- :class:`Mvm` — what a crossbar computes: a dense layer (Gemm/MatMul) or a convolution
  (any kernel, stride, padding; groups = 1), followed by a per-output affine map
  ``scale * (W x) + shift`` (bias and batch-norm folded in) and an optional ReLU;
- :class:`Pool` — max, average or global-average pooling;
- :class:`Add` — residual addition of two tensors;
- :class:`Relu` — a ReLU that could not be fused into the layer before it;
- :class:`Flatten` — ``(C, H, W)`` to ``(C*H*W,)``, C-major like ONNX.

:class:`GraphBuilder` assembles a network and folds bias, batch-norm and ReLU into the
layer before them when that layer has no other reader; the ONNX importer
(:mod:`neurophase.network.onnx_import`) and the native description
(:mod:`neurophase.network.native`) both build through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Mvm", "Pool", "Add", "Relu", "Flatten", "Network", "GraphBuilder", "im2col", "conv_output_size",
           "NetworkError"]


class NetworkError(ValueError):
    """A network that cannot be imported, described or mapped; the message says which node and why."""


@dataclass
class Mvm:
    """A dense or convolutional layer: what the crossbar tiles compute.

    Parameters
    ----------
    name, input, output : str
        Layer name and its input and output tensors.
    weight : float array
        ``(out, in)`` for dense layers, ``(out, in_channels, kh, kw)`` for convolutions.
    scale, shift : float arrays, shape (out,)
        Per-output affine map applied to ``W x`` (bias and batch-norm folded in).
    relu : bool
        ReLU after the affine map.
    stride : (int, int)
    pads : (int, int, int, int)
        Zero padding top, left, bottom, right (convolutions).
    has_batch_norm : bool
        Whether a batch-norm was folded in (the layer's affine is then recalibrated as one).
    """

    name: str
    input: str
    output: str
    weight: np.ndarray
    scale: np.ndarray
    shift: np.ndarray
    relu: bool = False
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    has_batch_norm: bool = False

    @property
    def kind(self) -> str:
        return "conv" if self.weight.ndim == 4 else "dense"

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def matrix(self) -> np.ndarray:
        """The weights as the crossbar holds them: (K inputs, N outputs), K in im2col order."""
        return self.weight.reshape(self.weight.shape[0], -1).T

    @property
    def kernel(self) -> tuple:
        return tuple(self.weight.shape[2:]) if self.kind == "conv" else (1, 1)

    @property
    def inputs(self) -> tuple:
        return (self.input,)


@dataclass
class Pool:
    """Max, average or global-average pooling.

    Parameters
    ----------
    kind : str
        ``"max"``, ``"avg"`` or ``"global-avg"``.
    kernel, stride : (int, int)
    pads : (int, int, int, int)
        Top, left, bottom, right (max pooling pads with the smallest value; average
        pooling allows no padding).
    """

    name: str
    input: str
    output: str
    kind: str
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)

    @property
    def inputs(self) -> tuple:
        return (self.input,)


@dataclass
class Add:
    """Residual addition of tensors ``a`` and ``b`` (same shape)."""

    name: str
    a: str
    b: str
    output: str

    @property
    def inputs(self) -> tuple:
        return (self.a, self.b)


@dataclass
class _OneInput:
    name: str
    input: str
    output: str

    @property
    def inputs(self) -> tuple:
        return (self.input,)


@dataclass
class Relu(_OneInput):
    """A ReLU on its own (after an add or a pooling)."""


@dataclass
class Flatten(_OneInput):
    """(C, H, W) -> (C*H*W,), C-major."""


def conv_output_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int) -> int:
    return (size + pad_lo + pad_hi - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: tuple, stride: tuple, pads: tuple, pad_value=0) -> np.ndarray:
    """Patches of ``x`` (N, C, H, W): shape (N, Ho, Wo, C*kh*kw), each patch C-major then
    kernel row then kernel column (the order of ``weight.reshape(out, -1)``)."""
    kh, kw = kernel
    top, left, bottom, right = pads
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    n, c, ho, wo = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, c * kh * kw)


def pool_windows(x: np.ndarray, layer: Pool, pad_value) -> np.ndarray:
    """Pooling windows of ``x`` (N, C, H, W): shape (N, C, Ho, Wo, kh*kw)."""
    top, left, bottom, right = layer.pads
    if any(layer.pads):
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    windows = np.lib.stride_tricks.sliding_window_view(x, layer.kernel, axis=(2, 3))
    windows = windows[:, :, ::layer.stride[0], ::layer.stride[1]]
    return windows.reshape(*windows.shape[:4], -1)


@dataclass
class Network:
    """A float network over named tensors.

    Parameters
    ----------
    input_name : str
    input_shape : tuple
        Shape of one example: (C, H, W) or (F,).
    layers : list
        :class:`Mvm`, :class:`Pool`, :class:`Add`, :class:`Relu`, :class:`Flatten` in
        execution order.
    output_name : str
    shapes : dict
        Shape of every tensor (one example), filled in by :meth:`infer_shapes`.
    """

    input_name: str
    input_shape: tuple
    layers: list
    output_name: str
    shapes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.infer_shapes()

    @property
    def mvm_layers(self) -> list:
        return [layer for layer in self.layers if isinstance(layer, Mvm)]

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r}")

    def infer_shapes(self) -> dict:
        """Every tensor's per-example shape; checks that every layer fits its input."""
        shapes = {self.input_name: self.input_shape}
        for layer in self.layers:
            for name in layer.inputs:
                if name not in shapes:
                    raise NetworkError(f"layer {layer.name!r} reads tensor {name!r}, which no earlier layer writes")
            shapes[layer.output] = _output_shape(layer, [shapes[n] for n in layer.inputs])
        if self.output_name not in shapes:
            raise NetworkError(f"the network output {self.output_name!r} is written by no layer")
        self.shapes = shapes
        return shapes

    def check_inputs(self, inputs) -> np.ndarray:
        """``inputs`` as float32 (N, *input_shape), refusing wrong shapes, NaN and complex values."""
        x = np.asarray(inputs)
        if np.iscomplexobj(x) or not np.issubdtype(x.dtype, np.number):
            raise NetworkError(f"network inputs must be real numbers, not {x.dtype}")
        if x.shape[1:] != self.input_shape:
            raise NetworkError(f"network inputs must have shape (N, {', '.join(map(str, self.input_shape))}), "
                               f"not {x.shape}")
        if not np.all(np.isfinite(x)):
            raise NetworkError("network inputs contain NaN or infinite values")
        return x.astype(np.float32)

    def run(self, inputs, keep: bool = False) -> np.ndarray | dict:
        """Float inference: the output (N, ...) or, with ``keep``, every tensor by name."""
        tensors = {self.input_name: self.check_inputs(inputs)}
        for layer in self.layers:
            tensors[layer.output] = run_float_layer(layer, [tensors[n] for n in layer.inputs])
        return tensors if keep else tensors[self.output_name]


def _output_shape(layer, in_shapes: list) -> tuple:
    shape = in_shapes[0]
    if isinstance(layer, Mvm):
        if layer.kind == "dense":
            if len(shape) != 1 or shape[0] != layer.weight.shape[1]:
                raise NetworkError(f"dense layer {layer.name!r} needs a vector of {layer.weight.shape[1]} "
                                   f"features, not shape {shape}")
            return (layer.out_features,)
        if len(shape) != 3 or shape[0] != layer.weight.shape[1]:
            raise NetworkError(f"convolution {layer.name!r} needs an image of {layer.weight.shape[1]} channels, "
                               f"not shape {shape}")
        return (layer.out_features, *_spatial(layer, shape, layer.kernel))
    if isinstance(layer, Pool):
        if len(shape) != 3:
            raise NetworkError(f"pooling {layer.name!r} needs an image (C, H, W), not shape {shape}")
        if layer.kind == "global-avg":
            return (shape[0], 1, 1)
        return (shape[0], *_spatial(layer, shape, layer.kernel))
    if isinstance(layer, Add):
        if in_shapes[0] != in_shapes[1]:
            raise NetworkError(f"add {layer.name!r} needs inputs of one shape, not {in_shapes[0]} and {in_shapes[1]}")
        return shape
    if isinstance(layer, Flatten):
        return (int(np.prod(shape)),)
    return shape


def _spatial(layer, shape: tuple, kernel: tuple) -> tuple:
    top, left, bottom, right = layer.pads
    ho = conv_output_size(shape[1], kernel[0], layer.stride[0], top, bottom)
    wo = conv_output_size(shape[2], kernel[1], layer.stride[1], left, right)
    if ho < 1 or wo < 1:
        raise NetworkError(f"layer {layer.name!r}: kernel {kernel} does not fit the input {shape} with padding "
                           f"{layer.pads}")
    return ho, wo


def run_float_layer(layer, inputs: list) -> np.ndarray:
    """One layer's float inference on a batch."""
    x = inputs[0]
    if isinstance(layer, Mvm):
        if layer.kind == "dense":
            y = x @ layer.matrix.astype(np.float32)
        else:
            patches = im2col(x, layer.kernel, layer.stride, layer.pads)
            y = patches @ layer.matrix.astype(np.float32)
        y = y * layer.scale.astype(np.float32) + layer.shift.astype(np.float32)
        if layer.relu:
            y = np.maximum(y, 0)
        return y.transpose(0, 3, 1, 2) if layer.kind == "conv" else y
    if isinstance(layer, Pool):
        if layer.kind == "global-avg":
            return x.mean(axis=(2, 3), keepdims=True)
        if layer.kind == "max":
            return pool_windows(x, layer, -np.inf).max(axis=-1)
        return pool_windows(x, layer, 0.0).mean(axis=-1)
    if isinstance(layer, Add):
        return x + inputs[1]
    if isinstance(layer, Relu):
        return np.maximum(x, 0)
    return x.reshape(len(x), -1)


def _check_array(node: str, what: str, values, shape: tuple | None = None) -> np.ndarray:
    array = np.asarray(values)
    if np.iscomplexobj(array) or not np.issubdtype(array.dtype, np.number):
        raise NetworkError(f"{what} of {node!r} must be real numbers, not {array.dtype}")
    if shape is not None and array.shape != shape:
        raise NetworkError(f"{what} of {node!r} must have shape {shape}, not {array.shape}")
    if not np.all(np.isfinite(array)):
        raise NetworkError(f"{what} of {node!r} contain NaN or infinite values")
    return array.astype(np.float64)


class GraphBuilder:
    """Assembles a :class:`Network`, folding bias, batch-norm and ReLU into the layer before.

    Parameters
    ----------
    input_name : str
    input_shape : tuple
        Shape of one example.
    """

    def __init__(self, input_name: str, input_shape: tuple):
        self.input_name = input_name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.layers: list = []
        self.alias: dict = {}
        self.shapes = {input_name: self.input_shape}

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def _producer(self, tensor: str):
        tensor = self.resolve(tensor)
        for layer in self.layers:
            if layer.output == tensor:
                return layer
        return None

    def _add(self, layer) -> str:
        layer_inputs = [self.resolve(n) for n in layer.inputs]
        for name in layer_inputs:
            if name not in self.shapes:
                raise NetworkError(f"node {layer.name!r} reads tensor {name!r}, which no earlier node writes")
        self.shapes[layer.output] = _output_shape(layer, [self.shapes[n] for n in layer_inputs])
        self.layers.append(layer)
        return layer.output

    def shape(self, tensor: str) -> tuple:
        return self.shapes[self.resolve(tensor)]

    def identity(self, name: str, x: str, output: str) -> str:
        """``output`` is another name for ``x`` (Identity, Dropout at inference)."""
        self.alias[output] = self.resolve(x)
        return output

    def dense(self, name: str, x: str, output: str, weight, bias=None) -> str:
        """A dense layer: ``weight`` (out, in), optional ``bias`` (out,)."""
        weight = _check_array(name, "weights", weight)
        if weight.ndim != 2:
            raise NetworkError(f"weights of dense layer {name!r} must be 2-D (out, in), not shape {weight.shape}")
        bias = np.zeros(weight.shape[0]) if bias is None else _check_array(name, "bias", bias, (weight.shape[0],))
        return self._add(Mvm(name, self.resolve(x), output, weight, np.ones(weight.shape[0]), bias))

    def conv(self, name: str, x: str, output: str, weight, bias=None, stride=(1, 1), pads=(0, 0, 0, 0)) -> str:
        """A convolution: ``weight`` (out, in_channels, kh, kw), stride (2,), pads (top, left, bottom, right)."""
        weight = _check_array(name, "weights", weight)
        if weight.ndim != 4:
            raise NetworkError(f"weights of convolution {name!r} must be 4-D (out, in, kh, kw), not shape "
                               f"{weight.shape}")
        stride, pads = tuple(int(s) for s in stride), tuple(int(p) for p in pads)
        if len(stride) != 2 or min(stride) < 1:
            raise NetworkError(f"stride of convolution {name!r} must be two positive integers, not {stride}")
        if len(pads) != 4 or min(pads) < 0:
            raise NetworkError(f"pads of convolution {name!r} must be four non-negative integers, not {pads}")
        bias = np.zeros(weight.shape[0]) if bias is None else _check_array(name, "bias", bias, (weight.shape[0],))
        return self._add(Mvm(name, self.resolve(x), output, weight, np.ones(weight.shape[0]), bias,
                             stride=stride, pads=pads))

    def _fusable_mvm(self, x: str, fuse: bool) -> Mvm | None:
        layer = self._producer(x)
        return layer if fuse and isinstance(layer, Mvm) and not layer.relu else None

    def bias_add(self, name: str, x: str, output: str, bias, fuse: bool = True) -> str:
        """Add a constant per output feature (after MatMul): folded into the layer before."""
        layer = self._fusable_mvm(x, fuse)
        if layer is None:
            raise NetworkError(f"Add node {name!r} adds a constant to {x!r}, which is not the output of a "
                               "dense or convolution layer read by nothing else; only such bias adds are supported")
        bias = _check_array(name, "constant", bias).reshape(-1)
        if bias.size == 1:
            bias = np.full(layer.out_features, bias[0])
        if bias.size != layer.out_features:
            raise NetworkError(f"constant of Add node {name!r} must have 1 or {layer.out_features} values (one per "
                               f"output of {layer.name!r}), not {bias.size}")
        layer.shift = layer.shift + layer.scale * bias
        return self._rename(layer, output)

    def batch_norm(self, name: str, x: str, output: str, gamma, beta, mean, var, eps: float = 1e-5,
                   fuse: bool = True) -> str:
        """Inference batch-norm, folded into the dense/convolution layer before it."""
        layer = self._fusable_mvm(x, fuse)
        if layer is None:
            raise NetworkError(f"BatchNormalization node {name!r} must directly follow a Conv or Gemm/MatMul whose "
                               "output nothing else reads (it is folded into that layer's affine map)")
        n = layer.out_features
        gamma, beta, mean, var = (_check_array(name, what, v, (n,)) for what, v in
                                  (("scale", gamma), ("bias", beta), ("mean", mean), ("variance", var)))
        if np.any(var + eps <= 0):
            raise NetworkError(f"variance of BatchNormalization node {name!r} plus epsilon must be positive")
        factor = gamma / np.sqrt(var + eps)
        layer.scale = layer.scale * factor
        layer.shift = (layer.shift - mean) * factor + beta
        layer.has_batch_norm = True
        return self._rename(layer, output)

    def relu(self, name: str, x: str, output: str, fuse: bool = True) -> str:
        layer = self._fusable_mvm(x, fuse)
        if layer is not None:
            layer.relu = True
            return self._rename(layer, output)
        return self._add(Relu(name, self.resolve(x), output))

    def _rename(self, layer: Mvm, output: str) -> str:
        self.alias[layer.output] = output
        self.shapes[output] = self.shapes.pop(layer.output)
        layer.output = output
        self.alias.pop(output, None)
        return output

    def add(self, name: str, a: str, b: str, output: str) -> str:
        return self._add(Add(name, self.resolve(a), self.resolve(b), output))

    def pool(self, name: str, x: str, output: str, kind: str, kernel=(1, 1), stride=None,
             pads=(0, 0, 0, 0)) -> str:
        if kind not in ("max", "avg", "global-avg"):
            raise NetworkError(f"pooling kind of {name!r} must be 'max', 'avg' or 'global-avg', not {kind!r}")
        kernel = tuple(int(k) for k in kernel)
        stride = kernel if stride is None else tuple(int(s) for s in stride)
        pads = tuple(int(p) for p in pads)
        if kind == "avg" and any(pads):
            raise NetworkError(f"average pooling {name!r} with padding is not supported (pads {pads})")
        if min(kernel) < 1 or min(stride) < 1 or min(pads) < 0:
            raise NetworkError(f"pooling {name!r}: kernel and stride must be positive and pads non-negative, not "
                               f"kernel {kernel}, stride {stride}, pads {pads}")
        return self._add(Pool(name, self.resolve(x), output, kind, kernel, stride, pads))

    def flatten(self, name: str, x: str, output: str) -> str:
        if len(self.shape(x)) == 1:
            return self.identity(name, x, output)
        return self._add(Flatten(name, self.resolve(x), output))

    def build(self, output: str) -> Network:
        return Network(self.input_name, self.input_shape, [replace(layer) for layer in self.layers],
                       self.resolve(output))
