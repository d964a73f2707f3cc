"""Selective reprogramming: the weights the Fisher information marks as most sensitive are
re-programmed at time t, as firmware does it.

Ranking
    Every MVM weight gets the expected loss increase its device errors cause at time t,

        score = F(w) * w_scale**2 * E[delta_d**2](t),

    with F the empirical diagonal Fisher information of the float weight
    (:func:`neurophase.network.fisher.fisher_information`), ``w_scale`` the layer's real value
    of one integer weight step (so ``F w_scale**2`` is the Fisher information of the integer
    weight the devices hold) and ``E[delta_d**2]`` the variance of the pair's error in integer
    digits from the device model: programming noise plus the spread of the drift exponents
    left after a drift gain has removed the mean drift,
    ``sigma_prog(G)**2 + (G sigma_nu(G) nu_scale ln((t + t0) / t0))**2`` per device, summed
    over both sides and the slices (times ``F**(2 s)``) and divided by ``P g_unit**2`` for P
    devices per polarity. A score is thus a loss (nats), comparable across layers whatever
    their weight scales, sizes and depths; the top k % of all mapped weights are chosen
    globally. Ties (e.g. weights of zero Fisher information) are broken by position.

Firmware at time t
    :class:`ReprogramFirmware` measures each tile's drift level with the GDC reads
    (``1 / alpha`` per column), then re-programs every device of the chosen weights of that
    tile (:meth:`neurophase.models.crossbar.AnalogTile.reprogram`) to its target times that
    level, so that the fresh devices sit at the drift level of the devices around them and
    the column's single drift gain fits both (a fresh device at its full target among
    devices drifted to half their conductance would come out doubled by GDC). The fresh
    devices carry their own, small, programming error and have no drift spread yet: that is
    the error removed. GDC (with its r0 from the first programming) and batch-norm
    recalibration follow.
"""

from __future__ import annotations

import numpy as np

from neurophase.models.crossbar import Reprogramming
from neurophase.models.devices import check_time, device_model_from_config
from neurophase.models.mapping import WeightMapping, digits_to_conductances, split_slices
from neurophase.network.compensation import GdcFirmware
from neurophase.network.golden import NetworkChip
from neurophase.network.mapping import MappedNetwork

__all__ = ["check_percent", "error_variance_digits", "weight_scores", "select_top", "select_random", "tile_selections",
           "ReprogramFirmware"]


def error_variance_digits(mapped: MappedNetwork, w_int: np.ndarray, t_s: float) -> np.ndarray:
    """Variance of each weight's device error in integer digits at ``t_s`` (after a drift gain):
    programming noise and drift-exponent spread of every device of its pairs."""
    cfg = mapped.cfg
    t_s = check_time(t_s)
    device = device_model_from_config(cfg)
    mapping = WeightMapping.from_config(cfg, device)
    g = digits_to_conductances(mapping, split_slices(mapping, w_int))  # (2, S, K, N)
    var = np.zeros(g.shape)
    if cfg.analog.programming_noise == "on":
        var += device.programming_sigma(g) ** 2
    if cfg.analog.drift == "on":
        log_time = np.log((t_s + device.t0) / device.t0)
        var += (g * device.drift_spread(g) * device.nu_scale * log_time) ** 2
    significance = float(cfg.weights.significance_factor) ** (2 * np.arange(cfg.weights.slices))
    per_weight = np.tensordot(significance, var.sum(axis=0), axes=1)
    return per_weight / (cfg.weights.devices_per_polarity * mapping.g_unit ** 2)


def weight_scores(mapped: MappedNetwork, fisher: dict, t_s: float) -> dict[str, np.ndarray]:
    """Expected loss increase of every weight at ``t_s``: ``F w_scale**2 E[delta_d**2]``.

    Parameters
    ----------
    mapped : MappedNetwork
    fisher : dict
        Layer name -> Fisher information (K, N) of the float weights.
    t_s : float
        Time of the reprogramming, s.
    """
    scores = {}
    for name, layer in mapped.layers.items():
        if name not in fisher or np.shape(fisher[name]) != (layer.k, layer.n):
            raise ValueError(f"fisher must hold a ({layer.k}, {layer.n}) array for layer {name!r}, not "
                             f"{np.shape(fisher.get(name))}")
        scores[name] = fisher[name] * layer.w_scale ** 2 * error_variance_digits(mapped, layer.w_int, t_s)
    return scores


def check_percent(percent) -> float:
    """``percent`` as a float after checking it is a number from 0 to 100."""
    if isinstance(percent, bool) or not isinstance(percent, (int, float, np.integer, np.floating)) \
            or not 0 <= percent <= 100:
        raise ValueError(f"reprogram percent must be a number from 0 to 100, not {percent!r}")
    return float(percent)


def _count(mapped: MappedNetwork, percent: float) -> int:
    percent = check_percent(percent)
    total = sum(layer.k * layer.n for layer in mapped.layers.values())
    return int(round(total * percent / 100))


def _unflatten(mapped: MappedNetwork, chosen: np.ndarray) -> dict[str, np.ndarray]:
    flat = np.zeros(sum(layer.k * layer.n for layer in mapped.layers.values()), dtype=bool)
    flat[chosen] = True
    out, start = {}, 0
    for name, layer in mapped.layers.items():
        out[name] = flat[start:start + layer.k * layer.n].reshape(layer.k, layer.n)
        start += layer.k * layer.n
    return out


def select_top(mapped: MappedNetwork, scores: dict, percent: float) -> dict[str, np.ndarray]:
    """The ``percent`` % of all mapped weights with the highest scores: layer -> bool (K, N)."""
    flat = np.concatenate([np.asarray(scores[name], dtype=np.float64).ravel() for name in mapped.layers])
    order = np.argsort(-flat, kind="stable")
    return _unflatten(mapped, order[:_count(mapped, percent)])


def select_random(mapped: MappedNetwork, percent: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The same number of weights as :func:`select_top`, drawn uniformly without replacement."""
    total = sum(layer.k * layer.n for layer in mapped.layers.values())
    return _unflatten(mapped, rng.choice(total, size=_count(mapped, percent), replace=False))


def tile_selections(mapped: MappedNetwork, selection: dict) -> list[np.ndarray]:
    """Per tile, the bool (tile.rows, tile.cols) of the selected weights, through the placement blocks."""
    cfg = mapped.cfg
    tiles = [np.zeros((cfg.tile.rows, cfg.tile.cols), dtype=bool) for _ in range(mapped.tiles_used)]
    for block in mapped.blocks:
        chosen = selection[block.layer][block.k_start:block.k_stop, block.n_start:block.n_stop]
        tiles[block.tile][block.tile_rows, block.tile_cols] |= chosen
    return tiles


class ReprogramFirmware:
    """Re-programs a fixed selection of weights of ``chip`` at a given time.

    Parameters
    ----------
    chip : NetworkChip
    gdc : GdcFirmware
        Its reads measure the drift level the new devices are programmed to.
    selection : dict
        Layer name -> bool (K, N) of the weights to re-program (:func:`select_top`).
    """

    def __init__(self, chip: NetworkChip, gdc: GdcFirmware, selection: dict):
        self.chip, self.gdc = chip, gdc
        self.tiles = tile_selections(chip.mapped, selection)

    def apply(self, t_s: float, rng: np.random.Generator) -> Reprogramming:
        """Measure the drift level and re-program the selected devices at ``t_s``; the total cost."""
        levels = [1.0 / alpha for alpha in self.gdc.alphas(t_s, rng)]
        cost = Reprogramming()
        for tile, chosen, level in zip(self.chip.tiles, self.tiles, levels):
            if chosen.any():
                cost = cost + tile.reprogram(chosen, t_s, rng, target_scale=level)
        return cost
