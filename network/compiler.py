"""The network compiler: a mapped network as a program of the chip's layer sequencer, with
the memory images the host loads before running it.

:func:`compile_network` turns a :class:`~neurophase.network.mapping.MappedNetwork` into a
:class:`CompiledNetwork`:

* the program (:mod:`neurophase.models.chip_isa`): per MVM layer an ``MVM`` followed by its
  ``BLOCK`` entries (the placement, row-block major), per pooling ``POOL_MAX`` or
  ``POOL_AVG`` (global average pooling is one window over the whole image), per residual
  add ``ADD``, per separate ReLU ``RELU``, and ``END``; a flatten moves nothing (the
  flattened tensor is its input's region under another name);
* the activation memory layout: every tensor its own region (the input first, then every
  layer's output in network order), so all of an inference's activations stay readable;
* the batch-norm parameter image: every MVM layer's scale and bias at its ``param_base``;
* every used tile's register images (trims 0, unit drift gains), integer weights,
  per-column weight scales and target conductances;
* a cycle estimate per instruction (:func:`neurophase.models.chip_golden.estimate_cycles`)
  and a listing.

A network that does not fit the chip's sequencer (memories, partial-sum buffer, row blocks,
an instruction field) is refused with a :class:`~neurophase.config.ConfigError` naming the
resource, what the network needs and what the chip has. :func:`write_compiled` writes the
result as files (see docs/compiler.md); :func:`run_compiled` executes it on the bit-true
chip model.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from neurophase.config import ChipConfig, ConfigError
from neurophase.models.chip_golden import ChipInterpreter, block_cycles, estimate_cycles
from neurophase.models.chip_isa import RECIPROCAL_BITS, Instruction, Opcode, operand_layout
from neurophase.models.crossbar import reference_weights, target_conductances
from neurophase.models.devices import device_model_from_config
from neurophase.models.mapping import WeightMapping
from neurophase.network.golden import Registers
from neurophase.network.graph import Add, Flatten, Mvm, Pool, Relu
from neurophase.network.mapping import MappedNetwork

__all__ = ["TensorRegion", "TileImage", "LayerProgram", "CompiledNetwork", "compile_network", "write_compiled",
           "interpreter", "run_compiled", "COMPILED_FORMAT"]

#: Version of the compiler's output files (manifest.json ``format``).
COMPILED_FORMAT = 1


@dataclass(frozen=True)
class TensorRegion:
    """Where one tensor lives in the activation memory (channel-major, one entry per value).

    Parameters
    ----------
    name : str
    base : int
        First activation memory address.
    shape : tuple
        Shape of one example: (C, H, W) or (F,).
    scale : float
        Real value of one activation step.
    alias_of : str or None
        The tensor whose region this one shares (a flatten), or None for its own region.
    """

    name: str
    base: int
    shape: tuple
    scale: float
    alias_of: str | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def as_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "shape": list(self.shape), "size": self.size,
                "scale": self.scale, "alias_of": self.alias_of}


@dataclass
class TileImage:
    """Everything the host writes into one tile.

    Parameters
    ----------
    tile : int
    w_int : int64 array (tile.rows, tile.cols)
        Integer weights (0 where unused).
    w_scale : float array (tile.cols,)
        Real value of one weight step per column.
    g_target : float array
        Target conductances in µS, (2, slices, rows, cols + reference columns[, devices per
        polarity]) as :func:`neurophase.models.crossbar.program_tile` programs them.
    trims, gains : int64 arrays (tile.cols,)
        ADC offset trim and drift-gain register images.
    """

    tile: int
    w_int: np.ndarray
    w_scale: np.ndarray
    g_target: np.ndarray
    trims: np.ndarray
    gains: np.ndarray


@dataclass
class LayerProgram:
    """One layer's part of the program.

    Parameters
    ----------
    name : str
    kind : str
        ``mvm-conv``, ``mvm-dense``, ``pool-max``, ``pool-avg``, ``pool-global-avg``, ``add``,
        ``relu`` or ``flatten``.
    pc : int or None
        First instruction (None for a flatten, which has none).
    instructions : int
        Program words, BLOCK entries included.
    inputs, output : tuple of str, str
        Tensors read and written.
    cycles : int
        Estimated cycles per image.
    """

    name: str
    kind: str
    pc: int | None
    instructions: int
    inputs: tuple
    output: str
    cycles: int

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "pc": self.pc, "instructions": self.instructions,
                "inputs": list(self.inputs), "output": self.output, "cycles": self.cycles}


@dataclass
class CompiledNetwork:
    """A network compiled for the chip.

    Parameters
    ----------
    mapped : MappedNetwork
    program : list of Instruction
        From pc 0, ending in END.
    pc_layer : list of str
        The layer of every program word ("" for END).
    cycles : list of int
        Estimated cycles of every program word (an MVM's include its BLOCK entries, which show 0).
    tensors : dict
        :class:`TensorRegion` by tensor name.
    activation_words : int
        Activation memory entries used.
    bn_scale, bn_bias : int64 arrays
        The batch-norm parameter memory image from address 0.
    tiles : list of TileImage
    layers : list of LayerProgram
    """

    mapped: MappedNetwork
    program: list
    pc_layer: list
    cycles: list
    tensors: dict
    activation_words: int
    bn_scale: np.ndarray
    bn_bias: np.ndarray
    tiles: list
    layers: list = field(default_factory=list)

    @property
    def cfg(self) -> ChipConfig:
        return self.mapped.cfg

    @property
    def input(self) -> TensorRegion:
        return self.tensors[self.mapped.network.input_name]

    @property
    def output(self) -> TensorRegion:
        return self.tensors[self.mapped.network.output_name]

    @property
    def cycles_per_image(self) -> int:
        return int(sum(self.cycles))

    @property
    def time_per_image_us(self) -> float:
        return self.cycles_per_image / self.cfg.clock_mhz

    def hex_lines(self) -> list[str]:
        """The program as 64-hex-digit words (bit 255 first), one per instruction."""
        return [f"{ins.encode():064x}" for ins in self.program]

    def summary(self) -> dict:
        seq = self.cfg.sequencer
        return {
            "tiles": len(self.tiles), "tiles_configured": self.cfg.tile.count,
            "instructions": len(self.program), "program_words": seq.program_words,
            "activation_words_used": self.activation_words, "activation_words": seq.activation_words,
            "param_words_used": len(self.bn_scale), "param_words": seq.param_words,
            "cycles_per_image": self.cycles_per_image, "clock_mhz": self.cfg.clock_mhz,
            "time_per_image_us": self.time_per_image_us,
            "images_per_s": 1e6 / self.time_per_image_us if self.cycles_per_image else 0.0,
        }

    def listing(self) -> str:
        """The program as text: pc, layer, instruction and operands, estimated cycles; per-layer
        cycles and the total per image."""
        cfg = self.cfg
        width = max([len(n) for n in self.pc_layer] + [len(info.name) for info in self.layers] + [5])
        lines = [f"NeuroPhase chip program: {len(self.program)} instructions, {len(self.tiles)} tiles of "
                 f"{cfg.tile.rows} x {cfg.tile.cols}, {self.activation_words} of {cfg.sequencer.activation_words} "
                 f"activation words, {len(self.bn_scale)} of {cfg.sequencer.param_words} parameter words",
                 "cycles: estimate per instruction (an MVM's include its BLOCK entries; a BLOCK shows its cycles per "
                 "output position)", "",
                 f"{'pc':>5}  {'layer':<{width}}  {'cycles':>10}  instruction"]
        for pc, (ins, layer) in enumerate(zip(self.program, self.pc_layer)):
            operands = " ".join(f"{name}={ins[name]}" for name in operand_layout(ins.opcode))
            if ins.opcode == Opcode.BLOCK:
                cycles = f"({block_cycles(cfg, ins)}/pos)"
                text = f"  BLOCK {operands}"
            else:
                cycles, text = str(self.cycles[pc]), f"{ins.opcode.name} {operands}".rstrip()
            lines.append(f"{pc:>5}  {layer:<{width}}  {cycles:>10}  {text}")
        lines += ["", "per layer:", f"  {'layer':<{width}}  {'kind':<16} {'pc':>5} {'words':>5} {'cycles':>10}"]
        for info in self.layers:
            pc = "-" if info.pc is None else str(info.pc)
            lines.append(f"  {info.name:<{width}}  {info.kind:<16} {pc:>5} {info.instructions:>5} {info.cycles:>10}")
        s = self.summary()
        lines += ["", f"total: {s['cycles_per_image']} cycles per image = {s['time_per_image_us']:.3f} us at "
                      f"{cfg.clock_mhz:g} MHz ({s['images_per_s']:.0f} images/s)"]
        return "\n".join(lines) + "\n"


def _operand(layer: str, opcode: Opcode, name: str, value: int, what: str) -> int:
    width = operand_layout(opcode)[name][1]
    if not 0 <= int(value) < 1 << width:
        raise ConfigError(f"layer {layer!r} needs {what} = {value}, but the {opcode.name} instruction's {name} field "
                          f"holds 0 .. {(1 << width) - 1} ({width} bits)")
    return int(value)


def _instruction(layer: str, opcode: Opcode, operands: dict, what: dict | None = None) -> Instruction:
    what = what or {}
    return Instruction(opcode, {name: _operand(layer, opcode, name, value, what.get(name, name))
                                for name, value in operands.items()})


def _image_shape(shape: tuple) -> tuple:
    """(C, H, W) of a tensor; a vector (F,) is F channels of 1 x 1."""
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


def _shape_operands(in_shape: tuple, out_shape: tuple, kernel: tuple, stride: tuple, pads: tuple) -> dict:
    c, h, w = _image_shape(in_shape)
    _, oh, ow = _image_shape(out_shape)
    return {"channels": c, "in_h": h, "in_w": w, "kernel_h": kernel[0], "kernel_w": kernel[1],
            "stride_h": stride[0], "stride_w": stride[1], "pad_top": pads[0], "pad_left": pads[1],
            "out_h": oh, "out_w": ow}


_WHAT = {"channels": "input channels", "in_h": "input height", "in_w": "input width", "kernel_h": "kernel height",
         "kernel_w": "kernel width", "stride_h": "stride (rows)", "stride_w": "stride (columns)",
         "pad_top": "top padding", "pad_left": "left padding", "out_h": "output height", "out_w": "output width",
         "outputs": "outputs", "blocks": "blocks (tile placements)", "length": "elements"}


def _layout(mapped: MappedNetwork) -> tuple[dict, int]:
    net = mapped.network
    tensors = {net.input_name: TensorRegion(net.input_name, 0, net.shapes[net.input_name],
                                            float(mapped.scales[net.input_name]))}
    top = tensors[net.input_name].size
    for layer in net.layers:
        shape, scale = net.shapes[layer.output], float(mapped.scales.get(layer.output, 1.0))
        if isinstance(layer, Flatten):
            source = tensors[layer.input]
            tensors[layer.output] = TensorRegion(layer.output, source.base, shape, scale,
                                                 source.alias_of or source.name)
        else:
            tensors[layer.output] = TensorRegion(layer.output, top, shape, scale)
            top += tensors[layer.output].size
    return tensors, top


def _check_fits(mapped: MappedNetwork, tensors: dict, words: int, program: list, params: int) -> None:
    seq = mapped.cfg.sequencer
    if words > seq.activation_words:
        biggest = sorted((t for t in tensors.values() if t.alias_of is None), key=lambda t: -t.size)[:3]
        raise ConfigError(f"the network's activations need {words} activation memory words (every tensor its own "
                          f"region; largest: {', '.join(f'{t.name} {t.size}' for t in biggest)}) but the chip has "
                          f"sequencer.activation_words = {seq.activation_words}")
    if len(program) > seq.program_words:
        raise ConfigError(f"the program needs {len(program)} instructions (BLOCK entries included) but the chip has "
                          f"sequencer.program_words = {seq.program_words}")
    if params > seq.param_words:
        raise ConfigError(f"the network's batch-norm parameters need {params} words (one per MVM output) but the chip "
                          f"has sequencer.param_words = {seq.param_words}")


def _check_layer(mapped: MappedNetwork, name: str) -> None:
    cfg, m = mapped.cfg, mapped.layers[name]
    seq = cfg.sequencer
    if m.n > seq.psum_words:
        raise ConfigError(f"layer {name!r} has {m.n} outputs but the partial-sum buffer holds "
                          f"sequencer.psum_words = {seq.psum_words}")
    if m.row_blocks > seq.max_row_blocks:
        raise ConfigError(f"layer {name!r} needs {m.row_blocks} row blocks ({m.k} inputs on tiles of {cfg.tile.rows} "
                          f"rows) but the chip allows sequencer.max_row_blocks = {seq.max_row_blocks}")
    if m.psum_bits > cfg.psum_bits:
        raise ConfigError(f"layer {name!r} needs a {m.psum_bits}-bit partial sum but the chip's adder has "
                          f"psum_bits = {cfg.psum_bits}")


def _mvm_instructions(mapped: MappedNetwork, layer: Mvm, tensors: dict, param_base: int) -> list:
    m, net = mapped.layers[layer.name], mapped.network
    _check_layer(mapped, layer.name)
    operands = _shape_operands(net.shapes[layer.input], net.shapes[layer.output], layer.kernel, layer.stride,
                               layer.pads)
    operands.update(in_base=tensors[layer.input].base, out_base=tensors[layer.output].base, outputs=m.n,
                    blocks=len(m.blocks), param_base=param_base, psum_bits=m.psum_bits, shift=m.shift,
                    relu=int(layer.relu))
    what = dict(_WHAT, param_base="a parameter base", shift="a requantisation shift")
    program = [_instruction(layer.name, Opcode.MVM, operands, what)]
    kh, kw = layer.kernel
    for b in m.blocks:
        c0, rest = divmod(b.k_start, kh * kw)
        ky0, kx0 = divmod(rest, kw)
        program.append(_instruction(layer.name, Opcode.BLOCK, {
            "tile": b.tile, "k_start": b.k_start, "rows": b.rows, "n_start": b.n_start, "cols": b.cols,
            "tile_row": b.row, "tile_col": b.col, "c0": c0, "ky0": ky0, "kx0": kx0},
            {"k_start": "a block's first input", "n_start": "a block's first output", "rows": "block rows",
             "cols": "block columns", "c0": "a block's first channel", "tile": "a tile index"}))
    return program


def _pool_instruction(mapped: MappedNetwork, layer: Pool, tensors: dict) -> Instruction:
    net = mapped.network
    in_shape = net.shapes[layer.input]
    if layer.kind == "global-avg":
        kernel, stride, pads = (in_shape[1], in_shape[2]), (1, 1), (0, 0, 0, 0)
    else:
        kernel, stride, pads = layer.kernel, layer.stride, layer.pads
    operands = _shape_operands(in_shape, net.shapes[layer.output], kernel, stride, pads)
    operands.update(in_base=tensors[layer.input].base, out_base=tensors[layer.output].base)
    if layer.kind == "max":
        return _instruction(layer.name, Opcode.POOL_MAX, operands, _WHAT)
    operands["reciprocal"] = int(np.floor((1 << RECIPROCAL_BITS) / (kernel[0] * kernel[1]) + 0.5))
    return _instruction(layer.name, Opcode.POOL_AVG, operands, _WHAT)


def _layer_kind(layer) -> str:
    if isinstance(layer, Mvm):
        return f"mvm-{layer.kind}"
    if isinstance(layer, Pool):
        return f"pool-{layer.kind}"
    return type(layer).__name__.lower()


def _tile_images(mapped: MappedNetwork) -> list:
    cfg = mapped.cfg
    mapping = WeightMapping.from_config(cfg, device_model_from_config(cfg))
    ref_w_int = reference_weights(cfg, mapping)
    registers = Registers.compiled(mapped)
    images = []
    for t in range(mapped.tiles_used):
        w_int, w_scale = mapped.tile_weights(t)
        images.append(TileImage(t, w_int, w_scale, target_conductances(cfg, mapping, w_int, ref_w_int),
                                registers.trims[t], registers.gains[t]))
    return images


def compile_network(mapped: MappedNetwork) -> CompiledNetwork:
    """Compile a mapped network into the sequencer's program and memory images.

    Parameters
    ----------
    mapped : MappedNetwork

    Returns
    -------
    CompiledNetwork

    Raises
    ------
    ConfigError
        When the network does not fit the chip: activation, program or parameter memory,
        the partial-sum buffer, the row blocks of a layer, or an instruction field (the
        message names the resource, what is needed and what the chip has).
    """
    cfg, net = mapped.cfg, mapped.network
    tensors, words = _layout(mapped)
    registers = Registers.compiled(mapped)
    program, pc_layer, layers = [], [], []
    scales, biases, param_base = [], [], 0
    for layer in net.layers:
        pc = len(program)
        if isinstance(layer, Mvm):
            part = _mvm_instructions(mapped, layer, tensors, param_base)
            scales.append(registers.bn_scale[layer.name])
            biases.append(registers.bn_bias[layer.name])
            param_base += mapped.layers[layer.name].n
        elif isinstance(layer, Pool):
            part = [_pool_instruction(mapped, layer, tensors)]
        elif isinstance(layer, Add):
            part = [_instruction(layer.name, Opcode.ADD, {
                "in_base": tensors[layer.a].base, "in_b_base": tensors[layer.b].base,
                "out_base": tensors[layer.output].base, "length": tensors[layer.output].size}, _WHAT)]
        elif isinstance(layer, Relu):
            part = [_instruction(layer.name, Opcode.RELU, {
                "in_base": tensors[layer.input].base, "out_base": tensors[layer.output].base,
                "length": tensors[layer.output].size}, _WHAT)]
        else:
            part = []
        program += part
        pc_layer += [layer.name] * len(part)
        layers.append(LayerProgram(layer.name, _layer_kind(layer), pc if part else None, len(part), layer.inputs,
                                   layer.output, 0))
    program.append(Instruction(Opcode.END, {}))
    pc_layer.append("")
    _check_fits(mapped, tensors, words, program, param_base)
    cycles = _program_cycles(cfg, program)
    for info in layers:
        if info.pc is not None:
            info.cycles = int(sum(cycles[info.pc:info.pc + info.instructions]))
    empty = np.zeros(0, dtype=np.int64)
    return CompiledNetwork(mapped, program, pc_layer, cycles, tensors, words,
                           np.concatenate(scales) if scales else empty, np.concatenate(biases) if biases else empty,
                           _tile_images(mapped), layers)


def _program_cycles(cfg: ChipConfig, program: list) -> list:
    cycles = []
    for pc, ins in enumerate(program):
        if ins.opcode == Opcode.BLOCK:
            cycles.append(0)
        elif ins.opcode == Opcode.MVM:
            cycles.append(estimate_cycles(cfg, ins, program[pc + 1:pc + 1 + ins["blocks"]]))
        else:
            cycles.append(estimate_cycles(cfg, ins))
    return cycles


# -- running ---------------------------------------------------------------------------------------
def interpreter(compiled: CompiledNetwork, codes, trims=None, gains=None) -> ChipInterpreter:
    """A :class:`~neurophase.models.chip_golden.ChipInterpreter` loaded like the host loads the
    chip: program, parameter memories, every tile's trims and gains (the compiled images, or
    ``trims``/``gains``: one array per used tile, e.g. ``NetworkChip.registers.trims`` after
    drift compensation)."""
    cfg = compiled.cfg
    seq = cfg.sequencer
    trims_given, gains_given = trims, gains
    scale, bias = np.zeros(seq.param_words, dtype=np.int64), np.zeros(seq.param_words, dtype=np.int64)
    scale[:len(compiled.bn_scale)], bias[:len(compiled.bn_bias)] = compiled.bn_scale, compiled.bn_bias
    trims = np.zeros((cfg.tile.count, cfg.tile.cols), dtype=np.int64)
    gains = np.full((cfg.tile.count, cfg.tile.cols), 1 << cfg.datapath.gain_frac_bits, dtype=np.int64)
    for image in compiled.tiles:
        trims[image.tile] = image.trims if trims_given is None else trims_given[image.tile]
        gains[image.tile] = image.gains if gains_given is None else gains_given[image.tile]
    chip = ChipInterpreter(cfg, codes, bn_scale=scale, bn_bias=bias, trims=trims, gains=gains)
    chip.load_program(compiled.program)
    return chip


def run_compiled(compiled: CompiledNetwork, inputs: np.ndarray, code_source: Callable[[int], Callable],
                 trims=None, gains=None) -> tuple[dict, list]:
    """Run the compiled program once per image on the bit-true chip model.

    Parameters
    ----------
    compiled : CompiledNetwork
    inputs : int array (N, *input_shape)
        Quantised input activations (``input.bits``).
    code_source : callable
        ``code_source(i)`` gives the code source of image ``i`` (0 .. N-1).
    trims, gains : lists of int arrays (tile.cols,), optional
        Register images of every used tile in place of the compiled ones.

    Returns
    -------
    tensors : dict
        Every tensor's activations (N, *shape) read back from the activation memory.
    stats : list of RunStats
        One per image.
    """
    x = np.asarray(inputs)
    region = compiled.input
    if x.shape[1:] != tuple(region.shape):
        raise ValueError(f"inputs must have shape (N, {', '.join(map(str, region.shape))}), not {x.shape}")
    tensors = {name: np.zeros((len(x), *t.shape), dtype=np.int64) for name, t in compiled.tensors.items()}
    stats = []
    for i in range(len(x)):
        chip = interpreter(compiled, code_source(i), trims, gains)
        chip.activations[region.base:region.base + region.size] = x[i].reshape(-1)
        stats.append(chip.run())
        for name, t in compiled.tensors.items():
            tensors[name][i] = chip.activations[t.base:t.base + t.size].reshape(t.shape)
    return tensors, stats


# -- files ------------------------------------------------------------------------------------------
def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _program_json(compiled: CompiledNetwork) -> dict:
    return {"format": COMPILED_FORMAT, "instructions": [
        {"pc": pc, "layer": layer, "opcode": ins.opcode.name, "operands": {n: ins[n] for n in operand_layout(ins.opcode)},
         "word": f"{ins.encode():064x}", "cycles": cycles}
        for pc, (ins, layer, cycles) in enumerate(zip(compiled.program, compiled.pc_layer, compiled.cycles))]}


def _layout_json(compiled: CompiledNetwork) -> dict:
    net, seq = compiled.mapped.network, compiled.cfg.sequencer
    return {"format": COMPILED_FORMAT, "activation_words_used": compiled.activation_words,
            "activation_words": seq.activation_words, "activation_bits": compiled.cfg.datapath.activation_bits,
            "input": net.input_name, "output": net.output_name,
            "tensors": [t.as_dict() for t in compiled.tensors.values()],
            "layers": [dict(info.as_dict(), **_layer_params(compiled, info)) for info in compiled.layers]}


def _layer_params(compiled: CompiledNetwork, info: LayerProgram) -> dict:
    m = compiled.mapped.layers.get(info.name)
    if m is None:
        return {}
    ins = compiled.program[info.pc]
    return {"param_base": ins["param_base"], "outputs": m.n, "psum_bits": m.psum_bits, "shift": m.shift,
            "relu": bool(ins["relu"]), "row_blocks": m.row_blocks,
            "blocks": [{"tile": b.tile, "rows": [b.k_start, b.k_stop], "cols": [b.n_start, b.n_stop],
                        "at": [b.row, b.col]} for b in m.blocks]}


def write_compiled(compiled: CompiledNetwork, out_dir: str | Path) -> dict:
    """Write the compiled network to ``out_dir`` (created when missing), every file atomically.

    Files: ``program.hex`` (one 64-hex-digit instruction per line, pc 0 first), ``program.json``,
    ``listing.txt``, ``layout.json``, ``params.npz`` (``bn_scale``, ``bn_bias``), ``tiles.npz``
    (``w_int``, ``w_scale``, ``g_target``, ``trims``, ``gains``, stacked over the used tiles),
    ``manifest.json`` (configuration, summary, input and output tensors, every file's SHA-256).

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    OutputPathError
        When ``out_dir`` cannot be created or written (checked before anything is written).
    """
    from neurophase.atomic import write_bytes_atomic, write_text_atomic
    from neurophase.paths import check_writable_dir

    out_dir = check_writable_dir(out_dir, "--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles = compiled.tiles
    files = {
        "program.hex": ("\n".join(compiled.hex_lines()) + "\n").encode(),
        "program.json": (json.dumps(_program_json(compiled), indent=1) + "\n").encode(),
        "listing.txt": compiled.listing().encode(),
        "layout.json": (json.dumps(_layout_json(compiled), indent=2) + "\n").encode(),
        "params.npz": _npz_bytes(bn_scale=compiled.bn_scale, bn_bias=compiled.bn_bias),
        "tiles.npz": _npz_bytes(tile=np.array([t.tile for t in tiles], dtype=np.int64),
                                w_int=np.stack([t.w_int for t in tiles]), w_scale=np.stack([t.w_scale for t in tiles]),
                                g_target=np.stack([t.g_target for t in tiles]), trims=np.stack([t.trims for t in tiles]),
                                gains=np.stack([t.gains for t in tiles])),
    }
    kinds = {"program.hex": "program", "program.json": "program", "listing.txt": "listing",
             "layout.json": "activation layout", "params.npz": "batch-norm parameters", "tiles.npz": "tile images"}
    for name, data in files.items():
        write_bytes_atomic(out_dir / name, data)
    mapped, net = compiled.mapped, compiled.mapped.network
    manifest = {
        "format": COMPILED_FORMAT,
        "summary": compiled.summary(),
        "input": dict(compiled.input.as_dict(), bits=compiled.cfg.input.bits,
                      quantisation="clip(floor(x / scale + 1/2)) to input.bits signed"),
        "output": dict(compiled.output.as_dict(), bits=compiled.cfg.datapath.activation_bits),
        "entry_pc": 0,
        "layers": [info.as_dict() for info in compiled.layers],
        "placement": mapped.placement(),
        "files": [{"path": name, "kind": kinds[name], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in files.items()],
        "config": compiled.cfg.to_dict(),
        "network": {"input": net.input_name, "output": net.output_name},
    }
    write_text_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=_json_default) + "\n")
    return manifest


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
