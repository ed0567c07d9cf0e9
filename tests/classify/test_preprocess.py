"""Preprocessing numerics: flattening, resizing, scaling and the awkward-frame rules."""

import numpy as np
import pytest

from qcodes_stmtip.classify.preprocess import (
    IMAGE_SIZE,
    MIN_VALID_LINES,
    FrameTooShortError,
    flatten_lines,
    preprocess_batch,
    preprocess_frame,
    resize,
    scale_symmetric,
)


def _pattern(lines=64, pixels=80, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:lines, 0:pixels]
    return 1e-10 * np.sin(x / 3.0) * np.cos(y / 5.0) + 2e-11 * rng.normal(size=(lines, pixels))


def test_flatten_removes_per_line_offset_and_tilt():
    base = _pattern()
    x = np.linspace(-1, 1, base.shape[1])
    rng = np.random.default_rng(1)
    offsets = rng.normal(size=(base.shape[0], 1)) * 1e-9
    slopes = rng.normal(size=(base.shape[0], 1)) * 1e-9
    tilted = base + offsets + slopes * x[None, :]
    np.testing.assert_allclose(flatten_lines(tilted), flatten_lines(base), atol=1e-20)
    # each flattened line has zero mean and zero correlation with x
    flat = flatten_lines(tilted)
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-22)
    np.testing.assert_allclose(flat @ x, 0.0, atol=1e-20)


def test_flatten_is_idempotent_and_plane_goes_to_zero():
    base = _pattern()
    once = flatten_lines(base)
    np.testing.assert_allclose(flatten_lines(once), once, atol=1e-24)
    y, x = np.mgrid[0:10, 0:20]
    np.testing.assert_allclose(flatten_lines(3.0 * x + 2.0 * y + 1.0), 0.0, atol=1e-12)


def test_flatten_rejects_nan():
    bad = _pattern()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        flatten_lines(bad)


def test_output_range_shape_and_affine_invariance():
    frame = _pattern()
    out = preprocess_frame(frame)
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE) and out.dtype == np.float32
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)
    np.testing.assert_allclose(preprocess_frame(3.7 * frame + 5e-9), out, atol=1e-5)


def test_reflattening_an_8bit_export_is_harmless():
    """The real H:Si(100) PNGs are flattened + min-max scaled + quantised: re-flattening them is fine."""
    frame = _pattern(seed=3)
    flat = flatten_lines(frame)
    grey = np.round(255 * (flat - flat.min()) / (flat.max() - flat.min()))
    diff = preprocess_frame(grey) - preprocess_frame(frame)
    assert np.abs(diff).max() < 0.03  # a few grey levels out of the 2.0 range


def test_nan_rows_of_unfinished_scan_are_dropped():
    frame = _pattern()
    unfinished = frame.copy()
    unfinished[40:] = np.nan
    unfinished[39, 50:] = np.nan  # line in progress
    np.testing.assert_array_equal(preprocess_frame(unfinished), preprocess_frame(frame[:39]))


def test_too_few_lines_raise_typed_error():
    frame = _pattern()
    frame[MIN_VALID_LINES - 1 :] = np.nan
    with pytest.raises(FrameTooShortError, match=f"{MIN_VALID_LINES - 1} finite lines"):
        preprocess_frame(frame)
    assert issubclass(FrameTooShortError, ValueError)
    with pytest.raises(FrameTooShortError, match="pixels per line"):
        preprocess_frame(np.zeros((50, 4)))


def test_short_strip_is_stretched_not_cropped():
    x = np.linspace(0, 6 * np.pi, 300)
    strip = np.tile(np.cos(x), (12, 1))  # 12 lines of 300 pixels, no y variation
    out = preprocess_frame(strip)
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE)
    # every output row is the same resampled line: nothing of x was cropped away
    np.testing.assert_allclose(out, np.broadcast_to(out[0], out.shape), atol=1e-5)
    crossings = np.sum(np.diff(np.sign(out[0])) != 0)
    assert crossings == 6  # three full periods along x survive the resize


def test_resize_antialiases():
    checker = (np.indices((512, 512)).sum(axis=0) % 2).astype(np.float32)
    small = resize(checker, 128)
    assert small.shape == (128, 128)
    assert np.std(small) < 0.05  # a naive subsample would be all 0 or all 1 with std 0.5 …
    assert abs(small.mean() - 0.5) < 0.05  # … and the average grey is kept


def test_constant_frame_is_zeros_and_bad_shape_rejected():
    np.testing.assert_array_equal(scale_symmetric(np.full((5, 5), 3.0)), 0.0)
    np.testing.assert_array_equal(preprocess_frame(np.full((20, 20), 1e-9)), 0.0)
    with pytest.raises(ValueError, match="2-D"):
        preprocess_frame(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="size"):
        resize(np.zeros((4, 4)), 0)


def test_batch_layout():
    batch = preprocess_batch([_pattern(), _pattern(30, 200)], size=64)
    assert batch.shape == (2, 64, 64, 1) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0, :, :, 0], preprocess_frame(_pattern(), 64))
