"""Exports of the chip's whole address map (:func:`~neurophase.chip_regmap.chip_address_map`):
one Markdown reference, C header, JSON map, LiteX ``csr.csv`` and SystemRDL file for the
chip registers, every tile's registers at its base and the sequencer's memory windows.

The tiles all share one register map, placed at evenly spaced bases
(``tile base(t) = first tile base + t * stride``). The Markdown, the C header and the JSON
describe that map once, as offsets from a tile's base; the LiteX CSV lists every tile's
registers at their absolute addresses (LiteX resolves names to addresses only that way);
the SystemRDL instantiates the tile ``addrmap`` as an array.
"""

from __future__ import annotations

import json
from pathlib import Path

from neurophase.atomic import write_text_atomic
from neurophase.chip_regmap import ERROR_CODES, ChipAddressMap, Region, chip_address_map
from neurophase.models.chip_isa import INSTRUCTION_BITS, WORDS_PER_INSTRUCTION, Opcode
from neurophase.regmap import WORD_BYTES, RegisterMap
from neurophase.regmap_export import (c_array_defines, c_comment, c_register_defines, markdown_sections, to_dict,
                                      to_litex_csv)
from neurophase.regmap_systemrdl import RDL_HEADER, rdl_name, rdl_string, systemrdl_addrmap

__all__ = ["CHIP_MAP_NAME", "CHIP_MAP_FILES", "TileLayout", "chip_map_dict", "chip_map_json", "chip_map_c_header",
           "chip_map_markdown", "chip_map_csv", "chip_map_systemrdl", "region_table", "write_chip_map_exports"]

#: Name of the chip's address space in the exports (SystemRDL root, JSON ``name``).
CHIP_MAP_NAME = "neurophase_chip"
#: Export kind -> file name written by :func:`write_chip_map_exports`.
CHIP_MAP_FILES = {"markdown": "chip_map.md", "c-header": "chip_map.h", "json": "chip_map.json",
                  "csv": "chip_map.csv", "systemrdl": "chip_map.rdl"}


class TileLayout:
    """Where the tiles sit: ``count`` windows of one map, ``stride`` bytes apart from ``base``.

    Parameters
    ----------
    amap : ChipAddressMap
        The chip's address map.

    Attributes
    ----------
    count, base, stride, span : int
        Tiles; byte base of tile 0; bytes from one tile's base to the next; bytes of each window.
    rmap : RegisterMap
        The register map every tile shares (offsets from its base).

    Raises
    ------
    ValueError
        When the map has no tile, the tiles do not share one register map, or their bases
        are not evenly spaced in tile order (then no ``base + t * stride`` formula holds).
    """

    def __init__(self, amap: ChipAddressMap):
        tiles = [r for r in amap.regions if _is_tile(r)]
        if not tiles:
            raise ValueError("the chip address map has no tile region (regions named tile0, tile1, ...)")
        tiles.sort(key=lambda r: int(r.name[4:]))
        self.count = len(tiles)
        self.base = tiles[0].base
        self.span = tiles[0].span
        self.rmap: RegisterMap = tiles[0].rmap
        self.stride = tiles[1].base - tiles[0].base if len(tiles) > 1 else self.span
        for t, region in enumerate(tiles):
            if region.name != f"tile{t}" or region.rmap is not self.rmap or region.base != self.base + t * self.stride:
                raise ValueError(f"tile region {region.name} at 0x{region.base:x} breaks the tile layout "
                                 f"base 0x{self.base:x} + t * 0x{self.stride:x} of tiles 0 to {self.count - 1}")

    def tile_base(self, tile: int) -> int:
        """Byte base of tile ``tile``."""
        if isinstance(tile, bool) or not isinstance(tile, int) or not 0 <= tile < self.count:
            raise ValueError(f"tile must be an integer from 0 to {self.count - 1}, not {tile!r}")
        return self.base + tile * self.stride


def _hex(value: int, digits: int = 8) -> str:
    return f"0x{value:0{digits}x}"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _is_tile(region: Region) -> bool:
    return region.name.startswith("tile") and region.name[4:].isdigit()


def _kind(region: Region) -> str:
    if _is_tile(region):
        return "tile"
    return "registers" if region.name == "chip" else "memory"


def _holds(region: Region) -> str:
    if _is_tile(region):
        return f"registers of tile {region.name[4:]} (the tile map without batch-norm)"
    if region.name == "chip":
        return "chip control registers: sequencer, status, error, counters"
    _, array = region.rmap.arrays[0]
    return f"{array.name}: {array.length} entries, {array.doc}"


def _memories(amap: ChipAddressMap) -> list[Region]:
    return [r for r in amap.regions if _kind(r) == "memory"]


def _size(amap: ChipAddressMap) -> int:
    return WORD_BYTES << amap.addr_width


def _resolve(cfg, amap: ChipAddressMap | None) -> ChipAddressMap:
    return chip_address_map(cfg) if amap is None else amap


# -- JSON ------------------------------------------------------------------------------------------


def chip_map_dict(cfg, amap: ChipAddressMap | None = None) -> dict:
    """The whole chip map as plain data (the JSON export).

    ``regions`` lists every window (each tile too) with its base and span; ``maps`` holds
    the chip registers and the memories at their bases and the tile map once, as offsets
    from a tile's base (``tiles`` gives ``base + t * stride``).
    """
    amap = _resolve(cfg, amap)
    tiles = TileLayout(amap)
    chip = amap.region("chip")
    return {
        "name": CHIP_MAP_NAME,
        "doc": chip.rmap.doc,
        "word_bytes": WORD_BYTES,
        "size": _size(amap),
        "addr_width": amap.addr_width,
        "regions": [{"name": r.name, "kind": _kind(r), "base": r.base, "span": r.span, "addr_width": r.addr_width,
                     "map": "tile" if _is_tile(r) else r.name} for r in amap.regions],
        "tiles": {"count": tiles.count, "base": tiles.base, "stride": tiles.stride, "span": tiles.span, "map": "tile"},
        "maps": {"chip": to_dict(chip.rmap, chip.base), "tile": to_dict(tiles.rmap, 0),
                 **{r.name: to_dict(r.rmap, r.base) for r in _memories(amap)}},
        "instruction": {"bits": INSTRUCTION_BITS, "words": WORDS_PER_INSTRUCTION,
                        "opcodes": {op.name: op.value for op in Opcode}},
        "error_codes": [{"code": code, "meaning": meaning} for code, meaning in sorted(ERROR_CODES.items())],
    }


def chip_map_json(cfg, amap: ChipAddressMap | None = None) -> str:
    """The JSON export: :func:`chip_map_dict` as indented text."""
    return json.dumps(chip_map_dict(cfg, amap), indent=2) + "\n"


# -- C header ---------------------------------------------------------------------------------------


def chip_map_c_header(cfg, amap: ChipAddressMap | None = None) -> str:
    """``#define``\\ s of the region bases and spans, ``NP_CHIP_TILE_BASE(t)``, the chip
    registers (``NP_CHIP_<REG>_ADDR``, fields), the tile registers as offsets
    (``NP_CHIP_TILE_<REG>_OFFSET``, fields; ``NP_CHIP_TILE_REG(t, REG)`` is the address),
    the memory windows (``NP_CHIP_<MEMORY>_BASE``, ``_LENGTH``, ``_ADDR(i)``, ...) and the
    instruction geometry and opcodes."""
    amap = _resolve(cfg, amap)
    tiles = TileLayout(amap)
    chip = amap.region("chip")
    guard = "NP_CHIP_MAP_H"
    lines = [
        f"/* Chip address map '{CHIP_MAP_NAME}': {c_comment(chip.rmap.doc)}",
        " * Generated by neurophase from its Python description; do not edit. */",
        f"#ifndef {guard}", f"#define {guard}", "",
        f"#define NP_CHIP_MAP_SIZE {_hex(_size(amap))}u  /* bytes the chip bus decodes */",
        f"#define NP_CHIP_MAP_ADDR_WIDTH {amap.addr_width}u  /* word-address bits (byte address >> 2) */",
        f"#define NP_CHIP_WORD_BYTES {WORD_BYTES}u", "",
        "/* Regions: byte base and span of every window but the tiles (see NP_CHIP_TILE_BASE) */",
    ]
    for region in amap.regions:
        if not _is_tile(region):
            name = f"NP_CHIP_REGION_{region.name.upper()}"
            lines += [f"#define {name}_BASE {_hex(region.base)}u", f"#define {name}_SPAN {_hex(region.span)}u"]
    lines += [
        "", "/* Tiles: tile t's registers at NP_CHIP_TILE_BASE(t) + NP_CHIP_TILE_<REG>_OFFSET */",
        f"#define NP_CHIP_TILES {tiles.count}u",
        f"#define NP_CHIP_TILE0_BASE {_hex(tiles.base)}u",
        f"#define NP_CHIP_TILE_STRIDE {_hex(tiles.stride)}u",
        f"#define NP_CHIP_TILE_SPAN {_hex(tiles.span)}u",
        "#define NP_CHIP_TILE_BASE(t) (NP_CHIP_TILE0_BASE + (t) * NP_CHIP_TILE_STRIDE)",
        "#define NP_CHIP_TILE_REG(t, reg) (NP_CHIP_TILE_BASE(t) + NP_CHIP_TILE_##reg##_OFFSET)",
        "#define NP_CHIP_TILE_ARRAY_ADDR(t, array, i) (NP_CHIP_TILE_BASE(t) + NP_CHIP_TILE_##array##_ADDR(i))", "",
        f"/* Chip registers (region 'chip' at {_hex(chip.base)}) */",
        *c_register_defines(chip.rmap, chip.base, "NP_CHIP"),
        "/* Tile registers: offsets from NP_CHIP_TILE_BASE(t) */",
        *c_register_defines(tiles.rmap, 0, "NP_CHIP_TILE", "OFFSET"),
        "/* Tile arrays: _BASE and _ADDR(i) are offsets from NP_CHIP_TILE_BASE(t) */",
        *c_array_defines(tiles.rmap, 0, "NP_CHIP_TILE"),
        "/* Memory windows: absolute byte addresses */",
    ]
    for region in _memories(amap):
        lines += c_array_defines(region.rmap, region.base, "NP_CHIP")
    lines += _c_instructions(amap)
    lines.append(f"#endif /* {guard} */")
    return "\n".join(lines) + "\n"


def _c_instructions(amap: ChipAddressMap) -> list[str]:
    _, program = amap.region("program").rmap.arrays[0]
    lines = [f"/* Layer sequencer instructions: {INSTRUCTION_BITS} bits, {WORDS_PER_INSTRUCTION} words each "
             "in PROGRAM, word 0 holds bits 31:0 */",
             f"#define NP_CHIP_INSTRUCTION_BITS {INSTRUCTION_BITS}u",
             f"#define NP_CHIP_INSTRUCTION_WORDS {WORDS_PER_INSTRUCTION}u",
             f"#define NP_CHIP_INSTRUCTION_BYTES {WORDS_PER_INSTRUCTION * WORD_BYTES}u",
             f"#define NP_CHIP_PROGRAM_INSTRUCTIONS {program.length // WORDS_PER_INSTRUCTION}u",
             "#define NP_CHIP_INSTRUCTION_ADDR(pc, word) "
             "(NP_CHIP_PROGRAM_ADDR((pc) * NP_CHIP_INSTRUCTION_WORDS + (word)))"]
    lines += [f"#define NP_CHIP_OPCODE_{op.name} {op.value}u" for op in Opcode]
    lines += ["", "/* ERROR.code values of the layer sequencer:"]
    lines += [f" *   {code}: {c_comment(meaning)}" for code, meaning in sorted(ERROR_CODES.items())]
    return lines + [" */", f"#define NP_CHIP_ERROR_CODES {len(ERROR_CODES)}u", ""]


# -- LiteX CSV ---------------------------------------------------------------------------------------


def chip_map_csv(cfg, amap: ChipAddressMap | None = None) -> str:
    """LiteX ``csr.csv`` of the whole chip: ``csr_base`` per region (each tile as
    ``tile<t>``), every register at its absolute address (``chip_<reg>``,
    ``tile<t>_<reg>``), the memories and tile arrays as ``memory_region`` rows."""
    amap = _resolve(cfg, amap)
    placed = [(r.rmap, r.base, r.name) for r in amap.regions]
    return to_litex_csv(placed, f"Address space {CHIP_MAP_NAME!r} (the chip bus)")


# -- SystemRDL -------------------------------------------------------------------------------------


def chip_map_systemrdl(cfg, amap: ChipAddressMap | None = None) -> str:
    """SystemRDL: an ``addrmap`` per map (chip, tile, each memory with ``external``
    registers) and the root ``neurophase_chip`` placing them, the tiles as one array
    ``tile[count] @ base += stride``."""
    amap = _resolve(cfg, amap)
    tiles = TileLayout(amap)
    chip = amap.region("chip")
    lines = [RDL_HEADER.format(title=f"Address space {CHIP_MAP_NAME!r}"), ""]
    lines += [*systemrdl_addrmap(chip.rmap), "", *systemrdl_addrmap(tiles.rmap), ""]
    for region in _memories(amap):
        lines += [*systemrdl_addrmap(region.rmap, external=True), ""]
    lines += [f"addrmap {CHIP_MAP_NAME} {{", f"    name = {rdl_string(CHIP_MAP_NAME)};",
              f"    desc = {rdl_string(chip.rmap.doc)};"]
    for region in amap.regions:
        if region.name == "tile0":
            lines.append(f"    {rdl_name(tiles.rmap.name)} tile[{tiles.count}] @ {_hex(tiles.base, 1)} "
                         f"+= {_hex(tiles.stride, 1)};")
        elif not _is_tile(region):
            lines.append(f"    {rdl_name(region.rmap.name)} {rdl_name(region.name)} @ {_hex(region.base, 1)};")
    return "\n".join(lines + ["};"]) + "\n"


# -- Markdown ----------------------------------------------------------------------------------------


def chip_map_markdown(cfg, amap: ChipAddressMap | None = None) -> str:
    """The reference: the region table, the chip registers in full, the tile registers once
    (as offsets from a tile's base), the memory windows, the instructions and the
    sequencer's error codes."""
    amap = _resolve(cfg, amap)
    chip = amap.region("chip")
    tiles = TileLayout(amap)
    lines = [f"# Chip address map `{CHIP_MAP_NAME}`", "", _md(chip.rmap.doc) + ".", "",
             "Generated by `neurophase generate` from the Python description; do not edit. Byte addresses; "
             f"32-bit words; the chip bus decodes {_hex(_size(amap))} bytes (`adr` is {amap.addr_width} bits, "
             "byte address >> 2). Every region is aligned to its span, so the bus decoder compares upper "
             "address bits only; it answers an address outside every region with `err`.", "",
             *region_table(amap), "",
             "## Chip registers", "", f"Region `chip` at `{_hex(chip.base)}`.", "",
             *markdown_sections(chip.rmap, chip.base, level=3, prefix="chip "), "",
             "### Error codes", "", "Values of `ERROR.code`:", "", "| Code | Meaning |", "|---|---|",
             *(f"| {code} | {_md(meaning)} |" for code, meaning in sorted(ERROR_CODES.items())), "",
             "## Tile registers", "",
             f"Every tile has the same registers: tile *t* (0 ≤ *t* < {tiles.count}) at "
             f"tile base = `{_hex(tiles.base)}` + *t* × `{_hex(tiles.stride)}`, each register at tile base + offset "
             "(`NP_CHIP_TILE_REG(t, REG)` in `chip_map.h`).", "",
             *markdown_sections(tiles.rmap, 0, level=3, prefix="tile ", relative_to="tile base"), "",
             *_memory_section(amap), "", *_instruction_section()]
    return "\n".join(lines) + "\n"


def region_table(amap: ChipAddressMap, links: bool = True) -> list[str]:
    """Markdown lines of the ``## Regions`` table: base, span, region and contents; the tiles
    in one row (``base + t * stride``); ``links`` points the contents at the sections of
    :func:`chip_map_markdown`."""
    tiles = TileLayout(amap)
    last = tiles.tile_base(tiles.count - 1)
    names = "`tile0`" if tiles.count == 1 else f"`tile0` … `tile{tiles.count - 1}`"
    lines = ["## Regions", "", "| Base | Span | Region | Holds |", "|---|---|---|---|"]
    for region in amap.regions:
        if region.name == "tile0":
            lines.append(f"| `{_hex(tiles.base)}` + *t* × `{_hex(tiles.stride)}` (last `{_hex(last)}`) "
                         f"| `{_hex(tiles.span)}` each | {names} "
                         f"| {_link('registers of tile *t*', 'tile-registers', links)} |")
        elif not _is_tile(region):
            section = "chip-registers" if region.name == "chip" else "memory-windows"
            lines.append(f"| `{_hex(region.base)}` | `{_hex(region.span)}` | `{region.name}` "
                         f"| {_link(_md(_holds(region)), section, links)} |")
    return lines


def _link(text: str, anchor: str, links: bool) -> str:
    return f"[{text}](#{anchor})" if links else text


def _memory_section(amap: ChipAddressMap) -> list[str]:
    lines = ["## Memory windows", "", "Served by the sequencer's memories, one element per 32-bit word "
             "(stride 4); signed elements read back sign-extended.", "",
             "| Base | Window | Array | Entries | Element | Bytes | Access | Description |",
             "|---|---|---|---|---|---|---|---|"]
    for region in _memories(amap):
        for offset, array in region.rmap.arrays:
            lines.append(f"| `{_hex(region.base + offset)}` | `{region.name}` | {array.name} | {array.length} "
                         f"| {array.format} | {_hex(array.length * WORD_BYTES)} | {array.access} | {_md(array.doc)} |")
    return lines


def _instruction_section() -> list[str]:
    lines = ["## Instructions", "", f"One instruction is {INSTRUCTION_BITS} bits: {WORDS_PER_INSTRUCTION} "
             "consecutive words of `PROGRAM` (instruction *pc* at `PROGRAM` + "
             f"{WORDS_PER_INSTRUCTION * WORD_BYTES} × *pc*), word 0 holding bits 31:0. The opcode is bits 3:0.", "",
             "| Opcode | Instruction |", "|---|---|"]
    return lines + [f"| {op.value} | `{op.name}` |" for op in Opcode]


# -- files ---------------------------------------------------------------------------------------------

_WRITERS = {"markdown": chip_map_markdown, "c-header": chip_map_c_header, "json": chip_map_json,
            "csv": chip_map_csv, "systemrdl": chip_map_systemrdl}


def write_chip_map_exports(cfg, out_dir: str | Path) -> dict[str, Path]:
    """Write ``chip_map.{md,h,json,csv,rdl}`` for the chip of ``cfg`` (a ChipConfig) into
    ``out_dir`` (created if missing), each atomically; returns kind -> path."""
    amap = chip_address_map(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {kind: write_text_atomic(out_dir / name, _WRITERS[kind](cfg, amap)) for kind, name in CHIP_MAP_FILES.items()}
