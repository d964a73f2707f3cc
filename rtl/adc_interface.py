"""ADC interface: sequences an MVM's conversions, captures, trims and streams the codes."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.models.adc_interface import TIMEOUT_BITS, AdcInterfaceParams
from neurophase.rtl.interfaces import ParamReadSignature
from neurophase.rtl.saturation import saturate_signed

__all__ = ["AdcPortSignature", "AdcInterface", "adc_codes_layout"]


def adc_codes_layout(params: AdcInterfaceParams) -> data.StructLayout:
    """Payload of the output stream: the shift-and-add's input layout."""
    return data.StructLayout({"codes": data.ArrayLayout(signed(params.adc_bits), params.lanes)})


class AdcPortSignature(wiring.Signature):
    """The tile's port to its column ADCs and row drivers (from the tile's side).

    A conversion is requested by a one-cycle ``start`` strobe; ``slice``, ``plane`` (the
    row drivers' bit-plane) and ``phase`` (the column-mux phase) say which one and are
    held from ``start`` until its ``done``. The ADCs answer with a one-cycle ``done``
    strobe carrying all codes of the conversion on ``codes`` (code ``i`` belongs to column
    ``i*columns_per_adc + phase``). A ``done`` may come in the same cycle as the next
    ``start``. ``cancel`` is a one-cycle strobe abandoning the conversion in flight (abort,
    timeout, soft reset): the ADCs must not send its ``done``.

    Parameters
    ----------
    params : AdcInterfaceParams
        Sizes of the port.

    Members
    -------
    start, cancel : Out(1)
    slice : Out(range(max(slices, 2)))
    plane : Out(range(max(planes, 2)))
    phase : Out(range(max(columns_per_adc, 2)))
    done : In(1)
    codes : In(ArrayLayout(signed(adc_bits), columns // columns_per_adc))
    """

    def __init__(self, params: AdcInterfaceParams):
        if not isinstance(params, AdcInterfaceParams):
            raise TypeError(f"params must be an AdcInterfaceParams, not {params!r}")
        self.params = params
        super().__init__({
            "start": Out(1),
            "cancel": Out(1),
            "slice": Out(range(max(params.slices, 2))),
            "plane": Out(range(max(params.planes, 2))),
            "phase": Out(range(max(params.columns_per_adc, 2))),
            "done": In(1),
            "codes": In(data.ArrayLayout(signed(params.adc_bits), params.codes_per_conversion)),
        })

    def __eq__(self, other):
        return isinstance(other, AdcPortSignature) and self.params == other.params

    def __repr__(self):
        return f"AdcPortSignature({self.params!r})"


class AdcInterface(wiring.Component):
    """Sequencer of an MVM's conversions and buffer between the column ADCs and the
    shift-and-add.

    On ``start`` (while idle) the unit requests the conversions of one MVM in the order
    slice (outer), input bit-plane (LSB first), mux phase (inner). The codes of each
    conversion are captured into one of two plane buffers; when a plane's last
    conversion is in, the buffer streams out in column groups of ``lanes`` codes while
    the ADCs already convert the next plane into the other buffer (double buffering).
    Each code leaves trimmed: ``sat(code - trim[col])`` to ``adc_bits``, through an
    output register (a group leaves the cycle after it is selected). The next
    conversion starts in the same cycle as the previous one's ``done`` when its buffer is
    free, so the ADCs are the only bound on throughput.

    A conversion whose ``done`` has not arrived ``timeout_cycles`` cycles after its
    ``start`` raises ``timeout`` for one cycle, cancels the conversion and drops the MVM:
    the unit is idle again the next cycle. ``abort_mvm`` does the same without the flag.

    Parameters
    ----------
    params : AdcInterfaceParams
        Sizes; :meth:`AdcInterfaceParams.from_config` derives them from the chip configuration.

    Members
    -------
    adc : Out(AdcPortSignature(params))
        Conversion requests to, and codes from, the ADCs.
    trim : Out(ParamReadSignature(signed(adc_bits), lanes, groups))
        Read port of the per-column offset trims.
    o_stream : Out(stream.Signature(StructLayout({"codes": ArrayLayout(signed(adc_bits), lanes)})))
        Trimmed codes in the shift-and-add's beat order.
    start : In(1)
        Starts an MVM when ``running`` is low (ignored otherwise).
    abort_mvm : In(1)
        Drops the MVM in progress and any buffered codes.
    timeout_cycles : In(16)
        Cycles a conversion may take before it times out.
    running : Out(1)
        Conversions of the current MVM remain to be requested or received.
    busy : Out(1)
        ``running``, or codes wait in a buffer.
    timeout : Out(1)
        Strobe: a conversion timed out.
    trim_saturated : Out(1)
        Strobe: a code of the beat leaving this cycle was clipped by the trim.
    """

    def __init__(self, params: AdcInterfaceParams):
        if not isinstance(params, AdcInterfaceParams):
            raise TypeError(f"params must be an AdcInterfaceParams, not {params!r}")
        self.params = params
        super().__init__({
            "adc": Out(AdcPortSignature(params)),
            "trim": Out(ParamReadSignature(signed(params.adc_bits), params.lanes, params.groups)),
            "o_stream": Out(stream.Signature(adc_codes_layout(params))),
            "start": In(1),
            "abort_mvm": In(1),
            "timeout_cycles": In(TIMEOUT_BITS),
            "running": Out(1),
            "busy": Out(1),
            "timeout": Out(1),
            "trim_saturated": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        M = p.columns_per_adc
        code = signed(p.adc_bits)
        plane_buffer = data.ArrayLayout(data.ArrayLayout(code, p.lanes), p.groups)
        # reset-less: a flush clears the full flags only (keeps the reset nets small)
        buffers = [Signal(plane_buffer, name=f"buffer_{i}", reset_less=True) for i in range(2)]
        full = [Signal(name=f"full_{i}") for i in range(2)]

        # -- request side ------------------------------------------------------------
        running = Signal()
        in_flight = Signal()
        issued_all = Signal()
        waited = Signal(TIMEOUT_BITS)
        expired = Signal()   # waited >= timeout_cycles, registered with each count (a short path to flush)
        next_slice = Signal(range(max(p.slices, 2)))
        next_plane = Signal(range(max(p.planes, 2)))
        next_phase = Signal(range(max(M, 2)))
        held_slice = Signal.like(next_slice)
        held_plane = Signal.like(next_plane)
        held_phase = Signal.like(next_phase)
        fill = Signal()

        done_now = Signal()
        timeout_now = Signal()
        flush = Signal()
        plane_complete = Signal()
        target = Signal()
        issue = Signal()

        m.d.comb += [
            done_now.eq(in_flight & self.adc.done),
            timeout_now.eq(in_flight & ~self.adc.done & expired),
            flush.eq(self.abort_mvm | timeout_now),
            plane_complete.eq(done_now & (held_phase == M - 1)),
            target.eq(fill ^ plane_complete),
            issue.eq(running & ~issued_all & (~in_flight | done_now) & ~Mux(target, full[1], full[0]) & ~flush),
            self.adc.start.eq(issue),
            self.adc.cancel.eq(flush),
            self.adc.slice.eq(Mux(issue, next_slice, held_slice)),
            self.adc.plane.eq(Mux(issue, next_plane, held_plane)),
            self.adc.phase.eq(Mux(issue, next_phase, held_phase)),
            self.timeout.eq(timeout_now),
            self.running.eq(running),
        ]

        with m.If(flush):
            m.d.sync += [running.eq(0), in_flight.eq(0), fill.eq(0)]
        with m.Else():
            with m.If(self.start & ~running):
                m.d.sync += [running.eq(1), issued_all.eq(0), next_slice.eq(0), next_plane.eq(0), next_phase.eq(0)]
            with m.If(issue):
                m.d.sync += [
                    in_flight.eq(1),
                    waited.eq(1),
                    expired.eq(self.timeout_cycles <= 1),
                    held_slice.eq(next_slice),
                    held_plane.eq(next_plane),
                    held_phase.eq(next_phase),
                ]
                last_phase = next_phase == M - 1
                last_plane = next_plane == p.planes - 1
                last_slice = next_slice == p.slices - 1
                with m.If(~last_phase):
                    m.d.sync += next_phase.eq(next_phase + 1)
                with m.Else():
                    m.d.sync += next_phase.eq(0)
                    with m.If(~last_plane):
                        m.d.sync += next_plane.eq(next_plane + 1)
                    with m.Else():
                        m.d.sync += next_plane.eq(0)
                        with m.If(~last_slice):
                            m.d.sync += next_slice.eq(next_slice + 1)
                        with m.Else():
                            m.d.sync += [next_slice.eq(0), issued_all.eq(1)]
            with m.Elif(done_now):
                m.d.sync += in_flight.eq(0)
                with m.If(issued_all):
                    m.d.sync += running.eq(0)
            with m.Elif(in_flight):
                m.d.sync += [waited.eq(waited + 1), expired.eq(waited + 1 >= self.timeout_cycles)]
            with m.If(plane_complete):
                m.d.sync += fill.eq(~fill)

        # Capture: conversion `phase` writes columns i*M + phase of the fill buffer.
        for b in range(2):
            # (a capture during a flush is harmless: the buffer is written again before it is full)
            with m.If(done_now & (fill == b)):
                for k in range(M):
                    with m.If(held_phase == k):
                        for i in range(p.codes_per_conversion):
                            col = i * M + k
                            m.d.sync += buffers[b][col // p.lanes][col % p.lanes].eq(self.adc.codes[i])

        # -- drain side --------------------------------------------------------------
        # The trim port is addressed with the group the drain will select next cycle, so
        # its data always belongs to the selected group (a buffer fills at least three
        # cycles after any reset or flush, long after the first read). The trimmed codes
        # of the selected group (group 0 of the draining buffer, which shifts as it drains)
        # move into the output register when it is free.
        drain = Signal()
        group = Signal(range(max(p.groups, 2)))
        group_next = Signal.like(group)
        take = Signal()
        last_group = group == p.groups - 1
        selected = Signal(data.ArrayLayout(code, p.lanes))
        out = self.o_stream
        m.d.comb += [
            take.eq(Mux(drain, full[1], full[0]) & (~out.valid | out.ready)),
            selected.eq(Mux(drain, buffers[1][0], buffers[0][0])),
            group_next.eq(Mux(flush, 0, Mux(take, Mux(last_group, 0, group + 1), group))),
            self.trim.addr.eq(group_next),
        ]
        m.d.sync += group.eq(group_next)
        with m.If(flush):
            m.d.sync += drain.eq(0)
        with m.Elif(take & last_group):
            m.d.sync += drain.eq(~drain)
        for b in range(2):
            # the draining buffer moves down a group per beat: the output reads group 0 only
            # (every column of a buffer is written again before it is full the next time)
            with m.If(take & (drain == b)):
                m.d.sync += [buffers[b][g].eq(buffers[b][g + 1]) for g in range(p.groups - 1)]
        for b in range(2):
            with m.If(flush):
                m.d.sync += full[b].eq(0)
            with m.Else():
                with m.If(plane_complete & (fill == b)):
                    m.d.sync += full[b].eq(1)
                with m.If(take & last_group & (drain == b)):
                    m.d.sync += full[b].eq(0)
        self._output_register(m, selected, take, flush)
        m.d.comb += self.busy.eq(running | full[0] | full[1] | out.valid)
        return m

    def _output_register(self, m, selected, take, flush) -> None:
        """``o_stream``: the trimmed, saturated codes of ``selected``, loaded on ``take``;
        ``trim_saturated`` is or'ed from registered per-lane clip bits as the beat leaves."""
        p = self.params
        out = self.o_stream
        codes = Signal(out.payload.shape(), reset_less=True)
        m.d.comb += out.payload.eq(codes)
        clipped = Signal(p.lanes)
        clipped_q = Signal(p.lanes, reset_less=True)
        for lane in range(p.lanes):
            diff = Signal(signed(p.adc_bits + 1), name=f"trimmed_{lane}")
            m.d.comb += diff.eq(selected[lane] - self.trim.data[lane])
            trimmed, clipped_lane = saturate_signed(m, diff, p.adc_bits, f"trimmed_{lane}")
            m.d.comb += clipped[lane].eq(clipped_lane)
            with m.If(take):
                m.d.sync += codes.codes[lane].eq(trimmed)
        with m.If(flush):
            m.d.sync += out.valid.eq(0)
        with m.Elif(take):
            m.d.sync += [out.valid.eq(1), clipped_q.eq(clipped)]
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)
        m.d.comb += self.trim_saturated.eq(out.valid & out.ready & clipped_q.any())
