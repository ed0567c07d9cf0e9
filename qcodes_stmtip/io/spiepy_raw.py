"""SPIEPy's raw demo arrays (``.dat`` without a text header).

Layout, as ``spiepy.demo.load_demo_file`` reads it: two little-endian uint32
(rows, columns), then ``rows × columns`` little-endian float64 values. Nothing
else is recorded: no extent, unit, channel or scan direction (``unit = ""``,
extent ``None``). The array is an image with row 0 at the top, so the rows are
flipped to put the bottom line first. Too small a format for a package; the
Createc ``.dat`` reader takes precedence (see :func:`looks_like_spiepy`).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from qcodes_stmtip.io.frame import (
    FrameReadError,
    NoSuchChannelError,
    STMFrame,
    check_direction,
    guard_reader,
)


def _shape(raw_head: bytes) -> tuple[int, int]:
    return struct.unpack("<II", raw_head[:8])


def looks_like_spiepy(path: str | Path) -> bool:
    """True if the file size is exactly 8 + 8·rows·columns for the shape in its first 8 bytes."""
    path = Path(path)
    size = path.stat().st_size
    if size < 16:
        return False
    with path.open("rb") as fh:
        rows, cols = _shape(fh.read(8))
    return rows > 0 and cols > 0 and size == 8 + 8 * rows * cols


@guard_reader
def read_spiepy(
    path: str | Path, channel: str | None = None, direction: str = "forward"
) -> STMFrame:
    """Read a SPIEPy raw float64 array as a frame without physical extent."""
    path = Path(path)
    if check_direction(direction) != "forward":
        raise NoSuchChannelError(
            path, "SPIEPy raw arrays hold a single trace; only direction='forward' exists"
        )
    if channel not in (None, "array"):
        raise NoSuchChannelError(path, f"no channel {channel!r}; available: array")
    raw = path.read_bytes()
    if len(raw) < 16:
        raise FrameReadError(path, f"too short for a SPIEPy raw array ({len(raw)} bytes)")
    rows, cols = _shape(raw)
    need = 8 + 8 * rows * cols
    if rows == 0 or cols == 0 or len(raw) != need:
        raise FrameReadError(
            path,
            f"size {len(raw)} bytes does not match the {rows}×{cols} float64 array its header announces ({need})",
        )
    data = np.frombuffer(raw, dtype="<f8", offset=8).reshape(rows, cols)
    return STMFrame(
        data=np.ascontiguousarray(data[::-1], dtype=np.float64),
        unit="",
        channel="array",
        direction="forward",
        source=str(path),
        metadata={"format": "spiepy-raw"},
    )
