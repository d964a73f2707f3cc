"""The naive crossbar bridge: the speed baseline of ``neurophase bench cosim``.

Does the same work as :class:`~neurophase.cosim.bridge.HdlAdcBridge` and the fast result
monitor (the same model reads, the same codes, the same result decoding) the way a
first cocotb testbench would: Python wakes on every clock edge, polls the ADC ``start``
strobe, counts the latency itself, drives ``done`` and the codes, keeps the result
stream's ``ready`` high and samples every result beat. It runs on the same harness build
with ``adc_external`` high, so the HDL ADC server is bypassed.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from neurophase.config import ChipConfig
from neurophase.cosim.bridge import pack_fields, unpack_fields
from neurophase.models.adc_interface import AdcInterfaceParams, conversion_codes

__all__ = ["NaiveAdcBridge", "NaiveResultMonitor"]


class NaiveAdcBridge:
    """Per-cycle Python ADC model on the harness's external ADC port.

    Parameters
    ----------
    dut : cocotb handle
        The harness top level.
    cfg : ChipConfig
    """

    def __init__(self, dut, cfg: ChipConfig):
        self.dut, self.cfg = dut, cfg
        self.params = AdcInterfaceParams.from_config(cfg)
        if cfg.adc.latency_cycles < 2:
            raise ValueError("the naive bridge needs adc.latency_cycles >= 2 (the harness registers the external "
                             f"ADC port, so done is written one cycle ahead), not {cfg.adc.latency_cycles}")
        # done is driven one cycle early: the harness registers it
        self.latency = cfg.adc.latency_cycles - 1
        self.codes: np.ndarray | None = None
        self.served = 0
        dut.adc_external.value = 1
        dut.adc__done.value = 0

    def load(self, codes: np.ndarray) -> None:
        """Codes (slices, planes, cols) of the next MVM."""
        self.codes = np.asarray(codes)

    def conversions(self) -> int:
        return self.served

    async def run(self) -> None:
        dut, pending = self.dut, None
        while True:
            await ReadOnly()
            if int(dut.adc__cancel.value):
                pending = None
            if int(dut.adc__start.value):
                pending = [(int(dut.adc__slice.value), int(dut.adc__plane.value), int(dut.adc__phase.value)),
                           self.latency]
            await RisingEdge(dut.clk)
            dut.adc__done.value = 0
            if pending is not None:
                pending[1] -= 1
                if pending[1] == 0:
                    chunk = conversion_codes(self.params, self.codes, *pending[0])
                    dut.adc__codes.value = pack_fields(chunk, self.cfg.adc.bits)
                    dut.adc__done.value = 1
                    self.served += 1
                    pending = None


class NaiveResultMonitor:
    """Samples the result stream every cycle; :meth:`receive` returns one MVM's
    (values, saturated, last) in the same form as the fast monitor."""

    def __init__(self, dut, cfg: ChipConfig):
        self.dut, self.cfg = dut, cfg
        self.lanes, self.bits = cfg.datapath.lanes, cfg.datapath.activation_bits

    async def receive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dut, lanes, bits = self.dut, self.lanes, self.bits
        values, saturated, last = [], [], []
        while True:
            dut.o_stream__ready.value = 1
            await ReadOnly()
            if int(dut.o_stream__valid.value):
                beat = dut.o_stream__payload.value.to_unsigned()
                values.append(unpack_fields(beat & ((1 << lanes * bits) - 1), lanes, bits, True))
                saturated.append(unpack_fields((beat >> lanes * bits) & ((1 << lanes) - 1), lanes, 1, False).astype(bool))
                last.append(bool(beat >> (lanes * bits + lanes)))
                if last[-1]:
                    await RisingEdge(dut.clk)
                    return np.concatenate(values), np.concatenate(saturated), np.array(last)
            await RisingEdge(dut.clk)
