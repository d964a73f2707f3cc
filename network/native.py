"""A network described in plain Python, for users without ONNX.

    >>> from neurophase.network.native import Conv2d, BatchNorm, ReLU, MaxPool, Flatten, Dense, sequential
    >>> net = sequential((1, 8, 8), [Conv2d(w1, b1, padding=1), BatchNorm(g, b, m, v), ReLU(),
    ...                              MaxPool(2), Flatten(), Dense(w2, b2)])

Each spec holds numpy arrays in the layouts of ONNX: convolution weights (out, in, kh, kw),
dense weights (out, in). Residual networks are built with :class:`Residual`, whose body is
a list of specs whose output is added to its input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurophase.network.graph import GraphBuilder, Network, NetworkError

__all__ = ["Conv2d", "Dense", "BatchNorm", "ReLU", "MaxPool", "AvgPool", "GlobalAvgPool", "Flatten", "Residual",
           "sequential"]


@dataclass
class Conv2d:
    """Convolution: ``weight`` (out, in, kh, kw), optional ``bias``, ``stride`` and symmetric ``padding``."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: int = 1
    padding: int = 0


@dataclass
class Dense:
    """Fully connected layer: ``weight`` (out, in), optional ``bias``."""

    weight: np.ndarray
    bias: np.ndarray | None = None


@dataclass
class BatchNorm:
    """Inference batch-norm with its running statistics."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-5


@dataclass
class ReLU:
    """Rectifier."""


@dataclass
class MaxPool:
    """Max pooling over ``kernel`` x ``kernel`` windows (stride defaults to the kernel)."""

    kernel: int
    stride: int | None = None
    padding: int = 0


@dataclass
class AvgPool:
    """Average pooling over ``kernel`` x ``kernel`` windows, no padding."""

    kernel: int
    stride: int | None = None


@dataclass
class GlobalAvgPool:
    """Average over the whole image, per channel."""


@dataclass
class Flatten:
    """(C, H, W) to (C*H*W,)."""


@dataclass
class Residual:
    """``x + body(x)``, then an optional ReLU."""

    body: list = field(default_factory=list)
    relu: bool = True


def sequential(input_shape: tuple, specs: list, input_name: str = "input") -> Network:
    """The network applying ``specs`` in order to an input of per-example ``input_shape``."""
    builder = GraphBuilder(input_name, input_shape)
    out = _chain(builder, input_name, specs, [0])
    return builder.build(out)


def _chain(builder: GraphBuilder, x: str, specs: list, counter: list) -> str:
    for spec in specs:
        counter[0] += 1
        name = f"{type(spec).__name__.lower()}{counter[0]}"
        x = _apply(builder, spec, name, x, counter)
    return x


def _apply(builder: GraphBuilder, spec, name: str, x: str, counter: list) -> str:
    out = f"{name}_out"
    if isinstance(spec, Conv2d):
        p = int(spec.padding)
        return builder.conv(name, x, out, spec.weight, spec.bias, (spec.stride, spec.stride), (p, p, p, p))
    if isinstance(spec, Dense):
        return builder.dense(name, x, out, spec.weight, spec.bias)
    if isinstance(spec, BatchNorm):
        return builder.batch_norm(name, x, out, spec.gamma, spec.beta, spec.mean, spec.var, spec.eps)
    if isinstance(spec, ReLU):
        return builder.relu(name, x, out)
    if isinstance(spec, MaxPool):
        p = int(spec.padding)
        return builder.pool(name, x, out, "max", (spec.kernel, spec.kernel),
                            None if spec.stride is None else (spec.stride, spec.stride), (p, p, p, p))
    if isinstance(spec, AvgPool):
        return builder.pool(name, x, out, "avg", (spec.kernel, spec.kernel),
                            None if spec.stride is None else (spec.stride, spec.stride))
    if isinstance(spec, GlobalAvgPool):
        return builder.pool(name, x, out, "global-avg")
    if isinstance(spec, Flatten):
        return builder.flatten(name, x, out)
    if isinstance(spec, Residual):
        body = _chain(builder, x, spec.body, counter)
        added = builder.add(name, x, body, out)
        return builder.relu(f"{name}_relu", added, f"{out}_relu", fuse=False) if spec.relu else added
    raise NetworkError(f"unknown layer spec {spec!r}; use Conv2d, Dense, BatchNorm, ReLU, MaxPool, AvgPool, "
                       "GlobalAvgPool, Flatten or Residual")
