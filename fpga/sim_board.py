"""The simulated board: the FPGA top's Verilog under Verilator, reachable over a TCP socket.

:func:`run_sim_board` blocks while it serves host sessions (``neurophase fpga sim``);
:class:`SimBoard` runs it in a background thread for scripts and tests::

    with SimBoard(cfg, "out/fpga/sim") as board:
        with NeuroPhaseHost.connect(board.url, cfg) as host:
            host.identify()
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from neurophase.atomic import write_text_if_changed
from neurophase.config import ChipConfig
from neurophase.cosim.runner import SimRun, SimulationError, run_cocotb
from neurophase.folder_lock import folder_lock
from neurophase.fpga.top import FpgaTop

__all__ = ["SIM_TOP", "write_sim_sources", "run_sim_board", "SimBoard"]

#: Verilog module name of the simulated FPGA top.
SIM_TOP = "fpga_top"
#: The simulated bridge's frame timeout in byte times: shorter than the board's (which must
#: ride out USB latency), so a host's few seconds of silence cover it although the idle
#: simulation runs slower than real time. The host sends whole frames at once.
SIM_FRAME_TIMEOUT_BYTES = 200


def write_sim_sources(cfg: ChipConfig, build_dir: str | Path, *, chip: bool = False) -> tuple[list, Path]:
    """Write the FPGA top's Verilog (UART at ``cfg.fpga.sim_clocks_per_bit``; with ``chip``
    the FPGA chip top and its tile module) and the host's ``fpga_map.json`` into
    ``build_dir``; the Verilog is rewritten only when it changed, so Verilator rebuilds only
    then. Returns ([verilog paths], map path)."""
    from neurophase.generate import convert

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = [build_dir / f"{SIM_TOP}.v"]
    if chip:
        from neurophase.fpga.chip_top import FpgaChipTop, chip_tile_verilog
        from neurophase.rtl.chip import TILE_MODULE

        top = FpgaChipTop(cfg, cfg.fpga.sim_clocks_per_bit, frame_timeout_bytes=SIM_FRAME_TIMEOUT_BYTES)
        sources.append(build_dir / f"{TILE_MODULE}.v")
        write_text_if_changed(sources[1], chip_tile_verilog(cfg))
    else:
        top = FpgaTop(cfg, cfg.fpga.sim_clocks_per_bit, frame_timeout_bytes=SIM_FRAME_TIMEOUT_BYTES)
    write_text_if_changed(sources[0], convert(top, SIM_TOP))
    map_path = top.address_map.write(build_dir)["fpga-map"]
    return sources, map_path


def run_sim_board(cfg: ChipConfig, build_dir: str | Path, *, port: int = 0, port_file: str | Path | None = None,
                  sessions: int = 1, accept_timeout_s: float = 120.0, stop_file: str | Path | None = None,
                  seed: int | None = None, waves: bool = False, verbose: bool = False, chip: bool = False) -> SimRun:
    """Build the simulated board and serve ``sessions`` host connections on ``port`` (0: a
    free one, written to ``port_file``), one after the other, each on a resynchronised link.

    With ``sessions`` 0 it serves until the process is interrupted or ``stop_file`` appears
    (it never gives up waiting for a host); otherwise it fails when no host connects within
    ``accept_timeout_s``. With ``chip`` it simulates the FPGA chip top
    (:class:`~neurophase.fpga.chip_top.FpgaChipTop`).

    Holds the lock of ``build_dir`` while it runs: a second simulated board (or any other
    simulation) in the same folder stops at once with
    :class:`~neurophase.folder_lock.FolderInUseError`."""
    with folder_lock(build_dir, "simulated board") as build_dir:
        sources, _ = write_sim_sources(cfg, build_dir, chip=chip)
        params = {"divisor": cfg.fpga.sim_clocks_per_bit, "port": port, "sessions": sessions,
                  "port_file": str(Path(port_file).resolve()) if port_file else "",
                  "stop_file": str(Path(stop_file).resolve()) if stop_file else "",
                  "accept_timeout_s": accept_timeout_s, "frame_timeout_bits": 10 * SIM_FRAME_TIMEOUT_BYTES}
        return run_cocotb(toplevel=SIM_TOP, verilog=sources, test_module="neurophase.cosim.benches.fpga_board",
                          build_dir=build_dir, params=params, seed=seed, waves=waves, verbose=verbose)


class SimBoard:
    """Runs :func:`run_sim_board` in a background thread for the duration of a ``with``.

    Parameters
    ----------
    cfg : ChipConfig
    build_dir : str or Path
    sessions : int
        Host connections to serve before the simulation ends (0: until the ``with`` ends or
        the process is interrupted).
    port : int
        TCP port to listen on (0: any free port).
    start_timeout_s : float
        Seconds to wait for Verilator to build and the socket to listen.
    accept_timeout_s : float
        Seconds to wait for each host when ``sessions`` is not 0.
    chip : bool
        Simulate the FPGA chip top instead of the one-tile top.

    Attributes
    ----------
    port : int
        Where the simulation listens (after entering).
    url : str
        ``socket://127.0.0.1:<port>`` for :func:`neurophase.fpga.transports.open_transport`.
    map_path : Path
        The host register map of this simulation.
    run : SimRun or None
        The finished simulation (after leaving).
    """

    def __init__(self, cfg: ChipConfig, build_dir: str | Path, *, sessions: int = 1, port: int = 0,
                 start_timeout_s: float = 600.0, accept_timeout_s: float = 120.0, waves: bool = False,
                 chip: bool = False):
        self.cfg = cfg
        self.build_dir = Path(build_dir)
        self.sessions = sessions
        self.requested_port = port
        self.start_timeout_s = start_timeout_s
        self.accept_timeout_s = accept_timeout_s
        self.waves = waves
        self.chip = chip
        self.port_file = self.build_dir / "port"
        self.stop_file = self.build_dir / "stop"
        self.map_path = self.build_dir / "fpga_map.json"
        self.port: int | None = None
        self.run: SimRun | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _target(self) -> None:
        try:
            with folder_lock(self.build_dir, "simulated board"):  # before touching its files
                self.port_file.unlink(missing_ok=True)
                self.stop_file.unlink(missing_ok=True)
                self._locked.set()
                self.run = run_sim_board(self.cfg, self.build_dir, port=self.requested_port, port_file=self.port_file,
                                         sessions=self.sessions, accept_timeout_s=self.accept_timeout_s,
                                         stop_file=self.stop_file, waves=self.waves, chip=self.chip)
        except BaseException as exc:  # reported by __enter__/__exit__ in the caller's thread
            self.error = exc

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def __enter__(self) -> "SimBoard":
        self._locked = threading.Event()
        self._thread = threading.Thread(target=self._target, name="sim-board", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not (self._locked.is_set() and self.port_file.exists()
                   and self.port_file.read_text(encoding="utf-8").strip()):
            if not self._thread.is_alive() or self.error is not None:
                self._thread.join(timeout=1)
                raise self.error or SimulationError(
                    f"the simulated board stopped before listening; see {self.build_dir / 'sim.log'}")
            if time.monotonic() > deadline:
                raise SimulationError(f"the simulated board did not listen within {self.start_timeout_s} s")
            time.sleep(0.1)
        self.port = int(self.port_file.read_text(encoding="utf-8").strip())
        return self

    def wait(self) -> None:
        """Block until the simulation has served its sessions."""
        self._thread.join()

    def stop(self) -> None:
        """Ask the simulation to end once no host is connected (for ``sessions`` 0)."""
        self.stop_file.touch()

    def __exit__(self, *exc) -> None:
        if self.sessions == 0:
            self.stop()
        self._thread.join(timeout=120)
        if self.error is not None and exc[0] is None:
            raise self.error
