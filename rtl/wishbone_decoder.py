"""Wishbone address decoder: one master, several slave windows."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["WishboneDecoder"]


class WishboneDecoder(wiring.Component):
    """Routes a Wishbone-classic master to one of several slave windows.

    Window ``name`` covers the byte addresses ``base .. base + 4 * 2**addr_width - 1``;
    ``base`` must be aligned to that size. The slave sees the word address within its
    window. A slave's answer (``ack`` or ``err``, and ``dat_r``) is registered here and
    shown to the master one cycle later, so the slaves' read multiplexers and this
    decoder's are in different cycles; the slave's ``stb`` is held low while its
    registered answer is shown, so it never sees the access twice. Each window's answer
    registers hold zero unless that window answered, and at most one window answers an
    access, so the master's ``ack``, ``err`` and ``dat_r`` are plain ORs of them: two LUT
    levels for any number of windows. An access
    outside every window is answered with ``err`` one cycle after it is seen, so the
    master never waits forever.

    Parameters
    ----------
    addr_width : int
        Word-address width of the master's bus.
    windows : sequence of (str, int, int)
        ``(name, base byte address, slave word-address width)`` per slave.

    Members
    -------
    bus : In(WishboneSignature(addr_width))
        From the master.
    <name>_bus : Out(WishboneSignature(window addr_width))
        To each slave.

    Raises
    ------
    ValueError
        For a misaligned, overlapping or out-of-range window, or a duplicate name.
    """

    def __init__(self, addr_width: int, windows):
        self.windows = []
        seen = []
        for name, base, width in windows:
            size = 4 << width
            if not isinstance(base, int) or base < 0 or base % size:
                raise ValueError(f"base of window {name!r} must be a multiple of its size 0x{size:x}, not {base!r}")
            if base + size > 4 << addr_width:
                raise ValueError(f"window {name!r} at 0x{base:x} (size 0x{size:x}) does not fit a "
                                 f"{addr_width}-bit word address")
            for other, lo, hi in seen:
                if other == name:
                    raise ValueError(f"window name {name!r} is used twice")
                if base < hi and lo < base + size:
                    raise ValueError(f"window {name!r} at 0x{base:x} overlaps window {other!r} at 0x{lo:x}")
            seen.append((name, base, base + size))
            self.windows.append((name, base, width))
        members = {"bus": In(WishboneSignature(addr_width))}
        members.update({f"{name}_bus": Out(WishboneSignature(width)) for name, _, width in self.windows})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        hits, answers = [], []
        showing = Signal()   # a registered answer is on the master's bus this cycle
        m.d.sync += showing.eq(0)
        for name, base, width in self.windows:
            slave = getattr(self, f"{name}_bus")
            hit = Signal(name=f"{name}_hit")
            m.d.comb += hit.eq(bus.adr[width:] == (base >> 2) >> width)
            hits.append(hit)
            m.d.comb += [
                slave.adr.eq(bus.adr[:width]),
                slave.dat_w.eq(bus.dat_w),
                slave.sel.eq(bus.sel),
                slave.we.eq(bus.we),
                slave.cyc.eq(bus.cyc & hit),
                slave.stb.eq(bus.stb & hit & ~showing),
            ]
            answers.append(self._register_answer(m, name, slave, showing))
        unmapped = Signal()
        answered = Signal()   # an unmapped access, answered with err
        m.d.comb += unmapped.eq(bus.cyc & bus.stb & ~_any(hits))
        m.d.sync += answered.eq(unmapped & ~answered)
        acks, errs, data = zip(*answers) if answers else ((), (), ())
        m.d.comb += [bus.ack.eq(_any(acks) & bus.cyc & bus.stb),
                     bus.err.eq((_any(errs) | (answered & unmapped)) & bus.cyc & bus.stb),
                     bus.dat_r.eq(_any(data))]
        return m

    @staticmethod
    def _register_answer(m, name, slave, showing) -> tuple[Signal, Signal, Signal]:
        """Registers the answer of ``slave`` for the master's next cycle: ``(ack, err,
        dat_r)``, all zero unless ``slave`` answered."""
        ack, err = Signal(name=f"{name}_ack_q"), Signal(name=f"{name}_err_q")
        dat_r = Signal.like(slave.dat_r, name=f"{name}_dat_r_q")
        answer = slave.cyc & slave.stb & (slave.ack | slave.err)
        m.d.sync += [ack.eq(answer & slave.ack), err.eq(answer & ~slave.ack & slave.err),
                     dat_r.eq(Mux(answer, slave.dat_r, 0))]
        with m.If(answer):
            m.d.sync += showing.eq(1)
        return ack, err, dat_r


def _any(signals):
    """OR of ``signals`` (0 for none)."""
    result = 0
    for s in signals:
        result = result | s
    return result
