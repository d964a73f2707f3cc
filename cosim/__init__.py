"""cocotb co-simulation: the generated RTL under Verilator against the numpy models."""
