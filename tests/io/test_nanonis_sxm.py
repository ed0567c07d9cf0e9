"""Nanonis .sxm reader: real files recorded by others, plus files written here for edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcodes_stmtip.io import FrameReadError, read_frame
from qcodes_stmtip.io.nanonis_sxm import list_channels, read_header, read_sxm
from tests.conftest import shared_data_missing

SXM = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers" / "sxm"


def real(name: str) -> Path:
    path = SXM / name
    if not path.is_file():
        shared_data_missing(
            f"real .sxm test data not available at {SXM} (the shared data folder is absent)"
        )
    return path


def write_sxm(
    path: Path,
    blocks: dict[str, tuple[str, list[np.ndarray]]],
    *,
    pixels: int,
    lines: int,
    scan_dir: str = "up",
    size: tuple[float, float] = (10e-9, 5e-9),
    offset: tuple[float, float] = (1e-9, -2e-9),
    angle: float = 0.0,
    bias: float = 0.5,
    setpoint: str = "1.000E-10 A",
    z_on: int = 1,
) -> None:
    """Write a minimal .sxm per the documented layout; blocks: name -> (direction, stored arrays)."""
    info = ["\tChannel\tName\tUnit\tDirection\tCalibration\tOffset"]
    for i, (name, (direction, _)) in enumerate(blocks.items()):
        unit = "m" if name == "Z" else "A"
        info.append(f"\t{i}\t{name}\t{unit}\t{direction}\t1.000E+0\t0.000E+0")
    header = "\n".join(
        [
            ":NANONIS_VERSION:",
            "2",
            ":SCAN_PIXELS:",
            f"       {pixels}       {lines}",
            ":SCAN_RANGE:",
            f"           {size[0]:E}           {size[1]:E}",
            ":SCAN_OFFSET:",
            f"             {offset[0]:E}         {offset[1]:E}",
            ":SCAN_ANGLE:",
            f"            {angle:.3E}",
            ":SCAN_DIR:",
            scan_dir,
            ":BIAS:",
            f"            {bias:.3E}",
            ":Z-CONTROLLER:",
            "\tName\ton\tSetpoint\tP-gain\tI-gain\tT-const",
            f"\tlog Current\t{z_on}\t{setpoint}\t1.000E-12 m\t1.000E-8 m/s\t1.000E-4 s",
            ":DATA_INFO:",
            *info,
            "",
            ":SCANIT_END:",
            "",
            "",
        ]
    )
    body = b"".join(a.astype(">f4").tobytes() for _, arrays in blocks.values() for a in arrays)
    path.write_bytes(header.encode("latin-1") + b"\x1a\x04" + body)


# ---------------------------------------------------------------- real files


def test_si7x7_large_scale_down_scan() -> None:
    path = real("Si_7x7_012.sxm")
    frame = read_frame(path)
    assert (frame.lines, frame.pixels) == (256, 256)
    assert frame.width_m == pytest.approx(200e-9) and frame.height_m == pytest.approx(200e-9)
    assert frame.pixel_size_m == pytest.approx((200e-9 / 256, 200e-9 / 256))
    assert (frame.centre_x_m, frame.centre_y_m, frame.angle_deg) == (0.0, 0.0, 0.0)
    assert frame.scan_up is False
    assert frame.channel == "Z" and frame.unit == "m" and frame.direction == "forward"
    assert frame.bias_V == pytest.approx(-0.4)
    assert frame.setpoint_A == pytest.approx(250e-12)
    assert frame.is_complete
    assert frame.metadata["z_controller_on"] is True
    # A "down" frame stores the top line first: the file's first value lands in the top-left corner.
    assert frame.data[-1, 0] == pytest.approx(-4.444725e-08, rel=1e-6)
    # Topography of a 200 nm Si(111) frame: tens of nm of height range, not volts or counts.
    assert 1e-9 < np.ptp(frame.data) < 50e-9


def test_backward_trace_is_mirrored_to_match_forward() -> None:
    path = real("Si_7x7_012.sxm")
    fwd = read_frame(path, "Z", "forward").data
    bwd = read_frame(path, "Z", "backward").data
    # The file stores the retrace right to left; its first value is the top line's rightmost pixel.
    assert bwd[-1, -1] == pytest.approx(-4.1190248e-08, rel=1e-6)
    # Trace and retrace image the same surface: once mirrored they agree far better than unmirrored.
    fwd_rows = fwd - fwd.mean(axis=1, keepdims=True)
    bwd_rows = bwd - bwd.mean(axis=1, keepdims=True)
    aligned = np.corrcoef(fwd_rows.ravel(), bwd_rows.ravel())[0, 1]
    flipped = np.corrcoef(fwd_rows.ravel(), bwd_rows[:, ::-1].ravel())[0, 1]
    assert aligned > 0.8
    assert aligned > flipped + 0.3


def test_current_channel_in_amperes() -> None:
    frame = read_frame(real("Si_7x7_012.sxm"), channel="current")
    assert frame.channel == "Current" and frame.unit == "A"
    # A 250 pA setpoint: the feedback keeps the mean current near it.
    assert 50e-12 < abs(np.mean(frame.data)) < 1e-9


def test_up_scan_with_offset_and_more_channels() -> None:
    path = real("g80sxm_example_TOPO.sxm")
    frame = read_frame(path)
    assert frame.scan_up is True
    assert frame.width_m == pytest.approx(5e-9)
    assert frame.centre_x_m == pytest.approx(-3.163728e-9)
    assert frame.centre_y_m == pytest.approx(-1.225518e-7)
    assert frame.setpoint_A == pytest.approx(50e-12)
    # "up": the first stored value is the bottom-left pixel.
    assert frame.data[0, 0] == pytest.approx(-5.0514323e-08, rel=1e-6)
    assert [name for name, _ in list_channels(path)] == ["Z", "Bias", "Current"]


def test_rotated_constant_height_frame() -> None:
    frame = read_frame(real("pynxtools_Au_mica_195.sxm"))
    assert frame.angle_deg == pytest.approx(135.1)
    assert frame.metadata["z_controller_on"] is False
    # Constant height: Z is held fixed, the image is in the current channel.
    assert np.ptp(frame.data) == 0.0
    current = read_frame(real("pynxtools_Au_mica_195.sxm"), "Current")
    assert np.std(current.data) > 1e-10


@pytest.mark.parametrize(
    ("name", "lines", "pixels", "width", "height"),
    [
        ("spmimages_01581.sxm", 80, 160, 4.6e-9, 2.3e-9),
        ("spmimages_Image_445.sxm", 192, 96, 2e-9, 4e-9),
    ],
)
def test_non_square_frames(name: str, lines: int, pixels: int, width: float, height: float) -> None:
    frame = read_frame(real(name))
    assert (frame.lines, frame.pixels) == (lines, pixels)
    assert (frame.width_m, frame.height_m) == (pytest.approx(width), pytest.approx(height))
    dx, dy = frame.pixel_size_m
    assert dx == pytest.approx(dy)  # square pixels on a rectangular frame
    assert frame.metadata["z_controller_on"] is False


def test_many_channel_file_lists_its_channels() -> None:
    path = real("spmimages_01581.sxm")
    names = [name for name, _ in list_channels(path)]
    assert names[:2] == ["Z", "temperature_AFM"] and "Frequency_Shift" in names and len(names) == 9
    df = read_frame(path, "Frequency_Shift", "backward")
    assert df.unit == "Hz"
    assert read_header(path)["SCAN_DIR"].strip() == "up"


def test_missing_channel_lists_available(tmp_path: Path) -> None:
    with pytest.raises(FrameReadError, match=r"no channel 'Phase'; available: Z, Current") as err:
        read_frame(real("Si_7x7_051.sxm"), channel="Phase")
    assert "Si_7x7_051.sxm" in str(err.value)


def test_truncated_real_file(tmp_path: Path) -> None:
    raw = real("Si_7x7_051.sxm").read_bytes()
    cut = tmp_path / "cut.sxm"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FrameReadError, match="truncated"):
        read_frame(cut)
    header_only = tmp_path / "header_only.sxm"
    header_only.write_bytes(raw[: raw.find(b":SCANIT_END:") + 12])
    with pytest.raises(FrameReadError, match="truncated"):
        read_frame(header_only)


# ---------------------------------------------------------------- written files


def test_unfinished_scan_keeps_nan_rows(tmp_path: Path) -> None:
    lines, pixels = 6, 4
    stored = np.arange(lines * pixels, dtype=float).reshape(lines, pixels) * 1e-10
    stored[4:] = np.nan  # scan stopped after 4 lines
    path = tmp_path / "unfinished.sxm"
    write_sxm(path, {"Z": ("forward", [stored])}, pixels=pixels, lines=lines, scan_dir="down")
    frame = read_frame(path)
    assert not frame.is_complete
    # A "down" scan starts at the top: the missing lines are the bottom two rows.
    assert np.isnan(frame.data[:2]).all() and not np.isnan(frame.data[2:]).any()
    np.testing.assert_allclose(frame.data[2:], stored[:4][::-1], rtol=1e-6)
    cropped = frame.acquired()
    assert cropped.lines == 4 and cropped.is_complete
    assert cropped.height_m == pytest.approx(5e-9 * 4 / 6)
    # The kept rows are the top 4 of 6: the centre moves up by one row pitch.
    assert cropped.centre_y_m == pytest.approx(-2e-9 + 5e-9 / 6)


def test_backward_only_channel(tmp_path: Path) -> None:
    lines, pixels = 3, 5
    z_fwd = np.random.default_rng(1).normal(size=(lines, pixels)) * 1e-10
    z_bwd = z_fwd + 1e-12
    current_bwd = np.full((lines, pixels), 2e-10)
    current_bwd[:, 0] = 9e-10  # first pixel in time = rightmost in space for a retrace
    path = tmp_path / "bwd_only.sxm"
    write_sxm(
        path,
        {"Z": ("both", [z_fwd, z_bwd]), "Current": ("backward", [current_bwd])},
        pixels=pixels,
        lines=lines,
    )
    assert list_channels(path) == [("Z", ("forward", "backward")), ("Current", ("backward",))]
    current = read_frame(path, "Current", "backward")
    assert current.unit == "A"
    assert (current.data[:, -1] == pytest.approx(9e-10)) and (
        current.data[:, :-1] == pytest.approx(2e-10)
    )
    with pytest.raises(FrameReadError, match="no forward data; stored: backward"):
        read_frame(path, "Current", "forward")
    np.testing.assert_allclose(read_frame(path, "Z", "backward").data, z_bwd[:, ::-1], rtol=1e-6)


def test_written_file_header_values(tmp_path: Path) -> None:
    z = np.linspace(0, 1e-9, 12).reshape(3, 4)
    path = tmp_path / "meta.sxm"
    write_sxm(
        path,
        {"Z": ("forward", [z])},
        pixels=4,
        lines=3,
        angle=-30.0,
        bias=-1.25,
        setpoint="3.000E-11 A",
    )
    frame = read_sxm(path)
    assert (
        frame.angle_deg == -30.0
        and frame.bias_V == -1.25
        and frame.setpoint_A == pytest.approx(3e-11)
    )
    assert frame.scan_up is True
    np.testing.assert_allclose(
        frame.data, z, rtol=1e-6
    )  # "up": stored order is already bottom-first
    with pytest.raises(FrameReadError, match="no backward data"):
        read_sxm(path, direction="backward")
    with pytest.raises(ValueError, match="direction must be"):
        read_sxm(path, direction="sideways")


def test_not_an_sxm(tmp_path: Path) -> None:
    path = tmp_path / "fake.sxm"
    path.write_bytes(b"hello world\n" * 10)
    with pytest.raises(FrameReadError, match="not a Nanonis .sxm file"):
        read_frame(path)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.integers(1, 9),
    pixels=st.integers(1, 9),
    scan_dir=st.sampled_from(["up", "down"]),
    direction=st.sampled_from(["forward", "backward"]),
)
def test_orientation_round_trip(
    tmp_path: Path, lines: int, pixels: int, scan_dir: str, direction: str
) -> None:
    """A surface z(x, y) = x + 100·y, stored as the instrument acquires it, reads back in frame order."""
    surface = np.arange(pixels)[None, :] + 100.0 * np.arange(lines)[:, None]  # row 0 = bottom
    by_time = surface if scan_dir == "up" else surface[::-1]
    stored = {"forward": by_time, "backward": by_time[:, ::-1]}
    path = tmp_path / f"rt_{lines}_{pixels}_{scan_dir}.sxm"
    write_sxm(
        path,
        {"Z": ("both", [stored["forward"], stored["backward"]])},
        pixels=pixels,
        lines=lines,
        scan_dir=scan_dir,
    )
    frame = read_frame(path, "Z", direction)
    np.testing.assert_array_equal(frame.data, surface)
    assert frame.scan_up is (scan_dir == "up")
