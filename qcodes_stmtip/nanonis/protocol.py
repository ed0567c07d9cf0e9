"""The Nanonis TCP codec: message headers, body types, and the command table.

One module used by both :class:`~qcodes_stmtip.nanonis.client.NanonisClient` and the
simulated controller, so the two can only disagree with the reference, never with
each other. Everything is big-endian with no padding.

Layout (see ``nanonis-tcp.md``): a 40-byte header (32-byte NUL-padded command name,
int32 body size, then a uint16 send-response flag + 2 zero bytes for requests, or 4 zero
bytes for responses) followed by the body. Response bodies end with an *error section*:
uint32 status (1 = error), int32 description length, description bytes.

This module does no I/O. Malformed bytes raise :class:`NanonisProtocolError` (a
``ValueError``) naming what was being decoded and at which byte offset.

Size limits: every command's largest request and reply body follows from its fields in
the table (:func:`max_request_body_size`, :func:`max_response_body_size`), with the
variable-length types bounded by :data:`MAX_TEXT_BYTES`, :data:`MAX_ARRAY_ITEMS` and
:data:`MAX_2D_VALUES`, and every body by :data:`MAX_BODY_SIZE`. Both ends check a
declared body size against the command's limit (:func:`check_body_size`) before they
allocate or read anything, and the encoders refuse values past the limits.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COMMANDS",
    "HEADER_SIZE",
    "MAX_BODY_SIZE",
    "CommandSpec",
    "Field",
    "NanonisConnectionError",
    "NanonisError",
    "NanonisProtocolError",
    "NanonisTimeoutError",
    "MAX_2D_VALUES",
    "MAX_ARRAY_ITEMS",
    "MAX_ERROR_SECTION_SIZE",
    "MAX_TEXT_BYTES",
    "RequestHeader",
    "ResponseHeader",
    "T",
    "check_body_size",
    "decode_command_name",
    "decode_error_section",
    "decode_fields",
    "decode_request_header",
    "decode_response_header",
    "encode_error_section",
    "encode_fields",
    "encode_request",
    "encode_request_header",
    "encode_response",
    "encode_response_header",
    "max_encoded_size",
    "max_request_body_size",
    "max_response_body_size",
]

#: Size of the request and response headers, bytes.
HEADER_SIZE = 40
#: Length of the NUL-padded command-name field, bytes.
NAME_SIZE = 32
#: Largest body either side accepts for any command (bytes, 128 MiB): above the largest
#: legal reply (a 4096 × 4096 float32 frame, 64 MiB), far below a garbage size.
MAX_BODY_SIZE = 1 << 27
#: Largest text value (bytes): one string, or all elements of a string array with their
#: length prefixes. Paths, comments and signal-name lists are far shorter.
MAX_TEXT_BYTES = 1 << 16
#: Most elements of a 1-D int32 or float32 array (channel indexes, signal values).
MAX_ARRAY_ITEMS = 1 << 12
#: Most values of a 2-D float32 array (rows × cols): a 4096 × 4096 frame.
MAX_2D_VALUES = 4096 * 4096


# --------------------------------------------------------------------------- errors
class NanonisError(Exception):
    """The controller answered with an error section (status 1).

    Attributes:
        command: the command name, e.g. ``"Scan.Action"``.
        message: the controller's description of the error.
    """

    def __init__(self, command: str, message: str) -> None:
        self.command = command
        self.message = message
        super().__init__(f"{command}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.command, self.message))


class NanonisProtocolError(ValueError):
    """Bytes that do not follow the Nanonis TCP layout (says what and at which offset)."""


class NanonisConnectionError(ConnectionError):
    """The connection was refused or dropped (the next client call reconnects)."""


class NanonisTimeoutError(TimeoutError):
    """No complete reply arrived within the call's timeout (the socket is discarded)."""


# --------------------------------------------------------------------------- types
class T(enum.Enum):
    """Wire types of the reference."""

    U16 = "uint16"
    U32 = "uint32"
    I32 = "int32"
    F32 = "float32"
    F64 = "float64"
    #: int32 byte length, then the bytes (no NUL).
    STR = "string"
    #: uint32 byte length, then the bytes (``Scan.WaitEndOfScan``'s path).
    STR_U32 = "string(uint32 length)"
    #: int32 count, then count × int32.
    I32_ARRAY = "1D int32 array"
    #: int32 total byte size, int32 count, then count × (int32 length + bytes).
    STR_ARRAY = "1D string array"
    #: int32 rows, int32 cols, then rows × cols float32, row-major.
    F32_2D = "2D float32"
    #: int32 count, then count × float32.
    F32_ARRAY = "1D float32 array"
    #: int32 rows, int32 cols, then rows × cols × (int32 length + bytes), row-major.
    STR_2D = "2D string array"


_SCALARS: dict[T, struct.Struct] = {
    T.U16: struct.Struct(">H"),
    T.U32: struct.Struct(">I"),
    T.I32: struct.Struct(">i"),
    T.F32: struct.Struct(">f"),
    T.F64: struct.Struct(">d"),
}
_INT_RANGES: dict[T, tuple[int, int]] = {
    T.U16: (0, 0xFFFF),
    T.U32: (0, 0xFFFFFFFF),
    T.I32: (-(1 << 31), (1 << 31) - 1),
}
_I32 = _SCALARS[T.I32]
_U32 = _SCALARS[T.U32]
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Field:
    """One argument or return value: its name (snake_case) and wire type."""

    name: str
    type: T


@dataclass(frozen=True)
class CommandSpec:
    """A command of the reference: its request arguments and its return values."""

    name: str
    args: tuple[Field, ...]
    returns: tuple[Field, ...]


# --------------------------------------------------------------------------- values
def _encode_text(text: str, where: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a str, got {type(text).__name__}")
    return text.encode("utf-8")


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # Windows controllers may send their code page
        return raw.decode("latin-1")


def _check_int(value: Any, t: T, where: str) -> int:
    if isinstance(value, bool | np.bool_):
        value = int(value)
    if not isinstance(value, int | np.integer):
        raise ValueError(f"{where}: expected an integer for {t.value}, got {value!r}")
    lo, hi = _INT_RANGES[t]
    if not lo <= int(value) <= hi:
        raise ValueError(f"{where}: {value} is outside the {t.value} range [{lo}, {hi}]")
    return int(value)


def _check_float(value: Any, t: T, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{where}: expected a number for {t.value}, got {value!r}")
    value = float(value)
    if t is T.F32 and np.isfinite(value) and abs(value) > _F32_MAX:
        raise ValueError(f"{where}: {value} overflows float32")
    return value


def encode_value(t: T, value: Any, where: str = "value") -> bytes:
    """Encode one value of wire type ``t``; ``ValueError`` naming ``where`` on bad input."""
    if t in (T.U16, T.U32, T.I32):
        return _SCALARS[t].pack(_check_int(value, t, where))
    if t in (T.F32, T.F64):
        return _SCALARS[t].pack(_check_float(value, t, where))
    if t in (T.STR, T.STR_U32):
        raw = _encode_text(value, where)
        if len(raw) > MAX_TEXT_BYTES:
            raise ValueError(f"{where}: {len(raw)} bytes of text exceed the {MAX_TEXT_BYTES}-byte limit")
        return (_I32 if t is T.STR else _U32).pack(len(raw)) + raw
    if t is T.I32_ARRAY:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            raise ValueError(f"{where}: expected a sequence of int32, got {value!r}")
        if len(value) > MAX_ARRAY_ITEMS:
            raise ValueError(f"{where}: {len(value)} items exceed the {MAX_ARRAY_ITEMS}-item limit")
        items = [_check_int(v, T.I32, f"{where}[{i}]") for i, v in enumerate(value)]
        return _I32.pack(len(items)) + struct.pack(f">{len(items)}i", *items)
    if t is T.STR_ARRAY:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValueError(f"{where}: expected a sequence of str, got {value!r}")
        if len(value) > MAX_TEXT_BYTES // 4:
            raise ValueError(f"{where}: {len(value)} strings exceed the {MAX_TEXT_BYTES}-byte limit")
        parts = [_encode_text(v, f"{where}[{i}]") for i, v in enumerate(value)]
        elements = b"".join(_I32.pack(len(p)) + p for p in parts)
        if len(elements) > MAX_TEXT_BYTES:
            raise ValueError(
                f"{where}: {len(elements)} bytes of strings exceed the {MAX_TEXT_BYTES}-byte limit"
            )
        return _I32.pack(len(elements)) + _I32.pack(len(parts)) + elements
    if t is T.F32_ARRAY:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            raise ValueError(f"{where}: expected a sequence of float32, got {value!r}")
        if len(value) > MAX_ARRAY_ITEMS:
            raise ValueError(f"{where}: {len(value)} items exceed the {MAX_ARRAY_ITEMS}-item limit")
        items = [_check_float(v, T.F32, f"{where}[{i}]") for i, v in enumerate(value)]
        return _I32.pack(len(items)) + np.asarray(items, dtype=">f4").tobytes()
    if t is T.STR_2D:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValueError(f"{where}: expected rows of str, got {value!r}")
        rows = [list(r) if isinstance(r, Sequence) and not isinstance(r, str | bytes) else None
                for r in value]
        if any(r is None for r in rows):
            raise ValueError(f"{where}: every row must be a sequence of str")
        cols = len(rows[0]) if rows else 0
        if any(len(r) != cols for r in rows):  # type: ignore[arg-type]
            raise ValueError(f"{where}: rows of different lengths")
        parts = [_encode_text(v, f"{where}[{i}][{j}]")
                 for i, r in enumerate(rows) for j, v in enumerate(r)]  # type: ignore[arg-type]
        elements = b"".join(_I32.pack(len(p)) + p for p in parts)
        if len(elements) > MAX_TEXT_BYTES:
            raise ValueError(
                f"{where}: {len(elements)} bytes of strings exceed the {MAX_TEXT_BYTES}-byte limit"
            )
        return _I32.pack(len(rows)) + _I32.pack(cols) + elements
    if t is T.F32_2D:
        if isinstance(value, np.ndarray) and value.size > MAX_2D_VALUES:  # before any copy
            raise ValueError(f"{where}: {value.size} values exceed the {MAX_2D_VALUES}-value limit")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: expected a 2-D array of numbers ({exc})") from None
        if array.ndim != 2:
            raise ValueError(f"{where}: expected a 2-D array, got shape {array.shape}")
        rows, cols = array.shape
        if rows * cols > MAX_2D_VALUES:
            raise ValueError(f"{where}: {rows}x{cols} values exceed the {MAX_2D_VALUES}-value limit")
        finite = array[np.isfinite(array)]
        if finite.size and np.abs(finite).max() > _F32_MAX:
            raise ValueError(f"{where}: values overflow float32")
        return _I32.pack(rows) + _I32.pack(cols) + array.astype(">f4").tobytes()
    raise ValueError(f"{where}: unknown wire type {t!r}")  # pragma: no cover - enum is closed


def _need(buf: memoryview, offset: int, size: int, what: str) -> None:
    if size < 0 or offset + size > len(buf):
        raise NanonisProtocolError(
            f"{what} needs {size} bytes at offset {offset}, only {len(buf) - offset} left"
        )


def _length(buf: memoryview, offset: int, what: str, unsigned: bool = False) -> int:
    _need(buf, offset, 4, what)
    n = (_U32 if unsigned else _I32).unpack_from(buf, offset)[0]
    if n < 0:
        raise NanonisProtocolError(f"{what} is negative ({n}) at offset {offset}")
    return n


def decode_value(t: T, buf: bytes | bytearray | memoryview, offset: int = 0,
                 where: str = "value") -> tuple[Any, int]:
    """Decode one value of wire type ``t`` at ``offset``; returns ``(value, next_offset)``.

    Raises:
        NanonisProtocolError: the bytes are too short or inconsistent.
    """
    buf = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
    if t in _SCALARS:
        s = _SCALARS[t]
        _need(buf, offset, s.size, f"{where} ({t.value})")
        return s.unpack_from(buf, offset)[0], offset + s.size
    if t in (T.STR, T.STR_U32):
        n = _length(buf, offset, f"{where} length", unsigned=t is T.STR_U32)
        offset += 4
        _need(buf, offset, n, f"{where} ({t.value})")
        return _decode_text(bytes(buf[offset:offset + n])), offset + n
    if t is T.I32_ARRAY:
        n = _length(buf, offset, f"{where} count")
        offset += 4
        _need(buf, offset, 4 * n, f"{where} ({n} int32)")
        items = np.frombuffer(buf, ">i4", n, offset)
        return tuple(int(v) for v in items), offset + 4 * n
    if t is T.STR_ARRAY:
        # The total byte size is not trusted (clients disagree on it): walk the elements.
        _length(buf, offset, f"{where} total size")
        n = _length(buf, offset + 4, f"{where} count")
        offset += 8
        if n > (len(buf) - offset) // 4:
            raise NanonisProtocolError(
                f"{where} count {n} at offset {offset - 4} exceeds the {len(buf) - offset} bytes left"
            )
        items = []
        for i in range(n):
            item, offset = decode_value(T.STR, buf, offset, f"{where}[{i}]")
            items.append(item)
        return tuple(items), offset
    if t is T.F32_ARRAY:
        n = _length(buf, offset, f"{where} count")
        offset += 4
        _need(buf, offset, 4 * n, f"{where} ({n} float32)")
        return tuple(float(v) for v in np.frombuffer(buf, ">f4", n, offset)), offset + 4 * n
    if t is T.STR_2D:
        rows = _length(buf, offset, f"{where} rows")
        cols = _length(buf, offset + 4, f"{where} cols")
        offset += 8
        if rows * cols > (len(buf) - offset) // 4:
            raise NanonisProtocolError(
                f"{where}: {rows}x{cols} strings at offset {offset - 8} exceed the "
                f"{len(buf) - offset} bytes left"
            )
        table = []
        for i in range(rows):
            row = []
            for j in range(cols):
                item, offset = decode_value(T.STR, buf, offset, f"{where}[{i}][{j}]")
                row.append(item)
            table.append(tuple(row))
        return tuple(table), offset
    if t is T.F32_2D:
        rows = _length(buf, offset, f"{where} rows")
        cols = _length(buf, offset + 4, f"{where} cols")
        offset += 8
        size = 4 * rows * cols
        _need(buf, offset, size, f"{where} ({rows}x{cols} float32)")
        data = np.frombuffer(buf, ">f4", rows * cols, offset).astype(np.float32)
        return data.reshape(rows, cols), offset + size
    raise NanonisProtocolError(f"{where}: unknown wire type {t!r}")  # pragma: no cover


def encode_fields(fields: Sequence[Field], values: Sequence[Any], where: str) -> bytes:
    """Encode ``values`` in the order of ``fields`` (``ValueError`` names the bad one)."""
    if len(values) != len(fields):
        names = ", ".join(f.name for f in fields) or "none"
        raise ValueError(f"{where}: expected {len(fields)} values ({names}), got {len(values)}")
    return b"".join(
        encode_value(f.type, v, f"{where} {f.name!r}") for f, v in zip(fields, values, strict=True)
    )


def decode_fields(fields: Sequence[Field], buf: bytes | bytearray | memoryview, offset: int,
                  where: str) -> tuple[tuple[Any, ...], int]:
    """Decode ``fields`` in order from ``offset``; returns ``(values, next_offset)``."""
    view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
    values = []
    for f in fields:
        value, offset = decode_value(f.type, view, offset, f"{where} {f.name!r}")
        values.append(value)
    return tuple(values), offset


# --------------------------------------------------------------------------- size limits
def max_encoded_size(t: T) -> int:
    """Largest encoding of one value of wire type ``t`` (bytes) within the limits."""
    if t in _SCALARS:
        return _SCALARS[t].size
    if t in (T.STR, T.STR_U32):
        return 4 + MAX_TEXT_BYTES
    if t is T.I32_ARRAY:
        return 4 + 4 * MAX_ARRAY_ITEMS
    if t in (T.STR_ARRAY, T.STR_2D):
        return 8 + MAX_TEXT_BYTES
    if t is T.F32_ARRAY:
        return 4 + 4 * MAX_ARRAY_ITEMS
    if t is T.F32_2D:
        return 8 + 4 * MAX_2D_VALUES
    raise ValueError(f"unknown wire type {t!r}")  # pragma: no cover - enum is closed


#: Largest error section: status, description length, description (bytes).
MAX_ERROR_SECTION_SIZE = 8 + MAX_TEXT_BYTES


def max_request_body_size(command: str) -> int:
    """Largest request body of ``command`` (bytes), from its arguments in the table.

    A command not in the table may carry at most :data:`MAX_TEXT_BYTES` (it only gets
    an error reply).
    """
    spec = COMMANDS.get(command)
    if spec is None:
        return MAX_TEXT_BYTES
    return min(MAX_BODY_SIZE, sum(max_encoded_size(f.type) for f in spec.args))


def max_response_body_size(command: str) -> int:
    """Largest reply body of ``command`` (bytes): its return values and the error section."""
    spec = COMMANDS.get(command)
    returns = 0 if spec is None else sum(max_encoded_size(f.type) for f in spec.returns)
    return min(MAX_BODY_SIZE, returns + MAX_ERROR_SECTION_SIZE)


def check_body_size(command: str, size: int, *, reply: bool, limit: int | None = None) -> None:
    """Refuse a declared body ``size`` past ``command``'s limit (and ``limit``, if given).

    Raises:
        NanonisProtocolError: naming the command, the size and the limit.
    """
    cap = max_response_body_size(command) if reply else max_request_body_size(command)
    if limit is not None:
        cap = min(cap, limit)
    if not 0 <= size <= cap:
        kind = "reply" if reply else "request"
        raise NanonisProtocolError(
            f"{command} {kind} header bytes 32-35: body size {size} exceeds the "
            f"{cap}-byte limit of this command"
        )


# --------------------------------------------------------------------------- headers
@dataclass(frozen=True)
class RequestHeader:
    """A decoded request header."""

    command: str
    body_size: int
    send_response: bool


@dataclass(frozen=True)
class ResponseHeader:
    """A decoded response header."""

    command: str
    body_size: int


def _encode_name(command: str) -> bytes:
    try:
        raw = command.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise ValueError(f"command name {command!r} must be ASCII text") from None
    if not raw or len(raw) > NAME_SIZE or b"\0" in raw:
        raise ValueError(f"command name {command!r} must be 1 to {NAME_SIZE} ASCII characters")
    return raw.ljust(NAME_SIZE, b"\0")


def _decode_name(header: bytes | bytearray | memoryview) -> str:
    raw = bytes(header[:NAME_SIZE])
    name, _, padding = raw.partition(b"\0")
    if not name or padding.strip(b"\0"):
        raise NanonisProtocolError(f"header bytes 0-31: command name {raw!r} is not NUL-padded text")
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        raise NanonisProtocolError(f"header bytes 0-31: command name {raw!r} is not ASCII") from None
    if not text.isprintable():
        raise NanonisProtocolError(f"header bytes 0-31: command name {raw!r} is not printable")
    return text


def decode_command_name(header: bytes | bytearray | memoryview) -> str:
    """The command name of a (request or response) header, whatever its other fields."""
    if len(header) < NAME_SIZE:
        raise NanonisProtocolError(f"header must be {HEADER_SIZE} bytes, got {len(header)}")
    return _decode_name(header)


def _decode_size(header: bytes | bytearray | memoryview) -> int:
    size = _I32.unpack_from(header, NAME_SIZE)[0]
    if not 0 <= size <= MAX_BODY_SIZE:
        raise NanonisProtocolError(
            f"header bytes 32-35: body size {size} is outside [0, {MAX_BODY_SIZE}]"
        )
    return size


def _check_header_len(header: bytes | bytearray | memoryview) -> None:
    if len(header) != HEADER_SIZE:
        raise NanonisProtocolError(f"header must be {HEADER_SIZE} bytes, got {len(header)}")


def encode_request_header(command: str, body_size: int, send_response: bool = True) -> bytes:
    """The 40-byte request header."""
    _check_int(body_size, T.I32, "body_size")
    return _encode_name(command) + struct.pack(">iHH", body_size, int(bool(send_response)), 0)


def decode_request_header(header: bytes | bytearray | memoryview) -> RequestHeader:
    """Decode a 40-byte request header (``NanonisProtocolError`` when malformed)."""
    _check_header_len(header)
    command = _decode_name(header)
    size = _decode_size(header)
    flag = _SCALARS[T.U16].unpack_from(header, 36)[0]
    if flag not in (0, 1):
        raise NanonisProtocolError(f"header bytes 36-37: send-response flag {flag} is not 0 or 1")
    return RequestHeader(command, size, bool(flag))


def encode_response_header(command: str, body_size: int) -> bytes:
    """The 40-byte response header."""
    _check_int(body_size, T.I32, "body_size")
    return _encode_name(command) + struct.pack(">iI", body_size, 0)


def decode_response_header(header: bytes | bytearray | memoryview) -> ResponseHeader:
    """Decode a 40-byte response header (``NanonisProtocolError`` when malformed)."""
    _check_header_len(header)
    return ResponseHeader(_decode_name(header), _decode_size(header))


# --------------------------------------------------------------------------- error section
def encode_error_section(message: str = "") -> bytes:
    """The error section: status 0 and no text when ``message`` is empty, else status 1."""
    raw = message.encode("utf-8")
    if len(raw) > MAX_TEXT_BYTES:  # a long description is cut, not refused
        raw = raw[:MAX_TEXT_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack(">Ii", 1 if raw else 0, len(raw)) + raw


def decode_error_section(buf: bytes | bytearray | memoryview, offset: int,
                         where: str = "error section") -> tuple[int, str]:
    """Decode the error section at ``offset``; it must end the body exactly.

    Returns:
        ``(status, description)``.
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf
    status, offset = decode_value(T.U32, view, offset, f"{where} status")
    text, offset = decode_value(T.STR, view, offset, f"{where} description")
    if offset != len(view):
        raise NanonisProtocolError(
            f"{where}: {len(view) - offset} unexpected bytes after it at offset {offset}"
        )
    return status, text


# --------------------------------------------------------------------------- command table
def _f(spec: str) -> tuple[Field, ...]:
    """Parse ``"name:TYPE name:TYPE"`` into fields."""
    out = []
    for item in spec.split():
        name, _, type_name = item.partition(":")
        out.append(Field(name, T[type_name]))
    return tuple(out)


_FRAME = "centre_x:F32 centre_y:F32 width:F32 height:F32 angle:F32"
_BUFFER = "channels:I32_ARRAY pixels:I32 lines:I32"
_SPEED = ("forward_speed:F32 backward_speed:F32 forward_time_per_line:F32 "
          "backward_time_per_line:F32 keep_constant:U16 speed_ratio:F32")
_TIP_SHAPER = (
    "switch_off_delay:F32 change_bias:U32 bias:F32 tip_lift:F32 lift_time_1:F32 bias_lift:F32 "
    "bias_settling_time:F32 lift_height:F32 lift_time_2:F32 end_wait_time:F32 restore_feedback:U32"
)
_SPECTR_PROPS_SET = ("save_all:U16 sweeps:I32 backward:U16 points:I32 z_offset:F32 autosave:U16 "
                     "show_dialog:U16")
_SPECTR_PROPS_GET = ("save_all:U16 sweeps:I32 backward:U16 points:I32 channel_names:STR_ARRAY "
                     "parameters:STR_ARRAY fixed_parameters:STR_ARRAY")
_SPECTR_ADV = "reset_bias:U16 z_hold:U16 record_final_z:U16 lockin_run:U16"
_SPECTR_TIMING = ("z_averaging_time:F32 z_offset:F32 initial_settling_time:F32 max_slew_rate:F32 "
                  "settling_time:F32 integration_time:F32 end_settling_time:F32 z_control_time:F32")

_TABLE: tuple[tuple[str, str, str], ...] = (
    ("Bias.Set", "bias:F32", ""),
    ("Bias.Get", "", "bias:F32"),
    ("Bias.Pulse", "wait:U32 width:F32 bias:F32 z_hold:U16 absolute:U16", ""),
    ("Current.Get", "", "current:F32"),
    ("ZCtrl.SetpntSet", "setpoint:F32", ""),
    ("ZCtrl.SetpntGet", "", "setpoint:F32"),
    ("ZCtrl.OnOffSet", "on:U32", ""),
    ("ZCtrl.OnOffGet", "", "on:U32"),
    ("ZCtrl.ZPosSet", "z:F32", ""),
    ("ZCtrl.ZPosGet", "", "z:F32"),
    ("ZCtrl.Withdraw", "wait:U32 timeout_ms:I32", ""),
    ("ZCtrl.StatusGet", "", "status:U16"),
    ("ZCtrl.Home", "", ""),
    ("SafeTip.PropsSet", "auto_recovery:U16 auto_pause:U16 threshold:F32", ""),
    ("AutoApproach.OnOffSet", "on:U16", ""),
    ("AutoApproach.OnOffGet", "", "on:U16"),
    ("Scan.Action", "action:U16 direction_up:U32", ""),
    ("Scan.StatusGet", "", "running:U32"),
    ("Scan.WaitEndOfScan", "timeout_ms:I32", "timed_out:U32 path:STR_U32"),
    ("Scan.FrameSet", _FRAME, ""),
    ("Scan.FrameGet", "", _FRAME),
    ("Scan.BufferSet", _BUFFER, ""),
    ("Scan.BufferGet", "", _BUFFER),
    ("Scan.SpeedSet", _SPEED, ""),
    ("Scan.SpeedGet", "", _SPEED),
    ("Scan.PropsSet", "continuous:U32 bouncy:U32 autosave:U32 series_name:STR comment:STR "
                      "modules:STR_ARRAY autopaste:U32", ""),
    ("Scan.FrameDataGrab", "channel:U32 forward:U32",
     "channel_name:STR data:F32_2D scan_up:U32"),
    ("Scan.XYPosGet", "wait:U32", "x:F32 y:F32"),
    ("FolMe.XYPosSet", "x:F64 y:F64 wait:U32", ""),
    ("FolMe.XYPosGet", "wait:U32", "x:F64 y:F64"),
    ("TipShaper.Start", "wait:U32 timeout_ms:I32", ""),
    ("TipShaper.PropsSet", _TIP_SHAPER, ""),
    ("TipShaper.PropsGet", "", _TIP_SHAPER),
    ("Motor.StartMove", "direction:U32 steps:U16 group:U32 wait:U32", ""),
    ("Signals.NamesGet", "", "names:STR_ARRAY"),
    ("Signals.ValGet", "index:I32 wait:U32", "value:F32"),
    ("Util.VersionGet", "", "product:STR version:STR host_release:U32 rt_release:U32"),
    # issue 28: read-backs, saving, bias spectroscopy and the lock-in
    ("Signals.ValsGet", "indexes:I32_ARRAY wait:U32", "values:F32_ARRAY"),
    ("Signals.InSlotsGet", "", "names:STR_ARRAY indexes:I32_ARRAY"),
    ("Current.GainsGet", "", "gains:STR_ARRAY gain_index:I32 filters:STR_ARRAY filter_index:I32"),
    ("ZCtrl.GainGet", "", "p_gain:F32 time_constant:F32 i_gain:F32"),
    ("ZCtrl.LimitsGet", "", "high_limit:F32 low_limit:F32"),
    ("SafeTip.PropsGet", "", "auto_recovery:U16 auto_pause:U16 threshold:F32"),
    ("Scan.PropsGet", "", "continuous:U32 bouncy:U32 autosave:U32 series_name:STR comment:STR "
                      "modules:STR_ARRAY params_per_module:I32_ARRAY parameters:STR_2D "
                      "autopaste:U32"),
    ("Scan.Save", "wait:U32 timeout_ms:I32", "timed_out:U32"),
    ("BiasSpectr.Open", "", ""),
    ("BiasSpectr.Start", "get_data:U32 save_base_name:STR",
     "channel_names:STR_ARRAY data:F32_2D parameters:F32_ARRAY"),
    ("BiasSpectr.ChsSet", "channels:I32_ARRAY", ""),
    ("BiasSpectr.ChsGet", "", "channels:I32_ARRAY channel_names:STR_ARRAY"),
    ("BiasSpectr.PropsSet", _SPECTR_PROPS_SET, ""),
    ("BiasSpectr.PropsGet", "", _SPECTR_PROPS_GET),
    ("BiasSpectr.AdvPropsSet", _SPECTR_ADV, ""),
    ("BiasSpectr.AdvPropsGet", "", _SPECTR_ADV),
    ("BiasSpectr.LimitsSet", "start:F32 end:F32", ""),
    ("BiasSpectr.LimitsGet", "", "start:F32 end:F32"),
    ("BiasSpectr.TimingSet", _SPECTR_TIMING, ""),
    ("BiasSpectr.TimingGet", "", _SPECTR_TIMING),
    ("LockIn.ModOnOffSet", "modulator:I32 on:U32", ""),
    ("LockIn.ModOnOffGet", "modulator:I32", "on:U32"),
    ("LockIn.ModSignalSet", "modulator:I32 signal:I32", ""),
    ("LockIn.ModSignalGet", "modulator:I32", "signal:I32"),
    ("LockIn.ModAmpSet", "modulator:I32 amplitude:F32", ""),
    ("LockIn.ModAmpGet", "modulator:I32", "amplitude:F32"),
    ("LockIn.ModPhasFreqSet", "modulator:I32 frequency:F64", ""),
    ("LockIn.ModPhasFreqGet", "modulator:I32", "frequency:F64"),
    ("LockIn.DemodSignalSet", "demodulator:I32 signal:I32", ""),
    ("LockIn.DemodSignalGet", "demodulator:I32", "signal:I32"),
)

#: Every command of the reference table, by name.
COMMANDS: Mapping[str, CommandSpec] = {
    name: CommandSpec(name, _f(args), _f(returns)) for name, args, returns in _TABLE
}


def command_spec(command: str) -> CommandSpec:
    """The table entry for ``command``; ``ValueError`` if it is not in the reference table."""
    try:
        return COMMANDS[command]
    except KeyError:
        raise ValueError(f"unknown Nanonis command {command!r}") from None


# --------------------------------------------------------------------------- messages
def encode_request(command: str, *args: Any) -> bytes:
    """Header + body of a request for a table command (``ValueError`` on bad arguments)."""
    spec = command_spec(command)
    body = encode_fields(spec.args, args, f"{command} argument")
    return encode_request_header(command, len(body)) + body


def decode_request_body(spec: CommandSpec, body: bytes | bytearray | memoryview) -> tuple[Any, ...]:
    """Decode a request body; it must hold exactly the command's arguments."""
    values, end = decode_fields(spec.args, body, 0, f"{spec.name} argument")
    if end != len(body):
        raise NanonisProtocolError(
            f"{spec.name} request: {len(body) - end} unexpected bytes at offset {end}"
        )
    return values


def encode_response(command: str, values: Sequence[Any] = (), error: str = "") -> bytes:
    """Header + body of a response: return ``values`` then the error section.

    With ``error`` set, ``values`` may be empty: neutral placeholders (zeros, empty
    strings/arrays) are sent in their place, as the real controller does.
    """
    spec = command_spec(command)
    if error and not values:
        values = [_placeholder(f.type) for f in spec.returns]
    body = encode_fields(spec.returns, values, f"{command} return") + encode_error_section(error)
    return encode_response_header(command, len(body)) + body


def encode_error_response(command: str, error: str) -> bytes:
    """An error reply for any command name, including ones not in the table (no returns)."""
    if command in COMMANDS:
        return encode_response(command, (), error or "error")
    body = encode_error_section(error or "error")
    return encode_response_header(command, len(body)) + body


def _placeholder(t: T) -> Any:
    if t in (T.F32, T.F64):
        return 0.0
    if t in (T.STR, T.STR_U32):
        return ""
    if t in (T.I32_ARRAY, T.STR_ARRAY, T.F32_ARRAY, T.STR_2D):
        return ()
    if t is T.F32_2D:
        return np.zeros((0, 0), np.float32)
    return 0


def decode_response_body(spec: CommandSpec, body: bytes | bytearray | memoryview) -> tuple[Any, ...]:
    """Decode a response body into the return values.

    Raises:
        NanonisError: the error section has status 1 (also when the controller sent the
            error section alone, without return values).
        NanonisProtocolError: the body does not fit the command's layout.
    """
    view = memoryview(body).cast("B") if not isinstance(body, memoryview) else body
    try:
        values, offset = decode_fields(spec.returns, view, 0, f"{spec.name} return")
        status, message = decode_error_section(view, offset, f"{spec.name} error section")
    except NanonisProtocolError:
        # An error reply may carry the error section alone.
        try:
            status, message = decode_error_section(view, 0, f"{spec.name} error section")
        except NanonisProtocolError:
            status = 0
        if status == 0 or not spec.returns:
            raise
        raise NanonisError(spec.name, message) from None
    if status != 0:
        raise NanonisError(spec.name, message or f"error status {status}")
    return values
