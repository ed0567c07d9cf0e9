"""Hostile files (issue 15, class 5): every reader returns a frame or raises FrameReadError naming
the file — never hangs, never another exception, never inflates a bomb.

Seeds are files written here (always available) and the real files of ``../shared/data/readers``
(skipped with a reason when that folder is absent). The property-based fuzzing is sized for CI:
few examples, a deadline per example and a pytest-timeout per test.
"""

from __future__ import annotations

import math
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcodes_stmtip.io import FrameReadError, STMFrame, list_channels, read_frame
from qcodes_stmtip.io.createc import HEADER_BYTES, MAX_VALUES
from qcodes_stmtip.io.gwyddion import parse_gwy
from tests.conftest import shared_data_missing

from .test_createc import write_createc
from .test_gwyddion import write_gwy
from .test_nanonis_sxm import write_sxm

READERS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "readers"
FUZZ = settings(max_examples=100, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _real(relative: str) -> Path:
    path = READERS / relative
    if not path.is_file():
        shared_data_missing(f"real reader test file {relative} not available at {READERS} "
                    "(the shared data folder is absent)")
    return path


def _outcome(path: Path) -> STMFrame | FrameReadError:
    """Read ``path``: a frame, or the FrameReadError; any other exception fails the test."""
    try:
        frame = read_frame(path)
    except FrameReadError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
        return exc
    assert isinstance(frame, STMFrame)
    assert frame.data.ndim == 2 and not np.isinf(frame.data).any()
    return frame


def _seed_gwy(tmp_path: Path) -> bytes:
    path = tmp_path / "seed.gwy"
    rng = np.random.default_rng(0)
    write_gwy(path, {"Z (Forward)": rng.normal(size=(6, 8)), "Z (Backward)": rng.normal(size=(6, 8))})
    return path.read_bytes()


def _seed_sxm(tmp_path: Path) -> bytes:
    path = tmp_path / "seed.sxm"
    z = np.arange(32.0).reshape(4, 8) * 1e-10
    write_sxm(path, {"Z": ("both", [z, z + 1e-11])}, pixels=8, lines=4)
    return path.read_bytes()


def _seed_createc(tmp_path: Path) -> bytes:
    path = tmp_path / "seed.dat"
    write_createc(path, [np.arange(32.0).reshape(4, 8), np.ones((4, 8))])
    return path.read_bytes()


# ---- .gwy: truncation used to hang gwyfile's parser for ever --------------------------------------
@pytest.mark.timeout(60)
def test_every_truncation_of_a_gwy_file_raises_frame_read_error(tmp_path: Path) -> None:
    raw = _seed_gwy(tmp_path)
    path = tmp_path / "cut.gwy"
    started = time.monotonic()
    for end in range(len(raw)):
        path.write_bytes(raw[:end])
        assert isinstance(_outcome(path), FrameReadError), end
    assert time.monotonic() - started < 30


@pytest.mark.timeout(60)
def test_truncated_real_gwy_file_never_hangs(tmp_path: Path) -> None:
    raw = _real("gwy/test.gwy").read_bytes()
    path = tmp_path / "cut.gwy"
    for end in np.linspace(0, len(raw) - 1, 80).astype(int):  # the red team's 80 offsets
        path.write_bytes(raw[:end])
        assert isinstance(_outcome(path), FrameReadError), end
        with pytest.raises(FrameReadError, match="cut.gwy"):
            list_channels(path)


def test_gwy_parser_matches_gwyfile_on_a_written_file(tmp_path: Path) -> None:
    from gwyfile.objects import GwyDataField, GwySIUnit
    from gwyfile.objects import GwyObject as GwyfileObject

    raw = _seed_gwy(tmp_path)
    ours = parse_gwy(raw, "seed.gwy")
    theirs = GwyfileObject.frombuffer(raw[4:])
    assert list(ours.components) == list(theirs)
    field, ref = ours.get("/0/data"), theirs["/0/data"]
    assert isinstance(ref, GwyDataField) and isinstance(ref["si_unit_xy"], GwySIUnit)
    np.testing.assert_array_equal(field.get("data"), ref["data"])
    assert field.get("si_unit_xy").get("unitstr") == "m"


@pytest.mark.parametrize("mutate, problem", [
    (lambda c, f: f.pop("xres"), "xres"),
    (lambda c, f: f.__setitem__("xreal", float("nan")), "xreal"),
    (lambda c, f: f.__setitem__("yreal", -1.0), "yreal"),
    (lambda c, f: f.__setitem__("data", np.ones(3)), "data values"),
    (lambda c, f: f.__setitem__("si_unit_xy", "m"), None),  # a string, not a GwySIUnit
    (lambda c, f: c.__setitem__("/0/data/title", 7), "no data field"),
])
def test_malformed_gwy_fields_raise_frame_read_error(tmp_path: Path, mutate, problem) -> None:
    """These gave ValueError/AttributeError through gwyfile."""
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    container = GwyContainer()
    fld = GwyDataField(np.ones((4, 4)), xreal=4e-9, yreal=4e-9,
                       si_unit_xy=GwySIUnit(unitstr="m"), si_unit_z=GwySIUnit(unitstr="m"))
    container["/0/data"] = fld
    container["/0/data/title"] = "Z"
    mutate(container, fld)
    path = tmp_path / "odd.gwy"
    container.tofile(str(path))
    outcome = _outcome(path)
    if problem is None:
        assert isinstance(outcome, STMFrame) and outcome.width_m is None  # unit unknown
    else:
        assert isinstance(outcome, FrameReadError) and problem in str(outcome)


@pytest.mark.timeout(120)
@FUZZ
@given(data=st.data())
def test_fuzzed_gwy_files_give_a_frame_or_frame_read_error(tmp_path: Path, data) -> None:
    raw = bytearray(_seed_gwy(tmp_path))
    _mutate(raw, data)
    path = tmp_path / "fuzz.gwy"
    path.write_bytes(bytes(raw))
    _outcome(path)


# ---- Createc .dat: a zlib bomb inflated to gigabytes ----------------------------------------------
def _bomb_body(inflated_bytes: int) -> bytes:
    """A zlib stream of ``inflated_bytes`` zeros (about 1000:1), built a chunk at a time."""
    deflater = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [deflater.compress(chunk) for _ in range(inflated_bytes >> 20)]
    return b"".join(parts) + deflater.flush()


@pytest.mark.timeout(60)
def test_createc_zlib_bomb_inflates_only_what_the_header_declares(tmp_path: Path) -> None:
    path = tmp_path / "bomb.dat"
    write_createc(path, [np.zeros((64, 64))], select=1)
    header = path.read_bytes()[:HEADER_BYTES]
    body = _bomb_body(512 << 20)  # 512 MiB of zeros in about half a megabyte
    assert len(body) < 1 << 20
    path.write_bytes(header + body)
    tracemalloc.start()
    try:
        frame = read_frame(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame.data.shape == (64, 64)
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB while reading a 64×64 frame"


def test_createc_header_declaring_too_many_values_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.dat"
    side = math.isqrt(MAX_VALUES) + 1
    write_createc(path, [np.zeros((2, 2))], select=1,
                  extra={"Num.X / Num.X": str(side), "Num.Y / Num.Y": str(side)})
    with pytest.raises(FrameReadError, match=r"huge\.dat: header declares .* more than"):
        read_frame(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0.5"])
def test_createc_bad_image_size_names_the_file(tmp_path: Path, value: str) -> None:
    path = tmp_path / "size.dat"
    write_createc(path, [np.zeros((2, 2))], select=1, extra={"Num.X / Num.X": value})
    with pytest.raises(FrameReadError, match=r"size\.dat: header field 'Num\.X'"):
        read_frame(path)


@pytest.mark.timeout(120)
@FUZZ
@given(data=st.data())
def test_fuzzed_createc_files_give_a_frame_or_frame_read_error(tmp_path: Path, data) -> None:
    raw = bytearray(_seed_createc(tmp_path))
    _mutate(raw, data, hot=(0, 600))  # the header, then anywhere
    path = tmp_path / "fuzz.dat"
    path.write_bytes(bytes(raw))
    _outcome(path)  # without its magic line the file may read as a SPIEPy array: a valid frame too


# ---- .sxm: NaN, inf or -1 in the scan geometry or bias --------------------------------------------
@pytest.mark.parametrize("key, text", [
    ("SCAN_RANGE", "nan 5E-9"), ("SCAN_RANGE", "1E-8 inf"), ("SCAN_RANGE", "-1 5E-9"),
    ("SCAN_RANGE", "0 5E-9"), ("SCAN_OFFSET", "nan 0"), ("SCAN_OFFSET", "0 -inf"),
    ("SCAN_ANGLE", "nan"), ("BIAS", "nan"), ("BIAS", "inf"),
])
def test_sxm_non_finite_geometry_or_bias_names_the_file_and_field(
    tmp_path: Path, key: str, text: str
) -> None:
    raw = _seed_sxm(tmp_path)
    head, sep, rest = raw.partition(f":{key}:\n".encode())
    assert sep, key
    _, newline, rest = rest.partition(b"\n")
    path = tmp_path / "odd.sxm"
    path.write_bytes(head + sep + text.encode() + newline + rest)
    with pytest.raises(FrameReadError, match=rf"odd\.sxm: header field '{key}'"):
        read_frame(path)


def test_sxm_negative_bias_is_a_bias(tmp_path: Path) -> None:
    raw = _seed_sxm(tmp_path)
    head, sep, rest = raw.partition(b":BIAS:\n")
    _, newline, rest = rest.partition(b"\n")
    path = tmp_path / "neg.sxm"
    path.write_bytes(head + sep + b"-1" + newline + rest)
    assert read_frame(path).bias_V == -1.0


@pytest.mark.timeout(120)
@FUZZ
@given(data=st.data())
def test_fuzzed_sxm_files_give_a_frame_or_frame_read_error(tmp_path: Path, data) -> None:
    raw = bytearray(_seed_sxm(tmp_path))
    _mutate(raw, data, hot=(0, raw.find(b":SCANIT_END:")))
    path = tmp_path / "fuzz.sxm"
    path.write_bytes(bytes(raw))
    _outcome(path)


# ---- the real files, mutated ---------------------------------------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("relative", [
    "sxm/Si_7x7_012.sxm", "gwy/test.gwy", "sm4/topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4",
    "spiepy/image_with_defects.dat",
])
def test_mutated_real_files_give_a_frame_or_frame_read_error(tmp_path: Path, relative: str) -> None:
    raw = _real(relative).read_bytes()
    path = tmp_path / Path(relative).name

    @settings(max_examples=10, deadline=10000, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data) -> None:
        mutated = bytearray(raw)
        _mutate(mutated, data, hot=(0, 4096))
        path.write_bytes(bytes(mutated))
        _outcome(path)

    check()


def test_a_truncated_gwy_frame_fails_fast_in_the_labelling_loader(tmp_path: Path) -> None:
    """A vote on such a frame used to hang ``stmtip label`` holding the session lock."""
    from qcodes_stmtip.labelling.sources import folder_frames

    raw = _seed_gwy(tmp_path)
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "cut.gwy").write_bytes(raw[: len(raw) // 2])
    (ref,) = folder_frames(folder)
    started = time.monotonic()
    with pytest.raises(FrameReadError, match="cut.gwy"):
        ref.load()
    assert time.monotonic() - started < 5


def _mutate(raw: bytearray, data, hot: tuple[int, int] | None = None) -> None:
    """Truncate, overwrite, insert or delete bytes of ``raw`` in place (drawn by hypothesis).

    ``hot``: a byte range (the header) that half of the edits land in.
    """
    n_edits = data.draw(st.integers(1, 4), label="edits")
    for _ in range(n_edits):
        if not raw:
            return
        low, high = hot if hot is not None and data.draw(st.booleans(), label="hot") \
            else (0, len(raw))
        high = max(low + 1, min(high, len(raw)))
        at = data.draw(st.integers(low, high - 1), label="at")
        kind = data.draw(st.sampled_from(["truncate", "overwrite", "insert", "delete"]), label="kind")
        if kind == "truncate":
            del raw[at:]
        elif kind == "overwrite":
            chunk = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
            raw[at:at + len(chunk)] = chunk
        elif kind == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
        else:
            del raw[at:at + data.draw(st.integers(1, 16), label="length")]
