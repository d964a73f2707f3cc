"""The golden network model: a mapped network on a programmed chip, bit-true.

Inference runs every MVM layer through the analog model of the tiles that hold it (noise,
drift and ADC codes at a given time since programming) and the bit-true golden periphery,
exactly the arithmetic the RTL performs:

1. the layer's input activations are unrolled into im2col patches (zero padding);
2. each block of the layer reads its rows' patches on its tile: ADC codes
   (:class:`neurophase.models.crossbar.AnalogTile`), offset trim, shift-and-add and drift
   gain with that tile's registers (:mod:`neurophase.models.datapath` stages);
3. the blocks of one output column are summed in row-block order by the partial-sum adder,
   saturating to the layer's ``psum_bits`` after every addition;
4. the batch-norm unit with the layer's registers (S, beta, shift), ReLU and
   requantisation give the next ``datapath.activation_bits`` activations.

Digital operations between layers are bit-true as well (:func:`max_pool`,
:func:`average_pool`, :func:`add_activations`, :func:`relu_activations`). Inputs are
quantised as ``clip(floor(x / s + 1/2))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from neurophase.models.adc_interface import AdcInterfaceParams, adc_trim
from neurophase.models.batch_norm import BatchNormParams, batch_norm
from neurophase.models.crossbar import AnalogTile, program_tile
from neurophase.models.drift_gain import DriftGainParams, drift_gain
from neurophase.models.fixed_point import round_half_up_shift, saturate, signed_range
from neurophase.models.shift_add import ShiftAddParams, shift_add
from neurophase.network.graph import Add, Flatten, Mvm, Pool, Relu, im2col, pool_windows
from neurophase.network.mapping import MappedLayer, MappedNetwork

__all__ = ["NetworkChip", "Registers", "ReadKeys", "keyed_code_source", "quantise_inputs", "max_pool", "average_pool",
           "add_activations", "relu_activations", "RECIPROCAL_BITS", "tile_seed"]

#: Fractional bits of the reciprocal by which average pooling divides a window sum.
RECIPROCAL_BITS = 16
#: Images per pass through the analog model (bounds memory).
CHUNK_IMAGES = 256


@dataclass(frozen=True)
class ReadKeys:
    """Keyed analog reads: every block read gets its own generator from (seed, image, block,
    position), so a read's noise does not depend on batching or on the order of the reads.

    Passed to :meth:`NetworkChip.run` in place of the generator, every block read of image
    ``first_image + i`` (``i`` its index in the batch), block ``b`` (index in
    ``mapped.blocks``, which is also its index among the BLOCK entries of the compiled
    program) and output position ``p = oy * out_w + ox`` draws from :meth:`rng`; the chip
    co-simulation and :func:`keyed_code_source` use the same keys, so they read the same codes.

    Parameters
    ----------
    seed : int
    first_image : int
        Index of the batch's first image.
    """

    seed: int
    first_image: int = 0

    def __post_init__(self):
        for name in ("seed", "first_image"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"ReadKeys {name} must be a non-negative integer, not {value!r}")

    def rng(self, image: int, block: int, position: int) -> np.random.Generator:
        """The generator of one read: ``default_rng([seed, image, block, position])`` (``image``
        counts from 0 over all images, ``first_image`` included)."""
        return np.random.default_rng([int(self.seed), int(image), int(block), int(position)])

    def offset(self, images: int) -> "ReadKeys":
        """The keys of the batch that starts ``images`` images later."""
        return ReadKeys(self.seed, self.first_image + images)


def keyed_code_source(chip: "NetworkChip", t_s: float, keys: ReadKeys, image: int):
    """The code source of the chip interpreter (``neurophase.models.chip_golden``) reading
    ``chip``'s analog tiles at ``t_s`` with the same keyed reads as :meth:`NetworkChip.run`
    with ``keys`` for image ``image`` (counted from 0, like ``keys.first_image``): the block's
    rows are read with :meth:`AnalogTile.block_codes`, columns outside the block are 0."""
    cfg, blocks = chip.cfg, chip.mapped.blocks

    def codes(tile: int, drive: np.ndarray, block_index: int, position: int) -> np.ndarray:
        block = blocks[block_index]
        if block.tile != tile:
            raise ValueError(f"block {block_index} is on tile {block.tile}, not on tile {tile}")
        out = np.zeros((cfg.weights.slices, cfg.input.planes, cfg.tile.cols), dtype=np.int64)
        out[..., block.tile_cols] = chip.tiles[tile].block_codes(
            drive[block.tile_rows][None], t_s, keys.rng(image, block_index, position), block.tile_rows,
            block.tile_cols)[0]
        return out

    return codes


def tile_seed(seed: int, tile: int) -> int:
    """The programming seed of one tile of a chip built with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(tile)]).generate_state(1)[0])


def quantise_inputs(x: np.ndarray, scale: float, bits: int) -> np.ndarray:
    """Float activations to ``bits``-bit integers: ``clip(floor(x / scale + 1/2))``."""
    lo, hi = signed_range(bits)
    return np.clip(np.floor(x / scale + 0.5), lo, hi).astype(np.int64)


def max_pool(x: np.ndarray, layer: Pool, bits: int) -> np.ndarray:
    """Max pooling of integer activations; padding holds the smallest activation."""
    return pool_windows(x, layer, signed_range(bits)[0]).max(axis=-1)


def average_pool(x: np.ndarray, layer: Pool, bits: int) -> np.ndarray:
    """Average pooling: window sum times ``round(2**16 / n)``, rounded half up by a 16-bit shift."""
    windows = x.reshape(*x.shape[:2], 1, 1, -1) if layer.kind == "global-avg" else pool_windows(x, layer, 0)
    n = windows.shape[-1]
    reciprocal = int(np.floor((1 << RECIPROCAL_BITS) / n + 0.5))
    total = windows.sum(axis=-1, dtype=np.int64)
    return saturate(round_half_up_shift(total * reciprocal, RECIPROCAL_BITS), bits)[0].astype(np.int64)


def add_activations(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """Residual add of two activations of one scale, saturated."""
    return saturate(a.astype(np.int64) + b, bits)[0].astype(np.int64)


def relu_activations(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


@dataclass
class Registers:
    """The run-time registers the firmware writes: per tile, per layer.

    Parameters
    ----------
    trims : list of int64 arrays (tile.cols,)
        ADC offset trims of every tile.
    gains : list of int64 arrays (tile.cols,)
        Drift-gain registers of every tile (equal entries for a per-tile gain).
    bn_scale, bn_bias : dict of int64 arrays (N,)
        Batch-norm registers S and beta of every MVM layer.
    shift : dict of int
        Requantisation shift of every MVM layer.
    """

    trims: list
    gains: list
    bn_scale: dict
    bn_bias: dict
    shift: dict = field(default_factory=dict)

    @classmethod
    def compiled(cls, mapped: MappedNetwork) -> "Registers":
        """The register images of the compiled network: no trim, unit gains, the mapped batch-norm."""
        cfg = mapped.cfg
        one = 1 << cfg.datapath.gain_frac_bits
        tiles = range(mapped.tiles_used)
        return cls([np.zeros(cfg.tile.cols, dtype=np.int64) for _ in tiles],
                   [np.full(cfg.tile.cols, one, dtype=np.int64) for _ in tiles],
                   {n: m.bn_scale.copy() for n, m in mapped.layers.items()},
                   {n: m.bn_bias.copy() for n, m in mapped.layers.items()},
                   {n: m.shift for n, m in mapped.layers.items()})

    def copy(self) -> "Registers":
        return Registers([t.copy() for t in self.trims], [g.copy() for g in self.gains],
                         {k: v.copy() for k, v in self.bn_scale.items()},
                         {k: v.copy() for k, v in self.bn_bias.items()}, dict(self.shift))


@dataclass
class Trace:
    """What one inference produced: every tensor's integer activations and every MVM
    layer's partial sums (images, positions, outputs) before batch-norm."""

    tensors: dict
    psums: dict
    saturations: dict


class NetworkChip:
    """A mapped network programmed onto a chip instance.

    Parameters
    ----------
    mapped : MappedNetwork
    seed : int
        Seeds the programming of every tile (:func:`tile_seed`).
    program_verify : bool
        Program with the pulse-level program-verify model instead of one-shot programming noise.
    """

    def __init__(self, mapped: MappedNetwork, seed: int, program_verify: bool = False):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        self.mapped = mapped
        self.cfg = mapped.cfg
        self.seed = int(seed)
        self.tiles: list[AnalogTile] = [
            program_tile(self.cfg, *mapped.tile_weights(t), seed=tile_seed(seed, t), program_verify=program_verify)
            for t in range(mapped.tiles_used)]
        self.registers = Registers.compiled(mapped)
        self._ideal_layers: frozenset = frozenset()

    # -- inference ---------------------------------------------------------------
    def quantise(self, inputs) -> np.ndarray:
        net = self.mapped.network
        return quantise_inputs(net.check_inputs(inputs), self.mapped.scales[net.input_name], self.cfg.input.bits)

    def run(self, inputs, t_s: float, rng: np.random.Generator | ReadKeys, trace: bool = False,
            digital_layers: tuple = ()) -> np.ndarray | Trace:
        """Integer outputs (N, ...) of float ``inputs`` at ``t_s`` seconds since programming.

        Parameters
        ----------
        inputs : float array (N, *input_shape)
        t_s : float
        rng : numpy.random.Generator or ReadKeys
            Every read noise and ADC noise draw; :class:`ReadKeys` draws every block read
            of every image and position from its own key (slower, batching-independent).
        trace : bool
            Return a :class:`Trace` of every tensor and partial sum instead of the output.
        digital_layers : tuple of str
            MVM layers computed by exact integer arithmetic instead of the analog tiles
            (to find which layer loses accuracy).
        """
        x = self.quantise(inputs)
        traces = [self._run_int(x[i:i + CHUNK_IMAGES], t_s, rng.offset(i) if isinstance(rng, ReadKeys) else rng,
                                frozenset(digital_layers))
                  for i in range(0, len(x), CHUNK_IMAGES)]
        merged = Trace({k: np.concatenate([t.tensors[k] for t in traces]) for k in traces[0].tensors},
                       {k: np.concatenate([t.psums[k] for t in traces]) for k in traces[0].psums},
                       {k: {stage: sum(t.saturations[k][stage] for t in traces) for stage in v}
                        for k, v in traces[0].saturations.items()})
        return merged if trace else merged.tensors[self.mapped.network.output_name]

    def predict(self, inputs, t_s: float, rng: np.random.Generator | ReadKeys, **kwargs) -> np.ndarray:
        """Predicted classes: the argmax of the integer outputs (first maximum on ties)."""
        out = self.run(inputs, t_s, rng, **kwargs)
        return out.reshape(len(out), -1).argmax(axis=1)

    def _run_int(self, x: np.ndarray, t_s: float, rng, digital: frozenset) -> Trace:
        net, bits = self.mapped.network, self.cfg.datapath.activation_bits
        tensors = {net.input_name: x}
        psums, saturations = {}, {}
        for layer in net.layers:
            a = tensors[layer.inputs[0]]
            if isinstance(layer, Mvm):
                psum, out, sat = self.mvm(layer.name, a, t_s, rng, digital=layer.name in digital)
                psums[layer.name], saturations[layer.name] = psum, sat
            elif isinstance(layer, Pool):
                out = max_pool(a, layer, bits) if layer.kind == "max" else average_pool(a, layer, bits)
            elif isinstance(layer, Add):
                out = add_activations(a, tensors[layer.b], bits)
            elif isinstance(layer, Relu):
                out = relu_activations(a)
            elif isinstance(layer, Flatten):
                out = a.reshape(len(a), -1)
            tensors[layer.output] = out
        return Trace(tensors, psums, saturations)

    def mvm(self, name: str, x: np.ndarray, t_s: float, rng, digital: bool = False):
        """One MVM layer on integer activations ``x`` (N, ...): partial sums (N, positions, outputs),
        output activations (N, outputs[, H, W]) and the count of saturated values per stage."""
        mapped = self.mapped.layers[name]
        layer = mapped.layer
        if layer.kind == "conv":
            patches = im2col(x, layer.kernel, layer.stride, layer.pads)
            n_img, ho, wo = patches.shape[:3]
        else:
            patches, (n_img, ho, wo) = x[:, None, None, :], (len(x), 1, 1)
        patches = patches.reshape(n_img * ho * wo, mapped.k)
        psum, sat = (self._digital_psum(mapped, patches) if digital else
                     self._analog_psum(mapped, patches, t_s, rng, ho * wo))
        out, bn_sat = self._batch_norm(mapped, psum)
        sat["bn"] = bn_sat
        out = out.reshape(n_img, ho, wo, mapped.n)
        out = out.transpose(0, 3, 1, 2) if layer.kind == "conv" else out[:, 0, 0]
        return psum.reshape(n_img, ho * wo, mapped.n), out, sat

    def _analog_psum(self, mapped: MappedLayer, patches: np.ndarray, t_s: float, rng, positions: int = 1) -> tuple:
        psum = np.zeros((len(patches), mapped.n), dtype=np.int64)
        sat = {"adc": 0, "accumulator": 0, "gain": 0, "psum": 0}
        lo, hi = signed_range(mapped.psum_bits)
        layers = list(self.mapped.layers)
        first_block = sum(len(self.mapped.layers[n].blocks) for n in layers[:layers.index(mapped.name)])
        for index, block in enumerate(mapped.blocks):
            block_patches = patches[:, block.k_start:block.k_stop]
            if isinstance(rng, ReadKeys):
                codes = self._keyed_block_codes(block, first_block + index, block_patches, positions, t_s, rng)
            else:
                codes = self.block_codes(block, block_patches, t_s, rng)
            half = 2 ** (self.cfg.adc.bits - 1)
            sat["adc"] += int(np.count_nonzero((codes == -half) | (codes == half - 1)))
            gained, stage_sat = tile_stages(self.cfg, codes, self.registers.trims[block.tile][block.tile_cols],
                                            self.registers.gains[block.tile][block.tile_cols])
            sat["accumulator"] += stage_sat["accumulator"]
            sat["gain"] += stage_sat["gain"]
            part = psum[:, block.n_start:block.n_stop]
            total = part + gained
            clipped = np.clip(total, lo, hi)
            sat["psum"] += int(np.count_nonzero(clipped != total))
            psum[:, block.n_start:block.n_stop] = clipped
        return psum, sat

    def _digital_psum(self, mapped: MappedLayer, patches: np.ndarray) -> tuple:
        exact = patches @ mapped.w_int
        psum = np.floor(exact * self.mapped.codes_per_unit + 0.5).astype(np.int64)
        lo, hi = signed_range(mapped.psum_bits)
        return np.clip(psum, lo, hi), {"adc": 0, "accumulator": 0, "gain": 0, "psum": 0}

    def _keyed_block_codes(self, block, block_index: int, patches: np.ndarray, positions: int, t_s: float,
                           keys: ReadKeys) -> np.ndarray:
        """:meth:`block_codes` of every patch (image-major, then position) with its own key."""
        tile = self.tiles[block.tile]
        codes = [tile.block_codes(patch[None], t_s, keys.rng(keys.first_image + m // positions, block_index,
                                                               m % positions), block.tile_rows, block.tile_cols)
                 for m, patch in enumerate(patches)]
        return np.concatenate(codes) if codes else np.zeros((0,) + (self.cfg.weights.slices, self.cfg.input.planes,
                                                                     block.cols), dtype=np.int16)

    def block_codes(self, block, patches: np.ndarray, t_s: float, rng) -> np.ndarray:
        """ADC codes (M, slices, planes, block cols) of one block's columns with only its rows driven."""
        return self.tiles[block.tile].block_codes(patches, t_s, rng, block.tile_rows, block.tile_cols)

    def _batch_norm(self, mapped: MappedLayer, psum: np.ndarray) -> tuple:
        regs, name = self.registers, mapped.name
        params = bn_params(self.cfg, mapped.psum_bits, psum.size)
        m = len(psum)
        out = batch_norm(params, psum.ravel(), np.tile(regs.bn_scale[name], m), np.tile(regs.bn_bias[name], m),
                         regs.shift[name], mapped.layer.relu)
        saturated = int(np.count_nonzero(out["z_clipped"] | out["result_clipped"]))
        return out["result"].reshape(psum.shape), saturated


def bn_params(cfg, width: int, columns: int) -> BatchNormParams:
    """The batch-norm unit of a layer with a ``width``-bit partial sum, evaluated over ``columns`` values."""
    dp = cfg.datapath
    return BatchNormParams(width=width, out_bits=dp.activation_bits, columns=columns, lanes=1,
                           scale_bits=dp.bn_scale_bits, scale_frac_bits=dp.bn_scale_frac_bits,
                           bias_bits=dp.bn_bias_bits)


def tile_stages(cfg, codes: np.ndarray, trims: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, dict]:
    """Trim, shift-and-add and drift gain of a tile for M vectors' codes (M, slices, planes, n):
    the gained results (M, n) and the count of saturated values per stage."""
    m, slices, planes, n = codes.shape
    flat = np.moveaxis(codes, 0, 2).reshape(slices, planes, m * n)
    if np.any(trims):  # a zero trim is the identity: sat(code - 0) = code
        adc = replace(AdcInterfaceParams.from_config(cfg), columns=m * n, columns_per_adc=1, lanes=1)
        flat, _ = adc_trim(adc, flat, np.tile(trims, m))
    acc, acc_sat = shift_add(replace(ShiftAddParams.from_config(cfg), columns=m * n, lanes=1), flat)
    if np.all(gains == 1 << cfg.datapath.gain_frac_bits):  # unit gain is the identity: round(y * 1) = y
        return acc.reshape(m, n), {"accumulator": int(acc_sat.sum()), "gain": 0}
    gained, gain_sat = drift_gain(replace(DriftGainParams.from_config(cfg), columns=m * n, lanes=1), acc,
                                  np.tile(gains, m))
    return gained.reshape(m, n), {"accumulator": int(acc_sat.sum()), "gain": int(gain_sat.sum())}
