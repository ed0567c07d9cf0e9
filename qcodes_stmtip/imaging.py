"""Image arithmetic every part shares: line flattening and min–max scaling.

One implementation, used by the classifier's preprocessing
(:mod:`qcodes_stmtip.classify.preprocess`), the simulator's 8-bit export
(:mod:`qcodes_stmtip.sim.export`) and the conditioning report's gallery. Frames are
``(lines, pixels)`` arrays, one scan line per row; values keep their units (m, nm, A…).
No side effects: every function returns a new array.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["flatten_lines", "min_max"]


def _flatten_finite(rows: np.ndarray, order: int, x: np.ndarray | None = None) -> np.ndarray:
    """Subtract each row's least-squares polynomial of ``order`` in ``x`` (rows all finite)."""
    n = rows.shape[1]
    if n == 0:
        return rows.copy()
    if x is None:
        x = np.linspace(-1.0, 1.0, n)
    if order == 0 or n < 2:
        design = np.ones((n, 1))
    else:
        design = np.stack([np.ones_like(x), x], axis=1)  # (pixels, 2)
    coeffs, *_ = np.linalg.lstsq(design, rows.T, rcond=None)  # (terms, lines)
    return rows - (design @ coeffs).T


def flatten_lines(frame: np.ndarray, order: int = 1, *,
                  nonfinite: Literal["raise", "ignore"] = "raise") -> np.ndarray:
    """Subtract from every line (row) its least-squares polynomial of ``order`` (0 or 1) along x.

    Returns a new float64 array in the input's units. A line with a single usable pixel
    has its mean (order 0) removed. ``nonfinite="raise"`` (default) refuses NaN/inf with
    ``ValueError``; ``"ignore"`` fits each line on its finite pixels only and leaves the
    non-finite ones as they are (an unfinished scan shown for display).
    """
    arr = np.asarray(frame, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"frame must be 2-D (lines, pixels), got shape {arr.shape}")
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order!r}")
    if nonfinite not in ("raise", "ignore"):
        raise ValueError(f"nonfinite must be 'raise' or 'ignore', got {nonfinite!r}")
    finite = np.isfinite(arr)
    if finite.all():
        return _flatten_finite(arr, order)
    if nonfinite == "raise":
        raise ValueError("frame contains non-finite values; drop them with valid_rows() first "
                         "(qcodes_stmtip.classify.preprocess) or pass nonfinite='ignore'")
    out = arr.copy()
    whole = finite.all(axis=1)
    if whole.any():
        out[whole] = _flatten_finite(arr[whole], order)
    x = np.linspace(-1.0, 1.0, arr.shape[1])
    for i in np.flatnonzero(~whole):
        ok = finite[i]
        if ok.any():
            out[i, ok] = _flatten_finite(arr[i, ok][None, :], order, x[ok])[0]
    return out


def min_max(frame: np.ndarray, low: float = 0.0, high: float = 1.0, *,
            constant: float | None = None) -> np.ndarray:
    """Scale linearly so the minimum maps to ``low`` and the maximum to ``high`` (float64).

    A constant frame (span ≤ 1e-12 of its largest magnitude, at least 1e-12 absolute)
    has no range to scale: every value becomes ``constant`` (default ``low``).
    ``frame`` must be finite.
    """
    arr = np.asarray(frame, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    span = hi - lo
    if span <= 1e-12 * max(1.0, abs(hi), abs(lo)):
        return np.full(arr.shape, low if constant is None else constant, dtype=np.float64)
    return (high - low) * (arr - lo) / span + low
