"""Deterministic per-position random numbers, so the sample is fixed in sample coordinates.

Point features (defects, adsorbates, scatterers) live in square cells of the infinite
sample plane; each cell's content is derived from a counter-based hash of
``(sample_seed, tag, cell_x, cell_y, slot)``, so any frame over the same area sees the
same features whatever order frames are rendered in, and no state is kept.
"""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_K = [np.uint64(k) for k in (
    0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB,
    0xD6E8FEB86659FD93, 0xA24BAED4963EE407, 0x9FB21C651E98DF25,
)]


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _K[0]
    x = (x ^ (x >> np.uint64(30))) * _K[1]
    x = (x ^ (x >> np.uint64(27))) * _K[2]
    return x ^ (x >> np.uint64(31))


def hash_base(seed: int, tag: int, ix: np.ndarray, iy: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """64-bit hashes, one per element of the broadcast ``ix, iy, slot``."""
    with np.errstate(over="ignore"):
        h = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ (np.uint64(tag & 0xFFFFFFFFFFFFFFFF) * _K[3])
        h = _splitmix(np.full(np.broadcast(ix, iy, slot).shape, h))
        for k, arr in ((5, ix), (1, iy), (2, slot)):
            a = np.asarray(arr, dtype=np.int64).view(np.uint64)
            h = _splitmix(h ^ (a * _K[k]))
    return h


def uniform(h: np.ndarray, field: int) -> np.ndarray:
    """Independent uniform [0, 1) numbers for ``field`` = 0, 1, … from base hashes ``h``."""
    with np.errstate(over="ignore"):
        x = _splitmix(h ^ (np.uint64(field + 1) * _K[4]))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def cell_points(seed: int, tag: int, bounds: tuple[float, float, float, float], cell: float,
                density: float, slots: int = 4, fields: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Points of a homogeneous process with ``density`` per unit area inside ``bounds``.

    ``bounds`` = (x_min, x_max, y_min, y_max) in the same unit as ``cell``. Returns
    ``(xy, extra)``: positions (n, 2) and ``fields`` uniform numbers per point (n, fields)
    for sizes/types. Each cell holds up to ``slots`` points (a binomial approximation of
    a Poisson process; keep ``density * cell**2`` well below ``slots``).
    """
    x0, x1, y0, y1 = bounds
    ix = np.arange(int(np.floor(x0 / cell)), int(np.floor(x1 / cell)) + 1)
    iy = np.arange(int(np.floor(y0 / cell)), int(np.floor(y1 / cell)) + 1)
    cx, cy, cs = np.meshgrid(ix, iy, np.arange(slots), indexing="ij")
    p = min(density * cell * cell / slots, 1.0)
    h = hash_base(seed, tag, cx, cy, cs)
    present = uniform(h, 0) < p
    h = h[present]
    px = (cx[present] + uniform(h, 1)) * cell
    py = (cy[present] + uniform(h, 2)) * cell
    inside = (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)
    h = h[inside]
    xy = np.stack([px[inside], py[inside]], axis=-1)
    extra = np.stack([uniform(h, 3 + f) for f in range(fields)], axis=-1)
    return xy, extra.reshape(len(xy), fields)
