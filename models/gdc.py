"""Global drift compensation (GDC), computed the way the host and the RTL compute it.

The host applies a fixed calibration input set, reads the digital shift-and-add results y
(the RTL's output before the drift gain) and forms ``r = mean |y|``:

* ``analog.gdc_source = "calibration-input"``: over the data columns' results for the
  calibration set — per column (``analog.gdc = "per-column"``) or over all columns
  (``"per-tile"``);
* ``"reference-columns"``: over the reference columns' results (a tile-wide figure, so
  every column gets the same alpha).

``r0`` is taken right after programming (t = 0 by default), ``r(t)`` at read time, and the
drift-gain registers receive ``alpha = r0 / r(t)`` (one per column; equal across the tile in
per-tile mode). The corrected output is ``round(alpha * y)``.
"""

from __future__ import annotations

import numpy as np

from neurophase.config import ChipConfig
from neurophase.models.crossbar import AnalogTile, digital_result, input_range
from neurophase.models.devices import check_finite

__all__ = ["CALIBRATION_SEED", "calibration_inputs", "gdc_reference", "gdc_alpha", "compensate", "calibrate"]

#: Seed of the fixed calibration input set (shared by host, model and tests).
CALIBRATION_SEED = 2473


def calibration_inputs(cfg: ChipConfig, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """The fixed calibration set: ``analog.calibration_vectors`` uniform inputs, (n, rows), int64."""
    lo, hi = input_range(cfg)
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi + 1, size=(cfg.analog.calibration_vectors, cfg.tile.rows))


def _reference_results(tile: AnalogTile, codes: np.ndarray) -> np.ndarray:
    cfg = tile.cfg
    n_ref = codes.shape[-1]
    if n_ref == 0:
        raise ValueError("analog.gdc_source 'reference-columns' needs analog.reference_columns >= 1, not 0")
    # The reference columns go through the same shift-and-add; pad to a whole tile width.
    padded = np.zeros(codes.shape[:-1] + (cfg.tile.cols,), dtype=codes.dtype)
    width = min(n_ref, cfg.tile.cols)
    padded[..., :width] = codes[..., :width]
    return digital_result(cfg, padded)[:, :width]


def gdc_reference(tile: AnalogTile, t_s: float, rng: np.random.Generator,
                  inputs: np.ndarray | None = None) -> np.ndarray:
    """``r = mean |y|`` at ``t_s``: shape (cols,), equal entries in per-tile mode.

    Parameters
    ----------
    tile : AnalogTile
    t_s : float
        Time since programming, s.
    rng : numpy.random.Generator
    inputs : int array (n, rows), optional
        Calibration set; default :func:`calibration_inputs`.
    """
    cfg = tile.cfg
    inputs = calibration_inputs(cfg) if inputs is None else inputs
    if cfg.analog.gdc_source == "reference-columns":
        y = _reference_results(tile, tile.reference_codes(inputs, t_s, rng))
        return np.full(cfg.tile.cols, np.abs(y).mean())
    y = digital_result(cfg, tile.adc_codes(inputs, t_s, rng))
    magnitude = np.abs(y).astype(np.float64)
    if cfg.analog.gdc == "per-column":
        return magnitude.mean(axis=0)
    return np.full(cfg.tile.cols, magnitude.mean())


def gdc_alpha(r0: np.ndarray, r_t: np.ndarray) -> np.ndarray:
    """alpha = r0 / r(t); 1 where r(t) is 0 (nothing to compensate)."""
    r0, r_t = check_finite("r0", r0), check_finite("r_t", r_t)
    if r0.shape != r_t.shape:
        raise ValueError(f"r0 and r_t must have the same shape, not {r0.shape} and {r_t.shape}")
    return np.where(r_t > 0, r0 / np.where(r_t > 0, r_t, 1.0), 1.0)


def compensate(y: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Drift-corrected outputs round(alpha * y) (half to even), int64."""
    return np.rint(np.asarray(y, dtype=np.float64) * alpha).astype(np.int64)


def calibrate(tile: AnalogTile, t_s: float, rng: np.random.Generator, r0: np.ndarray | None = None,
              t0_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """alpha at ``t_s`` and the r0 used (measured at ``t0_s`` when not given)."""
    if r0 is None:
        r0 = gdc_reference(tile, t0_s, rng)
    return gdc_alpha(r0, gdc_reference(tile, t_s, rng)), r0
