"""A small recording Nanonis TCP server for driver tests.

It is the server core (:class:`~qcodes_stmtip.nanonis.server.NanonisServer`) with a
minimal controller state in named-field handlers; it records every request
``(command, field values in table order)`` that arrives, and can inject one fault into
the reply to a named command: drop the connection mid-body, send a malformed header,
reply with an error, or stall past the client's timeout.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from qcodes_stmtip.nanonis.protocol import COMMANDS, HEADER_SIZE, encode_response
from qcodes_stmtip.nanonis.server import NanonisServer, Request


#: The frame the fake controller "acquires": truth[row, col] with row 0 the bottom line.
def truth_frame(lines: int, pixels: int) -> np.ndarray:
    rows = np.arange(lines, dtype=np.float32)[:, None]
    cols = np.arange(pixels, dtype=np.float32)[None, :]
    return (1e-10 * rows + 1e-12 * cols).astype(np.float32)


def _named(command: str, values: tuple[Any, ...]) -> dict[str, Any]:
    """The fake keeps some settings as tuples in table order: name them for the reply."""
    return dict(zip((f.name for f in COMMANDS[command].returns), values, strict=True))


class FakeNanonis(NanonisServer):
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
            "acquisition_order": False,  # send rows in scan order instead of bottom first
            "wait_timed_out": 0,  # Scan.WaitEndOfScan answers "timed out"
        }
        handlers = {
            "Bias.Get": lambda: {"bias": self.state["bias"]},
            "Bias.Set": lambda *, bias: self._set(bias=bias),
            "Current.Get": lambda: {"current": self.state["setpoint"] * 1.01},
            "ZCtrl.SetpntGet": lambda: {"setpoint": self.state["setpoint"]},
            "ZCtrl.SetpntSet": lambda *, setpoint: self._set(setpoint=setpoint),
            "ZCtrl.OnOffGet": lambda: {"on": self.state["fb"]},
            "ZCtrl.OnOffSet": lambda *, on: self._set(fb=on),
            "ZCtrl.ZPosGet": lambda: {"z": self.state["z"]},
            "ZCtrl.ZPosSet": lambda *, z: self._set(z=z),
            "ZCtrl.Withdraw": lambda *, wait, timeout_ms: self._set(fb=0, z=200e-9),
            "Scan.FrameGet": lambda: _named("Scan.FrameGet", self.state["frame"]),
            "Scan.FrameSet": lambda *, centre_x, centre_y, width, height, angle: self._set(
                frame=(centre_x, centre_y, width, height, angle)),
            "Scan.BufferGet": lambda: _named("Scan.BufferGet", self.state["buffer"]),
            "Scan.BufferSet": lambda *, channels, pixels, lines: self._set(
                buffer=(tuple(channels), pixels, lines)),
            "Scan.SpeedGet": lambda: _named("Scan.SpeedGet", self.state["speed"]),
            "Scan.SpeedSet": lambda **speed: self._set(speed=tuple(speed.values())),
            "Scan.Action": self._scan_action,
            "Scan.StatusGet": lambda: {"running": 0},
            "Scan.WaitEndOfScan": lambda *, timeout_ms: {
                "timed_out": self.state["wait_timed_out"], "path": ""},
            "Scan.FrameDataGrab": self._frame_data_grab,
            "TipShaper.PropsGet": lambda: _named("TipShaper.PropsGet", self.state["shaper"]),
            "TipShaper.PropsSet": lambda **props: self._set(shaper=tuple(props.values())),
            "FolMe.XYPosSet": lambda *, x, y, wait: self._set(folme=(x, y)),
            "FolMe.XYPosGet": lambda *, wait: _named("FolMe.XYPosGet", self.state["folme"]),
            "AutoApproach.OnOffGet": lambda: {"on": 0},
            "Util.VersionGet": lambda: {"product": "Nanonis Fake", "version": "R0",
                                        "host_release": 1, "rt_release": 2},
        }
        for name, spec in COMMANDS.items():  # other setters are accepted and only recorded
            if not spec.returns:
                handlers.setdefault(name, lambda **fields: None)
        super().__init__(handlers, name="fake-nanonis")
        self.start()

    def commands(self) -> list[str]:
        return [name for name, _ in self.requests]

    # -- faults: a hook around the core's reply --------------------------------------
    def respond(self, conn: socket.socket, request: Request) -> bool:
        self.requests.append((request.command, request.values))
        fault = self.faults.pop(request.command, None)
        if fault == "drop":
            reply = self.dispatch(request)
            conn.sendall(reply[: HEADER_SIZE + max(1, (len(reply) - HEADER_SIZE) // 2)])
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if fault == "malformed":
            conn.sendall(b"\xff" * 32 + struct.pack(">iI", -7, 0))
            return True
        if fault == "error":
            conn.sendall(encode_response(request.command, (), "simulated controller error"))
            return True
        if fault == "stall":
            self.stopping.wait(self.stall_s)
            return False
        return super().respond(conn, request)

    # -- the controller --------------------------------------------------------------
    def _set(self, **values: Any) -> None:
        self.state.update(values)

    def _scan_action(self, *, action: int, direction_up: int) -> None:
        if action == 0:
            self.state["last_up"] = bool(direction_up)

    def _frame_data_grab(self, *, channel: int, forward: int) -> dict[str, Any]:
        _, pixels, lines = self.state["buffer"]
        shape = self.state["grab_shape"] or (lines, pixels)
        truth = truth_frame(*shape)
        up = self.state["last_up"]
        sent = truth[::-1].copy() if not up else truth.copy()  # rows in acquisition order
        if self.state["nan_from_line"] is not None:
            sent[self.state["nan_from_line"]:] = np.nan
        if not self.state["acquisition_order"]:
            sent = sent if up else sent[::-1]  # back to bottom first
        if not forward:  # backward trace: a distinguishable offset
            sent = sent + np.float32(1e-9)
        return {"channel_name": "Z (m)", "data": sent, "scan_up": int(up)}


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
