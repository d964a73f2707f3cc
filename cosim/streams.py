"""cocotb stream (valid/ready) source, sink and monitor for Amaranth ``lib.stream`` ports.

Shaped like cocotbext-axi's stream module: the source drives beats with optional idle
gaps, the sink applies back-pressure, the monitor records every completed transfer.
Handshakes are sampled in the ReadOnly phase of a cycle, so a transfer is counted
exactly when ``valid`` and ``ready`` are both high before the clock edge.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from cocotb.triggers import ReadOnly, RisingEdge

from neurophase.cosim.ports import pack, port_name, unpack

__all__ = ["StreamSource", "StreamMonitor", "StreamSink"]


class _StreamPort:
    def __init__(self, dut, name: str, layout: Any, clock):
        self.valid = getattr(dut, port_name(name, "valid"))
        self.ready = getattr(dut, port_name(name, "ready"))
        self.payload = getattr(dut, port_name(name, "payload"))
        self.layout = layout
        self.clock = clock


class StreamSource(_StreamPort):
    """Drives ``name`` (an ``In(stream.Signature(layout))`` port) with beats.

    ``idle`` is the probability of inserting an idle cycle before a beat.
    """

    def __init__(self, dut, name, layout, clock, *, rng: random.Random, idle: float = 0.0):
        super().__init__(dut, name, layout, clock)
        self.rng = rng
        self.idle = idle
        self.valid.value = 0

    async def send(self, beats) -> None:
        for beat in beats:
            while self.idle and self.rng.random() < self.idle:
                self.valid.value = 0
                await RisingEdge(self.clock)
            self.payload.value = pack(self.layout, beat)
            self.valid.value = 1
            while True:
                await ReadOnly()
                accepted = bool(self.ready.value)
                await RisingEdge(self.clock)
                if accepted:
                    break
        self.valid.value = 0


class StreamSink(_StreamPort):
    """Drives ``ready`` of an ``Out(stream.Signature(layout))`` port: always ready when
    ``stall`` is 0, else low with that probability each cycle, or under ``pattern``."""

    def __init__(self, dut, name, layout, clock, *, rng: random.Random, stall: float = 0.0,
                 pattern: Callable[[int], bool] | None = None):
        super().__init__(dut, name, layout, clock)
        self.rng = rng
        self.stall = stall
        self.pattern = pattern
        self.ready.value = 0

    async def run(self) -> None:
        cycle = 0
        while True:
            if self.pattern is not None:
                ready = self.pattern(cycle)
            else:
                ready = not (self.stall and self.rng.random() < self.stall)
            self.ready.value = int(ready)
            await RisingEdge(self.clock)
            cycle += 1


class StreamMonitor(_StreamPort):
    """Records every transfer on a stream port as unpacked payloads and calls ``callback``."""

    def __init__(self, dut, name, layout, clock, callback: Callable[[Any], None]):
        super().__init__(dut, name, layout, clock)
        self.callback = callback

    async def run(self) -> None:
        while True:
            await ReadOnly()
            if self.valid.value and self.ready.value:
                self.callback(unpack(self.layout, self.payload.value.to_unsigned()))
            await RisingEdge(self.clock)
