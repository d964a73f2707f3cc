"""Weight memory: the crossbar emulator's conductance codes in block RAM, written over the bus."""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In

from neurophase.regmap import WORD_BYTES, RegisterMap
from neurophase.rtl.interfaces import ParamReadSignature
from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["WeightMemory", "WEIGHT_READ_LATENCY"]

#: Cycles from ``rd.addr`` to ``rd.data``: the block RAM read, then an output register (so the
#: slow block-RAM clock-to-output never shares a cycle with logic).
WEIGHT_READ_LATENCY = 2


class WeightMemory(wiring.Component):
    """Array ``WEIGHT`` of a register map as block RAM: written element by element over the
    bus, read a whole lane group (one tile row of code pairs) per cycle by the emulator.

    The bus side is write-only: a full-word write to an element is answered with ``ack``
    one cycle after it is seen; reads, partial writes (``sel != 0b1111``) and addresses
    beyond the array answer ``err``. Keeping reads off the bus keeps the wide memory free
    of a lane multiplexer behind its output (the host checks the weights through MVMs).
    The memory carries ``ram_style = "block"``.

    Parameters
    ----------
    regmap : RegisterMap
        The window's description: one array ``WEIGHT`` (its length, width and lanes size
        the memory).

    Members
    -------
    bus : In(WishboneSignature(regmap.addr_width))
        Writes from the host.
    rd : In(ParamReadSignature(unsigned(width), lanes, length // lanes))
        The emulator's read port; ``data`` follows ``addr`` by :data:`WEIGHT_READ_LATENCY` cycles.

    Raises
    ------
    TypeError
        When ``regmap`` is not a RegisterMap.
    ValueError
        When the map is not exactly one array ``WEIGHT``.
    """

    def __init__(self, regmap: RegisterMap):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        names = [item.name for _, item in regmap.entries()]
        if names != ["WEIGHT"]:
            raise ValueError(f"weight window must hold exactly the array WEIGHT, not {names}")
        self.regmap = regmap
        self.array = regmap.item("WEIGHT")
        a = self.array
        super().__init__({
            "bus": In(WishboneSignature(regmap.addr_width)),
            "rd": In(ParamReadSignature(unsigned(a.width), a.lanes, a.groups)),
        })

    def elaborate(self, platform):
        m = Module()
        a = self.array
        layout = data.ArrayLayout(unsigned(a.width), a.lanes)
        m.submodules.weight_mem = mem = memory.Memory(shape=layout, depth=max(a.groups, 2), init=[],
                                                      attrs={"ram_style": "block"})
        wr = mem.write_port(granularity=1)
        rd = mem.read_port()
        data_q = Signal(layout)
        m.d.comb += rd.addr.eq(self.rd.addr)
        m.d.sync += data_q.eq(rd.data)
        m.d.comb += self.rd.data.eq(data_q)

        bus = self.bus
        index_bits = (a.span // WORD_BYTES - 1).bit_length()
        index = bus.adr[:index_bits]
        if a.lanes & (a.lanes - 1) == 0:
            lane_bits = (a.lanes - 1).bit_length()
            group, lane = index[lane_bits:], index[:lane_bits]
        else:
            group, lane = index // a.lanes, index % a.lanes
        answering = Signal()
        access = Signal()
        good = Signal()
        acked = Signal()
        refused = Signal()
        m.d.comb += [
            access.eq(bus.cyc & bus.stb & ~answering),
            good.eq(bus.we & (bus.sel == 0b1111) & (index < a.length)
                    & ((bus.adr[index_bits:] == 0) if len(bus.adr) > index_bits else 1)),
            wr.addr.eq(group),
            wr.en.eq(Mux(access & good, (Const(1, a.lanes) << lane)[:a.lanes], 0)),
        ]
        for i in range(a.lanes):
            m.d.comb += wr.data[i].eq(bus.dat_w[:a.width])
        m.d.sync += [answering.eq(access), acked.eq(access & good), refused.eq(access & ~good)]
        m.d.comb += [bus.ack.eq(acked & bus.cyc & bus.stb), bus.err.eq(refused & bus.cyc & bus.stb),
                     bus.dat_r.eq(0)]
        return m
