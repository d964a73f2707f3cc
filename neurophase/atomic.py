"""Atomic file writes: a temporary file in the target's folder, then a rename.

A process killed in the middle of a write leaves the previous file intact (or no file),
never a truncated one: readers see either the old or the new contents. Used for every
file the framework writes (state files, results, manifests, register maps, plots)::

    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)
    write_text_atomic(path, json.dumps(manifest))
    save_figure_atomic(fig, "drift.png", dpi=120)

Imports nothing of the framework, so every layer (``models/`` included) may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write", "write_text_atomic", "write_text_if_changed", "write_bytes_atomic", "save_figure_atomic"]


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` when the
    ``with`` block ends normally, delete it when the block raises.

    Parameters
    ----------
    path : str or Path
        The file to (re)place. Its folder must exist.
    mode : {"w", "wb"}
        Text or binary.
    encoding : str
        Text encoding (text mode only).

    Yields
    ------
    file object
        The temporary file; flushed and synced to disk before the rename.

    Raises
    ------
    ValueError
        For a mode other than ``"w"`` or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, mode, **({"encoding": encoding} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; a written file gets the usual permissions (umask applied)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically; returns the path."""
    with atomic_write(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def write_text_if_changed(path: str | Path, text: str, *, encoding: str = "utf-8") -> bool:
    """Replace ``path`` with ``text`` atomically unless it already holds exactly ``text``
    (so build tools that compare modification times rebuild only on a change); returns
    whether the file was written."""
    path = Path(path)
    try:
        if path.read_text(encoding=encoding) == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text, encoding=encoding)
    return True


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; returns the path."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def save_figure_atomic(fig, path: str | Path, **savefig_kwargs) -> Path:
    """``fig.savefig`` to ``path`` atomically, in the format of the path's suffix
    (``.png``, ``.svg``, ``.pdf``); returns the path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=fmt, **savefig_kwargs)
    return path
