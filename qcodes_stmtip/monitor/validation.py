"""One validation path for every frame the monitor classifies, whole or partial.

:func:`check_frame` is what :meth:`~qcodes_stmtip.monitor.TipStateMonitor.submit`'s frames go
through before preprocessing (a refused frame is stored as ``unclassified`` with the reason)
and what :meth:`~qcodes_stmtip.monitor.scanwatch.ScanWatchMixin.post_partial` checks before
a partial frame is queued (a refused one raises ``ValueError``, nothing is recorded), with
:func:`check_lines` for the partial frame's line count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_ABS_VALUE", "check_frame", "check_lines"]

#: Largest |value| (in the frame's units) preprocessing accepts: flattening can double
#: it and the network input is float32 (max 3.4e38), so larger frames are refused.
MAX_ABS_VALUE = float(np.finfo(np.float32).max) / 16


def check_frame(frame: Any, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """``frame`` as a float64 array (lines, pixels) if it can be classified, else ``ValueError``.

    Refused: not an array of numbers (ragged, object, text, bool), not 2-D or empty, not
    ``expected_shape``, complex (its imaginary part would be dropped), or finite values past
    :data:`MAX_ABS_VALUE`. NaN/inf pixels are allowed (lines not acquired yet).
    """
    try:
        array = np.asarray(frame)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"frame is not an array of numbers ({exc})") from None
    if array.ndim != 2:
        raise ValueError(f"frame must be 2-D (lines, pixels), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"frame is empty (shape {array.shape})")
    if expected_shape is not None and array.shape != tuple(expected_shape):
        raise ValueError(f"frame shape {array.shape} is not the expected {tuple(expected_shape)}")
    if np.iscomplexobj(array):
        raise ValueError(f"frame is complex ({array.dtype}); refused rather than dropping "
                         "its imaginary part: submit the real channel")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"frame has non-numeric dtype {array.dtype}")
    values = np.asarray(array, dtype=np.float64)
    finite = values[np.isfinite(values)]
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    if peak > MAX_ABS_VALUE:
        raise ValueError(f"frame values reach |{peak:.3g}|, beyond the {MAX_ABS_VALUE:.3g} "
                         "that float32 preprocessing can represent; refused")
    return values


def check_lines(lines: Any, total: int) -> int:
    """``lines`` (acquired lines of a partial frame of ``total`` lines) as an int in 1..total,
    else ``ValueError``."""
    if isinstance(lines, bool) or not isinstance(lines, int | np.integer):
        raise ValueError(f"lines must be an integer number of acquired lines, got {lines!r}")
    if not 1 <= int(lines) <= total:
        raise ValueError(f"lines must be in 1..{total} (the frame's lines), got {int(lines)}")
    return int(lines)
