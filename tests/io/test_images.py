"""PNG and NPY: no physical extent, grey levels 0…1, bottom row first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcodes_stmtip.io import FrameReadError, read_frame


def test_png_8bit_grey_scaled_and_flipped(tmp_path: Path) -> None:
    pixels = np.array([[0, 255, 51], [102, 153, 204]], dtype=np.uint8)  # row 0 = top of the picture
    path = tmp_path / "frame.png"
    Image.fromarray(pixels, mode="L").save(path)
    frame = read_frame(path)
    assert frame.unit == "" and frame.channel == "grey"
    assert frame.width_m is None and frame.height_m is None and frame.centre_x_m is None
    np.testing.assert_allclose(frame.data, [[0.4, 0.6, 0.8], [0.0, 1.0, 0.2]])


def test_png_16bit_and_colour(tmp_path: Path) -> None:
    deep = np.array([[0, 65535], [32768, 16384]], dtype=np.uint16)
    path16 = tmp_path / "deep.png"
    Image.fromarray(deep).save(path16)
    np.testing.assert_allclose(read_frame(path16).data, deep[::-1] / 65535.0)
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 255, 255)
    path_rgb = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path_rgb)
    assert read_frame(path_rgb).data[1, 0] == pytest.approx(1.0)


def test_npy_as_is(tmp_path: Path) -> None:
    array = np.random.default_rng(3).normal(size=(4, 6)) * 1e-10
    path = tmp_path / "frame.npy"
    np.save(path, array)
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.data, array)
    assert frame.pixel_size_m is None and frame.direction == "forward"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 2, 2)), "2-D"),
        (np.array([["a", "b"]]), "real numeric"),
        (np.array([[1.0, np.inf]]), "infinit"),
    ],
)
def test_npy_rejects(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(FrameReadError, match=message):
        read_frame(path)


def test_images_have_one_trace(tmp_path: Path) -> None:
    path = tmp_path / "frame.npy"
    np.save(path, np.zeros((2, 2)))
    with pytest.raises(FrameReadError, match="only direction='forward'"):
        read_frame(path, direction="backward")
    with pytest.raises(FrameReadError, match="no channel 'Z'; available: array"):
        read_frame(path, channel="Z")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(FrameReadError, match="not a readable PNG"):
        read_frame(broken)
