"""cocotb drift scenario: a programmed tile read at growing times since programming.

At each time point the firmware (through the CSR bus) measures the calibration reads at
unit gain, computes alpha = r0 / r(t) and writes the drift-gain registers; the same
evaluation MVMs then run with no compensation, per-tile GDC (``DRIFT_GAIN``,
``DRIFT.per_column = 0``) and per-column GDC (``GAIN`` array, ``DRIFT.per_column = 1``).
Every MVM (calibration and evaluation) is checked exactly against the golden periphery.

``NEUROPHASE_PARAMS``: ``config``, ``times_s`` (list), ``count`` (evaluation MVMs per
point and mode), ``weights`` (distribution, default Gaussian), ``results_json``.
"""

from __future__ import annotations

import cocotb
import numpy as np

from neurophase.cosim.benches.tile_mvm import (load_params, programmed_testbench, random_inputs, run_checked,
                                               write_results)
from neurophase.cosim.tile_env import predicted_error_pct

#: 1 s, 1 h, 1 day, 1 month (30 days), 1 year.
DRIFT_TIMES_S = (1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0)
#: Compensation modes of each time point: label -> firmware granularity (None: off).
MODES = {"none": None, "per-tile": "per-tile", "per-column": "per-column"}


@cocotb.test()
async def drift_scenario(dut):
    """Program, then step model time; GDC by the firmware at every point; errors recorded."""
    cfg, raw = load_params()
    count = int(raw.get("count", 64))
    bench, rng = await programmed_testbench(dut, cfg, cocotb.RANDOM_SEED, raw.get("weights", "gaussian"))
    evaluation = random_inputs(cfg, rng, count)
    r0 = await bench.measure_reference()
    await bench.check_status()
    rows = []
    times = raw.get("times_s", DRIFT_TIMES_S)
    for point, t in enumerate(times):
        dut._log.info("progress: time point %d/%d (t = %g s)", point + 1, len(times), t)
        bench.bridge.advance_to(float(t))
        r_t = await bench.measure_reference()
        alpha_columns = bench.firmware.alpha(r0, r_t, "per-column")
        row = {"t_s": float(t), "alpha_tile": r0.per_tile / r_t.per_tile if r_t.per_tile else 1.0,
               "alpha_column_spread": float(alpha_columns.max() - alpha_columns.min())}
        for label, granularity in MODES.items():
            await bench.set_gains(granularity, r0, r_t)
            bench.scoreboard.reset_errors()
            await run_checked(bench, evaluation, count)
            row[f"error_pct_{label}"] = bench.scoreboard.error_pct
            row[f"predicted_pct_{label}"] = predicted_error_pct(
                bench.bridge, bench.settings(), evaluation, np.random.default_rng(cocotb.RANDOM_SEED + 3))
        rows.append(row)
        dut._log.info("t = %g s: %s", t, {k: round(v, 4) for k, v in row.items()})
    board = bench.scoreboard
    write_results(raw, {"rows": rows, "shift": bench.firmware.shift, "gdc_source": cfg.analog.gdc_source,
                        "reference_mvms": bench.reference_mvms,
                        "mvms": bench.mvms, "exact": board.matched, "mismatched": board.mismatched,
                        "full_scale_lsb": 2 ** (cfg.datapath.activation_bits - 1) - 1})
    assert board.ok, board.report()
