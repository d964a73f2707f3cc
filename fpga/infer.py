"""Run a compiled network on the FPGA chip top (board or simulated board) image by image.

:func:`compile_for_board` maps and compiles a network for the FPGA chip preset;
:func:`run_images` streams quantised images through a connected :class:`ChipHost`, checks
every output against the bit-true model (:class:`EmulatedChipModel`) and reports accuracy,
link throughput and the board's cycles per image. A link fault (an error counter of the
bridge or the UART rising during an image) is reported and that image is run once more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from neurophase.fpga.chip_host import ChipHost, EmulatedChipModel

__all__ = ["InferenceReport", "compile_for_board", "run_images", "image_seed"]


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
        ``EMU_SCALE`` and the tiles' gains back from the board (a drift step, a compensation).
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
    model = EmulatedChipModel(compiled, noise_bits=host.noise_bits, scale=host.field("EMU_SCALE", "factor"),
                              gains=host.tile_gains()) if check else None
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
