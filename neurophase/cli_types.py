"""Option types of the command line shared by the CLI and the command modules of the packages."""

from __future__ import annotations

import math

import click

__all__ = ["FiniteFloat"]


class FiniteFloat(click.FloatRange):
    """A float option that also refuses NaN and infinities (``click.FloatRange`` lets NaN
    through: every comparison with NaN is false)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
