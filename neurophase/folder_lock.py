"""One run at a time per build folder.

Two simulations or FPGA builds sharing a build folder would overwrite each other's
generated Verilog, compiled model, logs and results, and one could print the other's
figures. :func:`folder_lock` takes an exclusive lock on ``<folder>/.neurophase.lock``
for the duration of a ``with``; a second run on the same folder fails at once with
:class:`FolderInUseError` naming the folder and the process that holds it. The lock is
the operating system's (``flock``), so it disappears with its process: a killed run
never leaves a stale lock behind.

The lock belongs to the code that took it: it is re-entrant (a command may lock the folder
and call a function that locks it again, also in a thread started with
:func:`run_in_thread`, which carries the caller's locks along); any other caller, in this
process or another, is refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from pathlib import Path
from typing import Iterator

__all__ = ["FolderInUseError", "folder_lock", "run_in_thread", "LOCK_NAME"]

#: The lock file inside a locked folder.
LOCK_NAME = ".neurophase.lock"

_held: dict[Path, tuple[int, object]] = {}  # folder -> (depth, open lock file)
_held_guard = threading.Lock()
#: The folders the running code holds (copied into threads by run_in_thread).
_owned: contextvars.ContextVar[frozenset] = contextvars.ContextVar("neurophase_locked_folders", default=frozenset())


class FolderInUseError(RuntimeError):
    """Another run is using the build folder."""


def _try_lock(handle) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""


def _in_use(folder: Path, what: str, lock_path: Path) -> FolderInUseError:
    return FolderInUseError(
        f"build folder {str(folder)!r} is in use by another run{_holder(lock_path)}; wait for it to finish "
        f"or give this {what} another build folder (--build-dir/--out)")


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) during a ``with``.

    Parameters
    ----------
    folder : str or Path
        The build folder.
    what : str
        What is running, for the error message ("simulation", "FPGA build").

    Yields
    ------
    Path
        The folder, resolved.

    Raises
    ------
    FolderInUseError
        When another process, or other code of this one, holds the lock.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    with _held_guard:
        entry = _held.get(folder)
        if entry is not None:
            if folder not in _owned.get():
                raise _in_use(folder, what, lock_path)
            _held[folder] = (entry[0] + 1, entry[1])
            token = None
        else:
            handle = open(lock_path, "a+", encoding="utf-8")
            if not _try_lock(handle):
                handle.close()
                raise _in_use(folder, what, lock_path)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}, {what}\n")
            handle.flush()
            _held[folder] = (1, handle)
            token = _owned.set(_owned.get() | {folder})
    try:
        yield folder
    finally:
        if token is not None:
            _owned.reset(token)
        with _held_guard:
            depth, handle = _held[folder]
            if depth > 1:
                _held[folder] = (depth - 1, handle)
            else:
                del _held[folder]
                handle.seek(0)
                handle.truncate()
                handle.close()  # closing the file releases the OS lock


def run_in_thread(target, *, name: str) -> threading.Thread:
    """Start a daemon thread running ``target()`` with the caller's folder locks: code in
    it may lock those folders again (a command's worker thread running a simulation)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread
