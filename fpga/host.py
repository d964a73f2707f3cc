"""Host driver of the FPGA top: one API for the board and the simulated board.

::

    from neurophase.fpga.host import NeuroPhaseHost
    from neurophase.fpga.transports import open_transport

    with NeuroPhaseHost.connect("socket://localhost:4567", "out/fpga/fpga_map.json") as host:
        host.load_weights(w)                 # integer weights -> conductance-code pairs
        y = host.mvm(x).result               # one MVM, activations per column
        host.update_drift_gains(alpha)       # per-column GAIN array (or the tile gain)
        host.drift_step(t_s=3600, nu=0.05)   # age the emulated devices

Registers are reached by name through the exported map (``fpga_map.json``, written by
``neurophase fpga build`` and ``neurophase fpga sim``) or the one built from the same
configuration: :meth:`read`/:meth:`write` for whole registers, :meth:`field` /
:meth:`set_fields` for fields, :meth:`read_array`/:meth:`write_array` for arrays.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurophase.fpga.transports import LinkDesync, Transport, UartBoneLink, open_transport

__all__ = ["NeuroPhaseHost", "RegisterFile", "MvmResult", "HostError"]


class HostError(RuntimeError):
    """The board answered something unexpected (wrong magic, MVM never done, bad value)."""


def _integers(what: str, values, *, shape: tuple[int, ...] | None = None, lo: int | None = None,
              hi: int | None = None) -> np.ndarray:
    """``values`` as an int64 array after checking it: real numbers only (no NaN or
    infinity, no fractions, no complex numbers), the given ``shape``, within [lo, hi].

    Raises
    ------
    ValueError
        Naming ``what``, the offending value and what is allowed.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be integers, not {values!r} ({exc})") from None
    integers = "an integer" if array.ndim == 0 else "integers"
    if array.dtype.kind not in "iuf":
        kind = {"c": "complex numbers", "b": "booleans"}.get(array.dtype.kind, f"{array.dtype} values")
        raise ValueError(f"{what} must be {integers}, not {kind}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, not {array.shape}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise ValueError(f"{what} must be {integers}, found {array[bad].flat[0].item()!r}")
    if array.size and lo is not None and hi is not None:
        outside = (array < lo) | (array > hi)
        if outside.any():
            raise ValueError(f"{what} must lie in [{lo}, {hi}], found {int(array[outside].flat[0])}")
    return array.astype(np.int64)


def _index(what: str, value, lo: int, hi: int) -> int:
    """An integer index or count in [lo, hi], else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value!r}")
    return int(value)


def _to_signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


class RegisterFile:
    """Names -> byte addresses and field layouts of the whole FPGA address space.

    Parameters
    ----------
    description : dict
        The FPGA address map as plain data (``FpgaAddressMap.to_dict()`` or the
        ``fpga_map.json`` export): windows with a base and a register map each.

    Every register and array is reached as ``<window>.<NAME>`` (``tile2.GAIN``) and, for
    the first window that has it, as ``NAME`` alone.
    """

    def __init__(self, description: dict):
        self.description = description
        self.registers: dict[str, dict] = {}
        self.arrays: dict[str, dict] = {}
        for window in description["windows"]:
            base, name = window["base"], window["name"]
            for reg in window["map"]["registers"]:
                entry = {**reg, "address": base + reg["address"], "window": name}
                self.registers[f"{name}.{reg['name']}"] = entry
                self.registers.setdefault(reg["name"], entry)
            for arr in window["map"]["arrays"]:
                entry = {**arr, "base": base + arr["base"], "window": name}
                self.arrays[f"{name}.{arr['name']}"] = entry
                self.arrays.setdefault(arr["name"], entry)

    @classmethod
    def from_json(cls, path: str | Path) -> "RegisterFile":
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise HostError(f"cannot read the FPGA register map {str(path)!r}: {exc.strerror}") from None

    @classmethod
    def from_config(cls, cfg) -> "RegisterFile":
        from neurophase.fpga.regmap import FpgaAddressMap

        return cls(FpgaAddressMap(cfg).to_dict())

    def register(self, name: str) -> dict:
        if name not in self.registers:
            raise KeyError(f"no register {name!r}; registers: {', '.join(self.registers)}")
        return self.registers[name]

    def array(self, name: str) -> dict:
        if name not in self.arrays:
            raise KeyError(f"no array {name!r}; arrays: {', '.join(self.arrays)}")
        return self.arrays[name]

    def field(self, register: str, name: str) -> dict:
        for f in self.register(register)["fields"]:
            if f["name"] == name:
                return f
        names = ", ".join(f["name"] for f in self.register(register)["fields"])
        raise KeyError(f"register {register} has no field {name!r}; fields: {names}")


@dataclass
class MvmResult:
    """One MVM read back from the result window.

    Parameters
    ----------
    result : ndarray of int64, (cols,)
        Activations.
    saturated : ndarray of bool, (cols,)
        Cumulative saturation bit of each column.
    status : dict
        ``STATUS`` fields after the MVM.
    """

    result: np.ndarray
    saturated: np.ndarray
    status: dict


class NeuroPhaseHost:
    """Register access and the tile's operations over a :class:`UartBoneLink`.

    Parameters
    ----------
    transport : Transport
        An open transport (serial port for the board, socket for the simulation).
    regs : RegisterFile
        The address map of the bitstream (or simulation) on the other side.
    poll_timeout_s : float
        Seconds :meth:`mvm` waits for ``STATUS.done``.
    """

    def __init__(self, transport: Transport, regs: RegisterFile, *, poll_timeout_s: float = 30.0):
        self.transport = transport
        self.link = UartBoneLink(transport)
        self.regs = regs
        self.poll_timeout_s = poll_timeout_s

    @classmethod
    def connect(cls, url: str, register_map, *, baud: int = 1_000_000, timeout: float | None = None) -> "NeuroPhaseHost":
        """Open ``url`` (``socket://host:port`` or a serial port) with the map at
        ``register_map`` (a path to ``fpga_map.json``, a RegisterFile or a ChipConfig).

        The session starts on a resynchronised link: on a serial port the driver stays
        silent for longer than the bridge's frame timeout and drops stale input (a frame
        or answer an earlier host left behind); the simulated board does this itself
        between connections."""
        from neurophase.config import ChipConfig

        if isinstance(register_map, RegisterFile):
            regs = register_map
        elif isinstance(register_map, ChipConfig):
            regs = RegisterFile.from_config(register_map)
        else:
            regs = RegisterFile.from_json(register_map)
        transport = open_transport(url, baud=baud, timeout=timeout)
        transport.open()
        host = cls(transport, regs)
        if transport.resync_on_open:
            host.resynchronise()
        return host

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- registers ------------------------------------------------------------------------
    def read(self, name: str) -> int:
        """The 32-bit word of register ``name``."""
        return self.link.read(self.regs.register(name)["address"])[0]

    def write(self, name: str, value: int) -> None:
        """Write the 32-bit word of register ``name``."""
        self.link.write(self.regs.register(name)["address"], value)

    def fields(self, register: str) -> dict:
        """Every field of ``register`` decoded (signed fields as signed integers)."""
        word = self.read(register)
        return {f["name"]: self._decode(word, f) for f in self.regs.register(register)["fields"]}

    def field(self, register: str, name: str) -> int:
        return self._decode(self.read(register), self.regs.field(register, name))

    @staticmethod
    def _decode(word: int, f: dict) -> int:
        value = (word >> f["offset"]) & ((1 << f["width"]) - 1)
        return _to_signed(value, f["width"]) if f["signed"] else value

    def set_fields(self, register: str, **values: int) -> None:
        """Change the named fields of ``register``, keeping its other RW fields (read-modify-write).

        Raises
        ------
        ValueError
            When a value does not fit its field.
        """
        reg = self.regs.register(register)
        word = 0
        for f in reg["fields"]:
            if f["access"] == "RW" and f["name"] not in values:
                word |= self.read(register) & (((1 << f["width"]) - 1) << f["offset"])
        for name, value in values.items():
            f = self.regs.field(register, name)
            lo, hi = ((-(1 << (f["width"] - 1)), (1 << (f["width"] - 1)) - 1) if f["signed"]
                      else (0, (1 << f["width"]) - 1))
            value = _index(f"{register}.{name}", value, lo, hi)
            word |= (value & ((1 << f["width"]) - 1)) << f["offset"]
        self.write(register, word)

    # -- arrays ---------------------------------------------------------------------------
    def write_array(self, name: str, values, start: int = 0) -> None:
        """Write ``values`` into array ``name`` from element ``start`` (one burst).

        Raises
        ------
        ValueError
            When the values are not integers (NaN, fractions, complex numbers) or do not fit
            the array's length or element range.
        """
        arr = self.regs.array(name)
        start = _index(f"start index of array {name}", start, 0, arr["length"] - 1)
        lo, hi = ((-(1 << (arr["width"] - 1)), (1 << (arr["width"] - 1)) - 1) if arr["signed"]
                  else (0, (1 << arr["width"]) - 1))
        values = _integers(f"elements of array {name}", values, lo=lo, hi=hi).reshape(-1)
        if start + values.size > arr["length"]:
            raise ValueError(f"array {name} has {arr['length']} elements; cannot write {values.size} from {start}")
        self.link.write(arr["base"] + 4 * start, [int(v) for v in values])

    def read_array(self, name: str, count: int | None = None, start: int = 0) -> np.ndarray:
        """``count`` elements (default: all) of array ``name`` from ``start``, sign-applied.

        Raises
        ------
        ValueError
            When ``start`` or ``count`` reaches outside the array.
        """
        arr = self.regs.array(name)
        start = _index(f"start index of array {name}", start, 0, arr["length"] - 1)
        count = arr["length"] - start if count is None else _index(
            f"element count of array {name} from {start}", count, 1, arr["length"] - start)
        words = self.link.read(arr["base"] + 4 * start, count)
        if arr["signed"]:
            return np.array([_to_signed(w, 32) for w in words], dtype=np.int64)
        return np.array(words, dtype=np.int64)

    # -- identity and link health -------------------------------------------------------------
    def identify(self) -> dict:
        """Check both magic words and return the configuration registers.

        Raises
        ------
        LinkDesync
            When the link is out of step (bytes beyond the answer arrive): the magic word
            read is then another answer's, not a sign of a wrong bitstream.
        HostError
            When the tile or the FPGA top answers in step but not with its magic word.
        """
        from neurophase.fpga.regmap import FPGA_MAGIC
        from neurophase.regmap import TILE_MAGIC

        for register, magic in (("ID", TILE_MAGIC), ("FPGA_ID", FPGA_MAGIC)):
            got = self.read(register)
            if got != magic:
                time.sleep(self.transport.resync_quiet_s)  # an out-of-step answer has more bytes coming
                extra = self.transport.discard_input()
                if extra:
                    raise LinkDesync(f"register {register} reads 0x{got:08x}, expected 0x{magic:08x}, and "
                                     f"{len(extra)} more byte(s) followed the answer: the link is out of step "
                                     "(stray bytes or an earlier answer on the line); resynchronise() recovers it")
                raise HostError(f"register {register} reads 0x{got:08x}, expected 0x{magic:08x}: "
                                "wrong bitstream, wrong baud rate or no board on this port")
        return {**self.fields("CONFIG0"), **self.fields("CONFIG1"), **self.fields("FPGA_CONFIG")}

    def link_errors(self) -> dict:
        """The bridge's and the UART's error counters."""
        return {**self.fields("LINK_ERRORS"), "bus_errors": self.field("LINK_BUS_ERRORS", "count"),
                **{f"uart_{k}": v for k, v in self.fields("UART_ERRORS").items()}}

    def resynchronise(self) -> None:
        """Recover the link after a lost answer: silence for longer than the bridge's frame
        timeout (the transport's ``resync_quiet_s``), then drop stale input."""
        self.link.resynchronise(self.transport.resync_quiet_s)

    # -- the tile's operations ---------------------------------------------------------------
    @property
    def conductance_bits(self) -> int:
        return self.regs.field("FPGA_CONFIG", "conductance_bits")["reset"]

    @property
    def rows(self) -> int:
        """Rows of the tile (elements of the INPUT array)."""
        return self.regs.array("INPUT")["length"]

    @property
    def cols(self) -> int:
        """Columns of the tile (elements of the RESULT array)."""
        return self.regs.array("RESULT")["length"]

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        """(slices, rows, cols) of the emulator's WEIGHT memory."""
        return self.regs.array("WEIGHT")["length"] // (self.rows * self.cols), self.rows, self.cols

    def load_conductances(self, g_plus, g_minus) -> None:
        """Write conductance codes of shape (slices, rows, cols) into the emulator's WEIGHT memory.

        Raises
        ------
        ValueError
            When a code array has another shape, is not integer or lies outside [0, 2**bits - 1].
        """
        bits = self.conductance_bits
        hi = (1 << bits) - 1
        g_plus = _integers("g_plus codes", g_plus, shape=self.weight_shape, lo=0, hi=hi)
        g_minus = _integers("g_minus codes", g_minus, shape=self.weight_shape, lo=0, hi=hi)
        self.write_array("WEIGHT", (g_plus | (g_minus << bits)).reshape(-1))

    def load_weights(self, weights) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights of shape (rows, cols) (or (slices, rows, cols)) as differential pairs:
        ``G+ = max(w, 0)``, ``G- = max(-w, 0)``; returns the pairs written.

        Raises
        ------
        ValueError
            When the weights are not integers, have another shape than (rows, cols) or
            (slices, rows, cols), or a magnitude above the largest conductance code.
        """
        hi = (1 << self.conductance_bits) - 1
        slices, rows, cols = self.weight_shape
        shape = (rows, cols) if np.ndim(weights) == 2 and slices == 1 else (slices, rows, cols)
        w = _integers(f"weights (for {self.conductance_bits}-bit conductance codes)", weights, shape=shape,
                      lo=-hi, hi=hi).reshape(slices, rows, cols)
        g_plus, g_minus = np.maximum(w, 0), np.maximum(-w, 0)
        self.load_conductances(g_plus, g_minus)
        return g_plus, g_minus

    def _column_values(self, name: str, values) -> np.ndarray:
        """One integer per element of per-column array ``name``, checked against its format."""
        arr = self.regs.array(name)
        lo, hi = ((-(1 << (arr["width"] - 1)), (1 << (arr["width"] - 1)) - 1) if arr["signed"]
                  else (0, (1 << arr["width"]) - 1))
        return _integers(f"{name} values", values, shape=(arr["length"],), lo=lo, hi=hi)

    def set_datapath(self, *, trims=None, gains=None, scale=None, bias=None, shift: int | None = None,
                     relu: bool | None = None) -> None:
        """Write the tile's per-column parameters and output stage (only those given).

        ``gains`` is drift compensation as :meth:`update_drift_gains` takes it: an array of
        one gain per column selects per-column gains, a scalar the tile gain, whatever an
        earlier session selected. Every array must hold one value per column.

        Raises
        ------
        ValueError
            For arrays of another length, values that are not integers or lie outside their
            register format, or a ``relu`` that is not a bool; nothing is written then.
        """
        arrays = {name: self._column_values(name, values)
                  for name, values in (("ADC_TRIM", trims), ("BN_SCALE", scale), ("BN_BIAS", bias))
                  if values is not None}
        if gains is not None:
            gains = self._check_gains(gains)
        stage = {}
        if shift is not None:
            stage["requant_shift"] = shift
        if relu is not None:
            if not isinstance(relu, (bool, np.bool_)):
                raise ValueError(f"relu must be True or False, not {relu!r}")
            stage["relu_en"] = int(relu)
        for name, values in arrays.items():
            self.write_array(name, values)
        if gains is not None:
            self.update_drift_gains(gains)
        if stage:
            self.set_fields("BN_CTRL", **stage)

    def _check_gains(self, alpha):
        if np.ndim(alpha) == 0:
            f = self.regs.field("DRIFT_GAIN", "alpha")
            lo, hi = ((-(1 << (f["width"] - 1)), (1 << (f["width"] - 1)) - 1) if f["signed"]
                      else (0, (1 << f["width"]) - 1))
            return int(_integers("the tile gain DRIFT_GAIN.alpha", alpha, lo=lo, hi=hi))
        return self._column_values("GAIN", alpha)

    def update_drift_gains(self, alpha) -> None:
        """Drift gains: an array (one per column) writes the per-column GAIN array and
        selects it, a scalar writes the tile gain DRIFT_GAIN.alpha and selects that
        (integers, the register format).

        Raises
        ------
        ValueError
            For an array of another length or values outside the register format.
        """
        alpha = self._check_gains(alpha)
        if np.ndim(alpha) == 0:
            self.set_fields("DRIFT_GAIN", alpha=alpha)
            self.set_fields("DRIFT", per_column=0)
        else:
            self.write_array("GAIN", alpha)
            self.set_fields("DRIFT", per_column=1)

    def drift_step(self, t_s: float, nu: float, *, t0_s: float = 1.0, range_factor: float = 1.0) -> int:
        """Age the emulated devices to ``t_s`` after programming (conductance x (t/t0)**-nu);
        returns the EMU_SCALE factor written."""
        from neurophase.models.crossbar_emulator import drift_scale

        factor = drift_scale(t_s, nu, t0_s=t0_s, range_factor=range_factor)
        self.set_fields("EMU_SCALE", factor=factor)
        return factor

    def set_noise(self, bits: int, seed: int) -> None:
        """Read-noise width and seed; reloads the LFSRs so the sequence restarts."""
        self.set_fields("EMU_NOISE", bits=bits, seed=seed)
        self.write("EMU_CTRL", 1 << self.regs.field("EMU_CTRL", "reseed")["offset"])

    def mvm(self, inputs) -> MvmResult:
        """Run one MVM on ``inputs`` (one integer per row) and read its result.

        Raises
        ------
        ValueError
            When ``inputs`` does not hold exactly one integer per row within the input format.
        HostError
            When ``STATUS.done`` does not rise within ``poll_timeout_s`` or an ADC timeout is flagged.
        """
        self.write_array("INPUT", self._column_values("INPUT", inputs))
        done = self.regs.field("STATUS", "done")
        timeout = self.regs.field("STATUS", "adc_timeout")
        self.write("STATUS", (1 << done["offset"]) | (1 << timeout["offset"]))
        before = self.field("RESULT_COUNT", "count")
        self.set_fields("CTRL", start=1)
        deadline = time.monotonic() + self.poll_timeout_s
        while True:
            status = self.fields("STATUS")
            if status["adc_timeout"]:
                raise HostError("the MVM stopped on an ADC timeout (STATUS.adc_timeout)")
            if status["done"] and self.field("RESULT_COUNT", "count") != before:
                break
            if time.monotonic() > deadline:
                raise HostError(f"STATUS.done did not rise within {self.poll_timeout_s} s of CTRL.start")
        result = self.read_array("RESULT")
        groups = self.read_array("RESULT_SAT")
        lanes = self.regs.array("RESULT")["lanes"]
        saturated = np.array([(int(groups[c // lanes]) >> (c % lanes)) & 1 for c in range(len(result))], dtype=bool)
        return MvmResult(result, saturated, status)

