"""A signed multiplier with registered operands and a registered product."""

from amaranth.hdl import ClockSignal, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisteredMultiplier", "ECP5_DSP_BITS"]

#: Operand width of the ECP5's MULT18X18D (signed operands up to this many bits fit one block).
ECP5_DSP_BITS = 18


class RegisteredMultiplier(wiring.Component):
    """``product = a * b`` (signed) with an operand stage and a product stage.

    ``load_operands`` takes ``a`` and ``b`` into the operand registers; ``load_product``
    takes the operand registers' product into the product register. So a pair loaded in
    one cycle is the product from the cycle after a later ``load_product``.

    Elaborated for a Lattice ECP5 platform (``platform.family == "ecp5"``) with operands of
    at most 18 bits, the three registers are the MULT18X18D's own input and output
    registers: the multiplier's paths then stay inside the DSP block, wherever the placer
    puts it. Otherwise (simulation, Verilog without a platform, wider operands) they are
    ordinary registers around a ``*``. The registers are reset-less in both forms.

    Parameters
    ----------
    a_bits, b_bits : int
        Widths of the signed operands.

    Members
    -------
    a : In(signed(a_bits))
    b : In(signed(b_bits))
    load_operands, load_product : In(1)
        Clock enables of the operand registers and of the product register.
    product : Out(signed(a_bits + b_bits))
    """

    def __init__(self, a_bits: int, b_bits: int):
        for name, bits in (("a_bits", a_bits), ("b_bits", b_bits)):
            if isinstance(bits, bool) or not isinstance(bits, int) or bits < 2:
                raise ValueError(f"{name} must be an integer of at least 2, not {bits!r}")
        self.a_bits, self.b_bits = a_bits, b_bits
        super().__init__({
            "a": In(signed(a_bits)),
            "b": In(signed(b_bits)),
            "load_operands": In(1),
            "load_product": In(1),
            "product": Out(signed(a_bits + b_bits)),
        })

    def uses_dsp_registers(self, platform) -> bool:
        """Whether ``platform`` gets the ECP5 DSP block's registers (see the class)."""
        return (getattr(platform, "family", None) == "ecp5"
                and max(self.a_bits, self.b_bits) <= ECP5_DSP_BITS)

    def elaborate(self, platform):
        if self.uses_dsp_registers(platform):
            return self._ecp5_dsp()
        m = Module()
        a = Signal.like(self.a, reset_less=True)
        b = Signal.like(self.b, reset_less=True)
        product = Signal.like(self.product, reset_less=True)
        with m.If(self.load_operands):
            m.d.sync += [a.eq(self.a), b.eq(self.b)]
        with m.If(self.load_product):
            m.d.sync += product.eq(a * b)
        m.d.comb += self.product.eq(product)
        return m

    def _ecp5_dsp(self) -> Module:
        m = Module()
        a = Signal(signed(ECP5_DSP_BITS))
        b = Signal(signed(ECP5_DSP_BITS))
        p = Signal(36)
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.product.eq(p[:len(self.product)])]
        ports = {f"i_A{i}": a[i] for i in range(ECP5_DSP_BITS)}
        ports.update({f"i_B{i}": b[i] for i in range(ECP5_DSP_BITS)})
        ports.update({f"i_C{i}": 0 for i in range(ECP5_DSP_BITS)})
        ports.update({f"o_P{i}": p[i] for i in range(36)})
        ports.update({"i_SIGNEDA": 1, "i_SIGNEDB": 1, "i_SOURCEA": 0, "i_SOURCEB": 0,
                      "i_CLK0": ClockSignal("sync"), "i_CE0": self.load_operands, "i_CE1": self.load_product,
                      **{f"i_RST{i}": 0 for i in range(4)}})
        params = {"p_REG_INPUTA_CLK": "CLK0", "p_REG_INPUTA_CE": "CE0", "p_REG_INPUTA_RST": "RST0",
                  "p_REG_INPUTB_CLK": "CLK0", "p_REG_INPUTB_CE": "CE0", "p_REG_INPUTB_RST": "RST0",
                  "p_REG_INPUTC_CLK": "NONE", "p_REG_PIPELINE_CLK": "NONE",
                  "p_REG_OUTPUT_CLK": "CLK0", "p_REG_OUTPUT_CE": "CE1", "p_REG_OUTPUT_RST": "RST0",
                  **{f"p_CLK{i}_DIV": "DISABLED" for i in range(4)},
                  "p_GSR": "DISABLED", "p_RESETMODE": "SYNC", "p_HIGHSPEED_CLK": "NONE",
                  "p_MULT_BYPASS": "DISABLED", "p_CAS_MATCH_REG": "FALSE", "p_SOURCEB_MODE": "B_SHIFT"}
        m.submodules.dsp = Instance("MULT18X18D", **params, **ports)
        return m

