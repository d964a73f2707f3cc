"""Output locations checked before any work starts.

Every command that writes results (``--out``, ``--build-dir``) checks its folder here first,
so an unwritable location is a one-line error at once, not a traceback after minutes of
simulation or synthesis.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["OutputPathError", "check_writable_dir", "check_writable_file"]


class OutputPathError(ValueError):
    """An output folder or file cannot be written; the message names the option and the path."""


def _unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written, or None when it can. A missing folder
    is not created here (bad input found later leaves nothing behind): its nearest existing
    ancestor must be a folder that takes a new entry."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return "exists and is not a folder" if existing == folder else f"cannot be created: {existing} is a file"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".neurophase-write-check-"):
            pass
    except OSError as exc:
        where = "this folder" if existing == folder else f"{existing}"
        return f"cannot write to {where}: {exc.strerror or exc}"
    return None


def check_writable_dir(path: str | Path, option: str = "--out") -> Path:
    """Prove folder ``path`` writable, or creatable when missing, by creating and removing a
    temporary file in it (or in its nearest existing ancestor).

    Parameters
    ----------
    path : str or Path
        The folder.
    option : str
        The option or setting the folder came from, named in the error.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputPathError
        When ``path`` is a file, cannot be created or cannot be written.
    """
    path = Path(path)
    reason = _unwritable_reason(path)
    if reason:
        raise OutputPathError(f"{option} {path}: {reason}")
    return path


def check_writable_file(path: str | Path, option: str = "--out") -> Path:
    """Check that file ``path`` can be written: not a folder, and its folder writable or
    creatable (see :func:`check_writable_dir`).

    Raises
    ------
    OutputPathError
        When ``path`` is a folder or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder; give a file name")
    reason = _unwritable_reason(path.parent)
    if reason:
        raise OutputPathError(f"{option} {path}: its folder {path.parent} {reason}")
    return path
