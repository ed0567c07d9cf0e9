"""A simulated Nanonis controller: a TCP server speaking the Nanonis protocol.

:class:`SimulatedNanonisServer` accepts connections on 127.0.0.1 (by default), runs one
thread per connection, executes each connection's commands in order against a
:class:`~qcodes_stmtip.sim.microscope.SimulatedMicroscope`, and answers every request
of the reference table using the shared codec (:mod:`qcodes_stmtip.nanonis.protocol`).
Like the real controller, an unknown command or a bad argument gets an error reply
(status 1 + description), never a dropped connection; each reply goes out in one
``sendall`` (``nanonis-spm`` reads the header with a single ``recv``). Only a malformed
*header* (whose body size cannot be trusted) closes the connection.

Work per request is bounded: a declared body size past the command's limit (derived
from the command table, :func:`~qcodes_stmtip.nanonis.protocol.max_request_body_size`)
gets an error reply before anything is allocated — a small excess is read and dropped
so the connection stays in step, a large one closes the connection after the reply. A
connection idle for ``idle_timeout`` seconds, or a request (or reply) that takes longer
than ``request_timeout`` seconds to arrive (or go out), is closed, so half-open or
stalled peers cannot pin a thread.

``stmtip sim serve --port 6501 --surface hsi100`` runs it in the foreground.
"""

from __future__ import annotations

import argparse
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from qcodes_stmtip.nanonis.protocol import (
    COMMANDS,
    HEADER_SIZE,
    MAX_BODY_SIZE,
    MAX_TEXT_BYTES,
    NanonisProtocolError,
    check_body_size,
    decode_command_name,
    decode_request_body,
    decode_request_header,
    encode_error_response,
    encode_response,
)

if TYPE_CHECKING:
    from qcodes_stmtip.sim.microscope import SimulatedMicroscope

__all__ = ["HANDLERS", "SimulatedNanonisServer", "add_serve_command", "serve_simulator"]

log = logging.getLogger(__name__)

#: Product and version strings of ``Util.VersionGet``.
PRODUCT = "Nanonis SPM Control Software (qcodes-stmtip simulator)"
VERSION = "Generic 5e"
RELEASE = 14718
#: Seconds a connection may stay idle between requests before the server closes it.
IDLE_TIMEOUT_S = 300.0
#: Seconds the rest of a request may take to arrive once its first byte has (and a reply
#: to go out, plus one second per MB).
REQUEST_TIMEOUT_S = 10.0
#: A body past its command's limit but at most this size (bytes) is read and dropped
#: with an error reply, keeping the connection; a larger one closes it.
DRAIN_BYTES = MAX_TEXT_BYTES

Handler = Callable[["SimulatedMicroscope", tuple[Any, ...]], tuple[Any, ...]]


def _flag(value: int, name: str) -> bool:
    if value not in (0, 1):
        raise ValueError(f"{name} must be 0 or 1, got {value}")
    return bool(value)


def _tip_shaper_names() -> list[str]:
    return [f.name for f in COMMANDS["TipShaper.PropsSet"].args]


def _none(_: Any) -> tuple[()]:
    return ()


def _frame_grab(m: SimulatedMicroscope, a: tuple[Any, ...]) -> tuple[Any, ...]:
    name, data, up = m.frame_data(a[0], _flag(a[1], "data direction"))
    return name, data, int(up)


def _wait_end(m: SimulatedMicroscope, a: tuple[Any, ...]) -> tuple[Any, ...]:
    timed_out, path = m.wait_end_of_scan(a[0])
    return int(timed_out), path


def _signal_names(m: SimulatedMicroscope, a: tuple[Any, ...]) -> tuple[Any, ...]:
    from qcodes_stmtip.sim.microscope import SIGNAL_NAMES

    return (SIGNAL_NAMES,)


#: How each command of the table acts on the microscope: ``handler(microscope, args) -> returns``.
HANDLERS: dict[str, Handler] = {
    "Bias.Set": lambda m, a: _none(m.set_bias(a[0])),
    "Bias.Get": lambda m, a: (m.get_bias(),),
    "Bias.Pulse": lambda m, a: _none(m.bias_pulse(amplitude_V=a[2], width_s=a[1],
                                                  wait=_flag(a[0], "wait"), z_hold=a[3],
                                                  absolute=a[4])),
    "Current.Get": lambda m, a: (m.get_current(),),
    "ZCtrl.SetpntSet": lambda m, a: _none(m.set_setpoint(a[0])),
    "ZCtrl.SetpntGet": lambda m, a: (m.get_setpoint(),),
    "ZCtrl.OnOffSet": lambda m, a: _none(m.set_feedback(_flag(a[0], "Z-controller status"))),
    "ZCtrl.OnOffGet": lambda m, a: (int(m.get_feedback()),),
    "ZCtrl.ZPosSet": lambda m, a: _none(m.set_z(a[0])),
    "ZCtrl.ZPosGet": lambda m, a: (m.get_z(),),
    "ZCtrl.Withdraw": lambda m, a: _none(m.withdraw(_flag(a[0], "wait"), a[1])),
    "ZCtrl.StatusGet": lambda m, a: (m.z_status(),),
    "ZCtrl.Home": lambda m, a: _none(m.home()),
    "SafeTip.PropsSet": lambda m, a: _none(m.set_safe_tip(*a)),
    "AutoApproach.OnOffSet": lambda m, a: _none(m.set_approach(_flag(a[0], "on/off"))),
    "AutoApproach.OnOffGet": lambda m, a: (int(m.get_approach()),),
    "Scan.Action": lambda m, a: _none(m.scan_action(a[0], _flag(a[1], "scan direction"))),
    "Scan.StatusGet": lambda m, a: (int(m.scan_running()),),
    "Scan.WaitEndOfScan": _wait_end,
    "Scan.FrameSet": lambda m, a: _none(m.set_frame(*a)),
    "Scan.FrameGet": lambda m, a: m.get_frame(),
    "Scan.BufferSet": lambda m, a: _none(m.set_buffer(*a)),
    "Scan.BufferGet": lambda m, a: m.get_buffer(),
    "Scan.SpeedSet": lambda m, a: _none(m.set_speed(*a)),
    "Scan.SpeedGet": lambda m, a: m.get_speed(),
    "Scan.PropsSet": lambda m, a: _none(m.set_props(*a)),
    "Scan.FrameDataGrab": _frame_grab,
    "Scan.XYPosGet": lambda m, a: m.xy_position(),
    "FolMe.XYPosSet": lambda m, a: _none(m.move_tip(a[0], a[1], _flag(a[2], "wait"))),
    "FolMe.XYPosGet": lambda m, a: m.xy_position(),
    "TipShaper.Start": lambda m, a: _none(m.tip_shaper_start(_flag(a[0], "wait"), a[1])),
    "TipShaper.PropsSet": lambda m, a: _none(m.set_tip_shaper(**dict(zip(_tip_shaper_names(), a, strict=True)))),
    "TipShaper.PropsGet": lambda m, a: tuple(m.get_tip_shaper()[k] for k in _tip_shaper_names()),
    "Motor.StartMove": lambda m, a: _none(m.motor_move(a[0], a[1], a[2], _flag(a[3], "wait"))),
    "Signals.NamesGet": _signal_names,
    "Signals.ValGet": lambda m, a: (m.signal_value(a[0]),),
    "Util.VersionGet": lambda m, a: (PRODUCT, VERSION, RELEASE, RELEASE),
}

if set(HANDLERS) != set(COMMANDS):  # pragma: no cover - a table/handler mismatch is a bug
    raise RuntimeError(f"handlers and command table differ: {set(HANDLERS) ^ set(COMMANDS)}")


def _recv_exact(conn: socket.socket, n: int, deadline: float = math.inf,
                first: bytes = b"") -> bytes | None:
    """Exactly ``n`` bytes (``first`` already received) before ``deadline`` (monotonic s).

    Returns None if the peer closed the connection first; ``TimeoutError`` past the
    deadline.
    """
    buf = bytearray(n)
    buf[:len(first)] = first
    view = memoryview(buf)
    got = len(first)
    while got < n:
        if deadline != math.inf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{got} of {n} bytes arrived in time")
            conn.settimeout(left)
        k = conn.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _linger(conn: socket.socket, seconds: float = 1.0, limit: int = 1 << 20) -> None:
    """Half-close after a refusal and drop what the peer still sends (``seconds``, ``limit``
    bytes at most), so that closing does not reset the connection before it reads the reply.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        dropped = 0
        while dropped < limit and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(1 << 16)
            if not chunk:
                return
            dropped += len(chunk)
    except OSError:
        return


class SimulatedNanonisServer:
    """TCP server for a :class:`SimulatedMicroscope` (Nanonis protocol).

    Args:
        microscope: the simulated microscope the commands act on.
        host: bind address (loopback by default).
        port: TCP port; 0 picks a free one (read it from :attr:`port` after ``start``).
        idle_timeout: seconds a connection may wait between requests before it is closed.
        request_timeout: seconds a started request may take to arrive, and a reply to go
            out (plus one second per MB).
        max_body_size: largest request body for any command (bytes), on top of each
            command's own limit from the table.
    """

    def __init__(self, microscope: SimulatedMicroscope, host: str = "127.0.0.1",
                 port: int = 0, *, idle_timeout: float = IDLE_TIMEOUT_S,
                 request_timeout: float = REQUEST_TIMEOUT_S,
                 max_body_size: int = MAX_BODY_SIZE) -> None:
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        for name, value in (("idle_timeout", idle_timeout), ("request_timeout", request_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) \
                or not 0 < max_body_size <= MAX_BODY_SIZE:
            raise ValueError(f"max_body_size must be an integer in 1..{MAX_BODY_SIZE} (bytes), "
                             f"got {max_body_size!r}")
        self.idle_timeout = float(idle_timeout)
        self.request_timeout = float(request_timeout)
        self.max_body_size = max_body_size
        self.microscope = microscope
        self.host = host
        self._requested_port = port
        self._server: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()
        self.requests_served = 0

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.getsockname()[1]

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind, listen and serve in background threads (returns at once)."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        self._stopping.clear()
        self._server = socket.create_server((self.host, self._requested_port), backlog=8)
        self._server.settimeout(0.1)
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(self._server,),
                                               daemon=True, name=f"nanonis-sim-accept-{self.port}")
        self._accept_thread.start()
        log.info("simulated Nanonis controller listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Stop accepting, close every connection and join the threads."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._accept_thread is not None:
            self._accept_thread.join(2)
        with self._guard:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(2)
        self._threads = []

    def serve_forever(self) -> None:
        """Start (if needed) and block until :meth:`stop` or Ctrl-C."""
        if self._server is None:
            self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def _accept_loop(self, server: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, addr = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # vanished peers
            with self._guard:
                self._connections.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                t = threading.Thread(target=self._serve_connection, args=(conn, addr), daemon=True,
                                     name=f"nanonis-sim-conn-{addr[1]}")
                self._threads.append(t)
            t.start()

    def _serve_connection(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        try:
            with conn:
                while not self._stopping.is_set():
                    if not self._serve_request(conn, addr):
                        return
        except TimeoutError:
            log.info("closing connection from %s: a request or reply took longer than %g s",
                     addr, self.request_timeout)
        except OSError:
            return
        finally:
            with self._guard:
                self._connections.discard(conn)

    def _serve_request(self, conn: socket.socket, addr: tuple[str, int]) -> bool:
        """Read, execute and answer one request; False when the connection must close."""
        conn.settimeout(self.idle_timeout)
        try:
            first = conn.recv(HEADER_SIZE)
        except TimeoutError:
            log.info("closing connection from %s: idle for %g s", addr, self.idle_timeout)
            return False
        if not first:
            return False
        deadline = time.monotonic() + self.request_timeout
        raw = _recv_exact(conn, HEADER_SIZE, deadline, first)
        if raw is None:
            return False
        try:
            header = decode_request_header(raw)
        except NanonisProtocolError as exc:
            log.warning("closing connection from %s: %s", addr, exc)
            try:  # a readable command name gets the reason (e.g. a body size past the cap)
                reply = encode_error_response(decode_command_name(raw), str(exc))
            except (NanonisProtocolError, ValueError):
                return False
            conn.settimeout(self.request_timeout)
            conn.sendall(reply)
            _linger(conn)
            return False
        command, size = header.command, header.body_size
        keep = True
        try:
            check_body_size(command, size, reply=False, limit=self.max_body_size)
        except NanonisProtocolError as exc:  # refused before anything is allocated
            keep = size <= DRAIN_BYTES
            if keep and _recv_exact(conn, size, deadline) is None:
                return False
            if not keep:
                log.warning("closing connection from %s after refusing: %s", addr, exc)
            reply = encode_error_response(command, str(exc))
        else:
            body = _recv_exact(conn, size, deadline)
            if body is None:
                return False
            reply = self.handle(command, body)
        if header.send_response:
            conn.settimeout(self.request_timeout + len(reply) / 1e6)
            conn.sendall(reply)
        self.requests_served += 1
        if not keep:
            _linger(conn)
        return keep

    def handle(self, command: str, body: bytes) -> bytes:
        """Execute one request and return the complete reply (header + body)."""
        spec = COMMANDS.get(command)
        if spec is None:
            return encode_error_response(command, f"Unknown command {command!r}")
        try:
            args = decode_request_body(spec, body)
            returns = HANDLERS[command](self.microscope, args)
            return encode_response(command, returns)
        except (ValueError, NanonisProtocolError) as exc:
            return encode_response(command, error=str(exc))
        except Exception as exc:  # a bug must not kill the connection: report it
            log.exception("simulated controller failed on %s", command)
            return encode_response(command, error=f"internal simulator error: {exc!r}")


def serve_simulator(surface: str = "hsi100", seed: int = 0, time_acceleration: float = 1.0,
                    port: int = 0, host: str = "127.0.0.1",
                    initial_tip: str | None = None, *, idle_timeout: float = IDLE_TIMEOUT_S,
                    request_timeout: float = REQUEST_TIMEOUT_S,
                    max_frame_values: int | None = None) -> SimulatedNanonisServer:
    """Create a :class:`SimulatedMicroscope` and serve it in background threads.

    ``idle_timeout``/``request_timeout``: see :class:`SimulatedNanonisServer`;
    ``max_frame_values``: see :class:`SimulatedMicroscope` (``None``: its default).
    Returns the started server (``.port`` is the bound port; ``.stop()`` ends it).
    """
    from qcodes_stmtip.sim.microscope import MAX_FRAME_VALUES, SimulatedMicroscope

    microscope = SimulatedMicroscope(
        surface, seed=seed, time_acceleration=time_acceleration, initial_tip=initial_tip,
        max_frame_values=MAX_FRAME_VALUES if max_frame_values is None else max_frame_values)
    server = SimulatedNanonisServer(microscope, host=host, port=port, idle_timeout=idle_timeout,
                                    request_timeout=request_timeout)
    server.start()
    return server


def _serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = serve_simulator(args.surface, seed=args.seed, time_acceleration=args.time_acceleration,
                             port=args.port, host=args.host, initial_tip=args.initial_tip,
                             idle_timeout=args.idle_timeout, max_frame_values=args.max_frame_values)
    try:
        print(f"simulated Nanonis controller ({args.surface}, seed {args.seed}, "
              f"×{args.time_acceleration:g} time) on {args.host}:{server.port} — Ctrl-C to stop",
              flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def add_serve_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` (the simulated controller) to a subcommand group (e.g. ``stmtip sim``)."""
    from qcodes_stmtip.taxonomy import SURFACES

    parser = subparsers.add_parser(
        "serve", help="run a simulated Nanonis controller (TCP) until Ctrl-C",
        description="Serve a simulated STM over the Nanonis TCP protocol.")
    parser.add_argument("--port", type=int, default=6501, help="TCP port (default 6501; 0 = any free)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--surface", choices=SURFACES, default="hsi100",
                        help="simulated sample surface [hsi100]")
    parser.add_argument("--seed", type=int, default=0, help="sample/tip/noise seed")
    parser.add_argument("--time-acceleration", type=float, default=1.0,
                        help="simulated seconds per wall second (default 1)")
    parser.add_argument("--initial-tip", default=None, help="initial tip class (default: random)")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S,
                        help=f"close connections idle this many seconds (default {IDLE_TIMEOUT_S:g})")
    parser.add_argument("--max-frame-values", type=int, default=None,
                        help="largest scan buffer, pixels x lines (default 1048576 = 1024 x 1024)")
    parser.set_defaults(func=_serve_command)
    return parser
