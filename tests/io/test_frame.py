"""STMFrame: validation, derived properties, cropping of unfinished frames."""

from __future__ import annotations

import numpy as np
import pytest

from qcodes_stmtip.io import FrameReadError, STMFrame


def test_properties_and_float64() -> None:
    frame = STMFrame(data=np.ones((3, 5), dtype=np.float32), width_m=10e-9, height_m=6e-9)
    assert frame.data.dtype == np.float64
    assert (frame.lines, frame.pixels) == (3, 5)
    assert frame.pixel_size_m == pytest.approx((2e-9, 2e-9))
    assert frame.has_extent and frame.is_complete
    assert STMFrame(data=np.zeros((2, 2))).pixel_size_m is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": np.zeros(4)}, "2-D"),
        ({"data": np.zeros((0, 3))}, "2-D"),
        ({"data": np.array([[1.0, np.inf]])}, "infinities"),
        ({"data": np.zeros((2, 2)), "width_m": -1e-9}, "width_m"),
        ({"data": np.zeros((2, 2)), "height_m": 0.0}, "height_m"),
        ({"data": np.zeros((2, 2)), "centre_x_m": np.nan}, "centre_x_m"),
        ({"data": np.zeros((2, 2)), "direction": "up"}, "direction"),
        ({"data": np.zeros((2, 2)), "scan_up": "yes"}, "scan_up"),
        ({"data": np.zeros((2, 2)), "bias_V": np.inf}, "bias_V"),
    ],
)
def test_bad_fields_raise_naming_them(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        STMFrame(**kwargs)


def test_acquired_crops_nan_rows_and_keeps_pixel_size() -> None:
    data = np.arange(20.0).reshape(5, 4)
    data[3:] = np.nan  # an "up" scan stopped after 3 lines
    frame = STMFrame(data=data, width_m=4e-9, height_m=5e-9, centre_x_m=0.0, centre_y_m=1e-9)
    assert not frame.is_complete
    assert frame.acquired_rows.tolist() == [True, True, True, False, False]
    cropped = frame.acquired()
    assert cropped.lines == 3 and cropped.is_complete
    assert cropped.pixel_size_m == pytest.approx(frame.pixel_size_m)
    # Rows 0..2 of 5 (pitch 1 nm): their centre lies 1 nm below the full frame's.
    assert cropped.centre_y_m == pytest.approx(0.0)
    assert frame.acquired() is not frame and STMFrame(data=np.ones((2, 2))).acquired().lines == 2


def test_half_scanned_last_line_is_cut_and_centre_follows_rotation() -> None:
    data = np.ones((4, 3))
    data[0, 1:] = np.nan  # a "down" scan stopped in the middle of its 4th line (the bottom row)
    frame = STMFrame(
        data=data, width_m=3e-9, height_m=4e-9, centre_x_m=0.0, centre_y_m=0.0, angle_deg=90.0
    )
    assert not frame.is_complete
    assert frame.acquired_rows.tolist() == [False, True, True, True]
    cropped = frame.acquired()
    assert cropped.lines == 3 and cropped.height_m == pytest.approx(3e-9)
    # Rows 1..3 of 4: the centre moves +0.5 nm along the frame's y axis, which a 90° clockwise
    # rotation turns into lab +x.
    assert cropped.centre_x_m == pytest.approx(0.5e-9) and cropped.centre_y_m == pytest.approx(
        0.0, abs=1e-20
    )


def test_acquired_with_nothing_acquired() -> None:
    data = np.ones((2, 2))
    data[:, 0] = np.nan
    with pytest.raises(ValueError, match="no line was fully acquired"):
        STMFrame(data=data).acquired()


def test_frame_read_error_is_value_error_naming_file() -> None:
    err = FrameReadError("/data/x.sxm", "truncated")
    assert isinstance(err, ValueError)
    assert str(err) == "/data/x.sxm: truncated" and err.path == "/data/x.sxm"
