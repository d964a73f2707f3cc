"""The simulated board: the FPGA top under Verilator, its UART bridged to a TCP socket.

The host driver's :class:`~neurophase.fpga.transports.SocketTransport` connects to the
socket this cocotb process listens on; every byte it sends is driven onto ``uart_rx`` bit
by bit, and every byte the top transmits on ``uart_tx`` is sampled bit by bit and sent
back. Python acts once per UART bit (``Timer``-based, never per clock); between bytes the
design runs freely in chunks of a few bit times.

Parameters come from the runner as JSON in ``NEUROPHASE_PARAMS``: ``divisor`` (clock
cycles per bit), ``port`` (0: any free port), ``port_file`` (where the port is written
once the socket listens), ``sessions`` (client connections to serve; 0: until killed),
``accept_timeout_s``.
"""

from __future__ import annotations

import json
import os
import select
import socket
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

CLOCK_NS = 10


class UartSocketBridge:
    """Bit-level UART driver and monitor between ``dut.uart_rx``/``dut.uart_tx`` and a socket."""

    def __init__(self, dut, divisor: int):
        self.dut = dut
        self.bit_ns = divisor * CLOCK_NS
        self.connection: socket.socket | None = None
        self.bytes_in = 0
        self.bytes_out = 0
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
            if self.connection is not None:
                try:
                    self.connection.sendall(bytes([value]))
                except OSError:
                    self.connection = None

    async def serve(self, connection: socket.socket) -> None:
        """Move bytes until the client closes the connection."""
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
        # let the last answer leave before the next session
        await Timer(40 * self.bit_ns, unit="ns")
        self.connection = None


def _settings() -> dict:
    return json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))


@cocotb.test()
async def serve_host(dut):
    """Serve host sessions over a TCP socket until the requested number have ended."""
    settings = _settings()
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    bridge = UartSocketBridge(dut, int(settings["divisor"]))
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
        Path(settings["port_file"]).write_text(f"{port}\n", encoding="utf-8")
    dut._log.info(f"simulated board listening on {settings.get('host', '127.0.0.1')}:{port}")
    sessions = int(settings.get("sessions", 1))
    served = 0
    server.settimeout(float(settings.get("accept_timeout_s", 120)))
    try:
        while sessions == 0 or served < sessions:
            try:
                connection, peer = server.accept()
            except socket.timeout:
                raise AssertionError(f"no host connected within {settings.get('accept_timeout_s', 120)} s") from None
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dut._log.info(f"host connected from {peer[0]}:{peer[1]}")
            await bridge.serve(connection)
            connection.close()
            served += 1
            dut._log.info(f"session {served} ended: {bridge.bytes_in} bytes in, {bridge.bytes_out} bytes out")
    finally:
        server.close()
