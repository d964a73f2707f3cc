"""cocotb model of the column ADCs at the tile's ADC port (:class:`AdcPortSignature`).

Answers each ``start`` exactly ``latency`` cycles later with a one-cycle ``done`` and the
codes of the requested (slice, plane, mux phase) taken from a numpy array of the MVM's
codes; honours ``cancel``; can be told to stay silent (to provoke a timeout). Python
acts once per cycle with a couple of signal reads, and once per conversion to drive codes.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge

from neurophase.cosim.ports import pack, port_name
from neurophase.models.adc_interface import AdcInterfaceParams, conversion_codes

__all__ = ["AdcResponder"]


class AdcResponder:
    """The ADCs behind the port ``prefix`` of ``dut``.

    Parameters
    ----------
    dut, clock :
        DUT handle and its clock.
    params : AdcInterfaceParams
        Port sizes.
    latency : int
        Cycles from a ``start`` to its ``done`` (>= 1).
    prefix : str
        Signature member name of the ADC port (``"adc"``).

    Attributes
    ----------
    codes : ndarray (slices, planes, columns) or None
        Codes of the MVM being converted; set by the bench before starting an MVM.
    silent : bool
        When True, requests are logged but never answered.
    requests : list of (cycle, slice, plane, phase)
        Every ``start`` seen.
    cancels : list of int
        Cycles in which ``cancel`` was high.
    """

    def __init__(self, dut, clock, params: AdcInterfaceParams, latency: int, prefix: str = "adc"):
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 1:
            raise ValueError(f"ADC latency must be a positive integer, not {latency!r}")
        self.params, self.latency, self.clock = params, latency, clock
        get = lambda name: getattr(dut, port_name(prefix, name))  # noqa: E731
        self.start, self.cancel = get("start"), get("cancel")
        self.slice, self.plane, self.phase = get("slice"), get("plane"), get("phase")
        self.done, self.codes_port = get("done"), get("codes")
        self.layout = data.ArrayLayout(signed(params.adc_bits), params.codes_per_conversion)
        self.codes: np.ndarray | None = None
        self.silent = False
        self.requests: list[tuple[int, int, int, int]] = []
        self.cancels: list[int] = []
        self.cycle = 0
        self.done.value = 0

    async def run(self) -> None:
        pending = None
        while True:
            await ReadOnly()
            if int(self.cancel.value):
                self.cancels.append(self.cycle)
                pending = None
            if int(self.start.value):
                request = (int(self.slice.value), int(self.plane.value), int(self.phase.value))
                self.requests.append((self.cycle, *request))
                pending = None if self.silent else [request, self.latency]
            await RisingEdge(self.clock)
            self.cycle += 1
            self.done.value = 0
            if pending is not None:
                pending[1] -= 1
                if pending[1] == 0:
                    codes = conversion_codes(self.params, self.codes, *pending[0])
                    self.codes_port.value = pack(self.layout, [int(c) for c in codes])
                    self.done.value = 1
                    pending = None
