"""RHK .sm4 reader (via spym) on the real spym test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.io import FrameReadError, list_channels, read_frame
from tests.conftest import shared_data_missing

SM4 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers" / "sm4"
HOPG = "hopg_300k_2020_08_11_16_04_06_999.sm4"
GRAPHITE = "topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4"


def real(name: str) -> Path:
    path = SM4 / name
    if not path.is_file():
        shared_data_missing(
            f"real .sm4 test data not available at {SM4} (the shared data folder is absent)"
        )
    return path


def _detrended(data: np.ndarray) -> np.ndarray:
    x = np.arange(data.shape[1])
    coeffs = np.polynomial.polynomial.polyfit(x, data.T, 1)
    return data - np.polynomial.polynomial.polyval(x, coeffs)


def test_hopg_room_temperature() -> None:
    path = real(HOPG)
    frame = read_frame(path)
    assert (
        frame.channel == "Topography"
        and frame.unit == "m"
        and frame.metadata["page"] == "Topography_Forward"
    )
    assert (frame.lines, frame.pixels) == (256, 256)
    assert frame.width_m == pytest.approx(100e-9, rel=1e-6) and frame.height_m == pytest.approx(
        100e-9, rel=1e-6
    )
    assert frame.bias_V == pytest.approx(0.4, rel=1e-6) and frame.setpoint_A == pytest.approx(
        500e-12
    )
    assert frame.is_complete and frame.scan_up is None
    assert frame.data[0, 0] == pytest.approx(-3.7570519928724494e-07, rel=1e-6)
    # Spectroscopy pages (same labels as image channels) are not frames and are not listed twice.
    assert list_channels(path) == [
        ("LIA_Current", ("forward", "backward")),
        ("Current", ("forward", "backward")),
        ("Topography", ("forward", "backward")),
    ]
    current = read_frame(path, "current", "backward")
    # Constant-current feedback at 500 pA: the mean current sits on the setpoint.
    assert current.unit == "A" and np.mean(current.data) == pytest.approx(500e-12, rel=0.01)


def test_graphite_with_step_offset_frame() -> None:
    frame = read_frame(real(GRAPHITE))
    assert (frame.lines, frame.pixels) == (128, 128)
    assert frame.width_m == pytest.approx(75e-9, rel=1e-6)
    assert frame.centre_x_m == pytest.approx(-4.8363493e-08, rel=1e-6)
    assert frame.centre_y_m == pytest.approx(4.682474e-08, rel=1e-6)
    assert frame.bias_V == pytest.approx(0.5, rel=1e-5) and frame.setpoint_A == pytest.approx(
        100e-12, rel=1e-6
    )
    # A frame with a graphite step: nanometres of relief, more than one 0.335 nm layer.
    assert 0.335e-9 < np.ptp(frame.data) < 50e-9


@pytest.mark.parametrize("name", [HOPG, GRAPHITE])
def test_backward_page_is_aligned_with_forward(name: str) -> None:
    fwd = _detrended(read_frame(real(name), "Topography", "forward").data)
    bwd = _detrended(read_frame(real(name), "Topography", "backward").data)
    aligned = np.corrcoef(fwd.ravel(), bwd.ravel())[0, 1]
    mirrored = np.corrcoef(fwd.ravel(), bwd[:, ::-1].ravel())[0, 1]
    assert aligned > 0.4 and aligned > mirrored + 0.15


def test_missing_channel_and_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(
        FrameReadError, match="no channel 'Z'; available: LIA_Current, Current, Topography"
    ):
        read_frame(real(GRAPHITE), channel="Z")
    bad = tmp_path / "bad.sm4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(FrameReadError, match="not a readable RHK .sm4 file"):
        read_frame(bad)
