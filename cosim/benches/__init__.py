"""cocotb test modules, one per design under test (loaded by the simulator, not by pytest)."""
