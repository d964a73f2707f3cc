"""Amaranth components of the tile's digital periphery (one component per module)."""
