"""Sweeps: the network study over a grid of seeds x times x device presets x compensations x
devices per polarity, one task per grid point, serially or on a Dask cluster.

Every point draws its noise from its own seeds, exactly as :func:`network_study` does:
the chip instance is programmed from ``seed`` (:func:`neurophase.network.golden.tile_seed`),
the GDC reference ``r0`` from ``(seed, 1)`` and the compensation and test reads at time t
from ``(seed, 3, time index, compensation index)``. Results therefore do not depend on
which worker runs a point, in which order, or whether it ran before (the cache).

A worker keeps the chips it built (keyed by preset, devices per polarity and seed) for the
next points of the same chip. Finished points are stored one small JSON file each in a
cache folder, keyed by a hash of the model, the data, the configuration and the point, so
an interrupted sweep reruns only what is missing.

This module is numpy only; Dask is imported when a cluster is used.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from neurophase.atomic import save_figure_atomic, write_bytes_atomic, write_text_atomic
from neurophase.config import DEVICE_PRESETS, ChipConfig
from neurophase.network.compensation import CALIBRATION_IMAGES, BatchNormCalibration, GdcFirmware
from neurophase.network.data import Dataset
from neurophase.network.golden import NetworkChip, Registers
from neurophase.network.graph import Network
from neurophase.network.mapping import MappedNetwork, map_network
from neurophase.network.study import _rng, time_label

__all__ = ["SWEEP_COMPENSATIONS", "TIME_UNITS", "SweepGrid", "SweepPoint", "SweepSetup", "SweepResult",
           "PointCache", "parse_seeds", "parse_times", "parse_names", "parse_devices_per_polarity",
           "make_setup", "run_point", "run_sweep", "local_cluster", "slow_malloc_workers", "write_table", "plot_sweep", "TABLE_COLUMNS",
           "parquet_writer_missing"]

#: Images of the calibration set that travel to the workers (activation ranges use up to 512).
RANGE_IMAGES = 512
#: Version of the cache entries and of the point arithmetic; bump when results would change.
CACHE_FORMAT = 1
#: Chips a worker keeps between points.
CHIPS_PER_WORKER = 4
#: Suffixes accepted by ``--times``, in seconds (a month is 30 days, a year 365 days).
TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "mo": 30 * 86400.0,
              "y": 365 * 86400.0}
DEVICES_PER_POLARITY = range(1, 5)
#: Columns of the result table, in order.
TABLE_COLUMNS = ("preset", "devices_per_polarity", "seed", "time_s", "time", "compensation", "images", "correct",
                 "accuracy")


# -- compensation kinds ----------------------------------------------------------------
def _gdc(chip: "_ChipState", t_s: float, rng: np.random.Generator) -> None:
    chip.gdc.apply(t_s, rng)


def _batch_norm(chip: "_ChipState", t_s: float, rng: np.random.Generator) -> None:
    chip.batch_norm.apply(t_s, rng)


#: Compensation kinds: name -> firmware steps run in order at time t, starting from the
#: compiled registers. A new kind is one entry here; its position (never reorder) is the
#: compensation index of its random stream, the same as in the network study's columns.
SWEEP_COMPENSATIONS: dict[str, tuple[Callable, ...]] = {
    "none": (),
    "gdc": (_gdc,),
    "gdc+bn": (_gdc, _batch_norm),
}


# -- the grid --------------------------------------------------------------------------
def _items(text: str, option: str) -> list[str]:
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"{option}: empty list {text!r}; give one value or several separated by commas")
    if not all(items):
        raise ValueError(f"{option}: empty entry in {text!r}; separate values by single commas")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"{option}: {', '.join(repeated)} listed more than once in {text!r}")
    return items


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"3"`` -> seeds 1, 2, 3; ``"4,7"`` -> seeds 4 and 7 (non-negative integers)."""
    items = _items(text, "--seeds")
    values = []
    for item in items:
        if not re.fullmatch(r"\d+", item):
            raise ValueError(f"--seeds: {item!r} is not a non-negative integer; give a count N (seeds 1..N) "
                             f"or a list of seeds such as 1,2,3")
        values.append(int(item))
    if len(values) == 1 and "," not in str(text):
        if values[0] < 1:
            raise ValueError("--seeds: a count must be at least 1, not 0; give N >= 1 (seeds 1..N) or a list such as 0,1")
        return tuple(range(1, values[0] + 1))
    return tuple(values)


def parse_time(item: str) -> float:
    """One time since programming: seconds, or a number with a suffix of :data:`TIME_UNITS`."""
    match = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf(?:inity)?)\s*([a-z]*)",
                         item.strip(), re.IGNORECASE)
    allowed = ", ".join(TIME_UNITS)
    if not match or match.group(2).lower() not in ("", *TIME_UNITS):
        raise ValueError(f"--times: {item!r} is not a time; give seconds (3600) or a number with a suffix "
                         f"({allowed}: 1h, 1d, 1mo, 1y)")
    value = float(match.group(1)) * TIME_UNITS.get(match.group(2).lower(), 1.0)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--times: {item!r} is not allowed; times since programming must be finite and >= 0 s")
    return value


def parse_times(text: str) -> tuple[float, ...]:
    """Comma-separated times since programming (``"1,3600,1d,1mo,1y"``), seconds."""
    values = tuple(parse_time(item) for item in _items(text, "--times"))
    if len(set(values)) != len(values):
        raise ValueError(f"--times: {text!r} lists the same time more than once")
    return values


def parse_names(text: str, option: str, allowed) -> tuple[str, ...]:
    """Comma-separated names, each one of ``allowed``."""
    items = tuple(_items(text, option))
    for item in items:
        if item not in allowed:
            raise ValueError(f"{option}: unknown value {item!r}; allowed: {', '.join(allowed)}")
    return items


def parse_devices_per_polarity(text: str) -> tuple[int, ...]:
    """Comma-separated devices per polarity, each 1..4."""
    values = []
    for item in _items(text, "--devices-per-polarity"):
        if not re.fullmatch(r"[-+]?\d+", item) or int(item) not in DEVICES_PER_POLARITY:
            raise ValueError(f"--devices-per-polarity: {item!r} is not allowed; give integers 1..4")
        values.append(int(item))
    return tuple(values)


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: one chip instance, one time, one compensation.

    Parameters
    ----------
    preset : str
        Device preset.
    devices_per_polarity : int
    seed : int
        Chip instance.
    time_index : int
        Position of the time in the grid's times (part of the point's random stream).
    time_s : float
        Time since programming, s.
    compensation : str
        One of :data:`SWEEP_COMPENSATIONS`.
    """

    preset: str
    devices_per_polarity: int
    seed: int
    time_index: int
    time_s: float
    compensation: str

    @property
    def chip_key(self) -> tuple:
        return self.preset, self.devices_per_polarity, self.seed

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SweepGrid:
    """Seeds x times x presets x compensations x devices per polarity; checked on creation.

    Raises
    ------
    ValueError
        Naming the option, the value and what is allowed.
    """

    seeds: tuple
    times: tuple
    presets: tuple
    compensations: tuple
    devices_per_polarity: tuple

    def __post_init__(self):
        for option, values in (("--seeds", self.seeds), ("--times", self.times), ("--presets", self.presets),
                               ("--compensations", self.compensations),
                               ("--devices-per-polarity", self.devices_per_polarity)):
            if not len(values):
                raise ValueError(f"{option}: empty list; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{option}: {list(values)} lists a value more than once")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"--seeds: {seed!r} is not allowed; seeds are non-negative integers")
        for t_s in self.times:
            if not isinstance(t_s, (int, float)) or not math.isfinite(t_s) or t_s < 0:
                raise ValueError(f"--times: {t_s!r} is not allowed; times since programming must be finite and >= 0 s")
        for option, values, allowed in (("--presets", self.presets, DEVICE_PRESETS),
                                        ("--compensations", self.compensations, tuple(SWEEP_COMPENSATIONS))):
            for value in values:
                if value not in allowed:
                    raise ValueError(f"{option}: unknown value {value!r}; allowed: {', '.join(allowed)}")
        for value in self.devices_per_polarity:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value not in DEVICES_PER_POLARITY:
                raise ValueError(f"--devices-per-polarity: {value!r} is not allowed; give integers 1..4")

    def points(self) -> list[SweepPoint]:
        """Every point, chip by chip (preset, devices per polarity, seed), then time, then compensation."""
        return [SweepPoint(preset, int(p), int(seed), i, float(t_s), comp)
                for preset in self.presets for p in self.devices_per_polarity for seed in self.seeds
                for i, t_s in enumerate(self.times) for comp in self.compensations]

    def configurations(self, cfg: ChipConfig) -> dict:
        """The chip configuration of every (preset, devices per polarity)."""
        return {(preset, p): _point_config(cfg, preset, p) for preset in self.presets
                for p in self.devices_per_polarity}


def _point_config(cfg: ChipConfig, preset: str, devices_per_polarity: int) -> ChipConfig:
    return cfg.replace(device={"preset": preset}, weights={"devices_per_polarity": int(devices_per_polarity)})


# -- what the workers need -------------------------------------------------------------
def _digest(*parts) -> str:
    sha = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes() \
            if isinstance(part, np.ndarray) else str(part).encode("utf-8")
        sha.update(len(data).to_bytes(8, "little"))
        sha.update(data)
    return sha.hexdigest()


@dataclass(frozen=True)
class SweepSetup:
    """The float network, the base configuration and the data every point uses.

    Parameters
    ----------
    network : Network
    cfg : ChipConfig
        Base configuration; each point replaces the device preset and devices per polarity.
    test : Dataset
        Images whose accuracy is measured.
    calibration : Dataset
        Activation-range images (up to 512); the first ``CALIBRATION_IMAGES`` are the
        batch-norm calibration images.
    fingerprint : str
        Hash of the model file, the data, the configuration and the cache format.
    """

    network: Network
    cfg: ChipConfig
    test: Dataset
    calibration: Dataset
    fingerprint: str = field(compare=False)


def make_setup(network: Network, model_bytes: bytes, cfg: ChipConfig, test: Dataset,
               calibration: Dataset) -> SweepSetup:
    """A :class:`SweepSetup` whose fingerprint hashes the model file's bytes, the data and ``cfg``."""
    calibration = calibration.head(RANGE_IMAGES)
    fingerprint = _digest(CACHE_FORMAT, hashlib.sha256(model_bytes).hexdigest(), test.inputs, test.labels,
                          calibration.inputs, calibration.labels, cfg.to_toml())
    return SweepSetup(network, cfg, test, calibration, fingerprint)


# -- one point -------------------------------------------------------------------------
class _ChipState:
    """A programmed chip with its compensation firmware, built once per worker and reused."""

    def __init__(self, mapped: MappedNetwork, seed: int, calibration: Dataset):
        self.chip = NetworkChip(mapped, seed)
        self.seed = seed
        self.calibration_images = calibration.head(CALIBRATION_IMAGES).inputs
        self.lock = threading.Lock()
        self._gdc = self._bn = None

    @property
    def gdc(self) -> GdcFirmware:
        if self._gdc is None:
            self._gdc = GdcFirmware(self.chip, _rng(self.seed, 1))
        return self._gdc

    @property
    def batch_norm(self) -> BatchNormCalibration:
        if self._bn is None:
            self._bn = BatchNormCalibration(self.chip, self.calibration_images)
        return self._bn


_CHIPS: OrderedDict = OrderedDict()
_MAPPED: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _remember(store: OrderedDict, key, build):
    with _CACHE_LOCK:
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = build()
    with _CACHE_LOCK:
        value = store.setdefault(key, value)
        while len(store) > CHIPS_PER_WORKER:
            store.popitem(last=False)
    return value


def _chip_state(setup: SweepSetup, point: SweepPoint) -> _ChipState:
    mapped = _remember(_MAPPED, (setup.fingerprint, point.preset, point.devices_per_polarity), lambda: map_network(
        setup.network, _point_config(setup.cfg, point.preset, point.devices_per_polarity), setup.calibration.inputs))
    return _remember(_CHIPS, (setup.fingerprint, *point.chip_key),
                     lambda: _ChipState(mapped, point.seed, setup.calibration))


def run_point(setup: SweepSetup, point: SweepPoint) -> dict:
    """Test accuracy of one grid point: the chip of ``point.chip_key``, its compensation run
    at ``point.time_s`` from the compiled registers, the test images read at that time.

    Returns
    -------
    dict with the :data:`TABLE_COLUMNS`.
    """
    from threadpoolctl import threadpool_limits

    steps = SWEEP_COMPENSATIONS[point.compensation]
    rng = _rng(point.seed, 3, point.time_index, list(SWEEP_COMPENSATIONS).index(point.compensation))
    with threadpool_limits(1):
        state = _chip_state(setup, point)
        with state.lock:
            state.chip.registers = Registers.compiled(state.chip.mapped)
            for step in steps:
                step(state, point.time_s, rng)
            predicted = state.chip.predict(setup.test.inputs, point.time_s, rng)
    correct = int(np.sum(predicted == setup.test.labels))
    return {"preset": point.preset, "devices_per_polarity": point.devices_per_polarity, "seed": point.seed,
            "time_s": point.time_s, "time": time_label(point.time_s), "compensation": point.compensation,
            "images": len(setup.test), "correct": correct, "accuracy": correct / len(setup.test)}


# -- the cache -------------------------------------------------------------------------
class PointCache:
    """Finished points, one JSON file each in ``folder``, named by a hash of the setup's
    fingerprint and the point. Written atomically; an unreadable entry is reported through
    ``on_warning`` and treated as missing (its point is recomputed and the entry replaced).

    Parameters
    ----------
    folder : path
    fingerprint : str
        :attr:`SweepSetup.fingerprint`.
    on_warning : callable, optional
        Called with a message per corrupt entry (default: :func:`warnings.warn`).
    """

    def __init__(self, folder, fingerprint: str, on_warning: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.on_warning = on_warning or (lambda message: warnings.warn(message, stacklevel=3))

    def path(self, point: SweepPoint) -> Path:
        key = _digest(self.fingerprint, json.dumps(point.as_dict(), sort_keys=True))
        return self.folder / f"{key[:32]}.json"

    def load(self, point: SweepPoint) -> dict | None:
        """The cached row of ``point``, or None when missing or corrupt."""
        path = self.path(point)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.on_warning(f"sweep cache: cannot read {path} ({exc.strerror}); recomputing the point")
            return None
        try:
            entry = json.loads(text)
            row = entry["row"]
            valid = (entry["format"] == CACHE_FORMAT and entry["fingerprint"] == self.fingerprint
                     and entry["point"] == point.as_dict() and set(row) == set(TABLE_COLUMNS)
                     and isinstance(row["correct"], int) and 0 <= row["correct"] <= row["images"])
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            self.on_warning(f"sweep cache: corrupt entry {path} ignored; recomputing the point")
            return None
        return row

    def store(self, point: SweepPoint, row: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = {"format": CACHE_FORMAT, "fingerprint": self.fingerprint, "point": point.as_dict(), "row": row}
        write_text_atomic(self.path(point), json.dumps(entry, indent=2, sort_keys=True) + "\n")


# -- running ---------------------------------------------------------------------------
@dataclass
class SweepResult:
    """Rows of every point in grid order, how many came from the cache, the compute time."""

    rows: list
    reused: int
    computed: int
    compute_s: float

    @property
    def points_per_s(self) -> float:
        return self.computed / self.compute_s if self.compute_s > 0 else float("nan")


def run_sweep(setup: SweepSetup, grid: SweepGrid, client=None, cache: PointCache | None = None,
              on_point: Callable[[dict], None] | None = None) -> SweepResult:
    """Every point of ``grid``: cached ones read back, the others computed in-process
    (``client`` None) or as one Dask task each on ``client``'s cluster.

    Parameters
    ----------
    setup : SweepSetup
    grid : SweepGrid
    client : distributed.Client, optional
    cache : PointCache, optional
        Finished points are read from and stored into it as they complete.
    on_point : callable, optional
        Called with each row as it completes (cached rows first).
    """
    points = grid.points()
    rows: list = [None] * len(points)
    for i, point in enumerate(points):
        rows[i] = cache.load(point) if cache else None
    reused = sum(row is not None for row in rows)
    for row in rows:
        if row is not None and on_point:
            on_point(row)
    todo = [i for i, row in enumerate(rows) if row is None]
    start = time.perf_counter()

    def finish(i: int, row: dict) -> None:
        rows[i] = row
        if cache:
            cache.store(points[i], row)
        if on_point:
            on_point(row)

    if client is None:
        for i in todo:
            finish(i, run_point(setup, points[i]))
    else:
        _run_on_cluster(client, setup, points, todo, finish)
    return SweepResult(rows, reused, len(todo), time.perf_counter() - start)


@contextlib.contextmanager
def local_cluster(workers: int):
    """A Dask client of a local cluster of ``workers`` processes with one thread each (closed on exit).

    The workers start without Dask's default ``MALLOC_TRIM_THRESHOLD_``: setting it switches
    off glibc's adaptive mmap threshold, and the chip model's many large temporary arrays
    then cost about three times the CPU.
    """
    import logging

    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), _sigint_ignored():
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _sigint_ignored():
    """Ctrl-C ignored while worker processes start, so that they inherit the ignoring: Ctrl-C then
    stops only this process, which closes them."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _malloc_trim_threshold() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def slow_malloc_workers(client) -> list:
    """Addresses of ``client``'s workers that run with ``MALLOC_TRIM_THRESHOLD_`` set (see :func:`local_cluster`)."""
    return sorted(address for address, value in client.run(_malloc_trim_threshold).items() if value is not None)


def _run_on_cluster(client, setup: SweepSetup, points: list, todo: list, finish) -> None:
    """One task per point; the points of one chip prefer one worker (they reuse its chip)."""
    from distributed import as_completed

    if not todo:
        return
    setup_future = client.scatter(setup, broadcast=True, hash=False)
    workers = sorted(client.scheduler_info()["workers"])
    chips = list(dict.fromkeys(points[i].chip_key for i in todo))
    home = {chip: [workers[n % len(workers)]] for n, chip in enumerate(chips)} \
        if workers and len(chips) >= len(workers) else {}
    futures = {}
    for i in todo:
        future = client.submit(run_point, setup_future, points[i], pure=False, workers=home.get(points[i].chip_key),
                               allow_other_workers=True)
        futures[future] = i
    try:
        for future in as_completed(futures):
            finish(futures[future], future.result())
    finally:
        client.cancel(list(futures))


# -- the table and the plot ------------------------------------------------------------
def parquet_writer_missing() -> str | None:
    """None when Parquet can be written, else the name of the missing package."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return "pyarrow"
    return None


def write_table(rows: list, path) -> None:
    """The rows as CSV, or as Parquet when ``path`` ends in ``.parquet``; written atomically."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        missing = parquet_writer_missing()
        if missing:
            raise ValueError(f"--out {path}: writing Parquet needs the {missing} package "
                             f"(pip install 'neurophase[parquet]'); or write CSV with a .csv name")
        import pyarrow as pa
        import pyarrow.parquet as pq

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([{c: row[c] for c in TABLE_COLUMNS} for row in rows]), buffer)
        write_bytes_atomic(path, buffer.getvalue())
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row[c] for c in TABLE_COLUMNS})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text.getvalue())


def summarise(rows: list) -> list[dict]:
    """Mean and std over seeds of every (preset, devices per polarity, time, compensation)."""
    groups: dict = {}
    for row in rows:
        key = (row["preset"], row["devices_per_polarity"], row["time_s"], row["compensation"])
        groups.setdefault(key, []).append(row["accuracy"])
    return [{"preset": k[0], "devices_per_polarity": k[1], "time_s": k[2], "time": time_label(k[2]),
             "compensation": k[3], "mean": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v)}
            for k, v in groups.items()]


def plot_sweep(rows: list, path) -> None:
    """Accuracy versus time per compensation (mean +- std over seeds), one panel per preset
    and devices per polarity, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows)
    presets = list(dict.fromkeys(s["preset"] for s in summary))
    devices = list(dict.fromkeys(s["devices_per_polarity"] for s in summary))
    fig, axes = plt.subplots(len(presets), len(devices), figsize=(5.2 * len(devices), 3.8 * len(presets)),
                             squeeze=False, sharey=True)
    panels = [(preset, p) for preset in presets for p in devices]
    times = sorted({s["time_s"] for s in summary})
    for ax, (preset, p) in zip(axes.flat, panels):
        cells = [s for s in summary if (s["preset"], s["devices_per_polarity"]) == (preset, p)]
        for comp in dict.fromkeys(s["compensation"] for s in cells):
            line = sorted((s for s in cells if s["compensation"] == comp), key=lambda s: s["time_s"])
            ax.errorbar([s["time_s"] for s in line], [100 * s["mean"] for s in line],
                        yerr=[100 * s["std"] for s in line], marker="o", capsize=3, label=comp)
        if min(times) <= 0:
            ax.set_xscale("symlog", linthresh=1.0)
        else:
            ax.set_xscale("log")
        ax.set_xticks(times, [time_label(t) for t in times], rotation=30, fontsize=7)
        ax.set_title(f"{preset}, {p} device{'s' if p > 1 else ''} per polarity", fontsize=9)
        ax.set_xlabel("time since programming")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower left", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    seeds = max(s["seeds"] for s in summary)
    fig.suptitle(f"network sweep: mean ± std over {seeds} seed{'s' if seeds > 1 else ''}, "
                 f"{rows[0]['images']} images", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
