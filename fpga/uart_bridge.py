"""UART-to-Wishbone bridge speaking LiteX's UARTBone framing."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["UartBridge", "CMD_WRITE_INCR", "CMD_READ_INCR", "CMD_WRITE_FIXED", "CMD_READ_FIXED"]

#: Frame commands, as LiteX's ``litex/tools/remote/comm_uart.py`` sends them.
CMD_WRITE_INCR = 0x01
CMD_READ_INCR = 0x02
CMD_WRITE_FIXED = 0x03
CMD_READ_FIXED = 0x04


def _check_cycles(what: str, value, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < 1 << 32:
        raise ValueError(f"{what} must be an integer from {lo} to {(1 << 32) - 1}, not {value!r}")


class UartBridge(wiring.Component):
    """Wishbone master driven by UARTBone frames (LiteX-compatible).

    A frame is ``command, length, address (4 bytes, big-endian, a *word* address),``
    then for writes ``length`` 32-bit words (big-endian). Commands: 0x01 write and 0x02
    read with incrementing address, 0x03 write and 0x04 read at a fixed address. A read
    answers ``length`` big-endian words; a write answers nothing (as in LiteX). A length of
    0 is an empty frame.

    Robustness (the hardware never hangs):

    - a byte that is not a command where a frame must start is dropped and counted in
      ``bad_commands``;
    - ``timeout_cycles`` without a byte in the middle of a frame drop the frame and count
      in ``frame_timeouts``: after a stall or a truncated frame the bridge waits for a new
      command;
    - a bus access answered with ``err``, not answered within ``bus_timeout_cycles``, or
      aimed beyond the bus's address width counts in ``bus_errors``; such a read returns 0
      so the host still receives ``length`` words.

    Parameters
    ----------
    addr_width : int
        Word-address width of the bus (as :class:`WishboneSignature`).
    timeout_cycles : int
        Idle cycles within a frame before it is dropped (at least 2).
    bus_timeout_cycles : int
        Cycles a bus access may wait for ``ack``/``err`` (at least 2).

    Members
    -------
    i_stream : In(stream.Signature(8))
        Bytes from the UART receiver.
    o_stream : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    bus : Out(WishboneSignature(addr_width))
        The master side of the CSR bus.
    frames : Out(32)
        Complete frames executed (wrapping).
    bad_commands, frame_timeouts, bus_errors : Out(16)
        Error counters (saturating).

    Raises
    ------
    TypeError
        When ``addr_width`` is not an integer from 1 to 30.
    ValueError
        When a timeout is not an integer of at least 2.
    """

    def __init__(self, addr_width: int, *, timeout_cycles: int, bus_timeout_cycles: int = 64):
        _check_cycles("bridge timeout_cycles", timeout_cycles, 2)
        _check_cycles("bridge bus_timeout_cycles", bus_timeout_cycles, 2)
        self.timeout_cycles = timeout_cycles
        self.bus_timeout_cycles = bus_timeout_cycles
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_stream": Out(stream.Signature(8)),
            "bus": Out(WishboneSignature(addr_width)),
            "frames": Out(32),
            "bad_commands": Out(16),
            "frame_timeouts": Out(16),
            "bus_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        addr_width = len(bus.adr)

        command = Signal(3)
        length = Signal(8)
        words_done = Signal(8)
        address = Signal(32)
        data = Signal(32)
        byte_index = Signal(2)
        idle = Signal(range(self.timeout_cycles + 1))
        bus_wait = Signal(range(self.bus_timeout_cycles + 1))

        is_write = (command == CMD_WRITE_INCR) | (command == CMD_WRITE_FIXED)
        is_incr = (command == CMD_WRITE_INCR) | (command == CMD_READ_INCR)
        in_range = address[addr_width:] == 0 if addr_width < 32 else Const(1)
        byte_in = self.i_stream.valid & self.i_stream.ready

        def count(counter):
            with m.If(counter != (1 << len(counter)) - 1):
                m.d.sync += counter.eq(counter + 1)

        def next_word():
            """After a word: advance the address, finish the frame or take the next word."""
            m.d.sync += [words_done.eq(words_done + 1), byte_index.eq(0)]
            with m.If(is_incr):
                m.d.sync += address.eq(address + 1)
            with m.If(words_done + 1 == length):
                m.d.sync += self.frames.eq(self.frames + 1)
                m.next = "COMMAND"
            with m.Elif(is_write):
                m.next = "WRITE_DATA"
            with m.Else():
                m.next = "BUS"

        m.d.comb += [
            bus.adr.eq(address[:addr_width]),
            bus.dat_w.eq(data),
            bus.sel.eq(0b1111),
            bus.we.eq(is_write),
        ]

        timed_out = Signal()
        waiting = Signal()
        m.d.comb += timed_out.eq(idle == self.timeout_cycles)
        # in the middle of a frame, waiting for its next byte: count idle cycles
        with m.If(waiting & ~byte_in & ~timed_out):
            m.d.sync += idle.eq(idle + 1)
        with m.Elif(~waiting | byte_in):
            m.d.sync += idle.eq(0)

        def drop_stalled_frame():
            with m.If(timed_out):
                count(self.frame_timeouts)
                m.next = "COMMAND"

        with m.FSM(name="bridge_fsm"):
            with m.State("COMMAND"):
                m.d.comb += self.i_stream.ready.eq(1)
                m.d.sync += [byte_index.eq(0), words_done.eq(0)]
                with m.If(byte_in):
                    payload = self.i_stream.payload
                    with m.If((payload >= CMD_WRITE_INCR) & (payload <= CMD_READ_FIXED)):
                        m.d.sync += command.eq(payload[:3])
                        m.next = "LENGTH"
                    with m.Else():
                        count(self.bad_commands)

            with m.State("LENGTH"):
                m.d.comb += [self.i_stream.ready.eq(~timed_out), waiting.eq(1)]
                drop_stalled_frame()
                with m.If(byte_in):
                    m.d.sync += length.eq(self.i_stream.payload)
                    m.next = "ADDRESS"

            with m.State("ADDRESS"):
                m.d.comb += [self.i_stream.ready.eq(~timed_out), waiting.eq(1)]
                drop_stalled_frame()
                with m.If(byte_in):
                    m.d.sync += [address.eq(Cat(self.i_stream.payload, address[:24])),
                                 byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == 3):
                        with m.If(length == 0):
                            m.d.sync += self.frames.eq(self.frames + 1)
                            m.next = "COMMAND"
                        with m.Elif(is_write):
                            m.next = "WRITE_DATA"
                        with m.Else():
                            m.next = "BUS"

            with m.State("WRITE_DATA"):
                m.d.comb += [self.i_stream.ready.eq(~timed_out), waiting.eq(1)]
                drop_stalled_frame()
                with m.If(byte_in):
                    m.d.sync += [data.eq(Cat(self.i_stream.payload, data[:24])),
                                 byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == 3):
                        m.next = "BUS"

            with m.State("BUS"):
                m.d.sync += bus_wait.eq(bus_wait + 1)
                with m.If(~in_range):
                    count(self.bus_errors)
                    m.d.sync += [data.eq(0), bus_wait.eq(0)]
                    m.next = "ANSWER"
                with m.Else():
                    m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1)]
                    with m.If(bus.ack):
                        m.d.sync += [data.eq(bus.dat_r), bus_wait.eq(0)]
                        m.next = "ANSWER"
                    with m.Elif(bus.err | (bus_wait == self.bus_timeout_cycles)):
                        count(self.bus_errors)
                        m.d.sync += [data.eq(0), bus_wait.eq(0)]
                        m.next = "ANSWER"

            with m.State("ANSWER"):
                with m.If(is_write):
                    next_word()
                with m.Else():
                    m.d.comb += [self.o_stream.valid.eq(1), self.o_stream.payload.eq(data[24:])]
                    with m.If(self.o_stream.ready):
                        m.d.sync += [data.eq(Cat(Const(0, 8), data[:24])), byte_index.eq(byte_index + 1)]
                        with m.If(byte_index == 3):
                            next_word()

        return m
