"""The layer sequencer's instruction set: one definition for the compiler, the RTL decoder
and the Python interpreter.

An instruction is one 256-bit word (eight 32-bit bus words, word 0 in the low bits). Bits
3:0 hold the opcode; the operands follow from bit 4 upwards in the order of
:data:`OPERANDS`, each an unsigned field of the listed width. A program is a list of
instructions ending in ``END``; an ``MVM`` is followed by its ``blocks`` ``BLOCK`` entries
(row-block major), which the sequencer reads as the layer's placement and skips.

Activation tensors live in the activation memory channel-major, one activation per entry:
element (c, y, x) of a (C, H, W) tensor at ``base + c*H*W + y*W + x``; a flat tensor of F
values at ``base + f`` (flattening moves nothing).

``MVM``
    For every output position (oy, ox), row-major: for every block, gather the block's
    ``rows`` im2col inputs ``k = k_start .. k_start+rows-1`` (k = c*kh*kw + ky*kw + kx;
    ``c0, ky0, kx0`` decompose ``k_start``; positions outside the input read 0) into the
    tile rows ``tile_row ..``, run one MVM on ``tile`` and add its columns ``tile_col ..
    tile_col+cols-1`` into partial sums ``n_start ..`` (a block with ``k_start = 0`` loads
    instead of adding; every sum saturates to ``psum_bits``). Then for every output n:
    ``q = bn(psum[n], scale[param_base+n], bias[param_base+n], shift, relu)`` (the
    batch-norm unit's arithmetic at ``psum_bits``) is written to
    ``out_base + n*out_h*out_w + oy*out_w + ox``. A dense layer is a 1 x 1 convolution of a
    1 x 1 input with ``channels`` = its inputs.
``POOL_MAX`` / ``POOL_AVG``
    Per channel and output position, the max (padding holds the smallest activation) or
    the window sum times ``reciprocal`` rounded half up by 16 bits and saturated (padding
    holds 0 and counts in the window).
``ADD``
    ``out[i] = sat(a[i] + b[i])`` for ``i < length``.
``RELU``
    ``out[i] = max(a[i], 0)``.
``END``
    Inference done.

Opcode 0 and every opcode not listed are invalid: the sequencer stops with an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Opcode", "OPERANDS", "INSTRUCTION_BITS", "WORDS_PER_INSTRUCTION", "OPCODE_BITS", "Instruction",
           "IsaError", "operand_layout"]

INSTRUCTION_BITS = 256
WORDS_PER_INSTRUCTION = INSTRUCTION_BITS // 32
OPCODE_BITS = 4
#: Fractional bits of the average-pool reciprocal.
RECIPROCAL_BITS = 16


class IsaError(ValueError):
    """An operand that does not fit its field, or an unknown opcode."""


class Opcode(enum.IntEnum):
    MVM = 1
    POOL_MAX = 2
    POOL_AVG = 3
    ADD = 4
    RELU = 5
    BLOCK = 6
    END = 7


_SHAPE = (("in_base", 20), ("out_base", 20), ("channels", 16), ("in_h", 10), ("in_w", 10),
          ("kernel_h", 4), ("kernel_w", 4), ("stride_h", 4), ("stride_w", 4), ("pad_top", 4), ("pad_left", 4),
          ("out_h", 10), ("out_w", 10))

#: Operands of every opcode, in bit order from bit 4: (name, width).
OPERANDS: dict[Opcode, tuple[tuple[str, int], ...]] = {
    Opcode.MVM: _SHAPE + (("outputs", 16), ("blocks", 8), ("param_base", 16), ("psum_bits", 7),
                          ("shift", 7), ("relu", 1)),
    Opcode.POOL_MAX: _SHAPE,
    Opcode.POOL_AVG: _SHAPE + (("reciprocal", RECIPROCAL_BITS + 1),),
    Opcode.ADD: (("in_base", 20), ("in_b_base", 20), ("out_base", 20), ("length", 20)),
    Opcode.RELU: (("in_base", 20), ("out_base", 20), ("length", 20)),
    Opcode.BLOCK: (("tile", 12), ("k_start", 16), ("rows", 13), ("n_start", 16), ("cols", 13),
                   ("tile_row", 13), ("tile_col", 13), ("c0", 16), ("ky0", 4), ("kx0", 4)),
    Opcode.END: (),
}


def operand_layout(opcode: Opcode) -> dict[str, tuple[int, int]]:
    """``name -> (bit offset, width)`` of ``opcode``'s operands in the instruction word."""
    layout, offset = {}, OPCODE_BITS
    for name, width in OPERANDS[Opcode(opcode)]:
        layout[name] = (offset, width)
        offset += width
    if offset > INSTRUCTION_BITS:
        raise AssertionError(f"{opcode.name} operands take {offset} bits")
    return layout


@dataclass(frozen=True)
class Instruction:
    """One sequencer instruction: an opcode and its operands (missing operands are 0).

    Parameters
    ----------
    opcode : Opcode
    operands : dict of str to int
    """

    opcode: Opcode
    operands: dict

    def __post_init__(self):
        try:
            opcode = Opcode(self.opcode)
        except ValueError:
            raise IsaError(f"opcode must be one of {', '.join(o.name for o in Opcode)}, not {self.opcode!r}") from None
        object.__setattr__(self, "opcode", opcode)
        layout = operand_layout(opcode)
        for name, value in self.operands.items():
            if name not in layout:
                raise IsaError(f"{opcode.name} has no operand {name!r}; its operands: {', '.join(layout) or 'none'}")
            width = layout[name][1]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << width:
                raise IsaError(f"{opcode.name}.{name} must be an integer from 0 to {(1 << width) - 1} "
                               f"({width} bits), not {value!r}")

    def __getitem__(self, name: str) -> int:
        if name not in operand_layout(self.opcode):
            raise KeyError(f"{self.opcode.name} has no operand {name!r}")
        return int(self.operands.get(name, 0))

    def encode(self) -> int:
        """The 256-bit instruction word."""
        word = int(self.opcode)
        for name, (offset, _) in operand_layout(self.opcode).items():
            word |= self[name] << offset
        return word

    def words(self) -> list[int]:
        """The eight 32-bit bus words of the instruction, word 0 first."""
        word = self.encode()
        return [(word >> (32 * i)) & 0xFFFF_FFFF for i in range(WORDS_PER_INSTRUCTION)]

    @classmethod
    def decode(cls, word: int) -> "Instruction":
        """The instruction of a 256-bit word; :class:`IsaError` for an invalid opcode."""
        code = word & ((1 << OPCODE_BITS) - 1)
        try:
            opcode = Opcode(code)
        except ValueError:
            raise IsaError(f"invalid opcode {code}") from None
        operands = {name: (word >> offset) & ((1 << width) - 1)
                    for name, (offset, width) in operand_layout(opcode).items()}
        return cls(opcode, operands)

    def __str__(self) -> str:
        args = ", ".join(f"{name}={self[name]}" for name in operand_layout(self.opcode))
        return f"{self.opcode.name}({args})"
