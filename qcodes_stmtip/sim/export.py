"""Turn simulated height frames into the 8-bit images the real data sets ship.

The real H:Si(100) PNGs were flattened line by line along x and min–max scaled to
0…255; :func:`to_uint8` does the same so simulated and real frames are comparable.
"""

from __future__ import annotations

import numpy as np


def flatten_lines(frame: np.ndarray, order: int = 1) -> np.ndarray:
    """Subtract a least-squares polynomial of ``order`` (0 or 1) from every line (row)."""
    frame = np.asarray(frame, dtype=np.float64)
    if frame.ndim != 2:
        raise ValueError(f"frame must be 2-D (lines, pixels), got shape {frame.shape}")
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order!r}")
    if order == 0 or frame.shape[1] < 2:
        return frame - frame.mean(axis=1, keepdims=True)
    x = np.linspace(-1.0, 1.0, frame.shape[1])
    mean = frame.mean(axis=1, keepdims=True)
    slope = (frame - mean) @ x / (x @ x)
    return frame - mean - slope[:, None] * x


def min_max(frame: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (a constant frame gives zeros)."""
    lo, hi = float(np.min(frame)), float(np.max(frame))
    if hi <= lo:
        return np.zeros_like(frame, dtype=np.float64)
    return (frame - lo) / (hi - lo)


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Line-flatten, min–max scale and quantise to 8-bit greyscale, image row 0 at the top.

    Frames use row 0 = bottom line; images show the top line first, so rows are flipped.
    """
    img = np.rint(min_max(flatten_lines(frame)) * 255.0).astype(np.uint8)
    return img[::-1]
