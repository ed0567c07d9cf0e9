"""NanonisClient against small misbehaving peers: typed errors, then recovery."""

from __future__ import annotations

import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcodes_stmtip.nanonis import protocol as p
from qcodes_stmtip.nanonis.client import NanonisClient
from qcodes_stmtip.nanonis.server import NanonisServer, Request

Behaviour = Callable[[socket.socket, str, tuple], bool]
"""Handles one request on a connection; returns False to close the connection."""


class ScriptedPeer(NanonisServer):
    """A TCP peer that answers request ``k`` (counted over all connections) with ``script[k]``.

    Requests past the end of the script get a correct reply from ``default``. The
    behaviours write raw bytes to the socket, through the server core's ``respond`` hook.
    """

    def __init__(self, script: list[Behaviour], default: Behaviour) -> None:
        super().__init__({}, name="scripted-peer")
        self.script = list(script)
        self.default = default
        self.requests: list[str] = []
        self.start()

    def respond(self, conn: socket.socket, request: Request) -> bool:
        k = len(self.requests)
        self.requests.append(request.command)
        behaviour = self.script[k] if k < len(self.script) else self.default
        return behaviour(conn, request.command, request.values)


@pytest.fixture
def peer_factory():
    peers: list[ScriptedPeer] = []

    def make(script: list[Behaviour], default: Behaviour | None = None) -> ScriptedPeer:
        peer = ScriptedPeer(script, default or reply_bias(2.5))
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def reply_bias(value: float) -> Behaviour:
    def behave(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response(command, (value,)))
        return True

    return behave


def test_normal_call_and_request_bytes(peer_factory) -> None:
    seen: list[tuple] = []

    def behave(conn: socket.socket, command: str, args: tuple) -> bool:
        seen.append((command, args))
        conn.sendall(p.encode_response(command, ()))
        return True

    peer = peer_factory([], behave)
    with NanonisClient(port=peer.port, timeout=2) as client:
        client.bias_pulse(width_s=0.05, amplitude_V=3.0, wait=True, z_hold=1, absolute=2)
        client.scan_buffer_set([0, 14], 256, 128)
    assert seen[0][0] == "Bias.Pulse"
    assert seen[0][1][0] == 1 and seen[0][1][3:] == (1, 2)
    assert seen[0][1][1] == pytest.approx(0.05) and seen[0][1][2] == pytest.approx(3.0)
    assert seen[1] == ("Scan.BufferSet", ((0, 14), 256, 128))


def test_drop_mid_frame_then_reconnect(peer_factory) -> None:
    def drop(conn: socket.socket, command: str, args: tuple) -> bool:
        full = p.encode_response(command, ("Z (m)", np.zeros((64, 64)), 1))
        conn.sendall(full[: len(full) // 2])
        return False

    def grab(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response(command, ("Z (m)", np.full((64, 64), 3e-10), 0)))
        return True

    peer = peer_factory([drop], grab)
    client = NanonisClient(port=peer.port, timeout=2)
    with pytest.raises(p.NanonisConnectionError, match="closed after"):
        client.scan_frame_data_grab(14, True)
    assert not client.connected
    frame = client.scan_frame_data_grab(14, True)
    assert frame.channel_name == "Z (m)" and frame.scan_up is False
    assert frame.data.shape == (64, 64) and frame.data.dtype == np.float32
    np.testing.assert_allclose(frame.data, 3e-10)
    assert peer.connections == 2
    client.close()


def test_malformed_header_then_reconnect(peer_factory) -> None:
    def garbage(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(b"\xfe" * 40)
        return True

    peer = peer_factory([garbage])
    client = NanonisClient(port=peer.port, timeout=2)
    with pytest.raises(p.NanonisProtocolError, match="bytes 0-31"):
        client.bias_get()
    assert client.bias_get() == pytest.approx(2.5)
    assert peer.connections == 2
    client.close()


def test_wrong_echoed_command_is_a_protocol_error(peer_factory) -> None:
    def other(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response("Current.Get", (1e-9,)))
        return True

    peer = peer_factory([other])
    with NanonisClient(port=peer.port, timeout=2) as client:
        with pytest.raises(p.NanonisProtocolError, match="echoes 'Current.Get'"):
            client.bias_get()
        assert client.bias_get() == pytest.approx(2.5)


def test_error_reply_keeps_the_connection(peer_factory) -> None:
    def refuse(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response(command, error="Bias out of range"))
        return True

    peer = peer_factory([refuse])
    with NanonisClient(port=peer.port, timeout=2) as client:
        with pytest.raises(p.NanonisError) as info:
            client.bias_get()
        assert info.value.command == "Bias.Get"
        assert info.value.message == "Bias out of range"
        assert client.bias_get() == pytest.approx(2.5)
    assert peer.connections == 1


def test_stall_past_timeout_discards_the_late_reply(peer_factory) -> None:
    """Ordering, not a clock: the call's 0.2 s timeout fires while the peer still holds the reply.

    The client's own timeout is 60 s and the peer holds for up to 30 s, so only the call's
    ``timeout=0.2`` can raise before the peer is released; the reply then goes to the old
    socket and the next call must not read it.
    """
    release, sent = threading.Event(), threading.Event()

    def stall(conn: socket.socket, command: str, args: tuple) -> bool:
        release.wait(30)
        try:
            conn.sendall(p.encode_response(command, (-1.0,)))  # arrives late
        except OSError:
            pass  # the client already closed that socket
        finally:
            sent.set()
        return True

    peer = peer_factory([stall])
    client = NanonisClient(port=peer.port, timeout=60)
    with pytest.raises(p.NanonisTimeoutError, match="within 0.2 s"):
        client.bias_get(timeout=0.2)
    assert not release.is_set() and not sent.is_set()  # raised before the peer answered
    release.set()
    assert sent.wait(30)  # the late reply has now been sent to the old socket
    assert client.bias_get() == pytest.approx(2.5)
    assert peer.connections == 2
    client.close()


def test_header_split_in_many_segments(peer_factory) -> None:
    def dribble(conn: socket.socket, command: str, args: tuple) -> bool:
        for byte in p.encode_response(command, (7.0,)):
            conn.sendall(bytes([byte]))
        return True

    peer = peer_factory([dribble])
    with NanonisClient(port=peer.port, timeout=2) as client:
        assert client.bias_get() == pytest.approx(7.0)


def test_refused_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    client = NanonisClient(port=port, timeout=1)
    with pytest.raises(p.NanonisConnectionError, match="cannot connect"):
        client.bias_get()


def test_bad_arguments_send_nothing(peer_factory) -> None:
    peer = peer_factory([])
    with NanonisClient(port=peer.port, timeout=2) as client:
        with pytest.raises(ValueError, match="'action'"):
            client.scan_action(9999999, True)
        with pytest.raises(ValueError, match="'steps'"):
            client.motor_start_move(0, 70000)
        with pytest.raises(ValueError, match="timeout"):
            client.bias_get(timeout=0)
    assert peer.requests == []
    with pytest.raises(ValueError, match="port"):
        NanonisClient(port=70000)


def test_threads_get_their_own_answers(peer_factory) -> None:
    def echo_index(conn: socket.socket, command: str, args: tuple) -> bool:
        index = args[0]
        time.sleep(0.001)
        conn.sendall(p.encode_response(command, (float(index),)))
        return True

    peer = peer_factory([], echo_index)
    client = NanonisClient(port=peer.port, timeout=5)
    errors: list[str] = []

    def worker(base: int) -> None:
        for i in range(20):
            got = client.signals_val_get(base + i)
            if got != base + i:
                errors.append(f"{base + i} -> {got}")

    threads = [threading.Thread(target=worker, args=(100 * k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    client.close()
    assert errors == []
    assert len(peer.requests) == 80
    assert peer.connections == 1


def test_wait_end_of_scan_uses_its_own_timeout(peer_factory) -> None:
    def slow(conn: socket.socket, command: str, args: tuple) -> bool:
        time.sleep(0.4)
        conn.sendall(p.encode_response(command, (0, "/tmp/x.sxm")))
        return True

    peer = peer_factory([slow])
    # Client timeout 0.1 s, but WaitEndOfScan waits for its own 1000 ms + margin.
    with NanonisClient(port=peer.port, timeout=0.1) as client:
        assert client.scan_wait_end_of_scan(1000) == (False, "/tmp/x.sxm")


def test_error_reply_with_values_missing_is_decoded(peer_factory) -> None:
    def bare(conn: socket.socket, command: str, args: tuple) -> bool:
        body = p.encode_error_section("No such channel")
        conn.sendall(p.encode_response_header(command, len(body)) + body)
        return True

    peer = peer_factory([bare])
    with NanonisClient(port=peer.port, timeout=2) as client:
        with pytest.raises(p.NanonisError, match="No such channel"):
            client.scan_frame_data_grab(3)


def test_oversized_body_size_is_rejected_before_reading(peer_factory) -> None:
    def huge(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(command.encode().ljust(32, b"\0") + struct.pack(">iI", 0x7FFFFFFF, 0))
        return True

    peer = peer_factory([huge])
    with NanonisClient(port=peer.port, timeout=2) as client:
        with pytest.raises(p.NanonisProtocolError, match="body size"):
            client.bias_get()
        assert client.bias_get() == pytest.approx(2.5)


def test_interrupt_mid_reply_discards_the_socket(peer_factory, monkeypatch) -> None:
    peer = peer_factory([])
    client = NanonisClient(port=peer.port, timeout=2)
    assert client.bias_get() == pytest.approx(2.5)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "_recv_exact", interrupted)
    with pytest.raises(KeyboardInterrupt):
        client.bias_get()
    assert not client.connected
    monkeypatch.undo()
    assert client.bias_get() == pytest.approx(2.5)
    client.close()


# ---------------------------------------------------------------- issue 15: bounded calls
def _client_allocations(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still allocated from ``nanonis/client.py`` in ``snapshot``."""
    only = snapshot.filter_traces([tracemalloc.Filter(True, "*nanonis*client.py")])
    return sum(stat.size for stat in only.statistics("filename"))


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


def test_declared_body_past_the_command_limit_is_refused_before_allocating(
        peer_factory, traced) -> None:
    def huge(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response_header(command, 1 << 26))  # legal globally, not for Bias.Get
        return True

    peer = peer_factory([huge])
    with NanonisClient(port=peer.port, timeout=2) as client:
        tracemalloc.reset_peak()
        with pytest.raises(p.NanonisProtocolError, match=r"Bias.Get reply .*body size 67108864 "
                                                         r"exceeds the 65548-byte limit"):
            client.bias_get()
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
        assert client.bias_get() == pytest.approx(2.5)
    assert peer.connections == 2


def test_client_body_limit_is_configurable(peer_factory) -> None:
    def frame(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response(command, ("Z (m)", np.zeros((32, 32)), 1)))
        return True

    peer = peer_factory([], frame)
    with NanonisClient(port=peer.port, timeout=2, max_body_size=1024) as client:
        with pytest.raises(p.NanonisProtocolError, match="exceeds the 1024-byte limit"):
            client.scan_frame_data_grab(14)
    with NanonisClient(port=peer.port, timeout=2) as client:
        assert client.scan_frame_data_grab(14).data.shape == (32, 32)
    with pytest.raises(ValueError, match="max_body_size"):
        NanonisClient(port=peer.port, max_body_size=0)


def test_buffer_grows_only_with_the_bytes_that_arrive(peer_factory, traced) -> None:
    declared = p.max_response_body_size("Scan.FrameDataGrab")  # 64 MiB: a legal size

    def tease(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response_header(command, declared) + bytes(1000))
        return False  # hang up after 1000 bytes

    peer = peer_factory([tease])
    with NanonisClient(port=peer.port, timeout=2) as client:
        tracemalloc.reset_peak()
        with pytest.raises(p.NanonisConnectionError, match=f"after 1000 of {declared} body"):
            client.scan_frame_data_grab(14)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20


def test_a_large_reply_buffer_is_not_kept(peer_factory, traced) -> None:
    def big(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response(command, ("Z (m)", np.ones((2048, 2048)), 1)))
        return True

    peer = peer_factory([], big)
    with NanonisClient(port=peer.port, timeout=10) as client:
        frame = client.scan_frame_data_grab(14)
        assert frame.data.shape == (2048, 2048) and float(frame.data.mean()) == 1.0
        del frame
        assert _client_allocations(tracemalloc.take_snapshot()) < 1 << 20


def test_trickled_reply_cannot_stretch_the_call_past_its_timeout(peer_factory) -> None:
    def trickle(conn: socket.socket, command: str, args: tuple) -> bool:
        for byte in p.encode_response(command, (-1.0,)):  # 52 bytes over ~2 s
            conn.sendall(bytes([byte]))
            time.sleep(0.04)
        return True

    peer = peer_factory([trickle])
    with NanonisClient(port=peer.port, timeout=2) as client:
        # Every recv gets a byte well within 0.4 s; the call as a whole does not.
        with pytest.raises(p.NanonisTimeoutError, match="within 0.4 s"):
            client.bias_get(timeout=0.4)
        assert not client.connected
        assert client.bias_get() == pytest.approx(2.5)


@pytest.mark.parametrize("late", [False, True], ids=["together", "late"])
def test_a_duplicate_reply_is_never_the_next_calls_answer(peer_factory, late: bool) -> None:
    def twice(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response(command, (1.0,)))
        if late:
            time.sleep(0.1)
        conn.sendall(p.encode_response(command, (-7.0,)))  # the stale duplicate
        return True

    peer = peer_factory([twice], reply_bias(2.5))
    with NanonisClient(port=peer.port, timeout=2) as client:
        assert client.bias_get() == pytest.approx(1.0)
        time.sleep(0.3)  # the duplicate has arrived by now
        assert client.bias_get() == pytest.approx(2.5)
        assert client.bias_get() == pytest.approx(2.5)
    assert peer.requests == ["Bias.Get"] * 3
    assert peer.connections == 2


def test_a_peer_hang_up_between_calls_reconnects_transparently(peer_factory) -> None:
    def answer_then_hang_up(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(p.encode_response(command, (1.0,)))
        return False  # e.g. a server's idle timeout

    peer = peer_factory([answer_then_hang_up])
    with NanonisClient(port=peer.port, timeout=2) as client:
        assert client.bias_get() == pytest.approx(1.0)
        time.sleep(0.2)
        assert client.bias_get() == pytest.approx(2.5)
    assert peer.connections == 2


# ---------------------------------------------------------------- fuzzing the reply framing
_TYPED = (p.NanonisProtocolError, p.NanonisConnectionError, p.NanonisTimeoutError, p.NanonisError)


@st.composite
def _replies(draw: st.DrawFn) -> bytes:
    """Raw reply bytes: random, or a header of any command with any size and a random body."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=120))
    name = draw(st.sampled_from(["Bias.Get", "Bias.Get", "Scan.FrameDataGrab", "Current.Get"]))
    size = draw(st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, 80)))
    header = name.encode().ljust(32, b"\0") + struct.pack(">iI", size, 0)
    return header + draw(st.binary(max_size=80))


def test_fuzz_reply_framing_gives_typed_errors_and_recovers(peer_factory) -> None:
    current: list[bytes] = [b""]

    def send_current(conn: socket.socket, command: str, args: tuple) -> bool:
        conn.sendall(current[0])
        return False  # hang up: the client must not wait for bytes that never come

    peer = peer_factory([], send_current)
    good = peer_factory([])
    client = NanonisClient(port=peer.port, timeout=1)

    @settings(max_examples=50, deadline=5000,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(raw=_replies())
    def check(raw: bytes) -> None:
        current[0] = raw
        try:
            value = client.bias_get()
        except _TYPED:
            assert not client.connected or raw[:8] == b"Bias.Get"
        else:
            assert isinstance(value, float)

    try:
        check()
    finally:
        client.close()
    with NanonisClient(port=good.port, timeout=1) as fresh:
        assert fresh.bias_get() == pytest.approx(2.5)
