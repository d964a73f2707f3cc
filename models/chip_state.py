"""The state of one programmed tile instance, and its lossless file format.

A state file is a numpy ``.npz`` archive (no pickles) holding the arrays of
:class:`ChipState` plus a JSON header with the format version, the chip configuration,
the device parameters and a SHA-256 checksum over every array's dtype, shape and bytes.
:func:`save_state` writes atomically (a kill mid-write leaves the previous file intact) and
refuses NaN or infinite values. :func:`load_state` rejects, always with
:class:`StateFileError`, a file that is not such an archive, declares more data than
``max_bytes`` (checked from the archive's directory and each array's header before
anything is read), has another version, misses or adds arrays, has arrays of the wrong
type, rank or shape, a malformed header, NaN or infinite values, fails the checksum, or
(when ``expect`` is given) was made for another configuration.

The per-device programming times ``t_programmed`` (set by selective reprogramming) are an
optional array of the format: written, and covered by the checksum, only when some device
was reprogrammed after the first programming, so the file of a state that never was is the
same as before the array existed; a file without it loads with every time 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurophase.atomic import atomic_write

__all__ = ["ChipState", "StateFileError", "save_state", "load_state", "FORMAT_VERSION", "MAX_STATE_BYTES"]

FORMAT_VERSION = 1

_ARRAYS = ("g_prog", "nu", "rtn", "pulses", "w_int", "scale", "ref_w_int", "adc_offsets")
#: numpy dtype kind of each array: float, bool, signed integer.
_KINDS = {"g_prog": "f", "nu": "f", "rtn": "b", "pulses": "i", "w_int": "i", "scale": "f", "ref_w_int": "i",
          "adc_offsets": "f", "t_programmed": "f"}
_KIND_NAMES = {"f": "floating-point", "b": "boolean", "i": "signed integer"}
#: Default bound on the data a state file may declare (all arrays together), in bytes:
#: far above the largest tile (2 x 4 slices x 1024 x 1024 x 4 devices x 8 bytes x 4 arrays).
MAX_STATE_BYTES = 2 << 30
#: Bound on the JSON header member, in bytes.
MAX_HEADER_BYTES = 16 << 20
#: Arrays a file holds only when they differ from their default.
_OPTIONAL = ("t_programmed",)


class StateFileError(ValueError):
    """A chip-state file that is unreadable, corrupt or made for another configuration."""


@dataclass
class ChipState:
    """Everything that makes a programmed tile instance what it is.

    Parameters
    ----------
    g_prog : float64 array, shape (2, slices, rows, cols + reference_columns)
        Programmed conductances in µS; index 0 is G+, 1 is G-. With
        ``weights.devices_per_polarity`` P > 1 a trailing axis of P devices per side.
    nu : float64 array, same shape
        Drift exponents drawn at programming.
    rtn : bool array, same shape
        Devices with random telegraph noise.
    pulses : int64 array, same shape
        Programming pulses (SET and RESET) each device has received: its endurance count.
    w_int : int64 array, shape (rows, cols)
        Integer weights of the data columns.
    scale : float64 array, shape (cols,)
        Weight per integer step, per column.
    ref_w_int : int64 array, shape (rows, reference_columns)
        Integer weights of the reference columns.
    adc_offsets : float64 array, shape (cols // columns_per_adc,)
        Offset deviation of each data-column ADC, in LSB (added to ``analog.adc_offset_lsb``).
    time_s : float
        Time since programming of the last read.
    reads : int
        Array reads since programming (drives read disturb).
    seed : int
        Seed the instance was built with.
    config : dict
        ``ChipConfig.to_dict()`` of the configuration it was built for.
    device : dict
        ``{"preset": ..., "params": {...}}`` of the device model.
    t_programmed : float64 array, same shape as ``g_prog``, optional
        When each device was last programmed, seconds on the chip's clock (0: the first
        programming; default all 0). A device reprogrammed at ``t_r`` drifts and gathers 1/f
        read noise over ``t - t_r`` at time ``t``.
    """

    g_prog: np.ndarray
    nu: np.ndarray
    rtn: np.ndarray
    pulses: np.ndarray
    w_int: np.ndarray
    scale: np.ndarray
    ref_w_int: np.ndarray
    adc_offsets: np.ndarray
    time_s: float = 0.0
    reads: int = 0
    seed: int = 0
    config: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    t_programmed: np.ndarray | None = None

    def __post_init__(self):
        if self.t_programmed is None:
            self.t_programmed = np.zeros(np.shape(self.g_prog))

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a state file holds (``t_programmed`` only when some device was reprogrammed)."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        if np.any(self.t_programmed):
            arrays["t_programmed"] = self.t_programmed
        return arrays

    def copy(self) -> "ChipState":
        """An independent copy (arrays and dictionaries copied)."""
        return ChipState(**{name: getattr(self, name).copy() for name in _ARRAYS + _OPTIONAL},
                         time_s=self.time_s, reads=self.reads, seed=self.seed,
                         config=json.loads(json.dumps(self.config)), device=json.loads(json.dumps(self.device)))

    def check_shapes(self) -> None:
        """Raise :class:`StateFileError` when the arrays do not fit together."""
        for name, ndim in (("w_int", 2), ("ref_w_int", 2), ("scale", 1), ("adc_offsets", 1)):
            if np.ndim(getattr(self, name)) != ndim:
                raise StateFileError(f"chip state {name} must have {ndim} dimension(s), not shape "
                                     f"{np.shape(getattr(self, name))}")
        shape = self.g_prog.shape
        for name in ("nu", "rtn", "pulses", "t_programmed"):
            if getattr(self, name).shape != shape:
                raise StateFileError(f"chip state {name} has shape {getattr(self, name).shape}, expected {shape}")
        if len(shape) not in (4, 5) or shape[0] != 2:
            raise StateFileError(f"chip state g_prog must have shape (2, slices, rows, columns) or "
                                 f"(2, slices, rows, columns, devices), not {shape}")
        rows, cols = self.w_int.shape
        if rows != shape[2] or cols + self.ref_w_int.shape[1] != shape[3] or self.scale.shape != (cols,):
            raise StateFileError(
                f"chip state weights {self.w_int.shape}, reference weights {self.ref_w_int.shape} and scale "
                f"{self.scale.shape} do not match conductances {shape}")


def _checksum(arrays: dict[str, np.ndarray], header: dict) -> str:
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in _ARRAYS + tuple(name for name in _OPTIONAL if name in arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _header(state: ChipState) -> dict:
    return {"version": FORMAT_VERSION, "time_s": float(state.time_s), "reads": int(state.reads),
            "seed": int(state.seed), "config": state.config, "device": state.device}


def _check_finite(arrays: dict[str, np.ndarray], time_s, where: str) -> None:
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise StateFileError(f"{where}: {name} holds {array[bad]} at index {bad}; every value must be finite")
    if not (isinstance(time_s, (int, float)) and math.isfinite(time_s) and time_s >= 0):
        raise StateFileError(f"{where}: time_s must be a finite number of seconds >= 0, not {time_s!r}")


def save_state(state: ChipState, path: str | Path) -> Path:
    """Write ``state`` to ``path`` (an ``.npz`` file) atomically; returns the path written.

    Raises
    ------
    StateFileError
        When the arrays do not fit together or hold NaN or infinite values (nothing is written).
    """
    state.check_shapes()
    path = Path(path)
    _check_finite(state.arrays(), state.time_s, "chip state not saved")
    header = _header(state)
    arrays = state.arrays()
    header_text = json.dumps({**header, "checksum": _checksum(arrays, header)}, sort_keys=True)
    with atomic_write(path, "wb") as handle:
        np.savez(handle, header=np.array(header_text), **arrays)
    return path


def _read_npy_header(member) -> tuple[tuple, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def _check_declared_sizes(path: Path, max_bytes: int) -> None:
    """Bound every member's size from the zip directory and its .npy header before numpy
    allocates anything (a header may declare a shape of petabytes in a few bytes)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            limit = MAX_HEADER_BYTES if name == "header" else max_bytes
            with archive.open(info) as member:
                shape, dtype = _read_npy_header(member)
            declared = math.prod(shape) * dtype.itemsize
            if dtype.hasobject:
                raise StateFileError(f"chip state file {str(path)!r}: array {name!r} holds Python objects")
            size = max(declared, info.file_size)
            total += size
            if size > limit or total > max_bytes:
                raise StateFileError(
                    f"chip state file {str(path)!r}: array {name!r} declares shape {shape} of {dtype} "
                    f"({size} bytes, {total} with the arrays before it); the limit is {limit} bytes per array "
                    f"and {max_bytes} in all (load_state max_bytes)")
            if declared > info.file_size:
                raise StateFileError(f"chip state file {str(path)!r}: array {name!r} declares {declared} bytes but "
                                     f"stores {info.file_size}: truncated or corrupt")


def _check_header(path: Path, header) -> None:
    if not isinstance(header, dict):
        raise StateFileError(f"chip state file {str(path)!r} has a header that is not a JSON object")
    for key, kind, test in (("time_s", "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
                            ("reads", "an integer >= 0", lambda v: type(v) is int and v >= 0),
                            ("seed", "an integer", lambda v: type(v) is int),
                            ("config", "a JSON object", lambda v: isinstance(v, dict)),
                            ("device", "a JSON object", lambda v: isinstance(v, dict))):
        if key not in header:
            raise StateFileError(f"chip state file {str(path)!r}: header has no {key!r}")
        if not test(header[key]):
            raise StateFileError(f"chip state file {str(path)!r}: header {key} must be {kind}, not {header[key]!r}")


def _check_kinds(path: Path, arrays: dict[str, np.ndarray]) -> None:
    for name, kind in _KINDS.items():
        if name in arrays and arrays[name].dtype.kind != kind:
            raise StateFileError(f"chip state file {str(path)!r}: {name} must be a {_KIND_NAMES[kind]} array, "
                                 f"not {arrays[name].dtype}")


def load_state(path: str | Path, expect: dict | None = None, *, max_bytes: int = MAX_STATE_BYTES) -> ChipState:
    """Read a state written by :func:`save_state`.

    Parameters
    ----------
    path : str or Path
    expect : dict, optional
        ``ChipConfig.to_dict()`` the state must have been built for.
    max_bytes : int
        Most data the file may declare, all arrays together (checked before reading them).

    Raises
    ------
    StateFileError
        Unreadable, too large, wrong version, malformed, non-finite, corrupt (checksum),
        incomplete, or another configuration: every defect of the file.
    """
    path = Path(path)
    try:
        _check_declared_sizes(path, max_bytes)
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise StateFileError(f"chip state file {str(path)!r} does not exist") from None
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
        if isinstance(exc, StateFileError):
            raise
        raise StateFileError(f"chip state file {str(path)!r} is not a readable state archive: {exc}") from None
    names = sorted(set(contents) - {"header"})
    if "header" not in contents or sorted(set(names) - set(_OPTIONAL)) != sorted(_ARRAYS):
        raise StateFileError(
            f"chip state file {str(path)!r} holds arrays {names}; expected header and {sorted(_ARRAYS)}")
    try:
        header = json.loads(str(contents["header"]))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise StateFileError(f"chip state file {str(path)!r} has a corrupt header: {exc}") from None
    if not isinstance(header, dict):
        raise StateFileError(f"chip state file {str(path)!r} has a header that is not a JSON object")
    if header.get("version") != FORMAT_VERSION:
        raise StateFileError(
            f"chip state file {str(path)!r} has format version {header.get('version')!r}; "
            f"this model reads version {FORMAT_VERSION}")
    checksum = header.pop("checksum", None)
    arrays = {name: contents[name] for name in _ARRAYS + _OPTIONAL if name in contents}
    _check_header(path, header)
    _check_kinds(path, arrays)
    try:
        digest = _checksum(arrays, header)
    except (TypeError, ValueError) as exc:
        raise StateFileError(f"chip state file {str(path)!r} has a malformed header: {exc}") from None
    if checksum != digest:
        raise StateFileError(f"chip state file {str(path)!r} is corrupt: checksum mismatch")
    _check_finite(arrays, header["time_s"], f"chip state file {str(path)!r}")
    if expect is not None and header["config"] != json.loads(json.dumps(expect)):
        diff = _first_difference(expect, header["config"])
        raise StateFileError(f"chip state file {str(path)!r} was made for another configuration ({diff})")
    state = ChipState(**arrays, time_s=header["time_s"], reads=header["reads"], seed=header["seed"],
                      config=header["config"], device=header["device"])
    state.check_shapes()
    return state


def _first_difference(expected: dict, found: dict, prefix: str = "") -> str:
    for key in sorted(set(expected) | set(found)):
        a, b = expected.get(key), found.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _first_difference(a, b, f"{prefix}{key}.")
            if inner:
                return inner
        elif json.loads(json.dumps(a)) != b:
            return f"{prefix}{key}: expected {a!r}, file has {b!r}"
    return ""
