"""A memory shared by the layer sequencer and the bus (program, activations, parameters)."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["MemoryWindow"]


class MemoryWindow(wiring.Component):
    """A memory of ``depth`` entries of ``words`` x ``width`` bits, seen on the bus as
    ``depth * words`` 32-bit words (entry ``e`` word ``w`` at word address ``e*words + w``,
    the low ``width`` bits of each; ``signed`` entries read sign-extended).

    While ``locked`` (the sequencer runs) the sequencer owns both ports and every bus
    access is answered with ``err``, so firmware can never race the program; a word
    address beyond the memory is answered with ``err`` as well. Otherwise a bus write is
    answered in the cycle after it is seen (the memory takes it in that cycle, from
    registers) and a read in the one after that (the read data is registered beside the
    block RAM before it reaches the bus).

    Parameters
    ----------
    depth : int
        Entries.
    width : int
        Bits per bus word of an entry (1 to 32).
    words : int
        Bus words per entry.
    signed : bool
        Sign-extend entries on bus reads.
    addr_width : int
        Word-address width of the bus window.

    Members
    -------
    bus : In(WishboneSignature(addr_width))
    locked : In(1)
    raddr : In(range(depth)); rdata : Out(words * width)
        The sequencer's read port (data on the cycle after the address).
    waddr : In(range(depth)); wdata : In(words * width); we : In(1)
        The sequencer's write port.
    """

    def __init__(self, depth: int, width: int, words: int = 1, signed: bool = False, addr_width: int | None = None):
        for name, value, lo in (("depth", depth, 1), ("width", width, 1), ("words", words, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        if width > 32:
            raise ValueError(f"width must be at most 32 bits per bus word, not {width}")
        self.depth, self.width, self.words, self.signed = depth, width, words, signed
        needed = max((depth * words - 1).bit_length(), 1)
        self.addr_width = needed if addr_width is None else addr_width
        if self.addr_width < needed:
            raise ValueError(f"addr_width must be at least {needed} for {depth * words} words, not {self.addr_width}")
        super().__init__({
            "bus": In(WishboneSignature(self.addr_width)),
            "locked": In(1),
            "raddr": In(range(max(depth, 2))),
            "rdata": Out(words * width),
            "waddr": In(range(max(depth, 2))),
            "wdata": In(words * width),
            "we": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.memory = memory = Memory(shape=unsigned(self.words * self.width), depth=self.depth, init=[])
        read = memory.read_port()
        write = memory.write_port(granularity=self.width)

        entry = Signal(range(max(self.depth * self.words, 2) + 1))
        word = Signal(range(max(self.words, 2)))
        m.d.comb += [entry.eq(bus.adr // self.words if self.words > 1 else bus.adr),
                     word.eq(bus.adr % self.words if self.words > 1 else 0)]
        access = bus.cyc & bus.stb
        answered = Signal()   # the answer is on the bus this cycle
        fetching = Signal()   # a read's data leaves the block RAM this cycle
        refuse = Signal()
        refused = Signal()
        fetched = Signal(self.width)
        # a bus write reaches the memory a cycle after it is seen, from registers (the write
        # enable fans out to every LUT RAM cell of a wide memory), in the cycle it is
        # answered; it goes before the sequencer's port should the lock come in that cycle
        writing, write_entry = Signal(), Signal.like(entry)
        write_word, write_value = Signal.like(word), Signal(self.width)
        m.d.comb += refuse.eq(self.locked | (bus.adr >= self.depth * self.words))
        m.d.sync += [answered.eq(0), fetching.eq(0), writing.eq(0)]
        with m.If(access & ~answered & ~fetching):
            with m.If(refuse | bus.we):
                m.d.sync += [answered.eq(1), refused.eq(refuse), writing.eq(bus.we & ~refuse),
                             write_entry.eq(entry), write_word.eq(word), write_value.eq(bus.dat_w[:self.width])]
            with m.Else():
                m.d.sync += fetching.eq(1)
        with m.If(fetching):
            m.d.sync += [answered.eq(1), refused.eq(0), fetched.eq(read.data.word_select(word, self.width))]

        m.d.comb += read.addr.eq(Mux(self.locked, self.raddr, entry))
        with m.If(writing):
            m.d.comb += [write.addr.eq(write_entry), write.data.eq(Cat(*[write_value for _ in range(self.words)])),
                         write.en.eq(1 << write_word)]
        with m.Elif(self.locked):
            m.d.comb += [write.addr.eq(self.waddr), write.data.eq(self.wdata),
                         write.en.eq(Mux(self.we, (1 << self.words) - 1, 0))]
        m.d.comb += self.rdata.eq(read.data)

        extended = Cat(fetched, *([fetched[-1]] * (32 - self.width))) if self.signed else fetched
        m.d.comb += [
            bus.ack.eq(answered & access & ~refused),
            bus.err.eq(answered & access & refused),
            bus.dat_r.eq(Mux(bus.we, 0, extended)),
        ]
        return m
