"""NeuroPhase: hardware description and co-simulation of a PCM-crossbar analog AI accelerator.

Subpackages: ``neurophase.rtl`` (Amaranth periphery), ``neurophase.models`` (numpy analog
model and golden models), ``neurophase.cosim`` (cocotb under Verilator), ``neurophase.fpga``
(emulation board), ``neurophase.benchmarks``.
"""

__version__ = "0.1.0"
