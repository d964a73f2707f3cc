"""Signatures shared between RTL blocks (not components)."""

from amaranth.hdl import ShapeCastable
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ParamReadSignature"]


class ParamReadSignature(wiring.Signature):
    """Lane-wide read port of a per-column parameter array (gains, trims, BN scale/bias).

    The consumer drives ``addr`` (a column group: columns ``addr*lanes`` to
    ``addr*lanes + lanes - 1``); ``data`` holds that group's ``lanes`` elements on the
    next cycle (a synchronous read, like ``amaranth.lib.memory`` read ports with ``en``
    high). The array's owner (the CSR bank) takes the flipped signature.

    Parameters
    ----------
    shape : ShapeCastable
        Shape of one element.
    lanes : int
        Elements per read.
    groups : int
        Column groups (array depth / lanes).
    """

    def __init__(self, shape: ShapeCastable, lanes: int, groups: int):
        self.shape, self.lanes, self.groups = shape, lanes, groups
        super().__init__({
            "addr": Out(range(max(groups, 2))),
            "data": In(data.ArrayLayout(shape, lanes)),
        })

    def __eq__(self, other):
        return (isinstance(other, ParamReadSignature)
                and (self.shape, self.lanes, self.groups) == (other.shape, other.lanes, other.groups))

    def __repr__(self):
        return f"ParamReadSignature({self.shape!r}, lanes={self.lanes}, groups={self.groups})"
