"""Simulation models of the ECP5 primitives the RTL instantiates for an ECP5 platform.

Yosys ships the MULT18X18D only as a black box, so Verilog elaborated for the board (whose
:class:`~neurophase.rtl.registered_multiplier.RegisteredMultiplier` instances are
MULT18X18D blocks with their own registers) cannot be simulated as it is. The model here
implements the subset those instances use, following the ECP5 sysDSP description: 18-bit
operands, signed per ``SIGNEDA``/``SIGNEDB``, input registers A and B and the output
register, each either bypassed (``"NONE"``) or clocked by ``CLK0`` with a clock enable
``CE0``/``CE1`` and a synchronous reset ``RST0``. Any other setting stops the simulation
at time 0 with a message naming the parameter, so the model never simulates a
configuration it does not implement.
"""

from __future__ import annotations

__all__ = ["MULT18X18D_MODULE", "mult18x18d_model"]

MULT18X18D_MODULE = "MULT18X18D"

_BITS, _PRODUCT_BITS = 18, 36
#: Parameters the RTL sets and the model accepts, with their allowed values.
_REGISTERS = ("INPUTA", "INPUTB", "OUTPUT")
_FIXED = {"REG_INPUTC_CLK": "NONE", "REG_PIPELINE_CLK": "NONE", "HIGHSPEED_CLK": "NONE",
          "MULT_BYPASS": "DISABLED", "CAS_MATCH_REG": "FALSE", "SOURCEB_MODE": "B_SHIFT",
          "RESETMODE": "SYNC", "GSR": "DISABLED",
          **{f"CLK{i}_DIV": "DISABLED" for i in range(4)}}


def _bus(prefix: str, bits: int) -> str:
    return "{" + ", ".join(f"{prefix}{i}" for i in reversed(range(bits))) + "}"


def mult18x18d_model() -> str:
    """Verilog of the MULT18X18D subset model (module :data:`MULT18X18D_MODULE`)."""
    params = [f'parameter REG_{reg}_{kind} = "{default}"' for reg in _REGISTERS
              for kind, default in (("CLK", "NONE"), ("CE", "CE0"), ("RST", "RST0"))]
    params += [f'parameter {name} = "{value}"' for name, value in _FIXED.items()]
    ports = ([f"input A{i}" for i in range(_BITS)] + [f"input B{i}" for i in range(_BITS)]
             + [f"input C{i}" for i in range(_BITS)] + [f"output P{i}" for i in range(_PRODUCT_BITS)]
             + ["input SIGNEDA", "input SIGNEDB", "input SOURCEA", "input SOURCEB", "input CLK0"]
             + [f"input CE{i}" for i in range(4)] + [f"input RST{i}" for i in range(4)])
    checks = []
    for reg in _REGISTERS:
        checks.append(_check(f"REG_{reg}_CLK", ("NONE", "CLK0")))
        checks.append(_check(f"REG_{reg}_CE", ("CE0", "CE1")))
        checks.append(_check(f"REG_{reg}_RST", ("RST0",)))
    checks += [_check(name, (value,)) for name, value in _FIXED.items()]
    body = f"""
  wire [17:0] a_in = {_bus("A", _BITS)};
  wire [17:0] b_in = {_bus("B", _BITS)};
  reg [17:0] a_q, b_q;
  reg [35:0] p_q;
  wire ce_a = REG_INPUTA_CE == "CE1" ? CE1 : CE0;
  wire ce_b = REG_INPUTB_CE == "CE1" ? CE1 : CE0;
  wire ce_p = REG_OUTPUT_CE == "CE1" ? CE1 : CE0;
  wire [17:0] a = REG_INPUTA_CLK == "NONE" ? a_in : a_q;
  wire [17:0] b = REG_INPUTB_CLK == "NONE" ? b_in : b_q;
  wire signed [18:0] a_ext = {{SIGNEDA & a[17], a}};
  wire signed [18:0] b_ext = {{SIGNEDB & b[17], b}};
  wire signed [37:0] full = a_ext * b_ext;
  wire [35:0] product = full[35:0];
  wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? product : p_q;
  always @(posedge CLK0) begin
    if (RST0) begin
      a_q <= 18'd0; b_q <= 18'd0; p_q <= 36'd0;
    end else begin
      if (ce_a) a_q <= a_in;
      if (ce_b) b_q <= b_in;
      if (ce_p) p_q <= product;
    end
  end
  assign {_bus("P", _PRODUCT_BITS)} = p;
  initial begin
{chr(10).join(checks)}
  end
"""
    header = ("// Simulation model of the ECP5 MULT18X18D subset the NeuroPhase RTL uses; see\n"
              "// neurophase.cosim.ecp5_models.\n"
              "/* verilator lint_off UNUSEDSIGNAL */\n/* verilator lint_off UNUSEDPARAM */\n")
    footer = "/* verilator lint_on UNUSEDPARAM */\n/* verilator lint_on UNUSEDSIGNAL */\n"
    return (header + f"module {MULT18X18D_MODULE} #(\n  " + ",\n  ".join(params) + "\n) (\n  "
            + ",\n  ".join(ports) + "\n);" + body + "endmodule\n" + footer)


def _check(name: str, allowed: tuple[str, ...]) -> str:
    condition = " && ".join(f'{name} != "{value}"' for value in allowed)
    return (f'    if ({condition}) $fatal(1, "MULT18X18D model: {name} = %s is not modelled '
            f'(allowed: {", ".join(allowed)})", {name});')
