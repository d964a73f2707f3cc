"""Wishbone buffer: one register stage on a Wishbone-classic bus, both ways."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["WishboneBuffer"]


class WishboneBuffer(wiring.Component):
    """Passes Wishbone-classic accesses through a register each way, so no combinational
    path runs from the master to the slave or back.

    An access seen on ``upstream`` is copied into registers and offered on ``downstream``
    from the next cycle; the slave's answer (``ack`` or ``err``, and ``dat_r``) is
    registered and shown on ``upstream`` the cycle after it arrives. Each access takes two
    cycles more than the slave alone. One access is in flight at a time. If the master
    drops ``cyc`` before the answer, the access is withdrawn from the slave one cycle
    later and an answer arriving in the cycle it was dropped is not shown (a write may
    still have taken effect), so neither side can hang the other or see a stale answer.

    Parameters
    ----------
    addr_width : int
        Word-address width of the bus.

    Members
    -------
    upstream : In(WishboneSignature(addr_width))
        From the master (or a decoder).
    downstream : Out(WishboneSignature(addr_width))
        To the slave; every output is a flip-flop.
    """

    def __init__(self, addr_width: int):
        self.addr_width = addr_width
        super().__init__({
            "upstream": In(WishboneSignature(addr_width)),
            "downstream": Out(WishboneSignature(addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        up, down = self.upstream, self.downstream
        ack, err = Signal(), Signal()
        dat_r = Signal.like(down.dat_r, reset_less=True)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(up.cyc & up.stb):
                    m.d.sync += [down.adr.eq(up.adr), down.dat_w.eq(up.dat_w), down.sel.eq(up.sel),
                                 down.we.eq(up.we), down.cyc.eq(1), down.stb.eq(1)]
                    m.next = "OFFERED"
            with m.State("OFFERED"):
                m.d.sync += dat_r.eq(down.dat_r)   # every cycle: the answer's is the last (no enable from ack)
                with m.If(~up.cyc):
                    m.d.sync += [down.cyc.eq(0), down.stb.eq(0)]
                    m.next = "IDLE"
                with m.Elif(down.ack | down.err):
                    m.d.sync += [ack.eq(down.ack), err.eq(~down.ack), down.cyc.eq(0), down.stb.eq(0)]
                    m.next = "ANSWERED"
            with m.State("ANSWERED"):
                m.d.comb += [up.ack.eq(ack & up.cyc & up.stb), up.err.eq(err & up.cyc & up.stb),
                             up.dat_r.eq(dat_r)]
                m.next = "IDLE"
        return m
