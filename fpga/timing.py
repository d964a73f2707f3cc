"""Out-of-context timing of one block of the FPGA chip top: synthesis and place-and-route of
the block alone on the ECP5 (no pins, no PLL), its Fmax and its critical path.

A whole chip-top bitstream takes up to an hour on two shared cores; the layer sequencer
alone takes about three minutes, the chip top without its board wrapper about fifteen. The
figures track the timing work between full builds::

    python -m neurophase.fpga.timing sequencer --out build/timing/sequencer
    python -m neurophase.fpga.timing chip-top --out build/timing/chip-top --json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from neurophase.atomic import write_text_atomic
from neurophase.config import ChipConfig
from neurophase.fpga.build import SYNTH_OPTS, BuildError, find_ecp5_toolchain, parse_nextpnr_report

__all__ = ["BLOCKS", "TimingReport", "critical_path", "out_of_context_timing"]

#: The blocks this measures (the chip top is the FPGA chip top with its bridge and emulator).
BLOCKS = ("sequencer", "chip-top")
PRESET = Path(__file__).with_name("ulx3s_chip.toml")
DEVICE = ("--85k", "--package", "CABGA381", "--speed", "6")


@dataclass
class TimingReport:
    """Out-of-context timing of one block.

    Parameters
    ----------
    block : str
    fmax_mhz, target_mhz : float
    timing_met : bool
    utilisation : dict
        Used and available cells per resource (nextpnr's names).
    critical_path : list of str
        The cells and nets of the worst path, source first (carry-chain hops left out).
    seconds : dict
        CPU-bound wall time of synthesis and of place-and-route.
    """

    block: str
    fmax_mhz: float
    target_mhz: float
    timing_met: bool
    utilisation: dict
    critical_path: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def _block_verilog(block: str, cfg: ChipConfig) -> dict:
    """The block's Verilog, elaborated for the board's platform (as a bitstream build does),
    without source locations (the same netlist wherever the checkout lies)."""
    from amaranth.back import verilog

    from neurophase.fpga.platforms import get_board

    platform = get_board(cfg.fpga.board).make_platform()
    if block == "sequencer":
        from neurophase.rtl.sequencer import LayerSequencer

        return {"top.v": verilog.convert(LayerSequencer(cfg), name="top", platform=platform, emit_src=False)}
    from neurophase.fpga.chip_top import FpgaChipTop, chip_tile_verilog, uart_divisor

    return {"top.v": verilog.convert(FpgaChipTop(cfg, uart_divisor(cfg)), name="top", platform=platform,
                                     emit_src=False),
            "tile.v": chip_tile_verilog(cfg, platform)}


_HOP = re.compile(r"^Info:\s+(clk-to-q|routing|logic|setup)\s+([\d.]+)\s+([\d.]+)\s+(?:Net|Source)\s+(\S+)")


def critical_path(log: str) -> list:
    """The worst path of nextpnr's log, one ``"<total ns> <kind> <net or cell>"`` per hop
    (the hops inside a carry chain left out)."""
    start = log.find("Critical path report for clock")
    if start < 0:
        return []
    hops = []
    for line in log[start:].splitlines()[2:]:
        if not line.startswith("Info:") or line.strip() == "Info:":
            break
        match = _HOP.match(line)
        if not match:
            continue
        kind, step, total, name = match.groups()
        in_carry_chain = re.search(r"(FCO|FCI|FCI_INT|\$CIN|\$COUT)$", name) or (kind == "routing" and float(step) < 0.1)
        if not in_carry_chain:
            hops.append(f"{total:>6} ns  {kind:<8} {name}")
    return hops


def out_of_context_timing(block: str, out: str | Path, *, cfg: ChipConfig | None = None,
                          target_mhz: float | None = None, toolchain: str = "auto") -> TimingReport:
    """Synthesise and place-and-route ``block`` of the chip preset out of context.

    Parameters
    ----------
    block : str
        One of :data:`BLOCKS`.
    out : path
        Build folder (created; the Verilog, the logs and nextpnr's report go there).
    cfg : ChipConfig, optional
        Default: the FPGA chip preset.
    target_mhz : float, optional
        Default: ``cfg.clock_mhz``.

    Raises
    ------
    ValueError
        For an unknown block.
    BuildError
        When a tool fails (its log is named).
    """
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {block!r}")
    cfg = cfg or ChipConfig.from_toml(PRESET)
    target = float(target_mhz or cfg.clock_mhz)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tools = find_ecp5_toolchain(toolchain)
    files = _block_verilog(block, cfg)
    for name, text in files.items():
        write_text_atomic(out / name, text)
    seconds = {}
    started = time.monotonic()
    _run([tools.tools["YOSYS"], "-q", "-l", "yosys.log", "-p",
          f"read_verilog {' '.join(files)}; synth_ecp5 {SYNTH_OPTS} -top top -json top.json"], out, "yosys.log")
    seconds["synthesis"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    _run([tools.tools["NEXTPNR_ECP5"], "--quiet", "--out-of-context", *DEVICE, "--freq", f"{target:g}",
          "--timing-allow-fail", "--json", "top.json", "--report", "report.json", "--log", "nextpnr.log"],
         out, "nextpnr.log")
    seconds["place_and_route"] = round(time.monotonic() - started, 1)
    fmax, util = parse_nextpnr_report(json.loads((out / "report.json").read_text()), clock_net="clk")
    used = {name: v for name, v in util["nextpnr"].items() if v["used"]}
    return TimingReport(block, round(fmax, 2), target, fmax >= target, used,
                        critical_path((out / "nextpnr.log").read_text()), seconds)


def _run(command: list, cwd: Path, log: str) -> None:
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise BuildError(f"{Path(command[0]).name} failed (exit {result.returncode}); see {cwd / log}: "
                         f"{result.stdout.strip()[-400:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurophase.fpga.timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("block", choices=BLOCKS)
    parser.add_argument("--out", required=True, help="build folder")
    parser.add_argument("--config", help="chip configuration (default: the FPGA chip preset)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    cfg = ChipConfig.from_toml(args.config) if args.config else None
    report = out_of_context_timing(args.block, args.out, cfg=cfg)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        verdict = "met" if report.timing_met else "NOT met"
        print(f"{report.block}: Fmax {report.fmax_mhz:.2f} MHz against {report.target_mhz:g} MHz ({verdict}); "
              f"synthesis {report.seconds['synthesis']} s, place and route {report.seconds['place_and_route']} s")
        print("critical path:")
        print("\n".join("  " + hop for hop in report.critical_path))
    return 0 if report.timing_met else 1


if __name__ == "__main__":
    sys.exit(main())
