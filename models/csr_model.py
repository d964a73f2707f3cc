"""Transaction-level reference model of the CSR bank (plain Python), and seeded stimulus.

The model answers the same bus accesses as the RTL bank built from the same
:class:`~neurophase.regmap.RegisterMap`: ``ack`` with the read data, or ``err`` for an
unmapped address, a write to a read-only register or a refused partial write. Hardware
events (an R input changing, an RW1C set strobe) are applied between accesses. The
Amaranth tests and the cocotb regression drive the RTL and this model with the same
:func:`random_operations`.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from neurophase.regmap import WORD_BYTES, Access, Array, Register, RegisterMap, Source

__all__ = ["BusError", "Response", "Operation", "CsrModel", "random_operations", "corner_operations"]


class BusError(RuntimeError):
    """A bus access was answered with ``err``."""


class Response(NamedTuple):
    """Answer to one access: ``ok`` (ack) or not (err), and the read data (0 for writes and errors)."""

    ok: bool
    data: int = 0


class Operation(NamedTuple):
    """One step of stimulus: a bus access (``kind`` ``"read"``/``"write"``: ``target`` is the
    byte address) or a hardware event (``kind`` ``"input"``/``"set"``: ``target`` is the
    bank's signature member)."""

    kind: str
    target: int | str
    data: int = 0
    sel: int = 0b1111


def _byte_mask(sel: int) -> int:
    return sum(0xFF << (8 * i) for i in range(WORD_BYTES) if sel >> i & 1)


class CsrModel:
    """The bank's state and answers, from a register map.

    Parameters
    ----------
    regmap : RegisterMap
        The description the bank was generated from.

    Attributes
    ----------
    pulses : dict
        For every W1P member, the list of non-zero values it pulsed, in order.
    """

    def __init__(self, regmap: RegisterMap):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        self.regmap = regmap
        self.values: dict[tuple[str, str], int] = {}
        self.arrays = {a.name: [a.reset] * a.length for _, a in regmap.arrays}
        self.pulses: dict[str, list[int]] = {}
        self._by_member: dict[str, tuple[Register, object]] = {}
        for _, register in regmap.registers:
            for f in register.fields:
                self.values[register.name, f.name] = f.encode(f.reset) >> f.offset
                member = f"{register.name.lower()}_{f.name}"
                self._by_member[member] = (register, f)
                if f.access is Access.W1P:
                    self.pulses[member] = []

    # -- hardware side ------------------------------------------------------------------
    def hardware_input(self, member: str, value: int) -> None:
        """An R field's input port now holds ``value`` (raw bits)."""
        register, f = self._member(member, Access.R)
        self.values[register.name, f.name] = value & ((1 << f.width) - 1)

    def hardware_set(self, member: str, bits: int) -> None:
        """Pulse of the ``<member>_set`` strobe of an RW1C field with ``bits``."""
        register, f = self._member(member, Access.RW1C)
        self.values[register.name, f.name] |= bits & ((1 << f.width) - 1)

    def _member(self, member: str, access: Access):
        if member not in self._by_member or self._by_member[member][1].access is not access:
            raise KeyError(f"{member!r} is not a {access.value} field member of map {self.regmap.name!r}")
        return self._by_member[member]

    def field(self, register: str, field: str) -> int:
        """Raw bits of a field as the bus would read them."""
        reg = self.regmap.register(register)
        f = reg.field(field)
        if f.access is Access.W1P:
            return 0
        if f.source is Source.IRQ_PENDING:
            irq = self.regmap.interrupts
            return self.values[irq.status, f.name] & self.values[irq.enable, f.name]
        return self.values[register, field]

    @property
    def irq(self) -> bool:
        """Level of the bank's ``irq`` output (False when the map has no interrupts)."""
        irq = self.regmap.interrupts
        if irq is None:
            return False
        pending = any(self.field(irq.pending, f.name) for f in self.regmap.register(irq.pending).fields)
        return pending and (irq.master is None or bool(self.values[irq.master]))

    def array_group(self, name: str, group: int) -> list[int]:
        """Elements of lane group ``group`` of array ``name`` (what the datapath port reads)."""
        array = self.regmap.item(name)
        return self.arrays[name][group * array.lanes:(group + 1) * array.lanes]

    # -- bus side -----------------------------------------------------------------------
    def apply(self, op: Operation) -> Response | None:
        """Apply one operation; bus accesses return their :class:`Response`."""
        if op.kind == "read":
            return self.read(op.target)
        if op.kind == "write":
            return self.write(op.target, op.data, op.sel)
        if op.kind == "input":
            self.hardware_input(op.target, op.data)
        elif op.kind == "set":
            self.hardware_set(op.target, op.data)
        else:
            raise ValueError(f"operation kind must be read, write, input or set, not {op.kind!r}")
        return None

    def read(self, address: int) -> Response:
        """Answer to a read of byte ``address``."""
        item, index = self.decode(address)
        if item is None:
            return self._refuse()
        if isinstance(item, Array):
            return Response(True, self.arrays[item.name][index] & 0xFFFF_FFFF)
        return Response(True, self.register_word(item.name))

    def write(self, address: int, data: int, sel: int = 0b1111) -> Response:
        """Answer to a write of ``data`` with byte enables ``sel`` to byte ``address``."""
        item, index = self.decode(address)
        full = sel == 0b1111
        if item is None or (isinstance(item, Array) and not full):
            return self._refuse()
        if isinstance(item, Array):
            self.arrays[item.name][index] = _to_element(data, item)
            return Response(True)
        if item.read_only or (not full and not item.byte_writes):
            return self._refuse()
        mask = _byte_mask(sel)
        for f in item.fields:
            self._write_field(item, f, (data >> f.offset) & ((1 << f.width) - 1), (mask >> f.offset) & ((1 << f.width) - 1))
        return Response(True)

    def _write_field(self, register: Register, f, bits: int, mask: int) -> None:
        key = (register.name, f.name)
        if f.access is Access.RW:
            self.values[key] = (self.values[key] & ~mask) | (bits & mask)
        elif f.access is Access.RW1C:
            self.values[key] &= ~(bits & mask)
        elif f.access is Access.W1P and bits & mask:
            self.pulses[f"{register.name.lower()}_{f.name}"].append(bits & mask)

    def _refuse(self) -> Response:
        for _, register in self.regmap.registers:
            for f in register.fields:
                key = (register.name, f.name)
                if f.source is Source.BUS_ERROR:
                    self.values[key] = 1
                elif f.source is Source.BUS_ERROR_COUNT:
                    self.values[key] = min(self.values[key] + 1, (1 << f.width) - 1)
        return Response(False)

    def register_word(self, name: str) -> int:
        """The 32-bit word a read of register ``name`` returns."""
        register = self.regmap.register(name)
        return sum((self.field(name, f.name) & ((1 << f.width) - 1)) << f.offset for f in register.fields)

    def decode(self, address: int) -> tuple[Register | Array | None, int]:
        """(item, element index) at byte ``address``; (None, 0) when unmapped."""
        if address % WORD_BYTES:
            raise ValueError(f"bus address must be a multiple of {WORD_BYTES}, not 0x{address:x}")
        for base, item in self.regmap.entries():
            if isinstance(item, Register) and address == base:
                return item, 0
            if isinstance(item, Array) and base <= address < base + item.length * WORD_BYTES:
                return item, (address - base) // WORD_BYTES
        return None, 0


def _to_element(data: int, array: Array) -> int:
    value = data & ((1 << array.width) - 1)
    if array.signed and value >> (array.width - 1):
        value -= 1 << array.width
    return value


# -- stimulus ------------------------------------------------------------------------------


def _hardware_members(regmap: RegisterMap) -> tuple[list, list]:
    inputs = [m for m in regmap.members() if m.kind == "field" and m.direction == "in"]
    strobes = [m for m in regmap.members() if m.kind == "set"]
    return inputs, strobes


def _unmapped_addresses(regmap: RegisterMap) -> list[int]:
    model = CsrModel(regmap)
    limit = regmap.size
    candidates = set(range(0, limit, WORD_BYTES * 7)) | {limit - WORD_BYTES}
    for base, item in regmap.entries():
        end = base + (item.length * WORD_BYTES if isinstance(item, Array) else WORD_BYTES)
        candidates |= {end, base - WORD_BYTES}
    return sorted(a for a in candidates if 0 <= a < limit and model.decode(a)[0] is None)


def random_operations(regmap: RegisterMap, seed: int, count: int, *, hardware: float = 0.15,
                      unmapped: float = 0.08, partial: float = 0.08) -> list[Operation]:
    """``count`` seeded bus accesses to random registers, array elements and unmapped
    addresses (with random partial ``sel``), with hardware events between them."""
    rng = random.Random(seed)
    inputs, strobes = _hardware_members(regmap)
    holes = _unmapped_addresses(regmap)
    targets = [a for a, _ in regmap.registers]
    ops: list[Operation] = []
    while sum(op.kind in ("read", "write") for op in ops) < count:
        if (inputs or strobes) and rng.random() < hardware:
            member = rng.choice(inputs + strobes)
            name = member.name[:-len("_set")] if member.kind == "set" else member.name
            ops.append(Operation("set" if member.kind == "set" else "input", name, rng.getrandbits(member.width)))
            continue
        ops.append(_random_access(regmap, rng, targets, holes, unmapped, partial))
    return ops


def _random_access(regmap, rng, targets, holes, unmapped, partial) -> Operation:
    roll = rng.random()
    if holes and roll < unmapped:
        address = rng.choice(holes)
    elif regmap.arrays and roll < 0.5:
        base, array = rng.choice(regmap.arrays)
        address = base + WORD_BYTES * rng.choice([0, array.length - 1, rng.randrange(array.length)])
    else:
        address = rng.choice(targets)
    if rng.random() < 0.45:
        return Operation("read", address)
    data = rng.choice([rng.getrandbits(32), 0xFFFF_FFFF, 0, 1 << rng.randrange(32)])
    sel = rng.randrange(16) if rng.random() < partial else 0b1111
    return Operation("write", address, data, sel)


def corner_operations(regmap: RegisterMap) -> list[tuple[str, list[Operation]]]:
    """Named corner cases: every register read after reset, written all-ones and zero,
    each array's first and last element at the signed extremes, errors back to back."""
    registers = [a for a, _ in regmap.registers]
    cases = [("reset values", [Operation("read", a) for a in registers])]
    ones = [Operation("write", a, 0xFFFF_FFFF) for a in registers] + [Operation("read", a) for a in registers]
    zeros = [Operation("write", a, 0) for a in registers] + [Operation("read", a) for a in registers]
    cases += [("all ones", ones), ("all zeros", zeros)]
    for base, array in regmap.arrays:
        last = base + (array.length - 1) * WORD_BYTES
        cases.append((f"{array.name} extremes", [
            Operation("write", base, 1 << (array.width - 1)), Operation("write", last, (1 << (array.width - 1)) - 1),
            Operation("read", base), Operation("read", last),
            Operation("write", base, 0xFFFF_FFFF, 0b0001), Operation("read", base),
        ]))
    holes = _unmapped_addresses(regmap)
    errors = [Operation("read", holes[0]), Operation("write", holes[-1], 1), Operation("read", registers[0])]
    read_only = [a for a, r in regmap.registers if r.read_only]
    errors += [Operation("write", a, 0) for a in read_only[:2]]
    cases.append(("errors back to back", errors))
    return cases
