"""FPGA chip top: the chip (layer sequencer, memories, every tile's periphery) with one
shared crossbar emulator in place of the analog arrays, and the UART-to-CSR bridge."""


import copy
import json
from pathlib import Path

from amaranth.hdl import Array, Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neurophase.atomic import write_text_atomic
from neurophase.chip_regmap import chip_address_map
from neurophase.config import ChipConfig, ConfigError
from neurophase.fpga.crossbar_emulator import CrossbarEmulator
from neurophase.fpga.regmap import AddressWindow, FpgaAddressMap, fpga_register_map, weight_register_map
from neurophase.fpga.top import uart_divisor
from neurophase.fpga.uart_bridge import UartBridge
from neurophase.fpga.uart_rx import UartRx, check_divisor
from neurophase.fpga.uart_tx import UartTx
from neurophase.fpga.weight_memory import WeightMemory
from neurophase.models.crossbar_emulator import EmulatorParams
from neurophase.regmap_export import to_litex_csv, write_regmap_exports
from neurophase.regmap_systemrdl import to_systemrdl_space
from neurophase.rtl.chip import Chip
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.wishbone_buffer import WishboneBuffer
from neurophase.rtl.wishbone_decoder import WishboneDecoder

#: Rows per first-stage multiplexer of the row-buffer read (a power of two).
ROW_GROUP = 16

__all__ = ["FpgaChipAddressMap", "FpgaChipTop", "chip_tile_verilog", "uart_divisor"]


def chip_tile_verilog(cfg: ChipConfig, platform=None) -> str:
    """Verilog of the tile module the chip instantiates ``tile.count`` times
    (:data:`neurophase.rtl.chip.TILE_MODULE`), elaborated for ``platform`` (the board's, in
    a bitstream build: its multipliers then use the DSP blocks' own registers)."""
    from neurophase.generate import convert
    from neurophase.rtl.chip import TILE_MODULE
    from neurophase.rtl.tile import Tile

    return convert(Tile(cfg, on_chip=True), TILE_MODULE, platform)


class FpgaChipAddressMap(FpgaAddressMap):
    """The address space the UART bridge of the FPGA chip top sees.

    The chip's own address map (:func:`~neurophase.chip_regmap.chip_address_map`: chip
    registers, program, activation and batch-norm memories, ``tile0`` .. ``tile<N-1>``)
    sits unchanged at 0; then the ``fpga`` bank (emulator and link registers) and the
    ``weights`` window (every tile's conductance codes), each aligned to its size.
    :attr:`windows` lists every region (the host driver's view), :attr:`bus_windows` the
    three slaves of the top's decoder.

    Parameters
    ----------
    cfg : ChipConfig
    """

    NAME = "neurophase_fpga_chip"

    def __init__(self, cfg: ChipConfig):  # noqa: D107 -- the windows differ from the tile top's
        self.cfg = cfg
        self.chip_map = chip_address_map(cfg)
        chip_span = 4 << self.chip_map.addr_width
        windows = [AddressWindow(r.name, r.base, r.rmap) for r in self.chip_map.regions]
        bus, cursor = [("chip", 0, self.chip_map.addr_width)], chip_span
        for name, rmap in (("fpga", fpga_register_map(cfg, chip=True)),
                           ("weights", weight_register_map(cfg, cfg.tile.count))):
            base = -(-cursor // rmap.size) * rmap.size
            windows.append(AddressWindow(name, base, rmap))
            bus.append((name, base, rmap.addr_width))
            cursor = base + rmap.size
        self.windows = windows
        self.bus_windows = bus
        self.size = 1 << (cursor - 1).bit_length()

    def placed(self) -> list:
        """(map, base, name) of every window, in address order (the tiles share one map)."""
        return [(w.regmap, w.base, w.name) for w in self.windows]

    def to_csv(self) -> str:
        return to_litex_csv(self.placed(), f"Address space {self.NAME!r} (the FPGA chip top's UART bridge)")

    def to_systemrdl(self) -> str:
        """SystemRDL: one ``addrmap`` per window (every tile's named ``tile<i>``) and the root
        ``neurophase_fpga_chip`` placing them."""
        maps = []
        for w in self.windows:
            rmap = w.regmap
            if rmap.name != w.name:  # the tiles share one map: each gets its window's name
                rmap = copy.copy(rmap)
                rmap.name = w.name
            maps.append((rmap, w.base))
        return to_systemrdl_space(self.NAME, "FPGA chip top: every window the UART bridge reaches", maps)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``fpga_map.json`` (for the host), ``fpga_map.csv`` (LiteX, every tile as
        ``tile<i>``), ``fpga_map.rdl`` (SystemRDL) and the exports of the ``fpga`` and
        ``weights`` windows at their bases into ``out_dir``; returns kind -> path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "fpga-map": write_text_atomic(out_dir / "fpga_map.json", json.dumps(self.to_dict(), indent=2) + "\n"),
            "fpga-map-csv": write_text_atomic(out_dir / "fpga_map.csv", self.to_csv()),
            "fpga-map-systemrdl": write_text_atomic(out_dir / "fpga_map.rdl", self.to_systemrdl()),
        }
        for w in self.windows:
            if w.name in ("fpga", "weights"):
                for kind, path in write_regmap_exports(w.regmap, out_dir, w.base).items():
                    paths[f"{w.name}-{kind}"] = path
        return paths


def check_chip_preset(cfg: ChipConfig) -> None:
    """The FPGA chip top's requirements on the configuration.

    Raises
    ------
    ConfigError
        When the inputs are not bit-serial (the emulator reads bit-planes) or the ADC
        timeout would fire before the shared emulator answers a conversion.
    """
    params = EmulatorParams.from_config(cfg)  # checks input.mode
    needed = params.rows + params.codes_per_conversion + 9
    if cfg.datapath.adc_timeout_cycles <= needed:
        raise ConfigError(f"datapath.adc_timeout_cycles must exceed the emulator's {needed} cycles per conversion "
                          f"(tile.rows + codes + 9) on the FPGA chip top, not {cfg.datapath.adc_timeout_cycles}")


class FpgaChipTop(wiring.Component):
    """The chip and one shared crossbar emulator, reachable over one UART.

    ``uart_rx`` -> :class:`UartRx` -> :class:`UartBridge` -> :class:`WishboneDecoder` ->
    ``chip`` (the :class:`~neurophase.rtl.chip.Chip`'s own bus: every chip window),
    ``fpga`` (a :class:`CsrBank` of ``fpga_register_map(cfg, chip=True)``: emulator
    registers, link counters) and ``weights`` (a :class:`WeightMemory` holding every
    tile's conductance codes, tile after tile, behind a :class:`WishboneBuffer`). One tile converts at a time, so one
    :class:`CrossbarEmulator` answers every tile's ADC port: a conversion started on
    ``adc[t]`` makes ``t`` the owner, the emulator reads the owner's codes from the weight
    memory and the row the sequencer presents (``row_values``, one row per cycle,
    registered), and its ``done`` goes back to the owner only. The chip's tile module is
    an ``Instance`` of :data:`~neurophase.rtl.chip.TILE_MODULE`; its Verilog comes from
    :func:`chip_tile_verilog`.

    Parameters
    ----------
    cfg : ChipConfig
        The FPGA chip configuration (e.g. ``fpga/ulx3s_chip.toml``).
    divisor : int
        Clock cycles per UART bit.
    frame_timeout_bytes : int or None
        Byte times of silence that drop a partial frame; default ``cfg.fpga.bridge_timeout_bytes``.

    Members
    -------
    uart_rx : In(1); uart_tx : Out(1)
    status : Out(4)
        For LEDs: the emulator converts (bit 0), the receive line is low (1), the transmit
        line is low (2), the sequencer runs a program (3).

    Raises
    ------
    TypeError
        When ``cfg`` is not a ChipConfig.
    ConfigError
        See :func:`check_chip_preset`.
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    status: Out(4)

    def __init__(self, cfg: ChipConfig, divisor: int, *, frame_timeout_bytes: int | None = None):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        check_divisor(divisor)
        check_chip_preset(cfg)
        self.cfg = cfg
        self.divisor = divisor
        self.frame_timeout_bytes = frame_timeout_bytes or cfg.fpga.bridge_timeout_bytes
        self.address_map = FpgaChipAddressMap(cfg)
        self.emulator_params = EmulatorParams.from_config(cfg)
        super().__init__()

    @property
    def frame_timeout_cycles(self) -> int:
        return self.frame_timeout_bytes * 10 * self.divisor

    def elaborate(self, platform):
        m = Module()
        amap = self.address_map
        m.submodules.uart_rx = rx = UartRx(self.divisor)
        m.submodules.uart_tx = tx = UartTx(self.divisor)
        m.submodules.bridge = bridge = UartBridge(amap.addr_width, timeout_cycles=self.frame_timeout_cycles)
        m.submodules.decoder = decoder = WishboneDecoder(amap.addr_width, amap.bus_windows)
        m.submodules.chip = chip = Chip(self.cfg)
        m.submodules.fpga_bank = bank = CsrBank(amap.window("fpga").regmap)
        m.submodules.weights = weights = WeightMemory(amap.window("weights").regmap)
        m.submodules.emulator = emulator = CrossbarEmulator(self.emulator_params, input_latency=2)

        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]
        wiring.connect(m, rx.o_stream, bridge.i_stream)
        wiring.connect(m, bridge.o_stream, tx.i_stream)
        wiring.connect(m, bridge.bus, decoder.bus)
        wiring.connect(m, decoder.chip_bus, chip.bus)
        wiring.connect(m, decoder.fpga_bus, bank.bus)
        # the weight memory's block RAMs spread over the die: its writes cross a register
        m.submodules.weights_bus_buffer = weights_buffer = WishboneBuffer(amap.window("weights").addr_width)
        wiring.connect(m, decoder.weights_bus, weights_buffer.upstream)
        wiring.connect(m, weights_buffer.downstream, weights.bus)
        self._share_emulator(m, chip, emulator, weights)
        m.d.comb += [
            emulator.scale.eq(bank.emu_scale_factor),
            emulator.noise_bits.eq(bank.emu_noise_bits),
            emulator.seed.eq(bank.emu_noise_seed),
            emulator.reseed.eq(bank.emu_ctrl_reseed),
            bank.emu_status_busy.eq(emulator.busy),
            bank.emu_conversions_count.eq(emulator.conversions),
            bank.link_frames_count.eq(bridge.frames),
            bank.link_errors_bad_commands.eq(bridge.bad_commands),
            bank.link_errors_frame_timeouts.eq(bridge.frame_timeouts),
            bank.link_bus_errors_count.eq(bridge.bus_errors),
            bank.uart_errors_framing.eq(rx.framing_errors),
            bank.uart_errors_overruns.eq(rx.overruns),
            self.status.eq(Cat(emulator.busy, ~self.uart_rx, ~tx.tx, chip.busy)),
        ]
        return m

    def _share_emulator(self, m, chip, emulator, weights) -> None:
        """One emulator for every tile: the starting tile owns the conversion. Requests
        and answers cross a register each way (the tiles and the emulator sit far apart
        on the die)."""
        p = self.emulator_params
        port = emulator.adc
        owner = Signal(range(max(self.cfg.tile.count, 2)))
        request = Signal.like(port.slice), Signal.like(port.plane), Signal.like(port.phase)
        start, cancel = Signal(), Signal()
        codes = Signal.like(port.codes)
        for t, adc in enumerate(chip.adc):
            with m.If(adc.start):
                m.d.sync += [request[0].eq(adc.slice), request[1].eq(adc.plane), request[2].eq(adc.phase),
                             owner.eq(t)]
            done = Signal(name=f"done_{t}")  # each tile's own register: the owner decode stays out of its path
            m.d.sync += done.eq(port.done & (owner == t))
            # and a second beside the tile: done crosses the die in a cycle of its own. The codes
            # need no second register: the emulator holds them until its next conversion's
            # first code, many cycles after this done.
            done_near = Signal(name=f"done_near_{t}")
            m.d.sync += done_near.eq(done)
            m.d.comb += [adc.done.eq(done_near), adc.codes.eq(codes)]
        m.d.sync += [start.eq(_any([adc.start for adc in chip.adc])),
                     cancel.eq(_any([adc.cancel & (owner == t) for t, adc in enumerate(chip.adc)])),
                     codes.eq(port.codes)]
        m.d.comb += [port.start.eq(start), port.cancel.eq(cancel), port.slice.eq(request[0]),
                     port.plane.eq(request[1]), port.phase.eq(request[2])]
        # the owner's codes: tile t's rows follow tile t-1's in the weight memory
        m.d.comb += [weights.rd.addr.eq(owner * (p.slices * p.rows) + emulator.weight_rd.addr),
                     emulator.weight_rd.data.eq(weights.rd.data)]
        self._row_buffer_read(m, chip.row_values, emulator.input_rd)

    @staticmethod
    def _row_buffer_read(m, rows, port) -> None:
        """The row buffer in place of the INPUT memory: a multiplexer over the rows in two
        registered stages (``ROW_GROUP`` rows, then the groups), data two cycles after the address."""
        values = [Value.cast(rows[i]) for i in range(len(rows))]
        groups = [values[i:i + ROW_GROUP] for i in range(0, len(values), ROW_GROUP)]
        low, high = port.addr % ROW_GROUP, port.addr // ROW_GROUP
        picked = [Signal(values[0].shape(), name=f"row_group_{g}") for g in range(len(groups))]
        high_q = Signal(range(max(len(groups), 2)))
        m.d.sync += [sel.eq(Array(group)[low]) for sel, group in zip(picked, groups)]
        m.d.sync += [high_q.eq(high), port.data[0].eq(Array(picked)[high_q])]


def _any(signals):
    result = 0
    for s in signals:
        result = result | s
    return result
