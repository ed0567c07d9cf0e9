"""MATRIX reader (via access2thematrix): what can be tested without a real file.

No real Scienta Omicron MATRIX file is publicly available (see the shared data README) and
the format has no public specification to write a valid file from, so the reading of real
image data is not tested here; the file-pairing rules and the error paths are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qcodes_stmtip.io import FrameReadError, read_frame
from qcodes_stmtip.io.matrix import channel_of, parameter_file


def test_parameter_file_and_channel_from_name(tmp_path: Path) -> None:
    image = tmp_path / "default_2019Jan01-120000_STM-STM_Spectroscopy--5_1.Z_mtrx"
    assert (
        parameter_file(image)
        == tmp_path / "default_2019Jan01-120000_STM-STM_Spectroscopy_0001.mtrx"
    )
    assert channel_of(image) == "Z"
    assert channel_of(tmp_path / "x--1_2.I_mtrx") == "I"


def test_missing_parameter_file(tmp_path: Path) -> None:
    image = tmp_path / "session--3_1.Z_mtrx"
    image.write_bytes(b"ONTMATRX0101" + b"\0" * 64)
    with pytest.raises(
        FrameReadError, match="missing MATRIX parameter file 'session_0001.mtrx'"
    ) as err:
        read_frame(image)
    assert "session--3_1.Z_mtrx" in str(err.value)


def test_unreadable_pair(tmp_path: Path) -> None:
    image = tmp_path / "session--3_1.Z_mtrx"
    image.write_bytes(b"NOT A MATRIX FILE")
    (tmp_path / "session_0001.mtrx").write_bytes(b"NOT A MATRIX FILE EITHER")
    with pytest.raises(
        FrameReadError, match="access2thematrix could not read it: Error in opening"
    ):
        read_frame(image)


def test_name_without_run_separator(tmp_path: Path) -> None:
    image = tmp_path / "plain.Z_mtrx"
    image.write_bytes(b"ONTMATRX0101")
    with pytest.raises(FrameReadError, match="'<prefix>--<run>_<cycle>.<channel>_mtrx'"):
        read_frame(image)


def test_wrong_channel_for_a_one_channel_file(tmp_path: Path) -> None:
    image = tmp_path / "s--1_1.Z_mtrx"
    image.write_bytes(b"ONTMATRX0101")
    with pytest.raises(
        FrameReadError, match="no channel 'I'; a MATRIX file holds one channel, here: Z"
    ):
        read_frame(image, channel="I")

