"""Command guard: refuses a command-bit write on a Wishbone bus while a condition holds."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["CommandGuard"]


class CommandGuard(wiring.Component):
    """Passes a Wishbone-classic bus through, except a write that sets command bit
    ``bit`` of word ``word_address`` while ``block`` is high: that write is answered with
    ``err`` one cycle later, never reaches the slave, and pulses ``refused``.

    Two engines that share one resource (the crossbar: MVMs and program-verify) each get a
    guard on their start command, blocked while the other is busy, so firmware that
    starts one during the other learns it from the bus error instead of corrupting both.

    Parameters
    ----------
    addr_width : int
        Word-address width of the bus.
    word_address : int
        Word address (byte address / 4) of the register holding the command bit.
    bit : int
        Position of the command bit in the 32-bit data word.

    Members
    -------
    upstream : In(WishboneSignature(addr_width))
        From the master (or decoder).
    downstream : Out(WishboneSignature(addr_width))
        To the slave.
    block : In(1)
        While high, the guarded command is refused.
    refused : Out(1)
        One-cycle strobe for each refused write.

    Raises
    ------
    ValueError
        When ``word_address`` does not fit ``addr_width`` or ``bit`` is not 0 to 31.
    """

    def __init__(self, addr_width: int, word_address: int, bit: int):
        if isinstance(word_address, bool) or not isinstance(word_address, int) or not 0 <= word_address < 2**addr_width:
            raise ValueError(f"word_address must be an integer from 0 to {2**addr_width - 1}, not {word_address!r}")
        if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit < WishboneSignature.DATA_WIDTH:
            raise ValueError(f"bit must be an integer from 0 to 31, not {bit!r}")
        self.word_address, self.bit = word_address, bit
        super().__init__({
            "upstream": In(WishboneSignature(addr_width)),
            "downstream": Out(WishboneSignature(addr_width)),
            "block": In(1),
            "refused": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        up, down = self.upstream, self.downstream
        guarded = Signal()
        answered = Signal()
        m.d.comb += guarded.eq(self.block & up.cyc & up.stb & up.we & (up.adr == self.word_address)
                               & up.sel[self.bit // 8] & up.dat_w[self.bit])
        m.d.sync += answered.eq(guarded & ~answered)
        m.d.comb += [
            down.adr.eq(up.adr),
            down.dat_w.eq(up.dat_w),
            down.sel.eq(up.sel),
            down.we.eq(up.we),
            down.cyc.eq(up.cyc & ~guarded),
            down.stb.eq(up.stb & ~guarded),
            up.dat_r.eq(down.dat_r),
            up.ack.eq(down.ack & ~guarded),
            up.err.eq(down.err | (guarded & answered)),
            self.refused.eq(guarded & answered),
        ]
        return m
