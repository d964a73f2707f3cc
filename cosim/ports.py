"""Map Amaranth signatures and data layouts onto the flat ports of generated Verilog.

Amaranth joins nested signature members with ``__`` (``o_stream__payload``) and packs a
``data.Layout`` into one vector; these helpers derive both from the Python description,
so no port name or bit offset is typed by hand in a testbench.
"""

from __future__ import annotations

from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["port_name", "pack", "unpack"]


def port_name(*path: str) -> str:
    """Verilog port of a signature member path: ``port_name("i_stream", "valid")``."""
    return "__".join(path)


def pack(layout: Any, value: Any) -> int:
    """Pack ``value`` (int, list for arrays, dict for structs) into an unsigned integer."""
    if isinstance(layout, data.Layout):
        bits = 0
        for key, field in layout:
            bits |= pack(field.shape, value[key]) << field.offset
        return bits
    shape = Shape.cast(layout)
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{value} does not fit a {shape!r} field (range [{lo}, {hi}])")
    return value & ((1 << shape.width) - 1)


def unpack(layout: Any, bits: int) -> Any:
    """Inverse of :func:`pack`: ints for plain shapes, lists for arrays, dicts for structs."""
    if isinstance(layout, data.ArrayLayout):
        return [unpack(field.shape, bits >> field.offset) for _, field in layout]
    if isinstance(layout, data.Layout):
        return {key: unpack(field.shape, bits >> field.offset) for key, field in layout}
    shape = Shape.cast(layout)
    value = bits & ((1 << shape.width) - 1)
    if shape.signed and value >> (shape.width - 1):
        value -= 1 << shape.width
    return value
