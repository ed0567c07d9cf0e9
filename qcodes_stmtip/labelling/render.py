"""Draw a frame for a person: line-flattened, contrast-stretched, 8-bit PNG, top line at the top.

Rows containing NaN (lines not acquired) are drawn in a flat blue so an
unfinished scan is obvious; the other rows are flattened line by line
(:func:`qcodes_stmtip.classify.preprocess.flatten_lines`) and mapped to grey
between the ``clip`` and ``100 − clip`` percentiles of the finite values.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from qcodes_stmtip.classify.preprocess import flatten_lines

#: Colour of lines that hold no data (RGB).
MISSING_RGB: tuple[int, int, int] = (40, 70, 140)


def display_grey(frame: np.ndarray, clip: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(grey, valid)``: uint8 (lines, pixels) grey levels and the boolean mask of finite rows.

    Row 0 stays the bottom line. ``clip`` is the percentile (0 ≤ clip < 50) cut
    at each end of the grey scale.
    """
    arr = np.asarray(frame, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"frame must be a non-empty 2-D (lines, pixels) array, got {arr.shape}")
    if not 0.0 <= clip < 50.0:
        raise ValueError(f"clip must be a percentile in [0, 50), got {clip}")
    valid = np.all(np.isfinite(arr), axis=1)
    grey = np.zeros(arr.shape, dtype=np.uint8)
    if not valid.any():
        return grey, valid
    rows = arr[valid]
    flat = flatten_lines(rows) if rows.shape[1] >= 2 else rows - rows.mean()
    lo, hi = np.percentile(flat, [clip, 100.0 - clip])
    if hi - lo <= 1e-12 * max(1.0, abs(hi), abs(lo)):
        scaled = np.full(flat.shape, 0.5)
    else:
        scaled = np.clip((flat - lo) / (hi - lo), 0.0, 1.0)
    grey[valid] = np.round(scaled * 255.0).astype(np.uint8)
    return grey, valid


def frame_png(frame: np.ndarray, clip: float = 1.0) -> bytes:
    """PNG bytes (RGB) of ``frame`` for display: top line first, missing lines in :data:`MISSING_RGB`."""
    grey, valid = display_grey(frame, clip)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[~valid] = MISSING_RGB
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[::-1])).save(buffer, format="PNG")
    return buffer.getvalue()
