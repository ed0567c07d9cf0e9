"""Tip-state classification after Gordon et al. (RSI 90, 103704, 2019).

Importing this package is cheap and TensorFlow-free. The Keras-backed parts
(:mod:`.architectures`, :mod:`.training`, :mod:`.ensemble`, :mod:`.bundle`) are
imported on demand; :mod:`.preprocess`, :mod:`.augment`, :mod:`.labels`,
:mod:`.metrics` and :mod:`.baselines` need only numpy, scipy, Pillow and
scikit-learn.
"""

from __future__ import annotations

from qcodes_stmtip.classify.preprocess import (
    IMAGE_SIZE,
    MIN_VALID_LINES,
    FrameTooShortError,
    preprocess_frame,
)

__all__ = ["IMAGE_SIZE", "MIN_VALID_LINES", "FrameTooShortError", "preprocess_frame"]
