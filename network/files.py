"""Writing results: output folders checked before work, files replaced atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["check_output_folder", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "save_figure"]


def check_output_folder(path: str | Path) -> Path:
    """Create ``path``'s folder (for a file path, its parent) and check it is writable, before any work."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create output folder {str(folder)!r}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder {str(folder)!r} is not writable")
    return folder


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    _atomic(Path(path), lambda handle: handle.write(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    _atomic(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: str | Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_figure(fig, path: str | Path) -> None:
    """``fig`` as a PNG at ``path``, replaced atomically."""
    _atomic(Path(path), lambda handle: fig.savefig(handle, format="png", dpi=120))
