"""The chip's address map and its exports: regions aligned, disjoint and covering every tile;
the JSON round-trips; the C header compiles and agrees with the JSON; LiteX's RemoteClient,
systemrdl-compiler and PeakRDL's C header read the CSV and the SystemRDL as we do."""

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from litex.tools.litex_client import RemoteClient
from peakrdl_cheader.exporter import CHeaderExporter
from systemrdl import RDLCompiler

from neurophase.chip_regmap import CHIP_MAGIC, ERROR_CODES, chip_address_map, chip_register_map
from neurophase.chip_regmap_export import (CHIP_MAP_FILES, TileLayout, chip_map_dict, chip_map_markdown,
                                           region_table, write_chip_map_exports)
from neurophase.config import ChipConfig
from neurophase.generate import generate
from neurophase.models.chip_isa import WORDS_PER_INSTRUCTION, Opcode
from neurophase.regmap import Access

DOCS = Path(__file__).resolve().parent.parent / "docs"
MEMORIES = ("program", "activations", "bn_scale", "bn_bias", "psum_sum", "psum_squares", "psum_abs")
TILE_COUNTS = (1, 3, 144)


def chip_config(tiles: int) -> ChipConfig:
    return ChipConfig().replace(tile={"count": tiles})


@pytest.fixture(scope="module", params=TILE_COUNTS, ids=[f"{n}-tiles" for n in TILE_COUNTS])
def exported(request, tmp_path_factory):
    """(config, address map, kind -> path) of the chip map exports for 1, 3 and 144 tiles."""
    cfg = chip_config(request.param)
    return cfg, chip_address_map(cfg), write_chip_map_exports(cfg, tmp_path_factory.mktemp("chip_map"))


# -- the address map -----------------------------------------------------------------------------


@pytest.mark.parametrize("tiles", TILE_COUNTS)
def test_regions_are_aligned_disjoint_and_cover_every_tile(tiles):
    amap = chip_address_map(chip_config(tiles))
    names = [r.name for r in amap.regions]
    assert sorted(names) == sorted(["chip", *MEMORIES, *(f"tile{t}" for t in range(tiles))])
    for region in amap.regions:
        assert region.span == region.rmap.size and region.span & (region.span - 1) == 0, region.name
        assert region.base % region.span == 0, region.name
    for a, b in zip(amap.regions, amap.regions[1:]):
        assert a.base + a.span <= b.base, (a.name, b.name)
    assert amap.regions[-1].base + amap.regions[-1].span <= 4 << amap.addr_width
    assert amap.region("chip").base == 0
    layout = TileLayout(amap)
    assert layout.count == tiles
    assert [layout.tile_base(t) for t in range(tiles)] == [amap.tile_base(t) for t in range(tiles)]


def test_tile_layout_refuses_a_tile_outside_the_chip():
    layout = TileLayout(chip_address_map(chip_config(3)))
    for bad in (-1, 3, True, 1.0):
        with pytest.raises(ValueError, match=re.escape(f"tile must be an integer from 0 to 2, not {bad!r}")):
            layout.tile_base(bad)


def test_tile_layout_refuses_tiles_that_no_base_and_stride_describe():
    amap = chip_address_map(chip_config(3))
    tile2 = amap.region("tile2")
    stride = amap.tile_base(1) - amap.tile_base(0)
    moved = tuple(replace(r, base=r.base + r.span) if r is tile2 else r for r in amap.regions)
    with pytest.raises(ValueError, match=re.escape(f"tile region tile2 at 0x{tile2.base + tile2.span:x} breaks the "
                                                   f"tile layout base 0x{amap.tile_base(0):x} + t * 0x{stride:x} "
                                                   "of tiles 0 to 2")):
        TileLayout(replace(amap, regions=moved))
    with pytest.raises(ValueError, match="the chip address map has no tile region"):
        TileLayout(replace(amap, regions=tuple(r for r in amap.regions if not r.name.startswith("tile"))))


def test_chip_register_fields_are_as_documented():
    cfg = ChipConfig()
    rmap = chip_register_map(cfg)

    def fields(name):
        return [(f.name, f.offset, f.width, f.access) for f in rmap.register(name).fields]

    R, RW, RW1C, W1P = Access.R, Access.RW, Access.RW1C, Access.W1P
    assert rmap.register("ID").reset == CHIP_MAGIC == int.from_bytes(b"NPHC", "big")
    assert fields("CTRL") == [("start", 0, 1, W1P), ("abort", 1, 1, W1P), ("soft_reset", 2, 1, W1P),
                              ("irq_en", 8, 1, RW), ("stats_en", 9, 1, RW)]
    assert fields("STATUS") == [("busy", 0, 1, R), ("done", 1, 1, RW1C), ("error", 2, 1, RW1C),
                                ("sat_psum", 3, 1, RW1C), ("sat_batch_norm", 4, 1, RW1C), ("bus_error", 5, 1, RW1C)]
    assert fields("ERROR") == [("code", 0, 4, R), ("tile", 4, 12, R), ("pc", 16, 16, R)]
    assert max(ERROR_CODES) < 1 << rmap.register("ERROR").field("code").width
    assert cfg.tile.count < 1 << rmap.register("ERROR").field("tile").width
    assert cfg.sequencer.program_words <= 1 << rmap.register("PC").field("pc").width
    config0 = rmap.register("CONFIG0")
    assert (config0.field("tiles").reset, config0.field("rows").reset) == (cfg.tile.count, cfg.tile.rows)
    assert rmap.register("CONFIG2").field("program_words").reset == cfg.sequencer.program_words
    assert [f.name for f in rmap.register("IRQ_ENABLE").fields] == ["done", "error", "sat_psum", "sat_batch_norm",
                                                                     "bus_error"]


# -- the exports -------------------------------------------------------------------------------------


def test_files_are_named_and_written(exported):
    _, _, paths = exported
    assert {kind: path.name for kind, path in paths.items()} == CHIP_MAP_FILES
    assert not [p for p in paths["json"].parent.iterdir() if p.name.endswith(".tmp")]


def test_json_round_trips_and_places_every_register(exported):
    cfg, amap, paths = exported
    data = json.loads(paths["json"].read_text())
    assert data == chip_map_dict(cfg)
    assert {r["name"]: (r["base"], r["span"]) for r in data["regions"]} == {
        r.name: (r.base, r.span) for r in amap.regions}
    tiles = data["tiles"]
    tile_map = data["maps"][tiles["map"]]
    for t in range(tiles["count"]):
        base = tiles["base"] + t * tiles["stride"]
        region = amap.region(f"tile{t}")
        assert base == region.base
        assert {r["name"]: base + r["address"] for r in tile_map["registers"]} == {
            r.name: region.base + a for a, r in region.rmap.registers}
    chip = data["maps"]["chip"]
    ctrl = next(r for r in chip["registers"] if r["name"] == "CTRL")
    assert chip["base"] + ctrl["address"] == amap.region("chip").rmap.address("CTRL")
    for name in MEMORIES:
        region, memory = amap.region(name), data["maps"][name]
        assert memory["base"] == region.base and memory["arrays"][0]["length"] == region.rmap.arrays[0][1].length
    assert data["instruction"]["words"] == WORDS_PER_INSTRUCTION
    assert data["instruction"]["opcodes"] == {op.name: op.value for op in Opcode}
    assert {e["code"]: e["meaning"] for e in data["error_codes"]} == ERROR_CODES


def test_markdown_describes_the_tile_map_once(exported):
    cfg, amap, paths = exported
    text = paths["markdown"].read_text()
    assert text == chip_map_markdown(cfg)
    chip, tile = amap.region("chip").rmap, amap.region("tile0").rmap
    for address, register in chip.registers:
        assert f"| `0x{address:04x}` | [{register.name}](#chip-{register.name.lower()}) |" in text
        assert f"\n#### chip {register.name}\n" in text
    for offset, register in tile.registers:
        assert text.count(f"\n#### tile {register.name}\n") == 1
        assert f"tile base + `0x{offset:04x}` — " in text
    for name in MEMORIES:
        assert f"| `0x{amap.region(name).base:08x}` | `{name}` |" in text
    for code, meaning in ERROR_CODES.items():
        assert f"| {code} | {meaning} |" in text
    assert {int(t) for t in re.findall(r"`tile(\d+)`", text)} == {0, cfg.tile.count - 1}


def compile_c(tmp_path, headers, checks) -> None:
    source = tmp_path / "check.c"
    includes = "".join(f'#include "{h}"\n' for h in headers)
    source.write_text("#include <stddef.h>\n" + includes + "\n".join(checks) + "\n")
    out = subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", "-fsyntax-only", "-I", str(tmp_path), str(source)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def sample_tiles(count: int) -> list[int]:
    return sorted({0, count // 2, count - 1})


def test_c_header_compiles_and_agrees_with_the_json(exported, tmp_path):
    _, _, paths = exported
    data = json.loads(paths["json"].read_text())
    tiles, maps = data["tiles"], data["maps"]
    checks = [f"_Static_assert(NP_CHIP_MAP_SIZE == {data['size']}u && NP_CHIP_TILES == {tiles['count']}u, \"size\");"]
    for region in data["regions"]:
        if region["kind"] != "tile":
            name = f"NP_CHIP_REGION_{region['name'].upper()}"
            checks.append(f"_Static_assert({name}_BASE == {region['base']}u && {name}_SPAN == {region['span']}u, "
                          f"\"{name}\");")
    for r in maps["chip"]["registers"]:
        name = f"NP_CHIP_{r['name']}"
        checks.append(f"_Static_assert({name}_ADDR == {maps['chip']['base'] + r['address']}u "
                      f"&& {name}_RESET == {r['reset']}u, \"{name}\");")
        for f in r["fields"]:
            mask = ((1 << f["width"]) - 1) << f["offset"]
            checks.append(f"_Static_assert({name}_{f['name'].upper()}_MASK == {mask}u, \"{name}.{f['name']}\");")
    for t in sample_tiles(tiles["count"]):
        base = tiles["base"] + t * tiles["stride"]
        checks.append(f"_Static_assert(NP_CHIP_TILE_BASE({t}) == {base}u, \"tile {t}\");")
        for r in maps["tile"]["registers"]:
            checks.append(f"_Static_assert(NP_CHIP_TILE_REG({t}, {r['name']}) == {base + r['address']}u, "
                          f"\"tile {t} {r['name']}\");")
        for a in maps["tile"]["arrays"]:
            last = a["length"] - 1
            checks.append(f"_Static_assert(NP_CHIP_TILE_ARRAY_ADDR({t}, {a['name']}, {last}) == "
                          f"{base + a['base'] + 4 * last}u, \"tile {t} {a['name']}\");")
    for name in MEMORIES:
        array = maps[name]["arrays"][0]
        macro, last = f"NP_CHIP_{array['name']}", array["length"] - 1
        checks.append(f"_Static_assert({macro}_ADDR({last}) == {maps[name]['base'] + array['base'] + 4 * last}u "
                      f"&& {macro}_LENGTH == {array['length']}u, \"{macro}\");")
    program = maps["program"]["base"]
    checks.append(f"_Static_assert(NP_CHIP_INSTRUCTION_ADDR(3, 7) == {program + 4 * (3 * 8 + 7)}u "
                  f"&& NP_CHIP_OPCODE_END == {Opcode.END.value}u, \"instruction\");")
    (tmp_path / "chip_map.h").write_text(paths["c-header"].read_text())
    compile_c(tmp_path, ["chip_map.h", "chip_map.h"], checks)


def test_litex_loads_the_csv_with_every_tile_at_its_base(exported):
    cfg, amap, paths = exported
    client = RemoteClient(csr_csv=str(paths["csv"]))
    assert client.csr_data_width == 32 and client.csr_bus_address_width == 32
    assert client.bases.d == {r.name: r.base for r in amap.regions}
    chip = amap.region("chip").rmap
    assert (client.regs.chip_id.addr, client.regs.chip_id.mode) == (chip.address("ID"), "ro")
    assert (client.regs.chip_ctrl.addr, client.regs.chip_ctrl.mode) == (chip.address("CTRL"), "rw")
    for t in sample_tiles(cfg.tile.count):
        region = amap.region(f"tile{t}")
        for offset, register in region.rmap.registers:
            loaded = getattr(client.regs, f"tile{t}_{register.name.lower()}")
            assert (loaded.addr, loaded.mode) == (region.base + offset, register.access)
        gain = getattr(client.mems, f"tile{t}_gain")
        assert gain.base == region.base + region.rmap.address("GAIN")
    for name in MEMORIES:
        region = amap.region(name)
        offset, array = region.rmap.arrays[0]
        loaded = getattr(client.mems, f"{name}_{array.name.lower()}")
        assert (loaded.base, loaded.size, loaded.type) == (region.base + offset, 4 * array.length, array.access)
    tile_registers = len(amap.region("tile0").rmap.registers)
    assert len(client.regs.d) == len(chip.registers) + cfg.tile.count * tile_registers


def test_systemrdl_compiles_and_peakrdl_agrees_with_our_header(exported, tmp_path):
    cfg, amap, paths = exported
    compiler = RDLCompiler()
    compiler.compile_file(str(paths["systemrdl"]))
    root = compiler.elaborate()
    placed = {(n.inst_name, n.current_idx[0] if n.current_idx else None): n.absolute_address
              for n in root.top.children(unroll=True)}
    expected = {(r.name, None): r.base for r in amap.regions if not r.name.startswith("tile")}
    expected.update({("tile", t): amap.tile_base(t) for t in range(cfg.tile.count)})
    assert placed == expected
    program = root.find_by_path("neurophase_chip.program.PROGRAM")
    assert program.external and not root.find_by_path("neurophase_chip.chip.CTRL").external
    CHeaderExporter().export(root, str(tmp_path / "peak.h"))
    (tmp_path / "chip_map.h").write_text(paths["c-header"].read_text())
    struct = "neurophase_chip_t"
    checks = []
    for _, register in amap.region("chip").rmap.registers:
        name = f"NP_CHIP_{register.name}"
        checks.append(f"_Static_assert(offsetof({struct}, chip.{register.name}) == {name}_ADDR, \"{name}\");")
        for f in register.fields:
            ours, theirs = f"{name}_{f.name.upper()}", f"CHIP__{register.name}__{f.name.upper()}"
            checks.append(f"_Static_assert({theirs}_bm == {ours}_MASK && {theirs}_bp == {ours}_SHIFT, \"{ours}\");")
    for t in sample_tiles(cfg.tile.count):
        for _, register in amap.region("tile0").rmap.registers:
            checks.append(f"_Static_assert(offsetof({struct}, tile[{t}].{register.name}) == "
                          f"NP_CHIP_TILE_REG({t}, {register.name}), \"tile {t} {register.name}\");")
    for name in MEMORIES:
        _, array = amap.region(name).rmap.arrays[0]
        macro = f"NP_CHIP_{array.name}"
        checks.append(f"_Static_assert(offsetof({struct}, {name}.{array.name}) == {macro}_BASE && "
                      f"sizeof((({struct} *)0)->{name}.{array.name}) == 4 * {macro}_LENGTH, \"{macro}\");")
    compile_c(tmp_path, ["peak.h", "chip_map.h"], checks)


# -- generation and documentation -------------------------------------------------------------------


def test_generate_writes_the_chip_map_with_the_tile_map(tmp_path):
    manifest = generate(ChipConfig(), tmp_path, blocks=["csr_bank"])
    kinds = {entry["path"]: entry["kind"] for entry in manifest["files"]}
    assert {name: kinds[name] for name in CHIP_MAP_FILES.values()} == {
        name: f"chip-map-{kind}" for kind, name in CHIP_MAP_FILES.items()}
    assert kinds["tile_regs.md"] == "register-map-markdown"
    assert (tmp_path / "chip_map.json").read_text() == json.dumps(chip_map_dict(ChipConfig()), indent=2) + "\n"
    without = generate(ChipConfig(), tmp_path / "shift_add", blocks=["shift_add"])
    assert not [e for e in without["files"] if e["kind"].startswith("chip-map")]


def test_docs_show_the_default_regions():
    doc = (DOCS / "chip-map.md").read_text(encoding="utf-8")
    table = "\n".join(region_table(chip_address_map(ChipConfig()), links=False)[2:])
    assert table in doc, ("docs/chip-map.md's region table is stale: replace it with "
                          "region_table(chip_address_map(ChipConfig()), links=False)")
    assert "(chip-map.md)" in (DOCS / "register-map.md").read_text(encoding="utf-8")
