"""SPIEPy raw demo arrays: real files from the SPIEPy package."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.io import FrameReadError, read_frame
from tests.conftest import shared_data_missing

SPIEPY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers" / "spiepy"


@pytest.mark.parametrize(
    ("name", "side"),
    [
        ("image_with_defects.dat", 256),
        ("image_with_step_edge.dat", 512),
        ("image_with_step_edge_and_atoms.dat", 512),
    ],
)
def test_real_spiepy_files(name: str, side: int) -> None:
    path = SPIEPY / name
    if not path.is_file():
        shared_data_missing(
            f"SPIEPy demo data not available at {SPIEPY} (the shared data folder is absent)"
        )
    frame = read_frame(path)
    assert (frame.lines, frame.pixels) == (side, side)
    assert frame.width_m is None and frame.metadata["format"] == "spiepy-raw"
    raw = path.read_bytes()
    first = struct.unpack("<d", raw[8:16])[0]
    assert frame.data[-1, 0] == first  # image row 0 (top) is now the last row
    # Real Si(111) topography in metres: sub-nanometre to nanometre corrugation.
    assert 1e-11 < np.nanstd(frame.data) < 1e-8


def test_size_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "odd.dat"
    path.write_bytes(struct.pack("<II", 4, 4) + b"\0" * (8 * 15))
    with pytest.raises(FrameReadError, match="unrecognised .dat file"):
        read_frame(path)
    from qcodes_stmtip.io.spiepy_raw import read_spiepy

    with pytest.raises(FrameReadError, match="does not match the 4×4 float64 array"):
        read_spiepy(path)
