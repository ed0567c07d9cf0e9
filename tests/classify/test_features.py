"""Frame features: one finite row per frame, named, and responsive to what they claim to measure."""

import numpy as np
import pytest

from qcodes_stmtip.classify.features import feature_names, frame_features


def _rows(size: int = 64, period: float = 6.0, axis: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(float)
    z = np.sin(2 * np.pi * (y if axis == 0 else x) / period)
    return z


def _col(names: list[str], name: str) -> int:
    return names.index(name)


def test_one_finite_named_row_per_frame():
    rng = np.random.default_rng(0)
    batch = np.stack([rng.uniform(-1, 1, (64, 64)), np.zeros((64, 64)), _rows()])[..., None]
    f = frame_features(batch)
    assert f.shape == (3, len(feature_names(64))) and len(set(feature_names(64))) == f.shape[1]
    assert np.all(np.isfinite(f))
    np.testing.assert_array_equal(frame_features(batch[1:2, ..., 0]), f[1:2])  # (N, s, s) accepted too


def test_refuses_non_finite_and_too_small_frames():
    bad = np.zeros((1, 64, 64, 1))
    bad[0, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="image 0 holds non-finite values"):
        frame_features(bad)
    with pytest.raises(ValueError, match="must have shape"):
        frame_features(np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="must have shape"):
        frame_features(np.zeros((1, 64, 32, 1)))


def test_radial_spectrum_finds_the_lattice_period_and_ignores_mirroring():
    names = feature_names(64)
    f = frame_features(np.stack([_rows(period=4.0), _rows(period=16.0)])[..., None])
    radial = f[:, [_col(names, f"radial_{i}") for i in range(32)]]
    assert np.argmax(radial[0]) > np.argmax(radial[1])  # shorter period, higher band
    mirrored = frame_features(_rows(period=4.0)[None, :, ::-1, None])
    np.testing.assert_allclose(mirrored[0, :32], f[0, :32], atol=1e-9)


def test_axis_spectra_tell_rows_along_x_from_rows_along_y():
    names = feature_names(64)
    f = frame_features(np.stack([_rows(axis=0), _rows(axis=1)])[..., None])
    y_band = [_col(names, f"y_spectrum_{i}") for i in range(16)]
    x_band = [_col(names, f"x_spectrum_{i}") for i in range(16)]
    # stripes modulated along y (lines of constant height) put their power in the slow-axis
    # spectrum and none in the fast-axis one; stripes along x the other way round
    assert f[0, y_band].max() > f[0, x_band].max() + 3
    assert f[1, x_band].max() > f[1, y_band].max() + 3
    assert np.argmax(f[0, y_band]) == np.argmax(f[1, x_band])


def test_a_change_between_lines_raises_the_line_change_features():
    rng = np.random.default_rng(1)
    steady = _rows(axis=1, period=5.0) + 0.1 * rng.normal(size=(64, 64))
    changed = steady.copy()
    changed[32:] = _rows(axis=1, period=11.0)[32:] * 0.3 + 0.1 * rng.normal(size=(32, 64))
    names = feature_names(64)
    f = frame_features(np.stack([steady, changed])[..., None])
    for name in ("row_window_spec_change", "row_window_std_change"):
        assert f[1, _col(names, name)] > 2 * f[0, _col(names, name)], name
