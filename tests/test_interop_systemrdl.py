"""The SystemRDL exports compile with ``systemrdl-compiler``, and PeakRDL's C header
(``peakrdl-cheader``) agrees with ours address for address, mask for mask, reset for reset:
for the tile, the program-verify controller and the whole FPGA address space."""

import json
import subprocess

import pytest
from peakrdl_cheader.exporter import CHeaderExporter
from systemrdl import RDLCompiler

from neurophase.config import ChipConfig
from neurophase.fpga.regmap import FpgaAddressMap
from neurophase.generate import generate
from neurophase.models.program_verify import program_verify_register_map
from neurophase.regmap import Access, RegisterMap, tile_register_map
from neurophase.regmap_export import to_c_header
from neurophase.regmap_systemrdl import rdl_name, to_systemrdl, to_systemrdl_space

PRESET = "fpga/ulx3s.toml"


def peakrdl_header(rdl_path, header_path):
    """Compile ``rdl_path`` with systemrdl-compiler and export PeakRDL's C header."""
    compiler = RDLCompiler()
    compiler.compile_file(str(rdl_path))
    root = compiler.elaborate()
    CHeaderExporter().export(root, str(header_path))
    return root


def agreement_checks(rmap: RegisterMap, base: int, struct: str, member: str = "") -> list[str]:
    """``_Static_assert``\\ s that PeakRDL's struct offsets and field macros equal ours."""
    ours, peak = f"NP_{rmap.name.upper()}", rmap.name.upper()
    checks = [f"_Static_assert({ours}_BASE == {base}u, \"{rmap.name} base\");"]
    for _, register in rmap.registers:
        name = f"{ours}_{register.name}"
        checks.append(f"_Static_assert(offsetof({struct}, {member}{register.name}) == {name}_ADDR, \"{name}\");")
        for f in register.fields:
            field, theirs = f"{name}_{f.name.upper()}", f"{peak}__{register.name}__{f.name.upper()}"
            checks.append(f"_Static_assert({theirs}_bm == {field}_MASK && {theirs}_bp == {field}_SHIFT "
                          f"&& {theirs}_bw == {field}_WIDTH, \"{field}\");")
            if f.access is not Access.R:
                checks.append(f"_Static_assert({theirs}_reset == (({name}_RESET & {field}_MASK) >> {field}_SHIFT), "
                              f"\"{field} reset\");")
    for _, array in rmap.arrays:
        name, theirs = f"{ours}_{array.name}", f"{peak}__{array.name}__VALUE"
        checks += [f"_Static_assert(offsetof({struct}, {member}{array.name}) == {name}_BASE "
                   f"&& sizeof((({struct} *)0)->{member}{array.name}) == 4 * {name}_LENGTH, \"{name}\");",
                   f"_Static_assert({theirs}_bw == {name}_WIDTH && {theirs}_bp == 0, \"{name} width\");"]
        if array.access != "ro":
            checks.append(f"_Static_assert({theirs}_reset == {array.reset & ((1 << array.width) - 1)}u, "
                          f"\"{name} reset\");")
    return checks


def compile_checks(tmp_path, headers: list[str], checks: list[str]) -> None:
    source = tmp_path / "agree.c"
    source.write_text("#include <stddef.h>\n" + "".join(f'#include "{h}"\n' for h in headers) + "\n".join(checks) + "\n")
    out = subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", "-fsyntax-only", "-I", str(tmp_path), str(source)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_generate_writes_systemrdl_and_lists_it(tmp_path):
    manifest = generate(ChipConfig(), tmp_path, blocks=["csr_bank"])
    kinds = {entry["path"]: entry["kind"] for entry in manifest["files"]}
    assert kinds["tile_regs.rdl"] == "register-map-systemrdl"
    assert (tmp_path / "tile_regs.rdl").read_text() == to_systemrdl(tile_register_map(ChipConfig()))


@pytest.mark.parametrize("make_map", [tile_register_map, program_verify_register_map], ids=["tile", "program_verify"])
def test_peakrdl_c_header_agrees_with_ours(tmp_path, make_map):
    rmap = make_map(ChipConfig())
    (tmp_path / f"{rmap.name}.rdl").write_text(to_systemrdl(rmap))
    root = peakrdl_header(tmp_path / f"{rmap.name}.rdl", tmp_path / "peak.h")
    assert root.top.inst_name == rmap.name
    assert [(n.inst_name, n.raw_absolute_address) for n in root.top.children()] == [
        (item.name, address) for address, item in rmap.entries()]
    (tmp_path / "ours.h").write_text(to_c_header(rmap))
    compile_checks(tmp_path, ["peak.h", "ours.h"], agreement_checks(rmap, 0, f"{rmap.name}_t"))


def test_peakrdl_agrees_on_the_whole_fpga_address_space(tmp_path):
    from pathlib import Path

    cfg = ChipConfig.from_toml(Path(__file__).resolve().parents[1] / PRESET)
    amap = FpgaAddressMap(cfg)
    paths = amap.write(tmp_path)
    root = peakrdl_header(paths["fpga-map-systemrdl"], tmp_path / "peak.h")
    assert {n.inst_name: n.absolute_address for n in root.top.children()} == {w.name: w.base for w in amap.windows}
    space = json.loads(paths["fpga-map"].read_text())
    checks, headers = [], ["peak.h"]
    for window in amap.windows:
        headers.append(paths[f"{window.name}-c-header"].name)
        checks += agreement_checks(window.regmap, window.base, "neurophase_fpga_t", f"{window.name}.")
        assert next(w for w in space["windows"] if w["name"] == window.name)["map"]["base"] == window.base
    compile_checks(tmp_path, headers, checks)
    weight = root.find_by_path("neurophase_fpga.weights.WEIGHT").get_child_by_name("value")
    result = root.find_by_path("neurophase_fpga.results.RESULT").get_child_by_name("value")
    assert weight.get_property("sw").name == "w" and result.get_property("sw").name == "r"


def test_names_that_are_systemrdl_keywords_are_escaped(tmp_path):
    from neurophase.regmap import Field, Register

    rmap = RegisterMap("t", max_bytes=64)
    rmap.add(Register("A", (Field("type", 4), Field("rw", 1, Access.W1P), Field("sticky", 1, Access.RW1C),
                            Field("level", 3, Access.CONST, 5), Field("r", 2, Access.R))))
    assert rdl_name("type") == "\\type" and rdl_name("start") == "start"
    (tmp_path / "t.rdl").write_text(to_systemrdl(rmap))
    root = peakrdl_header(tmp_path / "t.rdl", tmp_path / "peak.h")
    fields = root.find_by_path("t.A").fields()
    assert [(f.inst_name, f.low, f.high) for f in fields] == [
        ("type", 0, 3), ("rw", 4, 4), ("sticky", 5, 5), ("level", 6, 8), ("r", 9, 10)]
    assert fields[3].get_property("reset") == 5 and fields[1].get_property("singlepulse")
    assert fields[2].get_property("onwrite").name == "woclr" and fields[2].get_property("hwset")


def test_space_refuses_overlapping_maps():
    rmap = tile_register_map(ChipConfig())
    pv = program_verify_register_map(ChipConfig())
    with pytest.raises(ValueError, match=r"register maps 'tile' at 0x0 and 'program_verify' at 0x1000 overlap"):
        to_systemrdl_space("chip", "", [(rmap, 0), (pv, 0x1000)])
