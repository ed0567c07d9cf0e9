"""The paper's preprocessing: line-by-line flattening along x, resizing to 128×128, scaling to −1…1.

Defined behaviour for awkward real input:

* Rows containing any non-finite value (NaN-filled lines of an unfinished scan,
  or the line in progress) are dropped before flattening.
* A frame with fewer than :data:`MIN_VALID_LINES` valid lines or fewer than
  :data:`MIN_PIXELS` pixels per line raises :class:`FrameTooShortError`
  (callers such as the monitor record it as "unclassified").
* Non-square frames and short strips are *resized* (not cropped) to
  ``size × size`` with an anti-aliasing (area-aware bilinear) filter, so a
  strip is stretched along y.
* Each line has its least-squares straight line along x subtracted, then the
  frame is resized, then min–max scaled to exactly −1…1. A frame that is flat
  after flattening (constant) maps to all zeros.

The order resize-then-scale guarantees the output spans exactly −1…1; the
paper lists the same three steps. Flattening is idempotent, and an affine
change of the heights (e.g. an 8-bit grey-scale export of an already flattened
frame) gives the same output, so re-flattening the real H:Si(100) PNGs is
harmless.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from qcodes_stmtip import imaging

#: Side of the square network input, pixels (the paper's 128×128).
IMAGE_SIZE: int = 128
#: Fewest finite lines a frame must have to be classified.
MIN_VALID_LINES: int = 8
#: Fewest pixels per line a frame must have to be classified.
MIN_PIXELS: int = 8


class FrameTooShortError(ValueError):
    """The frame has too few valid (finite) lines or pixels to be classified."""


def valid_rows(frame: np.ndarray) -> np.ndarray:
    """Return the rows of ``frame`` (lines, pixels) whose values are all finite, as float64."""
    arr = np.asarray(frame, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"frame must be 2-D (lines, pixels), got shape {arr.shape}")
    return arr[np.all(np.isfinite(arr), axis=1)]


def flatten_lines(frame: np.ndarray) -> np.ndarray:
    """Subtract from each line (row) its least-squares straight line along x.

    ``frame`` must be finite, shape (lines, pixels) with pixels ≥ 2. Returns a new
    float64 array in the input's units.
    """
    arr = np.asarray(frame, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"frame must be 2-D with at least 2 pixels per line, got {arr.shape}")
    return imaging.flatten_lines(arr, order=1, nonfinite="raise")


def resize(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize a 2-D array to ``size × size`` with Pillow's anti-aliased bilinear filter (float32)."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    arr = np.ascontiguousarray(image, dtype=np.float32)
    if arr.shape == (size, size):
        return arr.copy()
    img = Image.fromarray(arr)  # float32 → mode "F"
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def scale_symmetric(image: np.ndarray) -> np.ndarray:
    """Min–max scale to exactly −1…1 (float32); a constant image gives zeros."""
    return imaging.min_max(image, -1.0, 1.0, constant=0.0).astype(np.float32)


def preprocess_frame(frame: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Turn one raw frame (lines, pixels; any units) into a (size, size) float32 image in −1…1.

    Raises :class:`FrameTooShortError` when fewer than :data:`MIN_VALID_LINES` finite
    lines or :data:`MIN_PIXELS` pixels remain.
    """
    rows = valid_rows(frame)
    if rows.shape[1] < MIN_PIXELS:
        raise FrameTooShortError(
            f"frame has {rows.shape[1]} pixels per line; at least {MIN_PIXELS} are needed"
        )
    if rows.shape[0] < MIN_VALID_LINES:
        raise FrameTooShortError(
            f"frame has {rows.shape[0]} finite lines of {np.shape(frame)[0]}; "
            f"at least {MIN_VALID_LINES} are needed"
        )
    return scale_symmetric(resize(flatten_lines(rows), size))


def preprocess_batch(frames: list[np.ndarray], size: int = IMAGE_SIZE) -> np.ndarray:
    """Preprocess several frames into a (N, size, size, 1) float32 network input."""
    out = np.empty((len(frames), size, size, 1), dtype=np.float32)
    for i, frame in enumerate(frames):
        out[i, :, :, 0] = preprocess_frame(frame, size)
    return out
