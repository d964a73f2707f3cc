"""Run a compiled network on the FPGA chip top (board or simulated board) image by image.

:func:`compile_for_board` maps and compiles a network for the FPGA chip preset;
:func:`run_images` streams quantised images through a connected :class:`ChipHost`, checks
every output against the bit-true model (:class:`EmulatedChipModel`) and reports accuracy,
link throughput and the board's cycles per image. A link fault (an error counter of the
bridge or the UART rising during an image) is reported and that image is run once more.
:func:`run_drift_scenario` ages the devices and compensates with the firmware's measured GDC
and batch-norm recalibration over the link, accuracy per compensation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from neurophase.fpga.chip_host import ChipHost, EmulatedChipModel

__all__ = ["InferenceReport", "COMPENSATIONS", "compile_for_board", "run_images", "run_drift_scenario",
           "image_seed"]


def image_seed(seed: int, image: int) -> int:
    """The noise seed of image ``image``: ``seed + image`` in 16 bits (0 maps to 1)."""
    return (seed + image) & 0xFFFF or 1


@dataclass
class InferenceReport:
    """What :func:`run_images` measured.

    Parameters
    ----------
    images : int
    accuracy : float
        Fraction of images whose class (first maximum of the output) equals the label.
    mismatches : int or None
        Output values that differ from the bit-true model (None when not checked).
    cycles_per_image : float
        Mean of the chip's own ``CYCLES`` count per image.
    images_per_s : float
        Images per second over the link (image written, program run, output read).
    link_faults : int
        Images during which a link error counter rose (each was run again).
    model_accuracy : float or None
        Accuracy of the bit-true model's outputs (None when not checked).
    per_image : list of dict
        ``image``, ``label``, ``predicted``, ``mismatches``, ``cycles``, ``seconds``, ``link_errors``.
    """

    images: int
    accuracy: float
    mismatches: int | None
    cycles_per_image: float
    images_per_s: float
    link_faults: int
    model_accuracy: float | None = None
    per_image: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def compile_for_board(cfg, model_path=None, calibration=None):
    """Map and compile ``model_path`` (the shipped digits CNN when None) for ``cfg``; activation
    ranges from ``calibration`` inputs (the digits training split when None)."""
    from neurophase.network.compiler import compile_network
    from neurophase.network.data import load_dataset
    from neurophase.network.mapping import map_network
    from neurophase.network.onnx_import import load_onnx

    if model_path is None:
        from neurophase.network.default_model import DEFAULT_MODEL_PATH

        model_path = DEFAULT_MODEL_PATH
    network = load_onnx(model_path)
    if calibration is None:
        calibration = load_dataset(None, "train").inputs
    return compile_network(map_network(network, cfg, np.asarray(calibration)[:512]))


def quantise_images(compiled, inputs) -> np.ndarray:
    """Float inputs (N, *input shape) as the integer activations the host writes."""
    from neurophase.network.golden import quantise_inputs

    net = compiled.mapped.network
    return quantise_inputs(net.check_inputs(inputs), compiled.mapped.scales[net.input_name], compiled.cfg.input.bits)


def run_images(host: ChipHost, compiled, x_int, labels, *, seed: int = 1, check: bool = True,
               progress=None) -> InferenceReport:
    """Every image of ``x_int`` through the loaded network on the board.

    Parameters
    ----------
    host : ChipHost
        Connected, with ``compiled`` loaded (:meth:`ChipHost.load_network`) and the noise
        set (:meth:`ChipHost.set_noise`; its width is what the model uses). The model reads
        ``EMU_SCALE``, the tiles' drift gains, the program and the batch-norm memories back
        from the board (a drift step, a compensation, a recalibration).
    compiled : CompiledNetwork
    x_int : int array (N, *input shape)
    labels : int array (N,)
    seed : int
        Image ``i`` reseeds the noise with :func:`image_seed` (seed, i), so every image's
        outputs depend on that image only.
    check : bool
        Compare every output with :class:`EmulatedChipModel`.
    progress : callable or None
        Called with (done, total) after each image.
    """
    x_int, labels = np.asarray(x_int), np.asarray(labels)
    if len(x_int) != len(labels):
        raise ValueError(f"{len(x_int)} images but {len(labels)} labels")
    model = EmulatedChipModel.from_board(host) if check else None
    rows, faults, link_seconds = [], 0, 0.0
    for i, x in enumerate(x_int):
        result = host.infer(x, seed=image_seed(seed, i))
        link_seconds += result.seconds
        if result.link_fault:
            faults += 1
            first_errors = result.link_errors
            host.resynchronise()
            result = host.infer(x, seed=image_seed(seed, i))
            link_seconds += result.seconds
            result.link_errors = {k: first_errors[k] + result.link_errors[k] for k in first_errors}
        row = {"image": i, "label": int(labels[i]), "predicted": result.predicted, "cycles": result.cycles,
               "seconds": result.seconds, "link_errors": result.link_errors, "mismatches": None}
        if model is not None:
            golden, _ = model.run(x, seed=image_seed(seed, i))
            row["mismatches"] = int(np.count_nonzero(golden != result.output))
            row["model_predicted"] = int(np.argmax(golden))
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(x_int))
    predicted = np.array([r["predicted"] for r in rows])
    return InferenceReport(
        images=len(rows),
        accuracy=float(np.mean(predicted == labels)) if rows else 0.0,
        mismatches=int(sum(r["mismatches"] for r in rows)) if check else None,
        cycles_per_image=float(np.mean([r["cycles"] for r in rows])) if rows else 0.0,
        images_per_s=len(rows) / link_seconds if link_seconds else 0.0,
        link_faults=faults,
        model_accuracy=float(np.mean(np.array([r["model_predicted"] for r in rows]) == labels)) if check and rows
        else None,
        per_image=rows)


#: The compensations of a drift scenario, in the order they are applied at each time.
COMPENSATIONS = ("none", "gdc", "gdc+bn")


def _summary(report: InferenceReport) -> dict:
    return {k: v for k, v in report.to_dict().items() if k != "per_image"}


def run_drift_scenario(host: ChipHost, compiled, x_int, labels, times, calibration_images, *, nu: float = 0.05,
                       seed: int = 1, check: bool = True, progress=None) -> dict:
    """The drift scenario over the link, as the chip's firmware runs it: ``r0`` measured right
    after programming; then at every time the emulated devices are aged
    (:meth:`ChipHost.drift_step`) and the images run with no compensation (unit gains, the
    compiled batch-norm), after the measured GDC (:meth:`ChipHost.gdc`) and after GDC plus
    batch-norm recalibration (:meth:`ChipHost.recalibrate_batch_norm`).

    Parameters
    ----------
    host : ChipHost
        Connected, ``compiled`` loaded, the noise set, no drift step yet.
    compiled : CompiledNetwork
    x_int, labels
        Quantised test images and their labels.
    times : sequence of float
        Seconds since programming, each at least 1 s (the drift law's t0).
    calibration_images : float array (n, *input_shape)
        Batch-norm recalibration images.
    nu : float
        Drift exponent: conductance x (t / 1 s) ** -nu.
    seed, check, progress
        As :func:`run_images`; ``progress`` is called with a line of text per stage.

    Returns
    -------
    dict
        ``images``, ``calibration_images``, ``calibration_vectors``, ``nu``, ``r0`` (tile ->
        per column), ``mismatches`` (over every run; None without ``check``) and ``rows``: per
        time ``t_s``, ``drift_factor`` ((t / 1 s) ** -nu), ``alpha`` (tile -> per column),
        ``alpha_mean`` and one :class:`InferenceReport` summary per compensation
        (``none``, ``gdc``, ``gdc+bn``).

    Raises
    ------
    ValueError
        For an empty list of times, a time under 1 s, a duplicate time or ``nu`` outside [0, 1].
    """
    times = [float(t) for t in times]
    if not times:
        raise ValueError("times must list at least one time since programming")
    bad = [t for t in times if not np.isfinite(t) or t < 1.0]
    if bad:
        raise ValueError(f"times must be finite and at least 1 s (the drift law's t0), not {bad[0]!r}")
    if len(set(times)) != len(times):
        raise ValueError(f"times lists the same time more than once: {times}")
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not 0.0 <= nu <= 1.0:
        raise ValueError(f"nu must be a number in [0, 1], not {nu!r}")
    say = progress or (lambda text: None)
    say(f"GDC reference r0 on {len(host.compensation().tiles)} tiles")
    r0 = host.measure_gdc_reference()
    rows = []
    for t_s in times:
        host.drift_step(t_s, nu)
        host.unit_gains()
        host.restore_batch_norm()
        row = {"t_s": t_s, "drift_factor": t_s ** -nu}
        say(f"t = {t_s:g} s: no compensation")
        row["none"] = _summary(run_images(host, compiled, x_int, labels, seed=seed, check=check))
        say(f"t = {t_s:g} s: GDC")
        alphas = host.gdc()
        row["alpha"] = {int(t): a.tolist() for t, a in alphas.items()}
        row["alpha_mean"] = float(np.mean([a.mean() for a in alphas.values()]))
        row["gdc"] = _summary(run_images(host, compiled, x_int, labels, seed=seed, check=check))
        say(f"t = {t_s:g} s: batch-norm recalibration")
        host.recalibrate_batch_norm(calibration_images)
        row["gdc+bn"] = _summary(run_images(host, compiled, x_int, labels, seed=seed, check=check))
        rows.append(row)
    mismatches = int(sum(r[c]["mismatches"] for r in rows for c in COMPENSATIONS)) if check else None
    return {"images": len(x_int), "calibration_images": len(calibration_images),
            "calibration_vectors": len(host.compensation().vectors), "nu": nu,
            "r0": {int(t): r.tolist() for t, r in r0.items()}, "mismatches": mismatches, "rows": rows}
