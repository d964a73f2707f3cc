"""Golden model of the program-verify controller, its register map, and the device array
it programs.

Plain numpy and Python: the RTL in ``neurophase.rtl.program_verify`` makes exactly the
decisions of :func:`decide` for the same verify-read codes (co-simulation proves it), and
:class:`DeviceArray` is the numpy device model the co-simulation bridge connects to the
controller's pulse and read ports.

Physical device addressing
--------------------------
A weight is ``weights.slices`` (S) differential pairs of ``weights.devices_per_polarity``
(D) devices per side; each device has its own physical column, programmed on its own.
Row ``r`` of a tile has ``P = 2 * S * D * cols`` devices; physical column

    p = (2 * (s * cols + c) + side) * D + k        side 0 = G+, side 1 = G-, device k < D

holds device ``k`` of slice ``s`` of weight column ``c`` (G+ and G- side by side,
slice-major; with D = 1, ``p = 2 * (s * cols + c) + side``). Reference columns are not
programmed by the controller. :func:`to_physical` / :func:`from_physical` convert between
the (2, S, rows, cols[, D]) layout of :mod:`neurophase.models.crossbar` and the (rows, P)
layout of the controller.

Verify-read scale
-----------------
A verify read drives one row and converts every device column alone with the column ADC
in its verify range: ``code = clip(rint(G_read / lsb + n_adc), -2**(B-1), 2**(B-1)-1)`` with
``lsb = g_ceiling_factor * g_max / (2**(B-1) - 1)`` (:func:`verify_lsb_us`): the fully
crystalline conductance reads as the largest positive code. ``G_read`` carries the 1/f read
noise accumulated over :data:`~neurophase.models.pulse.VERIFY_DELAY_S`, as in
:func:`neurophase.models.pulse.program_verify`, and ``n_adc`` is ``analog.adc_noise_lsb``
Gaussian noise. Targets are ``rint(G_target / lsb)`` clipped to [0, 2**(B-1)-1].

Policy (one iteration = one verify read of the row)
---------------------------------------------------
For every device in the column range [first, last] that is neither converged nor failed::

    e = target - code                          (codes)
    iterations += 1
    |e| <= tolerance                 -> converged, no more pulses
    else iterations == max_iterations -> failed, no more pulses
    else e > 0: SET   with SET_PULSE[k]   (amplitude, width)
         e < 0: RESET with RESET_PULSE[k] (amplitude, width)
         k = min(bit_length(|e|) - 1, 7)      (error class: 1, 2-3, 4-7, ..., >= 128 codes)

A device that reads high gets a partial RESET sized by its error class; the following
reads find it low and SET pulses climb again (RESET-then-SET). The devices that share a
(polarity, class) form one pulse command ``(row, column mask, polarity, amplitude,
width)``; commands go out in the order SET class 0..7, then RESET class 0..7, skipping
empty masks. When an iteration plans no pulse every device in range is converged or failed
and the run ends: at most ``max_iterations`` reads, ``max_iterations - 1`` pulses a device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.devices import DeviceModel, check_finite, check_real, device_model_from_config
from neurophase.models.pulse import reset_pulse, set_pulse, verify_read_q
from neurophase.regmap import Access, Array, Field, Register, RegisterMap

__all__ = [
    "SET", "RESET", "CLASSES", "AMPLITUDE_BITS", "WIDTH_BITS", "PolicyParams", "PulseCommand", "RowOutcome",
    "ControllerModel", "DeviceArray", "decide", "error_class", "physical_columns", "to_physical",
    "from_physical", "verify_lsb_us", "target_codes", "iteration_bits", "default_policy",
    "program_verify_register_map", "policy_registers", "simulate_rows",
]

#: Pulse polarities on the pulse port.
SET, RESET = 0, 1
#: Error classes (bit_length(|e|) - 1, saturated): one pulse table entry each.
CLASSES = 8
#: Amplitude code width: amplitude code a is the normalised amplitude a / 255.
AMPLITUDE_BITS = 8
#: Width code width: a pulse of width w acts as w consecutive unit pulses (0: no effect).
WIDTH_BITS = 8

_AMP_MAX = (1 << AMPLITUDE_BITS) - 1
_WIDTH_MAX = (1 << WIDTH_BITS) - 1


# -- geometry and scales -------------------------------------------------------------------------

def physical_columns(cfg: ChipConfig) -> int:
    """Devices per row the controller programs: 2 * slices * devices_per_polarity * cols."""
    return 2 * cfg.weights.slices * cfg.weights.devices_per_polarity * cfg.tile.cols


def to_physical(g: np.ndarray, cols: int) -> np.ndarray:
    """(2, S, rows, >= cols[, D]) conductances -> (rows, 2 * S * D * cols),
    p = (2 (s cols + c) + side) D + k."""
    g = np.asarray(g)
    if g.ndim not in (4, 5) or g.shape[0] != 2 or g.shape[3] < cols:
        raise ValueError(f"conductances must have shape (2, slices, rows, >= {cols}) or "
                         f"(2, slices, rows, >= {cols}, devices), not {g.shape}")
    data = g[:, :, :, :cols]                  # (2, S, R, C[, D])
    axes = (2, 1, 3, 0) + ((4,) if g.ndim == 5 else ())
    return np.ascontiguousarray(data.transpose(axes).reshape(g.shape[2], -1))


def from_physical(rows: np.ndarray, slices: int, devices: int = 1) -> np.ndarray:
    """Inverse of :func:`to_physical`: (rows, 2 S D cols) -> (2, S, rows, cols), or
    (2, S, rows, cols, D) when ``devices`` D > 1."""
    rows = np.asarray(rows)
    n_rows, p = rows.shape
    group = 2 * slices * devices
    if p % group:
        raise ValueError(f"physical columns ({p}) must be a multiple of 2 * slices * devices ({group})")
    g = rows.reshape(n_rows, slices, p // group, 2, devices).transpose(3, 1, 0, 2, 4)
    return np.ascontiguousarray(g[..., 0] if devices == 1 else g)


def verify_lsb_us(device: DeviceModel, adc_bits: int) -> float:
    """Conductance of one verify-read code: g_ceiling_factor * g_max / (2**(B-1) - 1)."""
    return device.g_ceiling_factor * device.g_max / (2 ** (adc_bits - 1) - 1)


def target_codes(g_target_us: np.ndarray, lsb_us: float, adc_bits: int) -> np.ndarray:
    """Target conductances as verify codes: rint(G / lsb) clipped to [0, 2**(B-1)-1], int64."""
    return np.clip(np.rint(check_finite("g_target_us", g_target_us) / lsb_us), 0, 2 ** (adc_bits - 1) - 1
                   ).astype(np.int64)


def iteration_bits(cfg: ChipConfig) -> int:
    """Width of the iteration limit and of the per-device counters: 8, or wider when
    ``analog.pv_max_iterations`` needs it."""
    return max(8, cfg.analog.pv_max_iterations.bit_length())


def error_class(magnitude) -> np.ndarray:
    """min(bit_length(|e|) - 1, CLASSES - 1) for |e| >= 1 (0 for 0)."""
    mag = np.asarray(magnitude, dtype=np.int64)
    bl = np.zeros(mag.shape, np.int64)
    m = mag.copy()
    while np.any(m > 0):
        bl += m > 0
        m >>= 1
    return np.clip(bl - 1, 0, CLASSES - 1)


# -- policy parameters ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyParams:
    """Parameters of one program-verify run (the controller's CSRs).

    Parameters
    ----------
    tolerance : int
        Acceptance band in codes: converged when |target - code| <= tolerance.
    max_iterations : int
        Verify reads per device, N_max >= 1.
    set_amplitude, set_width, reset_amplitude, reset_width : tuple of int
        Pulse table, one (amplitude code 0..255, width code 0..255) per error class.
    first, last : int
        Physical column range programmed (inclusive); first == last programs one device.
    """

    tolerance: int
    max_iterations: int
    set_amplitude: tuple
    set_width: tuple
    reset_amplitude: tuple
    reset_width: tuple
    first: int = 0
    last: int = 0

    def check(self, columns: int, adc_bits: int, iter_bits: int) -> "PolicyParams":
        """Raise ValueError naming the field, value and allowed range of any bad parameter."""
        _check_int("tolerance", self.tolerance, 0, (1 << adc_bits) - 1)
        _check_int("max_iterations", self.max_iterations, 1, (1 << iter_bits) - 1)
        for name, hi in (("set_amplitude", _AMP_MAX), ("set_width", _WIDTH_MAX),
                         ("reset_amplitude", _AMP_MAX), ("reset_width", _WIDTH_MAX)):
            values = getattr(self, name)
            if not isinstance(values, tuple) or len(values) != CLASSES:
                raise ValueError(f"{name} must be a tuple of {CLASSES} integers, not {values!r}")
            for k, value in enumerate(values):
                _check_int(f"{name}[{k}]", value, 0, hi)
        _check_int("first", self.first, 0, columns - 1)
        _check_int("last", self.last, self.first, columns - 1)
        return self

    def pulse(self, polarity: int, cls: int) -> tuple[int, int]:
        """(amplitude, width) codes of a (polarity, class) pulse."""
        if polarity == SET:
            return self.set_amplitude[cls], self.set_width[cls]
        return self.reset_amplitude[cls], self.reset_width[cls]

    def replace(self, **changes) -> "PolicyParams":
        return PolicyParams(**{**self.__dict__, **changes})


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")


def default_policy(cfg: ChipConfig, device: DeviceModel | None = None) -> PolicyParams:
    """The policy the controller's CSRs reset to, derived from the device's pulse response.

    SET class k aims at a step of ``0.6 * 2**k`` codes at a device half way up the code
    range (headroom ``ceiling - mid``, each unit pulse closing ``set_gain * strength`` of
    it): below one full-strength unit the amplitude is reduced, above it the width grows.
    RESET class k aims at lowering a device at a quarter of the range by ``2**k`` codes
    (partial RESET: strength = drop / level). Tolerance is ``analog.pv_tolerance_us`` in
    codes (at least 1), N_max ``analog.pv_max_iterations``; the range is the whole row.
    """
    device = device or device_model_from_config(cfg)
    bits = cfg.adc.bits
    top = 2 ** (bits - 1) - 1
    lsb = verify_lsb_us(device, bits)
    set_amp, set_width, reset_amp, reset_width = [], [], [], []
    headroom = top / 2                          # codes, a device at mid range
    level = max(top / 4, 1.0)                   # codes, a typical device that overshot
    for k in range(CLASSES):
        strength = 0.6 * 2**k / (device.set_gain * headroom)
        width = max(1, int(round(strength))) if strength > 1 else 1
        a = min(strength / width, 1.0)
        set_amp.append(_amplitude_code(device.set_threshold + a * (1 - device.set_threshold)))
        set_width.append(min(width, _WIDTH_MAX))
        depth = min(2**k / level, 1.0)
        reset_amp.append(_amplitude_code(device.reset_threshold + depth * (1 - device.reset_threshold)))
        reset_width.append(1)
    tolerance = max(1, int(round(cfg.analog.pv_tolerance_us / lsb)))
    n_max = min(cfg.analog.pv_max_iterations, (1 << iteration_bits(cfg)) - 1)
    return PolicyParams(tolerance, n_max, tuple(set_amp), tuple(set_width), tuple(reset_amp), tuple(reset_width),
                        0, physical_columns(cfg) - 1)


def _amplitude_code(a: float) -> int:
    return int(min(_AMP_MAX, max(0, round(a * _AMP_MAX))))


# -- the decision of one iteration -----------------------------------------------------------------

def decide(params: PolicyParams, targets, codes, iterations, converged, failed, in_range):
    """One iteration's decisions for every device (any array shape, broadcast).

    Returns
    -------
    iterations, converged, failed : arrays
        Updated per-device state.
    pulse : bool array
        Devices that get a pulse this iteration.
    polarity, cls : int64 arrays
        Their polarity (SET/RESET) and error class (meaningful where ``pulse``).
    """
    targets = np.asarray(targets, np.int64)
    codes = np.asarray(codes, np.int64)
    active = np.asarray(in_range, bool) & ~np.asarray(converged, bool) & ~np.asarray(failed, bool)
    error = targets - codes
    mag = np.abs(error)
    iterations = np.asarray(iterations, np.int64) + active
    hit = active & (mag <= params.tolerance)
    give_up = active & ~hit & (iterations >= params.max_iterations)
    pulse = active & ~hit & ~give_up
    polarity = np.where(error < 0, RESET, SET).astype(np.int64)
    return iterations, np.asarray(converged, bool) | hit, np.asarray(failed, bool) | give_up, pulse, polarity, \
        error_class(mag)


@dataclass(frozen=True)
class PulseCommand:
    """One transfer on the pulse port: every device of ``row`` in ``mask`` gets the pulse."""

    row: int
    mask: int
    polarity: int
    amplitude: int
    width: int

    def columns(self, n: int) -> np.ndarray:
        """The mask as a bool array over ``n`` physical columns."""
        return np.array([(self.mask >> p) & 1 for p in range(n)], dtype=bool)


@dataclass
class RowOutcome:
    """Per-device outcome and the run's counters (what the controller's CSRs report)."""

    iterations: np.ndarray
    pulses: np.ndarray
    converged: np.ndarray
    failed: np.ndarray
    row_reads: int = 0
    commands: int = 0
    aborted: bool = False

    @property
    def totals(self) -> dict:
        return {"converged": int(self.converged.sum()), "failed": int(self.failed.sum()),
                "device_iterations": int(self.iterations.sum()), "device_pulses": int(self.pulses.sum()),
                "row_reads": self.row_reads, "commands": self.commands}


class ControllerModel:
    """The controller's run on one row, one verify read at a time.

    Parameters
    ----------
    params : PolicyParams
    targets : int array, shape (P,)
        Target codes of the row's physical columns.
    row : int
        Row address put on the pulse and read ports.
    """

    def __init__(self, params: PolicyParams, targets, row: int = 0):
        self.params = params
        self.targets = check_real("targets", targets).astype(np.int64)
        self.row = row
        n = self.targets.size
        cols = np.arange(n)
        self.in_range = (cols >= params.first) & (cols <= params.last)
        self.outcome = RowOutcome(np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool))
        self.done = False

    def step(self, codes) -> list[PulseCommand]:
        """Decisions for one verify read's ``codes``: the pulse commands in port order
        (empty when the run is over)."""
        if self.done:
            raise RuntimeError("the program-verify run is already over")
        o = self.outcome
        o.row_reads += 1
        o.iterations, o.converged, o.failed, pulse, polarity, cls = decide(
            self.params, self.targets, codes, o.iterations, o.converged, o.failed, self.in_range)
        commands = []
        for pol in (SET, RESET):
            for k in range(CLASSES):
                mask = pulse & (polarity == pol) & (cls == k)
                if mask.any():
                    amplitude, width = self.params.pulse(pol, k)
                    bits = int(sum(1 << int(p) for p in np.flatnonzero(mask)))
                    commands.append(PulseCommand(self.row, bits, pol, amplitude, width))
        self.done = not commands
        return commands

    def issued(self, command: PulseCommand) -> None:
        """Count an accepted command (per-device pulse counters, command counter)."""
        self.outcome.pulses += command.columns(self.targets.size)
        self.outcome.commands += 1


# -- the device array --------------------------------------------------------------------------------

class DeviceArray:
    """Conductances of a tile's devices in the controller's (rows, P) layout, with the
    pulse response of :mod:`neurophase.models.pulse` and verify reads of this module.

    Parameters
    ----------
    device : DeviceModel
    g_us : float array, shape (rows, P)
        Start conductances (µS).
    adc_bits : int
        Verify ADC width.
    rng : numpy.random.Generator
        Every draw of pulses and reads.
    adc_noise_lsb : float
        ADC noise per conversion, in codes.
    stuck : bool array, shape (rows, P), optional
        Devices that ignore every pulse (stuck-at).
    lsb_us : float, optional
        Verify-read code size; default :func:`verify_lsb_us` of ``device`` (tests give
        another device the nominal scale to model devices that cannot reach a target).
    """

    def __init__(self, device: DeviceModel, g_us, adc_bits: int, rng: np.random.Generator,
                 adc_noise_lsb: float = 0.0, stuck=None, lsb_us: float | None = None):
        self.device = device
        self.g = check_finite("conductances", g_us).copy()
        if self.g.ndim != 2:
            raise ValueError(f"conductances must be a 2-D array (rows, P), not shape {self.g.shape}")
        self.adc_bits = adc_bits
        self.lsb_us = verify_lsb_us(device, adc_bits) if lsb_us is None else float(lsb_us)
        self.rng = rng
        self.adc_noise_lsb = float(adc_noise_lsb)
        self.stuck = np.zeros(self.g.shape, bool) if stuck is None else np.asarray(stuck, bool)
        self.pulses = np.zeros(self.g.shape, np.int64)
        self.read_count = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.g.shape

    def read(self, rows) -> np.ndarray:
        """Verify-read codes of ``rows`` (an int or an index array), int64 of shape (P,) or (len, P)."""
        g = self.g[rows]
        sigma = verify_read_q(self.device, g)
        noisy = np.maximum(g + np.abs(g) * sigma * self.rng.standard_normal(g.shape), 0.0) / self.lsb_us
        if self.adc_noise_lsb:
            noisy = noisy + self.adc_noise_lsb * self.rng.standard_normal(g.shape)
        half = 2 ** (self.adc_bits - 1)
        self.read_count += 1
        return np.clip(np.rint(noisy), -half, half - 1).astype(np.int64)

    def pulse(self, rows, mask, polarity, amplitude, width) -> None:
        """Apply pulses to the devices of ``rows`` selected by ``mask`` (bool, same shape as
        ``self.g[rows]``). ``polarity``, ``amplitude`` (0..255) and ``width`` (0..255) are
        scalars or per-device arrays; width w acts as w consecutive unit pulses. Every
        pulse counts once towards endurance; stuck and worn-out devices do not respond."""
        g = self.g[rows]
        mask = np.asarray(mask, bool) & np.ones(g.shape, bool)
        polarity = np.broadcast_to(np.asarray(polarity), g.shape)
        amp = np.broadcast_to(np.asarray(amplitude, np.float64), g.shape) / _AMP_MAX
        width = np.broadcast_to(np.asarray(width, np.int64), g.shape)
        pulses = self.pulses[rows]
        responds = mask & ~self.stuck[rows] & (pulses < self.device.endurance_cycles)
        pulses = pulses + mask
        for repeat in range(int(width[responds].max(initial=0))):
            on = responds & (width > repeat)
            up, down = on & (polarity == SET), on & (polarity == RESET)
            if up.any():
                g[up] = set_pulse(self.device, g[up], amp[up], self.rng)
            if down.any():
                g[down] = reset_pulse(self.device, g[down], amp[down], self.rng)
        self.g[rows] = g
        self.pulses[rows] = pulses


def simulate_rows(params: PolicyParams, targets, array: DeviceArray, rows=None) -> RowOutcome:
    """Run the policy on many rows at once (numpy, no RTL): each row as the controller runs
    it, all rows in lock step. Per-device decisions are those of :func:`decide`; only the
    order of random draws differs from a row-by-row run. Returns per-device arrays of shape
    (len(rows), P); ``row_reads`` and ``commands`` are totals over the rows."""
    rows = np.arange(array.shape[0]) if rows is None else np.asarray(rows)
    targets = np.asarray(targets, np.int64)
    n = targets.shape[-1]
    cols = np.arange(n)
    in_range = np.broadcast_to((cols >= params.first) & (cols <= params.last), targets.shape)
    shape = targets.shape
    out = RowOutcome(np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, bool), np.zeros(shape, bool))
    live = np.ones(len(rows), bool)
    table = np.array([[params.pulse(p, k) for k in range(CLASSES)] for p in (SET, RESET)], np.int64)
    for _ in range(params.max_iterations):
        idx = np.flatnonzero(live)
        if not idx.size:
            break
        codes = array.read(rows[idx])
        it, conv, fail, pulse, pol, cls = decide(params, targets[idx], codes, out.iterations[idx],
                                                 out.converged[idx], out.failed[idx], in_range[idx])
        out.iterations[idx], out.converged[idx], out.failed[idx] = it, conv, fail
        out.row_reads += idx.size
        groups = pulse[..., None] & (pol[..., None] * CLASSES + cls[..., None] == np.arange(2 * CLASSES))
        out.commands += int(groups.any(axis=1).sum())
        out.pulses[idx] += pulse
        array.pulse(rows[idx], pulse, pol, table[pol, cls, 0], table[pol, cls, 1])
        live[idx] = pulse.any(axis=1)
    return out


# -- register map ----------------------------------------------------------------------------------

def program_verify_register_map(cfg: ChipConfig) -> RegisterMap:
    """The program-verify controller's own CSR bank, sized by ``cfg``; reset values are
    :func:`default_policy`."""
    policy = default_policy(cfg)
    n = physical_columns(cfg)
    bits = cfg.adc.bits
    ibits = iteration_bits(cfg)
    col_bits = max(1, (n - 1).bit_length())
    row_bits = max(1, (cfg.tile.rows - 1).bit_length())
    R, RW, RW1C, W1P, CONST = Access.R, Access.RW, Access.RW1C, Access.W1P, Access.CONST
    rmap = RegisterMap("program_verify", doc=f"Program-verify controller of one {cfg.tile.rows} x {cfg.tile.cols} "
                       f"tile ({n} devices per row)")
    rmap.add(Register("PV_INFO", (Field("columns", 17, CONST, n, "physical device columns per row"),
                                  Field("adc_bits", 5, CONST, bits, "verify ADC code width"),
                                  Field("iter_bits", 5, CONST, ibits, "iteration counter width")),
                      doc="Configuration the controller was generated for"))
    rmap.add(Register("PV_CTRL", (Field("start", access=W1P, doc="start a run on PV_ROW.row"),
                                  Field("abort", access=W1P, doc="abort the run in progress"),
                                  Field("irq_en", access=RW, offset=8, doc="master interrupt enable")),
                      doc="Commands"))
    rmap.add(Register("PV_STATUS", (Field("busy", access=R, doc="a run is in progress"),
                                    Field("done", access=RW1C, doc="a run ended (converged, failed, aborted or error)"),
                                    Field("failed", access=RW1C, doc="a run ended with at least one failed device"),
                                    Field("aborted", access=RW1C, doc="a run was aborted"),
                                    Field("timeout", access=RW1C, doc="a read or pulse was not answered within "
                                          "PV_TIMEOUT cycles; the run ended"),
                                    Field("bad_range", access=RW1C, doc="start refused: PV_RANGE first > last "
                                          "or last beyond the row")),
                      doc="Status; sticky bits are cleared by writing 1"))
    rmap.add_interrupts("PV_STATUS", master=("PV_CTRL", "irq_en"), enable="PV_IRQ_ENABLE", pending="PV_IRQ_PENDING")
    rmap.add(Register("PV_ROW", (Field("row", row_bits, RW, 0, "row to program"),), doc="Row select"))
    rmap.add(Register("PV_RANGE", (Field("first", 16, RW, 0, "first physical column programmed"),
                                   Field("last", 16, RW, n - 1, "last physical column programmed (inclusive)")),
                      doc="Physical column range of a run (first == last: one device)"))
    rmap.add(Register("PV_TOLERANCE", (Field("codes", bits, RW, policy.tolerance,
                                             "converged when |target - code| <= codes"),),
                      doc="Acceptance band in verify-ADC codes"))
    rmap.add(Register("PV_MAX_ITER", (Field("count", ibits, RW, policy.max_iterations,
                                            "verify reads per device, N_max (0 acts as 1)"),),
                      doc="Iteration limit"))
    rmap.add(Register("PV_TIMEOUT", (Field("cycles", 16, RW, 0xFFFF, "cycles a read or pulse may take (0 acts as 1)"),),
                      doc="Read and pulse answer timeout"))
    for name, amps, widths in (("SET", policy.set_amplitude, policy.set_width),
                               ("RESET", policy.reset_amplitude, policy.reset_width)):
        for k in range(CLASSES):
            span = "|e| >= 128" if k == CLASSES - 1 else f"|e| in [{2**k}, {2**(k + 1) - 1}]"
            rmap.add(Register(f"PV_{name}_{k}", (
                Field("amplitude", AMPLITUDE_BITS, RW, amps[k], "normalised amplitude x 255"),
                Field("width", WIDTH_BITS, RW, widths[k], "width in unit pulses (0: no effect)")),
                doc=f"{name} pulse of error class {k} ({span} codes)"))
    rmap.add(Register("PV_ROW_READS", (Field("count", 16, R, doc="verify reads of the row in the last run"),),
                      doc="Row iterations of the last run"))
    rmap.add(Register("PV_COMMANDS", (Field("count", 32, R, doc="pulse commands issued in the last run"),),
                      doc="Pulse commands of the last run"))
    rmap.add(Register("PV_CONVERGED", (Field("count", n.bit_length(), R, doc="devices converged in the last run"),),
                      doc="Converged devices"))
    rmap.add(Register("PV_FAILED", (Field("count", n.bit_length(), R, doc="devices failed in the last run"),),
                      doc="Failed devices"))
    rmap.add(Register("PV_DEVICE_ITERS", (Field("count", 32, R, doc="sum of per-device iterations of the last run"),),
                      doc="Total device iterations"))
    rmap.add(Register("PV_DEVICE_PULSES", (Field("count", 32, R, doc="sum of per-device pulses of the last run"),),
                      doc="Total pulses (device-pulses) issued"))
    rmap.add(Register("PV_RESULT_INDEX", (Field("column", col_bits, RW, 0, "physical column shown in PV_RESULT"),),
                      doc="Outcome window select"))
    rmap.add(Register("PV_RESULT", (Field("iterations", ibits, R, doc="verify reads of the device"),
                                    Field("pulses", ibits, R, doc="pulses applied to the device"),
                                    Field("converged", access=R, doc="within tolerance"),
                                    Field("failed", access=R, doc="gave up after N_max")),
                      doc="Outcome of device PV_RESULT_INDEX.column in the last run (valid 2 cycles after "
                          "the index is written)"))
    rmap.add(Array("PV_TARGET", n, bits - 1, lanes=cfg.datapath.lanes,
                   doc=f"target code of each physical column of the row (0 to {2 ** (bits - 1) - 1})"))
    return rmap


def policy_registers(rmap: RegisterMap, params: PolicyParams, row: int = 0) -> dict[int, int]:
    """Byte address -> word to write so that the controller runs ``params`` on ``row``."""
    words = {
        rmap.address("PV_ROW"): row,
        rmap.address("PV_RANGE"): params.first | params.last << 16,
        rmap.address("PV_TOLERANCE"): params.tolerance,
        rmap.address("PV_MAX_ITER"): params.max_iterations,
    }
    for name, amps, widths in (("SET", params.set_amplitude, params.set_width),
                               ("RESET", params.reset_amplitude, params.reset_width)):
        for k in range(CLASSES):
            words[rmap.address(f"PV_{name}_{k}")] = amps[k] | widths[k] << AMPLITUDE_BITS
    return words
