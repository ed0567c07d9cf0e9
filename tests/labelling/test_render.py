"""Display rendering: flattened lines, percentile contrast, top line at the top, missing lines marked."""

import io

import numpy as np
import pytest
from PIL import Image

from qcodes_stmtip.labelling.render import MISSING_RGB, display_grey, frame_png


def test_tilt_and_line_offsets_are_flattened_away():
    lines, pixels = 20, 30
    x = np.arange(pixels)
    pattern = np.where((x // 5) % 2 == 0, 0.0, 1e-10)  # stripes along x, same on every line
    tilt = 3e-9 * x / pixels + 1e-9 * np.arange(lines)[:, None]  # slope + per-line offsets
    grey, valid = display_grey(pattern + tilt, clip=0.0)
    assert valid.all()
    # After removing each line's straight fit, every line shows the same stripes.
    assert np.ptp(grey.astype(int), axis=0).max() <= 1
    stripes = grey[0].astype(int)
    assert stripes[pattern > 0].min() > stripes[pattern == 0].max()
    assert grey.min() == 0 and grey.max() == 255


def test_percentile_clip_keeps_contrast_despite_a_spike():
    rng = np.random.default_rng(0)
    frame = rng.normal(0, 1e-11, (64, 64))
    frame[10, 10] = 1e-8  # one huge spike
    grey, _ = display_grey(frame, clip=1.0)
    assert grey[10, 10] == 255
    assert 60 < np.median(grey) < 200  # the rest is not crushed to black
    assert np.std(grey) > 30


def test_png_orientation_and_missing_lines():
    frame = np.zeros((4, 5))
    frame[:, 4] += np.arange(4)  # a bump that grows line by line: lines differ after flattening
    frame[3] = np.nan  # top line never acquired
    img = np.asarray(Image.open(io.BytesIO(frame_png(frame))))
    assert img.shape == (4, 5, 3)
    # Image row 0 is the top of the frame: the missing line.
    assert (img[0] == MISSING_RGB).all()
    grey, valid = display_grey(frame)
    assert valid.tolist() == [True, True, True, False]
    assert not np.array_equal(grey[0], grey[2])
    np.testing.assert_array_equal(img[1:, :, 0], grey[2::-1])


def test_large_frames_use_a_subsample_for_the_stretch():
    rng = np.random.default_rng(1)
    frame = rng.normal(size=(600, 600))
    grey, _ = display_grey(frame, clip=1.0)
    # ~1 % of the pixels saturate at each end, as with the exact percentiles.
    assert 0.005 < np.mean(grey == 0) < 0.02 and 0.005 < np.mean(grey == 255) < 0.02
    img = np.asarray(Image.open(io.BytesIO(frame_png(frame))))
    np.testing.assert_array_equal(img, grey[::-1])


def test_flat_and_all_missing_frames():
    grey, valid = display_grey(np.full((3, 3), 5.0))
    assert valid.all() and (grey == 128).all()
    grey, valid = display_grey(np.full((3, 3), np.nan))
    assert not valid.any()
    img = np.asarray(Image.open(io.BytesIO(frame_png(np.full((3, 3), np.nan)))))
    assert (img == MISSING_RGB).all()


@pytest.mark.parametrize(("frame", "clip", "match"), [
    (np.zeros(5), 1.0, "2-D"),
    (np.zeros((0, 4)), 1.0, "non-empty"),
    (np.zeros((4, 4)), 50.0, "clip"),
    (np.zeros((4, 4)), -1.0, "clip"),
])
def test_bad_input(frame, clip, match):
    with pytest.raises(ValueError, match=match):
        display_grey(frame, clip)
