"""Simulation-only wrapper of the chip top: the HDL half of the chip's crossbar bridge.

:class:`ChipCosimHarness` puts :class:`~neurophase.rtl.chip.Chip` under a shell that keeps
per-cycle work in HDL, so Python acts once per tile MVM:

* an **ADC server** shared by the tiles (one converts at a time): a conversion started on
  ``adc[t]`` is answered on ``adc[t]`` after ``adc.latency_cycles`` cycles with its codes
  from ``mvm_codes``, latched one cycle before the ``done`` (Python writes ``mvm_codes``
  during the first conversion, right after ``mvm_request``);
* ``mvm_request``: a one-cycle strobe when a tile starts the first conversion of an MVM;
  the row buffer (``row_values``), the tile and the tag then describe the MVM;
* a **row check**: Python writes back the values it computed the codes from
  (``expected_rows``); at every conversion the harness compares the row drivers'
  presented bit-plane (or pulse widths) with those values and counts differences in
  ``row_mismatches``, so the codes provably belong to the bits the RTL drove;
* ``mute_tile`` / ``mute``: the server never answers that tile (an ADC that hangs);
* a **code queue** for the speed benchmark: ``queue_data`` + ``queue_write`` append one
  MVM's codes (``queue_reset`` empties it); with ``queue_mode`` high the server takes each
  MVM's codes from the next entry instead of ``mvm_codes``, so no Python runs during an
  inference (:data:`QUEUE_DEPTH` MVMs);
* its own clock, as :class:`~neurophase.cosim.harness.TileCosimHarness`.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.cosim.harness import SIM_CLOCK_MODULE, mvm_codes_layout
from neurophase.rtl.chip import Chip
from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["ChipCosimHarness", "MIN_LATENCY", "QUEUE_DEPTH"]

#: Shortest ADC latency the harness serves (Python writes the codes during the first conversion).
MIN_LATENCY = 4
#: MVMs the code queue holds (one inference's worth).
QUEUE_DEPTH = 256


class ChipCosimHarness(wiring.Component):
    """The chip with an HDL ADC server, an MVM request strobe and a row check (simulation only).

    Parameters
    ----------
    cfg : ChipConfig

    Members
    -------
    clk : Out(1); rst : In(1)
    bus : In(WishboneSignature); irq, busy : Out(1)
    mvm_request : Out(1)
    mvm_tile : Out(16); tag_pc : Out(16); tag_position : Out(20)
    row_values : Out(ArrayLayout(signed(input.bits), tile.rows))
    mvm_codes : In(mvm_codes_layout(cfg))
    expected_rows : In(ArrayLayout(signed(input.bits), tile.rows))
    mute_tile : In(16); mute : In(1)
    queue_mode, queue_reset, queue_write : In(1); queue_data : In(mvm_codes_layout(cfg))
    conversions, row_mismatches, mvm_requests : Out(32)
    """

    def __init__(self, cfg: ChipConfig):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        if cfg.adc.latency_cycles < MIN_LATENCY:
            raise ValueError(f"adc.latency_cycles must be at least {MIN_LATENCY} for the chip co-simulation, "
                             f"not {cfg.adc.latency_cycles}")
        self.cfg = cfg
        self.chip = Chip(cfg)
        rows = data.ArrayLayout(signed(cfg.input.bits), cfg.tile.rows)
        super().__init__({
            "clk": Out(1), "rst": In(1),
            "bus": In(WishboneSignature(self.chip.address_map.addr_width)),
            "irq": Out(1), "busy": Out(1),
            "mvm_request": Out(1), "mvm_tile": Out(16), "tag_pc": Out(16), "tag_position": Out(20),
            "row_values": Out(rows),
            "mvm_codes": In(mvm_codes_layout(cfg)),
            "expected_rows": In(rows),
            "mute_tile": In(16), "mute": In(1),
            "queue_mode": In(1), "queue_reset": In(1), "queue_write": In(1), "queue_data": In(mvm_codes_layout(cfg)),
            "conversions": Out(32), "row_mismatches": Out(32), "mvm_requests": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        clock = Signal()
        m.submodules.clock = Instance(SIM_CLOCK_MODULE, o_clk=clock)
        m.domains.sync = ClockDomain("sync", local=True)
        m.d.comb += [ClockSignal("sync").eq(clock), ResetSignal("sync").eq(self.rst), self.clk.eq(clock)]
        m.submodules.chip = chip = self.chip
        wiring.connect(m, wiring.flipped(self.bus), chip.bus)
        m.d.comb += [self.irq.eq(chip.irq), self.busy.eq(chip.busy), self.tag_pc.eq(chip.tag_pc),
                     self.tag_position.eq(chip.tag_position), self.row_values.eq(chip.row_values)]

        # which tile starts a conversion this cycle, and what it asks for
        start, first = Signal(), Signal()
        tile = Signal(16)
        slice_, plane, phase = Signal(8), Signal(8), Signal(8)
        for t, port in enumerate(chip.adc):
            with m.If(port.start):
                m.d.comb += [start.eq(1), tile.eq(t), slice_.eq(port.slice), plane.eq(port.plane),
                             phase.eq(port.phase)]
        m.d.comb += first.eq(start & (slice_ == 0) & (plane == 0) & (phase == 0))
        m.d.sync += self.mvm_request.eq(first)
        with m.If(first):
            m.d.sync += [self.mvm_tile.eq(tile), self.mvm_requests.eq(self.mvm_requests + 1)]
        source = self._queue(m, first)
        self._server(m, chip, start, tile, slice_, plane, phase, source)
        self._row_check(m, chip, start, plane)
        return m

    def _queue(self, m, first):
        """The code queue; returns the codes the server latches from (queue entry or ``mvm_codes``)."""
        m.submodules.queue = queue = Memory(shape=len(self.mvm_codes.as_value()), depth=QUEUE_DEPTH, init=[])
        write, read = queue.write_port(), queue.read_port()
        write_ptr, read_ptr = Signal(range(QUEUE_DEPTH)), Signal(range(QUEUE_DEPTH))
        current = Signal(range(QUEUE_DEPTH))
        m.d.comb += [write.addr.eq(write_ptr), write.data.eq(self.queue_data.as_value()), write.en.eq(self.queue_write),
                     read.addr.eq(current)]
        with m.If(self.queue_reset):
            m.d.sync += [write_ptr.eq(0), read_ptr.eq(0)]
        with m.Else():
            with m.If(self.queue_write):
                m.d.sync += write_ptr.eq(write_ptr + 1)
            with m.If(first & self.queue_mode):
                m.d.sync += [current.eq(read_ptr), read_ptr.eq(read_ptr + 1)]
        source = Signal(len(self.mvm_codes.as_value()))
        m.d.comb += source.eq(Mux(self.queue_mode, read.data, self.mvm_codes.as_value()))
        return source

    def _server(self, m, chip, start, tile, slice_, plane, phase, source) -> None:
        cfg = self.cfg
        latency = cfg.adc.latency_cycles
        pending = Signal()
        remaining = Signal(range(latency + 1))
        owner = Signal(16)
        held_slice, held_plane, held_phase = Signal(8), Signal(8), Signal(8)
        codes = Signal.like(chip.adc[0].codes)
        cancel = Signal()
        m.d.comb += cancel.eq(_any([port.cancel for port in chip.adc]))
        muted = self.mute & (tile == self.mute_tile)
        with m.If(start & ~muted):
            m.d.sync += [pending.eq(1), remaining.eq(latency - 1), owner.eq(tile), held_slice.eq(slice_),
                         held_plane.eq(plane), held_phase.eq(phase), self.conversions.eq(self.conversions + 1)]
        with m.Elif(cancel | (pending & (remaining == 0))):
            m.d.sync += pending.eq(0)
        with m.Elif(pending & (remaining != 0)):
            m.d.sync += remaining.eq(remaining - 1)
        with m.If(pending & (remaining == 1)):
            self._latch_codes(m, codes, held_slice, held_plane, held_phase, source)
        done = pending & (remaining == 0) & ~cancel
        for t, port in enumerate(chip.adc):
            m.d.comb += [port.done.eq(done & (owner == t)), port.codes.eq(codes)]

    def _latch_codes(self, m, codes, held_slice, held_plane, held_phase, flat) -> None:
        cfg = self.cfg
        per_adc = cfg.adc.columns_per_adc
        plane_bits = cfg.tile.cols * cfg.adc.bits
        for s in range(cfg.weights.slices):
            for b in range(cfg.input.planes):
                base = (s * cfg.input.planes + b) * plane_bits
                for k in range(per_adc):
                    with m.If((held_slice == s) & (held_plane == b) & (held_phase == k)):
                        m.d.sync += [codes[i].eq(flat[base + (i * per_adc + k) * cfg.adc.bits:][:cfg.adc.bits])
                                     for i in range(len(codes))]

    def _row_check(self, m, chip, start, plane) -> None:
        """Count conversions whose presented row drive differs from ``expected_rows``.

        The check runs one cycle after the start, when Python has written the values of
        the MVM's first conversion (a later conversion sees them long written)."""
        cfg = self.cfg
        check, check_plane = Signal(), Signal(8)
        m.d.sync += [check.eq(start), check_plane.eq(plane)]
        drive = Signal.like(chip.row_drive)
        m.d.sync += drive.eq(chip.row_drive)
        differs = Signal()
        mismatch = []
        for r in range(cfg.tile.rows):
            expected = self.expected_rows[r]
            wanted = expected.bit_select(check_plane, 1) if cfg.input.mode == "bit-serial" else expected
            mismatch.append(drive[r] != wanted)
        m.d.comb += differs.eq(_any(mismatch))
        with m.If(check & differs):
            m.d.sync += self.row_mismatches.eq(self.row_mismatches + 1)


def _any(values):
    result = 0
    for value in values:
        result = result | value
    return result
