"""Tile top: ADC interface -> shift-and-add -> drift gain -> batch-norm, behind a CSR bank."""

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neurophase.config import ChipConfig
from neurophase.models.datapath import DatapathParams
from neurophase.regmap import tile_register_map
from neurophase.rtl.adc_interface import AdcInterface, AdcPortSignature
from neurophase.rtl.batch_norm import BatchNorm
from neurophase.rtl.csr_bank import CsrBank
from neurophase.rtl.drift_gain import DriftGain, column_values_layout
from neurophase.rtl.shift_add import ShiftAdd
from neurophase.rtl.skid_buffer import SkidBuffer
from neurophase.rtl.wishbone import WishboneSignature

__all__ = ["Tile", "TILE_BANK_MEMBERS", "BATCH_NORM_MEMBERS"]

#: The CSR bank members (named by the bank's ``<register>_<field>`` / ``<array>_rd`` rule)
#: the tile connects, by their role in the datapath.
TILE_BANK_MEMBERS = {
    "start": "ctrl_start",
    "abort": "ctrl_abort",
    "soft_reset": "ctrl_soft_reset",
    "busy": "status_busy",
    "done": "status_done_set",
    "timeout": "status_adc_timeout_set",
    "sat_shift_add": "status_sat_shift_add_set",
    "sat_drift_gain": "status_sat_drift_gain_set",
    "timeout_cycles": "adc_timeout_cycles",
    "per_column": "drift_per_column",
    "tile_gain": "drift_gain_alpha",
    "mvm_count": "mvm_count_count",
    "trim": "adc_trim_rd",
    "gain": "gain_rd",
}

#: The batch-norm stage's members (absent on a tile on the chip).
BATCH_NORM_MEMBERS = {
    "sat_batch_norm": "status_sat_batch_norm_set",
    "relu": "bn_ctrl_relu_en",
    "shift": "bn_ctrl_requant_shift",
    "scale": "bn_scale_rd",
    "bias": "bn_bias_rd",
}


class Tile(wiring.Component):
    """The digital periphery of one crossbar tile.

    A write of 1 to ``CTRL.start`` (while ``STATUS.busy`` is low) runs one MVM: the ADC
    interface requests the conversions on ``adc`` and streams trimmed codes through the
    shift-and-add, the drift gain and the batch-norm to ``o_stream``; the last beat sets
    ``STATUS.done`` and counts in ``MVM_COUNT``. ``CTRL.abort``, ``CTRL.soft_reset`` and
    an ADC timeout reset the whole datapath (every beat in flight is dropped, the
    conversion in flight is cancelled on ``adc.cancel``) and the tile is idle on the next
    cycle; the soft reset also clears ``MVM_COUNT``. Registers keep their values.
    Status: ``STATUS.adc_timeout``; ``sat_shift_add`` (an offset trim or the accumulator
    clipped), ``sat_drift_gain``, ``sat_batch_norm`` (batch-norm or requantisation
    clipped). ``BN_CTRL.requant_shift`` values above the accumulator width act as it.

    On the chip (``on_chip``) the tile has no batch-norm stage: ``o_stream`` carries the
    drift-gained accumulator values (the chip adds the partial sums of a split layer before
    its batch-norm), the layer sequencer starts and aborts MVMs on ``seq_start`` / ``seq_abort``,
    and ``timeout`` reports an ADC timeout to it.

    Parameters
    ----------
    cfg : ChipConfig
        Sizes every block and the register map (:func:`neurophase.regmap.tile_register_map`).
    on_chip : bool
        Build the tile as it sits on the chip (see above).

    Members
    -------
    adc : Out(AdcPortSignature(AdcInterfaceParams.from_config(cfg)))
        To the column ADCs and row drivers.
    bus : In(WishboneSignature(regmap.addr_width))
        CSR bus (Wishbone classic slave).
    o_stream : Out(stream.Signature(column_values_layout(activation_bits, lanes)))
        Activations per column group; ``saturated`` per lane; ``last`` on the final group
        (on the chip: ``accumulator_bits`` drift-gained values).
    seq_start, seq_abort : In(1)
        On the chip only: strobes from the layer sequencer, as ``CTRL.start`` / ``CTRL.abort``
        (not named ``abort``: a Verilog port named like a C++ word fails Verilator's lint).
    timeout : Out(1)
        On the chip only: strobe, an ADC conversion timed out (the MVM is dropped).
    irq : Out(1)
        The bank's interrupt.
    busy : Out(1)
        An MVM is in progress (``STATUS.busy``), for arbitration of the shared array.
    """

    def __init__(self, cfg: ChipConfig, on_chip: bool = False):
        if not isinstance(cfg, ChipConfig):
            raise TypeError(f"cfg must be a ChipConfig, not {cfg!r}")
        self.cfg = cfg
        self.on_chip = bool(on_chip)
        self.params = DatapathParams.from_config(cfg)
        self.regmap = tile_register_map(cfg, batch_norm=not self.on_chip)
        self.members = dict(TILE_BANK_MEMBERS) if self.on_chip else {**TILE_BANK_MEMBERS, **BATCH_NORM_MEMBERS}
        bank_members = CsrBank(self.regmap)
        bank_members._MustUse__silence = True
        missing = [name for name in self.members.values() if name not in bank_members.signature.members]
        if missing:
            raise ValueError(f"the tile register map lacks the members {', '.join(missing)} the tile connects")
        out_bits = self.params.drift_gain.width if self.on_chip else self.params.batch_norm.out_bits
        members = {
            "adc": Out(AdcPortSignature(self.params.adc)),
            "bus": In(WishboneSignature(self.regmap.addr_width)),
            "o_stream": Out(stream.Signature(column_values_layout(out_bits, self.params.lanes))),
            "irq": Out(1),
            "busy": Out(1),
        }
        if self.on_chip:
            members.update({"seq_start": In(1), "seq_abort": In(1), "timeout": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        reg = self.members
        m.submodules.bank = bank = CsrBank(self.regmap)
        csr = lambda role: getattr(bank, reg[role])  # noqa: E731
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        m.d.comb += self.irq.eq(bank.irq)

        adc_if = AdcInterface(p.adc)
        # the ADC interface's take drives its wide buffer enables: the skid buffer keeps the
        # shift-and-add's ready (and everything behind it) out of that path
        codes = SkidBuffer(adc_if.o_stream.payload.shape())
        shift_add = ShiftAdd(p.shift_add)
        drift = DriftGain(p.drift_gain)
        stages = [("adc_interface", adc_if), ("codes", codes), ("shift_add", shift_add), ("drift_gain", drift)]
        bn = None if self.on_chip else BatchNorm(p.batch_norm)
        if bn is not None:
            stages.append(("batch_norm", bn))
        flush = Signal()
        for name, block in stages:
            m.submodules[name] = ResetInserter(flush)(block)
        start, abort = csr("start"), csr("abort")
        if self.on_chip:
            start, abort = start | self.seq_start, abort | self.seq_abort
            m.d.comb += self.timeout.eq(adc_if.timeout)

        # -- control ----------------------------------------------------------------
        active = Signal()
        accept_start = Signal()
        last_out = Signal()
        mvm_count = Signal(32)
        m.d.comb += [
            flush.eq(abort | csr("soft_reset") | adc_if.timeout),
            accept_start.eq(start & ~active),
            adc_if.start.eq(accept_start),
            adc_if.abort_mvm.eq(abort | csr("soft_reset")),
            adc_if.timeout_cycles.eq(csr("timeout_cycles")),
            shift_add.restart.eq(flush),
            last_out.eq(self.o_stream.valid & self.o_stream.ready & self.o_stream.payload.last),
        ]
        with m.If(flush):
            m.d.sync += active.eq(0)
        with m.Elif(accept_start):
            m.d.sync += active.eq(1)
        with m.Elif(last_out):
            m.d.sync += active.eq(0)
        with m.If(csr("soft_reset")):
            m.d.sync += mvm_count.eq(0)
        with m.Elif(last_out & ~flush & (mvm_count != 2**32 - 1)):
            m.d.sync += mvm_count.eq(mvm_count + 1)

        # -- datapath -----------------------------------------------------------------
        wiring.connect(m, adc_if.adc, wiring.flipped(self.adc))
        wiring.connect(m, adc_if.trim, csr("trim"))
        wiring.connect(m, adc_if.o_stream, codes.i_stream)
        wiring.connect(m, codes.o_stream, shift_add.i_stream)
        wiring.connect(m, shift_add.o_stream, drift.i_stream)
        wiring.connect(m, drift.gain, csr("gain"))
        m.d.comb += [
            drift.per_column.eq(csr("per_column")),
            drift.tile_gain.eq(csr("tile_gain")),
        ]
        if bn is None:
            wiring.connect(m, drift.o_stream, wiring.flipped(self.o_stream))
        else:
            self._batch_norm(m, drift, bn, csr)

        # -- status -------------------------------------------------------------------
        sa_out = shift_add.o_stream
        m.d.comb += [
            csr("busy").eq(active),
            self.busy.eq(active),
            csr("done").eq(last_out & ~flush),
            csr("timeout").eq(adc_if.timeout),
            csr("sat_shift_add").eq(adc_if.trim_saturated
                                    | (sa_out.valid & sa_out.ready & sa_out.payload.saturated.any())),
            csr("sat_drift_gain").eq(drift.clipped),
            csr("mvm_count").eq(mvm_count),
        ]
        if bn is not None:
            m.d.comb += csr("sat_batch_norm").eq(bn.bn_clipped | bn.requant_clipped)
        return m

    def _batch_norm(self, m, drift, bn, csr) -> None:
        wiring.connect(m, drift.o_stream, bn.i_stream)
        wiring.connect(m, bn.scale, csr("scale"))
        wiring.connect(m, bn.bias, csr("bias"))
        wiring.connect(m, bn.o_stream, wiring.flipped(self.o_stream))
        W = self.params.batch_norm.width
        m.d.comb += [
            bn.relu.eq(csr("relu")),
            bn.shift.eq(Mux(csr("shift") > W, W, csr("shift"))),
        ]
