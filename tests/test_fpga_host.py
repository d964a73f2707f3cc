"""Host driver end to end against the simulated board (the FPGA top under Verilator, its
UART bridged to a TCP socket): load weights, run MVMs, compare with the golden model
(crossbar emulator model -> tile datapath model); drift gains and drift steps; link
recovery after garbage and a stalled frame; later host sessions after a stalled, a
half-closed and a garbled one. Plus transport, register-file and validation unit tests."""

import re
import socket
import threading
import time

import numpy as np
import pytest

from neurophase.config import ChipConfig
from neurophase.fpga.host import HostError, NeuroPhaseHost, RegisterFile
from neurophase.fpga.regmap import FpgaAddressMap
from neurophase.fpga.sim_board import SimBoard
from neurophase.fpga.transports import (
    LinkDesync, LinkError, SerialTransport, SocketTransport, UartBoneLink, open_transport,
)
from neurophase.models.crossbar_emulator import CrossbarEmulatorModel, EmulatorParams, emulated_mvm
from neurophase.models.datapath import DatapathParams, DatapathSettings

PRESET = "fpga/ulx3s.toml"


def fpga_config() -> ChipConfig:
    from pathlib import Path

    return ChipConfig.from_toml(Path(__file__).resolve().parents[1] / PRESET)


@pytest.mark.verilator
def test_host_script_on_the_simulated_board(tmp_path, seed):
    """One simulated board (one Verilator build, so it is one test: pytest-xdist would build
    it once per worker otherwise) serving host sessions until the test stops it: the first
    runs every step of the host script; the ones after it leave the link stalled,
    half-closed and garbled, and the last, clean one must work exactly."""
    cfg = fpga_config()
    with SimBoard(cfg, tmp_path / "sim_board", sessions=0, accept_timeout_s=1.0) as board:
        # sessions 0 serves until stopped: waiting longer than accept_timeout_s is no failure
        time.sleep(2.5)
        host = NeuroPhaseHost.connect(board.url, board.map_path, timeout=60.0)
        model = CrossbarEmulatorModel(EmulatorParams.from_config(cfg))
        session = (cfg, host, model)
        try:
            check_identify_and_register_access(session)
            check_mvms_match_the_golden_model(session, seed)
            check_drift_gains_and_drift_step(session, seed)
            check_link_recovers_from_garbage_and_a_stalled_frame(session)
            bias = leave_per_tile_gain_and_a_stalled_frame(session)
        finally:
            host.close()
        check_half_closed_session_gets_its_answer(board)
        abandon_a_long_read(board)
        check_garbled_session_is_named(board)
        check_clean_session_after_broken_ones(board, cfg, seed, bias)
        with pytest.raises(Exception, match="is in use by another run"):  # the folder is locked while it runs
            with SimBoard(cfg, tmp_path / "sim_board"):
                pass
    assert board.run is not None and board.run.ok, f"simulated board failed: {board.run}"
    log = board.run.log.read_text(encoding="utf-8")
    assert "session 5 ended" in log and "stop file found" in log
    dropped = re.search(r"session 3 ended: \d+ bytes in, \d+ bytes out, (\d+) of them dropped", log)
    assert dropped and int(dropped[1]) >= 1000, "the abandoned answer must be dropped, not kept for the next host"


def random_settings(cfg, rng, params):
    cols = cfg.tile.cols
    one_gain = 1 << params.drift_gain.gain_frac_bits
    one_scale = 1 << params.batch_norm.scale_frac_bits
    return DatapathSettings(
        trims=rng.integers(-4, 5, cols),
        gains=rng.integers(one_gain * 3 // 4, one_gain * 5 // 4, cols),
        scale=rng.integers(one_scale // 2, one_scale * 3 // 2, cols),
        bias=rng.integers(-2000, 2000, cols),
        shift=9,
        relu=bool(rng.integers(0, 2)),
    )


def apply_settings(host, settings):
    host.set_datapath(trims=settings.trims, gains=settings.gains, scale=settings.scale, bias=settings.bias,
                      shift=settings.shift, relu=settings.relu)


def check_identify_and_register_access(session):
    cfg, host, _ = session
    info = host.identify()
    assert (info["rows"], info["cols"], info["lanes"], info["clock_mhz"]) == (32, 32, 8, 100)
    host.set_fields("ADC_TIMEOUT", cycles=777)
    assert host.field("ADC_TIMEOUT", "cycles") == 777
    host.set_fields("ADC_TIMEOUT", cycles=cfg.datapath.adc_timeout_cycles)
    host.write_array("BN_BIAS", [-5, 6, -7], start=3)
    assert list(host.read_array("BN_BIAS", 3, start=3)) == [-5, 6, -7]
    host.write_array("BN_BIAS", [0, 0, 0], start=3)


def check_mvms_match_the_golden_model(session, seed):
    cfg, host, model = session
    rng = np.random.default_rng(seed)
    params = DatapathParams.from_config(cfg)
    weights = rng.integers(-127, 128, (cfg.tile.rows, cfg.tile.cols))
    g_plus, g_minus = host.load_weights(weights)
    model.set_conductances(g_plus, g_minus)
    errors = host.field("LINK_BUS_ERRORS", "count")
    assert list(host.read_array("WEIGHT", 2)) == [0, 0]  # write-only: answered with err, read as 0
    assert host.field("LINK_BUS_ERRORS", "count") == errors + 2
    host.set_fields("EMU_SCALE", factor=512)  # 0.125: plane sums fit the 10-bit ADC mostly
    model.scale = 512
    host.set_noise(3, seed & 0xFFFF)
    model.noise_bits = 3
    model.reseed(seed & 0xFFFF)
    settings = random_settings(cfg, rng, params)
    apply_settings(host, settings)
    for i in range(4):
        x = rng.integers(-128, 128, cfg.tile.rows)
        got = host.mvm(x)
        want = emulated_mvm(cfg, model, settings, x)
        assert np.array_equal(got.result, want["result"]), f"MVM {i}: {got.result} != {want['result']}"
        assert np.array_equal(got.saturated, want["saturated"]), f"MVM {i} saturation bits"
    assert host.field("EMU_CONVERSIONS", "count") == model.conversions


def check_drift_gains_and_drift_step(session, seed):
    cfg, host, model = session
    rng = np.random.default_rng(seed + 7)
    params = DatapathParams.from_config(cfg)
    settings = DatapathSettings.identity(params, shift=8)
    apply_settings(host, settings)
    host.set_noise(0, 1)
    model.noise_bits = 0
    model.reseed(1)
    x = rng.integers(-128, 128, cfg.tile.rows)
    host.set_fields("EMU_SCALE", factor=512)
    model.scale = 512
    fresh = host.mvm(x).result
    assert np.array_equal(fresh, emulated_mvm(cfg, model, settings, x)["result"])
    factor = host.drift_step(t_s=1e6, nu=0.06, range_factor=0.125)  # devices drift down
    model.scale = factor
    assert factor < 512
    drifted = host.mvm(x).result
    assert np.array_equal(drifted, emulated_mvm(cfg, model, settings, x)["result"])
    # compensate with a tile gain, then with per-column gains
    alpha = round((512 / factor) * (1 << params.drift_gain.gain_frac_bits))
    host.update_drift_gains(alpha)
    settings.gains = alpha
    compensated = host.mvm(x).result
    assert np.array_equal(compensated, emulated_mvm(cfg, model, settings, x)["result"])
    assert np.abs(compensated - fresh).sum() < np.abs(drifted - fresh).sum()
    gains = np.full(cfg.tile.cols, alpha) + rng.integers(-50, 50, cfg.tile.cols)
    host.update_drift_gains(gains)
    settings.gains = gains
    assert np.array_equal(host.mvm(x).result, emulated_mvm(cfg, model, settings, x)["result"])


def check_link_recovers_from_garbage_and_a_stalled_frame(session):
    _, host, _ = session
    before = host.link_errors()
    host.transport.write(bytes([0x00, 0xFF, 0x42, 0x99]))  # garbage where a frame must start
    assert host.read("FPGA_ID") == 0x4E504846
    host.transport.write(bytes([0x02, 0x01, 0x00]))  # a read frame cut short, then silence
    host.resynchronise()  # quiet for longer than the bridge's frame timeout
    assert host.read("ID") == 0x4E504854
    after = host.link_errors()
    assert after["bad_commands"] - before["bad_commands"] == 4
    assert after["frame_timeouts"] - before["frame_timeouts"] == 1
    assert after["uart_framing"] == before["uart_framing"]


def leave_per_tile_gain_and_a_stalled_frame(session):
    """Select the tile gain (per-tile mode), then send half a write frame and hang up: the
    next session must neither finish this frame nor inherit the gain mode."""
    cfg, host, _ = session
    host.update_drift_gains(1 << DatapathParams.from_config(cfg).drift_gain.gain_frac_bits)
    assert host.field("DRIFT", "per_column") == 0
    bias = host.read_array("BN_BIAS")
    address = host.regs.array("BN_BIAS")["base"] // 4
    host.transport.write(bytes([0x01, 0x02]) + address.to_bytes(4, "big") + bytes([0x12, 0x34]))  # 2 of 8 data bytes
    return bias


def read_frame(host, name: str, count: int) -> bytes:
    return bytes([0x02, count]) + (host.regs.array(name)["base"] // 4).to_bytes(4, "big")


def check_half_closed_session_gets_its_answer(board):
    """A host that half-closes after a read still receives the answer; it stays in its session."""
    with NeuroPhaseHost.connect(board.url, board.map_path, timeout=60.0) as host:
        host.transport.write(read_frame(host, "BN_BIAS", 32))
        host.transport._sock.shutdown(socket.SHUT_WR)
        answer = host.transport.read(4 * 32)
        assert len(answer) == 128


def abandon_a_long_read(board):
    """A host that asks for 255 words and disconnects at once: its answer must go nowhere."""
    with NeuroPhaseHost.connect(board.url, board.map_path, timeout=60.0) as host:
        host.transport.write(read_frame(host, "WEIGHT", 255))


def check_garbled_session_is_named(board):
    """Stray bytes that start a read frame: the driver says the link is out of step,
    not that the bitstream is wrong."""
    with NeuroPhaseHost.connect(board.url, board.map_path, timeout=60.0) as host:
        host.transport.write(read_frame(host, "BN_SCALE", 8))  # an answer nobody asked for
        with pytest.raises(LinkDesync, match="the link is out of step"):
            host.identify()


def check_clean_session_after_broken_ones(board, cfg, seed, bias_before):
    with NeuroPhaseHost.connect(board.url, board.map_path, timeout=60.0) as host:
        before = host.link_errors()
        host.identify()
        assert host.transport.discard_input() == b"", "bytes of an earlier session leaked into this one"
        assert np.array_equal(host.read_array("BN_BIAS"), bias_before), "the stalled frame was finished"
        assert before["frame_timeouts"] >= 1
        rng = np.random.default_rng(seed + 11)
        model = CrossbarEmulatorModel(EmulatorParams.from_config(cfg))
        g_plus, g_minus = host.load_weights(rng.integers(-127, 128, (cfg.tile.rows, cfg.tile.cols)))
        model.set_conductances(g_plus, g_minus)
        host.set_fields("EMU_SCALE", factor=512)
        model.scale = 512
        host.set_noise(0, 1)
        model.noise_bits = 0
        model.reseed(1)
        settings = random_settings(cfg, rng, DatapathParams.from_config(cfg))  # per-column gains
        apply_settings(host, settings)
        assert host.field("DRIFT", "per_column") == 1
        for _ in range(2):
            x = rng.integers(-128, 128, cfg.tile.rows)
            assert np.array_equal(host.mvm(x).result, emulated_mvm(cfg, model, settings, x)["result"])


# -- without the board ------------------------------------------------------------------------

def test_register_file_round_trip_and_errors(tmp_path):
    cfg = fpga_config()
    paths = FpgaAddressMap(cfg).write(tmp_path)
    regs = RegisterFile.from_json(paths["fpga-map"])
    assert regs.register("FPGA_ID")["address"] == FpgaAddressMap(cfg).window("fpga").base
    assert regs.array("WEIGHT")["length"] == 32 * 32
    with pytest.raises(KeyError, match="no register 'NOPE'"):
        regs.register("NOPE")
    with pytest.raises(HostError, match=r"^cannot read the FPGA register map '/nonexistent.json': "):
        RegisterFile.from_json("/nonexistent.json")


class FakeBridge:
    """A socket peer that answers UARTBone reads from a dict, to test the link without a board."""

    def __init__(self):
        self.memory = {}
        self.frames = 0
        self.extra = b""  # sent after the next answer: bytes no read asked for
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.server.accept()
        buffer = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 6:
                command, length = buffer[0], buffer[1]
                address = int.from_bytes(buffer[2:6], "big")
                if command in (1, 3):
                    if len(buffer) < 6 + 4 * length:
                        break
                    for i in range(length):
                        self.memory[address + (i if command == 1 else 0)] = int.from_bytes(
                            buffer[6 + 4 * i:10 + 4 * i], "big")
                    buffer = buffer[6 + 4 * length:]
                    self.frames += 1
                else:
                    self.frames += 1  # before answering: the host may look at once
                    conn.sendall(b"".join(self.memory.get(address + (i if command == 2 else 0), 0).to_bytes(4, "big")
                                          for i in range(length)) + self.extra)
                    self.extra = b""
                    buffer = buffer[6:]
        conn.close()


def test_uartbone_link_frames_and_bursts():
    fake = FakeBridge()
    with SocketTransport("127.0.0.1", fake.port, timeout=5) as transport:
        link = UartBoneLink(transport)
        words = list(range(600))
        link.write(0x100, words)  # three frames of at most 255 words
        assert link.read(0x100, 600) == words
        assert link.read(0x100 + 4 * 599, 3, increment=False) == [599] * 3
        with pytest.raises(ValueError, match=r"^bus address must be a non-negative multiple of 4 below 2\*\*34, not 0x3$"):
            link.read(3)


def test_transport_errors():
    with pytest.raises(ValueError, match=r"^socket transport URL must look like 'socket://localhost:4567', "
                                         r"not 'socket://nohost'$"):
        open_transport("socket://nohost")
    assert isinstance(open_transport("/dev/ttyUSB7?baud=115200"), SerialTransport)
    with pytest.raises(LinkError, match=r"^cannot open serial port '/dev/nonexistent-tty' at 115200 baud: "):
        SerialTransport("/dev/nonexistent-tty", 115200).open()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(LinkError, match=rf"^cannot connect to the simulated board at 127.0.0.1:{port}: "):
        SocketTransport("127.0.0.1", port, connect_timeout=0.3).open()


# -- the host driver's checks, against a fake bridge ---------------------------------------------------

@pytest.fixture
def fake_host():
    fake = FakeBridge()
    cfg = fpga_config()
    transport = SocketTransport("127.0.0.1", fake.port, timeout=5)
    transport.open()
    transport.resync_quiet_s = 0.3  # the fake answers at once
    host = NeuroPhaseHost(transport, RegisterFile.from_config(cfg))
    yield fake, host, cfg
    host.close()


def word(host, register):
    return host.regs.register(register)["address"] // 4


NAN_WEIGHTS = np.zeros((32, 32))
NAN_WEIGHTS[3, 4] = np.nan
FRACTIONS = np.zeros((32, 32))
FRACTIONS[0, 0] = 0.5


@pytest.mark.parametrize("call, message", [
    (lambda h: h.load_weights(NAN_WEIGHTS), r"^weights \(for 7-bit conductance codes\) must be integers, found nan$"),
    (lambda h: h.load_weights(FRACTIONS), r"^weights \(for 7-bit conductance codes\) must be integers, found 0.5$"),
    (lambda h: h.load_weights(np.zeros((32, 31), dtype=int)),
     r"^weights \(for 7-bit conductance codes\) must have shape \(32, 32\), not \(32, 31\)$"),
    (lambda h: h.load_weights(np.full((32, 32), 128)),
     r"^weights \(for 7-bit conductance codes\) must lie in \[-127, 127\], found 128$"),
    (lambda h: h.load_weights(np.zeros((32, 32), dtype=complex)),
     r"^weights \(for 7-bit conductance codes\) must be integers, not complex numbers$"),
    (lambda h: h.load_conductances(np.zeros((1, 32, 32), int), np.zeros((32, 32), int)),
     r"^g_minus codes must have shape \(1, 32, 32\), not \(32, 32\)$"),
    (lambda h: h.mvm(np.zeros(31, dtype=int)), r"^INPUT values must have shape \(32,\), not \(31,\)$"),
    (lambda h: h.mvm(np.full(32, 128)), r"^INPUT values must lie in \[-128, 127\], found 128$"),
    (lambda h: h.mvm([float("nan")] * 32), r"^INPUT values must be integers, found nan$"),
    (lambda h: h.set_datapath(gains=np.ones(31, dtype=int)), r"^GAIN values must have shape \(32,\), not \(31,\)$"),
    (lambda h: h.set_datapath(bias=np.ones(32, dtype=int), trims=[0] * 33),
     r"^ADC_TRIM values must have shape \(32,\), not \(33,\)$"),
    (lambda h: h.set_datapath(relu="yes"), r"^relu must be True or False, not 'yes'$"),
    (lambda h: h.update_drift_gains(float("inf")), r"^the tile gain DRIFT_GAIN.alpha must be an integer, found inf$"),
    (lambda h: h.write_array("BN_BIAS", [1, 2], start=31), r"^array BN_BIAS has 32 elements; cannot write 2 from 31$"),
    (lambda h: h.write_array("BN_BIAS", [1], start=-1),
     r"^start index of array BN_BIAS must be an integer from 0 to 31, not -1$"),
    (lambda h: h.read_array("BN_BIAS", 4, start=30),
     r"^element count of array BN_BIAS from 30 must be an integer from 1 to 2, not 4$"),
    (lambda h: h.read_array("RESULT", start=32), r"^start index of array RESULT must be an integer from 0 to 31, not 32$"),
    (lambda h: h.set_fields("ADC_TIMEOUT", cycles=2.5), r"^ADC_TIMEOUT.cycles must be an integer from 0 to \d+, not 2.5$"),
    (lambda h: h.set_fields("ADC_TIMEOUT", cycles=float("nan")),
     r"^ADC_TIMEOUT.cycles must be an integer from 0 to \d+, not nan$"),
    (lambda h: h.drift_step(t_s=float("nan"), nu=0.05), r"^t_s must be a positive number, not nan$"),
])
def test_the_driver_refuses_bad_values_before_sending(fake_host, call, message):
    fake, host, _ = fake_host
    with pytest.raises(ValueError, match=message):
        call(host)
    host.read("FPGA_ID")  # a frame after the refused call: it sent nothing before it
    assert fake.frames == 1 and fake.memory == {}


def test_set_datapath_gains_selects_per_column_gains_itself(fake_host):
    """An earlier session left the tile gain selected (DRIFT.per_column = 0): per-column
    gains must select per-column mode, a scalar gain the tile gain."""
    fake, host, _ = fake_host
    fake.memory[word(host, "DRIFT")] = 0
    gains = np.arange(1000, 1032)
    host.set_datapath(gains=gains)
    assert host.field("DRIFT", "per_column") == 1
    assert list(host.read_array("GAIN")) == list(gains)
    host.set_datapath(gains=1234)
    assert host.field("DRIFT", "per_column") == 0 and host.field("DRIFT_GAIN", "alpha") == 1234


def test_bytes_no_read_asked_for_are_named(fake_host):
    fake, host, _ = fake_host
    fake.extra = b"\x01\x02\x03"
    host.read("FPGA_ID")
    time.sleep(0.2)
    with pytest.raises(LinkDesync, match=r"^3 byte\(s\) arrived that no read asked for \(starting 01 02 03\): "
                                          r"the link is out of step"):
        host.read("FPGA_ID")
    fake.extra = b"\xAA" * 8  # the magic word read is followed by more bytes: not a wrong bitstream
    with pytest.raises(LinkDesync, match=r"^register ID reads 0x00000000, expected 0x4e504854, and 8 more byte\(s\) "
                                          r"followed the answer: the link is out of step"):
        host.identify()
    with pytest.raises(HostError, match=r"^register ID reads 0x00000000, expected 0x4e504854: wrong bitstream"):
        host.identify()  # in step, but no magic: that is a wrong bitstream


def test_a_serial_session_starts_resynchronised(monkeypatch):
    calls = []
    monkeypatch.setattr(NeuroPhaseHost, "resynchronise", lambda self: calls.append(type(self.transport).__name__))
    NeuroPhaseHost.connect("loop://", fpga_config()).close()
    assert calls == ["SerialTransport"]
