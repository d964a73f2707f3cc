"""The simulated board: the FPGA top under Verilator, its UART bridged to a TCP socket.

The host driver's :class:`~neurophase.fpga.transports.SocketTransport` connects to the
socket this cocotb process listens on; every byte it sends is driven onto ``uart_rx`` bit
by bit, and every byte the top transmits on ``uart_tx`` is sampled bit by bit and sent
back. Python acts once per UART bit (``Timer``-based, never per clock); between bytes the
design runs freely in chunks of a few bit times.

Every host session starts on a resynchronised link: when a host closes (or half-closes)
its connection, the board keeps running with its receive line idle until the transmit
line has been quiet for longer than the bridge's frame timeout. By then the bridge has
dropped any frame the host left unfinished and sent every answer it owed; answers still
go to the closing host while it listens, never to the next one. Only then is the next
connection accepted.

Parameters come from the runner as JSON in ``NEUROPHASE_PARAMS``: ``divisor`` (clock
cycles per bit), ``port`` (0: any free port), ``port_file`` (where the port is written
once the socket listens), ``sessions`` (client connections to serve; 0: until the
process is interrupted or ``stop_file`` appears), ``accept_timeout_s`` (how long to wait
for each connection when ``sessions`` is not 0), ``frame_timeout_bits`` (the bridge's
frame timeout in bit times), ``stop_file``.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from neurophase.atomic import write_text_atomic

CLOCK_NS = 10
#: Seconds between checks for the stop file while waiting for a host.
ACCEPT_POLL_S = 0.5


class UartSocketBridge:
    """Bit-level UART driver and monitor between ``dut.uart_rx``/``dut.uart_tx`` and a socket."""

    def __init__(self, dut, divisor: int, frame_timeout_bits: int):
        self.dut = dut
        self.bit_ns = divisor * CLOCK_NS
        self.frame_timeout_bits = frame_timeout_bits
        self.connection: socket.socket | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.bytes_dropped = 0
        dut.uart_rx.value = 1

    async def send_byte(self, value: int) -> None:
        """Drive one 8N1 frame on ``uart_rx``: start bit, eight data bits LSB first, stop bit."""
        for bit in [0, *((value >> i) & 1 for i in range(8)), 1]:
            self.dut.uart_rx.value = bit
            await Timer(self.bit_ns, unit="ns")
        self.bytes_in += 1

    async def monitor_tx(self) -> None:
        """Sample every byte the top sends in the middle of its bits and forward it."""
        while True:
            await FallingEdge(self.dut.uart_tx)
            await Timer(self.bit_ns + self.bit_ns // 2, unit="ns")
            value = 0
            for i in range(8):
                value |= int(self.dut.uart_tx.value) << i
                await Timer(self.bit_ns, unit="ns")
            self.bytes_out += 1
            if self.connection is None:
                self.bytes_dropped += 1
                continue
            try:
                self.connection.sendall(bytes([value]))
            except OSError:  # the host is gone: what it was owed goes nowhere
                self.connection = None
                self.bytes_dropped += 1

    async def serve(self, connection: socket.socket) -> None:
        """Move bytes until the client closes (or half-closes) the connection, then
        :meth:`resynchronise`."""
        self.connection = connection
        idle_rounds = 0
        while True:
            wait = 0 if idle_rounds < 256 else 0.002
            readable = select.select([connection], [], [], wait)[0]
            if readable:
                try:
                    data = connection.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    break
                for value in data:
                    await self.send_byte(value)
                idle_rounds = 0
            else:
                # idle: run the design on; after a while in bigger steps, so a host's silence
                # of a few seconds covers the bridge's frame timeout (SIM_FRAME_TIMEOUT_BYTES)
                await Timer((4 if idle_rounds < 256 else 64) * self.bit_ns, unit="ns")
                idle_rounds += 1
        await self.resynchronise()
        self.connection = None

    async def resynchronise(self) -> None:
        """Run on with ``uart_rx`` idle until ``uart_tx`` has been quiet for longer than the
        bridge's frame timeout plus a byte: any unfinished frame is dropped, every answer
        sent (to the closing host while it still listens)."""
        self.dut.uart_rx.value = 1
        quiet_needed = self.frame_timeout_bits + 20
        step = 16
        quiet, seen = 0, self.bytes_out
        while quiet < quiet_needed:
            await Timer(step * self.bit_ns, unit="ns")
            if self.bytes_out != seen or int(self.dut.uart_tx.value) == 0:
                quiet, seen = 0, self.bytes_out
            else:
                quiet += step


def _settings() -> dict:
    return json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))


@cocotb.test()
async def serve_host(dut):
    """Serve host sessions over a TCP socket until the requested number have ended."""
    settings = _settings()
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    bridge = UartSocketBridge(dut, int(settings["divisor"]), int(settings.get("frame_timeout_bits", 2000)))
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    cocotb.start_soon(bridge.monitor_tx())

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((settings.get("host", "127.0.0.1"), int(settings.get("port", 0))))
    server.listen(1)
    port = server.getsockname()[1]
    if settings.get("port_file"):
        write_text_atomic(settings["port_file"], f"{port}\n")
    dut._log.info(f"simulated board listening on {settings.get('host', '127.0.0.1')}:{port}")
    sessions = int(settings.get("sessions", 1))
    served = 0
    try:
        while sessions == 0 or served < sessions:
            accepted = _accept(server, sessions, float(settings.get("accept_timeout_s", 120)),
                               settings.get("stop_file") or None)
            if accepted is None:
                dut._log.info("stop file found: the simulated board stops")
                break
            connection, peer = accepted
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dut._log.info(f"host connected from {peer[0]}:{peer[1]}")
            counts = (bridge.bytes_in, bridge.bytes_out, bridge.bytes_dropped)
            await bridge.serve(connection)
            connection.close()
            served += 1
            bytes_in, bytes_out, dropped = (now - then for now, then in zip(
                (bridge.bytes_in, bridge.bytes_out, bridge.bytes_dropped), counts))
            dut._log.info(f"session {served} ended: {bytes_in} bytes in, {bytes_out} bytes out, "
                          f"{dropped} of them dropped (the host had stopped listening)")
    finally:
        server.close()


def _accept(server: socket.socket, sessions: int, timeout_s: float, stop_file: str | None):
    """The next connection, or None once ``stop_file`` exists. With ``sessions`` 0 it waits
    for ever; otherwise at most ``timeout_s`` (then the test fails)."""
    server.settimeout(ACCEPT_POLL_S)
    deadline = time.monotonic() + timeout_s
    while True:
        if stop_file and Path(stop_file).exists():
            return None
        try:
            return server.accept()
        except socket.timeout:
            if sessions and time.monotonic() > deadline:
                raise AssertionError(f"no host connected within {timeout_s} s") from None
