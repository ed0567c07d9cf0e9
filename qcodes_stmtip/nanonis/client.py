"""A thread-safe Nanonis TCP client with one typed method per reference command.

The client connects lazily on the first call, serialises each request/response pair
with a lock, and reconnects on demand: a dropped connection raises
:class:`NanonisConnectionError` for that call and the next call opens a fresh socket.

Every call has one deadline (monotonic) for the whole exchange: connecting, sending and
every ``recv`` of the reply draw on the same time budget, so a peer that trickles its
reply cannot stretch a call past its timeout. A reply whose declared body size exceeds
the command's limit (derived from the command table, :mod:`.protocol`) is refused before
anything is allocated, and the receive buffer only grows as bytes actually arrive.

Replies must stay in step with requests: a timed-out or malformed exchange discards the
socket, bytes already waiting before a request is sent (a duplicate or late reply, or
the peer's hang-up) make the client reconnect first, and bytes following a reply
discard the socket after the call, so a call never reads another call's reply. (The
protocol has no request ids: a duplicate that arrives only after the next request was
sent, with the same command name, cannot be told apart.)

Replies are received with ``recv_into`` loops into a reused buffer, and 2-D data is
decoded with ``np.frombuffer`` (no per-element Python), which makes
``Scan.FrameDataGrab`` of a 512×512 frame a few milliseconds over loopback.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from qcodes_stmtip.nanonis.protocol import (
    COMMANDS,
    HEADER_SIZE,
    MAX_BODY_SIZE,
    NanonisConnectionError,
    NanonisError,
    NanonisProtocolError,
    NanonisTimeoutError,
    check_body_size,
    decode_response_body,
    decode_response_header,
    encode_request,
)

__all__ = [
    "BiasSpectrProps",
    "BiasSpectrTiming",
    "BiasSpectrum",
    "CurrentGains",
    "FrameData",
    "NanonisClient",
    "ScanBuffer",
    "ScanFrame",
    "ScanProps",
    "ScanSpeed",
    "TipShaperProps",
    "VersionInfo",
]

log = logging.getLogger(__name__)

#: Seconds added to a command's own duration (pulse width, wait timeout) before giving up.
TIMEOUT_MARGIN_S = 5.0
#: Receive-buffer size allocated up front and the step it grows by first (bytes).
_CHUNK = 1 << 16
#: Largest receive buffer kept between calls (bytes, 4 MiB: a 1024 × 1024 frame); a
#: larger one is dropped after its call.
KEEP_BUFFER_BYTES = 1 << 22


@dataclass(frozen=True)
class ScanFrame:
    """Scan frame: centre (m), size (m), rotation angle (degrees, clockwise)."""

    centre_x: float
    centre_y: float
    width: float
    height: float
    angle: float


@dataclass(frozen=True)
class ScanBuffer:
    """Recorded channel indexes and the frame resolution."""

    channels: tuple[int, ...]
    pixels: int
    lines: int


@dataclass(frozen=True)
class ScanSpeed:
    """Scan speeds (m/s), times per line (s), the kept parameter and the bwd/fwd ratio.

    ``keep_constant`` as returned by ``Scan.SpeedGet``: 0 speed, 1 time per line.
    """

    forward_speed: float
    backward_speed: float
    forward_time_per_line: float
    backward_time_per_line: float
    keep_constant: int
    speed_ratio: float


@dataclass(frozen=True)
class TipShaperProps:
    """Tip-shaper settings (SI units; ``tip_lift`` < 0 moves the tip into the sample).

    ``change_bias`` and ``restore_feedback``: as sent (``TipShaper.PropsSet``) 0 no change,
    1 True, 2 False; as returned (``TipShaper.PropsGet``) 0 False, 1 True. ``bias`` is
    applied before the first ramp when ``change_bias``; the initial bias is restored after
    the second ramp, before ``end_wait_time``; ``restore_feedback`` restores the initial
    Z-controller status at the end.
    """

    switch_off_delay: float
    change_bias: int
    bias: float
    tip_lift: float
    lift_time_1: float
    bias_lift: float
    bias_settling_time: float
    lift_height: float
    lift_time_2: float
    end_wait_time: float
    restore_feedback: int


@dataclass(frozen=True)
class FrameData:
    """One channel of a scan frame: ``data`` is float32 ``(lines, pixels)``, NaN where unacquired."""

    channel_name: str
    data: np.ndarray
    scan_up: bool


@dataclass(frozen=True)
class ScanProps:
    """``Scan.PropsGet``: continuous/bouncy 0 off, 1 on; autosave 0 all, 1 next, 2 off;
    the modules whose parameters go into the file header, with those parameters."""

    continuous: int
    bouncy: int
    autosave: int
    series_name: str
    comment: str
    modules: tuple[str, ...]
    params_per_module: tuple[int, ...]
    parameters: tuple[tuple[str, ...], ...]
    autopaste: int


@dataclass(frozen=True)
class CurrentGains:
    """``Current.GainsGet``: the selectable gains and filters and the selected indexes."""

    gains: tuple[str, ...]
    gain_index: int
    filters: tuple[str, ...]
    filter_index: int


@dataclass(frozen=True)
class BiasSpectrum:
    """One ``BiasSpectr.Start``: channel names, data float32 ``(channels, points)`` (rows in
    the order of the names), the fixed parameters then the parameters (see ``PropsGet``)."""

    channel_names: tuple[str, ...]
    data: np.ndarray
    parameters: tuple[float, ...]


@dataclass(frozen=True)
class BiasSpectrProps:
    """``BiasSpectr.PropsGet`` (flags 0 off, 1 on)."""

    save_all: int
    sweeps: int
    backward: int
    points: int
    channel_names: tuple[str, ...]
    parameters: tuple[str, ...]
    fixed_parameters: tuple[str, ...]


@dataclass(frozen=True)
class BiasSpectrTiming:
    """Bias-sweep timing: seconds, the Z offset (m) and the largest slew rate (V/s)."""

    z_averaging_time: float
    z_offset: float
    initial_settling_time: float
    max_slew_rate: float
    settling_time: float
    integration_time: float
    end_settling_time: float
    z_control_time: float


@dataclass(frozen=True)
class VersionInfo:
    """Controller software identification."""

    product: str
    version: str
    host_release: int
    rt_release: int


def _wait_timeout(timeout_ms: int, wait: bool) -> float | None:
    """Socket timeout for a call that waits up to ``timeout_ms`` on the controller."""
    if not wait:
        return None
    if timeout_ms < 0:
        return float("inf")
    return timeout_ms / 1000.0 + TIMEOUT_MARGIN_S


class NanonisClient:
    """Client for the Nanonis TCP interface.

    Args:
        host: controller address.
        port: TCP port (6501 by default; 6502–6504 are the other ports).
        timeout: default seconds for a whole call (connect, send, complete reply).
        max_body_size: largest reply body accepted for any command (bytes), on top of
            each command's own limit from the table.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 6501, timeout: float = 5.0,
                 max_body_size: int = MAX_BODY_SIZE) -> None:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"timeout must be positive (seconds), got {timeout!r}")
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) \
                or not 0 < max_body_size <= MAX_BODY_SIZE:
            raise ValueError(f"max_body_size must be an integer in 1..{MAX_BODY_SIZE} (bytes), "
                             f"got {max_body_size!r}")
        self.host = host
        self.port = port
        self.timeout = float(timeout)
        self.max_body_size = max_body_size
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._buffer = bytearray(_CHUNK)

    # ------------------------------------------------------------------ connection
    def __repr__(self) -> str:
        return f"NanonisClient(host={self.host!r}, port={self.port})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """Whether a socket is currently open (it may still turn out to be dead)."""
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection now instead of on the first call."""
        with self._lock:
            self._ensure_socket(time.monotonic() + self.timeout)

    def close(self) -> None:
        """Close the connection (the next call reconnects)."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:  # pragma: no cover - closing a dead socket
                pass

    def _ensure_socket(self, deadline: float) -> socket.socket:
        if self._sock is None:
            wait = min(self.timeout, max(deadline - time.monotonic(), 1e-3))
            try:
                sock = socket.create_connection((self.host, self.port), timeout=wait)
            except TimeoutError as exc:
                raise NanonisTimeoutError(
                    f"connecting to Nanonis at {self.host}:{self.port} timed out after {wait:.3g} s"
                ) from exc
            except OSError as exc:
                raise NanonisConnectionError(
                    f"cannot connect to Nanonis at {self.host}:{self.port}: {exc}"
                ) from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
        return self._sock

    @staticmethod
    def _pending(sock: socket.socket) -> int:
        """Bytes already waiting on ``sock`` without a request: 0 none, -1 the peer hung up."""
        try:
            sock.settimeout(0.0)
            data = sock.recv(1 << 16, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:  # reset by the peer
            return -1
        return len(data) if data else -1

    def _in_step(self, command: str, deadline: float) -> socket.socket:
        """An open socket with nothing unread on it (reconnects past stale bytes or a hang-up)."""
        sock = self._ensure_socket(deadline)
        pending = self._pending(sock)
        if pending:
            if pending > 0:
                log.warning("%s: discarding the connection to %s:%d: %d unrequested bytes (a "
                            "late or duplicate reply) were waiting", command, self.host,
                            self.port, pending)
            self._discard()
            sock = self._ensure_socket(deadline)
        return sock

    @staticmethod
    def _time_left(deadline: float) -> float | None:
        """Seconds left until ``deadline`` (``None``: no deadline); TimeoutError past it."""
        if deadline == math.inf:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _recv_exact(self, sock: socket.socket, n: int, command: str, what: str,
                    deadline: float = math.inf) -> memoryview:
        """Exactly ``n`` bytes before ``deadline`` (monotonic s), viewing the reused buffer.

        The buffer grows (by doubling, up to ``n``) only when the bytes received so far
        fill it, so a peer that declares a large body but sends little costs little.
        """
        buf = self._buffer
        got = 0
        while got < n:
            if got == len(buf):
                grown = bytearray(min(n, max(2 * len(buf), _CHUNK)))
                grown[:got] = buf
                buf = self._buffer = grown
            sock.settimeout(self._time_left(deadline))
            with memoryview(buf) as view:
                k = sock.recv_into(view[got:min(n, len(buf))])
            if k == 0:
                raise NanonisConnectionError(
                    f"{command}: connection to {self.host}:{self.port} closed after {got} of "
                    f"{n} {what} bytes"
                )
            got += k
        return memoryview(buf)[:n]

    # ------------------------------------------------------------------ generic call
    def call(self, command: str, *args: Any, timeout: float | None = None) -> tuple[Any, ...]:
        """Send a table command with its arguments and return its decoded return values.

        Args:
            command: a command of the reference table, e.g. ``"Bias.Get"``.
            args: the command's arguments in table order.
            timeout: seconds for the whole call — sending the request and receiving
                the complete reply (default: the client's timeout; ``inf`` waits forever).

        Raises:
            ValueError: unknown command or bad argument (nothing is sent).
            NanonisError: the controller replied with an error.
            NanonisConnectionError / NanonisTimeoutError / NanonisProtocolError: transport
                failures; the socket is discarded and the next call reconnects.
        """
        request = encode_request(command, *args)
        spec = COMMANDS[command]
        wait = self.timeout if timeout is None else timeout
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait > 0:
            raise ValueError(f"timeout must be positive (seconds), got {timeout!r}")
        with self._lock:
            deadline = time.monotonic() + wait  # inf stays inf
            try:
                sock = self._in_step(command, deadline)
                sock.settimeout(self._time_left(deadline))
                sock.sendall(request)
                header = decode_response_header(
                    self._recv_exact(sock, HEADER_SIZE, command, "header", deadline))
                if header.command != command:
                    raise NanonisProtocolError(
                        f"{command}: reply header echoes {header.command!r} instead"
                    )
                check_body_size(command, header.body_size, reply=True, limit=self.max_body_size)
                body = self._recv_exact(sock, header.body_size, command, "body", deadline)
                # Decode before releasing the lock: ``body`` views the shared buffer.
                try:
                    return decode_response_body(spec, body)
                finally:
                    del body
                    self._after_reply(command)
            except NanonisTimeoutError:  # connecting timed out
                self._discard()
                raise
            except TimeoutError as exc:
                self._discard()
                raise NanonisTimeoutError(
                    f"{command}: no complete reply from {self.host}:{self.port} within {wait} s"
                ) from exc
            except NanonisConnectionError:
                self._discard()
                raise
            except NanonisProtocolError:
                self._discard()  # the stream position is unknown now
                raise
            except OSError as exc:
                self._discard()
                raise NanonisConnectionError(
                    f"{command}: connection to {self.host}:{self.port} failed: {exc}"
                ) from exc
            except NanonisError:
                raise  # a complete error reply: the stream is still in step
            except BaseException:
                self._discard()  # e.g. KeyboardInterrupt mid-reply: the stream position is unknown
                raise
            finally:
                if len(self._buffer) > KEEP_BUFFER_BYTES:
                    self._buffer = bytearray(_CHUNK)

    def _after_reply(self, command: str) -> None:
        """Discard the socket when bytes already follow a complete reply (out of step)."""
        sock = self._sock
        if sock is not None and self._pending(sock) > 0:
            log.warning("%s: discarding the connection to %s:%d: more bytes followed the "
                        "reply (a duplicate reply)", command, self.host, self.port)
            self._discard()

    # ------------------------------------------------------------------ Bias
    def bias_set(self, bias_V: float, *, timeout: float | None = None) -> None:
        """Set the bias voltage (V)."""
        self.call("Bias.Set", bias_V, timeout=timeout)

    def bias_get(self, *, timeout: float | None = None) -> float:
        """Return the bias voltage (V)."""
        return self.call("Bias.Get", timeout=timeout)[0]

    def bias_pulse(self, *, amplitude_V: float, width_s: float, wait: bool = True, z_hold: int = 0,
                   absolute: int = 0, timeout: float | None = None) -> None:
        """Apply a bias pulse of ``amplitude_V`` (V) for ``width_s`` (s); keyword arguments only.

        ``z_hold``: 0 no change, 1 hold the Z controller, 2 don't; ``absolute``: 0 no
        change, 1 relative to the current bias, 2 absolute. Side effect: may change the tip.
        Sent in the command table's field order (wait, width, bias, z_hold, absolute).
        """
        if timeout is None and wait:
            timeout = max(self.timeout, float(width_s) + TIMEOUT_MARGIN_S)
        self.call("Bias.Pulse", int(wait), width_s, amplitude_V, z_hold, absolute, timeout=timeout)

    # ------------------------------------------------------------------ Current
    def current_get(self, *, timeout: float | None = None) -> float:
        """Return the tunnelling current (A)."""
        return self.call("Current.Get", timeout=timeout)[0]

    # ------------------------------------------------------------------ Z controller
    def z_ctrl_setpnt_set(self, setpoint_A: float, *, timeout: float | None = None) -> None:
        """Set the Z-controller (current) setpoint (A)."""
        self.call("ZCtrl.SetpntSet", setpoint_A, timeout=timeout)

    def z_ctrl_setpnt_get(self, *, timeout: float | None = None) -> float:
        """Return the Z-controller setpoint (A)."""
        return self.call("ZCtrl.SetpntGet", timeout=timeout)[0]

    def z_ctrl_on_off_set(self, on: bool, *, timeout: float | None = None) -> None:
        """Switch the Z controller (feedback) on or off."""
        self.call("ZCtrl.OnOffSet", int(bool(on)), timeout=timeout)

    def z_ctrl_on_off_get(self, *, timeout: float | None = None) -> bool:
        """Whether the Z controller is on."""
        return bool(self.call("ZCtrl.OnOffGet", timeout=timeout)[0])

    def z_ctrl_z_pos_set(self, z_m: float, *, timeout: float | None = None) -> None:
        """Set the tip Z position (m) — only effective with the feedback off."""
        self.call("ZCtrl.ZPosSet", z_m, timeout=timeout)

    def z_ctrl_z_pos_get(self, *, timeout: float | None = None) -> float:
        """Return the tip Z position (m)."""
        return self.call("ZCtrl.ZPosGet", timeout=timeout)[0]

    def z_ctrl_withdraw(self, wait: bool = True, timeout_ms: int = -1, *,
                        timeout: float | None = None) -> None:
        """Withdraw the tip (feedback off, Z fully retracted)."""
        if timeout is None:
            timeout = _wait_timeout(timeout_ms, wait)
        self.call("ZCtrl.Withdraw", int(wait), timeout_ms, timeout=timeout)

    def z_ctrl_status_get(self, *, timeout: float | None = None) -> int:
        """Z-controller status: 1 off, 2 on, 3 hold, 4 switching off, 5 safe-tip event, 6 withdrawing."""
        return self.call("ZCtrl.StatusGet", timeout=timeout)[0]

    def z_ctrl_home(self, *, timeout: float | None = None) -> None:
        """Move the tip to its home Z position."""
        self.call("ZCtrl.Home", timeout=timeout)

    # ------------------------------------------------------------------ SafeTip / approach
    def safe_tip_props_set(self, auto_recovery: int, auto_pause: int, threshold: float, *,
                           timeout: float | None = None) -> None:
        """Configure the tip-crash protection: ``threshold`` is a current (A).

        ``auto_recovery`` (the Z controller recovers after a SafeTip event) and
        ``auto_pause`` (the scan pauses on one): 0 Off, 1 On — no "no change" value.
        """
        self.call("SafeTip.PropsSet", auto_recovery, auto_pause, threshold, timeout=timeout)

    def safe_tip_props_get(self, *, timeout: float | None = None) -> tuple[int, int, float]:
        """``(auto_recovery, auto_pause, threshold A)``; the flags 0 Off, 1 On."""
        auto_recovery, auto_pause, threshold = self.call("SafeTip.PropsGet", timeout=timeout)
        return auto_recovery, auto_pause, threshold

    def auto_approach_on_off_set(self, on: bool, *, timeout: float | None = None) -> None:
        """Start (True) or stop (False) the auto-approach."""
        self.call("AutoApproach.OnOffSet", int(bool(on)), timeout=timeout)

    def auto_approach_on_off_get(self, *, timeout: float | None = None) -> bool:
        """Whether the auto-approach is running."""
        return bool(self.call("AutoApproach.OnOffGet", timeout=timeout)[0])

    # ------------------------------------------------------------------ Scan
    def scan_action(self, action: int, up: bool, *, timeout: float | None = None) -> None:
        """Scan action: 0 start, 1 stop, 2 pause, 3 resume, 4 freeze, 5 unfreeze, 6 go to centre."""
        self.call("Scan.Action", action, int(bool(up)), timeout=timeout)

    def scan_status_get(self, *, timeout: float | None = None) -> bool:
        """Whether a scan is running."""
        return bool(self.call("Scan.StatusGet", timeout=timeout)[0])

    def scan_wait_end_of_scan(self, timeout_ms: int, *,
                              timeout: float | None = None) -> tuple[bool, str]:
        """Block until the frame ends or ``timeout_ms`` passes (-1: forever).

        Returns:
            ``(timed_out, path)`` — the saved file's path (may be empty).
        """
        if timeout is None:
            timeout = _wait_timeout(timeout_ms, True)
        timed_out, path = self.call("Scan.WaitEndOfScan", timeout_ms, timeout=timeout)
        return bool(timed_out), path

    def scan_frame_set(self, centre_x: float, centre_y: float, width: float, height: float,
                       angle: float = 0.0, *, timeout: float | None = None) -> None:
        """Set the scan frame: centre and size in metres, angle in degrees (clockwise)."""
        self.call("Scan.FrameSet", centre_x, centre_y, width, height, angle, timeout=timeout)

    def scan_frame_get(self, *, timeout: float | None = None) -> ScanFrame:
        """Return the scan frame."""
        return ScanFrame(*self.call("Scan.FrameGet", timeout=timeout))

    def scan_buffer_set(self, channels: Sequence[int], pixels: int, lines: int, *,
                        timeout: float | None = None) -> None:
        """Set the recorded channel indexes and the frame resolution."""
        self.call("Scan.BufferSet", list(channels), pixels, lines, timeout=timeout)

    def scan_buffer_get(self, *, timeout: float | None = None) -> ScanBuffer:
        """Return the recorded channels and the resolution."""
        channels, pixels, lines = self.call("Scan.BufferGet", timeout=timeout)
        return ScanBuffer(tuple(channels), pixels, lines)

    def scan_speed_set(self, forward_speed: float, backward_speed: float,
                       forward_time_per_line: float, backward_time_per_line: float,
                       keep_constant: int = 0, speed_ratio: float = 1.0, *,
                       timeout: float | None = None) -> None:
        """Set scan speeds (m/s) and times per line (s).

        ``keep_constant``: 0 no change, 1 speed, 2 time per line.
        """
        self.call("Scan.SpeedSet", forward_speed, backward_speed, forward_time_per_line,
                  backward_time_per_line, keep_constant, speed_ratio, timeout=timeout)

    def scan_speed_get(self, *, timeout: float | None = None) -> ScanSpeed:
        """Return the scan speed settings."""
        return ScanSpeed(*self.call("Scan.SpeedGet", timeout=timeout))

    def scan_props_set(self, continuous: int = 0, bouncy: int = 0, autosave: int = 0,
                       series_name: str = "", comment: str = "",
                       modules: Sequence[str] = (), autopaste: int = 0, *,
                       timeout: float | None = None) -> None:
        """Set scan properties; 0 leaves a setting unchanged.

        ``continuous``/``bouncy``: 1 on, 2 off; ``autosave``: 1 all, 2 next, 3 off.
        """
        self.call("Scan.PropsSet", continuous, bouncy, autosave, series_name, comment,
                  list(modules), autopaste, timeout=timeout)

    def scan_frame_data_grab(self, channel: int, forward: bool = True, *,
                             timeout: float | None = None) -> FrameData:
        """Grab one channel of the current (or last) frame; NaN rows are unacquired."""
        name, data, up = self.call("Scan.FrameDataGrab", channel, int(bool(forward)),
                                   timeout=timeout)
        return FrameData(name, data, bool(up))

    def scan_xy_pos_get(self, wait: bool = True, *,
                        timeout: float | None = None) -> tuple[float, float]:
        """Return the X and Y position signals (m)."""
        x, y = self.call("Scan.XYPosGet", int(bool(wait)), timeout=timeout)
        return x, y

    # ------------------------------------------------------------------ Follow Me
    def fol_me_xy_pos_set(self, x: float, y: float, wait: bool = True, *,
                          timeout: float | None = None) -> None:
        """Move the tip to ``(x, y)`` (m)."""
        self.call("FolMe.XYPosSet", x, y, int(bool(wait)), timeout=timeout)

    def fol_me_xy_pos_get(self, wait: bool = True, *,
                          timeout: float | None = None) -> tuple[float, float]:
        """Return the tip position (m)."""
        x, y = self.call("FolMe.XYPosGet", int(bool(wait)), timeout=timeout)
        return x, y

    # ------------------------------------------------------------------ Tip shaper
    def tip_shaper_start(self, wait: bool = True, timeout_ms: int = -1, *,
                         timeout: float | None = None) -> None:
        """Run the tip-shaper procedure (side effects: may change the tip; the bias ends at
        its initial value, the Z controller as ``restore_feedback`` says)."""
        if timeout is None:
            timeout = _wait_timeout(timeout_ms, wait)
        self.call("TipShaper.Start", int(bool(wait)), timeout_ms, timeout=timeout)

    def tip_shaper_props_set(self, props: TipShaperProps, *,
                             timeout: float | None = None) -> None:
        """Set the tip-shaper properties."""
        if not isinstance(props, TipShaperProps):
            raise ValueError(f"props must be a TipShaperProps, got {type(props).__name__}")
        fields = COMMANDS["TipShaper.PropsSet"].args
        self.call("TipShaper.PropsSet", *(getattr(props, f.name) for f in fields),
                  timeout=timeout)

    def tip_shaper_props_get(self, *, timeout: float | None = None) -> TipShaperProps:
        """Return the tip-shaper properties (``change_bias``/``restore_feedback`` 0 False, 1 True)."""
        return TipShaperProps(*self.call("TipShaper.PropsGet", timeout=timeout))

    # ------------------------------------------------------------------ Motor
    def motor_start_move(self, direction: int, steps: int, group: int = 0, wait: bool = True, *,
                         timeout: float | None = None) -> None:
        """Coarse-motor steps: direction 0 X+, 1 X−, 2 Y+, 3 Y−, 4 Z+, 5 Z−."""
        self.call("Motor.StartMove", direction, steps, group, int(bool(wait)), timeout=timeout)

    # ------------------------------------------------------------------ Signals / Util
    def signals_names_get(self, *, timeout: float | None = None) -> list[str]:
        """Names of the controller's 128 signals; index ``i`` (0–127) names signal ``i``."""
        return list(self.call("Signals.NamesGet", timeout=timeout)[0])

    def signals_in_slots_get(self, *, timeout: float | None = None) -> tuple[list[str], list[int]]:
        """The 24 signal slots: their names and their signal indexes (0–127).

        Scan-buffer and spectroscopy channel indexes (0–23) are slot indexes.
        """
        names, indexes = self.call("Signals.InSlotsGet", timeout=timeout)
        return list(names), list(indexes)

    def signals_val_get(self, index: int, wait: bool = True, *,
                        timeout: float | None = None) -> float:
        """Value of signal ``index`` (0–127, SI units)."""
        return self.call("Signals.ValGet", index, int(bool(wait)), timeout=timeout)[0]

    def signals_vals_get(self, indexes: Sequence[int], wait: bool = True, *,
                         timeout: float | None = None) -> list[float]:
        """Values of signals ``indexes`` (0–127, SI units), in the order asked."""
        return list(self.call("Signals.ValsGet", list(indexes), int(bool(wait)),
                              timeout=timeout)[0])

    def util_version_get(self, *, timeout: float | None = None) -> VersionInfo:
        """Controller software product, version and releases."""
        return VersionInfo(*self.call("Util.VersionGet", timeout=timeout))

    # ------------------------------------------------------------------ read-backs, saving
    def current_gains_get(self, *, timeout: float | None = None) -> CurrentGains:
        """The current preamplifier's gains and filters and the selected ones."""
        gains, gain_index, filters, filter_index = self.call("Current.GainsGet", timeout=timeout)
        return CurrentGains(tuple(gains), gain_index, tuple(filters), filter_index)

    def z_ctrl_gain_get(self, *, timeout: float | None = None) -> tuple[float, float, float]:
        """Z-controller ``(P gain, time constant s, I gain = P/T)``."""
        p_gain, time_constant, i_gain = self.call("ZCtrl.GainGet", timeout=timeout)
        return p_gain, time_constant, i_gain

    def z_ctrl_limits_get(self, *, timeout: float | None = None) -> tuple[float, float]:
        """Z position ``(high, low)`` limits (m); the piezo range when limits are not enabled."""
        high, low = self.call("ZCtrl.LimitsGet", timeout=timeout)
        return high, low

    def scan_props_get(self, *, timeout: float | None = None) -> ScanProps:
        """Scan properties (continuous/bouncy 0 off, 1 on; autosave 0 all, 1 next, 2 off)."""
        return ScanProps(*self.call("Scan.PropsGet", timeout=timeout))

    def scan_save(self, wait: bool = True, timeout_ms: int = 5000, *,
                  timeout: float | None = None) -> bool:
        """Save the scan buffer to a file; returns whether waiting for the save timed out."""
        if timeout is None:
            timeout = _wait_timeout(timeout_ms, wait)
        return bool(self.call("Scan.Save", int(bool(wait)), timeout_ms, timeout=timeout)[0])

    # ------------------------------------------------------------------ bias spectroscopy
    def bias_spectr_open(self, *, timeout: float | None = None) -> None:
        """Open the Bias Spectroscopy module."""
        self.call("BiasSpectr.Open", timeout=timeout)

    def bias_spectr_start(self, get_data: bool = True, save_base_name: str = "", *,
                          timeout: float | None = None) -> BiasSpectrum:
        """Run one bias sweep at the tip's position and return its data.

        Blocks until the sweep ends (pass ``timeout`` longer than the sweep). Side effects:
        the bias is swept (reset at the end if the advanced ``reset_bias`` is on), the
        Z controller is held during the sweep; ``save_base_name`` "" keeps the name.
        """
        names, data, parameters = self.call("BiasSpectr.Start", int(bool(get_data)),
                                            save_base_name, timeout=timeout)
        return BiasSpectrum(tuple(names), data, tuple(parameters))

    def bias_spectr_chs_set(self, channels: Sequence[int], *, timeout: float | None = None) -> None:
        """Recorded channels: signal-slot indexes 0–23."""
        self.call("BiasSpectr.ChsSet", list(channels), timeout=timeout)

    def bias_spectr_chs_get(self, *, timeout: float | None = None) -> tuple[tuple[int, ...],
                                                                             tuple[str, ...]]:
        """Recorded channels: ``(slot indexes, names)``."""
        channels, names = self.call("BiasSpectr.ChsGet", timeout=timeout)
        return tuple(channels), tuple(names)

    def bias_spectr_props_set(self, *, save_all: int = 0, sweeps: int = 0, backward: int = 0,
                              points: int = 0, z_offset_m: float = 0.0, autosave: int = 0,
                              show_dialog: int = 0, timeout: float | None = None) -> None:
        """Bias-spectroscopy properties: flags 0 no change, 1 on, 2 off; ``sweeps``/``points``
        0 no change; ``z_offset_m`` (m, > 0 retracts before the sweep) is always set."""
        self.call("BiasSpectr.PropsSet", save_all, sweeps, backward, points, z_offset_m,
                  autosave, show_dialog, timeout=timeout)

    def bias_spectr_props_get(self, *, timeout: float | None = None) -> BiasSpectrProps:
        """Bias-spectroscopy properties (flags 0 off, 1 on)."""
        return BiasSpectrProps(*self.call("BiasSpectr.PropsGet", timeout=timeout))

    def bias_spectr_adv_props_set(self, reset_bias: int = 0, z_hold: int = 0,
                                  record_final_z: int = 0, lockin_run: int = 0, *,
                                  timeout: float | None = None) -> None:
        """Advanced properties, each 0 no change, 1 on, 2 off."""
        self.call("BiasSpectr.AdvPropsSet", reset_bias, z_hold, record_final_z, lockin_run,
                  timeout=timeout)

    def bias_spectr_adv_props_get(self, *, timeout: float | None = None) -> tuple[int, ...]:
        """``(reset_bias, z_hold, record_final_z, lockin_run)``, each 0 off, 1 on."""
        return tuple(self.call("BiasSpectr.AdvPropsGet", timeout=timeout))

    def bias_spectr_limits_set(self, start_V: float, end_V: float, *,
                               timeout: float | None = None) -> None:
        """Sweep start and end bias (V). Touches nothing until a sweep starts."""
        self.call("BiasSpectr.LimitsSet", start_V, end_V, timeout=timeout)

    def bias_spectr_limits_get(self, *, timeout: float | None = None) -> tuple[float, float]:
        """Sweep ``(start, end)`` bias (V)."""
        start, end = self.call("BiasSpectr.LimitsGet", timeout=timeout)
        return start, end

    def bias_spectr_timing_set(self, timing: BiasSpectrTiming, *,
                               timeout: float | None = None) -> None:
        """Sweep timing (s, m, V/s)."""
        if not isinstance(timing, BiasSpectrTiming):
            raise ValueError(f"timing must be a BiasSpectrTiming, got {type(timing).__name__}")
        fields = COMMANDS["BiasSpectr.TimingSet"].args
        self.call("BiasSpectr.TimingSet", *(getattr(timing, f.name) for f in fields),
                  timeout=timeout)

    def bias_spectr_timing_get(self, *, timeout: float | None = None) -> BiasSpectrTiming:
        """Sweep timing."""
        return BiasSpectrTiming(*self.call("BiasSpectr.TimingGet", timeout=timeout))

    # ------------------------------------------------------------------ lock-in
    def lock_in_mod_on_off_set(self, modulator: int, on: bool, *,
                               timeout: float | None = None) -> None:
        """Switch modulator ``modulator`` (from 1) on or off."""
        self.call("LockIn.ModOnOffSet", modulator, int(bool(on)), timeout=timeout)

    def lock_in_mod_on_off_get(self, modulator: int, *, timeout: float | None = None) -> bool:
        """Whether modulator ``modulator`` is on."""
        return bool(self.call("LockIn.ModOnOffGet", modulator, timeout=timeout)[0])

    def lock_in_mod_signal_set(self, modulator: int, signal: int, *,
                               timeout: float | None = None) -> None:
        """The signal (0–127) modulator ``modulator`` modulates (the bias for dI/dV)."""
        self.call("LockIn.ModSignalSet", modulator, signal, timeout=timeout)

    def lock_in_mod_signal_get(self, modulator: int, *, timeout: float | None = None) -> int:
        return self.call("LockIn.ModSignalGet", modulator, timeout=timeout)[0]

    def lock_in_mod_amp_set(self, modulator: int, amplitude: float, *,
                            timeout: float | None = None) -> None:
        """Modulation amplitude (units of the modulated signal: V for the bias)."""
        self.call("LockIn.ModAmpSet", modulator, amplitude, timeout=timeout)

    def lock_in_mod_amp_get(self, modulator: int, *, timeout: float | None = None) -> float:
        return self.call("LockIn.ModAmpGet", modulator, timeout=timeout)[0]

    def lock_in_mod_phas_freq_set(self, modulator: int, frequency_Hz: float, *,
                                  timeout: float | None = None) -> None:
        """Modulation frequency (Hz) of phase register/modulator ``modulator``."""
        self.call("LockIn.ModPhasFreqSet", modulator, frequency_Hz, timeout=timeout)

    def lock_in_mod_phas_freq_get(self, modulator: int, *, timeout: float | None = None) -> float:
        return self.call("LockIn.ModPhasFreqGet", modulator, timeout=timeout)[0]

    def lock_in_demod_signal_set(self, demodulator: int, signal: int, *,
                                 timeout: float | None = None) -> None:
        """The signal (0–127) demodulator ``demodulator`` demodulates (the current for dI/dV)."""
        self.call("LockIn.DemodSignalSet", demodulator, signal, timeout=timeout)

    def lock_in_demod_signal_get(self, demodulator: int, *, timeout: float | None = None) -> int:
        return self.call("LockIn.DemodSignalGet", demodulator, timeout=timeout)[0]
