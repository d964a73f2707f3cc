"""Board registry: which amaranth-boards platform, clock and programmer cable each board uses.

Adding a board takes a few lines: an entry in :data:`BOARDS` naming its platform class,
the clock generator for its family and the ``openFPGALoader -b`` name::

    BOARDS["ulx3s-45f"] = Board("ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform",
                                clock=ecp5_pll, loader_board="ulx3s")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["Board", "BOARDS", "get_board", "ecp5_pll", "pll_dividers"]


def pll_dividers(in_mhz: float, out_mhz: float) -> dict:
    """EHXPLLL dividers for ``out_mhz`` from ``in_mhz`` (VCO 400-800 MHz, PFD >= 3.125 MHz),
    the exact or closest achievable frequency; returns the dividers and ``out_mhz`` reached.

    Raises
    ------
    ValueError
        When no divider combination reaches within 1 % of ``out_mhz``.
    """
    best = None
    for clki in range(1, 129):
        pfd = in_mhz / clki
        if pfd < 3.125:
            break
        for fb in range(1, 81):
            out = pfd * fb
            if out > 400:
                break
            for op in range(1, 129):
                vco = out * op
                if 400 <= vco <= 800:
                    error = abs(out - out_mhz)
                    if best is None or error < best[0]:
                        best = (error, {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op, "out_mhz": out})
                    break
    if best is None or best[0] > 0.01 * out_mhz:
        raise ValueError(f"clock_mhz {out_mhz:g} cannot be made from the board's {in_mhz:g} MHz clock by the ECP5 PLL")
    return best[1]


def ecp5_pll(m: Module, platform, out_mhz: float) -> None:
    """Create the ``sync`` domain at ``out_mhz`` from the board's default clock with an ECP5
    EHXPLLL; the domain is held in reset until the PLL locks."""
    m.submodules.clock_buffer = clock_buffer = io.Buffer("i", platform.request(platform.default_clk, 0, dir="-"))
    clk_in = clock_buffer.i
    in_mhz = platform.default_clk_frequency / 1e6
    div = pll_dividers(in_mhz, out_mhz)
    m.domains.sync = ClockDomain("sync")
    locked = Signal()
    pll_clock = Signal()
    m.submodules.pll = Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{in_mhz:g}",
        a_FREQUENCY_PIN_CLKOP=f"{div['out_mhz']:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
        p_CLKI_DIV=div["CLKI_DIV"], p_CLKFB_DIV=div["CLKFB_DIV"], p_CLKOP_DIV=div["CLKOP_DIV"],
        p_CLKOP_CPHASE=div["CLKOP_DIV"] // 2 - 1 if div["CLKOP_DIV"] > 1 else 0, p_CLKOP_FPHASE=0,
        p_FEEDBK_PATH="CLKOP",
        i_RST=0, i_STDBY=0, i_CLKI=clk_in, i_CLKFB=pll_clock,
        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
        i_PLLWAKESYNC=0, i_ENCLKOP=0,
        o_CLKOP=pll_clock, o_LOCK=locked,
    )
    m.d.comb += ClockSignal("sync").eq(pll_clock)
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
    platform.add_clock_constraint(pll_clock, div["out_mhz"] * 1e6)


@dataclass(frozen=True)
class Board:
    """One emulation board.

    Parameters
    ----------
    name : str
        Name used by ``--board`` and ``fpga.board``.
    platform : str
        ``"module:Class"`` of the amaranth-boards platform.
    clock : callable
        ``clock(m, platform, out_mhz)`` creating the ``sync`` domain.
    loader_board : str
        ``openFPGALoader -b`` name of the board.
    toolchain : str
        Amaranth toolchain name passed to the platform.
    """

    name: str
    platform: str
    clock: Callable
    loader_board: str
    toolchain: str = "Trellis"

    def make_platform(self):
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)(toolchain=self.toolchain)


#: Every known board, by name.
BOARDS: dict[str, Board] = {
    "ulx3s-85f": Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", ecp5_pll, "ulx3s"),
    "ulx3s-45f": Board("ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform", ecp5_pll, "ulx3s"),
}


def get_board(name: str) -> Board:
    """The board called ``name``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(repr(b) for b in BOARDS)}, not {name!r}")
    return BOARDS[name]
