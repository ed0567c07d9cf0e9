"""Read one frame file into a 2-D array for classification (PNG, NPY, and what :mod:`qcodes_stmtip.io` reads)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from PIL import Image


def read_frame_array(path: str | Path) -> np.ndarray:
    """Return the frame stored at ``path`` as a float64 (lines, pixels) array.

    PNG: grey value (colour images are converted to luminance), row 0 of the
    array is the *bottom* line (image files store the top line first). NPY: the
    array as saved (plain arrays only, no pickles). Other extensions are passed
    to ``qcodes_stmtip.io.read_frame`` (its ``.data``) when that module exists.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"frame file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".png":
        with Image.open(p) as img:
            arr = np.asarray(img.convert("F") if img.mode not in ("I", "I;16", "F") else img)
        return np.flipud(arr.astype(np.float64))
    if suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.ndim != 2:
            raise ValueError(f"{p}: expected a 2-D frame array, got shape {arr.shape}")
        return arr.astype(np.float64)
    try:
        io_module = importlib.import_module("qcodes_stmtip.io")
        reader = io_module.read_frame
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{p}: unsupported frame file type {suffix!r} (PNG and NPY are read)") from exc
    return np.asarray(reader(p).data, dtype=np.float64)
