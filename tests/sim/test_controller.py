"""The simulated controller over TCP: our client, the vendor's client, and error replies."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcodes_stmtip.nanonis import protocol as p
from qcodes_stmtip.nanonis.client import NanonisClient, TipShaperProps
from qcodes_stmtip.sim import microscope as ms
from qcodes_stmtip.sim.controller import HANDLERS, SimulatedNanonisServer, serve_simulator
from qcodes_stmtip.sim.microscope import SimulatedMicroscope


@pytest.fixture
def server():
    srv = serve_simulator("hsi100", seed=7, time_acceleration=200.0, initial_tip="rows")
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    with NanonisClient(port=server.port, timeout=5) as c:
        yield c


def test_every_table_command_has_a_handler() -> None:
    assert set(HANDLERS) == set(p.COMMANDS)


def test_settings_round_trip_through_the_client(client: NanonisClient) -> None:
    client.bias_set(-1.5)
    assert client.bias_get() == pytest.approx(-1.5)
    client.z_ctrl_setpnt_set(80e-12)
    assert client.z_ctrl_setpnt_get() == pytest.approx(80e-12)
    assert client.current_get() == pytest.approx(80e-12, rel=0.15)
    client.scan_frame_set(10e-9, -5e-9, 30e-9, 20e-9, 15.0)
    f = client.scan_frame_get()
    assert (f.centre_x, f.centre_y, f.width, f.height, f.angle) == pytest.approx(
        (10e-9, -5e-9, 30e-9, 20e-9, 15.0))
    client.scan_buffer_set([0, 14, 1], 64, 48)
    assert client.scan_buffer_get() == type(client.scan_buffer_get())((0, 14, 1), 64, 48)
    client.scan_speed_set(0, 0, 0.05, 0.05, 2, 2.0)
    speed = client.scan_speed_get()
    assert speed.forward_time_per_line == pytest.approx(0.05)
    assert speed.backward_time_per_line == pytest.approx(0.025)
    assert speed.forward_speed == pytest.approx(30e-9 / 0.05)
    assert speed.keep_constant == 1 and speed.speed_ratio == pytest.approx(2.0)
    client.scan_props_set(2, 2, 3, "series_", "a comment", ["Z-Controller", "Bias"], 3)
    props = TipShaperProps(0.1, 1, 0.2, -2e-9, 0.1, 3.0, 0.05, 3e-9, 0.1, 0.05, 1)
    client.tip_shaper_props_set(props)
    got = client.tip_shaper_props_get()
    assert got.change_bias == 1 and got.restore_feedback == 1
    assert (got.tip_lift, got.bias_lift, got.lift_height) == pytest.approx((-2e-9, 3.0, 3e-9))
    client.safe_tip_props_set(1, 1, 5e-9)
    names = client.signals_names_get()
    assert names[0] == "Current (A)" and len(names) == 128
    assert client.signals_val_get(names.index("Bias (V)")) == pytest.approx(-1.5)
    assert client.signals_val_get(names.index("Z (m)")) == pytest.approx(client.z_ctrl_z_pos_get(),
                                                                         abs=1e-11)
    version = client.util_version_get()
    assert "simulator" in version.product and version.host_release > 0


def test_scan_cycle_through_the_client(client: NanonisClient, server) -> None:
    client.scan_buffer_set([0, 14], 64, 64)
    client.scan_speed_set(0, 0, 1.0, 1.0, 2, 1.0)  # 128 s simulated = 0.64 s wall
    client.scan_props_set(2, 2, 1, "tc_", "", [], 0)
    client.scan_action(0, True)
    assert client.scan_status_get()
    timed_out, path = client.scan_wait_end_of_scan(10000)
    assert not timed_out and path.endswith("tc_00001.sxm")
    assert not client.scan_status_get()
    z = client.scan_frame_data_grab(14, True)
    cur = client.scan_frame_data_grab(0, False)
    assert z.channel_name == "Z (m)" and cur.channel_name == "Current (A)"
    assert z.data.shape == (64, 64) and z.scan_up
    assert np.isfinite(z.data).all()
    assert 1e-12 < float(np.ptp(z.data)) < 1e-8  # ångström-scale corrugation, in metres
    truth = server.microscope.ground_truth()
    assert truth.frame_complete and truth.frame_label is not None
    with pytest.raises(p.NanonisError, match="not in the scan buffer"):
        client.scan_frame_data_grab(5, True)
    client.scan_action(0, False)
    partial = client.scan_frame_data_grab(14, True)
    assert not partial.scan_up and np.isnan(partial.data[0]).all()  # bottom line comes last


def test_positions_motor_pulse_withdraw_and_approach(client: NanonisClient, server) -> None:
    client.fol_me_xy_pos_set(3e-9, -2e-9, wait=True)
    assert client.fol_me_xy_pos_get() == pytest.approx((3e-9, -2e-9))
    assert client.scan_xy_pos_get() == pytest.approx((3e-9, -2e-9), abs=1e-15)
    client.scan_action(6, True)  # go to the frame centre
    assert client.fol_me_xy_pos_get() == pytest.approx((0.0, 0.0))
    client.motor_start_move(0, 3, 0, True)
    assert server.microscope.coarse_x == pytest.approx(3 * ms.STEP_XY)
    client.bias_pulse(width_s=0.02, amplitude_V=3.0, wait=True, z_hold=1, absolute=2)
    client.z_ctrl_withdraw(True, 1000)
    assert not client.z_ctrl_on_off_get()
    assert client.current_get() == 0.0
    assert client.z_ctrl_status_get() in (ms.ZSTATUS_OFF, ms.ZSTATUS_WITHDRAWING)
    client.auto_approach_on_off_set(True)
    assert client.auto_approach_on_off_get()
    client.auto_approach_on_off_set(False)
    assert not client.auto_approach_on_off_get()
    server.microscope.set_approach(True)
    server.microscope._finish_approach()
    assert client.z_ctrl_on_off_get()
    client.z_ctrl_on_off_set(False)
    client.z_ctrl_z_pos_set(client.z_ctrl_z_pos_get() + 1e-10)
    client.z_ctrl_home()
    assert client.z_ctrl_status_get() == ms.ZSTATUS_OFF
    client.z_ctrl_on_off_set(True)
    client.tip_shaper_start(True, 5000)
    assert client.z_ctrl_on_off_get()


def test_bad_arguments_get_error_replies_and_the_connection_survives(client: NanonisClient) -> None:
    with pytest.raises(p.NanonisError) as info:
        client.bias_set(50.0)
    assert info.value.command == "Bias.Set" and "±10 V" in info.value.message
    with pytest.raises(p.NanonisError, match="pixels"):
        client.scan_buffer_set([0], 33, 10)
    with pytest.raises(p.NanonisError, match="signal index"):
        client.signals_val_get(999)
    with pytest.raises(p.NanonisError, match="Z controller off"):
        client.z_ctrl_z_pos_set(1e-9)
    assert client.bias_get() == pytest.approx(1.0)


def _raw_exchange(port: int, request: bytes) -> tuple[str, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        header = p.decode_response_header(_recv(s, 40))
        body = _recv(s, header.body_size)
        # The same connection still answers.
        s.sendall(p.encode_request("Bias.Get"))
        h2 = p.decode_response_header(_recv(s, 40))
        assert p.decode_response_body(p.COMMANDS["Bias.Get"], _recv(s, h2.body_size)) == (
            pytest.approx(1.0),)
        return header.command, body


def _recv(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "server closed the connection"
        out += chunk
    return out


def test_unknown_command_gets_an_error_reply(server) -> None:
    request = p.encode_request_header("Scan.Teleport", 4) + b"\0\0\0\1"
    command, body = _raw_exchange(server.port, request)
    assert command == "Scan.Teleport"
    status, message = p.decode_error_section(body, 0)
    assert status == 1 and "Unknown command" in message


def test_truncated_arguments_get_an_error_reply(server) -> None:
    request = p.encode_request_header("Scan.FrameSet", 6) + b"\0" * 6
    command, body = _raw_exchange(server.port, request)
    with pytest.raises(p.NanonisError, match="offset"):
        p.decode_response_body(p.COMMANDS[command], body)


def test_no_reply_when_the_flag_is_zero(server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        body = struct.pack(">f", 2.5)
        s.sendall(p.encode_request_header("Bias.Set", 4, send_response=False) + body)
        s.sendall(p.encode_request("Bias.Get"))
        header = p.decode_response_header(_recv(s, 40))
        assert header.command == "Bias.Get"
        assert p.decode_response_body(p.COMMANDS["Bias.Get"], _recv(s, header.body_size))[0] == 2.5


def test_concurrent_clients_and_blocking_waits(server) -> None:
    """A WaitEndOfScan on one connection does not block another connection."""
    waiter = NanonisClient(port=server.port)
    other = NanonisClient(port=server.port)
    waiter.scan_buffer_set([14], 32, 32)
    waiter.scan_speed_set(0, 0, 5.0, 5.0, 2, 1.0)  # 320 s simulated = 1.6 s wall
    waiter.scan_action(0, True)
    result: list = []
    t = threading.Thread(target=lambda: result.append(waiter.scan_wait_end_of_scan(-1)))
    t.start()
    answers = [other.bias_get() for _ in range(20)]
    assert t.is_alive(), "the frame should still be running while the other client is served"
    t.join(5)
    assert result and result[0][0] is False
    assert answers == [pytest.approx(1.0)] * 20
    waiter.close()
    other.close()


def test_server_lifecycle() -> None:
    m = SimulatedMicroscope("au111", seed=1, time_acceleration=10.0)
    with SimulatedNanonisServer(m) as srv:
        port = srv.port
        with NanonisClient(port=port) as c:
            assert "Z (m)" in c.signals_names_get()
    with pytest.raises(p.NanonisConnectionError):
        NanonisClient(port=port, timeout=1).bias_get()
    with pytest.raises(ValueError, match="port"):
        SimulatedNanonisServer(m, port=-1)


# ---------------------------------------------------------------- the vendor's client
@pytest.fixture
def vendor(server):
    nanonis_spm = pytest.importorskip("nanonis_spm")
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    yield nanonis_spm.Nanonis(conn)
    conn.close()


def _ok(result) -> list:
    error, _raw, values = result
    assert error == "", error
    return values


def test_vendor_client_against_the_simulator(vendor, server) -> None:
    """Every table command through nanonis-spm (its Scan_PropsGet/Util_VersionGet are broken)."""
    m = server.microscope
    _ok(vendor.Bias_Set(0.75))
    assert _ok(vendor.Bias_Get())[0] == pytest.approx(0.75)
    _ok(vendor.ZCtrl_SetpntSet(60e-12))
    assert _ok(vendor.ZCtrl_SetpntGet())[0] == pytest.approx(60e-12)
    assert _ok(vendor.Current_Get())[0] == pytest.approx(60e-12, rel=0.15)
    assert _ok(vendor.ZCtrl_OnOffGet())[0] == 1
    assert _ok(vendor.ZCtrl_StatusGet())[0] == ms.ZSTATUS_ON
    z = _ok(vendor.ZCtrl_ZPosGet())[0]
    _ok(vendor.ZCtrl_OnOffSet(0))
    _ok(vendor.ZCtrl_ZPosSet(z + 2e-10))
    assert _ok(vendor.ZCtrl_ZPosGet())[0] == pytest.approx(z + 2e-10, abs=1e-13)
    _ok(vendor.ZCtrl_OnOffSet(1))
    _ok(vendor.SafeTip_PropsSet(1, 1, 2e-9))
    assert m.safe_tip_threshold == pytest.approx(2e-9)
    _ok(vendor.Scan_FrameSet(1e-9, 2e-9, 25e-9, 25e-9, 0.0))
    assert _ok(vendor.Scan_FrameGet()) == pytest.approx([1e-9, 2e-9, 25e-9, 25e-9, 0.0])
    _ok(vendor.Scan_BufferSet([0, 14], 64, 32))
    assert m.get_buffer() == ((0, 14), 64, 32)
    n, channels, pixels, lines = _ok(vendor.Scan_BufferGet())
    assert (n, [c[0] for c in channels], pixels, lines) == (2, [0, 14], 64, 32)
    _ok(vendor.Scan_SpeedSet(0.0, 0.0, 1.0, 1.0, 2, 1.0))  # 64 s simulated = 0.32 s wall
    speed = _ok(vendor.Scan_SpeedGet())
    assert speed[2] == pytest.approx(1.0) and speed[4] == 1
    _ok(vendor.Scan_PropsSet(2, 2, 1, "vendor_", "via nanonis-spm", ["Z-Ctrl"], 0))
    assert m.series_name == "vendor_" and m.comment == "via nanonis-spm" and m.modules == ("Z-Ctrl",)
    _ok(vendor.Scan_Action(0, 1))
    assert _ok(vendor.Scan_StatusGet())[0] == 1
    timed_out, length, path = _ok(vendor.Scan_WaitEndOfScan(10000))
    assert timed_out == 0 and path.endswith("vendor_00001.sxm") and length == len(path)
    name_len, name, rows, cols, data, up = _ok(vendor.Scan_FrameDataGrab(14, 1))
    assert (name, rows, cols, up) == ("Z (m)", 32, 64, 1) and name_len == len(name)
    ours = m.frame_data(14, True)[1]
    np.testing.assert_array_equal(np.asarray(data, dtype=np.float32), ours)
    x, y = _ok(vendor.Scan_XYPosGet(1))
    assert np.isfinite(x) and np.isfinite(y)
    _ok(vendor.FolMe_XYPosSet(4e-9, 5e-9, 1))
    assert _ok(vendor.FolMe_XYPosGet(1)) == pytest.approx([4e-9, 5e-9])
    _ok(vendor.Bias_Pulse(1, 0.01, 2.0, 0, 2))
    _ok(vendor.TipShaper_PropsSet(0.05, 2, 0.0, -1e-9, 0.05, 1.0, 0.05, 2e-9, 0.05, 0.05, 1))
    props = _ok(vendor.TipShaper_PropsGet())
    assert props[3] == pytest.approx(-1e-9) and props[10] == 1
    _ok(vendor.TipShaper_Start(1, 5000))
    _ok(vendor.Motor_StartMove(2, 1, 0, 1))
    assert m.coarse_y == pytest.approx(ms.STEP_XY)
    total, count, names = _ok(vendor.Signals_NamesGet())
    assert count == len(ms.SIGNAL_NAMES) and names[:1] == ["Current (A)"]
    assert total == sum(4 + len(s) for s in ms.SIGNAL_NAMES)
    assert _ok(vendor.Signals_ValGet(names.index("Bias (V)"), 1))[0] == pytest.approx(0.75)
    _ok(vendor.AutoApproach_OnOffSet(0))
    assert _ok(vendor.AutoApproach_OnOffGet())[0] == 0
    _ok(vendor.ZCtrl_Home())
    _ok(vendor.ZCtrl_Withdraw(1, 1000))
    assert _ok(vendor.Current_Get())[0] == 0.0


def test_vendor_client_sees_error_strings(vendor) -> None:
    error, _, _ = vendor.Bias_Set(42.0)
    assert "±10 V" in error
    assert _ok(vendor.Bias_Get())[0] == pytest.approx(1.0)


def test_serve_command_runs_until_ctrl_c() -> None:
    import re
    import signal
    import subprocess
    import sys

    from qcodes_stmtip.cli import build_parser

    args = build_parser().parse_args(["sim", "serve", "--surface", "cu111", "--seed", "4"])
    assert (args.port, args.surface, args.seed, args.time_acceleration) == (6501, "cu111", 4, 1.0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "qcodes_stmtip", "sim", "serve", "--port", "0", "--surface", "au111"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        # Ctrl-C must reach the child even when this test runs in a background job (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        match = None
        lines = []
        while match is None:
            line = proc.stdout.readline()
            assert line, f"server exited (rc={proc.poll()}) after printing {lines}"
            lines.append(line)
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
        port = int(match.group(1))
        with NanonisClient(port=port, timeout=5) as c:
            assert c.signals_names_get()[0] == "Current (A)"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- fuzzing the server
_HEAVY = {"Scan.BufferSet", "Scan.Action"}  # valid random values could render huge frames


@pytest.fixture(scope="module")
def fast_server():
    srv = serve_simulator("au111", seed=3, time_acceleration=1e7, initial_tip="individual_atoms")
    yield srv
    srv.stop()


def _fuzz_exchange(port: int, command: str, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(p.encode_request_header(command, len(body)) + body)
        header = p.decode_response_header(_recv(s, 40))
        assert header.command == command
        reply = _recv(s, header.body_size)
        spec = p.COMMANDS.get(command)
        if spec is None:
            assert p.decode_error_section(reply, 0)[0] == 1
        else:
            try:
                p.decode_response_body(spec, reply)
            except p.NanonisError:
                pass
        s.sendall(p.encode_request("Signals.NamesGet"))  # the connection still works
        h2 = p.decode_response_header(_recv(s, 40))
        assert p.decode_response_body(p.COMMANDS["Signals.NamesGet"], _recv(s, h2.body_size))


def test_fuzz_random_bodies_always_get_a_reply(fast_server) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = sorted(set(p.COMMANDS) - _HEAVY) + ["Bias.Teleport", "X"]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(command=st.sampled_from(names), body=st.binary(max_size=64))
    def check(command: str, body: bytes) -> None:
        _fuzz_exchange(fast_server.port, command, body)

    check()


def test_garbage_header_closes_only_that_connection(fast_server) -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", fast_server.port), timeout=5) as s:
            s.sendall(b"\xff" * 8 + rng.bytes(200))
            try:  # closed (a reset when unread bytes were pending), nothing sent back
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
    with NanonisClient(port=fast_server.port) as c:
        assert c.signals_names_get()[18] == "Z (m)"


# ---------------------------------------------------------------- issue 15: bounded work
def _read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout applies)."""
    out = b""
    while True:
        try:
            chunk = s.recv(1 << 16)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def _replies(raw: bytes) -> list[tuple[str, bytes]]:
    """Split a byte stream into complete ``(command, body)`` replies; fails on partial junk."""
    out = []
    while raw:
        header = p.decode_response_header(raw[:40])
        body = raw[40:40 + header.body_size]
        assert len(body) == header.body_size, "a partial reply"
        out.append((header.command, body))
        raw = raw[40 + header.body_size:]
    return out


@pytest.mark.parametrize(("command", "size", "match"), [
    ("Bias.Set", 1 << 26, "body size 67108864 exceeds the 4-byte limit"),
    ("Scan.PropsSet", 10_000_000, "body size 10000000 exceeds the 196640-byte limit"),
    ("Bias.Teleport", 1 << 20, "exceeds the 65536-byte limit"),
    ("Bias.Set", 1 << 30, r"body size 1073741824 is outside \[0, 134217728\]"),
])
def test_declared_body_past_its_limit_gets_an_error_reply_and_nothing_allocated(
        fast_server, command: str, size: int, match: str) -> None:
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", fast_server.port), timeout=5) as s:
            s.sendall(p.encode_request_header(command, size))
            replies = _replies(_read_until_closed(s))  # then the server hangs up
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [c for c, _ in replies] == [command]
    assert re.search(match, _error_message(command, replies[0][1]))
    assert peak < 1 << 20
    with NanonisClient(port=fast_server.port) as c:  # the server is unharmed
        assert c.signals_names_get()[18] == "Z (m)"


def _error_message(command: str, body: bytes) -> str:
    """The description of an error reply (with or without placeholder return values)."""
    spec = p.COMMANDS.get(command)
    if spec is None:
        status, message = p.decode_error_section(body, 0)
        assert status == 1
        return message
    with pytest.raises(p.NanonisError) as info:
        p.decode_response_body(spec, body)
    return info.value.message


def test_a_small_excess_is_dropped_and_the_connection_kept(fast_server) -> None:
    with socket.create_connection(("127.0.0.1", fast_server.port), timeout=5) as s:
        s.sendall(p.encode_request_header("Bias.Set", 64) + bytes(64))
        header = p.decode_response_header(_recv(s, 40))
        with pytest.raises(p.NanonisError, match="exceeds the 4-byte limit"):
            p.decode_response_body(p.COMMANDS["Bias.Set"], _recv(s, header.body_size))
        s.sendall(p.encode_request("Signals.NamesGet"))
        h2 = p.decode_response_header(_recv(s, 40))
        assert p.decode_response_body(p.COMMANDS["Signals.NamesGet"], _recv(s, h2.body_size))


def test_server_body_limit_is_configurable() -> None:
    m = SimulatedMicroscope("au111", seed=1)
    with SimulatedNanonisServer(m, max_body_size=64) as srv, \
            NanonisClient(port=srv.port, timeout=5) as c:
        c.scan_props_set(0, 0, 0, "short_", "", [], 0)
        with pytest.raises(p.NanonisError, match="exceeds the 64-byte limit"):
            c.scan_props_set(0, 0, 0, "x" * 100, "", [], 0)
        assert c.bias_get() == pytest.approx(0.1)  # the small excess was dropped: still in step
    with pytest.raises(ValueError, match="max_body_size"):
        SimulatedNanonisServer(m, max_body_size=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        SimulatedNanonisServer(m, idle_timeout=float("inf"))


def _conn_threads(sockets: list[socket.socket]) -> list[threading.Thread]:
    names = {f"nanonis-sim-conn-{s.getsockname()[1]}" for s in sockets}
    return [t for t in threading.enumerate() if t.name in names]


def test_stalled_and_idle_connections_are_closed_and_free_their_threads() -> None:
    m = SimulatedMicroscope("au111", seed=1)
    with SimulatedNanonisServer(m, idle_timeout=0.6, request_timeout=0.2) as srv:
        partial_header = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        partial_header.sendall(p.encode_request("Bias.Get")[:10])
        partial_body = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        partial_body.sendall(p.encode_request("Bias.Set", 1.0)[:42])
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        sockets = [partial_header, partial_body, silent]
        try:
            for s in sockets:
                assert _read_until_closed(s) == b""  # closed by the server, nothing sent
            for t in _conn_threads(sockets):
                t.join(2)
            assert not [t for t in _conn_threads(sockets) if t.is_alive()]
            # Our client reconnects past a connection the server closed while idle.
            with NanonisClient(port=srv.port, timeout=5) as c:
                assert c.bias_get() == pytest.approx(0.1)
                time.sleep(0.8)
                assert c.bias_get() == pytest.approx(0.1)
        finally:
            for s in sockets:
                s.close()


def test_scan_start_renders_without_holding_the_microscope_lock(monkeypatch) -> None:
    from qcodes_stmtip.sim import frames

    real = frames.render_scan
    rendering, release = threading.Event(), threading.Event()

    def slow_render(*args, **kwargs):
        if not rendering.is_set():
            rendering.set()
            release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(frames, "render_scan", slow_render)
    srv = serve_simulator("au111", seed=2, time_acceleration=10.0, initial_tip="individual_atoms")
    starter = NanonisClient(port=srv.port, timeout=20)
    other = NanonisClient(port=srv.port, timeout=2)
    try:
        starter.scan_buffer_set([14], 32, 32)
        errors: list[BaseException] = []

        def start() -> None:
            try:
                starter.scan_action(0, True)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=start)
        t.start()
        assert rendering.wait(5)
        # The frame is still rendering: another client is answered meanwhile.
        assert other.bias_get() == pytest.approx(0.1)
        assert other.scan_buffer_get().pixels == 32
        release.set()
        t.join(10)
        assert not errors and not t.is_alive()
        assert other.scan_status_get()
        assert np.isfinite(srv.microscope.frame_data(14, True)[1][0]).any()
    finally:
        release.set()
        starter.close()
        other.close()
        srv.stop()


def test_frames_past_the_size_limit_are_refused_with_a_clear_error(client: NanonisClient) -> None:
    with pytest.raises(p.NanonisError, match=r"4096 pixels x 4096 lines exceeds the simulator's "
                                             r"limit of 1048576 values"):
        client.scan_buffer_set([14], 4096, 4096)
    client.scan_buffer_set([14], 1024, 1024)
    small = SimulatedMicroscope("au111", max_frame_values=64 * 64)
    with pytest.raises(ValueError, match="limit of 4096 values"):
        small.set_buffer([14], 128, 64)
    small.set_buffer([14], 64, 64)
    with pytest.raises(ValueError, match="max_frame_values"):
        SimulatedMicroscope("au111", max_frame_values=10**9)


@st.composite
def _raw_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """A header for a table command or not, with any declared size and flag, and a body."""
    name = draw(st.sampled_from(sorted(set(p.COMMANDS) - _HEAVY) + ["Bias.Teleport"]))
    size = draw(st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, 96)))
    flag = draw(st.sampled_from([0, 1, 1, 1, 7]))
    header = name.encode().ljust(32, b"\0") + struct.pack(">iHH", size, flag, 0)
    return name, header + draw(st.binary(max_size=96))


@settings(max_examples=50, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=_raw_requests())
def test_fuzz_request_framing_gets_whole_replies_or_a_close(fast_server, request) -> None:
    """Any header and body: the server sends whole replies to that command, then closes."""
    name, raw = request
    with socket.create_connection(("127.0.0.1", fast_server.port), timeout=5) as s:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)  # no more bytes: the server must not wait for them
        except OSError:  # the server already hung up (a malformed header)
            pass
        replies = _replies(_read_until_closed(s))
    assert all(command == name for command, _ in replies[:1])
    with socket.create_connection(("127.0.0.1", fast_server.port), timeout=5) as s:
        s.sendall(p.encode_request("Bias.Get"))
        header = p.decode_response_header(_recv(s, 40))
        p.decode_response_body(p.COMMANDS["Bias.Get"], _recv(s, header.body_size))


def test_issue_28_commands_through_the_client(client: NanonisClient) -> None:
    """Read-backs, saving, bias spectroscopy and the lock-in through NanonisClient's typed methods."""
    import dataclasses

    from qcodes_stmtip.nanonis.client import BiasSpectrTiming

    names = client.signals_names_get()
    slot_names, slots = client.signals_in_slots_get()
    assert len(slot_names) == len(slots) == 24 and slot_names == [names[i] for i in slots]
    client.bias_set(0.5)
    assert client.signals_vals_get([names.index("Bias (V)"), 0])[0] == pytest.approx(0.5)
    gains = client.current_gains_get()
    assert gains.gains[gains.gain_index] and gains.filters[gains.filter_index]
    p_gain, tc, i_gain = client.z_ctrl_gain_get()
    assert i_gain == pytest.approx(p_gain / tc)
    high, low = client.z_ctrl_limits_get()
    assert low < 0 < high
    client.safe_tip_props_set(0, 1, 4e-9)
    assert client.safe_tip_props_get() == pytest.approx((0, 1, 4e-9))
    client.scan_props_set(1, 2, 2, "rb_", "c", ["Bias"], 3)
    props = client.scan_props_get()
    assert (props.continuous, props.bouncy, props.autosave, props.series_name) == (1, 0, 1, "rb_")
    assert props.modules == ("Bias",) and props.autopaste == 3
    client.scan_props_set(2, 0, 0)
    with pytest.raises(p.NanonisError, match="buffer is empty"):
        client.scan_save()
    client.bias_spectr_open()
    client.bias_spectr_chs_set([0, 21])
    assert client.bias_spectr_chs_get() == ((0, 21), ("Current (A)", "LI Demod 1 X (A)"))
    client.bias_spectr_props_set(sweeps=2, backward=1, points=50)
    sp = client.bias_spectr_props_get()
    assert (sp.sweeps, sp.backward, sp.points) == (2, 1, 50)
    client.bias_spectr_adv_props_set(1, 1, 2, 1)
    assert client.bias_spectr_adv_props_get() == (1, 1, 0, 1)
    client.bias_spectr_limits_set(-1.0, 1.0)
    assert client.bias_spectr_limits_get() == pytest.approx((-1.0, 1.0))
    timing = BiasSpectrTiming(0.01, 0.0, 0.01, 100.0, 1e-3, 1e-3, 0.01, 0.05)
    client.bias_spectr_timing_set(timing)
    assert dataclasses.astuple(client.bias_spectr_timing_get()) == pytest.approx(
        dataclasses.astuple(timing))
    client.lock_in_mod_on_off_set(1, True)
    assert client.lock_in_mod_on_off_get(1)
    client.lock_in_mod_signal_set(1, names.index("Bias (V)"))
    assert client.lock_in_mod_signal_get(1) == names.index("Bias (V)")
    client.lock_in_mod_amp_set(1, 0.005)
    assert client.lock_in_mod_amp_get(1) == pytest.approx(0.005)
    client.lock_in_mod_phas_freq_set(1, 800.0)
    assert client.lock_in_mod_phas_freq_get(1) == 800.0
    client.lock_in_demod_signal_set(1, 0)
    assert client.lock_in_demod_signal_get(1) == 0
    spectrum = client.bias_spectr_start(True, "pt_", timeout=30)
    assert spectrum.channel_names == ("Bias calc (V)", "Current (A)", "LI Demod 1 X (A)",
                                      "Current (A) [bwd]", "LI Demod 1 X (A) [bwd]")
    assert spectrum.data.shape == (5, 50) and len(spectrum.parameters) == 5
    assert client.bias_get() == pytest.approx(0.5)  # reset bias
    # H:Si(100): no current inside the gap, plenty outside it
    current = spectrum.data[1]
    assert abs(current[25]) < 0.05 * max(abs(current[0]), abs(current[-1]))
