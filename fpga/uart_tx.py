"""UART transmitter: 8 data bits, no parity, one stop bit (8N1), LSB first."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.fpga.uart_rx import check_divisor

__all__ = ["UartTx"]


class UartTx(wiring.Component):
    """UART transmitter (8N1).

    Takes a byte from ``i_stream`` whenever the line is idle and shifts out the start bit,
    the eight data bits (LSB first) and the stop bit, ``divisor`` cycles each.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (clock frequency / baud rate), at least 4.

    Members
    -------
    i_stream : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        The serial line (idle high).

    Raises
    ------
    ValueError
        When ``divisor`` is not an integer of at least 4.
    """

    i_stream: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        frame = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))

        m.d.comb += [self.tx.eq(frame[0]), self.i_stream.ready.eq(bits_left == 0)]
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [
                frame.eq(Cat(Const(0, 1), self.i_stream.payload, Const(1, 1))),
                bits_left.eq(10),
                timer.eq(self.divisor - 1),
            ]
        with m.Elif(bits_left != 0):
            with m.If(timer == 0):
                m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), bits_left.eq(bits_left - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
