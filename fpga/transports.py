"""Byte transports to the FPGA top and the UARTBone link that runs over any of them.

Shaped like LiteX's ``litex/tools/remote/comm_*.py``: every transport offers ``open``,
``close``, ``write(data)`` and ``read(count)``; :class:`UartBoneLink` speaks the bridge's
frames (LiteX-compatible) over one. The same host code reaches the board through
:class:`SerialTransport` and the simulated board through :class:`SocketTransport`;
:func:`open_transport` picks one from a URL (``socket://host:port`` or a serial port).
"""

from __future__ import annotations

import abc

import select
import socket
import time
from urllib.parse import parse_qs, urlparse

from neurophase.fpga.uart_bridge import CMD_READ_FIXED, CMD_READ_INCR, CMD_WRITE_FIXED, CMD_WRITE_INCR

__all__ = ["LinkError", "LinkTimeout", "LinkDesync", "Transport", "SerialTransport", "SocketTransport", "UartBoneLink",
           "open_transport", "MAX_BURST"]

#: Words per UARTBone frame (the length is one byte).
MAX_BURST = 255


class LinkError(RuntimeError):
    """The host link failed (cannot open, closed by the other side)."""


class LinkTimeout(LinkError):
    """The bridge did not answer a read in time."""


class LinkDesync(LinkError):
    """Bytes arrived that no read asked for: the host and the bridge are out of step (an
    answer to an earlier, timed-out read, or a frame started by stray bytes).
    :meth:`neurophase.fpga.host.NeuroPhaseHost.resynchronise` recovers the link."""


class Transport(abc.ABC):
    """Base of the byte transports: ``open``/``close``/``write``/``read`` and a context manager."""

    timeout: float = 2.0
    #: Seconds of silence after which the bridge has surely dropped a partial frame.
    resync_quiet_s: float = 0.1
    #: Whether a new host session must resynchronise the link itself: the board's bridge
    #: may still hold a frame an earlier host left unfinished. The simulated board does it
    #: for each connection itself.
    resync_on_open: bool = True

    @abc.abstractmethod
    def open(self) -> None:
        """Connect."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send ``data``."""

    @abc.abstractmethod
    def read(self, count: int) -> bytes:
        """Exactly ``count`` bytes, or raise :class:`LinkTimeout` after ``timeout`` seconds."""

    @abc.abstractmethod
    def discard_input(self) -> bytes:
        """Drop (and return) whatever has arrived but was not read."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """A serial port (the board's USB-serial) through pyserial.

    Parameters
    ----------
    port : str
        Device or pyserial URL (``/dev/ttyUSB0``, ``loop://``).
    baud : int
        Bit rate; must equal the bitstream's ``fpga.baud``.
    timeout : float
        Seconds a read may take.
    """

    def __init__(self, port: str, baud: int, *, timeout: float = 2.0):
        self.port, self.baud, self.timeout = port, baud, timeout
        self._serial = None

    def open(self) -> None:
        import serial

        try:
            self._serial = serial.serial_for_url(self.port, self.baud, timeout=self.timeout)
        except (serial.SerialException, ValueError) as exc:
            raise LinkError(f"cannot open serial port {self.port!r} at {self.baud} baud: {exc}") from None

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def write(self, data: bytes) -> None:
        self._serial.write(data)
        self._serial.flush()

    def read(self, count: int) -> bytes:
        data = self._serial.read(count)
        if len(data) < count:
            raise LinkTimeout(f"serial port {self.port!r}: {len(data)} of {count} bytes within {self.timeout} s; "
                              "a late answer would put the link out of step: resynchronise() before going on")
        return data

    def discard_input(self) -> bytes:
        waiting = self._serial.in_waiting
        return self._serial.read(waiting) if waiting else b""


class SocketTransport(Transport):
    """A TCP connection to the simulated board (``neurophase fpga sim``).

    Parameters
    ----------
    host, port : str, int
        Where the simulation listens.
    timeout : float
        Seconds a read may take (simulation is slower than the board).
    connect_timeout : float
        Seconds to keep retrying the connection while the simulation starts.
    """

    #: The simulation runs slower than real time while idle (see cosim/benches/fpga_board.py).
    resync_quiet_s = 3.0
    #: The simulated board resynchronises between connections before accepting the next.
    resync_on_open = False

    def __init__(self, host: str, port: int, *, timeout: float = 30.0, connect_timeout: float = 10.0):
        self.host, self.port, self.timeout, self.connect_timeout = host, port, timeout, connect_timeout
        self._sock: socket.socket | None = None

    def open(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise LinkError(f"cannot connect to the simulated board at {self.host}:{self.port}: "
                                    f"{exc.strerror or exc}") from None
                time.sleep(0.1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def read(self, count: int) -> bytes:
        data = b""
        deadline = time.monotonic() + self.timeout
        while len(data) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._sock], [], [], left)[0]:
                raise LinkTimeout(f"simulated board: {len(data)} of {count} bytes within {self.timeout} s; "
                                  "a late answer would put the link out of step: resynchronise() before going on")
            chunk = self._sock.recv(count - len(data))
            if not chunk:
                raise LinkError("the simulated board closed the connection")
            data += chunk
        return data

    def discard_input(self) -> bytes:
        data = b""
        while select.select([self._sock], [], [], 0)[0]:
            chunk = self._sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def open_transport(url: str, *, baud: int = 1_000_000, timeout: float | None = None) -> Transport:
    """A transport for ``url``: ``socket://host:port`` (simulated board) or a serial port
    (``/dev/ttyUSB0``, optionally ``?baud=N``), not yet opened.

    Raises
    ------
    ValueError
        For a socket URL without host or port.
    """
    parsed = urlparse(url)
    if parsed.scheme == "socket":
        if not parsed.hostname or parsed.port is None:
            raise ValueError(f"socket transport URL must look like 'socket://localhost:4567', not {url!r}")
        return SocketTransport(parsed.hostname, parsed.port, **({} if timeout is None else {"timeout": timeout}))
    query = parse_qs(parsed.query)
    if "baud" in query:
        baud = int(query["baud"][0])
        url = url.split("?", 1)[0]
    return SerialTransport(url, baud, **({} if timeout is None else {"timeout": timeout}))


class UartBoneLink:
    """32-bit reads and writes at byte addresses over a transport, in UARTBone frames.

    Writes are posted (the bridge does not answer them, as in LiteX); reads wait for their
    words. Bursts longer than :data:`MAX_BURST` words are split into several frames.

    Parameters
    ----------
    transport : Transport
        An open transport.
    """

    def __init__(self, transport: Transport):
        self.transport = transport

    @staticmethod
    def _header(command: int, address: int, length: int) -> bytes:
        if address % 4 or not 0 <= address < 1 << 34:
            raise ValueError(f"bus address must be a non-negative multiple of 4 below 2**34, not {address:#x}")
        return bytes([command, length]) + (address // 4).to_bytes(4, "big")

    def write(self, address: int, words, *, increment: bool = True) -> None:
        """Write ``words`` (an int or a sequence) from byte ``address`` on."""
        words = [words] if isinstance(words, int) else list(words)
        command = CMD_WRITE_INCR if increment else CMD_WRITE_FIXED
        frames = []
        for start in range(0, len(words), MAX_BURST):
            chunk = words[start:start + MAX_BURST]
            at = address + 4 * start if increment else address
            payload = b"".join((w & 0xFFFF_FFFF).to_bytes(4, "big") for w in chunk)
            frames.append(self._header(command, at, len(chunk)) + payload)
        self.transport.write(b"".join(frames))

    def read(self, address: int, count: int = 1, *, increment: bool = True) -> list[int]:
        """``count`` words from byte ``address`` on.

        Raises
        ------
        LinkDesync
            When bytes that no read asked for are waiting before a read frame is sent: the
            words that follow could not be told apart from them.
        LinkTimeout
            When the answer does not arrive within the transport's timeout.
        """
        command = CMD_READ_INCR if increment else CMD_READ_FIXED
        words: list[int] = []
        for start in range(0, count, MAX_BURST):
            length = min(MAX_BURST, count - start)
            at = address + 4 * start if increment else address
            stale = self.transport.discard_input()
            if stale:
                raise LinkDesync(f"{len(stale)} byte(s) arrived that no read asked for (starting "
                                 f"{stale[:8].hex(' ')}): the link is out of step, after a timed-out read or stray "
                                 "bytes on the line; resynchronise() recovers it")
            self.transport.write(self._header(command, at, length))
            data = self.transport.read(4 * length)
            words += [int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4)]
        return words

    def resynchronise(self, quiet_s: float) -> bytes:
        """Recover after a lost answer: stay silent ``quiet_s`` (longer than the bridge's
        frame timeout), so the bridge drops any partial frame, then drop stale input."""
        time.sleep(quiet_s)
        return self.transport.discard_input()
