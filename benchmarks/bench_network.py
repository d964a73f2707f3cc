"""``neurophase bench network``: test-set inference of the default network through the analog
model at 1 day against float inference of the same network, measured in the same run.

Both sides run with single-threaded BLAS and are timed in process CPU seconds
(:func:`neurophase.benchmarks.timing.cpu_times`); the ratio uses the fastest run of each.
The analog side is the golden network model: ADC codes of every block from the tile model
(programming noise, drift, read noise), then the bit-true periphery. It is measured with
bit-serial inputs (the configuration's mode) and again with pulse-width inputs.
"""

from __future__ import annotations

import numpy as np

from neurophase.benchmarks.timing import cpu_times
from neurophase.config import ChipConfig
from neurophase.network.data import digits
from neurophase.network.default_model import DEFAULT_MODEL_PATH
from neurophase.network.golden import NetworkChip
from neurophase.network.mapping import map_network
from neurophase.network.onnx_import import load_onnx

__all__ = ["bench_network"]

DAY_S = 86400.0


def _analog_times(cfg: ChipConfig, network, train, images: np.ndarray, repeats: int) -> dict:
    chip = NetworkChip(map_network(network, cfg, train.inputs[:512]), seed=1)
    rng = np.random.default_rng(7)
    return cpu_times(lambda: chip.run(images, DAY_S, rng), repeats=repeats)


def bench_network(cfg: ChipConfig | None = None, images: int = 200, repeats: int = 3) -> dict:
    """Figures of the benchmark (see the module docstring)."""
    cfg = cfg or ChipConfig()
    network = load_onnx(DEFAULT_MODEL_PATH)
    train, test = digits()
    x = test.inputs[:images]
    float_t = cpu_times(lambda: network.run(x), repeats=repeats)
    bit_serial = _analog_times(cfg.replace(input={"mode": "bit-serial"}), network, train, x, repeats)
    pulse = _analog_times(cfg.replace(input={"mode": "pulse-width"}), network, train, x, repeats)
    n = len(x)
    return {
        "images": n,
        "repeats": repeats,
        "images_per_s": n / bit_serial["min_s"],
        "float_images_per_s": n / float_t["min_s"],
        "ratio_vs_float": bit_serial["min_s"] / float_t["min_s"],
        "ratio_vs_float_median": bit_serial["median_s"] / float_t["median_s"],
        "images_per_s_pulse_width": n / pulse["min_s"],
        "ratio_vs_float_pulse_width": pulse["min_s"] / float_t["min_s"],
        "ratio_vs_float_pulse_width_median": pulse["median_s"] / float_t["median_s"],
        "cpu_s": {"float": float_t, "bit_serial": bit_serial, "pulse_width": pulse},
        "time_s": DAY_S,
    }
