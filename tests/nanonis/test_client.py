"""NanonisClient against small misbehaving peers: typed errors, then recovery."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from qcodes_stmtip.nanonis import protocol as p
from qcodes_stmtip.nanonis.client import NanonisClient

Behaviour = Callable[[socket.socket, str, tuple], bool]
"""Handles one request on a connection; returns False to close the connection."""


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    chunks = b""
    while len(chunks) < n:
        try:
            part = conn.recv(n - len(chunks))
        except OSError:  # the client reset the connection
            return None
        if not part:
            return None
        chunks += part
    return chunks


class ScriptedPeer:
    """A TCP peer that answers request ``k`` (counted over all connections) with ``script[k]``.

    Requests past the end of the script get a correct reply from ``default``.
    """

    def __init__(self, script: list[Behaviour], default: Behaviour) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[str] = []
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._server.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._serve_requests(conn)
        except OSError:  # the client hung up mid-reply (timeouts, reconnect tests)
            pass

    def _serve_requests(self, conn: socket.socket) -> None:
        with conn:
            while True:
                raw = _recv_exact(conn, 40)
                if raw is None:
                    return
                header = p.decode_request_header(raw)
                body = _recv_exact(conn, header.body_size) or b""
                args = p.decode_request_body(p.COMMANDS[header.command], body)
                k = len(self.requests)
                self.requests.append(header.command)
                behaviour = self.script[k] if k < len(self.script) else self.default
                if not behaviour(conn, header.command, args):
                    return

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._accept.join(1)
        for t in self._threads:
            t.join(1)


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
        client.bias_pulse(0.05, 3.0, wait=True, z_hold=1, absolute=2)
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
    def stall(conn: socket.socket, command: str, args: tuple) -> bool:
        time.sleep(0.6)
        conn.sendall(p.encode_response(command, (-1.0,)))  # arrives late
        return True

    peer = peer_factory([stall])
    client = NanonisClient(port=peer.port, timeout=2)
    t0 = time.monotonic()
    with pytest.raises(p.NanonisTimeoutError, match="within 0.2 s"):
        client.bias_get(timeout=0.2)
    assert time.monotonic() - t0 < 0.5
    time.sleep(0.6)  # the late reply has now been sent to the old socket
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
