"""Programming the board through openFPGALoader, with clear errors when the tool or the
board is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from neurophase.fpga.platforms import get_board
from neurophase.toolchain import ToolchainError

__all__ = ["ProgramError", "find_openfpgaloader", "program_command", "program_board", "NO_BOARD_PATTERNS"]

#: openFPGALoader output that means no board (or no cable) answered.
NO_BOARD_PATTERNS = ("unable to open ftdi device", "jtag init failed", "no cable", "cable not found",
                     "no device found", "device not found", "fail to open", "libusb")


class ProgramError(ToolchainError):
    """Programming failed: no board answered, or openFPGALoader reported an error."""


def find_openfpgaloader() -> str:
    """Path of openFPGALoader: ``$OPENFPGALOADER`` when set, else ``openFPGALoader`` or Debian's
    ``openfpgaloader`` on PATH.

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
    for name in ("openFPGALoader", "openfpgaloader"):
        path = shutil.which(name)
        if path:
            return path
    raise ToolchainError("openFPGALoader not found: OPENFPGALOADER is unset and neither 'openFPGALoader' nor "
                         "'openfpgaloader' is on PATH. Install it (Debian/Ubuntu: apt-get install openfpgaloader) "
                         "or set OPENFPGALOADER to its path.")


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
        When openFPGALoader is not installed (not raised for a dry run).
    """
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise ProgramError(f"bitstream {str(bitstream)!r} not found; build it first with 'neurophase fpga build'")
    if dry_run:
        try:
            tool = find_openfpgaloader()
        except ToolchainError:
            tool = "openFPGALoader"
        return program_command(bitstream, board, flash=flash, tool=tool)
    command = program_command(bitstream, board, flash=flash, tool=find_openfpgaloader())
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {timeout_s:g} s: {' '.join(command)}") from None
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0:
        last = text.splitlines()[-1] if text else "no output"
        if any(p in text.lower() for p in NO_BOARD_PATTERNS):
            raise ProgramError(f"no {board} board found: openFPGALoader could not reach the board's programming "
                               f"cable ({last}). Connect the board's USB port and check its permissions "
                               "(udev rule for the FTDI cable), then retry.")
        raise ProgramError(f"openFPGALoader failed (exit {out.returncode}): {last}")
    return command
