"""Exports of a :class:`~neurophase.regmap.RegisterMap`: Markdown reference, C header,
JSON map, LiteX ``csr.csv`` and SystemRDL, all from walking the one description.

Every export takes the map's ``base``: the byte address where the map sits on its bus
(0 for a chip-level map, the window base inside the FPGA address space). The CSV, the C
header and the Markdown give absolute addresses (base + offset); the JSON gives the base and
offsets; the SystemRDL is a relocatable ``addrmap`` that a parent places at the base.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from neurophase.atomic import write_text_atomic
from neurophase.regmap import WORD_BYTES, Access, Array, RegisterMap, Register, array_member, field_member
from neurophase.regmap_systemrdl import to_systemrdl

__all__ = ["to_dict", "to_json", "to_csv", "to_litex_csv", "to_c_header", "to_markdown", "write_regmap_exports",
           "write_text_atomic", "check_base", "EXPORT_SUFFIXES", "LITEX_CONSTANTS", "c_comment", "c_register_defines",
           "c_array_defines", "markdown_sections", "markdown_anchor"]

#: Export kind -> file suffix; files are named ``<map>_regs<suffix>``.
EXPORT_SUFFIXES = {"markdown": ".md", "c-header": ".h", "json": ".json", "csv": ".csv", "systemrdl": ".rdl"}

#: Constants LiteX's ``RemoteClient`` / ``litex_cli`` need in a ``csr.csv``: 32-bit CSR words,
#: 32-bit byte addresses on the bus (Etherbone records of ``litex_server``).
LITEX_CONSTANTS = (("config_csr_data_width", 32), ("config_bus_address_width", 32))


def check_base(rmap: RegisterMap, base) -> int:
    """``base`` if it is a valid byte address for ``rmap`` (a non-negative multiple of the
    map's size, below 2**32), else :class:`ValueError` naming the map and the value."""
    if isinstance(base, bool) or not isinstance(base, int) or base < 0 or base % rmap.size or base + rmap.size > 1 << 32:
        raise ValueError(f"base of register map {rmap.name!r} must be a multiple of its size 0x{rmap.size:x} "
                         f"from 0 to 0x{(1 << 32) - rmap.size:x}, not {base!r}")
    return base


_ACCESS_NOTES = {
    Access.R: "read-only, from the hardware",
    Access.CONST: "read-only constant",
    Access.RW: "read-write",
    Access.RW1C: "sticky, set by the hardware, write 1 to clear",
    Access.W1P: "write 1 for a one-cycle pulse, reads 0",
}


def _hex(value: int, digits: int = 8) -> str:
    return f"0x{value:0{digits}x}"


def _field_port(register: Register, f) -> str:
    if f.source is not None and f.access is not Access.RW1C:
        return f"(internal: {f.source.value})"
    if f.access is Access.CONST:
        return "—"
    name = field_member(register, f)
    if f.source is not None:
        return f"`{name}` (set internally: {f.source.value})"
    return f"`{name}`, `{name}_set`" if f.access is Access.RW1C else f"`{name}`"


# -- JSON ------------------------------------------------------------------------------------------


def to_dict(rmap: RegisterMap, base: int = 0) -> dict:
    """The map as plain data (the JSON export); ``address`` and array ``base`` are offsets
    from the map's ``base``."""
    irq = rmap.interrupts
    return {
        "name": rmap.name,
        "doc": rmap.doc,
        "base": check_base(rmap, base),
        "word_bytes": WORD_BYTES,
        "size": rmap.size,
        "addr_width": rmap.addr_width,
        "registers": [_register_dict(a, r) for a, r in rmap.registers],
        "arrays": [_array_dict(a, arr) for a, arr in rmap.arrays],
        "interrupts": None if irq is None else {
            "status": irq.status, "enable": irq.enable, "pending": irq.pending,
            "master": None if irq.master is None else ".".join(irq.master),
        },
    }


def _register_dict(address: int, register: Register) -> dict:
    return {
        "name": register.name, "address": address, "access": register.access, "reset": register.reset,
        "byte_writes": register.byte_writes, "doc": register.doc,
        "fields": [{
            "name": f.name, "offset": f.offset, "width": f.width, "access": f.access.value, "reset": f.reset,
            "signed": f.signed, "source": None if f.source is None else f.source.value, "doc": f.doc,
        } for f in register.fields],
    }


def _array_dict(base: int, array: Array) -> dict:
    return {
        "name": array.name, "base": base, "length": array.length, "stride": WORD_BYTES, "width": array.width,
        "signed": array.signed, "lanes": array.lanes, "reset": array.reset, "access": array.access, "doc": array.doc,
    }


def to_json(rmap: RegisterMap, base: int = 0) -> str:
    """The JSON export: :func:`to_dict` as indented text."""
    return json.dumps(to_dict(rmap, base), indent=2) + "\n"


# -- CSV -------------------------------------------------------------------------------------------


def to_csv(rmap: RegisterMap, base: int = 0) -> str:
    """LiteX ``csr.csv`` of one map at byte address ``base`` (see :func:`to_litex_csv`)."""
    return to_litex_csv([(rmap, base)], f"Register map {rmap.name!r}")


def to_litex_csv(maps: Sequence[tuple], title: str) -> str:
    """LiteX ``csr.csv`` of maps placed at their bases, loadable as it is by LiteX's
    ``RemoteClient(csr_csv=...)`` and ``litex_cli --csr-csv``.

    ``maps`` holds ``(map, base)`` pairs, or ``(map, base, name)`` triples where ``name``
    replaces the map's name in the CSV (one map placed several times, e.g. every tile of
    a chip as ``tile0``, ``tile1``, ...).

    Rows (five columns each, as LiteX's loader unpacks them): ``csr_base,<map>,<base>,,``
    per map; ``csr_register,<map>_<reg>,<address>,1,<ro|rw|wo>`` per register;
    the :data:`LITEX_CONSTANTS`; ``memory_region,<map>_<array>,<address>,<bytes>,<ro|rw|wo>``
    per array. Addresses are absolute byte addresses; the access column is the bus's true
    mode (LiteX refuses to read ``wo`` and to write ``ro`` registers).

    Raises
    ------
    ValueError
        For a bad base, or two maps that overlap or share a name.
    """
    placed = sorted(((check_base(rmap, base), rmap, name or rmap.name) for rmap, base, name in map(_named, maps)),
                    key=lambda e: e[0])
    for (base_a, a, name_a), (base_b, _, name_b) in zip(placed, placed[1:]):
        if base_a + a.size > base_b:
            raise ValueError(f"register maps {name_a!r} at 0x{base_a:x} and {name_b!r} at 0x{base_b:x} overlap")
    names = [name for _, _, name in placed]
    if len(set(names)) != len(names):
        raise ValueError(f"register map names must differ in one CSV, not {names}")
    lines = ["#" + "-" * 79, f"# {title}: generated by neurophase from its Python description; do not edit.",
             "#" + "-" * 79]
    lines += [f"csr_base,{name},{_hex(base)},," for base, _, name in placed]
    lines += [f"csr_register,{name}_{r.name.lower()},{_hex(base + a)},1,{r.access}"
              for base, rmap, name in placed for a, r in rmap.registers]
    lines += [f"constant,{name},{value},," for name, value in LITEX_CONSTANTS]
    lines += [f"memory_region,{name}_{arr.name.lower()},{_hex(base + a)},{arr.length * WORD_BYTES},{arr.access}"
              for base, rmap, name in placed for a, arr in rmap.arrays]
    return "\n".join(lines) + "\n"


def _named(entry: tuple) -> tuple:
    if len(entry) == 2:
        return (*entry, None)
    if len(entry) == 3:
        return entry
    raise ValueError(f"a placed map must be (map, base) or (map, base, name), not {entry!r}")


# -- C header ---------------------------------------------------------------------------------------


def c_comment(text: str) -> str:
    """``text`` safe inside a C block comment."""
    return text.replace("*/", "* /")


def to_c_header(rmap: RegisterMap, base: int = 0) -> str:
    """``#define``\\ s for every address (absolute: ``base`` + offset), reset value, field
    shift/width/mask and array geometry."""
    prefix = f"NP_{rmap.name.upper()}"
    guard = f"{prefix}_REGS_H"
    lines = [
        f"/* Register map '{rmap.name}': {c_comment(rmap.doc)}",
        " * Generated by neurophase from its Python description; do not edit. */",
        f"#ifndef {guard}", f"#define {guard}", "",
        f"#define {prefix}_BASE {_hex(check_base(rmap, base))}u  /* byte address of the map on its bus */",
        f"#define {prefix}_SIZE {_hex(rmap.size)}u",
        f"#define {prefix}_WORD_BYTES {WORD_BYTES}u", "",
    ]
    lines += c_register_defines(rmap, base, prefix) + c_array_defines(rmap, base, prefix)
    lines.append(f"#endif /* {guard} */")
    return "\n".join(lines) + "\n"


def c_register_defines(rmap: RegisterMap, base: int, prefix: str, addr_suffix: str = "ADDR") -> list[str]:
    """Header lines of every register of ``rmap``: ``<prefix>_<REG>_<addr_suffix>`` (``base``
    + offset), ``_RESET`` and each field's ``_SHIFT``, ``_WIDTH`` and ``_MASK``."""
    lines = []
    for offset, register in rmap.registers:
        name = f"{prefix}_{register.name}"
        lines += [f"/* {register.name}: {c_comment(register.doc)} ({register.access}) */",
                  f"#define {name}_{addr_suffix} {_hex(base + offset)}u",
                  f"#define {name}_RESET {_hex(register.reset)}u"]
        for f in register.fields:
            field_name = f"{name}_{f.name.upper()}"
            lines += [f"#define {field_name}_SHIFT {f.offset}u  /* {f.access.value}: {c_comment(f.doc)} */",
                      f"#define {field_name}_WIDTH {f.width}u",
                      f"#define {field_name}_MASK {_hex(f.mask)}u"]
        lines.append("")
    return lines


def c_array_defines(rmap: RegisterMap, base: int, prefix: str) -> list[str]:
    """Header lines of every array of ``rmap``: ``<prefix>_<ARRAY>_BASE`` (``base`` + offset),
    ``_STRIDE``, ``_LENGTH``, ``_WIDTH``, ``_SIGNED``, ``_LANES`` and ``_ADDR(i)``."""
    lines = []
    for offset, array in rmap.arrays:
        name = f"{prefix}_{array.name}"
        lines += [f"/* {array.name}: {c_comment(array.doc)} ({array.format}, {array.access}) */",
                  f"#define {name}_BASE {_hex(base + offset)}u", f"#define {name}_STRIDE {WORD_BYTES}u",
                  f"#define {name}_LENGTH {array.length}u", f"#define {name}_WIDTH {array.width}u",
                  f"#define {name}_SIGNED {int(array.signed)}", f"#define {name}_LANES {array.lanes}u",
                  f"#define {name}_ADDR(i) ({name}_BASE + (i) * {name}_STRIDE)", ""]
    return lines


# -- Markdown ------------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(rmap: RegisterMap, base: int = 0) -> str:
    """The reference: a summary table, the arrays, then each register's fields (absolute
    addresses: ``base`` + offset)."""
    placed = (f" The map sits at byte address {_hex(check_base(rmap, base))} on its bus; the addresses below "
              "include that base." if base else "")
    lines = [f"# Register map `{rmap.name}`", "", _md(rmap.doc), "",
             "Generated by `neurophase generate` from the Python description; do not edit. "
             f"Byte addresses; 32-bit words; the bank decodes {_hex(rmap.size, 4)} bytes "
             f"(`adr` is {rmap.addr_width} bits, byte address >> 2). Any other address answers `err`.{placed}", "",
             "## Registers", "", *markdown_sections(rmap, base)]
    return "\n".join(lines) + "\n"


def markdown_anchor(heading: str) -> str:
    """The anchor Markdown renderers give a heading: lower case, spaces as ``-``, no punctuation."""
    return "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def markdown_sections(rmap: RegisterMap, base: int = 0, *, level: int = 2, prefix: str = "",
                      relative_to: str = "") -> list[str]:
    """Markdown lines of ``rmap``'s register table, arrays, interrupts and one section per
    register (headings ``level`` and ``level + 1``, named ``<prefix><REG>``). With
    ``relative_to`` (e.g. ``"tile base"``) addresses are offsets from it, written so."""
    column = "Offset" if relative_to else "Address"
    lines = [f"| {column} | Register | Access | Reset | Description |", "|---|---|---|---|---|"]
    for offset, register in rmap.registers:
        address = base + offset
        lines.append(f"| `{_hex(address, 4)}` | [{register.name}](#{markdown_anchor(prefix + register.name)}) "
                     f"| {register.access} | `{_hex(register.reset)}` | {_md(register.doc)} |")
    heading = "#" * level
    if rmap.arrays:
        lines += ["", f"{heading} Arrays", "", "One element per 32-bit word (stride 4). Signed elements read back "
                  "sign-extended; writes keep the low *width* bits and must write the whole word.", "",
                  f"| {'Offset' if relative_to else 'Base'} | Array | Length | Element | Lanes | Reset "
                  "| Datapath port | Description |",
                  "|---|---|---|---|---|---|---|---|"]
        for offset, array in rmap.arrays:
            lines.append(f"| `{_hex(base + offset, 4)}` | {array.name} | {array.length} | {array.format} "
                         f"| {array.lanes} "
                         f"| {array.reset} | `{array_member(array)}` | {_md(array.doc)} |")
    if rmap.interrupts is not None:
        irq = rmap.interrupts
        master = f", gated by {'.'.join(irq.master)}" if irq.master else ""
        lines += ["", f"{heading} Interrupts", "", f"`irq` = OR of {irq.pending} (= {irq.status} sticky bits AND "
                  f"{irq.enable}){master}."]
    for offset, register in rmap.registers:
        where = f"{relative_to} + `{_hex(offset, 4)}`" if relative_to else f"`{_hex(base + offset, 4)}`"
        lines += _register_section(where, register, f"{heading}# {prefix}{register.name}")
    return lines


def _register_section(where: str, register: Register, heading: str) -> list[str]:
    writes = ("byte writes allowed (`sel` selects bytes)" if register.byte_writes
              else "read-only: writes answer `err`" if register.read_only
              else "whole-word writes only (`sel != 0b1111` answers `err`)")
    lines = ["", heading, "", f"{where} — {_md(register.doc)}; {writes}.", "",
             "| Bits | Field | Access | Reset | Port | Description |", "|---|---|---|---|---|---|"]
    for f in sorted(register.fields, key=lambda f: -f.offset):
        reset = f"{f.reset}" if f.signed else _hex(f.reset, max(1, (f.width + 3) // 4))
        lines.append(f"| {f.bits} | {f.name} | {f.access.value} | `{reset}` | {_field_port(register, f)} "
                     f"| {_md(f.doc)} ({_ACCESS_NOTES[f.access]}) |")
    return lines


# -- files ---------------------------------------------------------------------------------------------

_WRITERS = {"markdown": to_markdown, "c-header": to_c_header, "json": to_json, "csv": to_csv,
            "systemrdl": lambda rmap, base: to_systemrdl(rmap)}


def write_regmap_exports(rmap: RegisterMap, out_dir: str | Path, base: int = 0) -> dict[str, Path]:
    """Write every export of ``rmap`` at byte address ``base`` to ``out_dir`` as
    ``<map>_regs.{md,h,json,csv,rdl}`` (each atomically); returns kind -> path."""
    check_base(rmap, base)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {kind: write_text_atomic(out_dir / f"{rmap.name}_regs{suffix}", _WRITERS[kind](rmap, base))
            for kind, suffix in EXPORT_SUFFIXES.items()}


def main(argv: list[str] | None = None) -> None:
    """``python -m neurophase.regmap_export PATH``: write the default tile's Markdown reference."""
    import sys

    from neurophase.config import ChipConfig
    from neurophase.regmap import tile_register_map

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m neurophase.regmap_export PATH.md")
    write_text_atomic(args[0], to_markdown(tile_register_map(ChipConfig())))


if __name__ == "__main__":
    main()
