"""LiteX's own tools against the exported CSVs: the CSVs load in ``RemoteClient`` as they are
(with true bases and access modes), and LiteX's ``litex_server --uart`` + ``RemoteClient`` /
``litex_cli`` read and write the simulated board's registers by name."""

import csv
import io
import socket
import subprocess
import sys
import time

import pytest
from litex.tools.litex_client import RemoteClient

from neurophase.config import ChipConfig
from neurophase.fpga.regmap import FPGA_MAGIC, FpgaAddressMap
from neurophase.fpga.sim_board import SimBoard
from neurophase.regmap import TILE_MAGIC, tile_register_map
from neurophase.models.program_verify import program_verify_register_map
from neurophase.regmap_export import to_csv, to_litex_csv, write_regmap_exports

PRESET = "fpga/ulx3s.toml"


def fpga_config() -> ChipConfig:
    from pathlib import Path

    return ChipConfig.from_toml(Path(__file__).resolve().parents[1] / PRESET)


def test_every_exported_csv_loads_in_litex_with_true_bases_and_modes(tmp_path):
    amap = FpgaAddressMap(fpga_config())
    paths = amap.write(tmp_path)
    for window in amap.windows:
        client = RemoteClient(csr_csv=str(paths[f"{window.name}-csv"]))
        assert client.csr_data_width == 32 and client.csr_bus_address_width == 32
        assert client.bases.d == {window.name: window.base}
        for offset, register in window.regmap.registers:
            loaded = getattr(client.regs, f"{window.name}_{register.name.lower()}")
            assert (loaded.addr, loaded.length, loaded.mode) == (window.base + offset, 1, register.access)
        for offset, array in window.regmap.arrays:
            region = getattr(client.mems, f"{window.name}_{array.name.lower()}")
            assert (region.base, region.size, region.type) == (window.base + offset, 4 * array.length, array.access)
    whole = RemoteClient(csr_csv=str(paths["fpga-map-csv"]))
    assert whole.bases.d == {w.name: w.base for w in amap.windows}
    assert whole.regs.fpga_fpga_id.addr == amap.window("fpga").base
    assert whole.regs.tile_id.mode == "ro" and whole.regs.tile_ctrl.mode == "rw"
    assert (whole.mems.weights_weight.type, whole.mems.results_result.type, whole.mems.tile_gain.type) == (
        "wo", "ro", "rw")
    expected = sum(len(w.regmap.registers) for w in amap.windows)
    assert len(whole.regs.d) == expected and len(whole.mems.d) == sum(len(w.regmap.arrays) for w in amap.windows)


@pytest.mark.parametrize("make_map", [tile_register_map, program_verify_register_map], ids=["tile", "program_verify"])
def test_generated_chip_csvs_load_in_litex(tmp_path, make_map):
    rmap = make_map(ChipConfig())
    path = write_regmap_exports(rmap, tmp_path)["csv"]
    client = RemoteClient(csr_csv=str(path))
    assert client.bases.d == {rmap.name: 0}
    assert {name: (r.addr, r.mode) for name, r in client.regs.d.items()} == {
        f"{rmap.name}_{r.name.lower()}": (a, r.access) for a, r in rmap.registers}
    assert {name: (m.base, m.size) for name, m in client.mems.d.items()} == {
        f"{rmap.name}_{arr.name.lower()}": (a, 4 * arr.length) for a, arr in rmap.arrays}


def test_tile_csv_rows_have_litex_s_five_columns(tmp_path):
    rows = list(csv.reader(line for line in io.StringIO(to_csv(tile_register_map(ChipConfig()))) if line[0] != "#"))
    assert rows and all(len(row) == 5 for row in rows)
    assert ["constant", "config_csr_data_width", "32", "", ""] in rows
    assert ["constant", "config_bus_address_width", "32", "", ""] in rows


def test_litex_csv_refuses_overlap_and_misaligned_bases():
    rmap = tile_register_map(ChipConfig())
    with pytest.raises(ValueError, match=r"base of register map 'tile' must be a multiple of its size 0x2000 "
                                         r"from 0 to 0xffffe000, not 4"):
        to_csv(rmap, 4)
    with pytest.raises(ValueError, match="register map names must differ in one CSV"):
        to_litex_csv([(rmap, 0), (rmap, 0x2000)], "two tiles")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"litex_server did not listen on 127.0.0.1:{port} within {timeout_s} s")


def litex_cli(csv_path, port: int, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "litex.tools.litex_client", "--csr-csv", str(csv_path),
                          "--host", "127.0.0.1", "--port", str(port), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.verilator
def test_litex_client_reads_and_writes_the_simulated_board_by_name(tmp_path):
    """``neurophase fpga sim``'s board, ``litex_server --uart`` on a loopback port, then
    LiteX's ``RemoteClient`` and ``litex_cli`` with the whole-board CSV."""
    cfg = fpga_config()
    amap = FpgaAddressMap(cfg)
    fpga_id = amap.window("fpga").base + amap.window("fpga").regmap.address("FPGA_ID")
    adc_timeout = amap.window("tile").base + amap.window("tile").regmap.address("ADC_TIMEOUT")
    with SimBoard(cfg, tmp_path / "sim_board", sessions=1) as board:
        csv_path = board.build_dir / "fpga_map.csv"
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "litex.tools.litex_server", "--uart", "--uart-port",
                                   board.url, "--bind-ip", "127.0.0.1", "--bind-port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_listening(port, server)
            bus = RemoteClient(host="127.0.0.1", port=port, csr_csv=str(csv_path))
            bus.open()
            try:
                assert bus.regs.tile_id.read() == TILE_MAGIC
                assert bus.regs.fpga_fpga_id.read() == FPGA_MAGIC
                bus.regs.fpga_emu_noise.write(0x1234_0003)
                assert bus.regs.fpga_emu_noise.read() == 0x1234_0003
                bus.regs.tile_drift_gain.write(0x0000_2000)
                assert bus.regs.tile_drift_gain.read() == 0x2000
                gain = bus.mems.tile_gain.base
                bus.write(gain + 8, [0x0800, 0x0C00])
                assert bus.read(gain + 8, length=2) == [0x0800, 0x0C00]
                with pytest.raises(KeyError, match="not writable"):
                    bus.regs.tile_id.write(0)
            finally:
                bus.close()
            shown = litex_cli(csv_path, port, "--regs", "--filter", "fpga_fpga_id")
            assert f"0x{fpga_id:08x} : 0x{FPGA_MAGIC:08x} fpga_fpga_id" in shown
            litex_cli(csv_path, port, "--write", "tile_adc_timeout", "0x77")
            shown = litex_cli(csv_path, port, "--read", "tile_adc_timeout")
            assert shown.split() == [f"0x{adc_timeout:08x}", ":", "0x00000077"]
        finally:
            server.terminate()
            server.communicate(timeout=30)
