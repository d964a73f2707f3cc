"""Register maps of the FPGA top: the tile's map, intact, beside the FPGA's own bank
(crossbar emulator, UART bridge counters, input memory), the write-only weight memory and
the read-only result window, each in its own window of one address space.

Descriptions use the register-map API of :mod:`neurophase.regmap` (docs/register-map.md),
so the same exports (Markdown, C header, JSON, CSV, SystemRDL) and the same CSR bank RTL
apply; each window's exports carry its base, and ``fpga_map.{json,csv,rdl}`` describe the
whole address space.
Window bases are assigned, never typed: each window is aligned to its own size, in the
order tile, fpga, weights, results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from neurophase.atomic import write_text_atomic
from neurophase.config import ChipConfig
from neurophase.models.crossbar_emulator import NOISE_MAX_BITS, SCALE_BITS, SCALE_FRAC_BITS, EmulatorParams
from neurophase.models.datapath import DatapathParams
from neurophase.regmap import Access, Array, Field, Register, RegisterMap, tile_register_map
from neurophase.regmap_export import to_dict, to_litex_csv, write_regmap_exports
from neurophase.regmap_systemrdl import to_systemrdl_space

__all__ = ["FPGA_MAGIC", "fpga_register_map", "weight_register_map", "result_register_map", "AddressWindow",
           "FpgaAddressMap"]

#: Magic word of the FPGA bank's ID register ("NPHF").
FPGA_MAGIC = 0x4E504846


def fpga_register_map(cfg: ChipConfig, *, chip: bool = False) -> RegisterMap:
    """The FPGA top's own CSR bank: emulator control, link counters and INPUT.

    With ``chip`` the bank of the FPGA chip top (:class:`neurophase.fpga.chip_top.FpgaChipTop`):
    the same registers without ``RESULT_COUNT`` and ``INPUT`` (the chip's sequencer drives
    the rows and keeps the results in its activation memory)."""
    p = EmulatorParams.from_config(cfg)
    R, RW, W1P, CONST = Access.R, Access.RW, Access.W1P, Access.CONST
    what = (f"a chip of {cfg.tile.count} tiles of {p.rows} x {p.cols}, one shared crossbar emulator" if chip
            else f"one {p.rows} x {p.cols} tile: crossbar emulator")
    rmap = RegisterMap("fpga", doc=f"FPGA emulation of {what} and host link")
    rmap.add(Register("FPGA_ID", (Field("magic", 32, CONST, FPGA_MAGIC, "magic word 0x4E504846 ('NPHF')"),),
                      doc="Identifies the NeuroPhase FPGA top"))
    rmap.add(Register("FPGA_CONFIG", (
        Field("clock_mhz", 12, CONST, min(4095, round(cfg.clock_mhz)), "system clock in MHz"),
        Field("conductance_bits", 4, CONST, p.conductance_bits, "width of each conductance code"),
        Field("scale_frac_bits", 5, CONST, SCALE_FRAC_BITS, "fractional bits of EMU_SCALE.factor"),
    ), doc="Configuration the FPGA top was built for"))
    rmap.add(Register("EMU_CTRL", (Field("reseed", access=W1P, doc="load every noise LFSR from EMU_NOISE.seed"),),
                      doc="Crossbar emulator commands"))
    rmap.add(Register("EMU_NOISE", (
        Field("bits", 4, RW, 0, f"read-noise width n: uniform in [-2**(n-1), 2**(n-1)-1], 0 off, max {NOISE_MAX_BITS}"),
        Field("seed", 16, RW, 1, "noise seed loaded by EMU_CTRL.reseed", offset=16),
    ), doc="Deterministic pseudo-random read noise"))
    rmap.add(Register("EMU_SCALE", (
        Field("factor", SCALE_BITS, RW, 1 << SCALE_FRAC_BITS,
              f"drift x ADC-range factor, unsigned Q{SCALE_BITS - SCALE_FRAC_BITS}.{SCALE_FRAC_BITS}; "
              "the host's drift step"),
    ), doc="Column-sum scale: code = sat(round((sum + noise) * factor))"))
    rmap.add(Register("EMU_STATUS", (Field("busy", access=R, doc="a conversion is in progress"),),
                      doc="Crossbar emulator status"))
    rmap.add(Register("EMU_CONVERSIONS", (Field("count", 32, R, doc="conversions answered (wrapping)"),),
                      doc="Conversion counter"))
    rmap.add(Register("LINK_FRAMES", (Field("count", 32, R, doc="UART bridge frames executed (wrapping)"),),
                      doc="Host link frame counter"))
    rmap.add(Register("LINK_ERRORS", (
        Field("bad_commands", 16, R, doc="bytes dropped where a frame had to start (saturating)"),
        Field("frame_timeouts", 16, R, doc="partial frames dropped after a stall (saturating)"),
    ), doc="Host link frame errors"))
    rmap.add(Register("LINK_BUS_ERRORS", (
        Field("count", 16, R, doc="bridge bus accesses answered with err, timed out or out of range (saturating)"),
    ), doc="Host link bus errors"))
    rmap.add(Register("UART_ERRORS", (
        Field("framing", 16, R, doc="received bytes without stop bit (saturating)"),
        Field("overruns", 16, R, doc="received bytes overwritten before the bridge took them (saturating)"),
    ), doc="UART receiver errors"))
    if chip:
        return rmap
    rmap.add(Register("RESULT_COUNT", (Field("count", 32, R, doc="MVM results stored in the result window (wrapping)"),),
                      doc="Result counter"))
    rmap.add(Array("INPUT", p.rows, p.input_bits, signed=p.input_signed, lanes=1,
                   doc=f"activation of each row, {'signed' if p.input_signed else 'unsigned'} {p.input_bits}-bit"))
    return rmap


def weight_register_map(cfg: ChipConfig, tiles: int = 1) -> RegisterMap:
    """The write-only weight window: the emulator's conductance codes (block RAM) of
    ``tiles`` tiles, tile after tile."""
    p = EmulatorParams.from_config(cfg)
    span = 4 * tiles * p.weight_words
    rmap = RegisterMap("weights", max_bytes=max(1 << 16, 1 << (span - 1).bit_length()),
                       doc="Conductance codes of the crossbar emulator (write-only)")
    first = f"(tile*{p.slices} + slice)" if tiles > 1 else "slice"
    rmap.add(Array("WEIGHT", tiles * p.weight_words, 2 * p.conductance_bits, lanes=p.cols,
                   doc=f"conductance codes of element ({first}*{p.rows} + row)*{p.cols} + column: "
                       f"G+ in bits [{p.conductance_bits - 1}:0], G- in bits "
                       f"[{2 * p.conductance_bits - 1}:{p.conductance_bits}]; write-only", access="wo"))
    return rmap


def result_register_map(cfg: ChipConfig) -> RegisterMap:
    """The read-only result window: the last MVM's activations and saturation bits."""
    dp = DatapathParams.from_config(cfg)
    cols, lanes, bits = dp.columns, dp.lanes, dp.batch_norm.out_bits
    rmap = RegisterMap("results", doc="Result of the last MVM (read-only)")
    rmap.add(Array("RESULT", cols, bits, signed=True, lanes=lanes, access="ro",
                   doc=f"activation of each column, signed {bits}-bit"))
    rmap.add(Array("RESULT_SAT", cols // lanes, lanes, lanes=1, access="ro",
                   doc="saturation bits of each column group (bit i: column group*lanes + i)"))
    return rmap


@dataclass(frozen=True)
class AddressWindow:
    """One slave window of the FPGA address space.

    Parameters
    ----------
    name : str
        ``tile``, ``fpga``, ``weights`` or ``results``.
    base : int
        Byte address of the window (aligned to its size).
    regmap : RegisterMap
        The window's description; addresses in it are relative to ``base``.
    """

    name: str
    base: int
    regmap: RegisterMap

    @property
    def addr_width(self) -> int:
        return self.regmap.addr_width


class FpgaAddressMap:
    """The address space the UART bridge sees: windows tile, fpga, weights and results.

    Parameters
    ----------
    cfg : ChipConfig

    Raises
    ------
    ValueError
        When two windows use the same register or array name.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        maps = [("tile", tile_register_map(cfg)), ("fpga", fpga_register_map(cfg)),
                ("weights", weight_register_map(cfg)), ("results", result_register_map(cfg))]
        windows, cursor, names = [], 0, {}
        for name, rmap in maps:
            base = -(-cursor // rmap.size) * rmap.size
            windows.append(AddressWindow(name, base, rmap))
            cursor = base + rmap.size
            for _, item in rmap.entries():
                if item.name in names:
                    raise ValueError(f"name {item.name!r} is used in windows {names[item.name]!r} and {name!r}")
                names[item.name] = name
        self.windows = windows
        self.size = 1 << (cursor - 1).bit_length()

    @property
    def addr_width(self) -> int:
        """Word-address width of the bridge's bus."""
        return (self.size // 4 - 1).bit_length()

    def window(self, name: str) -> AddressWindow:
        for w in self.windows:
            if w.name == name:
                return w
        raise ValueError(f"no window {name!r}; windows: {', '.join(w.name for w in self.windows)}")

    #: Name of the whole address space in the JSON, CSV and SystemRDL exports.
    NAME = "neurophase_fpga"

    def placed(self) -> list[tuple[RegisterMap, int]]:
        """(map, base) of every window, in address order."""
        return [(w.regmap, w.base) for w in self.windows]

    def to_dict(self) -> dict:
        """The whole map as plain data (what the host driver loads)."""
        return {"name": self.NAME, "size": self.size, "addr_width": self.addr_width,
                "windows": [{"name": w.name, "base": w.base, "map": to_dict(w.regmap, w.base)} for w in self.windows]}

    def to_csv(self) -> str:
        """One LiteX ``csr.csv`` of every window at its base (``RemoteClient(csr_csv=...)``)."""
        return to_litex_csv(self.placed(), f"Address space {self.NAME!r} (the FPGA top's UART bridge)")

    def to_systemrdl(self) -> str:
        """SystemRDL: one ``addrmap`` per window and the root ``neurophase_fpga`` placing them."""
        return to_systemrdl_space(self.NAME, "FPGA emulation board: every window the UART bridge reaches",
                                  self.placed())

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``fpga_map.json`` (for the host), ``fpga_map.csv`` (LiteX), ``fpga_map.rdl``
        (SystemRDL) and every window's exports at its base into ``out_dir``; returns
        kind -> path (``fpga-map``, ``fpga-map-csv``, ``fpga-map-systemrdl``, ``<window>-<kind>``)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "fpga-map": write_text_atomic(out_dir / "fpga_map.json", json.dumps(self.to_dict(), indent=2) + "\n"),
            "fpga-map-csv": write_text_atomic(out_dir / "fpga_map.csv", self.to_csv()),
            "fpga-map-systemrdl": write_text_atomic(out_dir / "fpga_map.rdl", self.to_systemrdl()),
        }
        for w in self.windows:
            for kind, path in write_regmap_exports(w.regmap, out_dir, w.base).items():
                paths[f"{w.name}-{kind}"] = path
        return paths
