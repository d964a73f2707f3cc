"""FPGA top: the tile datapath, a crossbar emulator in place of the analog array, and a
UART-to-CSR bridge, all in one clock domain."""

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.fpga.crossbar_emulator import CrossbarEmulator
from neurophase.fpga.regmap import FpgaAddressMap
from neurophase.fpga.result_buffer import ResultBuffer
from neurophase.fpga.uart_bridge import UartBridge
from neurophase.fpga.uart_rx import UartRx, check_divisor
from neurophase.fpga.uart_tx import UartTx
from neurophase.fpga.weight_memory import WeightMemory
from neurophase.rtl.wishbone_buffer import WishboneBuffer
from neurophase.rtl.wishbone_decoder import WishboneDecoder
from neurophase.models.crossbar_emulator import EmulatorParams
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.tile import Tile

__all__ = ["FpgaTop", "uart_divisor"]


def uart_divisor(cfg: ChipConfig) -> int:
    """Clock cycles per UART bit on the board: ``clock_mhz * 1e6 / fpga.baud``, rounded.

    Raises
    ------
    ValueError
        When the rounding error exceeds 2 % (the link would be unreliable) or the divisor
        is below 4.
    """
    exact = cfg.clock_mhz * 1e6 / cfg.fpga.baud
    divisor = round(exact)
    if divisor < 4 or abs(divisor - exact) / exact > 0.02:
        raise ValueError(f"fpga.baud {cfg.fpga.baud} does not divide clock_mhz {cfg.clock_mhz:g} into at least 4 "
                         f"cycles per bit within 2 % (got {exact:.3f}); choose a baud such as "
                         f"{int(cfg.clock_mhz * 1e6 // 100)}")
    return divisor


class FpgaTop(wiring.Component):
    """The tile and its stand-ins, reachable over one UART.

    ``uart_rx`` -> :class:`UartRx` -> :class:`UartBridge` (UARTBone frames) ->
    :class:`WishboneBuffer` (so the bridge's state never reaches a window's write enables
    in the same cycle) -> :class:`WishboneDecoder` -> windows ``tile`` (the :class:`Tile`'s own CSR bank),
    ``fpga`` (a :class:`CsrBank` of :func:`fpga_register_map`: emulator registers, link
    counters, the INPUT memory), ``weights`` (a :class:`WeightMemory`: the conductance
    codes in block RAM, write-only) and ``results`` (a :class:`ResultBuffer` fed by the
    tile's result stream). The tile's ADC port is answered by a :class:`CrossbarEmulator`
    reading WEIGHT and INPUT. Bridge answers go back through
    :class:`UartTx` on ``uart_tx``.

    Parameters
    ----------
    cfg : ChipConfig
        The FPGA configuration (e.g. ``fpga/ulx3s.toml``).
    divisor : int
        Clock cycles per UART bit (:func:`uart_divisor` on the board,
        ``cfg.fpga.sim_clocks_per_bit`` in simulation).
    frame_timeout_bytes : int or None
        Byte times of silence that drop a partial frame; default
        ``cfg.fpga.bridge_timeout_bytes``.

    Members
    -------
    uart_rx : In(1)
        Serial line from the host (idle high).
    uart_tx : Out(1)
        Serial line to the host (idle high).
    status : Out(4)
        For LEDs: the emulator is converting (bit 0), the receive line is low (1), the
        transmit line is low (2), a result was stored since reset (3).

    Raises
    ------
    TypeError
        When ``cfg`` is not a ChipConfig.
    ValueError
        When ``divisor`` is not an integer of at least 4.
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    status: Out(4)

    def __init__(self, cfg: ChipConfig, divisor: int, *, frame_timeout_bytes: int | None = None):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        check_divisor(divisor)
        self.cfg = cfg
        self.divisor = divisor
        self.frame_timeout_bytes = frame_timeout_bytes or cfg.fpga.bridge_timeout_bytes
        self.address_map = FpgaAddressMap(cfg)
        self.emulator_params = EmulatorParams.from_config(cfg)
        super().__init__()

    @property
    def frame_timeout_cycles(self) -> int:
        """Idle cycles inside a frame after which the bridge drops it."""
        return self.frame_timeout_bytes * 10 * self.divisor

    def elaborate(self, platform):
        m = Module()
        amap = self.address_map
        m.submodules.uart_rx = rx = UartRx(self.divisor)
        m.submodules.uart_tx = tx = UartTx(self.divisor)
        m.submodules.bridge = bridge = UartBridge(amap.addr_width, timeout_cycles=self.frame_timeout_cycles)
        m.submodules.bus_buffer = bus_buffer = WishboneBuffer(amap.addr_width)
        windows = [(w.name, w.base, w.addr_width) for w in amap.windows]
        m.submodules.decoder = decoder = WishboneDecoder(amap.addr_width, windows)
        m.submodules.tile = tile = Tile(self.cfg)
        m.submodules.fpga_bank = bank = CsrBank(amap.window("fpga").regmap)
        m.submodules.results = results = ResultBuffer(amap.window("results").regmap)
        m.submodules.weights = weights = WeightMemory(amap.window("weights").regmap)
        m.submodules.emulator = emulator = CrossbarEmulator(self.emulator_params)

        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]
        wiring.connect(m, rx.o_stream, bridge.i_stream)
        wiring.connect(m, bridge.o_stream, tx.i_stream)
        wiring.connect(m, bridge.bus, bus_buffer.upstream)
        wiring.connect(m, bus_buffer.downstream, decoder.bus)
        wiring.connect(m, decoder.tile_bus, tile.bus)
        wiring.connect(m, decoder.fpga_bus, bank.bus)
        wiring.connect(m, decoder.results_bus, results.bus)
        wiring.connect(m, decoder.weights_bus, weights.bus)
        wiring.connect(m, tile.adc, emulator.adc)
        wiring.connect(m, tile.o_stream, results.i_stream)
        wiring.connect(m, emulator.weight_rd, weights.rd)
        wiring.connect(m, emulator.input_rd, bank.input_rd)

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
            bank.result_count_count.eq(results.results),
            self.status.eq(Cat(emulator.busy, ~self.uart_rx, ~tx.tx, results.results != 0)),
        ]
        return m

