"""Gwyddion reader (via gwyfile): the real gwyfile test file and files written with gwyfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

from qcodes_stmtip.io import FrameReadError, list_channels, read_frame
from tests.conftest import shared_data_missing

GWY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers" / "gwy"


def test_real_gwyfile_test_file() -> None:
    path = GWY / "test.gwy"
    if not path.is_file():
        shared_data_missing(
            f"real .gwy test data not available at {GWY} (the shared data folder is absent)"
        )
    frame = read_frame(path)
    assert (frame.lines, frame.pixels) == (128, 128)
    assert frame.channel == "Test"
    # Synthetic unitless data: the lateral size (128 × 128 "units") is not metres, so no extent.
    assert frame.width_m is None and frame.height_m is None and frame.pixel_size_m is None
    assert frame.metadata["xreal"] == 128.0 and frame.metadata["xy_unit"] == ""
    assert frame.data.min() == pytest.approx(0.0) and frame.data.max() == pytest.approx(1e-3)
    # Gwyddion's first stored row is the top row: it is now the last one.
    assert frame.data[-1, 0] == pytest.approx(8.2494e-4, rel=1e-4)
    assert list_channels(path) == [("Test", ("forward",))]


def write_gwy(
    path: Path, fields: dict[str, np.ndarray], unit_xy: str = "m", unit_z: str = "m"
) -> None:
    container = GwyContainer()
    for i, (title, data) in enumerate(fields.items()):
        container[f"/{i}/data"] = GwyDataField(
            data,
            xreal=data.shape[1] * 1e-9,
            yreal=data.shape[0] * 1e-9,
            xoff=5e-9,
            yoff=-2e-9,
            si_unit_xy=GwySIUnit(unitstr=unit_xy),
            si_unit_z=GwySIUnit(unitstr=unit_z),
        )
        container[f"/{i}/data/title"] = title
    container.tofile(str(path))


def test_written_file_extent_orientation_and_channels(tmp_path: Path) -> None:
    z = np.arange(12.0).reshape(3, 4) * 1e-10
    current = np.full((3, 4), 1e-10)
    path = tmp_path / "scan.gwy"
    write_gwy(path, {"Z (Forward)": z, "Z (Backward)": z + 1e-11, "I (Forward)": current})
    frame = read_frame(path)
    assert frame.channel == "Z (Forward)" and frame.unit == "m"
    assert (frame.width_m, frame.height_m) == (pytest.approx(4e-9), pytest.approx(3e-9))
    assert (frame.centre_x_m, frame.centre_y_m) == (pytest.approx(7e-9), pytest.approx(-0.5e-9))
    np.testing.assert_allclose(frame.data, z[::-1])
    back = read_frame(path, direction="backward")
    assert back.channel == "Z (Backward)" and back.direction == "backward"
    np.testing.assert_allclose(back.data, (z + 1e-11)[::-1])
    assert read_frame(path, "i (forward)").data.mean() == pytest.approx(1e-10)
    with pytest.raises(
        FrameReadError, match=r"no channel 'Phase'; available: Z \(Forward\), Z \(Backward\), I"
    ):
        read_frame(path, "Phase")
    with pytest.raises(FrameReadError, match="is a forward field, not backward"):
        read_frame(path, "I (Forward)", "backward")


def test_corrupt_gwy(tmp_path: Path) -> None:
    path = tmp_path / "bad.gwy"
    path.write_bytes(b"GWYPnot really a container")
    with pytest.raises(FrameReadError, match="not a readable Gwyddion file"):
        read_frame(path)
