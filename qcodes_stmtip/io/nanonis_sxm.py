"""Nanonis ``.sxm`` scan files.

Own reader, on purpose: the maintained-looking package ``nanonispy`` (last
release 1.1.0, 2021) fails on numpy 2 (it uses the removed ``np.float``
alias), and ``pySPM`` pulls in a large ToF-SIMS stack for what is a simple
format. The layout:

* an ASCII (Latin-1) header of ``:KEY:`` lines, each followed by its value
  lines, closed by ``:SCANIT_END:``;
* the bytes ``\\x1a\\x04``, then big-endian float32 blocks of
  ``lines × pixels`` values (``SCAN_PIXELS`` is "pixels lines"), one block per
  channel and stored direction, in ``DATA_INFO`` order, forward before backward
  when the channel's direction is ``both``.

Orientation: rows are stored in acquisition order (an "up" frame's first row
is the bottom line), and backward lines are stored in time order, i.e. right
to left. The reader flips "down" frames vertically and backward blocks
horizontally, so every :class:`STMFrame` has row 0 at the bottom and x
increasing with column. Lines an unfinished scan never reached are NaN in the
file and stay NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcodes_stmtip.io.frame import (
    FrameReadError,
    NoSuchChannelError,
    STMFrame,
    check_direction,
    guard_reader,
)

_HEADER_END = b":SCANIT_END:"
_DATA_TAG = b"\x1a\x04"
#: Largest header we accept before deciding the file is not an .sxm.
_MAX_HEADER_BYTES = 1 << 20


@dataclass(frozen=True)
class SxmChannel:
    """One row of the ``DATA_INFO`` table."""

    index: int
    name: str
    unit: str
    directions: tuple[str, ...]
    calibration: float | None
    offset: float | None


def _split_header(raw: bytes, path: Path) -> tuple[dict[str, str], int]:
    """Return ({key: value text}, byte offset of the first data value)."""
    end = raw.find(_HEADER_END, 0, _MAX_HEADER_BYTES)
    if not raw.startswith(b":") or end < 0:
        raise FrameReadError(path, "not a Nanonis .sxm file (no ':SCANIT_END:' header terminator)")
    tag = raw.find(_DATA_TAG, end)
    if tag < 0:
        raise FrameReadError(
            path, "truncated .sxm file: header ends but the data tag \\x1a\\x04 is missing"
        )
    text = raw[:end].decode("latin-1")
    header: dict[str, str] = {}
    key: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.rstrip()
        if len(stripped) > 2 and stripped.startswith(":") and stripped.endswith(":"):
            if key is not None:
                header[key] = "\n".join(lines).strip("\n")
            key, lines = stripped[1:-1], []
        elif key is not None:
            lines.append(line)
    if key is not None:
        header[key] = "\n".join(lines).strip("\n")
    return header, tag + len(_DATA_TAG)


def _floats(header: dict[str, str], key: str, count: int, path: Path) -> list[float]:
    """``count`` finite numbers of header field ``key``; anything else raises FrameReadError."""
    text = header.get(key)
    if text is None:
        raise FrameReadError(path, f"header field {key!r} is missing")
    try:
        values = [float(v) for v in text.split()]
    except ValueError as exc:
        raise FrameReadError(path, f"header field {key!r} is not numeric: {text!r}") from exc
    if len(values) != count:
        raise FrameReadError(
            path, f"header field {key!r} should hold {count} numbers, got {text!r}"
        )
    if not all(math.isfinite(v) for v in values):
        raise FrameReadError(path, f"header field {key!r} must be finite, got {text!r}")
    return values


def _table(text: str) -> list[dict[str, str]]:
    """Parse a tab-separated header table (first line = column names)."""
    rows = [line.strip("\n").split("\t") for line in text.splitlines() if line.strip()]
    if not rows:
        return []
    names = [c.strip() for c in rows[0] if c.strip()]
    out = []
    for row in rows[1:]:
        cells = [c.strip() for c in row]
        if cells and cells[0] == "":
            cells = cells[1:]
        out.append(dict(zip(names, cells, strict=False)))
    return out


def _optional_float(text: str | None) -> float | None:
    """The first number of ``text``; None when absent, not a number, NaN or infinite."""
    if text is None:
        return None
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


def parse_channels(header: dict[str, str], path: Path) -> list[SxmChannel]:
    """Return the channels of the ``DATA_INFO`` table, in storage order."""
    if "DATA_INFO" not in header:
        raise FrameReadError(path, "header field 'DATA_INFO' (the channel table) is missing")
    channels = []
    for row in _table(header["DATA_INFO"]):
        direction = row.get("Direction", "both").lower()
        if direction not in ("both", "forward", "backward"):
            raise FrameReadError(
                path, f"DATA_INFO: unknown direction {direction!r} for {row.get('Name')!r}"
            )
        channels.append(
            SxmChannel(
                index=int(row.get("Channel", -1)),
                name=row.get("Name", ""),
                unit=row.get("Unit", ""),
                directions=("forward", "backward") if direction == "both" else (direction,),
                calibration=_optional_float(row.get("Calibration")),
                offset=_optional_float(row.get("Offset")),
            )
        )
    if not channels:
        raise FrameReadError(path, "DATA_INFO lists no channel")
    return channels


@guard_reader
def read_header(path: str | Path) -> dict[str, str]:
    """Return the raw ``.sxm`` header as ``{key: value text}`` (no data is decoded)."""
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(_MAX_HEADER_BYTES)
    return _split_header(head, path)[0]


@guard_reader
def list_channels(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Return ``[(channel name, stored directions), …]`` of an ``.sxm`` file."""
    path = Path(path)
    header = read_header(path)
    return [(c.name, c.directions) for c in parse_channels(header, path)]


def _z_controller(header: dict[str, str]) -> dict[str, str]:
    rows = _table(header.get("Z-CONTROLLER", ""))
    return rows[0] if rows else {}


def _setpoint_amperes(zc: dict[str, str], header: dict[str, str]) -> float | None:
    text = zc.get("Setpoint")
    if text:
        parts = text.split()
        if len(parts) == 2 and parts[1] == "A":
            return float(parts[0])
        return None
    unit = header.get("Z-Controller>Setpoint unit", "").strip()
    if unit == "A":
        return _optional_float(header.get("Z-Controller>Setpoint"))
    return None


def _select(channels: list[SxmChannel], channel: str | None, path: Path) -> SxmChannel:
    if channel is None:
        for default in ("Z", "Current"):
            for c in channels:
                if c.name == default:
                    return c
        return channels[0]
    for c in channels:
        if c.name == channel:
            return c
    for c in channels:
        if c.name.lower() == channel.lower():
            return c
    names = ", ".join(c.name for c in channels)
    raise NoSuchChannelError(path, f"no channel {channel!r}; available: {names}")


@guard_reader
def read_sxm(path: str | Path, channel: str | None = None, direction: str = "forward") -> STMFrame:
    """Read one channel/direction of a Nanonis ``.sxm`` file.

    ``channel`` is the ``DATA_INFO`` name (case-insensitive; default ``"Z"``,
    else ``"Current"``, else the first channel). Raises :class:`FrameReadError`
    for a malformed or truncated file, an unknown channel or a direction the
    file did not store.
    """
    path = Path(path)
    check_direction(direction)
    raw = path.read_bytes()
    header, data_start = _split_header(raw, path)
    pixels_f, lines_f = _floats(header, "SCAN_PIXELS", 2, path)
    pixels, lines = int(pixels_f), int(lines_f)
    if pixels < 1 or lines < 1 or pixels != pixels_f or lines != lines_f:
        raise FrameReadError(
            path, f"SCAN_PIXELS must be two positive integers, got {header['SCAN_PIXELS']!r}"
        )
    width, height = _floats(header, "SCAN_RANGE", 2, path)
    if width <= 0 or height <= 0:
        raise FrameReadError(
            path, f"header field 'SCAN_RANGE' must be two positive lengths, got {header['SCAN_RANGE']!r}"
        )
    cx, cy = _floats(header, "SCAN_OFFSET", 2, path)
    angle = _floats(header, "SCAN_ANGLE", 1, path)[0] if "SCAN_ANGLE" in header else 0.0
    scan_dir = header.get("SCAN_DIR", "").strip().lower()
    scan_up = {"up": True, "down": False}.get(scan_dir)
    channels = parse_channels(header, path)
    chosen = _select(channels, channel, path)
    if direction not in chosen.directions:
        raise FrameReadError(
            path,
            f"channel {chosen.name!r} has no {direction} data; stored: {', '.join(chosen.directions)}",
        )

    block = lines * pixels
    block_index = 0
    for c in channels:
        if c is chosen:
            block_index += c.directions.index(direction)
            break
        block_index += len(c.directions)
    n_blocks = sum(len(c.directions) for c in channels)
    available = (len(raw) - data_start) // 4
    if available < n_blocks * block:
        raise FrameReadError(
            path,
            f"truncated .sxm file: header promises {n_blocks} blocks of {lines}×{pixels} float32 "
            f"({4 * n_blocks * block} bytes) but only {len(raw) - data_start} bytes follow the header",
        )
    start = data_start + 4 * block * block_index
    data = np.frombuffer(raw, dtype=">f4", count=block, offset=start).reshape(lines, pixels)
    with np.errstate(invalid="ignore"):  # signalling NaNs of unacquired lines stay NaN
        data = data.astype(np.float64)
    if np.isinf(data).any():
        raise FrameReadError(path, f"channel {chosen.name!r} ({direction}) holds infinite values")
    if scan_up is False:
        data = data[::-1]
    if direction == "backward":
        data = data[:, ::-1]

    zc = _z_controller(header)
    for key in ("BIAS", "Bias>Bias (V)"):  # NaN/inf is refused; a missing or non-number is unknown
        parts = header.get(key, "").split()
        try:
            finite = not parts or math.isfinite(float(parts[0]))
        except ValueError:
            finite = True
        if not finite:
            raise FrameReadError(path, f"header field {key!r} is not a finite number: {parts[0]!r}")
    bias = _optional_float(header.get("BIAS"))
    if bias is None:
        bias = _optional_float(header.get("Bias>Bias (V)"))
    metadata: dict[str, object] = {
        "format": "nanonis-sxm",
        "channels": [c.name for c in channels],
        "channel_units": {c.name: c.unit for c in channels},
        "scan_dir": scan_dir or None,
        "z_controller_on": (zc.get("on") == "1") if "on" in zc else None,
        "z_controller": zc,
        "rec_date": header.get("REC_DATE", "").strip() or None,
        "rec_time": header.get("REC_TIME", "").strip() or None,
        "comment": header.get("COMMENT", "").strip() or None,
        "header": header,
    }
    return STMFrame(
        data=np.ascontiguousarray(data),
        unit=chosen.unit,
        width_m=width,
        height_m=height,
        centre_x_m=cx,
        centre_y_m=cy,
        angle_deg=angle,
        scan_up=scan_up,
        channel=chosen.name,
        direction=direction,  # type: ignore[arg-type]
        bias_V=bias,
        setpoint_A=_setpoint_amperes(zc, header),
        source=str(path),
        metadata=metadata,
    )
