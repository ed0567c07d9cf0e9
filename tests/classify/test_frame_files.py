"""Reading frame files for classification: PNG orientation, NPY, refusal of pickles."""

import numpy as np
import pytest
from PIL import Image

from qcodes_stmtip.classify.frame_files import read_frame_array
from tests.conftest import shared_data_missing


def test_png_row_zero_is_bottom_line(tmp_path):
    img = np.zeros((10, 6), np.uint8)
    img[0, :] = 255  # top line of the picture
    Image.fromarray(img).save(tmp_path / "f.png")
    arr = read_frame_array(tmp_path / "f.png")
    assert arr.shape == (10, 6) and arr.dtype == np.float64
    assert np.all(arr[-1] == 255) and np.all(arr[0] == 0)


def test_npy_and_errors(tmp_path):
    data = np.arange(12.0).reshape(3, 4) * 1e-10
    np.save(tmp_path / "f.npy", data)
    np.testing.assert_array_equal(read_frame_array(tmp_path / "f.npy"), data)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        read_frame_array(tmp_path / "obj.npy")
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(ValueError, match="2-D"):
        read_frame_array(tmp_path / "v.npy")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_frame_array(tmp_path / "missing.png")
    (tmp_path / "x.unknownext").write_bytes(b"abc")
    with pytest.raises(ValueError):
        read_frame_array(tmp_path / "x.unknownext")


def test_other_formats_go_through_qcodes_stmtip_io():
    from pathlib import Path

    sxm = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers" / "sxm" / "Si_7x7_012.sxm"
    if not sxm.is_file():
        shared_data_missing("real file ../shared/data/readers/sxm/Si_7x7_012.sxm not present")
    from qcodes_stmtip.classify.preprocess import preprocess_frame
    from qcodes_stmtip.io import read_frame

    arr = read_frame_array(sxm)
    np.testing.assert_array_equal(arr, read_frame(sxm).data)
    out = preprocess_frame(arr)
    assert out.shape == (128, 128) and out.min() == -1.0 and out.max() == 1.0
