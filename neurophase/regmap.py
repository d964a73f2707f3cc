"""The register map: one Python description of a CSR bank, from which the bank RTL, the
Markdown reference, the C header and the JSON/CSV maps for the host are all generated.

A map is built from small frozen descriptions — :class:`Field`, :class:`Register`,
:class:`Array` — collected by a :class:`RegisterMap` builder that assigns every byte
address (4-byte aligned; arrays aligned to their power-of-two size). No address is ever
written by hand, so none can be written twice. The map is plain Python (no Amaranth) and
can be walked with :meth:`RegisterMap.entries`; ``neurophase.rtl.csr_bank`` turns it into
hardware, ``neurophase.regmap_export`` into documents, ``neurophase.models.csr_model``
into a reference model.

Access modes (:class:`Access`) are per field:

``R``      read-only, driven by the hardware through an ``In`` port (or by the bank itself
           for an internal source, see :class:`Source`);
``CONST``  read-only constant: always reads the field's reset value, no port;
``RW``     read-write storage, presented to the hardware on an ``Out`` port;
``RW1C``   sticky status: set by a hardware strobe (``In`` port ``<member>_set``), cleared
           by writing 1; a set in the same cycle as a clear wins, so no event is lost;
``W1P``    write-one-pulse command: writing 1 raises the ``Out`` port for one cycle; reads 0.

:func:`tile_register_map` is the description of one crossbar tile's bank.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Iterator, NamedTuple

__all__ = [
    "Access",
    "Source",
    "Field",
    "Register",
    "Array",
    "RegisterMap",
    "Member",
    "Interrupts",
    "RegmapError",
    "ParamFormats",
    "tile_register_map",
    "WORD_BYTES",
    "ARRAY_ACCESS",
    "TILE_MAGIC",
    "TILE_MAP_VERSION",
]

#: Bytes per bus word; every register and array element occupies one word.
WORD_BYTES = 4
#: Bits per bus word.
WORD_BITS = 32
#: Bus access modes of an :class:`Array` (LiteX's CSV vocabulary): read-write, read-only, write-only.
ARRAY_ACCESS = ("rw", "ro", "wo")

_REG_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class RegmapError(ValueError):
    """An invalid register description; the message names the item, the value and what is allowed."""


class Access(str, enum.Enum):
    """Bus access mode of a field (see the module docstring)."""

    R = "R"
    CONST = "CONST"
    RW = "RW"
    RW1C = "RW1C"
    W1P = "W1P"

    @property
    def writable(self) -> bool:
        """Whether a bus write has an effect on a field of this mode."""
        return self in (Access.RW, Access.RW1C, Access.W1P)


class Source(str, enum.Enum):
    """Fields the bank drives itself instead of taking them from a port.

    ``BUS_ERROR``        an ``RW1C`` bit set on every access answered with ``err``;
    ``BUS_ERROR_COUNT``  an ``R`` counter of accesses answered with ``err`` (saturating);
    ``IRQ_PENDING``      an ``R`` bit: the ``RW1C`` status bit of the same name AND its enable
                         (made by :meth:`RegisterMap.add_interrupts`).
    """

    BUS_ERROR = "bus_error"
    BUS_ERROR_COUNT = "bus_error_count"
    IRQ_PENDING = "irq_pending"


_SOURCE_ACCESS = {Source.BUS_ERROR: Access.RW1C, Source.BUS_ERROR_COUNT: Access.R, Source.IRQ_PENDING: Access.R}


def _check_int(what: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RegmapError(f"{what} must be an integer from {lo} to {hi}, not {value!r}")


def _check_name(what: str, name, pattern: re.Pattern, example: str, case: str) -> None:
    if not isinstance(name, str) or not pattern.match(name):
        article = "an" if case[0] in "aeiou" else "a"
        raise RegmapError(f"{what} must be {article} {case} identifier like {example!r}, not {name!r}")


def _value_range(width: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (width - 1)), (1 << (width - 1)) - 1
    return 0, (1 << width) - 1


@dataclass(frozen=True)
class Field:
    """A bit field of a register.

    Parameters
    ----------
    name : str
        Lower-case identifier, unique in its register.
    width : int
        Bits, 1 to 32.
    access : Access
        Bus access mode.
    reset : int
        Value after reset (for ``CONST``: the constant); must fit ``width`` (and ``signed``).
    doc : str
        One-line description for the reference and the header.
    offset : int or None
        Least significant bit; ``None`` places the field just above the previous one.
    signed : bool
        Two's-complement value (sets the port's shape and the allowed reset range).
    source : Source or None
        The bank drives the field itself (no port); see :class:`Source`.

    Raises
    ------
    RegmapError
        For a bad name, width, offset, access, reset or source.
    """

    name: str
    width: int = 1
    access: Access = Access.RW
    reset: int = 0
    doc: str = ""
    offset: int | None = None
    signed: bool = False
    source: Source | None = None

    def __post_init__(self):
        _check_name("field name", self.name, _FIELD_NAME, "start", "lower-case")
        _check_int(f"width of field {self.name!r}", self.width, 1, WORD_BITS)
        if self.offset is not None:
            _check_int(f"offset of field {self.name!r}", self.offset, 0, WORD_BITS - 1)
        if not isinstance(self.access, Access):
            allowed = ", ".join(a.value for a in Access)
            raise RegmapError(f"access of field {self.name!r} must be one of {allowed}, not {self.access!r}")
        lo, hi = _value_range(self.width, self.signed)
        if isinstance(self.reset, bool) or not isinstance(self.reset, int) or not lo <= self.reset <= hi:
            raise RegmapError(
                f"reset of field {self.name!r} must fit {self.width} {'signed' if self.signed else 'unsigned'} "
                f"bits ({lo} to {hi}), not {self.reset!r}"
            )
        if self.access in (Access.W1P, Access.RW1C) and (self.reset or self.signed):
            raise RegmapError(f"a {self.access.value} field must be unsigned with reset 0; field {self.name!r} is not")
        if self.source is not None:
            self._check_source()

    def _check_source(self) -> None:
        if not isinstance(self.source, Source):
            allowed = ", ".join(s.value for s in Source)
            raise RegmapError(f"source of field {self.name!r} must be one of {allowed}, not {self.source!r}")
        needed = _SOURCE_ACCESS[self.source]
        if self.access is not needed:
            raise RegmapError(
                f"field {self.name!r} with source {self.source.value} must have access {needed.value}, "
                f"not {self.access.value}"
            )
        if self.source is not Source.BUS_ERROR_COUNT and self.width != 1:
            raise RegmapError(f"field {self.name!r} with source {self.source.value} must be 1 bit wide, not {self.width}")

    @property
    def has_port(self) -> bool:
        """Whether the bank gives this field a signature member."""
        return self.source is None and self.access is not Access.CONST

    @property
    def mask(self) -> int:
        """Mask of the field's bits in the register word (needs a placed offset)."""
        return ((1 << self.width) - 1) << self.offset

    @property
    def bits(self) -> str:
        """``"[msb:lsb]"`` or ``"[bit]"``."""
        msb = self.offset + self.width - 1
        return f"[{msb}:{self.offset}]" if self.width > 1 else f"[{self.offset}]"

    def encode(self, value: int) -> int:
        """``value`` placed at the field's bits (two's complement for signed fields)."""
        return (value & ((1 << self.width) - 1)) << self.offset


@dataclass(frozen=True)
class Register:
    """A 32-bit register made of fields; the fields' offsets are resolved on construction.

    Parameters
    ----------
    name : str
        Upper-case identifier, unique in the map.
    fields : sequence of Field
        At least one; fields without offset are packed upward from the previous field.
    doc : str
        One-line description.
    byte_writes : bool
        Whether a write with ``sel != 0b1111`` is allowed (it then changes only the
        selected bytes); when False such a write answers ``err``.

    Raises
    ------
    RegmapError
        For a bad name, duplicate or overlapping fields, or fields beyond bit 31.
    """

    name: str
    fields: tuple[Field, ...]
    doc: str = ""
    byte_writes: bool = False

    def __post_init__(self):
        _check_name("register name", self.name, _REG_NAME, "CTRL", "upper-case")
        fields = tuple(self.fields) if isinstance(self.fields, (list, tuple)) else None
        if not fields or not all(isinstance(f, Field) for f in fields):
            raise RegmapError(f"register {self.name} must have a non-empty sequence of Field, not {self.fields!r}")
        object.__setattr__(self, "fields", self._place(fields))

    def _place(self, fields: tuple[Field, ...]) -> tuple[Field, ...]:
        placed: list[Field] = []
        cursor = 0
        for f in fields:
            if any(p.name == f.name for p in placed):
                raise RegmapError(f"field name {f.name!r} is used twice in register {self.name}")
            offset = cursor if f.offset is None else f.offset
            f = Field(**{**f.__dict__, "offset": offset})
            if offset + f.width > WORD_BITS:
                raise RegmapError(
                    f"field {self.name}.{f.name} at bits [{offset + f.width - 1}:{offset}] does not fit "
                    f"a {WORD_BITS}-bit register"
                )
            for other in placed:
                if f.mask & other.mask:
                    raise RegmapError(
                        f"field {self.name}.{f.name} at bits {f.bits} overlaps field {self.name}.{other.name} "
                        f"at bits {other.bits}"
                    )
            placed.append(f)
            cursor = offset + f.width
        return tuple(placed)

    @property
    def read_only(self) -> bool:
        """No field is writable: any write answers ``err``."""
        return not any(f.access.writable for f in self.fields)

    @property
    def reset(self) -> int:
        """The word read after reset (W1P fields read 0)."""
        return sum(f.encode(f.reset) for f in self.fields if f.access is not Access.W1P)

    @property
    def access(self) -> str:
        """Register-level summary for the CSV: ``"ro"`` or ``"rw"`` (a register of W1P commands
        only is ``"rw"``: it reads 0, and LiteX's ``litex_cli --regs`` reads every register)."""
        return "ro" if self.read_only else "rw"

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise RegmapError(f"register {self.name} has no field {name!r}; fields: {', '.join(f.name for f in self.fields)}")


@dataclass(frozen=True)
class Array:
    """A per-column parameter array: one element per bus word, stored lane-wide.

    Parameters
    ----------
    name : str
        Upper-case identifier, unique in the map.
    length : int
        Elements (columns).
    width : int
        Bits per element, 1 to 32.
    signed : bool
        Two's-complement elements; bus reads sign-extend them to 32 bits.
    lanes : int
        Elements the datapath reads per cycle (must divide ``length``).
    reset : int
        Initial value of every element.
    doc : str
        One-line description (include the number format, e.g. Q4.12).
    access : str
        What the bus may do with the elements: ``"rw"`` (a CSR bank array), ``"ro"`` (read
        only, e.g. a result window) or ``"wo"`` (write only, e.g. a weight memory). The CSR
        bank implements ``"rw"`` arrays only; the others describe windows served by other
        hardware.

    Raises
    ------
    RegmapError
        For a bad name, length, width, lane count, reset value or access.
    """

    name: str
    length: int
    width: int
    signed: bool = False
    lanes: int = 1
    reset: int = 0
    doc: str = ""
    access: str = "rw"

    def __post_init__(self):
        _check_name("array name", self.name, _REG_NAME, "GAIN", "upper-case")
        _check_int(f"length of array {self.name}", self.length, 1, 1 << 20)
        _check_int(f"width of array {self.name}", self.width, 1, WORD_BITS)
        _check_int(f"lanes of array {self.name}", self.lanes, 1, self.length)
        if self.length % self.lanes:
            raise RegmapError(f"lanes of array {self.name} must divide its length ({self.length}), not {self.lanes}")
        lo, hi = _value_range(self.width, self.signed)
        if isinstance(self.reset, bool) or not isinstance(self.reset, int) or not lo <= self.reset <= hi:
            raise RegmapError(f"reset of array {self.name} must be an integer from {lo} to {hi}, not {self.reset!r}")
        if self.access not in ARRAY_ACCESS:
            raise RegmapError(f"access of array {self.name} must be one of {', '.join(ARRAY_ACCESS)}, "
                              f"not {self.access!r}")

    @property
    def groups(self) -> int:
        """Lane groups: the depth of the lane-wide memory."""
        return self.length // self.lanes

    @property
    def span(self) -> int:
        """Bytes of address space reserved: ``length`` words rounded up to a power of two."""
        return 1 << (self.length * WORD_BYTES - 1).bit_length()

    @property
    def format(self) -> str:
        return f"{'signed' if self.signed else 'unsigned'} {self.width}-bit"


class Member(NamedTuple):
    """A signature member of the CSR bank, derived from the description.

    ``direction`` is ``"in"`` or ``"out"`` seen from the bank; ``kind`` is ``"field"``
    (an RW/W1P/RW1C value out, an R value in), ``"set"`` (RW1C set strobe in),
    ``"array"`` (a ParamReadSignature read port, flipped) or ``"irq"``.
    """

    name: str
    direction: str
    width: int
    signed: bool
    kind: str
    item: object


@dataclass(frozen=True)
class Interrupts:
    """The interrupt registers made by :meth:`RegisterMap.add_interrupts`."""

    status: str
    enable: str
    pending: str
    master: tuple[str, str] | None


class RegisterMap:
    """Builder and walkable description of a register map.

    Registers and arrays are added in order; each gets the next free byte address
    (registers 4-byte aligned, arrays aligned to their power-of-two :attr:`Array.span`).

    Parameters
    ----------
    name : str
        Lower-case identifier; prefixes the C macros and CSV names.
    max_bytes : int
        Address space the map may use, a power of two from 8 to 2**24.
    doc : str
        Description for the reference.

    Raises
    ------
    RegmapError
        For a bad name or size, and (from :meth:`add`) a duplicate name, a colliding
        signature member or an item beyond ``max_bytes``.
    """

    def __init__(self, name: str, *, max_bytes: int = 1 << 16, doc: str = ""):
        _check_name("map name", name, _FIELD_NAME, "tile", "lower-case")
        _check_int("max_bytes of the map", max_bytes, 8, 1 << 24)
        if max_bytes & (max_bytes - 1):
            raise RegmapError(f"max_bytes of the map must be a power of two, not {max_bytes}")
        self.name = name
        self.max_bytes = max_bytes
        self.doc = doc
        self._entries: list[tuple[int, Register | Array]] = []
        self._cursor = 0
        self._members: dict[str, str] = {}
        self.interrupts: Interrupts | None = None

    # -- building ---------------------------------------------------------------
    def add(self, item: Register | Array) -> int:
        """Place ``item`` at the next free (aligned) address and return that byte address."""
        if not isinstance(item, (Register, Array)):
            raise RegmapError(f"a register map holds Register or Array items, not {item!r}")
        for address, other in self._entries:
            if other.name == item.name:
                raise RegmapError(f"name {item.name!r} is already used by the item at 0x{address:04x}")
        align = item.span if isinstance(item, Array) else WORD_BYTES
        address = -(-self._cursor // align) * align
        size = item.span if isinstance(item, Array) else WORD_BYTES
        if address + size > self.max_bytes:
            raise RegmapError(
                f"{type(item).__name__.lower()} {item.name} at 0x{address:04x} (size 0x{size:x}) "
                f"does not fit the map's 0x{self.max_bytes:x} bytes"
            )
        self._claim_members(item)
        self._entries.append((address, item))
        self._cursor = address + size
        return address

    def _claim_members(self, item) -> None:
        names = [m.name for m in _item_members(item)]
        for name in names:
            if name in self._members or name in ("bus", "irq"):
                owner = self._members.get(name, "the bank itself")
                raise RegmapError(f"signature member {name!r} of {item.name} collides with the one of {owner}")
        for name in names:
            self._members[name] = item.name

    def add_interrupts(self, status: str, *, master: tuple[str, str] | None = None,
                       enable: str = "IRQ_ENABLE", pending: str = "IRQ_PENDING") -> None:
        """Add an enable register (RW) and a pending register (R) with one bit per RW1C field
        of register ``status``; the bank then drives ``irq`` = OR of pending bits (AND the
        RW field ``master`` = (register, field) when given)."""
        if self.interrupts is not None:
            raise RegmapError("the map already has interrupts")
        sources = [f for f in self.register(status).fields if f.access is Access.RW1C]
        if not sources:
            raise RegmapError(f"register {status} has no RW1C field to raise an interrupt")
        if master is not None and self.register(master[0]).field(master[1]).access is not Access.RW:
            raise RegmapError(f"interrupt master enable {master[0]}.{master[1]} must be an RW field")
        self.add(Register(enable, tuple(Field(f.name, doc=f"enable the interrupt of {status}.{f.name}")
                                        for f in sources), doc=f"Interrupt enables, one per sticky bit of {status}"))
        self.add(Register(pending, tuple(Field(f.name, access=Access.R, source=Source.IRQ_PENDING,
                                               doc=f"{status}.{f.name} AND {enable}.{f.name}") for f in sources),
                          doc=f"Pending interrupts: sticky bits of {status} that are enabled"))
        self.interrupts = Interrupts(status, enable, pending, master)

    # -- walking ------------------------------------------------------------------
    def entries(self) -> Iterator[tuple[int, Register | Array]]:
        """Every (byte address, item) in address order."""
        return iter(sorted(self._entries, key=lambda e: e[0]))

    @property
    def registers(self) -> list[tuple[int, Register]]:
        return [(a, i) for a, i in self.entries() if isinstance(i, Register)]

    @property
    def arrays(self) -> list[tuple[int, Array]]:
        return [(a, i) for a, i in self.entries() if isinstance(i, Array)]

    def address(self, name: str) -> int:
        """Byte address of register or array base ``name``."""
        for address, item in self._entries:
            if item.name == name:
                return address
        raise RegmapError(f"the map has no register or array {name!r}")

    def item(self, name: str) -> Register | Array:
        for _, item in self._entries:
            if item.name == name:
                return item
        raise RegmapError(f"the map has no register or array {name!r}")

    def register(self, name: str) -> Register:
        item = self.item(name)
        if not isinstance(item, Register):
            raise RegmapError(f"{name} is an array, not a register")
        return item

    @property
    def size(self) -> int:
        """Bytes decoded by the bank: the used space rounded up to a power of two (>= 8)."""
        return max(8, 1 << (self._cursor - 1).bit_length())

    @property
    def addr_width(self) -> int:
        """Width of the bus's word address ``adr``."""
        return (self.size // WORD_BYTES - 1).bit_length()

    def members(self) -> list[Member]:
        """Every signature member of the bank except ``bus``, in address order."""
        members = [m for _, item in self.entries() for m in _item_members(item)]
        if self.interrupts is not None:
            members.append(Member("irq", "out", 1, False, "irq", None))
        return members


def field_member(register: Register, f: Field) -> str:
    """Signature member of a field: ``<register>_<field>`` in lower case."""
    return f"{register.name.lower()}_{f.name}"


def array_member(array: Array) -> str:
    """Signature member of an array's datapath read port: ``<array>_rd``."""
    return f"{array.name.lower()}_rd"


def _item_members(item) -> list[Member]:
    if isinstance(item, Array):
        return [Member(array_member(item), "in", item.width, item.signed, "array", item)]
    members = []
    for f in item.fields:
        if f.source is Source.BUS_ERROR:
            members.append(Member(field_member(item, f), "out", f.width, False, "field", (item, f)))
        if not f.has_port:
            continue
        name = field_member(item, f)
        direction = "in" if f.access is Access.R else "out"
        members.append(Member(name, direction, f.width, f.signed, "field", (item, f)))
        if f.access is Access.RW1C:
            members.append(Member(f"{name}_set", "in", f.width, False, "set", (item, f)))
    return members


# -- the tile's map ------------------------------------------------------------------

#: Magic word in the tile's ID register ("NPHT").
TILE_MAGIC = 0x4E504854
#: Version of the tile register map (major, minor); bump major on incompatible changes.
TILE_MAP_VERSION = (1, 0)


@dataclass(frozen=True)
class ParamFormats:
    """Widths of the per-column parameters and the tile gain, in one place.

    :meth:`from_config` takes each from ``cfg.datapath`` when the configuration has a
    field of that name, else the default here.

    Parameters
    ----------
    gain_bits, gain_frac_bits : int
        Signed drift gain, Q(gain_bits - gain_frac_bits).(gain_frac_bits); default Q4.12.
    bn_scale_bits, bn_scale_frac_bits : int
        Signed batch-norm scale; default Q4.12.
    bn_bias_bits : int
        Signed batch-norm bias in output LSBs; default 24.
    trim_bits : int
        Signed ADC trim (offset) in ADC codes; default ``adc.bits``.
    """

    gain_bits: int = 16
    gain_frac_bits: int = 12
    bn_scale_bits: int = 16
    bn_scale_frac_bits: int = 12
    bn_bias_bits: int = 24
    trim_bits: int = 8

    @classmethod
    def from_config(cls, cfg) -> "ParamFormats":
        defaults = {**cls().__dict__, "trim_bits": cfg.adc.bits}
        return cls(**{name: getattr(cfg.datapath, name, value) for name, value in defaults.items()})

    def q(self, bits: int, frac: int) -> str:
        return f"Q{bits - frac}.{frac}"


def tile_register_map(cfg, batch_norm: bool = True) -> RegisterMap:
    """The register map of one crossbar tile sized by ``cfg`` (a ChipConfig); without
    ``batch_norm`` (a tile on the chip, whose batch-norm follows the partial-sum adder)
    the map has no batch-norm registers or status bit."""
    fmt = ParamFormats.from_config(cfg)
    cols, lanes = cfg.tile.cols, cfg.datapath.lanes
    rmap = RegisterMap("tile", doc=f"CSR bank of one {cfg.tile.rows} x {cols} crossbar tile")
    for register in _tile_identity(cfg):
        rmap.add(register)
    for register in _tile_control(cfg, fmt, batch_norm):
        rmap.add(register)
    rmap.add_interrupts("STATUS", master=("CTRL", "irq_en"))
    one = 1 << fmt.gain_frac_bits
    rmap.add(Array("ADC_TRIM", cols, fmt.trim_bits, signed=True, lanes=lanes,
                   doc="per-column ADC offset trim in ADC codes, subtracted from each code (saturating)"))
    rmap.add(Array("GAIN", cols, fmt.gain_bits, signed=True, lanes=lanes, reset=one,
                   doc=f"per-column drift gain alpha, {fmt.q(fmt.gain_bits, fmt.gain_frac_bits)}"))
    if not batch_norm:
        return rmap
    rmap.add(Array("BN_SCALE", cols, fmt.bn_scale_bits, signed=True, lanes=lanes,
                   reset=1 << fmt.bn_scale_frac_bits,
                   doc=f"per-column batch-norm scale gamma, {fmt.q(fmt.bn_scale_bits, fmt.bn_scale_frac_bits)}"))
    rmap.add(Array("BN_BIAS", cols, fmt.bn_bias_bits, signed=True, lanes=lanes,
                   doc="per-column batch-norm bias beta in output LSBs"))
    return rmap


def _tile_identity(cfg) -> list[Register]:
    const = Access.CONST
    major, minor = TILE_MAP_VERSION
    return [
        Register("ID", (Field("magic", 32, const, TILE_MAGIC, "magic word 0x4E504854 ('NPHT')"),),
                 doc="Identifies a NeuroPhase tile"),
        Register("VERSION", (Field("minor", 8, const, minor, "register map minor version (compatible additions)"),
                             Field("major", 8, const, major, "register map major version (incompatible changes)")),
                 doc="Register map version"),
        Register("CONFIG0", (Field("rows", 13, const, cfg.tile.rows, "crossbar rows"),
                             Field("cols", 13, const, cfg.tile.cols, "crossbar columns"),
                             Field("adc_bits", 5, const, cfg.adc.bits, "signed ADC code width")),
                 doc="Configuration the RTL was generated for: array and ADC"),
        Register("CONFIG1", (Field("lanes", 9, const, cfg.datapath.lanes, "columns per datapath cycle"),
                             Field("input_bits", 5, const, cfg.input.bits, "activation width"),
                             Field("slices", 4, const, cfg.weights.slices, "weight slices"),
                             Field("activation_bits", 5, const, cfg.datapath.activation_bits,
                                   "requantised output width")),
                 doc="Configuration the RTL was generated for: datapath"),
    ]


def _tile_control(cfg, fmt: ParamFormats, batch_norm: bool = True) -> list[Register]:
    R, RW, RW1C, W1P = Access.R, Access.RW, Access.RW1C, Access.W1P
    timeout = getattr(cfg.datapath, "adc_timeout_cycles", min(0xFFFF, 4 * cfg.adc.latency_cycles))
    per_column = getattr(cfg.datapath, "gain_mode", "per-column") == "per-column"
    return [
        Register("CTRL", (Field("start", access=W1P, doc="start one MVM"),
                          Field("abort", access=W1P, doc="abort the MVM in progress"),
                          Field("soft_reset", access=W1P, doc="reset the datapath (not the registers)"),
                          Field("irq_en", access=RW, offset=8, doc="master interrupt enable")),
                 doc="Commands and global enables"),
        Register("STATUS", (Field("busy", access=R, doc="an MVM is in progress"),
                            Field("done", access=RW1C, doc="an MVM finished"),
                            Field("adc_timeout", access=RW1C, doc="an ADC conversion exceeded ADC_TIMEOUT"),
                            Field("sat_shift_add", access=RW1C, doc="shift-and-add saturated"),
                            Field("sat_drift_gain", access=RW1C, doc="drift gain saturated"),
                            *([Field("sat_batch_norm", access=RW1C, doc="batch-norm/requantisation saturated")]
                              if batch_norm else []),
                            Field("bus_error", access=RW1C, source=Source.BUS_ERROR,
                                  doc="a bus access was answered with err")),
                 doc="Status; sticky bits are cleared by writing 1"),
        Register("ADC_TIMEOUT", (Field("cycles", 16, RW, timeout, "clock cycles an ADC conversion may take"),),
                 doc="ADC conversion timeout"),
        Register("DRIFT", (Field("per_column", access=RW, reset=int(per_column),
                                 doc="1: per-column gains from the GAIN array, 0: DRIFT_GAIN.alpha for every column"),),
                 doc="Drift compensation mode"),
        Register("DRIFT_GAIN", (Field("alpha", fmt.gain_bits, RW, 1 << fmt.gain_frac_bits,
                                     f"drift gain alpha of every column when DRIFT.per_column is 0, "
                                     f"{fmt.q(fmt.gain_bits, fmt.gain_frac_bits)}", signed=True),),
                 doc="Drift gain of the whole tile"),
        *([Register("BN_CTRL", (Field("relu_en", access=RW, reset=1, doc="apply ReLU after batch-norm"),
                                Field("requant_shift", 6, RW, 0, "right shift before requantisation", offset=8)),
                    doc="Batch-norm output stage")] if batch_norm else []),
        Register("MVM_COUNT", (Field("count", 32, R, doc="MVMs completed since reset"),),
                 doc="MVM counter"),
        Register("ERROR_COUNT", (Field("bus", 16, R, source=Source.BUS_ERROR_COUNT,
                                       doc="bus accesses answered with err (saturates)"),),
                 doc="Error counters"),
    ]
