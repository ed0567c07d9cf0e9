"""Turn simulated height frames into the 8-bit images the real data sets ship.

The real H:Si(100) PNGs were flattened line by line along x and min–max scaled to
0…255; :func:`to_uint8` does the same so simulated and real frames are comparable.
Flattening and scaling are :mod:`qcodes_stmtip.imaging`'s (re-exported here).
"""

from __future__ import annotations

import numpy as np

from qcodes_stmtip.imaging import flatten_lines, min_max

__all__ = ["flatten_lines", "min_max", "to_uint8"]


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Line-flatten, min–max scale and quantise to 8-bit greyscale, image row 0 at the top.

    Frames use row 0 = bottom line; images show the top line first, so rows are flipped.
    """
    img = np.rint(min_max(flatten_lines(frame)) * 255.0).astype(np.uint8)
    return img[::-1]
