"""Programmable tile: the inference datapath and the program-verify controller behind one
CSR bus, with the ADC, pulse and verify-read ports at the tile boundary."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.models.program_verify import program_verify_register_map
from neurophase.regmap import tile_register_map
from neurophase.rtl.command_guard import CommandGuard
from neurophase.rtl.program_verify import ProgramVerify, program_verify_layouts
from neurophase.rtl.tile import Tile
from neurophase.rtl.wishbone import WishboneSignature
from neurophase.rtl.wishbone_decoder import WishboneDecoder

__all__ = ["ProgrammableTile", "tile_windows"]


def tile_windows(cfg: ChipConfig) -> list[tuple[str, int, int]]:
    """``(name, base byte address, word-address width)`` of the two register maps on the
    programmable tile's bus: the datapath map at 0, the program-verify map above it."""
    tile_width = tile_register_map(cfg).addr_width
    pv_width = program_verify_register_map(cfg).addr_width
    span = max(tile_width, pv_width)
    return [("tile", 0, tile_width), ("program_verify", 4 << span, pv_width)]


class ProgrammableTile(wiring.Component):
    """One crossbar tile's digital periphery as it sits on the chip: the inference
    datapath (:class:`~neurophase.rtl.tile.Tile`) and the program-verify controller
    (:class:`~neurophase.rtl.program_verify.ProgramVerify`) share the crossbar and one
    Wishbone CSR bus.

    The bus is decoded into the windows of :func:`tile_windows` (the datapath's map at
    0x0, the controller's above it); an address outside both answers ``err``. Both engines
    drive the array, so a write of ``CTRL.start`` while the controller is busy, or of
    ``PV_CTRL.start`` while an MVM runs, is refused with ``err`` and never starts the
    second engine.

    Parameters
    ----------
    cfg : ChipConfig
        Sizes both engines and their register maps.

    Members
    -------
    bus : In(WishboneSignature(tile_windows span + 1))
        CSR bus (Wishbone classic slave).
    adc : Out(AdcPortSignature)
        MVM conversions (see :class:`~neurophase.rtl.adc_interface.AdcInterface`).
    o_stream : Out(stream.Signature(column_values_layout(activation_bits, lanes)))
        MVM results.
    pulse : Out(stream.Signature(pulse layout))
        Program-verify pulse commands (row, column mask, polarity, amplitude, width).
    read_req : Out(stream.Signature(request layout))
        Program-verify verify-read requests (row).
    read_resp : In(stream.Signature(response layout))
        Codes of one verify read, one per physical column.
    irq : Out(1)
        Either engine's interrupt.
    """

    def __init__(self, cfg: ChipConfig):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        self.cfg = cfg
        self.windows = tile_windows(cfg)
        self.addr_width = max(width for _, _, width in self.windows) + 1
        tile = Tile(cfg)
        tile._MustUse__silence = True
        pulse, request, response = program_verify_layouts(cfg)
        super().__init__({
            "bus": In(WishboneSignature(self.addr_width)),
            "adc": Out(tile.adc.signature),
            "o_stream": Out(tile.o_stream.signature),
            "pulse": Out(stream.Signature(pulse)),
            "read_req": Out(stream.Signature(request)),
            "read_resp": In(stream.Signature(response)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tile = tile = Tile(self.cfg)
        m.submodules.program_verify = pv = ProgramVerify(self.cfg)
        m.submodules.decoder = decoder = WishboneDecoder(self.addr_width, self.windows)
        m.submodules.mvm_guard = mvm_guard = _start_guard(tile.regmap, "CTRL", tile.bus.signature.addr_width)
        m.submodules.pv_guard = pv_guard = _start_guard(pv.regmap, "PV_CTRL", pv.bus.signature.addr_width)

        wiring.connect(m, wiring.flipped(self.bus), decoder.bus)
        wiring.connect(m, decoder.tile_bus, mvm_guard.upstream)
        wiring.connect(m, mvm_guard.downstream, tile.bus)
        wiring.connect(m, decoder.program_verify_bus, pv_guard.upstream)
        wiring.connect(m, pv_guard.downstream, pv.bus)
        m.d.comb += [
            mvm_guard.block.eq(pv.busy),
            pv_guard.block.eq(tile.busy),
            self.irq.eq(tile.irq | pv.irq),
        ]

        wiring.connect(m, wiring.flipped(self.adc), tile.adc)
        wiring.connect(m, tile.o_stream, wiring.flipped(self.o_stream))
        wiring.connect(m, pv.pulse, wiring.flipped(self.pulse))
        wiring.connect(m, pv.read_req, wiring.flipped(self.read_req))
        wiring.connect(m, wiring.flipped(self.read_resp), pv.read_resp)
        return m


def _start_guard(regmap, register: str, addr_width: int) -> CommandGuard:
    start = regmap.register(register).field("start")
    return CommandGuard(addr_width, regmap.address(register) >> 2, start.offset)
