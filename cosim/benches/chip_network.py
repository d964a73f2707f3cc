"""cocotb tests of the chip RTL running a compiled network with the analog arrays in the loop.

``NEUROPHASE_PARAMS``: ``config`` (ChipConfig dict), ``job`` (pickle written by
:func:`neurophase.cosim.chip_cosim.write_job`: the compiled network, the images, labels,
seed, time points, options) and ``results_json``.
"""

from __future__ import annotations

import json
import os
import pickle
import time

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer

from neurophase.atomic import write_text_atomic
from neurophase.config import ChipConfig
from neurophase.cosim.bridge import pack_codes
from neurophase.cosim.chip_env import ChipBridge, ChipFirmware, ChipRunError, ReplayChip
from neurophase.cosim.chip_harness import QUEUE_DEPTH
from neurophase.models.chip_isa import Instruction, Opcode
from neurophase.network.golden import NetworkChip, ReadKeys, keyed_code_source

#: Cycles an inference may take before the test calls it hung (per MVM, generous).
CYCLES_PER_MVM_LIMIT = 20000


def load_job() -> tuple[ChipConfig, dict, dict]:
    raw = json.loads(os.environ.get("NEUROPHASE_PARAMS", "{}"))
    with open(raw["job"], "rb") as handle:
        job = pickle.load(handle)
    return ChipConfig.from_dict(raw["config"]), raw, job


def write_results(raw: dict, results: dict) -> None:
    write_text_atomic(raw["results_json"], json.dumps(results, indent=2) + "\n")


async def reset(dut) -> None:
    dut.rst.value = 1
    dut.mute.value = 0
    dut.mute_tile.value = 0
    dut.mvm_codes.value = 0
    dut.expected_rows.value = 0
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


class ChipSession:
    """A programmed chip, its firmware and bridge, and the golden replay."""

    def __init__(self, dut, cfg, job):
        self.dut, self.cfg, self.job = dut, cfg, job
        self.compiled = job["compiled"]
        self.chip = NetworkChip(self.compiled.mapped, job["seed"])
        self.keys = ReadKeys(job["read_seed"])
        self.t_s = float(job["times"][0])
        self.firmware = ChipFirmware(dut, cfg)
        self.bridge = ChipBridge(dut, cfg, self.compiled.program,
                                 lambda image: keyed_code_source(self.chip, self.t_s, self.keys, image))
        self.replay = ReplayChip(self.chip)
        registers = self.replay.registers
        for name in registers.bn_bias:  # a deliberately wrong golden model: outputs off by N LSBs (tests only)
            registers.bn_bias[name] = registers.bn_bias[name] + (job.get("golden_bias_offset", 0) << registers.shift[name])
        limit = sum(ins["blocks"] * ins["out_h"] * ins["out_w"] for ins in self.compiled.program
                    if ins.opcode == Opcode.MVM)
        self.limit_cycles = max(limit, 1) * CYCLES_PER_MVM_LIMIT

    async def setup(self) -> None:
        await reset(self.dut)
        for name in ("queue_mode", "queue_reset", "queue_write", "queue_data"):
            getattr(self.dut, name).value = 0
        self.server = cocotb.start_soon(self.bridge.serve())
        await self.firmware.enable_interrupts()
        await self.firmware.load_program(self.compiled.program)
        used = len(self.compiled.bn_scale)
        await self.firmware.load_params(self.compiled.bn_scale[:used], self.compiled.bn_bias[:used])

    async def infer(self, index: int, check_layers: bool) -> dict:
        """Run image ``index``; compare its tensors with the golden model on the same codes."""
        x = self.chip.quantise(self.job["images"][index:index + 1])
        region = self.compiled.input
        await self.firmware.write_activations(region.base, x[0])
        self.bridge.start_image(index)
        status = await self.firmware.run(self.limit_cycles)
        if status["error"] or not status["done"]:
            raise ChipRunError(f"image {index}: the program stopped with {status['error_detail']}")
        self.replay.recorded = self.bridge.recorded
        trace = self.replay.run(self.job["images"][index:index + 1], self.t_s, np.random.default_rng(0), trace=True)
        names = list(self.compiled.tensors) if check_layers else [self.compiled.output.name]
        mismatches, per_tensor, nonzero = 0, {}, 0
        for name in names:
            region = self.compiled.tensors[name]
            if region.alias_of is not None and name != self.compiled.output.name:
                continue  # the same words as the tensor it aliases
            rtl = await self.firmware.read_activations(region.base, region.size)
            golden = trace.tensors[name][0].reshape(-1)
            wrong = int(np.count_nonzero(rtl != golden))
            per_tensor[name] = wrong
            mismatches += wrong
            nonzero += int(np.count_nonzero(rtl))
            if name == self.compiled.output.name:
                predicted = int(np.argmax(rtl))
        return {"image": index, "predicted": predicted, "mismatches": mismatches, "per_tensor": per_tensor, "nonzero": nonzero,
                "cycles": status["cycles"], "mvms": status["mvms"]}


@cocotb.test()
async def network_inference(dut):
    """Every image through the chip RTL, each tensor checked against the golden network model."""
    cfg, raw, job = load_job()
    session = ChipSession(dut, cfg, job)
    await session.setup()
    started = time.process_time()
    rows = []
    for i in range(len(job["images"])):
        rows.append(await session.infer(i, job["check_layers"]))
        dut._log.info("progress: %d/%d images", i + 1, len(job["images"]))
    sim_cpu_s = time.process_time() - started
    labels = np.asarray(job["labels"])
    predicted = np.array([r["predicted"] for r in rows])
    model = session.chip.predict(job["images"], session.t_s, session.keys)
    results = {
        "images": len(rows),
        "mismatches": int(sum(r["mismatches"] for r in rows)),
        "accuracy": float(np.mean(predicted == labels)),
        "model_accuracy": float(np.mean(model == labels)),
        "model_agrees": bool(np.array_equal(model, predicted)),
        "cycles_per_image": float(np.mean([r["cycles"] for r in rows])),
        "mvms_per_image": float(np.mean([r["mvms"] for r in rows])),
        "row_mismatches": int(dut.row_mismatches.value),
        "unknown_tags": len(session.bridge.unknown_tags),
        "conversions": int(dut.conversions.value),
        "sim_cpu_s": sim_cpu_s,
        "per_image": rows,
    }
    write_results(raw, results)
    assert results["row_mismatches"] == 0, "the row drivers presented bits other than those the codes were read for"
    assert results["unknown_tags"] == 0, f"MVMs with unknown BLOCK tags: {session.bridge.unknown_tags[:5]}"
    assert results["mismatches"] == 0, f"{results['mismatches']} activations differ from the golden model"


@cocotb.test()
async def faults(dut):
    """Abort mid-network, an ADC that never answers, an invalid instruction: each stops the
    program with its error code, the sequencer is idle, and the next inference is exact."""
    cfg, raw, job = load_job()
    session = ChipSession(dut, cfg, job)
    await session.setup()
    firmware, results = session.firmware, {}

    # abort in the middle of the network
    x = session.chip.quantise(job["images"][:1])
    await firmware.write_activations(session.compiled.input.base, x[0])
    session.bridge.start_image(0)
    await firmware.clear_status()
    await firmware.command("start")
    for _ in range(session.compiled.cycles_per_image // 3 + 50):
        await RisingEdge(dut.clk)
    await firmware.command("abort")
    status = await firmware.status()
    results["abort"] = {"status": status, "error": await firmware.error(), "busy": int(dut.busy.value)}
    assert results["abort"]["error"]["code"] == 4 and not results["abort"]["busy"], results["abort"]
    results["after_abort"] = await session.infer(0, check_layers=True)
    assert results["after_abort"]["mismatches"] == 0

    # one tile's ADC never answers
    mute = session.compiled.mapped.blocks[-1].tile
    dut.mute_tile.value, dut.mute.value = mute, 1
    await firmware.write_activations(session.compiled.input.base, x[0])
    status = await firmware.run(session.limit_cycles)
    dut.mute.value = 0
    results["timeout"] = {"status": {k: v for k, v in status.items() if k != "error_detail"},
                          "error": status["error_detail"]}
    assert status["error"] and status["error_detail"]["code"] == 3 and status["error_detail"]["tile"] == mute, status
    assert not int(dut.busy.value)
    for _ in range(4):
        await RisingEdge(dut.clk)
    results["after_timeout"] = await session.infer(0, check_layers=True)
    assert results["after_timeout"]["mismatches"] == 0

    # an invalid instruction where the program should end
    bad = Instruction(Opcode.END, {}).encode() & ~0xF | 0xF
    end_pc = len(session.compiled.program) - 1
    await firmware.bus.write(firmware.base["program"] + 4 * 8 * end_pc, bad & 0xFFFF_FFFF)
    status = await firmware.run(session.limit_cycles)
    results["invalid"] = status["error_detail"]
    assert status["error"] and status["error_detail"] == {"code": 1, "tile": 0, "pc": end_pc}, status
    await firmware.load_program(session.compiled.program)
    results["after_invalid"] = await session.infer(0, check_layers=False)
    assert results["after_invalid"]["mismatches"] == 0

    # a tile's own start is the sequencer's: firmware gets err
    tile_map = firmware.amap.region("tile0").rmap
    start_bit = tile_map.register("CTRL").field("start").offset
    refused = await firmware.bus.access(firmware.base["tile0"] + tile_map.address("CTRL"), 1 << start_bit)
    results["tile_start_refused"] = not refused.ok
    assert results["tile_start_refused"]

    # the bus latency: the buffer at the chip's input, the decoder's registered answers and
    # each tile's buffer
    await firmware.bus.read(firmware.reg("PC"))
    chip_register_cycles = firmware.bus.answer_cycles
    await firmware.bus.read(firmware.base["tile0"] + tile_map.address("CTRL"))
    results["answer_cycles"] = {"chip_register": chip_register_cycles, "tile_register": firmware.bus.answer_cycles}
    assert results["answer_cycles"] == {"chip_register": 4, "tile_register": 6}, results["answer_cycles"]

    # the memories refuse the bus while the program runs
    await firmware.clear_status()
    await firmware.command("start")
    await Timer(200, "ns")
    refused = await firmware.bus.access(firmware.base["activations"])
    results["locked_memory_refused"] = not refused.ok
    await firmware.command("abort")
    assert results["locked_memory_refused"]
    write_results(raw, results)


async def timed_images(session: ChipSession, images: range) -> tuple[float, list]:
    """Process CPU seconds to run ``images`` (write input, start, wait, read the outputs),
    and the predicted classes."""
    firmware, compiled = session.firmware, session.compiled
    out = compiled.output
    predicted = []
    started = time.process_time()
    for i in images:
        x = session.chip.quantise(session.job["images"][i:i + 1])
        await firmware.write_activations(compiled.input.base, x[0])
        session.bridge.start_image(i)
        status = await firmware.run(session.limit_cycles)
        if status["error"] or not status["done"]:
            raise ChipRunError(f"image {i}: the program stopped with {status['error_detail']}")
        predicted.append(int(np.argmax(await firmware.read_activations(out.base, out.size))))
    return time.process_time() - started, predicted


async def load_queue(dut, cfg, codes: list) -> None:
    """Fill the harness's code queue with one inference's MVM codes (untimed)."""
    if len(codes) > QUEUE_DEPTH:
        raise ChipRunError(f"an inference runs {len(codes)} MVMs; the harness's code queue holds {QUEUE_DEPTH}")
    dut.queue_reset.value = 1
    await RisingEdge(dut.clk)
    dut.queue_reset.value = 0
    for entry in codes:
        dut.queue_data.value = pack_codes(cfg, entry)
        dut.queue_write.value = 1
        await RisingEdge(dut.clk)
    dut.queue_write.value = 0
    await RisingEdge(dut.clk)


@cocotb.test()
async def speed(dut):
    """Images per second of the full co-simulation (the bridge computes every MVM's codes
    from the row drive) against the same RTL with every MVM's codes queued in HDL beforehand
    (no Python awake during an inference), alternated ``repeats`` times; process CPU time."""
    cfg, raw, job = load_job()
    session = ChipSession(dut, cfg, job)
    await session.setup()
    images = range(len(job["images"]))
    full, rtl_only, served, cycles = [], [], {}, []
    for _ in range(job.get("repeats", 3)):
        seconds, predicted = 0.0, []
        for i in images:
            spent, classes = await timed_images(session, range(i, i + 1))
            seconds += spent
            predicted += classes
            served[i] = session.bridge.served_codes()
        full.append(seconds)
        cycles.append(await session.firmware.field("CYCLES", "count"))
    session.server.cancel()
    dut.queue_mode.value = 1
    for _ in range(job.get("repeats", 3)):
        seconds, queued = 0.0, []
        for i in images:
            await load_queue(dut, cfg, served[i])
            spent, classes = await timed_images(session, range(i, i + 1))
            seconds += spent
            queued += classes
        rtl_only.append(seconds)
    dut.queue_mode.value = 0
    n = len(images)
    results = {
        "images": n,
        "repeats": len(full),
        "images_per_s": n / min(full),
        "images_per_s_median": n / float(np.median(full)),
        "rtl_only_images_per_s": n / min(rtl_only),
        "rtl_only_images_per_s_median": n / float(np.median(rtl_only)),
        "fraction_of_rtl_only": min(rtl_only) / min(full),
        "cycles_per_image": float(cycles[-1]),
        "images_per_s_at_clock": cfg.clock_mhz * 1e6 / max(cycles[-1], 1),
        "same_classes": queued == predicted,
        "full_cpu_s": full,
        "rtl_only_cpu_s": rtl_only,
    }
    write_results(raw, results)
    assert results["same_classes"], "the queued codes gave other classes than the bridge's"


async def evaluate(session: ChipSession, check_layers: bool) -> dict:
    """Accuracy and exactness over the job's test images at the session's model time."""
    rows = [await session.infer(i, check_layers) for i in range(len(session.job["images"]))]
    predicted = np.array([r["predicted"] for r in rows])
    return {"accuracy": float(np.mean(predicted == np.asarray(session.job["labels"]))),
            "mismatches": int(sum(r["mismatches"] for r in rows)),
            "predicted": predicted.tolist()}


@cocotb.test()
async def drift(dut):
    """The drift scenario at network level: at each time point the firmware runs GDC and
    batch-norm recalibration over the bus; accuracy per compensation, every inference
    checked against the golden network model with the registers the firmware wrote."""
    from neurophase.cosim.chip_compensation import ChipCompensation

    cfg, raw, job = load_job()
    session = ChipSession(dut, cfg, job)
    await session.setup()
    compensation = ChipCompensation(session, job["calibration_images"])
    session.t_s = 0.0
    await compensation.reference()
    rows = []
    for index, t_s in enumerate(job["times"], start=1):
        session.t_s = float(t_s)
        await compensation.unit_gains()
        await compensation.compiled_batch_norm()
        result = {"t_s": t_s, "none": await evaluate(session, job["check_layers"])}
        dut._log.info("progress: t = %g s: no compensation", t_s)
        alphas = await compensation.gdc(index)
        result["alpha_mean"] = float(np.mean([a.mean() for a in alphas.values()]))
        result["gdc"] = await evaluate(session, job["check_layers"])
        dut._log.info("progress: t = %g s: GDC", t_s)
        await compensation.recalibrate_batch_norm()
        result["gdc+bn"] = await evaluate(session, job["check_layers"])
        dut._log.info("progress: t = %g s: GDC + batch-norm recalibration", t_s)
        rows.append(result)
    results = {"images": len(job["images"]), "calibration_images": len(job["calibration_images"]),
               "calibration_vectors": len(compensation.vectors), "rows": rows,
               "mismatches": int(sum(r[c]["mismatches"] for r in rows for c in ("none", "gdc", "gdc+bn"))),
               "row_mismatches": int(dut.row_mismatches.value), "unknown_tags": len(session.bridge.unknown_tags)}
    write_results(raw, results)
    assert results["mismatches"] == 0, f"{results['mismatches']} activations differ from the golden model"
    assert results["row_mismatches"] == 0 and results["unknown_tags"] == 0


@cocotb.test()
async def error_programs(dut):
    """Each of the job's programs (256-bit words, loaded from pc 0) runs once; the error the
    chip reports (``ERROR.code``, ``pc``, ``tile``) is recorded, and the sequencer must be idle."""
    cfg, raw, job = load_job()
    session = ChipSession(dut, cfg, job)
    await session.setup()
    firmware, reports = session.firmware, []
    for words in job["programs"]:
        for pc, word in enumerate(words):
            for j in range(8):
                await firmware.bus.write(firmware.base["program"] + 4 * (pc * 8 + j), (word >> (32 * j)) & 0xFFFF_FFFF)
        status = await firmware.run(session.limit_cycles)
        reports.append({"done": status["done"], "error": status["error"], **status["error_detail"],
                        "busy": int(dut.busy.value)})
    write_results(raw, {"reports": reports})
    assert all(not r["busy"] for r in reports)
