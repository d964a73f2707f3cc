"""Progress of long commands: a rich progress bar on a terminal, plain status lines otherwise.

Long jobs (programming a tile, an FPGA build, a co-simulation, a sweep) report through a
plain callable, so the library stays free of any display code: :class:`StatusReporter`
turns those calls into a live bar on a terminal, or into a status line on every new stage
and at least every ``interval_s`` seconds when the output is a file or a pipe (a CI log).
:class:`LogWatcher` follows a log file another process writes (the simulator's, nextpnr's)
and reports its ``progress:`` lines, or whichever lines its ``parse`` picks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["StatusReporter", "LogWatcher", "PROGRESS_MARK", "progress_text"]

#: Marker of a progress line in a simulation log: ``... progress: 3/5 time points``.
PROGRESS_MARK = "progress: "


class StatusReporter:
    """Shows the progress of one long job on ``console`` (a rich Console, usually stderr).

    Parameters
    ----------
    label : str
        What runs ("programming rows", "fpga build").
    total : int, optional
        Steps of the job when known (a bar), else only the status and the time taken.
    console : rich.console.Console
        Where to show it.
    interval_s : float
        Without a terminal: the longest silence between two status lines.
    clock : callable
        Monotonic seconds (tests pass their own).

    Use as a context manager; :meth:`update` may be called from any thread.
    """

    def __init__(self, label: str, total: int | None = None, *, console, interval_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.console = label, total, console
        self.interval_s, self.clock = interval_s, clock
        self.done, self.status = 0, ""
        self._lock = threading.Lock()
        self._bar = None
        self._bar_counts = False
        self._task = None
        self._started = self._last_line = 0.0
        self._last_text = None

    def __enter__(self) -> "StatusReporter":
        self._started = self._last_line = self.clock()
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, \
                TimeElapsedColumn

            columns = [SpinnerColumn(), TextColumn("{task.description}")]
            self._bar_counts = bool(self.total)
            if self._bar_counts:  # else counts that arrive later go into the description
                columns += [BarColumn(), MofNCompleteColumn()]
            # two refreshes a second: the bar must not compete with the work it reports on
            self._bar = Progress(*columns, TimeElapsedColumn(), console=self.console, transient=True,
                                 refresh_per_second=2)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        else:
            self._line(force=True)
        return self

    def update(self, done: int | None = None, total: int | None = None, status: str | None = None) -> None:
        """Record progress: ``done`` of ``total`` steps and/or a new ``status`` text."""
        with self._lock:
            self.done = self.done if done is None else done
            self.total = self.total if total is None else total
            changed = status is not None and status != self.status
            self.status = self.status if status is None else status
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done, total=self.total,
                                 description=self._text(counts=not self._bar_counts))
            else:
                self._line(force=changed or (self.total is not None and self.done >= self.total))

    def __exit__(self, *exc) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
            elif exc[0] is None:
                self.console.print(f"{self.label}: finished in {self.clock() - self._started:.0f} s", markup=False)

    def _text(self, counts: bool = True) -> str:
        text = self.label + (f": {self.status}" if self.status else "")
        return text + (f" ({self.done}/{self.total})" if self.total and counts else "")

    def _line(self, force: bool) -> None:
        """Print the status now when ``force`` (a new stage, the end) and the text is new,
        else only when ``interval_s`` has passed since the last line."""
        now, text = self.clock(), self._text()
        due = now - self._last_line >= self.interval_s
        if not due and not (force and text != self._last_text):
            return
        self.console.print(f"{text}  [{now - self._started:.0f} s]", markup=False)
        self._last_line, self._last_text = now, text


def progress_text(line: str) -> str | None:
    """The text after :data:`PROGRESS_MARK` in ``line``, or None when it has none."""
    return line.split(PROGRESS_MARK, 1)[1].strip() if PROGRESS_MARK in line else None


class LogWatcher:
    """Follows ``path`` in a background thread while a context is open and passes what
    ``parse`` makes of each new line (by default the text of a progress line) to ``report``.

    Parameters
    ----------
    path : Path
        The log file (it may not exist yet; a file that shrinks is read from its start).
    report : callable
        Called with each parsed text, from the watcher's thread.
    poll_s : float
        Seconds between two looks at the file.
    parse : callable
        A line -> the text to report, or None to skip the line.
    """

    def __init__(self, path: str | Path, report: Callable[[str], None], poll_s: float = 0.5,
                 parse: Callable[[str], str | None] = progress_text):
        self.path, self.report, self.poll_s, self.parse = Path(path), report, poll_s, parse
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {self.path.name}", daemon=True)
        self._offset = 0
        self._partial = ""

    def __enter__(self) -> "LogWatcher":
        self._offset = self.path.stat().st_size if self.path.exists() else 0
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._read()

    def _read(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size < self._offset:  # the file was rewritten
            self._offset, self._partial = 0, ""
        if size == self._offset:
            return
        with open(self.path, encoding="utf-8", errors="replace") as log:
            log.seek(self._offset)
            text = self._partial + log.read(size - self._offset)
        self._offset = size
        *lines, self._partial = text.split("\n")
        for line in lines:
            text = self.parse(line)
            if text is not None:
                self.report(text)
