"""``stmtip info``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.cli import main
from tests.conftest import shared_data_missing

SXM = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers" / "sxm"


def test_info_on_a_written_npy_and_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.zeros((4, 3))
    data[3] = np.nan
    good = tmp_path / "f.npy"
    np.save(good, data)
    bad = tmp_path / "f.xyz"
    bad.write_text("x")
    assert main(["info", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert "4 lines × 3 pixels" in captured.out
    assert "unknown (no physical size in the file)" in captured.out
    assert "complete:   no (3/4 lines acquired)" in captured.out
    assert "f.xyz: unknown file extension '.xyz'" in captured.err


def test_info_on_a_real_sxm(capsys: pytest.CaptureFixture[str]) -> None:
    path = SXM / "spmimages_01581.sxm"
    if not path.is_file():
        shared_data_missing(
            f"real .sxm test data not available at {SXM} (the shared data folder is absent)"
        )
    assert main(["info", str(path), "--channel", "Current", "--direction", "backward"]) == 0
    out = capsys.readouterr().out
    assert "80 lines × 160 pixels" in out
    assert "4.6 nm × 2.3 nm" in out
    assert "shown:      Current backward [A]" in out
    assert "bias:       -2 mV" in out and "setpoint:   2 pA" in out
    assert "Frequency_Shift (forward/backward)" in out
