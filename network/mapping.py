"""Quantise a float network and map it onto the chip's tiles.

Quantisation
    Activations are ``input.bits``-bit two's-complement integers with one scale per tensor,
    calibrated as ``max |x| / (2**(bits-1) - 1)`` on training data. Tensors joined by
    pooling, flattening, a separate ReLU or a residual add share one scale, so those digital
    operations need no rescaling. Weights are ``analog.weight_bits``-bit integers with one
    scale per output (``weights.scaling = "per-column"``) or per layer (``"per-tile"``),
    taken over the whole layer so that the partial sums of a split layer add up exactly.

Requantisation
    An MVM layer's accumulated result (ADC codes after shift-and-add and drift gain, summed
    over its row blocks) becomes the next activation through the batch-norm unit:
    ``q = sat_A(round(relu(sat_W(round(S y / 2**Fs) + beta)) / 2**shift))``. The real map
    ``q = m y + b`` with ``m = affine_scale * w_scale * s_in / (k * s_out)`` and
    ``b = affine_shift / s_out`` (``k`` ADC codes per unit weight digit) is written into the
    registers ``S = round(m 2**(Fs+shift))`` and ``beta = round(b 2**shift)`` with the
    largest ``shift`` that keeps both in range.

Placement
    Convolutions are unrolled (im2col): the layer is one matrix of K = C kh kw rows and N
    output columns. A matrix larger than a tile is cut into row blocks of at most
    ``tile.rows`` (partial sums added digitally before batch-norm) and column blocks of at
    most ``tile.cols``. Blocks are placed first-fit along each tile's diagonal, so small
    layers share a tile without sharing a row or a column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.crossbar import drive_max
from neurophase.models.devices import device_model_from_config
from neurophase.models.mapping import WeightMapping
from neurophase.network.graph import Add, Flatten, Mvm, Network, Pool, Relu

__all__ = ["Block", "MappedLayer", "MappedNetwork", "map_network", "calibrate_scales", "codes_per_unit",
           "requant_registers", "quantise_matrix"]


@dataclass(frozen=True)
class Block:
    """A rectangle of one layer's weight matrix placed on one tile.

    Parameters
    ----------
    layer : str
    tile : int
        Index of the tile on the chip.
    k_start, k_stop : int
        The layer's matrix rows (im2col inputs) held by the block.
    n_start, n_stop : int
        The layer's outputs held by the block.
    row, col : int
        First tile row and column of the block.
    """

    layer: str
    tile: int
    k_start: int
    k_stop: int
    n_start: int
    n_stop: int
    row: int
    col: int

    @property
    def rows(self) -> int:
        return self.k_stop - self.k_start

    @property
    def cols(self) -> int:
        return self.n_stop - self.n_start

    @property
    def tile_rows(self) -> slice:
        return slice(self.row, self.row + self.rows)

    @property
    def tile_cols(self) -> slice:
        return slice(self.col, self.col + self.cols)


@dataclass
class MappedLayer:
    """The integer form of one MVM layer and where it sits.

    Parameters
    ----------
    layer : Mvm
        The float layer.
    w_int : int64 array (K, N)
        Integer weights in im2col row order.
    w_scale : float array (N,)
        Real value of one integer weight step per output.
    in_scale, out_scale : float
        Scales of the input and output activations.
    blocks : list of Block
        Row-block major: all column blocks of row block 0, then row block 1, ...
    row_blocks : int
    psum_bits : int
        Signed width of the partial-sum adder and of the batch-norm unit of this layer.
    bn_scale, bn_bias : int64 arrays (N,)
        Batch-norm registers S and beta.
    shift : int
        Requantisation shift register.
    """

    layer: Mvm
    w_int: np.ndarray
    w_scale: np.ndarray
    in_scale: float
    out_scale: float
    blocks: list = field(default_factory=list)
    row_blocks: int = 1
    psum_bits: int = 16
    bn_scale: np.ndarray | None = None
    bn_bias: np.ndarray | None = None
    shift: int = 0

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def k(self) -> int:
        return self.w_int.shape[0]

    @property
    def n(self) -> int:
        return self.w_int.shape[1]


@dataclass
class MappedNetwork:
    """A network quantised and placed on a chip configuration.

    Parameters
    ----------
    cfg : ChipConfig
    network : Network
        The float network.
    scales : dict
        Activation scale of every tensor.
    layers : dict
        :class:`MappedLayer` by layer name, for the MVM layers.
    tiles_used : int
    codes_per_unit : float
        ADC codes per unit weight digit per unit input (k); 1 with the exact ADC range.
    """

    cfg: ChipConfig
    network: Network
    scales: dict
    layers: dict
    tiles_used: int
    codes_per_unit: float

    @property
    def blocks(self) -> list:
        return [b for layer in self.layers.values() for b in layer.blocks]

    def tile_weights(self, tile: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights (rows, cols) and per-column scales of one tile (zeros where unused)."""
        cfg = self.cfg
        w_int = np.zeros((cfg.tile.rows, cfg.tile.cols), dtype=np.int64)
        scale = np.ones(cfg.tile.cols)
        for block in self.blocks:
            if block.tile == tile:
                layer = self.layers[block.layer]
                w_int[block.tile_rows, block.tile_cols] = layer.w_int[block.k_start:block.k_stop,
                                                                      block.n_start:block.n_stop]
                scale[block.tile_cols] = layer.w_scale[block.n_start:block.n_stop]
        return w_int, scale

    def placement(self) -> dict:
        """The placement report: per layer its matrix, tiles and blocks; chip utilisation."""
        cfg = self.cfg
        devices_per_weight = 2 * cfg.weights.slices * cfg.weights.devices_per_polarity
        cells = sum(b.rows * b.cols for b in self.blocks)
        layers = []
        for layer in self.layers.values():
            layers.append({
                "layer": layer.name, "kind": layer.layer.kind, "rows": layer.k, "cols": layer.n,
                "row_blocks": layer.row_blocks, "col_blocks": len(layer.blocks) // layer.row_blocks,
                "tiles": sorted({b.tile for b in layer.blocks}),
                "blocks": [{"tile": b.tile, "rows": [b.k_start, b.k_stop], "cols": [b.n_start, b.n_stop],
                            "at": [b.row, b.col]} for b in layer.blocks],
                "weights": layer.k * layer.n, "psum_bits": layer.psum_bits, "shift": layer.shift,
            })
        return {
            "layers": layers,
            "tiles_used": self.tiles_used,
            "tiles_configured": cfg.tile.count,
            "tile_shape": [cfg.tile.rows, cfg.tile.cols],
            "weights": cells,
            "devices_used": cells * devices_per_weight,
            "utilisation_of_used_tiles": cells / (self.tiles_used * cfg.tile.rows * cfg.tile.cols),
            "utilisation_of_chip": cells / (cfg.tile.count * cfg.tile.rows * cfg.tile.cols),
        }


def codes_per_unit(cfg: ChipConfig) -> float:
    """ADC codes per unit weight digit and unit row drive: ``g_unit / LSB`` (1 with the exact ADC range)."""
    device = device_model_from_config(cfg)
    mapping = WeightMapping.from_config(cfg, device)
    lsb = cfg.analog.adc_full_scale * cfg.tile.rows * device.g_max * drive_max(cfg) / 2 ** (cfg.adc.bits - 1)
    return mapping.g_unit / lsb


def check_chip_for_networks(cfg: ChipConfig) -> None:
    """Networks pass activations from layer to layer: the requantised width must fit the inputs."""
    if not cfg.input.signed:
        raise ConfigError("input.encoding must be 'twos-complement' to run a network (activations are signed), "
                          f"not {cfg.input.encoding!r}")
    if cfg.datapath.activation_bits > cfg.input.bits:
        raise ConfigError(f"datapath.activation_bits must not exceed input.bits ({cfg.input.bits}) to run a "
                          f"network, not {cfg.datapath.activation_bits}")


def calibrate_scales(network: Network, data: np.ndarray, bits: int) -> dict:
    """Activation scale of every tensor from float inference on ``data``; joined tensors share one."""
    tensors = network.run(data, keep=True)
    parent = {name: name for name in tensors}

    def find(name):
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for layer in network.layers:
        if isinstance(layer, (Pool, Flatten, Relu, Add)):
            for name in layer.inputs:
                parent[find(name)] = find(layer.output)
    peak: dict = {}
    for name, value in tensors.items():
        root = find(name)
        peak[root] = max(peak.get(root, 0.0), float(np.abs(value).max(initial=0.0)))
    top = 2 ** (bits - 1) - 1
    return {name: (peak[find(name)] or 1.0) / top for name in tensors}


def quantise_layer(cfg: ChipConfig, layer: Mvm) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights (K, N) and per-output scales of one layer, over its whole matrix."""
    return quantise_matrix(cfg, layer.matrix)


def quantise_matrix(cfg: ChipConfig, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights (K, N) and per-output scales of a layer's whole matrix (K, N):
    ``analog.weight_bits`` bits, one scale per output or per layer (``weights.scaling``)."""
    w_max = 2 ** (cfg.analog.weight_bits - 1) - 1
    if cfg.weights.scaling == "per-column":
        peak = np.abs(matrix).max(axis=0)
    else:
        peak = np.full(matrix.shape[1], np.abs(matrix).max(initial=0.0))
    scale = np.where(peak > 0, peak / w_max, 1.0)
    w_int = np.clip(np.rint(matrix / scale), -w_max, w_max).astype(np.int64)
    return w_int, scale


def requant_registers(cfg: ChipConfig, multiplier: np.ndarray, offset: np.ndarray,
                      psum_bits: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Batch-norm registers (S, beta, shift) for ``q = multiplier * y + offset``.

    The shift is the largest that keeps S in ``bn_scale_bits``, beta in ``bn_bias_bits`` and
    a batch-norm result that saturates only where the activation saturates anyway.
    """
    dp = cfg.datapath
    s_top = 2 ** (dp.bn_scale_bits - 1) - 1
    b_top = 2 ** (dp.bn_bias_bits - 1) - 1
    m_peak = float(np.abs(multiplier).max(initial=0.0))
    b_peak = float(np.abs(offset).max(initial=0.0))
    shift = max(psum_bits - dp.activation_bits, 0)
    while shift > 0 and (m_peak * 2.0 ** (dp.bn_scale_frac_bits + shift) > s_top or b_peak * 2.0 ** shift > b_top):
        shift -= 1
    scale = np.clip(np.floor(multiplier * 2.0 ** (dp.bn_scale_frac_bits + shift) + 0.5), -s_top - 1, s_top)
    bias = np.clip(np.floor(offset * 2.0 ** shift + 0.5), -b_top - 1, b_top)
    return scale.astype(np.int64), bias.astype(np.int64), shift


def layer_registers(cfg: ChipConfig, layer: MappedLayer, affine_scale: np.ndarray, affine_shift: np.ndarray,
                    k: float) -> None:
    """Fill ``layer``'s batch-norm registers for the given float affine map."""
    multiplier = affine_scale * layer.w_scale * layer.in_scale / (k * layer.out_scale)
    offset = affine_shift / layer.out_scale
    layer.bn_scale, layer.bn_bias, layer.shift = requant_registers(cfg, multiplier, offset, layer.psum_bits)
    dp = cfg.datapath
    wanted = np.floor(multiplier * 2.0 ** (dp.bn_scale_frac_bits + layer.shift) + 0.5)
    if np.any(wanted != layer.bn_scale):
        peak = float(np.abs(multiplier).max())
        raise ConfigError(
            f"layer {layer.name!r} needs a requantisation multiplier of {peak:.4g}, more than datapath.bn_scale_bits "
            f"{dp.bn_scale_bits} with datapath.bn_scale_frac_bits {dp.bn_scale_frac_bits} can hold (at most "
            f"{(2 ** (dp.bn_scale_bits - 1) - 1) / 2 ** dp.bn_scale_frac_bits:.4g}); use fewer fractional bits or a "
            "wider ADC range (analog.adc_full_scale)")


def _place(cfg: ChipConfig, layers: list) -> int:
    rows, cols = cfg.tile.rows, cfg.tile.cols
    corners: list = []  # next free (row, col) of every opened tile
    for layer in layers:
        k_cuts = list(range(0, layer.k, rows)) + [layer.k]
        n_cuts = list(range(0, layer.n, cols)) + [layer.n]
        layer.row_blocks = len(k_cuts) - 1
        for k0, k1 in zip(k_cuts, k_cuts[1:]):
            for n0, n1 in zip(n_cuts, n_cuts[1:]):
                tile = next((t for t, (r, c) in enumerate(corners) if r + k1 - k0 <= rows and c + n1 - n0 <= cols),
                            None)
                if tile is None:
                    corners.append((0, 0))
                    tile = len(corners) - 1
                r, c = corners[tile]
                layer.blocks.append(Block(layer.name, tile, k0, k1, n0, n1, r, c))
                corners[tile] = (r + k1 - k0, c + n1 - n0)
    return len(corners)


def map_network(network: Network, cfg: ChipConfig, calibration_inputs: np.ndarray) -> MappedNetwork:
    """Quantise ``network`` (activation ranges from ``calibration_inputs``) and place it on ``cfg``'s tiles.

    Raises
    ------
    ConfigError
        When the chip cannot run networks (input encoding, activation width) or the network
        needs more tiles than ``tile.count`` (the message gives both numbers and the layers).
    """
    check_chip_for_networks(cfg)
    data = network.check_inputs(calibration_inputs)
    scales = calibrate_scales(network, data, cfg.input.bits)
    k = codes_per_unit(cfg)
    layers = []
    for layer in network.mvm_layers:
        w_int, w_scale = quantise_layer(cfg, layer)
        layers.append(MappedLayer(layer, w_int, w_scale, scales[layer.input], scales[layer.output]))
    tiles_used = _place(cfg, layers)
    if tiles_used > cfg.tile.count:
        detail = ", ".join(f"{m.name} {m.k} x {m.n}" for m in layers)
        raise ConfigError(f"the network needs {tiles_used} tiles of {cfg.tile.rows} x {cfg.tile.cols} but the chip "
                          f"has tile.count = {cfg.tile.count} (layers as rows x outputs: {detail})")
    for layer in layers:
        layer.psum_bits = cfg.accumulator_bits + math.ceil(math.log2(layer.row_blocks))
        if layer.psum_bits > 62:
            raise ConfigError(f"layer {layer.name!r} needs a {layer.psum_bits}-bit partial sum; at most 62 bits")
        layer_registers(cfg, layer, layer.layer.scale, layer.layer.shift, k)
    return MappedNetwork(cfg, network, scales, {m.name: m for m in layers}, tiles_used, k)
