"""UART receiver: 8 data bits, no parity, one stop bit (8N1), LSB first."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx"]


def check_divisor(divisor) -> None:
    """Raise ValueError unless ``divisor`` (clock cycles per bit) is an integer >= 4."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART clock cycles per bit must be an integer of at least 4, not {divisor!r}")


class UartRx(wiring.Component):
    """UART receiver (8N1) with a two-flop synchroniser on the line.

    A falling edge starts a byte; every bit is sampled in its middle. A byte whose stop
    bit reads 0 is dropped and counted as a framing error. A received byte waits on
    ``o_stream`` until taken; a byte completed while the previous one still waits
    replaces it and is counted as an overrun.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (clock frequency / baud rate), at least 4.

    Members
    -------
    rx : In(1)
        The serial line (idle high).
    o_stream : Out(stream.Signature(8))
        Received bytes.
    framing_errors : Out(16)
        Bytes dropped for a missing stop bit (saturating).
    overruns : Out(16)
        Bytes overwritten before they were taken (saturating).

    Raises
    ------
    ValueError
        When ``divisor`` is not an integer of at least 4.
    """

    rx: In(1, init=1)
    o_stream: Out(stream.Signature(8))
    framing_errors: Out(16)
    overruns: Out(16)

    def __init__(self, divisor: int):
        check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(10))
        shift = Signal(8)

        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)

        def saturating_increment(counter):
            with m.If(counter != (1 << len(counter)) - 1):
                m.d.sync += counter.eq(counter + 1)

        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~line):
                    # first sample in the middle of data bit 0: 1.5 bit times after the edge
                    m.d.sync += [timer.eq(self.divisor + self.divisor // 2 - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += timer.eq(self.divisor - 1)
                    with m.If(bit == 8):
                        m.next = "STOP_DONE"
                        with m.If(line):
                            m.d.sync += [self.o_stream.payload.eq(shift), self.o_stream.valid.eq(1)]
                            with m.If(self.o_stream.valid & ~self.o_stream.ready):
                                saturating_increment(self.overruns)
                        with m.Else():
                            saturating_increment(self.framing_errors)
                    with m.Else():
                        m.d.sync += [shift.eq(Cat(shift[1:], line)), bit.eq(bit + 1)]
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP_DONE"):
                # wait for the line to be idle (high) again, so a break does not repeat bytes
                with m.If(line):
                    m.next = "IDLE"
        return m

