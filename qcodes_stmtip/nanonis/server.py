"""A Nanonis TCP server core: accept, read, dispatch one handler per command, reply.

:class:`NanonisServer` owns the socket side of a controller — the accept loop, one
thread per connection, header parsing, bounded reads, timeouts and error replies — and
leaves what a command *does* to a handler per command. The request body is decoded by
the command table of :mod:`qcodes_stmtip.nanonis.protocol`, and each handler receives
the request fields **by the names the table declares**, as keyword arguments, and
returns the reply fields by name::

    def bias_set(*, bias: float) -> None: ...             # "Bias.Set"   bias:F32 -> ()
    def bias_get() -> dict[str, float]:                   # "Bias.Get"   () -> bias:F32
        return {"bias": 1.0}

A handler returns a mapping holding exactly the command's return fields (``None`` or
``{}`` when it has none). A ``ValueError`` it raises becomes an error reply (status 1 +
its message), as the real controller answers a bad argument; any other exception is
logged and answered as an internal error — the connection is never dropped for either.
:func:`check_handlers` refuses handlers that cannot take their command's fields by name
(the server runs it on construction). The simulated controller
(:mod:`qcodes_stmtip.sim.controller`) is a set of such handlers around a simulated
microscope; the test fakes are others. A peer that must misbehave on purpose (a test of
the client against hostile replies) overrides :meth:`NanonisServer.respond`, which gets
the decoded :class:`Request` and the raw socket.

Robustness, for any handlers: each reply goes out in one ``sendall`` (``nanonis-spm``
reads the header with a single ``recv``). An unknown command or a body that does not
decode gets an error reply, never a dropped connection; only a malformed *header* (whose
body size cannot be trusted) closes the connection, after an error reply when its command
name is readable. Work per request is bounded: a declared body size past the command's
limit (from the table, :func:`~qcodes_stmtip.nanonis.protocol.max_request_body_size`) is
refused before anything is allocated — a small excess is read and dropped so the
connection stays in step, a large one closes the connection after the reply. A connection
idle for ``idle_timeout`` seconds, or a request (or reply) that takes longer than
``request_timeout`` seconds to arrive (or go out), is closed, so half-open or stalled
peers cannot pin a thread; :meth:`NanonisServer.stop` closes every connection and joins
the threads. At most ``max_connections`` connections are served at once (one thread
each): a connection past the cap gets its first request answered with an error reply that
says so, and is closed (a few such refusals at a time; past that it is closed at once).
The listen backlog (``backlog``, :data:`BACKLOG`) is sized for bursts of connections, so a
burst does not stall in the kernel's SYN retries.

This module runs against nothing but the standard library and the codec: it does not
import the simulator.
"""

from __future__ import annotations

import inspect
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Self

from qcodes_stmtip.nanonis.protocol import (
    COMMANDS,
    HEADER_SIZE,
    MAX_BODY_SIZE,
    MAX_TEXT_BYTES,
    CommandSpec,
    NanonisProtocolError,
    check_body_size,
    decode_command_name,
    decode_request_body,
    decode_request_header,
    encode_error_response,
    encode_response,
)

__all__ = [
    "BACKLOG",
    "DRAIN_BYTES",
    "IDLE_TIMEOUT_S",
    "MAX_CONNECTIONS",
    "REQUEST_TIMEOUT_S",
    "Handler",
    "NanonisServer",
    "Request",
    "check_handlers",
    "reply_values",
]

log = logging.getLogger(__name__)

#: Seconds a connection may stay idle between requests before the server closes it.
IDLE_TIMEOUT_S = 300.0
#: Seconds the rest of a request may take to arrive once its first byte has (and a reply
#: to go out, plus one second per MB).
REQUEST_TIMEOUT_S = 10.0
#: A body past its command's limit but at most this size (bytes) is read and dropped
#: with an error reply, keeping the connection; a larger one closes it.
DRAIN_BYTES = MAX_TEXT_BYTES
#: Connections served at once by default (one thread each); more are refused.
MAX_CONNECTIONS = 256
#: Listen backlog: connections the kernel queues before the accept loop takes them.
BACKLOG = 512
#: Refused connections answered at once (each by a short-lived thread); more are just closed.
MAX_REFUSING = 16
#: Seconds a refused connection has to send its first request before it is closed.
REFUSAL_WAIT_S = 2.0

Handler = Callable[..., Mapping[str, Any] | None]
"""``handler(**request_fields) -> reply fields by name`` (``None``: no return values)."""


@dataclass(frozen=True)
class Request:
    """A decoded request of a table command.

    Attributes:
        command: the command name, e.g. ``"Bias.Pulse"``.
        fields: the request fields by the names of the command table (read-only, in
            table order).
        send_response: the header's send-response flag.
    """

    command: str
    fields: Mapping[str, Any]
    send_response: bool = True

    @classmethod
    def decode(cls, spec: CommandSpec, body: bytes, send_response: bool = True) -> Request:
        """Decode ``body`` by ``spec``'s fields (``NanonisProtocolError`` if it does not fit)."""
        values = decode_request_body(spec, body)
        fields = {f.name: v for f, v in zip(spec.args, values, strict=True)}
        return cls(spec.name, MappingProxyType(fields), send_response)

    @property
    def values(self) -> tuple[Any, ...]:
        """The field values in table order (for recording fakes)."""
        return tuple(self.fields.values())


def reply_values(spec: CommandSpec, returned: Mapping[str, Any] | None) -> list[Any]:
    """The values of ``returned`` in ``spec``'s return order.

    Raises:
        TypeError: ``returned`` is not a mapping holding exactly the command's return
            fields (a handler bug, answered as an internal error).
    """
    names = [f.name for f in spec.returns]
    if returned is None:
        returned = {}
    if not isinstance(returned, Mapping):
        raise TypeError(f"the {spec.name} handler returned {type(returned).__name__}, not a "
                        f"mapping of its return fields ({', '.join(names) or 'none'})")
    if set(returned) != set(names):
        raise TypeError(f"the {spec.name} handler returned fields {sorted(returned)}, the "
                        f"command table declares {names}")
    return [returned[n] for n in names]


def check_handlers(handlers: Mapping[str, Callable[..., Any]], *, bound: int = 0) -> None:
    """Refuse handlers that are not for a table command or cannot take its fields by name.

    ``bound``: leading positional arguments the handlers take before the fields (1 for
    the simulator's ``handler(microscope, **fields)``). Handlers whose signature cannot
    be inspected are accepted.

    Raises:
        TypeError: naming every offending command.
    """
    problems = []
    for command, handler in handlers.items():
        spec = COMMANDS.get(command)
        if spec is None:
            problems.append(f"{command!r} is not a command of the table")
            continue
        try:
            signature = inspect.signature(handler)
        except (TypeError, ValueError):  # pragma: no cover - builtins
            continue
        names = [f.name for f in spec.args]
        try:
            signature.bind(*(None,) * bound, **dict.fromkeys(names))
        except TypeError as exc:
            problems.append(f"{command}: the handler cannot take the fields "
                            f"({', '.join(names) or 'none'}) by name ({exc})")
    if problems:
        raise TypeError("handlers that do not fit the command table: " + "; ".join(problems))


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


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class NanonisServer:
    """A threaded TCP server speaking the Nanonis protocol, one handler per command.

    Args:
        handlers: command name → ``handler(**request_fields)`` returning the reply
            fields by name (see the module docstring). A table command without a
            handler gets an error reply.
        host: bind address (loopback by default).
        port: TCP port; 0 picks a free one (read it from :attr:`port` after ``start``).
        idle_timeout: seconds a connection may wait between requests before it is closed.
        request_timeout: seconds a started request may take to arrive, and a reply to go
            out (plus one second per MB).
        max_body_size: largest request body for any command (bytes), on top of each
            command's own limit from the table.
        max_connections: connections served at once; one more is refused (see the
            module docstring).
        backlog: the listen backlog (connections queued by the kernel).
        name: what the log calls this server; its threads are ``{name}-accept-{port}``
            and ``{name}-conn-{peer port}``.

    Attributes:
        requests_served: requests answered (or refused) so far.
        connections: connections accepted so far.
        refused: connections refused for the cap so far.
    """

    def __init__(self, handlers: Mapping[str, Handler], host: str = "127.0.0.1",
                 port: int = 0, *, idle_timeout: float = IDLE_TIMEOUT_S,
                 request_timeout: float = REQUEST_TIMEOUT_S,
                 max_body_size: int = MAX_BODY_SIZE, max_connections: int = MAX_CONNECTIONS,
                 backlog: int = BACKLOG, name: str = "nanonis") -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        for what, value, top in (("max_connections", max_connections, 1 << 16),
                                 ("backlog", backlog, 1 << 16)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ValueError(f"{what} must be an integer in 1..{top}, got {value!r}")
        self.max_connections = max_connections
        self.backlog = backlog
        self.idle_timeout = _seconds("idle_timeout", idle_timeout)
        self.request_timeout = _seconds("request_timeout", request_timeout)
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) \
                or not 0 < max_body_size <= MAX_BODY_SIZE:
            raise ValueError(f"max_body_size must be an integer in 1..{MAX_BODY_SIZE} (bytes), "
                             f"got {max_body_size!r}")
        check_handlers(handlers)
        self.handlers: dict[str, Handler] = dict(handlers)
        self.max_body_size = max_body_size
        self.host = host
        self.name = name
        self._requested_port = port
        self._server: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()
        self.requests_served = 0
        self.connections = 0
        self.refused = 0
        self._refusing = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._server.getsockname()[1]

    @property
    def stopping(self) -> threading.Event:
        """Set once :meth:`stop` is called (handlers that wait can wait on it)."""
        return self._stopping

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
        self._server = socket.create_server((self.host, self._requested_port),
                                            backlog=self.backlog)
        self._server.settimeout(0.1)  # so that the accept loop notices stop()
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(self._server,),
                                               daemon=True, name=f"{self.name}-accept-{self.port}")
        self._accept_thread.start()
        log.info("%s server listening on %s:%d", self.name, self.host, self.port)

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

    close = stop

    def serve_forever(self) -> None:
        """Start (if needed) and block until :meth:`stop` or Ctrl-C."""
        if self._server is None:
            self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self.stop()

    # ------------------------------------------------------------------ dispatch
    def handle(self, command: str, body: bytes) -> bytes:
        """Decode and execute one request body; the complete reply (header + body)."""
        spec = COMMANDS.get(command)
        if spec is None:
            return encode_error_response(command, f"Unknown command {command!r}")
        try:
            request = Request.decode(spec, body)
        except ValueError as exc:  # NanonisProtocolError included
            return encode_response(command, error=str(exc))
        return self.dispatch(request)

    def dispatch(self, request: Request) -> bytes:
        """Run the command's handler on the request fields; the complete reply."""
        command = request.command
        spec = COMMANDS[command]
        handler = self.handlers.get(command)
        if handler is None:
            return encode_response(command, error=f"{command} is not implemented by this server")
        try:
            returned = handler(**request.fields)
            return encode_response(command, reply_values(spec, returned))
        except ValueError as exc:  # a bad argument (or a value the reply cannot carry)
            return encode_response(command, error=str(exc))
        except Exception as exc:  # a bug must not kill the connection: report it
            log.exception("%s server failed on %s", self.name, command)
            return encode_response(command, error=f"internal server error: {exc!r}")

    def respond(self, conn: socket.socket, request: Request) -> bool:
        """Answer one decoded request on ``conn``; False closes the connection.

        The default dispatches to the handler and sends its reply (unless the request
        asked for none). Override it for a peer that must misbehave on purpose; an
        ``OSError`` it raises closes the connection quietly.
        """
        reply = self.dispatch(request)
        if request.send_response:
            self.send(conn, reply)
        return True

    def send(self, conn: socket.socket, reply: bytes) -> None:
        """Send a whole reply in one ``sendall``, within the request timeout (+1 s per MB)."""
        conn.settimeout(self.request_timeout + len(reply) / 1e6)
        conn.sendall(reply)

    # ------------------------------------------------------------------ sockets
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
                full = len(self._connections) >= self.max_connections
                if full:
                    self.refused += 1
                    answer = self._refusing < MAX_REFUSING
                    self._refusing += answer
            if full:
                self._refuse(conn, addr, answer)
                continue
            with self._guard:
                self.connections += 1
                self._connections.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                t = threading.Thread(target=self._serve_connection, args=(conn, addr), daemon=True,
                                     name=f"{self.name}-conn-{addr[1]}")
                self._threads.append(t)
            t.start()

    def _refuse(self, conn: socket.socket, addr: tuple[str, int], answer: bool) -> None:
        """Refuse a connection past the cap: answer its first request, else close it at once."""
        log.warning("refusing a connection from %s: %d connections are open, the limit",
                    addr, self.max_connections)
        if not answer:
            conn.close()
            return
        threading.Thread(target=self._refusal, args=(conn,), daemon=True,
                         name=f"{self.name}-refuse-{addr[1]}").start()

    def _refusal(self, conn: socket.socket) -> None:
        message = (f"{self.name} server busy: {self.max_connections} connections are open, "
                   "the limit; close one or try again later")
        try:
            with conn:
                deadline = time.monotonic() + min(REFUSAL_WAIT_S, self.request_timeout)
                conn.settimeout(min(REFUSAL_WAIT_S, self.request_timeout))
                first = conn.recv(HEADER_SIZE)
                raw = _recv_exact(conn, HEADER_SIZE, deadline, first) if first else None
                if raw is not None:
                    try:
                        command = decode_request_header(raw).command
                    except NanonisProtocolError:
                        command = decode_command_name(raw)
                    conn.settimeout(self.request_timeout)
                    conn.sendall(encode_error_response(command, message))
                    _linger(conn, 0.5, DRAIN_BYTES)
        except (OSError, ValueError):
            pass
        finally:
            with self._guard:
                self._refusing -= 1

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
            self.send(conn, reply)
            _linger(conn)
            return False
        command, size = header.command, header.body_size
        try:
            check_body_size(command, size, reply=False, limit=self.max_body_size)
        except NanonisProtocolError as exc:  # refused before anything is allocated
            keep = size <= DRAIN_BYTES
            if keep and _recv_exact(conn, size, deadline) is None:
                return False
            if not keep:
                log.warning("closing connection from %s after refusing: %s", addr, exc)
            self._answer(conn, header.send_response, encode_error_response(command, str(exc)))
            if not keep:
                _linger(conn)
            return keep
        body = _recv_exact(conn, size, deadline)
        if body is None:
            return False
        spec = COMMANDS.get(command)
        if spec is None:
            self._answer(conn, header.send_response,
                         encode_error_response(command, f"Unknown command {command!r}"))
            return True
        try:
            request = Request.decode(spec, body, header.send_response)
        except ValueError as exc:  # NanonisProtocolError included
            self._answer(conn, header.send_response, encode_response(command, error=str(exc)))
            return True
        conn.settimeout(self.request_timeout)  # for a respond() that writes itself
        # Counted before the reply leaves, so a client that has its reply sees the count.
        self.requests_served += 1
        return self.respond(conn, request)

    def _answer(self, conn: socket.socket, send_response: bool, reply: bytes) -> None:
        self.requests_served += 1
        if send_response:
            self.send(conn, reply)
