"""The paper's training augmentation: flips, rotations 0–360°, crops, pans and Gaussian noise.

Images tagged *restricted* (tip-change labels, and every sample of the binary
tip-change network) only get horizontal flips (mirroring along x) and noise:
tip changes are horizontal shears, and rotating or zooming could hide the
discontinuity. Operates on preprocessed (size, size) float32 images in −1…1;
geometric transforms use reflective boundaries so no blank corners appear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths: ``min_crop`` is the smallest crop side as a fraction of the image,
    ``max_noise`` the largest Gaussian noise standard deviation (in the −1…1 units).

    ``restricted_vertical_flip`` (default off = the paper's rule) also flips restricted
    images vertically: reversing the order of the lines keeps a tip change a discontinuity
    between two lines, so the label survives it (measured in ``benchmarks/table1_hsi100.py``).
    """

    min_crop: float = 0.7
    max_noise: float = 0.1
    restricted_vertical_flip: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.min_crop <= 1.0:
            raise ValueError(f"min_crop must be in (0, 1], got {self.min_crop}")
        if self.max_noise < 0.0:
            raise ValueError(f"max_noise must be ≥ 0, got {self.max_noise}")


def augment_image(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    restricted: bool = False,
    config: AugmentConfig = AugmentConfig(),  # noqa: B008 - frozen dataclass
) -> np.ndarray:
    """Return one randomly augmented copy of a 2-D image (float32, same shape)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.shape[0] != img.shape[1]:
        raise ValueError(f"image must be a square 2-D array, got shape {img.shape}")
    size = img.shape[0]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if restricted and config.restricted_vertical_flip and rng.random() < 0.5:
        img = img[::-1, :]
    if not restricted:
        # Vertical flip, rotation, crop and pan as ONE bilinear affine resampling (reflective
        # boundaries): output pixel o maps to input c + R(θ)·F·(s·(o − c) + d), where s is the crop
        # side as a fraction of the image and d the crop centre's offset. One interpolation per image
        # is ~3× faster than rotate-then-crop-then-resize and blurs less.
        flip = -1.0 if rng.random() < 0.5 else 1.0
        theta = np.deg2rad(rng.uniform(0.0, 360.0))
        side = int(round(size * rng.uniform(config.min_crop, 1.0)))
        scale = side / size
        half_room = (size - side) / 2.0
        d = rng.uniform(-half_room, half_room, 2) if half_room > 0 else np.zeros(2)
        c, s = np.cos(theta), np.sin(theta)
        rot = np.array([[c, -s], [s, c]]) @ np.diag([flip, 1.0])
        matrix = rot * scale
        centre = np.full(2, (size - 1) / 2.0)
        offset = centre + rot @ d - matrix @ centre
        img = ndimage.affine_transform(img, matrix, offset=offset, order=1, mode="reflect")
    sigma = rng.uniform(0.0, config.max_noise)
    if sigma > 0.0:
        img = img + rng.normal(0.0, sigma, img.shape)
    return np.ascontiguousarray(img, dtype=np.float32)


def augment_batch(
    images: np.ndarray,
    rng: np.random.Generator,
    restricted: np.ndarray | bool = False,
    config: AugmentConfig = AugmentConfig(),  # noqa: B008 - frozen dataclass
) -> np.ndarray:
    """Augment a (N, size, size, 1) batch; ``restricted`` is one bool or one per image."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[-1] != 1:
        raise ValueError(f"images must have shape (N, size, size, 1), got {batch.shape}")
    flags = np.broadcast_to(np.asarray(restricted, dtype=bool), (batch.shape[0],))
    out = np.empty_like(batch)
    for i in range(batch.shape[0]):
        out[i, :, :, 0] = augment_image(batch[i, :, :, 0], rng, restricted=bool(flags[i]), config=config)
    return out


def dihedral_views(images: np.ndarray, restricted: bool = False,
                   vertical_flip: bool = False) -> list[np.ndarray]:
    """The test-time views of a (N, size, size, 1) batch: the 8 symmetries of the square
    (4 rotations by 90°, each with and without a horizontal flip), or with ``restricted``
    only the identity and the horizontal flip (the views a tip-change label survives),
    plus their vertical flips with ``vertical_flip`` (4 views).
    Exact pixel permutations: no interpolation, no noise."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[-1] != 1 or batch.shape[1] != batch.shape[2]:
        raise ValueError(f"images must have shape (N, size, size, 1), got {batch.shape}")
    turns = ((0, 2) if vertical_flip else (0,)) if restricted else (0, 1, 2, 3)
    views = []
    for k in turns:
        rotated = np.rot90(batch, k, axes=(1, 2))
        views.append(np.ascontiguousarray(rotated))
        views.append(np.ascontiguousarray(rotated[:, :, ::-1]))
    return views
