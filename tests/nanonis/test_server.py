"""The Nanonis server core: named-field handlers, error replies, the handler check."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from qcodes_stmtip.nanonis import protocol as p
from qcodes_stmtip.nanonis import server as server_module
from qcodes_stmtip.nanonis.client import NanonisClient
from qcodes_stmtip.nanonis.server import NanonisServer, check_handlers


def test_handlers_get_the_request_fields_by_name_and_reply_by_name() -> None:
    seen: list[dict] = []

    def pulse(**fields) -> None:
        seen.append(fields)

    handlers = {
        "Bias.Pulse": pulse,
        "Scan.FrameDataGrab": lambda *, channel, forward: {
            "scan_up": 1, "data": [[float(channel), float(forward)]], "channel_name": "Z (m)"},
    }
    with NanonisServer(handlers) as srv, NanonisClient(port=srv.port, timeout=5) as client:
        client.bias_pulse(amplitude_V=3.0, width_s=0.05, wait=True, z_hold=1, absolute=2)
        frame = client.scan_frame_data_grab(14, False)
        assert srv.requests_served == 2 and srv.connections == 1
    assert list(seen[0]) == ["wait", "width", "bias", "z_hold", "absolute"]
    assert seen[0]["bias"] == pytest.approx(3.0) and seen[0]["width"] == pytest.approx(0.05)
    assert (seen[0]["wait"], seen[0]["z_hold"], seen[0]["absolute"]) == (1, 1, 2)
    assert frame.channel_name == "Z (m)" and frame.scan_up is True
    assert frame.data.tolist() == [[14.0, 0.0]]


def test_bad_values_missing_handlers_and_handler_bugs_get_error_replies() -> None:
    def refuse(*, bias: float) -> None:
        raise ValueError("Bias out of range")

    handlers = {
        "Bias.Set": refuse,
        "Bias.Get": lambda: {"volts": 1.0},  # a return field the table does not declare
        "Current.Get": lambda: (1e-9,),  # a tuple, not the reply fields by name
        "ZCtrl.SetpntGet": lambda: {"setpoint": 100e-12},
    }
    with NanonisServer(handlers) as srv, NanonisClient(port=srv.port, timeout=5) as client:
        with pytest.raises(p.NanonisError, match="Bias out of range"):
            client.bias_set(50.0)
        with pytest.raises(p.NanonisError, match=r"internal server error.*declares \['bias'\]"):
            client.bias_get()
        with pytest.raises(p.NanonisError, match="internal server error.*not a mapping"):
            client.current_get()
        with pytest.raises(p.NanonisError, match="not implemented by this server"):
            client.z_ctrl_z_pos_get()
        assert client.z_ctrl_setpnt_get() == pytest.approx(100e-12)  # the connection survives
        assert srv.connections == 1


def test_handlers_that_cannot_take_their_fields_by_name_are_refused() -> None:
    check_handlers({"Bias.Set": lambda *, bias: None, "Bias.Get": lambda: {"bias": 0.0},
                    "Scan.SpeedSet": lambda **speed: None})
    check_handlers({"Bias.Set": lambda microscope, *, bias: None}, bound=1)
    with pytest.raises(TypeError, match=r"Bias.Set: the handler cannot take the fields \(bias\)"):
        check_handlers({"Bias.Set": lambda a: None})  # positional, by index
    with pytest.raises(TypeError, match="Bias.Pulse"):
        check_handlers({"Bias.Pulse": lambda *, wait, width, volts, z_hold, absolute: None})
    with pytest.raises(TypeError, match="'Bias.Teleport' is not a command of the table"):
        check_handlers({"Bias.Teleport": lambda: None})
    with pytest.raises(TypeError, match="Bias.Get"):
        NanonisServer({"Bias.Get": lambda unexpected: None})


def test_the_core_does_not_import_the_simulator() -> None:
    tree = ast.parse(Path(server_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert not {m for m in imported if m and m.startswith("qcodes_stmtip.sim")}


def _bias_server(**options) -> NanonisServer:
    return NanonisServer({"Bias.Get": lambda: {"bias": 0.25}}, **options)


def test_connections_past_the_cap_are_refused_with_an_error_reply() -> None:
    """Issue 26 class 3: before, every connection got a thread (400 idle ones pinned 400)."""
    with _bias_server(max_connections=2, idle_timeout=30) as srv:
        held = [NanonisClient(port=srv.port, timeout=5) for _ in range(2)]
        try:
            for c in held:
                assert c.call("Bias.Get") == (pytest.approx(0.25),)
            with NanonisClient(port=srv.port, timeout=5) as extra:
                with pytest.raises(p.NanonisError, match="busy: 2 connections are open, the limit"):
                    extra.call("Bias.Get")
            assert srv.refused == 1 and srv.connections == 2
            held.pop().close()  # a slot frees: the next connection is served
            for _ in range(100):  # the server notices the hang-up
                if len(srv._connections) < 2:
                    break
                time.sleep(0.02)
            with NanonisClient(port=srv.port, timeout=5) as again:
                assert again.call("Bias.Get") == (pytest.approx(0.25),)
        finally:
            for c in held:
                c.close()


def test_limits_are_checked_and_the_backlog_is_sized_for_bursts() -> None:
    assert server_module.BACKLOG >= 128 and server_module.MAX_CONNECTIONS >= 200
    for bad in ({"max_connections": 0}, {"backlog": 0}, {"max_connections": True},
                {"backlog": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            _bias_server(**bad)
    srv = _bias_server(backlog=64, max_connections=3)
    assert (srv.backlog, srv.max_connections) == (64, 3)


def test_sim_serve_takes_the_limits_and_timeouts_from_the_command_line(monkeypatch) -> None:
    from qcodes_stmtip.cli import build_parser
    from qcodes_stmtip.sim import controller

    args = build_parser().parse_args(["sim", "serve", "--port", "0", "--idle-timeout", "5",
                                      "--request-timeout", "2", "--max-connections", "3",
                                      "--backlog", "64"])
    started = {}

    def fake_serve(surface, **kwargs):  # records what the command passes, serves nothing
        started.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(controller, "serve_simulator", fake_serve)
    with pytest.raises(KeyboardInterrupt):
        args.func(args)
    assert {k: started[k] for k in ("idle_timeout", "request_timeout", "max_connections",
                                    "backlog")} == {"idle_timeout": 5.0, "request_timeout": 2.0,
                                                    "max_connections": 3, "backlog": 64}
