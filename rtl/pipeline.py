"""Pipeline helpers (functions, not components): register chains and wide products split
over 18 x 18 multipliers with every partial product and every adder level registered.

An FPGA multiplier block takes 18-bit signed operands; a wider product needs several
blocks and an adder after them, which in one clock cycle is far slower than the block
alone. :func:`registered_product` splits the operands itself so every partial product fits
one block, registers the partials (and, when asked, the operands too: a
:class:`~neurophase.rtl.registered_multiplier.RegisteredMultiplier`, whose registers are
the block's own on an ECP5, so no fabric path runs through the block) and sums them in a
registered adder tree: the product appears a fixed number of cycles (its latency) after
the operands.
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value, signed

from neurophase.rtl.registered_multiplier import RegisteredMultiplier

__all__ = ["delayed", "registered_product"]

MULTIPLIER_BITS = 18   # signed operand width of one multiplier block
CHUNK_BITS = MULTIPLIER_BITS - 1


def delayed(m: Module, value: Value, cycles: int, name: str) -> Value:
    """``value`` as it was ``cycles`` clock cycles ago (a chain of registers; 0 cycles is
    ``value`` itself)."""
    if cycles < 0:
        raise ValueError(f"cycles must be at least 0, not {cycles}")
    value = Value.cast(value)
    for stage in range(cycles):
        register = Signal(value.shape(), name=f"{name}_d{stage + 1}")
        m.d.sync += register.eq(value)
        value = register
    return value


def _chunks(value: Value) -> list:
    """``value`` as ``(part, shift)`` pairs, ``value == sum(part << shift)``, each part a
    signed value of at most :data:`MULTIPLIER_BITS` bits."""
    width, is_signed = len(value), value.shape().signed
    if width + (0 if is_signed else 1) <= MULTIPLIER_BITS:
        return [(value if is_signed else Cat(value, Const(0, 1)).as_signed(), 0)]
    parts, low = [], 0
    while width - low + (0 if is_signed else 1) > MULTIPLIER_BITS:
        parts.append((Cat(value[low:low + CHUNK_BITS], Const(0, 1)).as_signed(), low))
        low += CHUNK_BITS
    top = value[low:]
    parts.append((top.as_signed() if is_signed else Cat(top, Const(0, 1)).as_signed(), low))
    return parts


def registered_product(m: Module, a: Value, b: Value, name: str,
                       operand_registers: bool = False) -> tuple[Signal, int]:
    """``a * b`` with each partial product in one multiplier block, registered, then summed
    by a registered adder tree.

    Parameters
    ----------
    m : Module
        Receives the registers (``sync`` domain) and the multipliers.
    a, b : Value
        Operands, signed or unsigned, any width.
    name : str
        Prefix of the created signals.
    operand_registers : bool
        Register the operands of every partial product too (one cycle more latency): in a
        :class:`~neurophase.rtl.registered_multiplier.RegisteredMultiplier`, submodule
        ``<name>_p<k>``.

    Returns
    -------
    (Signal, int)
        The product (signed, ``len(a) + len(b) + 1`` bits) and its latency in cycles: the
        product of the operands present in cycle ``t`` is on the signal in ``t + latency``.
    """
    a, b = Value.cast(a), Value.cast(b)
    width = len(a) + len(b) + 1
    terms = []
    for a_part, a_shift in _chunks(a):
        for b_part, b_shift in _chunks(b):
            if operand_registers:
                multiplier = RegisteredMultiplier(max(len(a_part), 2), max(len(b_part), 2))
                m.submodules[f"{name}_p{len(terms)}"] = multiplier
                m.d.comb += [multiplier.a.eq(a_part), multiplier.b.eq(b_part),
                             multiplier.load_operands.eq(1), multiplier.load_product.eq(1)]
                partial = multiplier.product
            else:
                partial = Signal(signed(len(a_part) + len(b_part)), name=f"{name}_p{len(terms)}")
                m.d.sync += partial.eq(a_part * b_part)
            terms.append(partial << (a_shift + b_shift) if a_shift + b_shift else partial)
    latency = 2 if operand_registers else 1
    while len(terms) > 1:
        summed = []
        for index in range(0, len(terms), 2):
            pair = terms[index:index + 2]
            total = Signal(signed(width), name=f"{name}_s{latency}_{index // 2}")
            m.d.sync += total.eq(pair[0] + pair[1] if len(pair) == 2 else pair[0])
            summed.append(total)
        terms = summed
        latency += 1
    if len(terms[0]) != width or not terms[0].shape().signed:
        result = Signal(signed(width), name=f"{name}_product")
        m.d.comb += result.eq(terms[0])
        return result, latency
    return terms[0], latency
