"""Skid buffer: a stream stage whose ``ready`` towards the producer is a flip-flop."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Passes a stream through unchanged, with no added latency, while cutting the
    combinational path from the consumer's ``ready`` back into the producer.

    ``i_stream.ready`` is the inverse of one register: the buffer is empty. A beat offered
    while the consumer refuses is held; the held beat goes first, and the producer waits
    until it has gone. When the consumer is ready, beats pass straight through (``valid``
    and ``payload`` through one multiplexer), one per cycle.

    Parameters
    ----------
    shape : ShapeLike
        The payload's shape (a layout for structured payloads).

    Members
    -------
    i_stream : In(stream.Signature(shape))
        From the producer; ``ready`` comes from a flip-flop.
    o_stream : Out(stream.Signature(shape))
        To the consumer.
    """

    def __init__(self, shape):
        self.shape = shape
        super().__init__({"i_stream": In(stream.Signature(shape)), "o_stream": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        held = Signal(self.shape, reset_less=True)
        i, o = self.i_stream, self.o_stream
        m.d.comb += [
            i.ready.eq(~full),
            o.valid.eq(full | i.valid),
            o.payload.eq(Mux(full, held, i.payload)),
        ]
        with m.If(full):
            with m.If(o.ready):
                m.d.sync += full.eq(0)
        with m.Elif(i.valid & ~o.ready):
            m.d.sync += [full.eq(1), held.eq(i.payload)]
        return m
