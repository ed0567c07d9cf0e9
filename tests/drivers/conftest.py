"""A small recording Nanonis TCP server for driver tests.

It speaks the real wire format (via :mod:`qcodes_stmtip.nanonis.protocol`), keeps a
minimal controller state, records every request ``(command, args)`` that arrives, and
can inject one fault into the reply to a named command: drop the connection mid-body,
send a malformed header, reply with an error, or stall past the client's timeout.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from qcodes_stmtip.nanonis.protocol import (
    COMMANDS,
    HEADER_SIZE,
    decode_request_body,
    decode_request_header,
    encode_response,
)


#: The frame the fake controller "acquires": truth[row, col] with row 0 the bottom line.
def truth_frame(lines: int, pixels: int) -> np.ndarray:
    rows = np.arange(lines, dtype=np.float32)[:, None]
    cols = np.arange(pixels, dtype=np.float32)[None, :]
    return (1e-10 * rows + 1e-12 * cols).astype(np.float32)


class FakeNanonis:
    """Threaded TCP server on 127.0.0.1 (port 0) answering the reference command table."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, tuple[Any, ...]]] = []
        self.faults: dict[str, str] = {}
        self.stall_s = 1.0
        self.state: dict[str, Any] = {
            "bias": 1.0,
            "setpoint": 100e-12,
            "z": 0.0,
            "fb": 1,
            "frame": (0.0, 0.0, 20e-9, 20e-9, 0.0),
            "buffer": ((0, 14), 16, 12),
            "speed": (100e-9, 100e-9, 0.2, 0.2, 1, 1.0),
            "shaper": (0.05, 2, 1.0, -1e-9, 0.1, 1.0, 0.01, 1e-9, 0.1, 0.01, 1),
            "last_up": True,
            "folme": (0.0, 0.0),
            "grab_shape": None,  # override the served frame shape
            "nan_from_line": None,  # acquisition-order line from which the frame is NaN
            "acquisition_order": False,
            "wait_timed_out": 0,  # Scan.WaitEndOfScan answers "timed out"  # send rows in scan order instead of bottom first
        }
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)  # so that the accept loop notices close()
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        accept = threading.Thread(target=self._accept_loop, daemon=True)
        accept.start()
        self._threads.append(accept)

    # -- server plumbing ---------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2)

    def commands(self) -> list[str]:
        return [name for name, _ in self.requests]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _recv(conn: socket.socket, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while not self._stop.is_set():
                try:
                    header = self._recv(conn, HEADER_SIZE)
                    if header is None:
                        return
                    head = decode_request_header(header)
                    body = self._recv(conn, head.body_size) if head.body_size else b""
                    if body is None:
                        return
                except OSError:
                    return
                args = decode_request_body(COMMANDS[head.command], body)
                self.requests.append((head.command, args))
                fault = self.faults.pop(head.command, None)
                try:
                    if fault == "drop":
                        reply = self._reply(head.command, args)
                        conn.sendall(reply[: HEADER_SIZE + max(1, (len(reply) - HEADER_SIZE) // 2)])
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    if fault == "malformed":
                        conn.sendall(b"\xff" * 32 + struct.pack(">iI", -7, 0))
                        continue
                    if fault == "error":
                        conn.sendall(encode_response(head.command, (), "simulated controller error"))
                        continue
                    if fault == "stall":
                        self._stop.wait(self.stall_s)
                        return
                    conn.sendall(self._reply(head.command, args))
                except OSError:
                    return

    # -- the controller --------------------------------------------------------------
    def _reply(self, command: str, args: tuple[Any, ...]) -> bytes:
        handler: Callable[[tuple[Any, ...]], tuple[Any, ...]] = getattr(
            self, "_" + command.replace(".", "_"), lambda a: ()
        )
        return encode_response(command, handler(args))

    def _Bias_Get(self, a):  # noqa: N802
        return (self.state["bias"],)

    def _Bias_Set(self, a):  # noqa: N802
        self.state["bias"] = a[0]
        return ()

    def _Current_Get(self, a):  # noqa: N802
        return (self.state["setpoint"] * 1.01,)

    def _ZCtrl_SetpntGet(self, a):  # noqa: N802
        return (self.state["setpoint"],)

    def _ZCtrl_SetpntSet(self, a):  # noqa: N802
        self.state["setpoint"] = a[0]
        return ()

    def _ZCtrl_OnOffGet(self, a):  # noqa: N802
        return (self.state["fb"],)

    def _ZCtrl_OnOffSet(self, a):  # noqa: N802
        self.state["fb"] = a[0]
        return ()

    def _ZCtrl_ZPosGet(self, a):  # noqa: N802
        return (self.state["z"],)

    def _ZCtrl_ZPosSet(self, a):  # noqa: N802
        self.state["z"] = a[0]
        return ()

    def _ZCtrl_Withdraw(self, a):  # noqa: N802
        self.state["fb"] = 0
        self.state["z"] = 200e-9
        return ()

    def _Scan_FrameGet(self, a):  # noqa: N802
        return self.state["frame"]

    def _Scan_FrameSet(self, a):  # noqa: N802
        self.state["frame"] = tuple(a)
        return ()

    def _Scan_BufferGet(self, a):  # noqa: N802
        return self.state["buffer"]

    def _Scan_BufferSet(self, a):  # noqa: N802
        self.state["buffer"] = (tuple(a[0]), a[1], a[2])
        return ()

    def _Scan_SpeedGet(self, a):  # noqa: N802
        return self.state["speed"]

    def _Scan_SpeedSet(self, a):  # noqa: N802
        self.state["speed"] = tuple(a)
        return ()

    def _Scan_Action(self, a):  # noqa: N802
        if a[0] == 0:
            self.state["last_up"] = bool(a[1])
        return ()

    def _Scan_StatusGet(self, a):  # noqa: N802
        return (0,)

    def _Scan_WaitEndOfScan(self, a):  # noqa: N802
        return (self.state["wait_timed_out"], "")

    def _Scan_FrameDataGrab(self, a):  # noqa: N802
        _, pixels, lines = self.state["buffer"]
        shape = self.state["grab_shape"] or (lines, pixels)
        truth = truth_frame(*shape)
        up = self.state["last_up"]
        sent = truth[::-1].copy() if not up else truth.copy()  # rows in acquisition order
        if self.state["nan_from_line"] is not None:
            sent[self.state["nan_from_line"]:] = np.nan
        if not self.state["acquisition_order"]:
            sent = sent if up else sent[::-1]  # back to bottom first
        if not a[1]:  # backward trace: a distinguishable offset
            sent = sent + np.float32(1e-9)
        return ("Z (m)", sent, int(up))

    def _TipShaper_PropsGet(self, a):  # noqa: N802
        return self.state["shaper"]

    def _TipShaper_PropsSet(self, a):  # noqa: N802
        self.state["shaper"] = tuple(a)
        return ()

    def _FolMe_XYPosSet(self, a):  # noqa: N802
        self.state["folme"] = (a[0], a[1])
        return ()

    def _FolMe_XYPosGet(self, a):  # noqa: N802
        return self.state["folme"]

    def _AutoApproach_OnOffGet(self, a):  # noqa: N802
        return (0,)

    def _Util_VersionGet(self, a):  # noqa: N802
        return ("Nanonis Fake", "R0", 1, 2)


@pytest.fixture
def fake_nanonis() -> Iterator[FakeNanonis]:
    server = FakeNanonis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fake_stm(fake_nanonis: FakeNanonis):
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM

    stm = NanonisSTM("stm_fake", address="127.0.0.1", port=fake_nanonis.port, timeout=0.5)
    fake_nanonis.requests.clear()  # the connection's version and geometry reads
    try:
        yield stm
    finally:
        stm.close()
