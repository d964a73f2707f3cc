"""`neurophase model sweep`: a grid on a local Dask cluster of two workers equals the serial run,
an interrupted sweep resumes from its cache, bad grids are refused before any work."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from neurophase.cli import main
from neurophase.config import ChipConfig
from neurophase.network import sweep
from neurophase.network.data import digits
from neurophase.network.default_model import DEFAULT_MODEL_PATH
from neurophase.network.onnx_import import load_onnx

IMAGES = 60
GRID = sweep.SweepGrid(seeds=(1, 2), times=(3600.0, 30 * 86400.0), presets=("pcm-joshi",),
                       compensations=("gdc", "gdc+bn"), devices_per_polarity=(1,))
GRID_ARGS = ["--images", str(IMAGES), "--seeds", "2", "--times", "1h,1mo", "--presets", "pcm-joshi",
             "--compensations", "gdc,gdc+bn", "--devices-per-polarity", "1"]


@pytest.fixture(scope="module")
def setup():
    train, test = digits()
    return sweep.make_setup(load_onnx(DEFAULT_MODEL_PATH), Path(DEFAULT_MODEL_PATH).read_bytes(), ChipConfig(),
                            test.head(IMAGES), train)


@pytest.fixture(scope="module")
def serial_rows(setup):
    result = sweep.run_sweep(setup, GRID)
    assert (result.reused, result.computed) == (0, 8)
    return result.rows


@pytest.fixture(scope="module")
def client():
    with sweep.local_cluster(2) as dask_client:
        yield dask_client


def _chips_on_each_worker(client) -> list:
    counts = client.run(lambda: len(__import__("neurophase.network.sweep", fromlist=["_CHIPS"])._CHIPS))
    return sorted(counts.values())


def test_two_local_workers_equal_the_serial_run(setup, serial_rows, client):
    result = sweep.run_sweep(setup, GRID, client=client)
    assert result.rows == serial_rows
    assert (result.reused, result.computed) == (0, 8)
    assert _chips_on_each_worker(client) == [1, 1]  # one chip (seed) per worker: the work was shared
    assert [r["seed"] for r in serial_rows] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert all(0.5 < r["accuracy"] <= 1 and r["images"] == IMAGES for r in serial_rows)
    assert len({(r["seed"], r["time_s"], r["compensation"]) for r in serial_rows}) == 8


def test_sweep_points_equal_the_network_study(setup, serial_rows):
    """A point draws its noise as the network study does: same chip, same compensation, same accuracy."""
    from neurophase.network.mapping import map_network
    from neurophase.network.study import network_study

    mapped = map_network(setup.network, setup.cfg, setup.calibration.inputs)
    study = network_study(mapped, setup.test, setup.calibration, seeds=(2,), times=GRID.times, diagnose_at=None)
    by_point = {(r["time_s"], r["compensation"]): r["per_seed"][0] for r in study["rows"]}
    for row in serial_rows:
        if row["seed"] == 2:
            assert row["accuracy"] == by_point[row["time_s"], row["compensation"]]


def test_interrupted_sweep_resumes_with_only_the_missing_points(setup, serial_rows, client, tmp_path):
    cache = sweep.PointCache(tmp_path / "cache", setup.fingerprint)
    done = []

    def interrupt_after_three(row):
        done.append(row)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(setup, GRID, cache=cache, on_point=interrupt_after_three)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3
    result = sweep.run_sweep(setup, GRID, client=client, cache=cache)
    assert (result.reused, result.computed) == (3, 5)
    assert result.rows == serial_rows
    again = sweep.run_sweep(setup, GRID, client=client, cache=cache)
    assert (again.reused, again.computed) == (8, 0) and again.rows == serial_rows


def test_corrupt_cache_entries_are_recomputed_with_a_warning(setup, serial_rows, tmp_path):
    cache = sweep.PointCache(tmp_path, setup.fingerprint)
    points = GRID.points()
    for point, row in zip(points, serial_rows):
        cache.store(point, row)
    truncated, foreign = cache.path(points[1]), cache.path(points[6])
    truncated.write_text(truncated.read_text()[:40])
    entry = json.loads(foreign.read_text())
    entry["point"]["seed"] = 99
    foreign.write_text(json.dumps(entry))
    warnings = []
    result = sweep.run_sweep(setup, GRID, cache=sweep.PointCache(tmp_path, setup.fingerprint, warnings.append))
    assert (result.reused, result.computed) == (6, 2) and result.rows == serial_rows
    assert len(warnings) == 2 and all("corrupt entry" in w for w in warnings)
    assert str(truncated) in warnings[0] and str(foreign) in warnings[1]
    assert sweep.run_sweep(setup, GRID, cache=cache).reused == 8  # the entries were rewritten


def test_other_model_data_or_configuration_miss_the_cache(setup, tmp_path):
    train, test = digits()
    network = setup.network
    model = Path(DEFAULT_MODEL_PATH).read_bytes()
    same = sweep.make_setup(network, model, ChipConfig(), test.head(IMAGES), train)
    assert same.fingerprint == setup.fingerprint
    for other in (sweep.make_setup(network, model + b"\0", ChipConfig(), test.head(IMAGES), train),
                  sweep.make_setup(network, model, ChipConfig(), test.head(IMAGES - 1), train),
                  sweep.make_setup(network, model, ChipConfig().replace(adc={"bits": 7}), test.head(IMAGES), train)):
        assert other.fingerprint != setup.fingerprint
    point = GRID.points()[0]
    assert sweep.PointCache(tmp_path, "a").path(point) != sweep.PointCache(tmp_path, "b").path(point)
    assert sweep.PointCache(tmp_path, "a").path(point) != sweep.PointCache(tmp_path, "a").path(GRID.points()[1])


def _read_csv(path) -> list:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("devices_per_polarity", "seed", "images", "correct"):
            row[key] = int(row[key])
        row["time_s"], row["accuracy"] = float(row["time_s"]), float(row["accuracy"])
    return rows


def test_command_on_an_existing_scheduler_writes_table_plot_and_reuses_the_cache(serial_rows, client, tmp_path):
    out = tmp_path / "sweep" / "grid.csv"
    args = ["model", "sweep", *GRID_ARGS, "--scheduler", client.scheduler.address, "--out", str(out), "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["points"], summary["reused"], summary["computed"]) == (8, 0, 8)
    assert _read_csv(out) == serial_rows
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert len(list(out.with_suffix(".cache").glob("*.json"))) == 8
    means = {(s["time_s"], s["compensation"]): s["mean"] for s in summary["summary"]}
    for (t_s, comp), mean in means.items():
        assert mean == pytest.approx(np.mean([r["accuracy"] for r in serial_rows
                                              if (r["time_s"], r["compensation"]) == (t_s, comp)]))
    parquet = tmp_path / "sweep" / "grid.parquet"
    second = CliRunner().invoke(main, ["model", "sweep", *GRID_ARGS, "--serial", "--out", str(parquet), "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["reused"] == 8  # same cache folder: grid.cache
    import pyarrow.parquet as pq

    assert pq.read_table(parquet).to_pylist() == serial_rows


@pytest.mark.parametrize("option, value, expected", [
    ("--presets", "pcm-joshi,pcm-nope", "--presets: unknown value 'pcm-nope'; allowed: pcm-joshi, pcm-hermes"),
    ("--times", "1,-5", "--times: '-5' is not allowed; times since programming must be finite and >= 0 s"),
    ("--times", "nan", "--times: 'nan' is not allowed"),
    ("--times", "3 fortnights", "--times: '3 fortnights' is not a time"),
    ("--compensations", "gdc,magic", "--compensations: unknown value 'magic'; allowed: none, gdc, gdc+bn"),
    ("--devices-per-polarity", "1,5", "--devices-per-polarity: '5' is not allowed; give integers 1..4"),
    ("--devices-per-polarity", "0", "--devices-per-polarity: '0' is not allowed"),
    ("--seeds", "", "--seeds: empty list"),
    ("--presets", "", "--presets: empty list"),
    ("--seeds", "1,,2", "--seeds: empty entry"),
    ("--seeds", "x", "--seeds: 'x' is not a non-negative integer"),
    ("--seeds", "2,2", "--seeds: 2 listed more than once"),
    ("--times", "1h,3600", "--times: '1h,3600' lists the same time more than once"),
])
def test_bad_grids_are_refused_before_any_work(option, value, expected, monkeypatch, tmp_path):
    import neurophase.network.commands as commands

    def no_work(*_args, **_kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(commands, "load_sweep_setup", no_work)
    monkeypatch.setattr(commands, "sweep_client", no_work)
    result = CliRunner().invoke(main, ["model", "sweep", option, value, "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "s.csv").exists()


def test_conflicting_engines_and_missing_parquet_writer_are_refused_before_any_work(monkeypatch, tmp_path):
    import neurophase.network.commands as commands

    monkeypatch.setattr(commands, "load_sweep_setup", lambda *a, **k: pytest.fail("work started"))
    result = CliRunner().invoke(main, ["model", "sweep", "--serial", "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2 and "--serial and --scheduler exclude each other" in result.output
    monkeypatch.setattr(sweep, "parquet_writer_missing", lambda: "pyarrow")
    result = CliRunner().invoke(main, ["model", "sweep", "--serial", "--out", str(tmp_path / "s.parquet")])
    assert result.exit_code == 2
    assert "writing Parquet needs the pyarrow package" in " ".join(result.output.split())


def test_grid_parsing():
    assert sweep.parse_seeds("3") == (1, 2, 3) and sweep.parse_seeds("4,7") == (4, 7)
    assert sweep.parse_seeds("0,5") == (0, 5)
    assert sweep.parse_times("0,1,90s,2min,1h,1d,1w,1mo,1y,1.5e3") == (
        0.0, 1.0, 90.0, 120.0, 3600.0, 86400.0, 604800.0, 30 * 86400.0, 365 * 86400.0, 1500.0)
    assert sweep.parse_devices_per_polarity("1,2,4") == (1, 2, 4)
    with pytest.raises(ValueError, match="--times: 'inf' is not allowed"):
        sweep.parse_times("inf")
    with pytest.raises(ValueError, match="--seeds: a count must be at least 1"):
        sweep.parse_seeds("0")
    with pytest.raises(ValueError, match="--presets: empty list"):
        sweep.SweepGrid((1,), (1.0,), (), ("gdc",), (1,))
    with pytest.raises(ValueError, match=r"--times: nan is not allowed"):
        sweep.SweepGrid((1,), (math.nan,), ("pcm-joshi",), ("gdc",), (1,))
    points = sweep.SweepGrid((1, 2), (1.0, 3600.0), ("pcm-joshi", "rram"), ("none", "gdc"), (1, 2)).points()
    assert len(points) == 32 and len(set(points)) == 32
    assert points[0] == sweep.SweepPoint("pcm-joshi", 1, 1, 0, 1.0, "none")


def test_every_compensation_kind_runs_and_each_preset_and_device_count_is_its_own_chip(setup):
    grid = sweep.SweepGrid(seeds=(1,), times=(86400.0,), presets=("pcm-joshi", "pcm-hermes"),
                           compensations=tuple(sweep.SWEEP_COMPENSATIONS), devices_per_polarity=(1, 2))
    rows = sweep.run_sweep(setup, grid).rows
    assert len(rows) == 4 * len(sweep.SWEEP_COMPENSATIONS)
    by_chip = {}
    for row in rows:
        by_chip.setdefault((row["preset"], row["devices_per_polarity"]), []).append(row["correct"])
    assert len({tuple(v) for v in by_chip.values()}) > 1  # the chips differ
    for row in rows:
        if row["compensation"] == "gdc+bn":
            assert row["accuracy"] > 0.85
