import numpy as np
import pytest

from qcodes_stmtip.sim.export import flatten_lines, min_max, to_uint8


def test_flatten_removes_per_line_offset_and_slope():
    x = np.linspace(0, 1, 50)
    frame = np.outer(np.arange(10.0), np.ones(50)) + np.outer(np.linspace(-2, 3, 10), x)
    assert np.allclose(flatten_lines(frame), 0.0, atol=1e-12)
    bump = frame.copy()
    bump[:, 25] += 1.0
    assert flatten_lines(bump)[:, 25].min() > 0.9


def test_to_uint8_scales_full_range_and_puts_the_top_line_first():
    frame = np.zeros((4, 8))
    frame[3, 2] = 1.0  # top line (row 3) feature
    img = to_uint8(frame)
    assert img.dtype == np.uint8 and img.max() == 255 and img.min() == 0
    assert img[0, 2] == 255
    assert np.all(min_max(np.ones((3, 3))) == 0)


def test_bad_shape():
    with pytest.raises(ValueError, match="frame"):
        flatten_lines(np.zeros(5))
