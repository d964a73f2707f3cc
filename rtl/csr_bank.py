"""CSR bank: the registers and parameter arrays of a :class:`RegisterMap` behind a
Wishbone-classic slave."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from neurophase.regmap import WORD_BITS, WORD_BYTES, Access, Array, Member, Register, RegisterMap, Source
from neurophase.rtl.interfaces import ParamReadSignature
from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["CsrBank", "bank_member_port"]


def bank_member_port(member: Member):
    """The ``In``/``Out`` signature member of the bank for a description :class:`Member`."""
    if member.kind == "array":
        array = member.item
        shape = signed(array.width) if array.signed else unsigned(array.width)
        return In(ParamReadSignature(shape, array.lanes, array.groups))
    shape = signed(member.width) if member.signed else unsigned(member.width)
    if member.direction == "in":
        return In(shape)
    if member.kind == "field":
        _, f = member.item
        return Out(shape, init=f.reset if f.access is Access.RW else 0)
    return Out(shape)


class CsrBank(wiring.Component):
    """Registers and per-column arrays of one register map behind a Wishbone-classic slave.

    Every access is answered exactly one cycle after the cycle in which ``cyc & stb``
    is first seen: with ``ack`` (and, for reads, ``dat_r``) or with ``err``. ``err``
    answers an unmapped address, a write to a register without writable field, and a
    write with ``sel != 0b1111`` to an array or a register without ``byte_writes``; it
    also sets the fields with source ``BUS_ERROR`` and counts in ``BUS_ERROR_COUNT``.
    Writes and errors take effect on the first cycle; if the master drops ``cyc`` the
    answer is simply not shown and the bank is idle again, so the bus never locks.

    Reads of signed array elements are sign-extended to 32 bits; writes keep the low
    ``width`` bits. Each array is a ``lib.memory.Memory`` of ``length / lanes`` words of
    ``lanes`` elements with one write enable per element; the bus and the datapath read
    it through separate read ports.

    Signature member names are derived from the description (see
    :meth:`RegisterMap.members`), so a parent connects with ``getattr(bank, name)``:

    - ``<register>_<field>`` (lower case) — ``Out`` for RW (the stored value, reset to
      the field's reset), W1P (high for one cycle after a write of 1) and RW1C (the
      sticky value); ``In`` for R fields driven by hardware. CONST fields and fields
      with an internal :class:`Source` have no port, except ``BUS_ERROR`` fields, which
      have their ``Out``.
    - ``<register>_<field>_set`` — ``In`` set strobe of an RW1C field (a set wins over a
      clear in the same cycle).
    - ``<array>_rd`` — ``In(ParamReadSignature(shape, lanes, groups))``: the datapath
      drives ``addr`` (a lane group) and reads ``data`` one cycle later.
    - ``irq`` — ``Out(1)`` when the map has interrupts: OR of the pending bits, gated by
      the master enable field.

    Parameters
    ----------
    regmap : RegisterMap
        The description; its addresses and sizes fix the bank.

    Members
    -------
    bus : In(WishboneSignature(regmap.addr_width))
        The slave side of the bus.
    (one member per :meth:`RegisterMap.members` entry, named as above)

    Raises
    ------
    TypeError
        When ``regmap`` is not a RegisterMap.
    ValueError
        When ``regmap`` is empty or holds an array that is not read-write.
    """

    def __init__(self, regmap: RegisterMap):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        if not list(regmap.entries()):
            raise ValueError(f"regmap {regmap.name!r} must hold at least one register or array")
        for _, array in regmap.arrays:
            if array.access != "rw":
                raise ValueError(f"array {array.name} of regmap {regmap.name!r} has access {array.access!r}; "
                                 "the CSR bank implements read-write ('rw') arrays only")
        self.regmap = regmap
        members = {"bus": In(WishboneSignature(regmap.addr_width))}
        members.update({m.name: bank_member_port(m) for m in regmap.members()})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        self._answering = Signal()
        self._access = bus.cyc & bus.stb & ~self._answering
        self._full_word = bus.sel == 0b1111
        self._byte_mask = Cat(bus.sel[i].replicate(8) for i in range(WORD_BYTES))

        self._refuse = Signal()
        reg_hits = {r.name: bus.adr == a // WORD_BYTES for a, r in self.regmap.registers}
        arrays = [_ArrayDecode(m, self, a, arr) for a, arr in self.regmap.arrays]
        mapped = Cat(*reg_hits.values(), *(a.hit for a in arrays)).any()
        bad_write = Cat(*(_refused_write(self.regmap.register(name), hit, self._full_word)
                          for name, hit in reg_hits.items()),
                        *(a.hit & ~self._full_word for a in arrays)).any()
        m.d.comb += self._refuse.eq(self._access & (~mapped | (bus.we & bad_write)))
        # the write strobe of one register or array: its own hit and refusal only (an access
        # hits at most one of them), so the or over the whole map stays off the enables
        self._writable = {name: self._access & bus.we & hit
                          & ~_refused_write(self.regmap.register(name), hit, self._full_word)
                          for name, hit in reg_hits.items()}

        values = self._field_values(m, reg_hits)
        reg_rdata = self._register_read_mux(m, reg_hits, values)
        self._answer(m, arrays, reg_rdata)
        return m

    # -- registers ------------------------------------------------------------------
    def _field_values(self, m, reg_hits) -> dict:
        values = {}
        for _, register in self.regmap.registers:
            for f in register.fields:
                if f.source is not Source.IRQ_PENDING:
                    values[register.name, f.name] = self._field_logic(m, register, f, reg_hits[register.name])
        irq = self.regmap.interrupts
        if irq is not None:
            pending = [values[irq.status, f.name] & values[irq.enable, f.name]
                       for f in self.regmap.register(irq.pending).fields]
            for f, bit in zip(self.regmap.register(irq.pending).fields, pending):
                values[irq.pending, f.name] = bit
            master = values[irq.master] if irq.master else 1
            m.d.comb += self.irq.eq(Cat(*pending).any() & master)
        return values

    def _field_logic(self, m, register: Register, f, hit):
        name = f"{register.name.lower()}_{f.name}"
        written = self.bus.dat_w[f.offset:f.offset + f.width]
        mask = self._byte_mask[f.offset:f.offset + f.width]
        write = self._writable[register.name]
        if f.access is Access.CONST:
            return Const(f.reset, signed(f.width) if f.signed else unsigned(f.width))
        if f.source is Source.BUS_ERROR_COUNT:
            count = Signal(f.width, name=name)
            with m.If(self._refuse & (count != (1 << f.width) - 1)):
                m.d.sync += count.eq(count + 1)
            return count
        port = getattr(self, name)
        if f.access is Access.R:
            return port
        if f.access is Access.RW:
            bits = port.as_unsigned()
            with m.If(write):
                m.d.sync += port.eq((bits & ~mask) | (written & mask))
            return port
        if f.access is Access.W1P:
            m.d.sync += port.eq(Mux(write, written & mask, 0))
            return Const(0, f.width)
        strobe = self._refuse if f.source is Source.BUS_ERROR else getattr(self, f"{name}_set")
        clear = Mux(write, written & mask, 0)
        m.d.sync += port.eq((port & ~clear) | strobe)
        return port

    def _register_read_mux(self, m, reg_hits, values) -> Signal:
        rdata = Signal(WORD_BITS)
        with m.If(self._access & ~self.bus.we):
            with m.Switch(self.bus.adr):
                for address, register in self.regmap.registers:
                    with m.Case(address // WORD_BYTES):
                        m.d.sync += rdata.eq(_register_word(register, values))
                with m.Default():
                    m.d.sync += rdata.eq(0)
        return rdata

    # -- bus answer -------------------------------------------------------------------
    def _answer(self, m, arrays, reg_rdata) -> None:
        bus = self.bus
        acked = Signal()
        refused = Signal()
        read = Signal()
        m.d.sync += [
            self._answering.eq(self._access),
            acked.eq(self._access & ~self._refuse),
            refused.eq(self._refuse),
            read.eq(self._access & ~bus.we),
        ]
        element = reg_rdata
        for array in arrays:
            element = Mux(array.selected, array.bus_element, element)
        m.d.comb += [
            bus.ack.eq(acked & bus.cyc & bus.stb),
            bus.err.eq(refused & bus.cyc & bus.stb),
            bus.dat_r.eq(Mux(acked & read, element, 0)),
        ]


class _ArrayDecode:
    """Address decode, bus read/write and datapath read port of one array's memory."""

    def __init__(self, m: Module, bank: CsrBank, address: int, array: Array):
        bus = bank.bus
        self.array = array
        index_bits = (array.span // WORD_BYTES - 1).bit_length()
        index = bus.adr[:index_bits]
        base = bus.adr[index_bits:] == address // WORD_BYTES >> index_bits
        self.hit = Signal(name=f"{array.name.lower()}_hit")
        m.d.comb += self.hit.eq(base & (index < array.length))

        shape = signed(array.width) if array.signed else unsigned(array.width)
        layout = data.ArrayLayout(shape, array.lanes)
        mem = memory.Memory(shape=layout, depth=array.groups,
                            init=[[array.reset] * array.lanes] * array.groups)
        m.submodules[f"{array.name.lower()}_mem"] = mem
        group, lane = _split(index, array.lanes)
        self._bus_write(m, bank, mem, group, lane)
        self._bus_read(m, bank, mem, group, lane, shape)
        self._datapath_read(m, getattr(bank, f"{array.name.lower()}_rd"), mem)

    def _bus_write(self, m, bank, mem, group, lane) -> None:
        port = mem.write_port(granularity=1)
        write = bank._access & bank.bus.we & self.hit & bank._full_word  # its own hit only (see _writable)
        m.d.comb += [port.addr.eq(group), port.en.eq(Mux(write, (Const(1, self.array.lanes) << lane)[:self.array.lanes], 0))]
        for i in range(self.array.lanes):
            m.d.comb += port.data[i].eq(bank.bus.dat_w[:self.array.width])

    def _bus_read(self, m, bank, mem, group, lane, shape) -> None:
        port = mem.read_port()
        lane_q = Signal(range(max(self.array.lanes, 2)), name=f"{self.array.name.lower()}_lane")
        self.selected = Signal(name=f"{self.array.name.lower()}_selected")
        m.d.comb += [port.addr.eq(group), port.en.eq(bank._access)]
        m.d.sync += [lane_q.eq(lane), self.selected.eq(bank._access & ~bank.bus.we & self.hit)]
        self.bus_element = Signal(WORD_BITS, name=f"{self.array.name.lower()}_element")
        elements = [port.data[i] for i in range(self.array.lanes)]
        with m.Switch(lane_q):
            for i, element in enumerate(elements[:-1]):
                with m.Case(i):
                    m.d.comb += self.bus_element.eq(element)
            with m.Default():
                m.d.comb += self.bus_element.eq(elements[-1])

    def _datapath_read(self, m, rd, mem) -> None:
        port = mem.read_port()
        m.d.comb += [port.addr.eq(rd.addr[:len(port.addr)] if len(port.addr) else 0), rd.data.eq(port.data)]


def _register_word(register: Register, values):
    """The 32-bit read value of ``register``: its fields' values, zeros between them."""
    parts, cursor = [], 0
    for f in sorted(register.fields, key=lambda f: f.offset):
        if f.offset > cursor:
            parts.append(Const(0, f.offset - cursor))
        parts.append(values[register.name, f.name].as_unsigned()[:f.width])
        cursor = f.offset + f.width
    return Cat(*parts)


def _refused_write(register: Register, hit, full_word):
    """Whether a write that hits ``register`` answers ``err``."""
    if register.read_only:
        return hit
    if register.byte_writes:
        return Const(0)
    return hit & ~full_word


def _split(index, lanes: int):
    """(lane group, lane) of an element index."""
    if lanes & (lanes - 1) == 0:
        bits = (lanes - 1).bit_length()
        return index[bits:], index[:bits]
    return index // lanes, index % lanes
