"""area_similarity: same area scores high through offsets, tilt and noise; a different area near 0."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from qcodes_stmtip.lab.area_similarity import area_similarity, levelled


def _terrain(seed: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Mesoscale topography: smoothed random heights plus two terraces (m)."""
    rng = np.random.default_rng(seed)
    bumps = ndimage.gaussian_filter(rng.standard_normal(shape), 5) * 2e-9
    cols = np.arange(shape[1])[None, :]
    step = (cols > rng.integers(10, 50)).astype(float) * 1.4e-10
    return bumps + step


def _measured(topography: np.ndarray, seed: int) -> np.ndarray:
    """What a scan adds: tilt, random line offsets, white noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: topography.shape[0], : topography.shape[1]]
    tilt = 3e-11 * cols - 2e-11 * rows
    offsets = rng.normal(0, 5e-11, (topography.shape[0], 1))
    return topography + tilt + offsets + rng.normal(0, 2e-11, topography.shape)


def test_same_area_high_other_area_low() -> None:
    here = _terrain(1)
    assert area_similarity(_measured(here, 10), _measured(here, 11)) > 0.8
    scores = [area_similarity(_measured(here, 10), _measured(_terrain(s), 12)) for s in range(2, 12)]
    assert max(abs(v) for v in scores) < 0.5 and abs(np.mean(scores)) < 0.2


def test_levelling_removes_plane_and_line_offsets() -> None:
    rows, cols = np.mgrid[:32, :40]
    frame = 1e-9 + 2e-11 * cols + 5e-11 * rows + np.linspace(0, 1e-10, 32)[:, None]
    assert np.abs(levelled(frame, 0)).max() < 1e-20


def test_flat_frames_score_zero_and_bad_input_raises() -> None:
    flat = np.zeros((16, 16))
    assert area_similarity(flat, _terrain(3, (16, 16))) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        area_similarity(np.zeros((16, 16)), np.zeros((16, 17)))
    with pytest.raises(ValueError, match="NaN"):
        area_similarity(np.full((16, 16), np.nan), flat)
    with pytest.raises(ValueError, match="2-D"):
        area_similarity(np.zeros(16), np.zeros(16))
    with pytest.raises(ValueError, match="smoothing_px"):
        levelled(flat, -1.0)
