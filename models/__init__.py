"""numpy models of the analog array and the bit-true golden model of the periphery.

Plain numpy only: nothing here imports Amaranth or cocotb.
"""
