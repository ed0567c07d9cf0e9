"""Draw a frame for a person: line-flattened, contrast-stretched, 8-bit PNG, top line at the top.

Rows containing NaN (lines not acquired) are drawn in a flat blue so an
unfinished scan is obvious; the other rows are flattened line by line
(:func:`qcodes_stmtip.classify.preprocess.flatten_lines`) and mapped to grey
between the ``clip`` and ``100 − clip`` percentiles of the finite values
(of a regular subsample of 65,536 values for larger frames).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from qcodes_stmtip.classify.preprocess import flatten_lines

#: Colour of lines that hold no data (RGB).
MISSING_RGB: tuple[int, int, int] = (40, 70, 140)
_PERCENTILE_SAMPLE = 65536


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
    sample = flat.ravel()
    if sample.size > _PERCENTILE_SAMPLE:  # a regular subsample is plenty for a display stretch
        sample = sample[:: sample.size // _PERCENTILE_SAMPLE]
    lo, hi = np.percentile(sample, [clip, 100.0 - clip])
    if hi - lo <= 1e-12 * max(1.0, abs(hi), abs(lo)):
        scaled = np.full(flat.shape, 0.5)
    else:
        scaled = np.clip((flat - lo) / (hi - lo), 0.0, 1.0)
    grey[valid] = np.round(scaled * 255.0).astype(np.uint8)
    return grey, valid


def frame_png(frame: np.ndarray, clip: float = 1.0) -> bytes:
    """PNG bytes of ``frame`` for display: top line first; grey, or RGB with missing lines in
    :data:`MISSING_RGB` when there are any."""
    grey, valid = display_grey(frame, clip)
    if valid.all():
        pixels = grey[::-1]
    else:
        pixels = np.repeat(grey[:, :, None], 3, axis=2)
        pixels[~valid] = MISSING_RGB
        pixels = pixels[::-1]
    buffer = io.BytesIO()
    # Fast zlib level: ~10x quicker than the default for a few tens of percent more bytes on loopback.
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
