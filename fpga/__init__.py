"""FPGA emulation of the tile (ULX3S ECP5-85F by default): board platform, FPGA top with a
digital crossbar emulator and a UART-to-CSR bridge, host driver, build and programming.

Not built yet: see the FPGA emulation issue. The folder exists so the package layout is
the one the design brief describes.
"""
