"""FPGA emulation of the tile (ULX3S ECP5-85F by default; docs/fpga.md).

The FPGA top (:mod:`.top`) holds the tile datapath, a digital crossbar emulator in place of
the analog array (:mod:`.crossbar_emulator`) and a UART-to-CSR bridge speaking LiteX's
UARTBone framing (:mod:`.uart_bridge`). :mod:`.host` is the host driver, with
interchangeable transports (:mod:`.transports`: serial port for the board, socket for
the simulated board of :mod:`.sim_board`); :mod:`.build` and :mod:`.program` make and
load the bitstream; :mod:`.platforms` is the board registry.
"""
