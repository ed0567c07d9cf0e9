"""read_frame dispatch and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.io import FrameReadError, is_supported, list_channels, read_frame
from tests.conftest import shared_data_missing

READERS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers"


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "scan.tiff"
    path.write_bytes(b"II*\0")
    with pytest.raises(
        FrameReadError, match=r"scan.tiff: unknown file extension '.tiff'; supported: .sxm, .gwy"
    ):
        read_frame(path)
    assert not is_supported(path) and is_supported("a--1_1.Z_mtrx") and is_supported("X.SXM")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FrameReadError, match="nope.sxm: no such file"):
        read_frame(tmp_path / "nope.sxm")
    folder = tmp_path / "dir.sxm"
    folder.mkdir()
    with pytest.raises(FrameReadError, match="not a regular file"):
        read_frame(folder)


def test_parameter_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "session_0001.mtrx"
    path.write_bytes(b"ONTMATRX0101")
    with pytest.raises(FrameReadError, match="MATRIX parameter file; read the image file"):
        read_frame(path)


def test_bad_direction_is_value_error(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="direction must be 'forward' or 'backward', got 'up'"):
        read_frame(path, direction="up")


def test_unrecognised_dat(tmp_path: Path) -> None:
    path = tmp_path / "x.dat"
    path.write_text("time,value\n0,1\n")
    with pytest.raises(FrameReadError, match="unrecognised .dat file"):
        read_frame(path)


def test_every_real_file_reads_or_is_refused_clearly() -> None:
    if not READERS.is_dir():
        shared_data_missing(
            f"real reader test data not available at {READERS} (the shared data folder is absent)"
        )
    files = sorted(p for p in READERS.rglob("*") if p.is_file() and p.name != "README.md")
    assert len(files) >= 10
    read = 0
    for path in files:
        frame = read_frame(path)
        assert frame.source == str(path) and frame.lines >= 64 and frame.pixels >= 64
        assert frame.channel in [name for name, _ in list_channels(path)]
        read += 1
    assert read == 13
