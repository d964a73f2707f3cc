"""Array studies: MVM error versus time since programming, with and without GDC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from neurophase.atomic import save_figure_atomic
from neurophase.config import ChipConfig
from neurophase.models.crossbar import build_tile, digital_result
from neurophase.models.gdc import calibrate

__all__ = ["STUDY_TIMES_S", "WEIGHT_DISTRIBUTIONS", "FLOOR_SOURCES", "study_weights", "drift_study",
           "best_alpha", "floor_decomposition", "plot_drift_study", "plot_error_vs_time"]

#: 25 s, 1 h, 1 day, 1 week, 1 month, 1 year.
STUDY_TIMES_S = (25.0, 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0, 365 * 86400.0)
#: Weight distributions of the studies: Gaussian; Gaussian clipped at +-2.5 sigma (the
#: clipping of hardware-aware training); uniform.
WEIGHT_DISTRIBUTIONS = ("gaussian", "clipped", "uniform")
#: Clipping of the ``clipped`` distribution, in standard deviations.
CLIP_SIGMAS = 2.5


def study_weights(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Seeded weights of distribution ``kind`` (one of :data:`WEIGHT_DISTRIBUTIONS`)."""
    if kind not in WEIGHT_DISTRIBUTIONS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHT_DISTRIBUTIONS))}, not {kind!r}")
    if kind == "uniform":
        return rng.uniform(-1.0, 1.0, size=shape)
    weights = rng.normal(size=shape)
    if kind == "clipped":
        limit = CLIP_SIGMAS * weights.std()
        weights = np.clip(weights, -limit, limit)
    return weights


def best_alpha(y: np.ndarray, ideal: np.ndarray, per_column: bool) -> np.ndarray:
    """The least-squares drift gain: the alpha minimising ||alpha y - ideal|| (one per column
    or one for the tile), shape (cols,). What a perfect alpha estimate could reach."""
    axis = 0 if per_column else None
    num, den = np.sum(y * ideal, axis=axis), np.sum(y * y, axis=axis)
    alpha = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return np.broadcast_to(alpha, y.shape[1:]).astype(np.float64)


def drift_study(cfg: ChipConfig, seed: int, batch: int = 256, times=STUDY_TIMES_S,
                weights: str = "gaussian", progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Relative RMS MVM error ||y - y_ideal|| / ||y_ideal|| at each time, raw and with GDC,
    and their ratio ``improvement``; ``error_best_alpha`` is the error with the
    least-squares alpha (:func:`best_alpha`) instead of the estimated one.

    ``y_ideal`` is the exact x . W_int in the same units as the shift-and-add result
    (one unit digit = g_unit / LSB codes). Weights of distribution ``weights``
    (:func:`study_weights`), inputs uniform, all seeded. ``progress(done, total)`` is called
    after each time point.
    """
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, study_weights(weights, (cfg.tile.rows, cfg.tile.cols), rng), seed)
    lo, hi = (-(2 ** (cfg.input.bits - 1)), 2 ** (cfg.input.bits - 1) - 1) if cfg.input.signed else (0, 2**cfg.input.bits - 1)
    x = rng.integers(lo, hi + 1, size=(batch, cfg.tile.rows))
    ideal = (x @ tile.state.w_int) * (tile.mapping.g_unit / tile.lsb_us)
    norm = np.sqrt(np.mean(ideal**2))
    r0, rows = None, []
    for t in times:
        if progress and rows:
            progress(len(rows), len(times))
        alpha, r0 = calibrate(tile, t, rng, r0=r0)
        y = digital_result(cfg, tile.adc_codes(x, t, rng)).astype(np.float64)
        error_raw = float(np.sqrt(np.mean((y - ideal) ** 2)) / norm)
        error_gdc = float(np.sqrt(np.mean((alpha * y - ideal) ** 2)) / norm)
        best = best_alpha(y, ideal, cfg.analog.gdc == "per-column")
        error_best = float(np.sqrt(np.mean((best * y - ideal) ** 2)) / norm)
        rows.append({"t_s": float(t), "error_raw": error_raw, "error_gdc": error_gdc,
                     "improvement": error_raw / error_gdc, "alpha_mean": float(np.mean(alpha)),
                     "error_best_alpha": error_best})
    if progress:
        progress(len(rows), len(times))
    return rows


#: Sources of the compensated error floor and the changes that switch each one off:
#: configuration sections (``ChipConfig.replace``), device overrides, or the least-squares
#: alpha in place of the estimated one. The ADC keeps its full scale at 16 bits (LSB / 2**(16-bits)).
FLOOR_SOURCES = {
    "programming noise": {"analog": {"programming_noise": "off"}},
    "drift-exponent spread (sigma_nu)": {"overrides": {"nu_sigma_min": 0.0, "nu_sigma_max": 0.0}},
    "drift-exponent mean vs G (mu_nu(g))": {"overrides": {"nu_mu_slope": 0.0, "nu_mu_offset": 0.049}},
    "1/f read noise": {"analog": {"read_noise": "off"}},
    "ADC quantisation": {"adc": {"bits": 16}},
    "alpha estimation": {"best_alpha": True},
}
_MONTH_S = 30 * 86400.0


def _without(cfg: ChipConfig, sources) -> tuple[ChipConfig, bool]:
    """``cfg`` with ``sources`` (names of :data:`FLOOR_SOURCES`) switched off, and whether
    the least-squares alpha replaces the estimated one."""
    overrides, best = dict(cfg.device.overrides), False
    for name in sources:
        change = FLOOR_SOURCES[name]
        best = best or change.get("best_alpha", False)
        overrides.update(change.get("overrides", {}))
        cfg = cfg.replace(**{key: value for key, value in change.items() if key in ("analog", "adc")})
    return cfg.replace(device={"overrides": overrides}), best


def _floor_error(cfg: ChipConfig, sources, seeds, t_s: float, batch: int, weights: str) -> float:
    """RMS over ``seeds`` of the compensated error at ``t_s`` with ``sources`` switched off."""
    cfg, best = _without(cfg, sources)
    times = tuple(sorted(set(STUDY_TIMES_S) | {t_s}))
    key = "error_best_alpha" if best else "error_gdc"
    errors = [next(row[key] for row in drift_study(cfg, seed, batch, times, weights) if row["t_s"] == t_s)
              for seed in seeds]
    return float(np.sqrt(np.mean(np.square(errors))))


def floor_decomposition(cfg: ChipConfig, seeds=(1,), t_s: float = _MONTH_S, batch: int = 256,
                        weights: str = "gaussian", progress: Callable[[int, int], None] | None = None) -> dict:
    """Split the drift-compensated MVM error at ``t_s`` into its sources (:data:`FLOOR_SOURCES`).

    For every source: ``without`` is the error with that source switched off and every other
    one on; ``contribution = sign(d) sqrt(|d|)`` with ``d = total**2 - without**2`` its share in
    quadrature (negative when switching the source off makes the error larger); ``only``
    the error with that source alone (every other one off). The same study as
    :func:`drift_study`; errors are RMS over ``seeds``. ``progress(done, total)`` is called
    after each of the ``2 * len(FLOOR_SOURCES) + 2`` error evaluations.

    Raises
    ------
    ConfigError
        For device presets without the pcm-joshi drift-law parameters (pcm-hermes).
    """
    names = list(FLOOR_SOURCES)
    steps, done = 2 * len(names) + 2, [0]

    def floor_error(sources) -> float:
        error = _floor_error(cfg, sources, seeds, t_s, batch, weights)
        done[0] += 1
        if progress:
            progress(done[0], steps)
        return error

    total = floor_error(())
    rows = []
    for name in names:
        without = floor_error((name,))
        only = floor_error([other for other in names if other != name])
        share = total**2 - without**2
        rows.append({"source": name, "without": without, "only": only,
                     "contribution": float(np.sign(share) * np.sqrt(abs(share)))})
    none = floor_error(names)
    return {"t_s": float(t_s), "weights": weights, "seeds": list(seeds), "total": total, "all_off": none,
            "sources": rows}


def plot_error_vs_time(t_s, series, path: str | Path, *, ylabel: str, xlabel: str = "time since programming (s)",
                       title: str | None = None, tick_labels=None, log_y: bool = False) -> Path:
    """Plot error curves against time since programming (log time axis, matplotlib Agg)
    to the PNG ``path``; ``series`` holds ``(values, marker, label)`` per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    plot = ax.loglog if log_y else ax.semilogx
    for values, marker, label in series:
        plot(t_s, values, marker, label=label)
    if tick_labels is not None:
        ax.set_xticks(t_s, tick_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path


def plot_drift_study(rows: list[dict], path: str | Path) -> Path:
    """Plot :func:`drift_study` rows (matplotlib, Agg backend) to ``path``."""
    return plot_error_vs_time(
        [row["t_s"] for row in rows],
        [([100 * row["error_raw"] for row in rows], "o-", "no compensation"),
         ([100 * row["error_gdc"] for row in rows], "s-", "global drift compensation")],
        path, ylabel="relative RMS MVM error (%)",
    )
