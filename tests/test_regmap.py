"""The register map description, its builder and its exports."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from neurophase.config import ChipConfig
from neurophase.regmap import (TILE_MAGIC, WORD_BYTES, Access, Array, Field, Register, RegisterMap, RegmapError,
                               Source, tile_register_map)
from neurophase.regmap_export import to_c_header, to_csv, to_dict, to_json, to_markdown, write_regmap_exports

DOCS = Path(__file__).resolve().parent.parent / "docs"


def small_map() -> RegisterMap:
    rmap = RegisterMap("t", max_bytes=64)
    rmap.add(Register("A", (Field("x", 4),)))
    rmap.add(Array("ARR", 3, 8))
    rmap.add(Register("B", (Field("y", 1),)))
    return rmap


# -- builder -----------------------------------------------------------------------------------


def test_addresses_are_assigned_aligned_and_disjoint():
    rmap = tile_register_map(ChipConfig())
    spans = []
    for address, item in rmap.entries():
        size = item.span if isinstance(item, Array) else WORD_BYTES
        assert address % WORD_BYTES == 0 and address % size == 0, item.name
        spans.append((address, address + size))
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    assert spans[-1][1] <= rmap.size and rmap.size == 1 << (rmap.addr_width + 2)


def test_items_follow_in_order_and_arrays_align_to_their_span():
    rmap = small_map()
    assert [(a, i.name) for a, i in rmap.entries()] == [(0, "A"), (16, "ARR"), (32, "B")]
    assert rmap.size == 64 and rmap.addr_width == 4


def test_field_offsets_pack_upward_and_respect_explicit_offsets():
    reg = Register("R", (Field("a", 3), Field("b", 2, offset=8), Field("c", 1)))
    assert [(f.name, f.offset) for f in reg.fields] == [("a", 0), ("b", 8), ("c", 10)]
    assert reg.fields[1].mask == 0x300 and reg.fields[1].bits == "[9:8]"


@pytest.mark.parametrize("build, message", [
    (lambda m: m.add(Register("A", (Field("z"),))), "name 'A' is already used by the item at 0x0000"),
    (lambda m: m.add(Array("A", 4, 8)), "name 'A' is already used by the item at 0x0000"),
    (lambda m: m.add(Array("BIG", 16, 8)), "array BIG at 0x0040 (size 0x40) does not fit the map's 0x40 bytes"),
    (lambda m: m.add(Register("A_X", (Field("x"),))),
     "signature member 'a_x_x' of A_X collides with the one of A"),
])
def test_builder_errors(build, message):
    rmap = RegisterMap("t", max_bytes=64)
    rmap.add(Register("A", (Field("x_x"),)))
    rmap.add(Array("ARR", 3, 8))
    with pytest.raises(RegmapError, match=f"^{re.escape(message)}$"):
        build(rmap)


def test_register_overflow_is_refused():
    rmap = RegisterMap("t", max_bytes=8)
    rmap.add(Register("A", (Field("x"),)))
    rmap.add(Register("B", (Field("x"),)))
    with pytest.raises(RegmapError, match=r"^register C at 0x0008 \(size 0x4\) does not fit the map's 0x8 bytes$"):
        rmap.add(Register("C", (Field("x"),)))


@pytest.mark.parametrize("make, message", [
    (lambda: Field("x", 0), "width of field 'x' must be an integer from 1 to 32, not 0"),
    (lambda: Field("x", 33), "width of field 'x' must be an integer from 1 to 32, not 33"),
    (lambda: Field("x", True), "width of field 'x' must be an integer from 1 to 32, not True"),
    (lambda: Field("X"), "field name must be a lower-case identifier like 'start', not 'X'"),
    (lambda: Field("x", 4, reset=16), "reset of field 'x' must fit 4 unsigned bits (0 to 15), not 16"),
    (lambda: Field("x", 4, reset=-9, signed=True), "reset of field 'x' must fit 4 signed bits (-8 to 7), not -9"),
    (lambda: Field("x", access="RW"), "access of field 'x' must be one of R, CONST, RW, RW1C, W1P, not 'RW'"),
    (lambda: Field("x", access=Access.W1P, reset=1), "a W1P field must be unsigned with reset 0; field 'x' is not"),
    (lambda: Field("x", access=Access.RW, source=Source.BUS_ERROR),
     "field 'x' with source bus_error must have access RW1C, not RW"),
    (lambda: Field("x", 2, access=Access.RW1C, source=Source.BUS_ERROR),
     "field 'x' with source bus_error must be 1 bit wide, not 2"),
    (lambda: Register("ctrl", (Field("x"),)), "register name must be an upper-case identifier like 'CTRL', not 'ctrl'"),
    (lambda: Register("R", ()), "register R must have a non-empty sequence of Field, not ()"),
    (lambda: Register("R", (Field("a"), Field("a"))), "field name 'a' is used twice in register R"),
    (lambda: Register("R", (Field("a", 8, offset=28),)), "field R.a at bits [35:28] does not fit a 32-bit register"),
    (lambda: Register("R", (Field("a", 8), Field("b", 4, offset=4))),
     "field R.b at bits [7:4] overlaps field R.a at bits [7:0]"),
    (lambda: Array("A", 8, 0), "width of array A must be an integer from 1 to 32, not 0"),
    (lambda: Array("A", 8, 40), "width of array A must be an integer from 1 to 32, not 40"),
    (lambda: Array("A", 0, 8), "length of array A must be an integer from 1 to 1048576, not 0"),
    (lambda: Array("A", 8, 8, lanes=3), "lanes of array A must divide its length (8), not 3"),
    (lambda: Array("A", 8, 8, signed=True, reset=200), "reset of array A must be an integer from -128 to 127, not 200"),
    (lambda: Array("A", 8, 8, access="r"), "access of array A must be one of rw, ro, wo, not 'r'"),
    (lambda: RegisterMap("t", max_bytes=100), "max_bytes of the map must be a power of two, not 100"),
])
def test_description_errors(make, message):
    with pytest.raises(RegmapError, match=f"^{re.escape(message)}$"):
        make()


def test_interrupt_registers_are_derived_from_the_status_register():
    rmap = tile_register_map(ChipConfig())
    status = [f.name for f in rmap.register("STATUS").fields if f.access is Access.RW1C]
    assert [f.name for f in rmap.register("IRQ_ENABLE").fields] == status
    assert all(f.source is Source.IRQ_PENDING for f in rmap.register("IRQ_PENDING").fields)
    with pytest.raises(RegmapError, match=r"^the map already has interrupts$"):
        rmap.add_interrupts("STATUS")


def test_tile_map_takes_formats_from_the_configuration():
    cfg = ChipConfig().replace(adc={"bits": 6}, datapath={"gain_bits": 20, "gain_frac_bits": 14, "bn_bias_bits": 30,
                                                           "gain_mode": "per-tile"})
    rmap = tile_register_map(cfg)
    assert rmap.item("ADC_TRIM").width == 6 and rmap.item("GAIN").width == 20
    assert rmap.item("GAIN").reset == 1 << 14 and rmap.item("BN_BIAS").width == 30
    assert rmap.register("DRIFT_GAIN").field("alpha").width == 20
    assert rmap.register("DRIFT").reset == 0
    assert rmap.register("ID").reset == TILE_MAGIC


# -- exports -----------------------------------------------------------------------------------


def test_json_matches_the_description():
    rmap = tile_register_map(ChipConfig())
    data = json.loads(to_json(rmap))
    assert data == to_dict(rmap)
    assert {r["name"]: r["address"] for r in data["registers"]} == {r.name: a for a, r in rmap.registers}
    assert {a["name"]: (a["base"], a["length"], a["stride"]) for a in data["arrays"]} == {
        arr.name: (a, arr.length, 4) for a, arr in rmap.arrays}
    ctrl = next(r for r in data["registers"] if r["name"] == "CTRL")
    assert [(f["name"], f["offset"], f["width"], f["access"]) for f in ctrl["fields"]] == [
        ("start", 0, 1, "W1P"), ("abort", 1, 1, "W1P"), ("soft_reset", 2, 1, "W1P"), ("irq_en", 8, 1, "RW")]


def test_csv_lists_every_register_and_array_like_litex():
    rmap = tile_register_map(ChipConfig())
    rows = [row for row in csv.reader(io.StringIO(to_csv(rmap))) if row and not row[0].startswith("#")]
    assert rows[0] == ["csr_base", "tile", "0x00000000", "", ""]
    assert {row[1]: int(row[2]) for row in rows if row[0] == "constant"} == {
        "config_csr_data_width": 32, "config_bus_address_width": 32}
    registers = {row[1]: (int(row[2], 16), int(row[3]), row[4]) for row in rows if row[0] == "csr_register"}
    assert registers == {f"tile_{r.name.lower()}": (a, 1, r.access) for a, r in rmap.registers}
    arrays = {row[1]: (int(row[2], 16), int(row[3])) for row in rows if row[0] == "memory_region"}
    assert arrays == {f"tile_{arr.name.lower()}": (a, 4 * arr.length) for a, arr in rmap.arrays}
    assert registers["tile_id"][2] == "ro" and registers["tile_ctrl"][2] == "rw"


def test_markdown_has_a_row_per_register_array_and_field():
    rmap = tile_register_map(ChipConfig())
    text = to_markdown(rmap)
    for address, register in rmap.registers:
        assert f"| `0x{address:04x}` | [{register.name}](#{register.name.lower()}) |" in text
        assert f"\n### {register.name}\n" in text
        for f in register.fields:
            assert f"| {f.bits} | {f.name} | {f.access.value} |" in text
    for base, array in rmap.arrays:
        assert f"| `0x{base:04x}` | {array.name} | {array.length} | {array.format} |" in text


def test_c_header_compiles_and_its_addresses_equal_the_json(tmp_path):
    rmap = tile_register_map(ChipConfig())
    (tmp_path / "tile_regs.h").write_text(to_c_header(rmap))
    data = to_dict(rmap)
    checks = [f"_Static_assert(NP_TILE_{r['name']}_ADDR == {r['address']}u, \"{r['name']}\");"
              for r in data["registers"]]
    for r in data["registers"]:
        for f in r["fields"]:
            mask = ((1 << f["width"]) - 1) << f["offset"]
            name = f"NP_TILE_{r['name']}_{f['name'].upper()}"
            checks.append(f"_Static_assert({name}_MASK == {mask}u && {name}_SHIFT == {f['offset']}u, \"{name}\");")
    for a in data["arrays"]:
        name = f"NP_TILE_{a['name']}"
        checks.append(f"_Static_assert({name}_ADDR({a['length'] - 1}) == {a['base'] + 4 * (a['length'] - 1)}u "
                      f"&& {name}_LENGTH == {a['length']}u, \"{name}\");")
    source = tmp_path / "check.c"
    source.write_text('#include "tile_regs.h"\n#include "tile_regs.h"\n' + "\n".join(checks) + "\n")
    out = subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-fsyntax-only", str(source)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_write_exports_names_the_files(tmp_path):
    paths = write_regmap_exports(small_map(), tmp_path)
    assert {k: p.name for k, p in paths.items()} == {
        "markdown": "t_regs.md", "c-header": "t_regs.h", "json": "t_regs.json", "csv": "t_regs.csv",
        "systemrdl": "t_regs.rdl"}


def test_committed_reference_is_up_to_date():
    committed = (DOCS / "tile_regs.md").read_text(encoding="utf-8")
    assert committed == to_markdown(tile_register_map(ChipConfig())), (
        "docs/tile_regs.md is stale: regenerate it with `python -m neurophase.regmap_export docs/tile_regs.md`")
