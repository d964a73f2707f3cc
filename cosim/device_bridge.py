"""The bridge between the program-verify controller's ports and the numpy device model.

Shaped like cocotb's ``examples/analog_model``: the physics is plain Python
(:class:`~neurophase.models.program_verify.DeviceArray`), and a thin coroutine
(:meth:`DeviceBridge.run`) answers the controller:

- ``read_req`` -> one :meth:`DeviceArray.read` of the row, delivered on ``read_resp``
  ``read_latency_cycles`` later (one transfer carries every physical column's code);
- ``pulse``    -> after the pulse's duration (``pulse_overhead_cycles`` +
  ``width * cycles_per_width``) ``ready`` for one cycle, and, if the controller still
  offered the command on that edge, one :meth:`DeviceArray.pulse` on the masked devices.

Python wakes once per request (on the rising edge of a ``valid``) and skips the pulse
and conversion times with one ``Timer`` each: it never runs per clock cycle. Every read
and every accepted command is logged and handed to the optional callbacks, which is
where a golden-model checker attaches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

from neurophase.cosim.ports import port_name, unpack
from neurophase.models.program_verify import DeviceArray, PulseCommand

__all__ = ["DeviceBridge", "pack_codes", "unpack_mask"]


def pack_codes(codes: np.ndarray, bits: int) -> int:
    """Signed codes (one per physical column, column 0 in the low bits) as one integer."""
    values = np.asarray(codes, dtype=np.int64) & ((1 << bits) - 1)
    planes = ((values[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()
    return int.from_bytes(np.packbits(planes, bitorder="little").tobytes(), "little")


def unpack_mask(mask: int, n: int) -> np.ndarray:
    """An ``n``-bit mask as a bool array, bit 0 first."""
    raw = np.frombuffer(int(mask).to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


class DeviceBridge:
    """Answers the controller's verify reads and pulses from a :class:`DeviceArray`.

    Parameters
    ----------
    dut : cocotb handle
        Top level with the ``read_req``, ``read_resp`` and ``pulse`` ports.
    pulse_layout : data.StructLayout
        Payload layout of the pulse port (:func:`neurophase.rtl.program_verify.program_verify_layouts`).
    array : DeviceArray
        The devices, in the controller's (rows, P) layout.
    period_ns : float
        Clock period (to turn cycles into ``Timer`` waits).
    read_latency_cycles, pulse_overhead_cycles, cycles_per_width : int
        Conversion time of a verify read; fixed and per-width-unit time of a pulse.
    on_read : callable(row, codes), optional
        Called with every verify read delivered.
    on_pulse : callable(PulseCommand), optional
        Called with every command the controller handed over (after it was applied).
    """

    def __init__(self, dut, pulse_layout, array: DeviceArray, *, period_ns: float = 10.0, read_latency_cycles: int = 16,
                 pulse_overhead_cycles: int = 2, cycles_per_width: int = 1,
                 on_read: Callable | None = None, on_pulse: Callable | None = None):
        self.dut = dut
        self.clock = dut.clk
        self.array = array
        self.pulse_layout = pulse_layout
        self.period_ns = period_ns
        self.read_latency_cycles = read_latency_cycles
        self.pulse_overhead_cycles = pulse_overhead_cycles
        self.cycles_per_width = cycles_per_width
        self.on_read = on_read
        self.on_pulse = on_pulse
        self.answering = True          # False: leave requests unanswered (timeout tests)
        self.reads: list[tuple[int, np.ndarray]] = []
        self.commands: list[PulseCommand] = []
        p = lambda *path: getattr(dut, port_name(*path))  # noqa: E731
        self.req_valid, self.req_ready, self.req_row = p("read_req", "valid"), p("read_req", "ready"), \
            p("read_req", "payload")
        self.resp_valid, self.resp_payload = p("read_resp", "valid"), p("read_resp", "payload")
        self.pulse_valid, self.pulse_ready, self.pulse_payload = p("pulse", "valid"), p("pulse", "ready"), \
            p("pulse", "payload")
        self.columns = array.shape[1]
        self.row_bits = max(1, (array.shape[0] - 1).bit_length())
        for signal in (self.req_ready, self.resp_valid, self.resp_payload, self.pulse_ready):
            signal.value = 0

    async def _wait(self, cycles: int) -> None:
        if cycles > 0:
            await Timer(cycles * self.period_ns, unit="ns")
        await RisingEdge(self.clock)

    async def _handshake(self, valid, ready, payload) -> int | None:
        """Raise ``ready`` for one edge (we are just after an edge); the payload if ``valid``
        met it on that edge, else None."""
        ready.value = 1
        await ReadOnly()
        taken = payload.value.to_unsigned() if valid.value else None
        await RisingEdge(self.clock)
        ready.value = 0
        return taken

    async def run(self) -> None:
        """Serve requests forever (start with ``cocotb.start_soon``). The controller drops
        ``valid`` between transactions, so each one starts with a rising edge."""
        while True:
            await First(RisingEdge(self.req_valid), RisingEdge(self.pulse_valid))
            if not self.answering:
                continue
            if self.req_valid.value:
                await self._serve_read()
            elif self.pulse_valid.value:
                await self._serve_pulse()

    async def _serve_read(self) -> None:
        taken = await self._handshake(self.req_valid, self.req_ready, self.req_row)
        if taken is None:
            return
        row = taken & ((1 << self.row_bits) - 1)
        codes = self.array.read(row)
        self.reads.append((row, codes))
        if self.on_read is not None:
            self.on_read(row, codes)
        await self._wait(self.read_latency_cycles)
        self.resp_payload.value = pack_codes(codes, self.array.adc_bits)
        self.resp_valid.value = 1
        await RisingEdge(self.clock)
        self.resp_valid.value = 0

    def _command(self, bits: int) -> PulseCommand:
        fields = unpack(self.pulse_layout, bits)
        return PulseCommand(fields["row"], fields["mask"], fields["polarity"], fields["amplitude"], fields["width"])

    async def _serve_pulse(self) -> None:
        offered = self._command(self.pulse_payload.value.to_unsigned())
        await self._wait(self.pulse_overhead_cycles + offered.width * self.cycles_per_width)
        taken = await self._handshake(self.pulse_valid, self.pulse_ready, self.pulse_payload)
        if taken is None:
            return
        command = self._command(taken)
        self.array.pulse(command.row, unpack_mask(command.mask, self.columns), command.polarity,
                         command.amplitude, command.width)
        self.commands.append(command)
        if self.on_pulse is not None:
            self.on_pulse(command)
