"""cocotb Wishbone-classic bus master for the generated CSR bank.

One ``read``/``write`` API, the one the host driver's transports share: byte addresses,
32-bit data, :class:`~neurophase.models.csr_model.BusError` on ``err``. :meth:`access`
returns the raw :class:`~neurophase.models.csr_model.Response` for tests that expect
errors.
"""

from __future__ import annotations

from cocotb.triggers import ReadOnly, RisingEdge

from neurophase.cosim.ports import port_name
from neurophase.models.csr_model import BusError, Response
from neurophase.regmap import WORD_BYTES

__all__ = ["WishboneMaster", "BusTimeout"]

_SIGNALS = ("adr", "dat_w", "dat_r", "sel", "cyc", "stb", "we", "ack", "err")


class BusTimeout(AssertionError):
    """The slave answered neither ``ack`` nor ``err`` in time: the bus is locked."""


class WishboneMaster:
    """Drives the ``In(WishboneSignature)`` port ``name`` of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
        Top level with the bus ports (``<name>__adr`` ...).
    clock : cocotb handle
        The bus clock.
    name : str
        Signature member of the bus.
    timeout_cycles : int
        Cycles to wait for ``ack``/``err`` before raising :class:`BusTimeout`.
    """

    def __init__(self, dut, clock, name: str = "bus", *, timeout_cycles: int = 16):
        self.clock = clock
        self.timeout_cycles = timeout_cycles
        self.port = {signal: getattr(dut, port_name(name, signal)) for signal in _SIGNALS}
        self.cycles = 0
        self.answer_cycles = 0   # of the last access: cycles from its start to its answer
        self._idle()

    def _idle(self) -> None:
        for signal in ("cyc", "stb", "we", "sel", "adr", "dat_w"):
            self.port[signal].value = 0

    async def access(self, address: int, data: int | None = None, sel: int = 0b1111) -> Response:
        """One transfer: a read when ``data`` is None, else a write; returns the answer."""
        if address % WORD_BYTES or address < 0:
            raise ValueError(f"bus address must be a non-negative multiple of {WORD_BYTES}, not {address:#x}")
        self.port["adr"].value = address // WORD_BYTES
        self.port["we"].value = int(data is not None)
        self.port["dat_w"].value = 0 if data is None else data & 0xFFFF_FFFF
        self.port["sel"].value = sel
        self.port["cyc"].value = 1
        self.port["stb"].value = 1
        for waited in range(1, self.timeout_cycles + 1):
            await RisingEdge(self.clock)
            await ReadOnly()
            ack, err = int(self.port["ack"].value), int(self.port["err"].value)
            if ack or err:
                response = Response(bool(ack), self.port["dat_r"].value.to_unsigned() if ack else 0)
                await RisingEdge(self.clock)
                self._idle()
                self.cycles += waited + 1
                self.answer_cycles = waited
                return response
        raise BusTimeout(f"no ack or err {self.timeout_cycles} cycles after an access to {address:#x}")

    async def read(self, address: int) -> int:
        """The word at byte ``address``; raises BusError when the slave answers ``err``."""
        response = await self.access(address)
        if not response.ok:
            raise BusError(f"read of {address:#x} answered with err")
        return response.data

    async def write(self, address: int, data: int, sel: int = 0b1111) -> None:
        """Write ``data`` at byte ``address``; raises BusError when the slave answers ``err``."""
        response = await self.access(address, data, sel)
        if not response.ok:
            raise BusError(f"write of {data:#x} to {address:#x} answered with err")

    async def abandon(self, address: int, data: int | None = None) -> None:
        """Start an access and drop ``cyc`` after one cycle, before the answer is taken."""
        self.port["adr"].value = address // WORD_BYTES
        self.port["we"].value = int(data is not None)
        self.port["dat_w"].value = data or 0
        self.port["sel"].value = 0b1111
        self.port["cyc"].value = 1
        self.port["stb"].value = 1
        await RisingEdge(self.clock)
        self._idle()
        await RisingEdge(self.clock)
