"""Array studies: MVM error versus time since programming, with and without GDC."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.crossbar import build_tile, digital_result
from neurophase.models.gdc import calibrate

__all__ = ["STUDY_TIMES_S", "WEIGHT_DISTRIBUTIONS", "study_weights", "drift_study", "plot_drift_study",
           "plot_error_vs_time"]

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


def drift_study(cfg: ChipConfig, seed: int, batch: int = 256, times=STUDY_TIMES_S,
                weights: str = "gaussian") -> list[dict]:
    """Relative RMS MVM error ||y - y_ideal|| / ||y_ideal|| at each time, raw and with GDC,
    and their ratio ``improvement``.

    ``y_ideal`` is the exact x . W_int in the same units as the shift-and-add result
    (one unit digit = g_unit / LSB codes). Weights of distribution ``weights``
    (:func:`study_weights`), inputs uniform, all seeded.
    """
    rng = np.random.default_rng(seed)
    tile = build_tile(cfg, study_weights(weights, (cfg.tile.rows, cfg.tile.cols), rng), seed)
    lo, hi = (-(2 ** (cfg.input.bits - 1)), 2 ** (cfg.input.bits - 1) - 1) if cfg.input.signed else (0, 2**cfg.input.bits - 1)
    x = rng.integers(lo, hi + 1, size=(batch, cfg.tile.rows))
    ideal = (x @ tile.state.w_int) * (tile.mapping.g_unit / tile.lsb_us)
    norm = np.sqrt(np.mean(ideal**2))
    r0, rows = None, []
    for t in times:
        alpha, r0 = calibrate(tile, t, rng, r0=r0)
        y = digital_result(cfg, tile.adc_codes(x, t, rng)).astype(np.float64)
        error_raw = float(np.sqrt(np.mean((y - ideal) ** 2)) / norm)
        error_gdc = float(np.sqrt(np.mean((alpha * y - ideal) ** 2)) / norm)
        rows.append({"t_s": float(t), "error_raw": error_raw, "error_gdc": error_gdc,
                     "improvement": error_raw / error_gdc, "alpha_mean": float(np.mean(alpha))})
    return rows


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
    fig.savefig(path, dpi=120)
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
