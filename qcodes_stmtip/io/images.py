"""Plain images and arrays: PNG (grey levels) and NumPy ``.npy``.

Neither format records a physical size, scan direction, bias or setpoint, so
the frames they give have ``width_m = height_m = None`` (and no centre). A PNG
is read as grey levels scaled to 0…1 (``unit = ""``); colour images are
converted to luminance. Image row 0 is the *top* of a picture, so the rows are
flipped to put the bottom line first, like every :class:`STMFrame`. An ``.npy``
array is taken as is: a 2-D real array whose row 0 is already the bottom line
and whose unit the file does not say (``unit = ""``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qcodes_stmtip.io.frame import (
    FrameReadError,
    NoSuchChannelError,
    STMFrame,
    check_direction,
    guard_reader,
)


def _only_forward(path: Path, direction: str) -> None:
    if check_direction(direction) != "forward":
        raise NoSuchChannelError(
            path, "plain images hold a single trace; only direction='forward' exists"
        )


@guard_reader
def read_png(path: str | Path, channel: str | None = None, direction: str = "forward") -> STMFrame:
    """Read a PNG as grey levels in 0…1 (8- or 16-bit; colour → luminance)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _only_forward(path, direction)
    if channel not in (None, "grey"):
        raise NoSuchChannelError(path, f"no channel {channel!r}; available: grey")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                full_scale = 65535.0
            elif mode == "F":
                raise FrameReadError(path, "floating-point PNG images are not supported")
            else:
                array = np.asarray(image.convert("L"), dtype=np.float64)
                full_scale = 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise FrameReadError(path, f"not a readable PNG image ({exc})") from exc
    if array.ndim != 2:
        raise FrameReadError(
            path, f"expected a single-channel image, got array shape {array.shape}"
        )
    return STMFrame(
        data=np.ascontiguousarray(array[::-1] / full_scale),
        unit="",
        channel="grey",
        direction="forward",
        source=str(path),
        metadata={"format": "png", "mode": mode, "full_scale": full_scale},
    )


@guard_reader
def read_npy(path: str | Path, channel: str | None = None, direction: str = "forward") -> STMFrame:
    """Read a 2-D real ``.npy`` array as is (row 0 = bottom line, unit unknown)."""
    path = Path(path)
    _only_forward(path, direction)
    if channel not in (None, "array"):
        raise NoSuchChannelError(path, f"no channel {channel!r}; available: array")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FrameReadError(path, f"not a readable .npy array ({exc})") from exc
    if array.ndim != 2 or array.size == 0:
        raise FrameReadError(path, f"expected a non-empty 2-D array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise FrameReadError(path, f"expected a real numeric array, got dtype {array.dtype}")
    if np.isinf(array).any():
        raise FrameReadError(path, "array contains infinities (use NaN for missing points)")
    return STMFrame(
        data=array.astype(np.float64),
        unit="",
        channel="array",
        direction="forward",
        source=str(path),
        metadata={"format": "npy", "dtype": str(array.dtype)},
    )
