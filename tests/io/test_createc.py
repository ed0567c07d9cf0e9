"""Createc .dat reader, on files written here per the layout public readers agree on.

No real Createc file with a licence that allows redistribution exists (see the shared data
README), so these tests write files themselves: a 16384-byte text header, then a
zlib-compressed body of 4 unused bytes and little-endian float32 images in DAC units.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.io import FrameReadError, list_channels, read_frame
from qcodes_stmtip.io.createc import HEADER_BYTES, read_createc


def write_createc(
    path: Path,
    images: list[np.ndarray],
    *,
    extra: dict[str, str] | None = None,
    magic: str = "[Paramco32]",
    compress: bool = True,
    select: int = 3,
) -> None:
    ny, nx = images[0].shape
    fields = {
        "Titel / Titel": "test",
        "Num.X / Num.X": str(nx),
        "Num.Y / Num.Y": str(ny),
        "Length x[A]": "200.0",
        "Length y[A]": "100.0",
        "Delta X / Delta X [Dac]": "16",
        "Dacto[A]xy": f"{200.0 / nx / 16:.6f}",
        "Dacto[A]z": "0.01",
        "BiasVolt.[mV]": "-500",
        "Current[A]": "5.0E-11",
        "Rotation / Rotation": "30",
        "Channels / Channels": str(len(images)),
        "Channelselectval / Channelselectval": str(select),
    }
    fields.update(extra or {})
    text = magic + "\r\n" + "".join(f"{k}={v}\r\n" for k, v in fields.items()) + "=\r\nDATA\r\n"
    header = text.encode("cp1252")
    assert len(header) < HEADER_BYTES
    header += b" " * (HEADER_BYTES - len(header))
    body = np.zeros(1, "<f4").tobytes() + b"".join(i.astype("<f4").tobytes() for i in images)
    path.write_bytes(header + (zlib.compress(body) if compress else body))


def test_topography_in_metres_with_header_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    topo = rng.integers(-1000, 1000, size=(4, 8)).astype(float)  # stored row 0 = top line
    current = np.full((4, 8), 123.0)
    path = tmp_path / "A201026.120000.dat"
    write_createc(path, [topo, current])  # select=3: topography + current, forward only
    frame = read_frame(path)
    assert frame.channel == "Topography" and frame.unit == "m"
    assert (frame.lines, frame.pixels) == (4, 8)
    assert (frame.width_m, frame.height_m) == (pytest.approx(200e-10), pytest.approx(100e-10))
    assert frame.bias_V == pytest.approx(-0.5) and frame.setpoint_A == pytest.approx(5e-11)
    assert frame.angle_deg == 30.0 and frame.scan_up is None and frame.centre_x_m is None
    # Dacto[A]xy is consistent with Length x / Num.X in ångström, so Dacto[A]z is Å per DAC count.
    assert frame.metadata["dacto_unit"].startswith("angstrom (from lateral")
    np.testing.assert_allclose(frame.data, topo[::-1] * 0.01e-10, rtol=1e-6)
    cur = read_frame(path, "current")
    assert cur.unit == "DAC" and np.all(cur.data == 123.0)
    assert list_channels(path) == [("Topography", ("forward",)), ("Current", ("forward",))]


def test_nm_calibration_is_detected(tmp_path: Path) -> None:
    topo = np.ones((2, 2))
    path = tmp_path / "nm.dat"
    # Delta X · Dacto[A]xy is 10× smaller than Length x / Num.X: the Dacto fields are nm per DAC.
    write_createc(path, [topo], select=1, extra={"Dacto[A]xy": f"{200.0 / 2 / 16 / 10:.6f}"})
    frame = read_frame(path)
    assert frame.metadata["dacto_unit"].startswith("nm")
    assert frame.data[0, 0] == pytest.approx(0.01e-9)


def test_forward_and_backward_halves(tmp_path: Path) -> None:
    fwd, bwd = np.full((3, 3), 10.0), np.full((3, 3), 20.0)
    cur_f, cur_b = np.full((3, 3), 1.0), np.full((3, 3), 2.0)
    path = tmp_path / "fb.dat"
    write_createc(path, [fwd, cur_f, bwd, cur_b], select=3)
    assert read_frame(path, direction="backward").data[0, 0] == pytest.approx(20.0 * 0.01e-10)
    assert read_frame(path, "Current", "backward").data[0, 0] == 2.0
    assert list_channels(path) == [
        ("Topography", ("forward", "backward")),
        ("Current", ("forward", "backward")),
    ]


def test_unfinished_scan_zero_rows_become_nan(tmp_path: Path) -> None:
    topo = np.arange(1.0, 25.0).reshape(6, 4)
    topo[4:] = 0.0  # scan stopped after 4 of 6 lines; the rest of the buffer is zeros
    path = tmp_path / "unfinished.dat"
    write_createc(path, [topo], select=1)
    frame = read_frame(path)
    assert not frame.is_complete
    assert np.isnan(frame.data[:2]).all() and not np.isnan(frame.data[2:]).any()
    assert frame.acquired().lines == 4


def test_uncompressed_float32_variant(tmp_path: Path) -> None:
    topo = np.arange(6.0).reshape(2, 3) + 1
    path = tmp_path / "raw.dat"
    write_createc(path, [topo], select=1, magic="[Paramet32]", compress=False)
    np.testing.assert_allclose(read_createc(path).data, topo[::-1] * 0.01e-10, rtol=1e-6)


def test_errors(tmp_path: Path) -> None:
    topo = np.ones((4, 4))
    path = tmp_path / "trunc.dat"
    write_createc(path, [topo], select=1)
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(FrameReadError, match="compressed body is corrupt or truncated"):
        read_frame(path)
    header_only = tmp_path / "header_only.dat"
    header_only.write_bytes(raw[:HEADER_BYTES])
    with pytest.raises(FrameReadError, match="truncated file"):
        read_frame(header_only)
    few = tmp_path / "few.dat"
    write_createc(few, [topo], select=1, extra={"Num.Y / Num.Y": "8"})
    with pytest.raises(FrameReadError, match="truncated data: 1 images of 8×4 need 32 values"):
        read_frame(few)
    ok = tmp_path / "ok.dat"
    write_createc(ok, [topo], select=1)
    with pytest.raises(FrameReadError, match="no channel 'ADC1'; available: Topography"):
        read_frame(ok, "ADC1")
    with pytest.raises(FrameReadError, match="has no backward image"):
        read_frame(ok, direction="backward")
    missing = tmp_path / "nodacto.dat"
    write_createc(missing, [topo], select=1, extra={"Dacto[A]z": "n/a"})
    with pytest.raises(FrameReadError, match="Dacto\\[A\\]z"):
        read_frame(missing)
