"""Wishbone-classic bus signature (not a component)."""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WishboneSignature"]


class WishboneSignature(wiring.Signature):
    """Wishbone classic, 32-bit data, byte lanes, word addresses (as LiteX's ``wishbone``).

    Seen from the master: ``adr`` is the byte address shifted right by 2; ``sel`` has a
    bit per byte of ``dat_w``. A transfer lasts while ``cyc`` and ``stb`` are high and ends
    with one cycle of ``ack`` (done) or ``err`` (refused). Slaves take the flipped
    signature (``In(WishboneSignature(...))``).

    Parameters
    ----------
    addr_width : int
        Width of ``adr`` (word address), 1 to 30.

    Members
    -------
    adr : Out(addr_width)
    dat_w : Out(32)
    sel : Out(4)
    cyc, stb, we : Out(1)
    dat_r : In(32)
    ack, err : In(1)

    Raises
    ------
    TypeError
        When ``addr_width`` is not an integer from 1 to 30.
    """

    DATA_WIDTH = 32

    def __init__(self, addr_width: int):
        if isinstance(addr_width, bool) or not isinstance(addr_width, int) or not 1 <= addr_width <= 30:
            raise TypeError(f"Wishbone address width must be an integer from 1 to 30, not {addr_width!r}")
        self.addr_width = addr_width
        super().__init__({
            "adr": Out(addr_width),
            "dat_w": Out(self.DATA_WIDTH),
            "sel": Out(self.DATA_WIDTH // 8),
            "cyc": Out(1),
            "stb": Out(1),
            "we": Out(1),
            "dat_r": In(self.DATA_WIDTH),
            "ack": In(1),
            "err": In(1),
        })

    def __eq__(self, other):
        return isinstance(other, WishboneSignature) and self.addr_width == other.addr_width

    def __repr__(self):
        return f"WishboneSignature(addr_width={self.addr_width})"
