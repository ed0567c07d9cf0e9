"""Read and preprocess every frame of a :class:`~qcodes_stmtip.classify.labels.LabeledFrames` set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from qcodes_stmtip.classify.frame_files import read_frame_array
from qcodes_stmtip.classify.labels import LabeledFrames
from qcodes_stmtip.classify.preprocess import IMAGE_SIZE, FrameTooShortError, preprocess_frame


@dataclass
class ImageSet:
    """Preprocessed images (N, size, size, 1) float32 and the frames they came from.

    ``frames`` holds only the frames that could be preprocessed; ``skipped``
    lists ``(path, reason)`` for the others (too few valid lines).
    """

    images: np.ndarray
    frames: LabeledFrames
    skipped: list[tuple[str, str]]


def load_images(frames: LabeledFrames, size: int = IMAGE_SIZE, progress: bool = True) -> ImageSet:
    """Read and preprocess all frames; frames too short to classify are skipped and reported."""
    images, keep, skipped = [], [], []
    for i, path in enumerate(tqdm(frames.paths, desc="preprocess", unit="frame", disable=not progress,
                                  leave=False)):
        try:
            images.append(preprocess_frame(read_frame_array(path), size))
        except FrameTooShortError as exc:
            skipped.append((str(path), str(exc)))
            continue
        keep.append(i)
    arr = np.stack(images)[..., None] if images else np.zeros((0, size, size, 1), np.float32)
    return ImageSet(arr.astype(np.float32), frames.subset(np.array(keep, dtype=int)), skipped)
