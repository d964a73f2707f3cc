"""The chip configuration: one typed, validated description that sizes the RTL,
parametrises the analog model, configures the co-simulation and the FPGA build.

Every section is a frozen dataclass whose fields carry their allowed values; the
values are checked when the object is built, so an invalid chip can never exist.
Errors name the field, the value and what is allowed::

    >>> ChipConfig.from_dict({"adc": {"bits": 40}})
    Traceback (most recent call last):
    ...
    neurophase.config.ConfigError: adc.bits must be an integer from 2 to 16, not 40
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "TileConfig",
    "InputConfig",
    "AdcConfig",
    "WeightConfig",
    "DatapathConfig",
    "DeviceConfig",
    "AnalogConfig",
    "FpgaConfig",
    "SequencerConfig",
    "ChipConfig",
    "DEVICE_PRESETS",
    "load_config",
]

#: Device families the analog model implements (see ``neurophase.models``).
DEVICE_PRESETS = ("pcm-joshi", "pcm-hermes", "pcm-projected", "rram", "nor-flash")


class ConfigError(ValueError):
    """An invalid chip configuration; the message names the field, the value and what is allowed."""


def _int_field(default: int, lo: int, hi: int, doc: str):
    return field(default=default, metadata={"kind": "int", "lo": lo, "hi": hi, "doc": doc})


def _float_field(default: float, lo: float, hi: float, doc: str):
    return field(default=default, metadata={"kind": "float", "lo": lo, "hi": hi, "doc": doc})


def _choice_field(default: str, choices: tuple[str, ...], doc: str):
    return field(default=default, metadata={"kind": "choice", "choices": choices, "doc": doc})


def _check_field(section: str, spec: dataclasses.Field, value: Any) -> None:
    meta = spec.metadata
    name = f"{section}.{spec.name}" if section else spec.name
    kind = meta.get("kind")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not meta["lo"] <= value <= meta["hi"]:
            raise ConfigError(f"{name} must be an integer from {meta['lo']} to {meta['hi']}, not {value!r}")
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not meta["lo"] <= value <= meta["hi"]:
            raise ConfigError(f"{name} must be a number from {meta['lo']:g} to {meta['hi']:g}, not {value!r}")
    elif kind == "choice":
        if value not in meta["choices"]:
            allowed = ", ".join(repr(c) for c in meta["choices"])
            raise ConfigError(f"{name} must be one of {allowed}, not {value!r}")


class _Section:
    """Shared behaviour of the configuration sections: field checks, dict round trip."""

    _section = ""

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            _check_field(self._section, spec, getattr(self, spec.name))
        self._check()

    def _check(self) -> None:
        """Cross-field checks of one section; overridden where needed."""

    def error(self, name: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{self._section}.{name} {allowed}, not {value!r}")

    @classmethod
    def from_dict(cls, data: Any):
        if not isinstance(data, dict):
            raise ConfigError(f"[{cls._section}] must be a table of fields, not {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(
                    f"unknown field {cls._section}.{key}; allowed fields: {', '.join(names)}"
                )
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TileConfig(_Section):
    """Size of one crossbar tile and of the chip.

    Parameters
    ----------
    rows : int
        Crossbar rows (inputs) per tile.
    cols : int
        Crossbar columns (weight outputs) per tile.
    count : int
        Number of tiles on the chip.
    """

    _section = "tile"
    rows: int = _int_field(256, 1, 4096, "crossbar rows (inputs) per tile")
    cols: int = _int_field(256, 1, 4096, "crossbar columns (outputs) per tile")
    count: int = _int_field(144, 1, 4096, "tiles on the chip")


@dataclass(frozen=True)
class InputConfig(_Section):
    """How activations reach the rows.

    Parameters
    ----------
    bits : int
        Activation width.
    encoding : str
        ``"twos-complement"`` (the MSB bit-plane counts negatively) or ``"unsigned"``.
    mode : str
        ``"bit-serial"`` (one bit-plane per array read) or ``"pulse-width"``.
    """

    _section = "input"
    bits: int = _int_field(8, 1, 16, "activation width in bits")
    encoding: str = _choice_field("twos-complement", ("twos-complement", "unsigned"), "input number format")
    mode: str = _choice_field("bit-serial", ("bit-serial", "pulse-width"), "how inputs drive the rows")

    @property
    def signed(self) -> bool:
        return self.encoding == "twos-complement"

    @property
    def planes(self) -> int:
        """Array reads per slice: one per bit-plane when bit-serial, one otherwise."""
        return self.bits if self.mode == "bit-serial" else 1


@dataclass(frozen=True)
class AdcConfig(_Section):
    """The column ADCs.

    Parameters
    ----------
    bits : int
        Signed ADC code width.
    columns_per_adc : int
        Columns that share one ADC through a column multiplexer (1: an ADC per column).
    latency_cycles : int
        Clock cycles from a conversion's start to its done.
    """

    _section = "adc"
    bits: int = _int_field(8, 2, 16, "signed ADC code width")
    columns_per_adc: int = _int_field(1, 1, 256, "columns multiplexed onto one ADC")
    latency_cycles: int = _int_field(16, 1, 4096, "conversion latency in clock cycles")


@dataclass(frozen=True)
class WeightConfig(_Section):
    """How a weight is stored in the devices.

    Parameters
    ----------
    slices : int
        Differential pairs per weight, each on its own array read (S).
    significance_factor : int
        Factor F between consecutive slices: W = sum_s F**s * (G+_s - G-_s).
    scaling : str
        ``"per-column"`` or ``"per-tile"`` scaling of weights onto g_max.
    devices_per_polarity : int
        Devices P programmed to the same target on each side of a differential pair, their
        currents summed on the same bit line (the 2023 Nature speech chip: 2 per polarity,
        4 per weight). The ADC range grows with P, so codes keep their units.
    """

    _section = "weights"
    slices: int = _int_field(1, 1, 8, "differential pairs per weight")
    significance_factor: int = _int_field(8, 2, 256, "factor between consecutive slices")
    scaling: str = _choice_field("per-column", ("per-column", "per-tile"), "scaling of weights onto g_max")
    devices_per_polarity: int = _int_field(1, 1, 4, "devices per polarity, currents summed on one bit line")


@dataclass(frozen=True)
class DatapathConfig(_Section):
    """The digital periphery behind the ADCs.

    Parameters
    ----------
    lanes : int
        Columns the digital datapath handles per clock cycle.
    accumulator_bits : int
        Width of the shift-and-add result; 0 derives the full-precision width.
    activation_bits : int
        Width of the requantised activation handed to the next layer.
    gain_mode : str
        ``"per-column"`` (a drift gain per column, read from a parameter array) or
        ``"per-tile"`` (one gain for every column).
    gain_bits, gain_frac_bits : int
        Drift gain alpha: signed ``gain_bits`` wide, ``gain_frac_bits`` of them fractional.
    bn_scale_bits, bn_scale_frac_bits : int
        Batch-norm scale gamma: signed ``bn_scale_bits`` wide, ``bn_scale_frac_bits`` fractional.
    bn_bias_bits : int
        Batch-norm bias beta: signed integer in units of the accumulator LSB.
    adc_timeout_cycles : int
        Reset value of the ADC timeout: cycles after a conversion's start within which
        its done must arrive (docs/fixed-point.md, docs/datapath.md).
    """

    _section = "datapath"
    lanes: int = _int_field(32, 1, 256, "columns per clock in the digital datapath")
    accumulator_bits: int = _int_field(0, 0, 64, "shift-and-add result width (0: full precision)")
    activation_bits: int = _int_field(8, 2, 16, "requantised output activation width")
    gain_mode: str = _choice_field("per-column", ("per-column", "per-tile"), "one drift gain per column or per tile")
    gain_bits: int = _int_field(16, 2, 32, "signed drift-gain width")
    gain_frac_bits: int = _int_field(12, 0, 31, "fractional bits of the drift gain")
    bn_scale_bits: int = _int_field(16, 2, 32, "signed batch-norm scale width")
    bn_scale_frac_bits: int = _int_field(12, 0, 31, "fractional bits of the batch-norm scale")
    bn_bias_bits: int = _int_field(24, 2, 32, "signed batch-norm bias width (accumulator LSBs; one register word)")
    adc_timeout_cycles: int = _int_field(1024, 1, 65535, "ADC done timeout in clock cycles (reset value)")

    def _check(self) -> None:
        # The gain and the scale reset to 1.0, which a signed format holds only with at least
        # one integer bit besides the sign: frac <= bits - 2.
        if self.gain_frac_bits > self.gain_bits - 2:
            raise self.error("gain_frac_bits", self.gain_frac_bits,
                             f"must be at most datapath.gain_bits - 2 ({self.gain_bits - 2}) so that the "
                             f"unit gain 1.0 fits the signed {self.gain_bits}-bit drift gain")
        if self.bn_scale_frac_bits > self.bn_scale_bits - 2:
            raise self.error("bn_scale_frac_bits", self.bn_scale_frac_bits,
                             f"must be at most datapath.bn_scale_bits - 2 ({self.bn_scale_bits - 2}) so that the "
                             f"unit scale 1.0 fits the signed {self.bn_scale_bits}-bit batch-norm scale")


@dataclass(frozen=True)
class DeviceConfig(_Section):
    """The memory device and its parameter overrides.

    Parameters
    ----------
    preset : str
        One of :data:`DEVICE_PRESETS`.
    overrides : dict
        Device-model parameters to replace, by name (checked by the model).
    """

    _section = "device"
    preset: str = _choice_field("pcm-joshi", DEVICE_PRESETS, "device family / fit")
    overrides: dict = field(default_factory=dict)

    def _check(self) -> None:
        if not isinstance(self.overrides, dict):
            raise self.error("overrides", self.overrides, "must be a table of parameter = number")
        for key, value in self.overrides.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"device.overrides.{key} must be a finite number, not {value!r}")

    def __hash__(self):
        return hash((self.preset, tuple(sorted(self.overrides.items()))))


@dataclass(frozen=True)
class AnalogConfig(_Section):
    """The analog array model: read, ADC range, noise switches, drift compensation.

    Parameters
    ----------
    weight_bits : int
        Signed integer weight width of the mapping: weights quantise to
        [-(2**(weight_bits-1)-1), 2**(weight_bits-1)-1] times a per-column/per-tile scale.
    read_voltage_v : float
        Row read voltage; column current in µA = volts x µS.
    adc_full_scale : float
        ADC full-scale current as a fraction of the largest column signal
        (rows x g_max x read voltage x largest row drive); code LSB = full scale / 2**(bits-1).
    adc_offset_lsb : float
        Offset of every ADC, in LSB, added before rounding.
    adc_offset_sigma_lsb : float
        Spread of the per-ADC offset (drawn once per ADC at chip build), in LSB.
    adc_noise_lsb : float
        Output-referred ADC noise (one fresh draw per conversion), in LSB.
    programming_noise, drift : str
        ``"on"`` or ``"off"``.
    read_noise : str
        ``"output-referred"`` (one exact Gaussian draw per output), ``"per-device"``
        (one draw per device per read, slow) or ``"off"``.
    gdc : str
        Drift-compensation granularity: ``"per-tile"`` or ``"per-column"``.
    gdc_source : str
        ``"calibration-input"`` (mean |y| of the data columns for a fixed input set) or
        ``"reference-columns"`` (mean |y| of extra reference columns).
    reference_columns : int
        Extra reference columns per tile (used when gdc_source is reference-columns).
    calibration_vectors : int
        Input vectors in the fixed calibration set.
    pv_max_iterations : int
        Program-verify iteration limit per device.
    pv_tolerance_us : float
        Program-verify acceptance band around the target, in µS.
    """

    _section = "analog"
    weight_bits: int = _int_field(8, 2, 16, "signed integer weight width of the mapping")
    read_voltage_v: float = _float_field(0.2, 0.01, 2.0, "row read voltage in volts")
    adc_full_scale: float = _float_field(0.0625, 1e-6, 65536.0, "ADC full scale as a fraction of the largest column signal")
    adc_offset_lsb: float = _float_field(0.0, -64.0, 64.0, "ADC offset in LSB")
    adc_offset_sigma_lsb: float = _float_field(0.0, 0.0, 16.0, "per-ADC offset spread in LSB")
    adc_noise_lsb: float = _float_field(0.0, 0.0, 16.0, "ADC noise per conversion in LSB")
    programming_noise: str = _choice_field("on", ("on", "off"), "programming noise")
    drift: str = _choice_field("on", ("on", "off"), "conductance drift")
    read_noise: str = _choice_field(
        "output-referred", ("output-referred", "per-device", "off"), "read-noise model")
    gdc: str = _choice_field("per-tile", ("per-tile", "per-column"), "drift-compensation granularity")
    gdc_source: str = _choice_field(
        "calibration-input", ("calibration-input", "reference-columns"), "drift-compensation reference")
    reference_columns: int = _int_field(8, 0, 256, "extra reference columns per tile")
    calibration_vectors: int = _int_field(64, 1, 65536, "input vectors in the calibration set")
    pv_max_iterations: int = _int_field(30, 1, 10000, "program-verify iteration limit")
    pv_tolerance_us: float = _float_field(0.5, 0.001, 100.0, "program-verify tolerance in µS")


@dataclass(frozen=True)
class FpgaConfig(_Section):
    """The FPGA emulation board (``neurophase fpga ...``; see docs/fpga.md).

    Parameters
    ----------
    board : str
        Board name in the registry of ``neurophase.fpga.platforms`` (checked there).
    baud : int
        UART bit rate of the host link.
    sim_clocks_per_bit : int
        Clock cycles per UART bit in the simulated board (small, so simulation is fast).
    bridge_timeout_bytes : int
        Silence, in byte times, after which the UART bridge drops a partial frame.
    conductance_bits : int
        Width of each conductance code (G+ and G-) in the crossbar emulator.
    placement_seed : int
        Seed of nextpnr's placer for ``neurophase fpga build``; 0 leaves nextpnr's own
        default. The same netlist and seed place and route the same on any machine, so a
        preset can pin a placement that meets its clock.
    """

    _section = "fpga"
    board: str = "ulx3s-85f"
    baud: int = _int_field(1_000_000, 1200, 12_000_000, "UART bit rate of the host link")
    sim_clocks_per_bit: int = _int_field(8, 4, 1024, "clock cycles per UART bit in simulation")
    bridge_timeout_bytes: int = _int_field(2000, 2, 1_000_000, "byte times of silence that drop a partial frame")
    conductance_bits: int = _int_field(7, 1, 15, "width of each emulated conductance code")
    placement_seed: int = _int_field(0, 0, (1 << 31) - 1, "nextpnr placement seed (0: nextpnr's default)")

    def _check(self) -> None:
        if not isinstance(self.board, str) or not self.board.replace("-", "").isalnum():
            raise self.error("board", self.board, "must be a board name like 'ulx3s-85f'")


@dataclass(frozen=True)
class SequencerConfig(_Section):
    """The chip top's memories and layer sequencer (``neurophase compile``, docs/chip.md).

    Parameters
    ----------
    activation_words : int
        Activation memory entries (one ``input.bits`` activation each).
    program_words : int
        Program memory entries (one 256-bit instruction each).
    param_words : int
        Batch-norm parameter memory entries (one scale and one bias each).
    psum_words : int
        Partial-sum buffer entries: the most outputs one MVM layer may have.
    max_row_blocks : int
        Most row blocks (tiles' worth of inputs) one layer may be split into; sizes the
        partial-sum adder: ``accumulator_bits + ceil(log2(max_row_blocks))`` bits.
    """

    _section = "sequencer"
    activation_words: int = _int_field(16384, 16, 1 << 20, "activation memory entries")
    program_words: int = _int_field(256, 4, 1 << 16, "program memory instructions")
    param_words: int = _int_field(2048, 1, 1 << 16, "batch-norm parameter memory entries")
    psum_words: int = _int_field(1024, 1, 1 << 16, "partial-sum buffer entries (outputs of one layer)")
    max_row_blocks: int = _int_field(16, 1, 4096, "most row blocks of one layer")

    @property
    def psum_growth_bits(self) -> int:
        return math.ceil(math.log2(self.max_row_blocks))


_SECTIONS = {
    "tile": TileConfig,
    "input": InputConfig,
    "adc": AdcConfig,
    "weights": WeightConfig,
    "datapath": DatapathConfig,
    "device": DeviceConfig,
    "analog": AnalogConfig,
    "fpga": FpgaConfig,
    "sequencer": SequencerConfig,
}


@dataclass(frozen=True)
class ChipConfig:
    """The whole chip. The defaults match the design brief: 144 tiles of 256 x 256
    weights, 8-bit two's-complement bit-serial inputs, an 8-bit ADC per column.

    Parameters
    ----------
    tile, input, adc, weights, datapath, device, analog, fpga, sequencer :
        The sections; see their classes.
    clock_mhz : float
        Clock of the digital periphery.

    Raises
    ------
    ConfigError
        For any value outside its allowed range or an inconsistent combination.
    """

    tile: TileConfig = field(default_factory=TileConfig)
    input: InputConfig = field(default_factory=InputConfig)
    adc: AdcConfig = field(default_factory=AdcConfig)
    weights: WeightConfig = field(default_factory=WeightConfig)
    datapath: DatapathConfig = field(default_factory=DatapathConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    analog: AnalogConfig = field(default_factory=AnalogConfig)
    fpga: FpgaConfig = field(default_factory=FpgaConfig)
    sequencer: SequencerConfig = field(default_factory=SequencerConfig)
    clock_mhz: float = _float_field(500.0, 1.0, 5000.0, "clock of the digital periphery in MHz")

    def __post_init__(self):
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, not {getattr(self, name)!r}")
        _check_field("", dataclasses.fields(self)[-1], self.clock_mhz)
        cols, lanes = self.tile.cols, self.datapath.lanes
        if cols % lanes:
            raise ConfigError(f"datapath.lanes must divide tile.cols ({cols}), not {lanes!r}")
        if cols % self.adc.columns_per_adc:
            raise ConfigError(
                f"adc.columns_per_adc must divide tile.cols ({cols}), not {self.adc.columns_per_adc!r}"
            )
        if self.full_accumulator_bits > 62:
            raise ConfigError(
                f"weights.significance_factor {self.weights.significance_factor} with weights.slices "
                f"{self.weights.slices}, input.bits {self.input.bits} ({self.input.mode}) and adc.bits "
                f"{self.adc.bits} needs a "
                f"{self.full_accumulator_bits}-bit accumulator; at most 62 bits are allowed"
            )
        acc = self.datapath.accumulator_bits
        if acc and acc < self.adc.bits:
            raise ConfigError(
                f"datapath.accumulator_bits must be 0 (full precision) or at least adc.bits "
                f"({self.adc.bits}), not {acc!r}"
            )
        if self.datapath.adc_timeout_cycles < self.adc.latency_cycles:
            raise ConfigError(
                f"datapath.adc_timeout_cycles must be at least adc.latency_cycles "
                f"({self.adc.latency_cycles}), not {self.datapath.adc_timeout_cycles!r}"
            )
        self._check_register_maps()

    def _check_register_maps(self) -> None:
        """Build the tile's and the program-verify controller's register maps, which the RTL
        is generated from: a configuration that validates can always be generated. A map
        that does not fit is a ConfigError naming the fields that size it."""
        from neurophase.regmap import RegmapError, tile_register_map

        try:
            tile_register_map(self)
        except RegmapError as exc:
            raise ConfigError(
                f"tile.cols {self.tile.cols} cannot be built: the tile "
                f"register map (four per-column arrays of one word per column) does not fit: {exc}"
            ) from None
        from neurophase.models.devices import device_model_from_config
        from neurophase.models.program_verify import physical_columns, program_verify_register_map

        device_model_from_config(self)  # bad device overrides are their own error
        try:
            program_verify_register_map(self)
        except (RegmapError, ValueError) as exc:
            raise ConfigError(
                f"tile.cols {self.tile.cols} x weights.slices {self.weights.slices} x "
                f"weights.devices_per_polarity {self.weights.devices_per_polarity} x 2 polarities = "
                f"{physical_columns(self)} devices per row, with adc.bits {self.adc.bits}, "
                f"analog.pv_tolerance_us {self.analog.pv_tolerance_us:g} and analog.pv_max_iterations "
                f"{self.analog.pv_max_iterations}, cannot be built: the program-verify register map does not "
                f"fit: {exc}"
            ) from None

    # -- derived quantities -------------------------------------------------
    @property
    def full_accumulator_bits(self) -> int:
        """Signed width that holds any shift-and-add result without saturation: the one
        derivation of the accumulator width (the shift-and-add model and RTL, the drift
        gain and the batch-norm all size from it). Pulse-width inputs arrive in one array
        read, so only bit-serial inputs add ``input.bits`` to the width."""
        return full_precision_bits(
            self.adc.bits, self.input.planes, self.weights.slices, self.weights.significance_factor
        )

    @property
    def accumulator_bits(self) -> int:
        """Width of the shift-and-add result actually built."""
        return self.datapath.accumulator_bits or self.full_accumulator_bits

    @property
    def psum_bits(self) -> int:
        """Width of the chip's partial-sum adder and batch-norm unit: the accumulator plus
        ``ceil(log2(sequencer.max_row_blocks))`` growth bits."""
        return self.accumulator_bits + self.sequencer.psum_growth_bits

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> "ChipConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a configuration must be a table, not {data!r}")
        allowed = [*_SECTIONS, "clock_mhz"]
        kwargs = {}
        for key, value in data.items():
            if key not in allowed:
                raise ConfigError(f"unknown section or field {key!r}; allowed: {', '.join(allowed)}")
            kwargs[key] = _SECTIONS[key].from_dict(value) if key in _SECTIONS else value
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ChipConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {str(path)!r}: {exc.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls.from_dict(data)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The configuration as TOML text that :meth:`from_toml` reads back unchanged."""
        lines = [f"clock_mhz = {self.clock_mhz!r}", ""]
        for name in _SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            overrides = section.pop("overrides", None)
            lines.append(f"[{name}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in section.items()]
            lines.append("")
            if overrides:
                lines.append(f"[{name}.overrides]")
                lines += [f"{key} = {_toml_value(value)}" for key, value in overrides.items()]
                lines.append("")
        return "\n".join(lines)

    def replace(self, **sections) -> "ChipConfig":
        """A copy with whole sections or section fields replaced: ``cfg.replace(adc={"bits": 6})``."""
        kwargs = {}
        for name, value in sections.items():
            if name in _SECTIONS and isinstance(value, dict):
                value = dataclasses.replace(getattr(self, name), **value)
            kwargs[name] = value
        return dataclasses.replace(self, **kwargs)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def full_precision_bits(adc_bits: int, planes: int, slices: int, factor: int) -> int:
    """Signed width holding the largest |sum_s F**s sum_b 2**b c| over ``planes`` bit-planes
    ``b`` (the input bits when bit-serial, 1 for pulse-width inputs) with |c| <= 2**(adc_bits-1)."""
    bound = (2 ** (adc_bits - 1)) * (2**planes - 1) * sum(factor**s for s in range(slices))
    return bound.bit_length() + 1


def load_config(path: str | Path | None = None) -> ChipConfig:
    """The configuration in ``path``, or the default chip when ``path`` is None."""
    return ChipConfig() if path is None else ChipConfig.from_toml(path)
