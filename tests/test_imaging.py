"""One flattening/scaling routine (qcodes_stmtip.imaging) and one tunnelling constant."""

from __future__ import annotations

import numpy as np
import pytest

from qcodes_stmtip import imaging
from qcodes_stmtip.imaging import flatten_lines, min_max


def _frame(seed: int = 0, lines: int = 12, pixels: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, pixels)
    return 1e-9 * (rng.normal(size=(lines, pixels)) + np.outer(rng.normal(size=lines), x)
                   + rng.normal(size=(lines, 1)))


def test_the_classifier_preprocessing_is_unchanged_bit_for_bit() -> None:
    """preprocess.flatten_lines / scale_symmetric delegate here; their output is what the
    old in-place code computed, to the last bit (bundles were trained on it)."""
    from qcodes_stmtip.classify.preprocess import flatten_lines as pre_flatten
    from qcodes_stmtip.classify.preprocess import scale_symmetric

    frame = _frame()
    x = np.linspace(-1.0, 1.0, frame.shape[1])
    design = np.stack([np.ones_like(x), x], axis=1)
    coeffs, *_ = np.linalg.lstsq(design, frame.T, rcond=None)
    np.testing.assert_array_equal(pre_flatten(frame), frame - (design @ coeffs).T)
    lo, hi = frame.min(), frame.max()
    np.testing.assert_array_equal(scale_symmetric(frame),
                                  (2.0 * (frame - lo) / (hi - lo) - 1.0).astype(np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        flatten_lines(np.where(np.eye(12, 20) > 0, np.nan, frame))


def test_the_simulator_export_uses_the_same_routines() -> None:
    from qcodes_stmtip.sim import export

    assert export.flatten_lines is imaging.flatten_lines and export.min_max is imaging.min_max
    frame = _frame(1)
    np.testing.assert_allclose(min_max(frame), (frame - frame.min()) / np.ptp(frame), rtol=0, atol=1e-15)
    np.testing.assert_allclose(flatten_lines(frame, order=0), frame - frame.mean(axis=1, keepdims=True),
                               atol=1e-24)
    assert np.all(min_max(np.ones((3, 3))) == 0) and np.all(min_max(np.ones(4), -1, 1, constant=0.5) == 0.5)


def test_ignoring_non_finite_pixels_fits_each_line_on_what_it_has() -> None:
    """The report's display flattening: NaN pixels stay NaN, the rest are line-fitted."""
    frame = _frame(2)
    frame[3, :5] = np.nan       # partly scanned line
    frame[7:, :] = np.nan       # lines not reached yet
    frame[5, 1:] = np.inf       # a single usable pixel: its mean goes
    out = flatten_lines(frame, nonfinite="ignore")
    assert np.isnan(out[3, :5]).all() and np.isnan(out[7:]).all() and np.isinf(out[5, 1:]).all()
    assert out[5, 0] == 0.0
    cols = np.arange(frame.shape[1])
    for i in (0, 3, 6):
        ok = np.isfinite(frame[i])
        expected = frame[i, ok] - np.polyval(np.polyfit(cols[ok], frame[i, ok], 1), cols[ok])
        np.testing.assert_allclose(out[i, ok], expected, rtol=0, atol=1e-20)
    with pytest.raises(ValueError, match="order"):
        flatten_lines(frame, order=2)
    with pytest.raises(ValueError, match="nonfinite"):
        flatten_lines(frame, nonfinite="drop")  # type: ignore[arg-type]


def test_one_tunnelling_decay_constant() -> None:
    from qcodes_stmtip.sim import frames, microscope, physics

    assert microscope.KAPPA is physics.KAPPA == 1.0e10  # 1/m
    assert frames.KAPPA_PER_NM == physics.KAPPA_PER_NM == physics.KAPPA * 1e-9 == 10.0  # 1/nm
