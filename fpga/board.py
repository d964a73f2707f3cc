"""The FPGA top on a board: clock generation, reset, pins."""

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io

from neurophase.config import ChipConfig
from neurophase.fpga.platforms import Board
from neurophase.fpga.top import FpgaTop, uart_divisor

__all__ = ["BoardTop"]


class BoardTop(Elaboratable):
    """:class:`FpgaTop` (or the FPGA chip top) placed on ``board``: the ``sync`` clock at ``cfg.clock_mhz`` from the
    board's oscillator, the UART on the board's USB-serial pins, the status on LEDs 0-3.

    Parameters
    ----------
    cfg : ChipConfig
        The FPGA configuration.
    board : Board
        From :func:`neurophase.fpga.platforms.get_board`.
    chip : bool
        Place the FPGA chip top (:class:`~neurophase.fpga.chip_top.FpgaChipTop`) instead of
        the one-tile top; LED 3 then shows the sequencer running.
    """

    def __init__(self, cfg: ChipConfig, board: Board, *, chip: bool = False):
        self.cfg = cfg
        self.board = board
        if chip:
            from neurophase.fpga.chip_top import FpgaChipTop

            self.top = FpgaChipTop(cfg, uart_divisor(cfg))
        else:
            self.top = FpgaTop(cfg, uart_divisor(cfg))

    def elaborate(self, platform):
        m = Module()
        self.board.clock(m, platform, self.cfg.clock_mhz)
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-", "rts": "-", "dtr": "-"})
        m.submodules.uart_rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.uart_rx.eq(rx.i), tx.o.eq(top.uart_tx)]
        for i in range(len(top.status)):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(top.status[i])
        return m
