"""A side-by-side gallery of every class of a surface, rendered by the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qcodes_stmtip.sim.export import to_uint8
from qcodes_stmtip.taxonomy import CLASSES, check_surface


def render_gallery(surface: str, seed: int = 0, per_class: int = 3, pixels: int = 160) -> np.ndarray:
    """8-bit image: one column per class of ``surface``, ``per_class`` examples each.

    The examples come from :func:`qcodes_stmtip.sim.dataset.generate_example`
    (the same sampler as the labelled data sets).
    """
    from qcodes_stmtip.sim.dataset import generate_example

    check_surface(surface)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class!r}")
    classes = CLASSES[surface]
    gap = 6
    title = 18
    out = np.full((title + per_class * (pixels + gap), len(classes) * (pixels + gap)), 255, np.uint8)
    rng = np.random.default_rng(seed)
    for c, label in enumerate(classes):
        for k in range(per_class):
            ex = generate_example(surface, label, rng, pixels=pixels, lines=pixels)
            img = to_uint8(ex.scan.forward)
            r0, c0 = title + k * (pixels + gap), c * (pixels + gap)
            out[r0:r0 + pixels, c0:c0 + pixels] = img
    return out


def save_gallery(surface: str, path: str | Path, seed: int = 0, per_class: int = 3,
                 pixels: int = 160) -> Path:
    """Render the gallery of ``surface`` with class titles and write it as a PNG to ``path``."""
    from PIL import Image, ImageDraw

    img = render_gallery(surface, seed, per_class, pixels)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for c, label in enumerate(CLASSES[surface]):
        draw.text((c * (pixels + 6) + 2, 3), label, fill=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path)
    return path
