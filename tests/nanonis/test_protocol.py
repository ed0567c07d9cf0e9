"""The Nanonis codec: round trips, byte-exact layouts from the reference, and fuzzing."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcodes_stmtip.nanonis import protocol as p
from qcodes_stmtip.nanonis.protocol import T

# ---------------------------------------------------------------- strategies
_f32 = st.floats(width=32, allow_nan=False)
_text = st.text(max_size=40)


def _array_2d() -> st.SearchStrategy[np.ndarray]:
    return st.tuples(st.integers(0, 6), st.integers(0, 6)).flatmap(
        lambda rc: st.lists(_f32, min_size=rc[0] * rc[1], max_size=rc[0] * rc[1]).map(
            lambda vals, rc=rc: np.array(vals, dtype=np.float32).reshape(rc)
        )
    )


STRATEGIES: dict[T, st.SearchStrategy] = {
    T.U16: st.integers(0, 0xFFFF),
    T.U32: st.integers(0, 0xFFFFFFFF),
    T.I32: st.integers(-(1 << 31), (1 << 31) - 1),
    T.F32: _f32,
    T.F64: st.floats(allow_nan=False),
    T.STR: _text,
    T.STR_U32: _text,
    T.I32_ARRAY: st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=10).map(tuple),
    T.STR_ARRAY: st.lists(_text, max_size=6).map(tuple),
    T.F32_2D: _array_2d(),
    T.F32_ARRAY: st.lists(_f32, max_size=10).map(tuple),
    T.STR_2D: st.tuples(st.integers(0, 3), st.integers(0, 3)).flatmap(
        lambda rc: st.lists(st.lists(_text, min_size=rc[1], max_size=rc[1]).map(tuple),
                            min_size=rc[0], max_size=rc[0]).map(tuple)),
}


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and np.array_equal(a, b)
    return a == b


def test_every_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(T)


@pytest.mark.parametrize("t", list(T), ids=lambda t: t.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_value_round_trip(t: T, data: st.DataObject) -> None:
    value = data.draw(STRATEGIES[t])
    prefix = data.draw(st.binary(max_size=5))
    raw = prefix + p.encode_value(t, value)
    decoded, end = p.decode_value(t, raw, len(prefix))
    assert end == len(raw)
    assert _same(decoded, value)


@pytest.mark.parametrize("name", sorted(p.COMMANDS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_command_round_trip(name: str, data: st.DataObject) -> None:
    spec = p.COMMANDS[name]
    args = [data.draw(STRATEGIES[f.type]) for f in spec.args]
    returns = [data.draw(STRATEGIES[f.type]) for f in spec.returns]

    request = p.encode_request(name, *args)
    header = p.decode_request_header(request[:40])
    assert header == p.RequestHeader(name, len(request) - 40, True)
    assert all(_same(a, b) for a, b in zip(p.decode_request_body(spec, request[40:]), args, strict=True))

    response = p.encode_response(name, returns)
    rheader = p.decode_response_header(response[:40])
    assert rheader == p.ResponseHeader(name, len(response) - 40)
    assert response[36:40] == b"\0\0\0\0"
    decoded = p.decode_response_body(spec, response[40:])
    assert all(_same(a, b) for a, b in zip(decoded, returns, strict=True))
    # The body ends with an empty error section.
    assert response[-8:] == b"\0" * 8


@pytest.mark.parametrize("name", sorted(p.COMMANDS))
def test_error_reply_raises_nanonis_error(name: str) -> None:
    spec = p.COMMANDS[name]
    response = p.encode_response(name, error="Scan not running")
    with pytest.raises(p.NanonisError) as info:
        p.decode_response_body(spec, response[40:])
    assert info.value.command == name
    assert info.value.message == "Scan not running"


def test_error_section_alone_is_accepted_for_commands_with_returns() -> None:
    body = p.encode_error_section("Invalid channel")
    with pytest.raises(p.NanonisError, match="Invalid channel"):
        p.decode_response_body(p.COMMANDS["Scan.FrameDataGrab"], body)


def test_error_section_bytes() -> None:
    assert p.encode_error_section("") == b"\0\0\0\0\0\0\0\0"
    assert p.encode_error_section("bad") == b"\0\0\0\x01\0\0\0\x03bad"


# ---------------------------------------------------------------- byte-exact reference layouts
def test_request_header_layout() -> None:
    raw = p.encode_request("Bias.Set", 1.5)
    assert raw[:32] == b"Bias.Set" + b"\0" * 24
    assert raw[32:36] == struct.pack(">i", 4)
    assert raw[36:38] == b"\0\x01"
    assert raw[38:40] == b"\0\0"
    assert raw[40:] == struct.pack(">f", 1.5)


def test_folme_xyposget_reply_is_24_bytes() -> None:
    raw = p.encode_response("FolMe.XYPosGet", (1.25e-9, -3.5e-8))
    assert len(raw) == 40 + 24
    assert raw[32:36] == struct.pack(">i", 24)
    assert raw[40:] == struct.pack(">ddIi", 1.25e-9, -3.5e-8, 0, 0)


def test_frame_data_grab_offsets() -> None:
    name = "Z (m)"
    data = np.arange(12, dtype=np.float32).reshape(3, 4) * 1e-10
    data[2] = np.nan
    body = p.encode_response("Scan.FrameDataGrab", (name, data, 1))[40:]
    n, rows, cols = len(name), 3, 4
    assert struct.unpack_from(">i", body, 0)[0] == n
    assert body[4:4 + n] == name.encode()
    assert struct.unpack_from(">ii", body, 4 + n) == (rows, cols)
    grid = np.frombuffer(body, ">f4", rows * cols, 12 + n).reshape(rows, cols)
    np.testing.assert_array_equal(grid, data)
    assert struct.unpack_from(">I", body, 12 + n + 4 * rows * cols)[0] == 1
    assert body[16 + n + 4 * rows * cols:] == b"\0" * 8
    _, decoded, up = p.decode_response_body(p.COMMANDS["Scan.FrameDataGrab"], body)
    assert decoded.dtype == np.float32 and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, data)  # NaN rows survive
    assert up == 1


def test_buffer_set_layout() -> None:
    raw = p.encode_request("Scan.BufferSet", [0, 14], 256, 128)
    assert raw[40:] == struct.pack(">iiiii", 2, 0, 14, 256, 128)


def test_wait_end_of_scan_reply_layout() -> None:
    body = p.encode_response("Scan.WaitEndOfScan", (0, "C:/data/img001.sxm"))[40:]
    assert body[:8] == struct.pack(">II", 0, 18)
    assert body[8:26] == b"C:/data/img001.sxm"


def test_string_array_layout_and_untrusted_total() -> None:
    raw = p.encode_value(T.STR_ARRAY, ("Current (A)", "Z (m)"))
    assert raw == struct.pack(">ii", 4 + 11 + 4 + 5, 2) + struct.pack(">i", 11) + b"Current (A)" + \
        struct.pack(">i", 5) + b"Z (m)"
    # nanonis-spm sends 4 × count as the total size: the decoder must not care.
    lying = struct.pack(">ii", 8, 2) + raw[8:]
    assert p.decode_value(T.STR_ARRAY, lying)[0] == ("Current (A)", "Z (m)")


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("t", "value", "match"),
    [
        (T.U16, 70000, "outside the uint16 range"),
        (T.U32, -1, "outside the uint32 range"),
        (T.I32, 1.5, "expected an integer"),
        (T.F32, 1e39, "overflows float32"),
        (T.F32, "x", "expected a number"),
        (T.STR, 3, "expected a str"),
        (T.I32_ARRAY, "abc", "sequence of int32"),
        (T.STR_ARRAY, [1], "expected a str"),
        (T.F32_2D, np.zeros(3), "2-D array"),
    ],
)
def test_encode_rejects_bad_values(t: T, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        p.encode_value(t, value, "arg")


def test_encode_request_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"Scan.Action argument 'action'"):
        p.encode_request("Scan.Action", -1, 1)
    with pytest.raises(ValueError, match="expected 2 values"):
        p.encode_request("Scan.Action", 0)
    with pytest.raises(ValueError, match="unknown Nanonis command"):
        p.encode_request("Scan.Nope")


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"\xff" * 32 + bytes(8), "bytes 0-31"),
        (b"Bias.Get\0x" + bytes(22) + bytes(8), "NUL-padded"),
        (bytes(40), "bytes 0-31"),
        (b"Bias.Get".ljust(32, b"\0") + struct.pack(">i", -5) + bytes(4), "body size -5"),
        (b"Bias.Get".ljust(32, b"\0") + bytes(8)[:5], "must be 40 bytes"),
    ],
)
def test_malformed_response_header(header: bytes, match: str) -> None:
    with pytest.raises(p.NanonisProtocolError, match=match):
        p.decode_response_header(header)


def test_truncated_body_names_the_offset() -> None:
    body = p.encode_response("Scan.FrameGet", (0.0, 0.0, 1e-8, 1e-8, 0.0))[40:]
    with pytest.raises(p.NanonisProtocolError, match="offset 12"):
        p.decode_response_body(p.COMMANDS["Scan.FrameGet"], body[:14])


def test_trailing_bytes_are_rejected() -> None:
    body = p.encode_response("Bias.Get", (0.5,))[40:] + b"x"
    with pytest.raises(p.NanonisProtocolError, match="unexpected bytes"):
        p.decode_response_body(p.COMMANDS["Bias.Get"], body)


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(p.NanonisProtocolError, ValueError)
    assert issubclass(p.NanonisConnectionError, ConnectionError)
    assert issubclass(p.NanonisTimeoutError, TimeoutError)


# ---------------------------------------------------------------- fuzzing
_DECODERS = [
    p.decode_request_header,
    p.decode_response_header,
    lambda b: p.decode_error_section(b, 0),
    *[lambda b, t=t: p.decode_value(t, b) for t in T],
    *[lambda b, s=s: p.decode_response_body(s, b) for s in p.COMMANDS.values()],
    *[lambda b, s=s: p.decode_request_body(s, b) for s in p.COMMANDS.values()],
]


@settings(max_examples=300, deadline=1000)
@given(raw=st.binary(max_size=120), which=st.integers(0, len(_DECODERS) - 1))
def test_fuzz_random_bytes_raise_only_typed_errors(raw: bytes, which: int) -> None:
    try:
        _DECODERS[which](raw)
    except (p.NanonisProtocolError, p.NanonisError):
        pass


@settings(max_examples=200, deadline=1000)
@given(data=st.data())
def test_fuzz_mutated_valid_replies(data: st.DataObject) -> None:
    """Corrupting single bytes and lengths of real replies yields only typed errors."""
    name = data.draw(st.sampled_from(sorted(p.COMMANDS)))
    spec = p.COMMANDS[name]
    values = [data.draw(STRATEGIES[f.type]) for f in spec.returns]
    body = bytearray(p.encode_response(name, values)[40:])
    for _ in range(data.draw(st.integers(1, 4))):
        if body:
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    try:
        p.decode_response_body(spec, bytes(body[:cut]))
    except (p.NanonisProtocolError, p.NanonisError):
        pass


def test_huge_counts_do_not_allocate() -> None:
    raw = struct.pack(">ii", 0x7FFFFFFF, 0x7FFFFFFF)
    with pytest.raises(p.NanonisProtocolError):
        p.decode_value(T.F32_2D, raw)
    with pytest.raises(p.NanonisProtocolError):
        p.decode_value(T.STR_ARRAY, raw)
    with pytest.raises(p.NanonisProtocolError):
        p.decode_value(T.I32_ARRAY, raw)


# ---------------------------------------------------------------- issue 15: body limits
@pytest.mark.parametrize("name", sorted(p.COMMANDS))
@settings(max_examples=20, deadline=1000)
@given(data=st.data())
def test_encoded_bodies_fit_the_limits_derived_from_the_table(name: str,
                                                              data: st.DataObject) -> None:
    spec = p.COMMANDS[name]
    args = [data.draw(STRATEGIES[f.type]) for f in spec.args]
    returns = [data.draw(STRATEGIES[f.type]) for f in spec.returns]
    error = data.draw(st.sampled_from(["", "refused"]))
    request = p.encode_request(name, *args)
    reply = p.encode_response(name, returns, error)
    assert len(request) - p.HEADER_SIZE <= p.max_request_body_size(name) <= p.MAX_BODY_SIZE
    assert len(reply) - p.HEADER_SIZE <= p.max_response_body_size(name) <= p.MAX_BODY_SIZE
    p.check_body_size(name, len(request) - p.HEADER_SIZE, reply=False)
    p.check_body_size(name, len(reply) - p.HEADER_SIZE, reply=True)


def test_limits_follow_the_field_types() -> None:
    assert p.max_request_body_size("Bias.Set") == 4
    assert p.max_response_body_size("Bias.Get") == 4 + p.MAX_ERROR_SECTION_SIZE
    assert p.max_response_body_size("Scan.FrameDataGrab") >= 4 * 4096 * 4096
    assert p.max_request_body_size("Scan.PropsSet") < 1 << 18  # no 10 MB PropsSet
    assert p.max_request_body_size("Bias.Teleport") == p.MAX_TEXT_BYTES  # error reply only
    assert p.MAX_BODY_SIZE < 1 << 30


@settings(max_examples=50, deadline=1000)
@given(header=st.binary(min_size=40, max_size=40), name=st.sampled_from(sorted(p.COMMANDS)),
       limit=st.one_of(st.none(), st.integers(1, 1 << 20)))
def test_fuzz_header_sizes_are_checked_against_the_command(header: bytes, name: str,
                                                           limit: int | None) -> None:
    """A decoded size is never negative or past the global cap; the per-command check agrees."""
    try:
        size = p.decode_response_header(header).body_size
    except p.NanonisProtocolError:
        size = struct.unpack_from(">i", header, 32)[0]
    else:
        assert 0 <= size <= p.MAX_BODY_SIZE
    cap = p.max_response_body_size(name) if limit is None else min(limit, p.max_response_body_size(name))
    if 0 <= size <= cap:
        p.check_body_size(name, size, reply=True, limit=limit)
    else:
        with pytest.raises(p.NanonisProtocolError, match=f"{name} reply .*body size {size}"):
            p.check_body_size(name, size, reply=True, limit=limit)


@pytest.mark.parametrize(
    ("t", "value", "match"),
    [
        (T.STR, "x" * (p.MAX_TEXT_BYTES + 1), "text exceed"),
        (T.STR_U32, "é" * p.MAX_TEXT_BYTES, "text exceed"),
        (T.I32_ARRAY, [0] * (p.MAX_ARRAY_ITEMS + 1), "items exceed"),
        (T.F32_ARRAY, [0.0] * (p.MAX_ARRAY_ITEMS + 1), "items exceed"),
        (T.STR_2D, [["abcd"] * 100] * (p.MAX_TEXT_BYTES // 800 + 1), "strings exceed"),
        (T.STR_ARRAY, ["abcd"] * (p.MAX_TEXT_BYTES // 8 + 1), "strings exceed"),
        (T.STR_ARRAY, [""] * (p.MAX_TEXT_BYTES // 4 + 1), "strings exceed"),
        (T.F32_2D, np.zeros((1, p.MAX_2D_VALUES + 1), np.float32), "values exceed"),
    ],
    ids=["str", "str_u32", "i32_array", "f32_array", "str_2d", "str_array", "str_array_count",
         "f32_2d"],
)
def test_encoders_refuse_values_past_the_limits(t: T, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        p.encode_value(t, value, "field")


def test_a_long_error_description_is_cut_not_refused() -> None:
    reply = p.encode_response("Bias.Set", error="é" * p.MAX_TEXT_BYTES)
    assert len(reply) - p.HEADER_SIZE <= p.max_response_body_size("Bias.Set")
    with pytest.raises(p.NanonisError) as info:
        p.decode_response_body(p.COMMANDS["Bias.Set"], reply[p.HEADER_SIZE:])
    assert set(info.value.message) == {"é"}


def test_float32_array_and_2d_string_array_layouts() -> None:
    """Signals.ValsGet / BiasSpectr.Start's float32 arrays and Scan.PropsGet's 2-D strings."""
    assert p.encode_value(T.F32_ARRAY, [1.5, -2.0]) == struct.pack(">iff", 2, 1.5, -2.0)
    raw = p.encode_value(T.STR_2D, [("a", "bc"), ("d", "")])
    assert raw == struct.pack(">ii", 2, 2) + b"".join(
        struct.pack(">i", len(s)) + s.encode() for s in ("a", "bc", "d", ""))
    assert p.decode_value(T.STR_2D, raw)[0] == (("a", "bc"), ("d", ""))
    with pytest.raises(ValueError, match="rows of different lengths"):
        p.encode_value(T.STR_2D, [("a",), ("b", "c")])
    with pytest.raises(p.NanonisProtocolError, match="exceed"):
        p.decode_value(T.STR_2D, struct.pack(">ii", 1000, 1000))
