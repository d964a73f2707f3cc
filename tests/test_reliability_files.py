"""No lost data, no shared build folders: atomic writes at every place files are written
(a failure mid-write leaves the old file), one run per build folder (a second one is
refused at once, a killed one leaves no stale lock), and chip-state files whose every
defect is a StateFileError."""

import io
import json
import os
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from neurophase.atomic import atomic_write, save_figure_atomic, write_text_atomic, write_text_if_changed
from neurophase.config import ChipConfig
from neurophase.folder_lock import LOCK_NAME, FolderInUseError, folder_lock, run_in_thread
from neurophase.models import chip_state
from neurophase.models.chip_state import StateFileError, load_state, save_state
from neurophase.models.crossbar import build_tile


# -- atomic writes ---------------------------------------------------------------------------

def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path):
    path = write_text_atomic(tmp_path / "results.json", '{"old": true}')
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(path) as handle:
            handle.write('{"new": ')
            raise RuntimeError("killed mid-write")
    assert path.read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and leftovers(tmp_path) == []
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_if_changed_keeps_the_file_when_equal(tmp_path):
    path = tmp_path / "top.v"
    assert write_text_if_changed(path, "module a;")
    stamp = path.stat().st_mtime_ns
    assert not write_text_if_changed(path, "module a;")
    assert path.stat().st_mtime_ns == stamp
    assert write_text_if_changed(path, "module b;") and path.read_text() == "module b;"


def small_tile(seed=3):
    cfg = ChipConfig().replace(tile={"rows": 16, "cols": 16}, datapath={"lanes": 16},
                               device={"preset": "rram", "overrides": {"g_max": 40.0}})
    return cfg, build_tile(cfg, np.random.default_rng(seed).normal(size=(16, 16)), seed)


def write_state(path):
    save_state(small_tile()[1].state, path)


def write_plot(path):
    from neurophase.models.studies import plot_error_vs_time

    plot_error_vs_time([1.0, 10.0], [([1.0, 2.0], "o-", "error")], path, ylabel="error")


def write_fpga_map(path):
    from pathlib import Path

    from neurophase.fpga.regmap import FpgaAddressMap

    FpgaAddressMap(ChipConfig.from_toml(Path(__file__).resolve().parents[1] / "fpga/ulx3s.toml")).write(path.parent)


def write_manifest(path):
    from neurophase.generate import generate

    generate(ChipConfig(), path.parent, blocks=["shift_add"])


def write_regmap(path):
    from neurophase.regmap import tile_register_map
    from neurophase.regmap_export import write_regmap_exports

    write_regmap_exports(tile_register_map(ChipConfig()), path.parent)


@pytest.mark.parametrize("name, writer", [
    ("chip.npz", write_state), ("drift.png", write_plot), ("fpga_map.json", write_fpga_map),
    ("chip.toml", write_manifest), ("tile_regs.json", write_regmap),
])
def test_every_writer_leaves_the_old_file_when_killed_mid_write(tmp_path, monkeypatch, name, writer):
    """A failure after the data is written but before the rename (as a kill there would
    leave it): the file keeps its old contents and no temporary file stays behind."""
    path = tmp_path / name
    writer(path)
    old = path.read_bytes()
    assert old

    def no_space(fd):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr("neurophase.atomic.os.fsync", no_space)
    with pytest.raises(OSError, match="simulated"):
        writer(path)
    assert path.read_bytes() == old
    assert leftovers(tmp_path) == []


def test_save_figure_atomic_uses_the_suffix_format(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    svg = save_figure_atomic(fig, tmp_path / "plot.svg")
    plt.close(fig)
    assert svg.read_text().lstrip().startswith("<?xml")


# -- one run per build folder -----------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from neurophase.folder_lock import folder_lock
with folder_lock(sys.argv[1], "simulation"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def locked_elsewhere(tmp_path):
    """A build folder locked by another process (killed at the end of the test)."""
    folder = tmp_path / "build"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield folder, holder
    if holder.poll() is None:
        holder.kill()
    holder.wait()
    holder.stdout.close()


def test_a_second_run_on_a_build_folder_is_refused(locked_elsewhere):
    folder, holder = locked_elsewhere
    with pytest.raises(FolderInUseError, match=rf"^build folder '{folder}' is in use by another run "
                                               rf"\(pid {holder.pid}, simulation\); wait for it"):
        with folder_lock(folder, "simulation"):
            pass


def test_a_killed_run_leaves_no_stale_lock(locked_elsewhere):
    folder, holder = locked_elsewhere
    holder.kill()
    holder.wait()
    with folder_lock(folder) as locked:
        assert (locked / LOCK_NAME).read_text().startswith(f"pid {os.getpid()}")


def test_simulation_on_a_locked_folder_stops_before_building(locked_elsewhere):
    from neurophase.cosim.runner import run_cocotb

    folder, _ = locked_elsewhere
    with pytest.raises(FolderInUseError, match="is in use by another run"):
        run_cocotb(toplevel="top", verilog=[folder / "missing.v"], test_module="none", build_dir=folder)
    assert not (folder / "build.log").exists()


@pytest.mark.parametrize("command", [["sim", "mvm", "--build-dir"], ["sim", "shift-add", "--build-dir"],
                                     ["fpga", "sim", "--build-dir"], ["fpga", "build", "--out"]])
def test_cli_on_a_locked_build_folder_is_one_line(locked_elsewhere, command):
    from neurophase.cli import main

    folder, holder = locked_elsewhere
    result = CliRunner().invoke(main, [*command, str(folder)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "error: build folder" in result.output and f"pid {holder.pid}" in result.output
    assert "Traceback" not in result.output


def test_the_lock_is_reentrant_for_its_holder_only(tmp_path):
    folder = tmp_path / "build"
    refused = []

    def other_run():
        try:
            with folder_lock(folder):
                pass
        except FolderInUseError as exc:
            refused.append(str(exc))

    def worker_run():
        with folder_lock(folder):  # the holder's own worker thread
            pass

    with folder_lock(folder):
        with folder_lock(folder):  # a locked command calling a locked function
            pass
        stranger = threading.Thread(target=other_run)
        stranger.start()
        stranger.join()
        run_in_thread(worker_run, name="worker").join()
    assert len(refused) == 1 and "is in use by another run" in refused[0]
    with folder_lock(folder):  # released
        pass


# -- chip-state files --------------------------------------------------------------------------------

def test_nan_is_refused_at_save_time(tmp_path):
    _, tile = small_tile()
    state = tile.state
    state.g_prog[1, 0, 2, 3] = np.nan
    with pytest.raises(StateFileError, match=r"^chip state not saved: g_prog holds nan at index \(1, 0, 2, 3\); "
                                             r"every value must be finite$"):
        save_state(state, tmp_path / "chip.npz")
    assert not (tmp_path / "chip.npz").exists() and leftovers(tmp_path) == []
    state.g_prog[1, 0, 2, 3] = 1.0
    state.time_s = float("inf")
    with pytest.raises(StateFileError, match=r"time_s must be a finite number of seconds >= 0, not inf"):
        save_state(state, tmp_path / "chip.npz")


def write_with_checksum(path, arrays: dict, header: dict):
    """A state file whose checksum is right for whatever it holds (as a tool that writes
    the format carelessly would make it)."""
    text = json.dumps({**header, "checksum": chip_state._checksum(arrays, header)})
    np.savez(path, header=np.array(text), **arrays)
    return path


def valid_parts():
    _, tile = small_tile()
    return dict(tile.state.arrays()), chip_state._header(tile.state)


def npy_bytes(shape, dtype="<f8", data=b""):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def test_a_huge_declared_array_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.npy", npy_bytes((), "<U2", "{}".encode("utf-32-le")))
        archive.writestr("g_prog.npy", npy_bytes((2, 1, 1 << 20, 1 << 20), data=b"\0" * 64))
    with pytest.raises(StateFileError, match=r"array 'g_prog' declares shape \(2, 1, 1048576, 1048576\) of float64 "
                                             r"\(17592186044416 bytes"):
        load_state(path)


def test_a_compressed_file_is_bounded_by_its_inflated_size(tmp_path):
    arrays, header = valid_parts()
    path = tmp_path / "chip.npz"
    text = json.dumps({**header, "checksum": chip_state._checksum(arrays, header)})
    np.savez_compressed(path, header=np.array(text), **arrays)
    assert load_state(path).w_int.shape == (16, 16)
    assert path.stat().st_size < 20_000
    with pytest.raises(StateFileError, match=r"the limit is 20000 bytes per array and 20000 in all"):
        load_state(path, max_bytes=20_000)


def test_a_member_shorter_than_declared_is_refused(tmp_path):
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("g_prog.npy", npy_bytes((2, 1, 4, 4), data=b"\0" * 16))
    with pytest.raises(StateFileError, match=r"array 'g_prog' declares 256 bytes but stores \d+: truncated or corrupt"):
        load_state(path)


@pytest.mark.parametrize("change, message", [
    (lambda a, h: a.update(g_prog=a["g_prog"].astype(np.int64)), r"g_prog must be a floating-point array, not int64"),
    (lambda a, h: a.update(rtn=a["rtn"].astype(np.float64)), r"rtn must be a boolean array, not float64"),
    (lambda a, h: a.update(w_int=a["w_int"].reshape(-1)), r"chip state w_int must have 2 dimension\(s\), not shape"),
    (lambda a, h: a.update(scale=np.full(16, np.nan)), r"scale holds nan at index \(0,\); every value must be finite"),
    (lambda a, h: h.pop("time_s"), r"header has no 'time_s'"),
    (lambda a, h: h.update(reads="many"), r"header reads must be an integer >= 0, not 'many'"),
    (lambda a, h: h.update(config=[1, 2]), r"header config must be a JSON object, not \[1, 2\]"),
    (lambda a, h: h.update(time_s=-1.0), r"time_s must be a finite number of seconds >= 0, not -1.0"),
])
def test_malformed_state_files_are_state_file_errors(tmp_path, change, message):
    arrays, header = valid_parts()
    change(arrays, header)
    path = write_with_checksum(tmp_path / "bad.npz", arrays, header)
    with pytest.raises(StateFileError, match=message):
        load_state(path)


def test_other_files_are_state_file_errors(tmp_path):
    plain = tmp_path / "plain.npz"
    with open(plain, "wb") as handle:
        np.save(handle, np.zeros(3))  # a bare .npy array, not an archive
    with pytest.raises(StateFileError, match="is not a readable state archive"):
        load_state(plain)
    listed = tmp_path / "list.npz"
    arrays, _ = valid_parts()
    np.savez(listed, header=np.array("[1, 2]"), **arrays)
    with pytest.raises(StateFileError, match="has a header that is not a JSON object"):
        load_state(listed)
    objects = tmp_path / "objects.npz"
    np.savez(objects, header=np.array("{}"), g_prog=np.array([{"a": 1}], dtype=object))
    with pytest.raises(StateFileError, match="array 'g_prog' holds Python objects"):
        load_state(objects)
