"""Augmentation label rules: tip-change images only get horizontal flips and noise."""

import numpy as np
import pytest

from qcodes_stmtip.classify.augment import (
    AugmentConfig,
    augment_batch,
    augment_image,
    dihedral_views,
)

NO_NOISE = AugmentConfig(max_noise=0.0)


def _asymmetric(size=64):
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.where(y > 0.6, 0.8, -0.5) + 0.3 * x + 0.2 * np.sin(12 * y * x)  # step at a fixed line
    return img.astype(np.float32)


def test_restricted_only_flips_horizontally():
    img = _asymmetric()
    seen = set()
    for seed in range(20):
        out = augment_image(img, np.random.default_rng(seed), restricted=True, config=NO_NOISE)
        if np.array_equal(out, img):
            seen.add("same")
        elif np.array_equal(out, img[:, ::-1]):
            seen.add("hflip")
        else:
            pytest.fail("restricted augmentation did something other than a horizontal flip")
    assert seen == {"same", "hflip"}


def test_restricted_keeps_the_tip_change_line():
    img = _asymmetric()
    step_row = np.argmax(np.abs(np.diff(img.mean(axis=1))))
    for seed in range(10):
        out = augment_image(img, np.random.default_rng(seed), restricted=True)
        assert np.argmax(np.abs(np.diff(out.mean(axis=1)))) == step_row


def test_unrestricted_rotates_crops_and_flips():
    img = _asymmetric()
    step_row = np.argmax(np.abs(np.diff(img.mean(axis=1))))
    moved = 0
    for seed in range(20):
        out = augment_image(img, np.random.default_rng(seed), config=NO_NOISE)
        assert out.shape == img.shape and out.dtype == np.float32
        assert np.all(np.isfinite(out))
        # reflective boundaries: no blank (zero-filled) corners, range kept
        assert out.min() >= img.min() - 1e-5 and out.max() <= img.max() + 1e-5
        if np.argmax(np.abs(np.diff(out.mean(axis=1)))) != step_row:
            moved += 1
    assert moved >= 10


def test_noise_is_gaussian_and_bounded():
    img = np.zeros((64, 64), np.float32)
    cfg = AugmentConfig(max_noise=0.1)
    stds = [augment_image(img, np.random.default_rng(s), restricted=True, config=cfg).std()
            for s in range(30)]
    assert max(stds) <= 0.11 and max(stds) > 0.05 and min(stds) >= 0.0


def test_batch_respects_per_image_flags():
    img = _asymmetric(32)
    batch = np.stack([img, img, img])[..., None]
    flags = np.array([True, False, True])
    out = augment_batch(batch, np.random.default_rng(4), flags, config=NO_NOISE)
    for i in (0, 2):
        assert np.array_equal(out[i, :, :, 0], img) or np.array_equal(out[i, :, :, 0], img[:, ::-1])
    assert out.shape == batch.shape


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_crop"):
        AugmentConfig(min_crop=0.0)
    with pytest.raises(ValueError, match="max_noise"):
        AugmentConfig(max_noise=-1.0)
    with pytest.raises(ValueError, match="square"):
        augment_image(np.zeros((4, 5)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        augment_batch(np.zeros((2, 4, 4)), np.random.default_rng(0))


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    views = dihedral_views(x)
    assert len(views) == 8 and all(v.shape == x.shape for v in views)
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1], x[:, :, ::-1])  # horizontal flip (mirror along x)
    np.testing.assert_array_equal(views[2][0, :, :, 0], np.rot90(x[0, :, :, 0]))
    # all eight distinct, each a permutation of the same pixels
    flat = {v[0].tobytes() for v in views}
    assert len(flat) == 8
    assert all(np.array_equal(np.sort(v[0].ravel()), np.sort(x[0].ravel())) for v in views)
    restricted = dihedral_views(x, restricted=True)
    assert len(restricted) == 2
    np.testing.assert_array_equal(restricted[1], x[:, :, ::-1])
    with pytest.raises(ValueError, match="shape"):
        dihedral_views(np.zeros((2, 4, 5, 1)))


def test_restricted_vertical_flip_option_adds_only_line_order_reversal():
    img = _asymmetric()
    cfg = AugmentConfig(max_noise=0.0, restricted_vertical_flip=True)
    seen = set()
    for seed in range(40):
        out = augment_image(img, np.random.default_rng(seed), restricted=True, config=cfg)
        for name, view in (("same", img), ("h", img[:, ::-1]), ("v", img[::-1]), ("hv", img[::-1, ::-1])):
            if np.array_equal(out, view):
                seen.add(name)
                break
        else:
            pytest.fail("restricted augmentation with vertical flips did something else")
        # the tip-change line stays one discontinuity between two lines
        steps = np.abs(np.diff(out.mean(axis=1)))
        assert np.sort(steps)[-1] > 5 * np.sort(steps)[-2]
    assert seen == {"same", "h", "v", "hv"}


def test_restricted_flip_views_for_tta():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    views = dihedral_views(x, restricted=True, vertical_flip=True)
    assert len(views) == 4
    np.testing.assert_array_equal(views[2], x[:, ::-1, ::-1])  # 180° turn = both flips
    np.testing.assert_array_equal(views[3], x[:, ::-1, :])  # vertical flip
