"""cocotb responder for a :class:`~neurophase.rtl.interfaces.ParamReadSignature` port:
serves a per-column parameter array with the port's one-cycle synchronous read, the
table switching to the next MVM's as the MVM's first beat enters the block."""

from __future__ import annotations

import numpy as np
from amaranth.lib import data
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from neurophase.cosim.ports import pack, port_name

__all__ = ["ParamPortResponder"]


class ParamPortResponder:
    """Answers reads of the port ``name`` (``name__addr`` out of the DUT, ``name__data`` in).

    Parameters
    ----------
    dut, name, clock :
        The DUT handle, the port's signature member name and the clock.
    shape, lanes :
        Element shape and elements per read.
    accept : callable
        ``accept()`` -> bool, read in the ReadOnly phase: a beat enters the block this
        cycle (advances the beat count that selects the MVM's table).
    groups : int
        Beats per MVM.
    held : callable or None
        For a block whose beats enter an output register as they are read (the ADC
        interface): ``held()`` -> 0 or 1, read in the ReadOnly phase, the beat accepted
        but not yet counted by ``accept`` (``accept`` then counts beats leaving). The read
        data of a cycle is then written at its falling edge, once that is known.
    """

    def __init__(self, dut, name: str, clock, shape, lanes: int, accept, groups: int, held=None):
        self.addr = getattr(dut, port_name(name, "addr"))
        self.data = getattr(dut, port_name(name, "data"))
        self.clock = clock
        self.layout = data.ArrayLayout(shape, lanes)
        self.lanes = lanes
        self.accept = accept
        self.groups = groups
        self.held = held
        self.tables: list[list[int]] = []
        self.beats = 0
        self.data.value = 0

    def add_table(self, values: np.ndarray) -> None:
        """Append the (columns,) parameter array of the next MVM."""
        rows = np.asarray(values).reshape(-1, self.lanes)
        self.tables.append([pack(self.layout, [int(v) for v in row]) for row in rows])

    def _word(self, beats: int, addr: int) -> int:
        table = self.tables[min(beats // self.groups, len(self.tables) - 1)]
        return table[addr % len(table)]

    async def run(self) -> None:
        if self.held is not None:
            await self._run_held()
        while True:
            await ReadOnly()
            addr = int(self.addr.value)
            if self.accept():
                self.beats += 1
            await RisingEdge(self.clock)
            if self.tables:
                table = self.tables[min(self.beats // self.groups, len(self.tables) - 1)]
                self.data.value = table[addr % len(table)]

    async def _run_held(self) -> None:
        """The read of cycle t answers the address of cycle t-1 for the beat that enters
        at the end of cycle t: the beats counted through cycle t-1 plus the one held."""
        addr = None
        while True:
            await ReadOnly()
            entering = self.beats + int(self.held())
            previous, addr = addr, int(self.addr.value)
            left = self.accept()
            await FallingEdge(self.clock)
            if self.tables and previous is not None:
                self.data.value = self._word(entering, previous)
            self.beats += int(left)
            await RisingEdge(self.clock)
