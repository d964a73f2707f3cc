"""Saturation of signed values by bit tests, and a three-operand add on one carry chain
(helpers, not components).

A comparison with a constant (``value > hi``) becomes a carry chain in the FPGA flow;
the same decision read from the sign-extension bits is a few LUT levels. These helpers
give exactly ``min(max(value, lo), hi)`` for the two's-complement range of ``bits``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed

__all__ = ["saturate_signed", "saturate_to_width", "add_with_carry"]


def saturate_signed(m: Module, value: Value, bits: int, name: str) -> tuple[Signal, Signal]:
    """``value`` clipped to the signed range of ``bits`` bits, and whether it was clipped.

    Parameters
    ----------
    m : Module
        Receives the combinational assignments.
    value : Value
        A signed value (any width; narrower than ``bits`` never clips).
    bits : int
        Width of the result.
    name : str
        Prefix of the created signals.

    Returns
    -------
    (Signal(signed(bits)), Signal(1))
        The saturated value and the clip flag.
    """
    value = Value.cast(value)
    if not value.shape().signed:
        raise TypeError(f"value must be signed, not {value.shape()!r}")
    result = Signal(signed(bits), name=f"{name}_sat")
    clipped = Signal(name=f"{name}_clipped")
    width = len(value)
    if width <= bits:
        m.d.comb += [result.eq(value), clipped.eq(0)]
        return result, clipped
    sign = value[width - 1]
    top = value[bits - 1:]                   # the sign bit of the result and every bit above
    over = Signal(name=f"{name}_over")       # positive and beyond hi
    under = Signal(name=f"{name}_under")     # negative and below lo
    m.d.comb += [
        over.eq(~sign & top.any()),
        under.eq(sign & ~top.all()),
        clipped.eq(over | under),
        result.eq(Mux(over, (1 << (bits - 1)) - 1, Mux(under, -(1 << (bits - 1)), value[:bits]))),
    ]
    return result, clipped


def add_with_carry(a: Value, b: Value, carry) -> Value:
    """``a + b + carry`` for signed ``a`` and ``b`` and a one-bit ``carry``, as a single
    adder: ``((2a + carry) + (2b + carry)) >> 1``, so the bit rides the carry chain
    instead of needing a second adder.

    Returns
    -------
    Value
        Signed, one bit wider than the wider operand.
    """
    a, b, carry = Value.cast(a), Value.cast(b), Value.cast(carry)
    if not (a.shape().signed and b.shape().signed) or len(carry) != 1:
        raise TypeError("add_with_carry takes two signed values and a one-bit carry")
    return (Cat(carry, a).as_signed() + Cat(carry, b).as_signed()) >> 1


def saturate_to_width(m: Module, value: Value, width: Value, max_bits: int, name: str) -> tuple[Signal, Signal]:
    """``value`` clipped to the signed range of a run-time ``width`` (1 to ``max_bits``
    bits), and whether it was clipped; the result is ``max_bits`` wide.

    Parameters
    ----------
    m : Module
        Receives the combinational assignments.
    value : Value
        A signed value.
    width : Value
        Unsigned width of the range (values above ``max_bits`` act as ``max_bits``).
    max_bits : int
        Widest range and the result width.
    name : str
        Prefix of the created signals.
    """
    value = Value.cast(value)
    if not value.shape().signed:
        raise TypeError(f"value must be signed, not {value.shape()!r}")
    bits = Signal(range(max_bits + 1), name=f"{name}_bits")
    hi = Signal(signed(max_bits + 1), name=f"{name}_hi")
    lo = Signal(signed(max_bits + 1), name=f"{name}_lo")
    result = Signal(signed(max_bits), name=f"{name}_sat")
    clipped = Signal(name=f"{name}_clipped")
    m.d.comb += [
        bits.eq(Mux((width > max_bits) | (width == 0), max_bits, width)),
        hi.eq((Const(1, max_bits + 1) << (bits - 1).as_unsigned()[:len(bits)]) - 1),
        lo.eq(-hi - 1),
        clipped.eq((value > hi) | (value < lo)),
        result.eq(Mux(value > hi, hi, Mux(value < lo, lo, value))),
    ]
    return result, clipped
