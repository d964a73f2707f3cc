"""The network study: accuracy of a mapped network versus time since programming, with
no compensation, global drift compensation, GDC + batch-norm recalibration and the seed chip's
other prongs, over several chip instances (seeds), against the FP32 and freshly programmed
baselines; and where the accuracy goes (per layer, per noise source).

Selective reprogramming (``reprogram_percent``): the top k % of the weights by Fisher-weighted
expected loss (:mod:`neurophase.network.reprogram`, Fisher information from up to
``FISHER_IMAGES`` calibration images) are re-programmed at each time t on the chip of each
seed, then GDC and batch-norm recalibration run; the chip's device state is restored
afterwards, so every time starts from the first programming and the other columns are
untouched (they are computed before it, with the same random streams as without it).

With a second, hardware-aware trained network (``hwa_mapped``, mapped on the same chip
configuration) the study adds the columns ``gdc+hwa`` (prong 1, hardware-aware training, on
top of GDC) and ``gdc+bn+hwa`` (prongs 1 and 2): that network programmed on the chip
instances of the same seeds, compensated by the same firmware; with both, the column
``gdc+bn+hwa+reprogram`` (all three prongs). The HWA columns' drops are measured from
*that network's own* fresh accuracy (t = 0, compiled registers), not the plain network's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from neurophase.network.compensation import (
    CALIBRATION_IMAGES, COMPENSATIONS, REPROGRAM, BatchNormCalibration, GdcFirmware,
)
from neurophase.network.data import Dataset
from neurophase.network.golden import NetworkChip, Registers
from neurophase.network.mapping import MappedNetwork

__all__ = ["STUDY_TIMES", "FISHER_IMAGES", "HWA_COMPENSATIONS", "ALL_PRONGS", "network_study", "plot_study",
           "time_label", "reprogrammed_accuracy"]

#: Labelled calibration images the Fisher ranking is computed on (the compiler's, not the chip's).
FISHER_IMAGES = 500
#: The column of all three prongs: the HWA network, re-programmed, then GDC and batch-norm recalibration.
ALL_PRONGS = "gdc+bn+hwa+reprogram"

#: Times since programming of the study, seconds: 1 s, 1 h, 1 day, 1 month, 1 year, 10 years.
STUDY_TIMES = (1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0, 3650 * 86400.0)
#: The compensation columns of the hardware-aware trained network (its chip runs GDC, and GDC + BN).
HWA_COMPENSATIONS = ("gdc+hwa", "gdc+bn+hwa")
_LABELS = {1.0: "1 s", 3600.0: "1 h", 86400.0: "1 day", 30 * 86400.0: "1 month", 365 * 86400.0: "1 year",
           3650 * 86400.0: "10 years"}
#: Noise sources switched one at a time for the loss attribution.
SOURCES = {
    "all sources": {},
    "programming noise only": {"drift": "off", "read_noise": "off"},
    "drift only": {"programming_noise": "off", "read_noise": "off"},
    "read noise only": {"programming_noise": "off", "drift": "off"},
    "ADC and quantisation only": {"programming_noise": "off", "drift": "off", "read_noise": "off"},
}


def time_label(t_s: float) -> str:
    return _LABELS.get(float(t_s), f"{t_s:g} s")


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def accuracy(chip: NetworkChip, data: Dataset, t_s: float, rng, **kwargs) -> float:
    return float(np.mean(chip.predict(data.inputs, t_s, rng, **kwargs) == data.labels))


def compensated_accuracy(chip: NetworkChip, gdc: GdcFirmware | None, bn: BatchNormCalibration | None,
                         data: Dataset, t_s: float, rng, **kwargs) -> float:
    """Accuracy at ``t_s`` after the firmware ran the given compensations from compiled registers."""
    chip.registers = Registers.compiled(chip.mapped)
    if gdc is not None:
        gdc.apply(t_s, rng)
    if bn is not None:
        bn.apply(t_s, rng)
    return accuracy(chip, data, t_s, rng, **kwargs)


def reprogrammed_accuracy(chip: NetworkChip, firmware, gdc: GdcFirmware, bn: BatchNormCalibration | None,
                          data: Dataset, t_s: float, rng, **kwargs) -> tuple[float, dict]:
    """Accuracy at ``t_s`` after the firmware re-programmed its selection, then ran GDC and
    (when given) batch-norm recalibration; the chip's device states are restored afterwards.
    Returns the accuracy and the reprogramming cost (:meth:`Reprogramming.as_dict`)."""
    saved = [tile.state.copy() for tile in chip.tiles]
    try:
        cost = firmware.apply(t_s, rng)
        return compensated_accuracy(chip, gdc, bn, data, t_s, rng, **kwargs), cost.as_dict()
    finally:
        for tile, state in zip(chip.tiles, saved):
            tile.restore(state)


def _reprogrammed(instance: tuple, selections: dict, data: Dataset, t_s: float, rng) -> tuple[float, dict]:
    """:func:`reprogrammed_accuracy` of a (chip, GDC, batch-norm) instance with the selection of ``t_s``."""
    from neurophase.network.reprogram import ReprogramFirmware

    chip, gdc, bn = instance
    return reprogrammed_accuracy(chip, ReprogramFirmware(chip, gdc, selections[t_s]), gdc, bn, data, t_s, rng)


def _reprogram_selection(mapped: MappedNetwork, calibration: Dataset, percent: float, times) -> dict:
    """Per time, the Fisher-ranked top ``percent`` % of the weights (layer -> bool (K, N))."""
    from neurophase.network.fisher import fisher_information
    from neurophase.network.reprogram import select_top, weight_scores

    images = calibration.head(FISHER_IMAGES)
    fisher = fisher_information(mapped.network, images.inputs, images.labels)
    return {t_s: select_top(mapped, weight_scores(mapped, fisher, t_s), percent) for t_s in times}


def network_study(mapped: MappedNetwork, test: Dataset, calibration: Dataset, seeds=(1, 2, 3),
                  times=STUDY_TIMES, diagnose_at: float | None = 30 * 86400.0,
                  progress: Callable[[str], None] | None = None, reprogram_percent: float | None = None,
                  hwa_mapped: MappedNetwork | None = None) -> dict:
    """Accuracy versus time for every compensation and seed, with baselines and diagnosis.

    Parameters
    ----------
    mapped : MappedNetwork
    test : Dataset
        Images whose accuracy is reported.
    calibration : Dataset
        Source of the batch-norm calibration images (the first ``CALIBRATION_IMAGES``).
    seeds : sequence of int
        Chip instances (programming and read noise).
    times : sequence of float
        Times since programming, s.
    diagnose_at : float or None
        Time of the per-layer and per-source loss attribution (None: skip it).
    progress : callable, optional
        Called with a line of text after every step.
    reprogram_percent : float or None
        Adds the compensation ``"gdc+bn+reprogram"`` re-programming this percentage of the
        weights (None: not studied).
    hwa_mapped : MappedNetwork, optional
        The hardware-aware trained network on the same chip configuration: adds the columns
        :data:`HWA_COMPENSATIONS`.

    Returns
    -------
    dict with ``fp32_accuracy``, ``quantised_accuracy``, ``fresh_accuracy`` (mean over
    seeds, t = 0), ``fresh_over_fp32``, ``compensations`` (the columns), ``rows`` (time,
    compensation, mean, std, per seed), ``drop_1y`` per compensation (fresh minus 1-year
    accuracy as a fraction, each column against its own network's fresh accuracy),
    ``drop_1y_prong_bn`` (GDC + batch-norm recalibration, in percentage points) and
    ``diagnosis``; with reprogramming also ``reprogramming`` (the cost per time, averaged over
    seeds) and ``drop_1y_prong_reprogram`` (GDC + batch-norm recalibration + reprogramming,
    points); with ``hwa_mapped`` also ``fp32_accuracy_hwa``, ``quantised_accuracy_hwa``,
    ``fresh_accuracy_hwa``, ``fresh_per_seed_hwa``, ``drop_1y_prong_hwa`` (GDC on the HWA
    network, points) and ``drop_1y_prongs_hwa_bn`` (GDC + batch-norm recalibration on the HWA
    network, points); with both, ``drop_1y_all_prongs`` (points).
    """
    if not len(seeds) or not len(times):
        raise ValueError("a study needs at least one seed and one time")
    for t_s in times:
        if not np.isfinite(t_s) or t_s < 0:
            raise ValueError(f"times must be finite and >= 0 s, not {t_s!r}")
    if reprogram_percent is not None:
        from neurophase.network.reprogram import check_percent

        reprogram_percent = check_percent(reprogram_percent)
    say = progress or (lambda line: None)
    calib = calibration.head(CALIBRATION_IMAGES)
    baselines = _baselines(mapped, test, seeds[0])
    fp32, quantised = baselines["fp32_accuracy"], baselines["quantised_accuracy"]
    say(f"FP32 {fp32:.4f}, 8-bit digital {quantised:.4f}")
    hwa_columns = HWA_COMPENSATIONS + ((ALL_PRONGS,) if reprogram_percent is not None else ()) \
        if hwa_mapped is not None else ()
    columns = COMPENSATIONS + ((REPROGRAM,) if reprogram_percent is not None else ()) + hwa_columns
    selections = {}
    if reprogram_percent is not None:
        selections["plain"] = _reprogram_selection(mapped, calibration, reprogram_percent, times)
        if hwa_mapped is not None:
            selections["hwa"] = _reprogram_selection(hwa_mapped, calibration, reprogram_percent, times)
    table = {(t, c): [] for t in times for c in columns}
    costs = {t: [] for t in times}
    fresh, fresh_hwa = [], []
    for seed in seeds:
        chips = {"plain": _firmware(mapped, seed, calib)}
        fresh.append(accuracy(chips["plain"][0], test, 0.0, _rng(seed, 2)))
        if hwa_mapped is not None:
            chips["hwa"] = _firmware(hwa_mapped, seed, calib)
            fresh_hwa.append(accuracy(chips["hwa"][0], test, 0.0, _rng(seed, 6)))
        for i, t_s in enumerate(times):
            firmware_columns = [(comp, "plain", j) for j, comp in enumerate(COMPENSATIONS)]
            if hwa_mapped is not None:
                firmware_columns += [(comp, "hwa", len(COMPENSATIONS) + k) for k, comp in enumerate(HWA_COMPENSATIONS)]
            for comp, network, stream in firmware_columns:
                chip, gdc, bn = chips[network]
                table[t_s, comp].append(compensated_accuracy(
                    chip, gdc if "gdc" in comp else None, bn if "bn" in comp else None, test, t_s,
                    _rng(seed, 3, i, stream)))
            if reprogram_percent is not None:
                acc, cost = _reprogrammed(chips["plain"], selections["plain"], test, t_s,
                                          _rng(seed, 3, i, len(COMPENSATIONS)))
                table[t_s, REPROGRAM].append(acc)
                costs[t_s].append(cost)
                if hwa_mapped is not None:
                    acc, _cost = _reprogrammed(chips["hwa"], selections["hwa"], test, t_s,
                                               _rng(seed, 3, i, len(COMPENSATIONS) + len(HWA_COMPENSATIONS)))
                    table[t_s, ALL_PRONGS].append(acc)
            say(f"seed {seed}  {time_label(t_s):>8}  " + "  ".join(
                f"{c} {table[t_s, c][-1]:.4f}" for c in columns))
    rows = [{"time_s": t, "time": time_label(t), "compensation": c, "mean": float(np.mean(v)),
             "std": float(np.std(v)), "per_seed": v} for (t, c), v in table.items()]
    fresh_mean = float(np.mean(fresh))
    result = {
        "fp32_accuracy": fp32, "quantised_accuracy": quantised, "fresh_accuracy": fresh_mean,
        "fresh_per_seed": fresh, "fresh_over_fp32": fresh_mean / fp32 if fp32 else 0.0,
        "seeds": list(seeds), "times_s": list(times), "images": len(test), "compensations": list(columns),
        "rows": rows, "placement": mapped.placement(),
    }
    if reprogram_percent is not None:
        result["reprogramming"] = _cost_summary(mapped, reprogram_percent, times, costs)
    if hwa_mapped is not None:
        result.update(_baselines(hwa_mapped, test, seeds[0], "_hwa"))
        result["fresh_accuracy_hwa"] = float(np.mean(fresh_hwa))
        result["fresh_per_seed_hwa"] = fresh_hwa
    year = 365 * 86400.0
    if year in times:
        own_fresh = {c: result["fresh_accuracy_hwa" if c in hwa_columns else "fresh_accuracy"] for c in columns}
        drop = {c: own_fresh[c] - float(np.mean(table[year, c])) for c in columns}
        result["drop_1y"] = drop
        # the prong keys are percentage points (the seed chip's claim: <= 0.5); drop_1y is a fraction
        keys = {"drop_1y_prong_bn": "gdc+bn", "drop_1y_prong_reprogram": REPROGRAM, "drop_1y_prong_hwa": "gdc+hwa",
                "drop_1y_prongs_hwa_bn": "gdc+bn+hwa", "drop_1y_all_prongs": ALL_PRONGS}
        result.update({key: 100 * drop[column] for key, column in keys.items() if column in drop})
    if diagnose_at is not None:
        result["diagnosis"] = diagnose(mapped, test, calib, seeds[0], diagnose_at)
        say(f"diagnosis at {time_label(diagnose_at)} done")
    return result


def _cost_summary(mapped: MappedNetwork, percent: float, times, costs: dict) -> dict:
    """The reprogramming cost per time, averaged over the seeds."""
    cfg = mapped.cfg
    per_weight = 2 * cfg.weights.slices * cfg.weights.devices_per_polarity
    per_time = []
    for t_s in times:
        mean = {key: float(np.mean([c[key] for c in costs[t_s]])) for key in costs[t_s][0]}
        per_time.append({"time_s": t_s, "time": time_label(t_s), **mean})
    return {"percent": percent, "ranking": "fisher", "weights": per_time[0]["devices"] / per_weight,
            "devices_per_weight": per_weight, "per_time": per_time}


def _firmware(mapped: MappedNetwork, seed: int, calib: Dataset) -> tuple:
    """The chip instance of ``seed`` with its GDC and batch-norm recalibration firmware."""
    chip = NetworkChip(mapped, seed)
    return chip, GdcFirmware(chip, _rng(seed, 1)), BatchNormCalibration(chip, calib.inputs)


def _baselines(mapped: MappedNetwork, test: Dataset, seed: int, suffix: str = "") -> dict:
    """FP32 accuracy of the float network and 8-bit digital accuracy of the quantised one."""
    fp32 = float(np.mean(mapped.network.run(test.inputs).reshape(len(test), -1).argmax(1) == test.labels))
    quantised = accuracy(NetworkChip(mapped, seed), test, 0.0, _rng(0), digital_layers=tuple(mapped.layers))
    return {f"fp32_accuracy{suffix}": fp32, f"quantised_accuracy{suffix}": quantised}


def diagnose(mapped: MappedNetwork, test: Dataset, calib: Dataset, seed: int, t_s: float) -> dict:
    """Where accuracy is lost at ``t_s`` (GDC applied): each layer alone on the analog tiles
    (the others exact), and each noise source alone on every layer."""
    chip = NetworkChip(mapped, seed)
    gdc = GdcFirmware(chip, _rng(seed, 1))
    names = tuple(mapped.layers)
    per_layer = {}
    for i, name in enumerate(names):
        others = tuple(n for n in names if n != name)
        per_layer[name] = compensated_accuracy(chip, gdc, None, test, t_s, _rng(seed, 4, i), digital_layers=others)
    per_source = {}
    for i, (source, analog) in enumerate(SOURCES.items()):
        variant = replace(mapped, cfg=mapped.cfg.replace(analog=analog))
        chip = NetworkChip(variant, seed)
        per_source[source] = compensated_accuracy(chip, GdcFirmware(chip, _rng(seed, 1)), None, test, t_s,
                                                  _rng(seed, 5, i))
    return {"time_s": t_s, "time": time_label(t_s), "compensation": "gdc",
            "layer_alone_on_analog": per_layer, "source_alone": per_source}


def plot_study(result: dict, path) -> None:
    """Accuracy versus time per compensation (mean +- std over seeds), with the baselines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurophase.atomic import save_figure_atomic

    fig, ax = plt.subplots(figsize=(7, 4.2))
    times = result["times_s"]
    for comp in result.get("compensations", COMPENSATIONS):
        rows = [r for r in result["rows"] if r["compensation"] == comp]
        mean = np.array([r["mean"] for r in rows]) * 100
        std = np.array([r["std"] for r in rows]) * 100
        ax.errorbar(times, mean, yerr=std, marker="o", capsize=3, label=comp)
    ax.axhline(result["fp32_accuracy"] * 100, color="k", ls="--", lw=1, label="FP32")
    ax.axhline(result["fresh_accuracy"] * 100, color="grey", ls=":", lw=1, label="fresh chip (t = 0)")
    ax.set_xscale("log")
    ax.set_xticks(times, [time_label(t) for t in times])
    ax.set_xlabel("time since programming")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"network accuracy on the chip model ({len(result['seeds'])} seeds, {result['images']} images)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
