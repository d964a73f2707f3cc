"""Result buffer: the tile's last MVM result, readable over the CSR bus."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.regmap import WORD_BYTES, RegisterMap
from neurophase.rtl.drift_gain import column_values_layout
from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["ResultBuffer"]


class ResultBuffer(wiring.Component):
    """Stores the result beats of the tile and serves them to the bus, read-only.

    Beat ``g`` of an MVM (counted from the beat after a ``last``) is written to column
    group ``g``: its ``lanes`` values go to elements ``g*lanes ..`` of array ``RESULT``
    (read sign-extended to 32 bits) and its saturation bits to element ``g`` of array
    ``RESULT_SAT``. ``results`` counts the MVMs whose ``last`` beat arrived, so the host
    knows when a new result is complete. The stream is never stalled. Every bus access is
    answered one cycle after it is seen: reads with ``ack``, writes and unmapped
    addresses with ``err``.

    Parameters
    ----------
    regmap : RegisterMap
        The window's description: arrays ``RESULT`` (length columns, signed width of the
        activations, ``lanes`` lanes) and ``RESULT_SAT`` (length groups, width lanes).

    Members
    -------
    i_stream : In(stream.Signature(column_values_layout(width, lanes)))
        Result beats from the tile.
    bus : In(WishboneSignature(regmap.addr_width))
        Read access for the host.
    results : Out(32)
        MVM results completed (wrapping).

    Raises
    ------
    TypeError
        When ``regmap`` is not a RegisterMap.
    ValueError
        When the map lacks either array or their sizes disagree.
    """

    def __init__(self, regmap: RegisterMap):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        names = [item.name for _, item in regmap.arrays]
        if names != ["RESULT", "RESULT_SAT"]:
            raise ValueError(f"result window must hold arrays RESULT and RESULT_SAT, not {names}")
        result, sat = regmap.item("RESULT"), regmap.item("RESULT_SAT")
        if sat.length != result.groups or sat.width != result.lanes:
            raise ValueError(f"RESULT_SAT must have {result.groups} elements of {result.lanes} bits, "
                             f"not {sat.length} of {sat.width}")
        self.regmap = regmap
        self.lanes, self.groups, self.width = result.lanes, result.groups, result.width
        super().__init__({
            "i_stream": In(stream.Signature(column_values_layout(self.width, self.lanes))),
            "bus": In(WishboneSignature(regmap.addr_width)),
            "results": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, groups = self.lanes, self.groups
        depth = max(groups, 2)
        word = data.StructLayout({"data": data.ArrayLayout(signed(self.width), lanes), "saturated": unsigned(lanes)})
        m.submodules.result_mem = mem = memory.Memory(shape=word, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        beat = self.i_stream
        group = Signal(range(depth))
        m.d.comb += [
            beat.ready.eq(1),
            wr.addr.eq(group),
            wr.data.data.eq(beat.payload.data),
            wr.data.saturated.eq(beat.payload.saturated),
            wr.en.eq(beat.valid),
        ]
        with m.If(beat.valid):
            with m.If(beat.payload.last | (group == groups - 1)):
                m.d.sync += group.eq(0)
            with m.Else():
                m.d.sync += group.eq(group + 1)
            with m.If(beat.payload.last):
                m.d.sync += self.results.eq(self.results + 1)

        bus = self.bus
        result_base = self.regmap.address("RESULT") // WORD_BYTES
        sat_base = self.regmap.address("RESULT_SAT") // WORD_BYTES
        result_bits = (self.regmap.item("RESULT").span // WORD_BYTES - 1).bit_length()
        sat_bits = max((self.regmap.item("RESULT_SAT").span // WORD_BYTES - 1).bit_length(), 0)
        index = bus.adr[:result_bits]
        lane_bits = (lanes - 1).bit_length()
        is_result = Signal()
        is_sat = Signal()
        m.d.comb += [
            is_result.eq((bus.adr[result_bits:] == result_base >> result_bits) & (index < lanes * groups)),
            is_sat.eq((bus.adr[sat_bits:] == sat_base >> sat_bits) & (bus.adr[:sat_bits] < groups)
                      if sat_bits else bus.adr == sat_base),
        ]
        lane_index = bus.adr[:lane_bits] if lanes & (lanes - 1) == 0 else bus.adr % lanes
        group_index = bus.adr[lane_bits:result_bits] if lanes & (lanes - 1) == 0 else index // lanes

        answering = Signal()
        access = Signal()
        read_result = Signal()
        read_sat = Signal()
        refused = Signal()
        lane_q = Signal(range(max(lanes, 2)))
        m.d.comb += access.eq(bus.cyc & bus.stb & ~answering)
        m.d.comb += rd.addr.eq(Mux(is_sat, bus.adr[:max(sat_bits, 1)], group_index))
        m.d.sync += [
            answering.eq(access),
            read_result.eq(access & ~bus.we & is_result),
            read_sat.eq(access & ~bus.we & is_sat),
            refused.eq(access & (bus.we | ~(is_result | is_sat))),
            lane_q.eq(lane_index),
        ]
        element = Signal(signed(self.width))
        with m.Switch(lane_q):
            for i in range(lanes):
                with m.Case(i):
                    m.d.comb += element.eq(rd.data.data[i])
        m.d.comb += [
            bus.ack.eq((read_result | read_sat) & bus.cyc & bus.stb),
            bus.err.eq(refused & bus.cyc & bus.stb),
            bus.dat_r.eq(Mux(read_result, element.as_signed(), Mux(read_sat, rd.data.saturated, 0))),
        ]
        return m
