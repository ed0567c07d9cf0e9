"""The labelling JSON API over real HTTP on 127.0.0.1 (no browser)."""

import csv
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from qcodes_stmtip.labelling.server import LabellingServer, LabellingSession
from qcodes_stmtip.labelling.sources import FrameRef, folder_frames


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        np.save(src / f"f{i}.npy", rng.normal(size=(10, 12)))
    (src / "broken.npy").write_bytes(b"not numpy at all")
    return src


@pytest.fixture
def served(folder, tmp_path):
    session = LabellingSession(folder_frames(folder), surface="au111", labeller="eve",
                               out_dir=tmp_path / "out")
    with LabellingServer(session) as server:
        yield server, session, tmp_path / "out"


def _get(server, path):
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


def _post(server, path, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _log(out, name="eve"):
    with open(out / "votes" / f"{name}.csv", newline="") as fh:
        return [(r["action"], r["frame"], r["classes"]) for r in csv.DictReader(fh)]


def test_binds_loopback_only_and_serves_the_page(served):
    server, _, _ = served
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    status, ctype, body = _get(server, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/static/label.js" in body
    assert _get(server, "/static/label.js")[1].startswith("text/javascript")
    assert _get(server, "/static/label.css")[1].startswith("text/css")
    assert _get(server, "/static/../server.py")[0] == 404
    assert _get(server, "/nothing")[0] == 404


def test_config_lists_the_surfaces_categories_with_keys(served):
    server, _, _ = served
    config = json.loads(_get(server, "/api/config")[2])
    assert config["surface"] == "au111" and config["labeller"] == "eve" and config["model"] is None
    assert [(c["key"], c["name"]) for c in config["categories"]] == [
        ("1", "individual_atoms"), ("2", "double_tip"), ("3", "tip_change"),
        ("4", "step_edge"), ("5", "impurity"), ("6", "corruption")]


def test_png_is_the_frame_drawn_top_line_first(served, folder):
    server, _, _ = served
    status, ctype, body = _get(server, "/api/frame/f1.npy.png")
    assert status == 200 and ctype == "image/png"
    img = np.asarray(Image.open(io.BytesIO(body)))
    assert img.shape == (10, 12)  # grey: no missing lines
    from qcodes_stmtip.labelling.render import display_grey

    grey, _ = display_grey(np.load(folder / "f1.npy"))
    np.testing.assert_array_equal(img, grey[::-1])
    assert _get(server, "/api/frame/nope.npy.png")[0] == 404


def test_vote_skip_undo_over_http(served, folder):
    server, _, out = served
    nxt = json.loads(_get(server, "/api/next")[2])
    assert nxt["frame"]["name"] == "broken.npy" and nxt["upcoming"] == "f0.npy"
    assert nxt["progress"] == {**nxt["progress"], "total": 4, "voted": 0, "remaining": 4}

    # An unreadable frame is reported, cannot be voted on, and can be skipped.
    status, _, body = _get(server, "/api/frame/broken.npy.png")
    assert status == 422 and "broken.npy" in json.loads(body)["error"]
    status, reply = _post(server, "/api/vote", {"frame": "broken.npy", "classes": ["impurity"]})
    assert status == 422
    status, reply = _post(server, "/api/skip", {"frame": "broken.npy"})
    assert status == 200 and reply["frame"]["name"] == "f0.npy"

    status, reply = _post(server, "/api/vote", {"frame": "f0.npy",
                                                "classes": ["tip_change", "double_tip"]})
    assert status == 200 and reply["frame"]["name"] == "f1.npy"
    assert reply["progress"]["voted"] == 1 and reply["progress"]["skipped"] == 1
    np.testing.assert_array_equal(np.load(out / "images" / "f0.npy"), np.load(folder / "f0.npy"))
    # double_tip and tip_change tie at 1.0: no single label, so the frame is in ambiguous.csv.
    with open(out / "labels.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == []
    with open(out / "ambiguous.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["Name"], row["label"], row["tip_change"], row["No. Responses"]) == (
        "f0.npy", "", "1", "1")

    status, reply = _post(server, "/api/undo", {})
    assert status == 200
    assert reply["undone"] == {"frame": "f0.npy", "action": "vote",
                               "classes": ["double_tip", "tip_change"]}
    assert reply["frame"]["name"] == "f0.npy"
    assert reply["frame"]["preselect"] == ["double_tip", "tip_change"]
    assert _log(out) == [("skip", "broken.npy", ""), ("vote", "f0.npy", "double_tip;tip_change"),
                         ("undo", "f0.npy", "")]


def test_bad_requests_are_refused_with_reasons_and_not_logged(served):
    server, _, out = served
    cases = [
        ({"frame": "f0.npy", "classes": ["rows"]}, 400, "classes must name"),
        ({"frame": "f0.npy", "classes": []}, 400, "classes must name"),
        ({"frame": "f0.npy", "classes": "double_tip"}, 400, "list of category names"),
        ({"frame": "zzz.npy", "classes": ["double_tip"]}, 404, "no frame named 'zzz.npy'"),
    ]
    for body, code, message in cases:
        status, reply = _post(server, "/api/vote", body)
        assert status == code and message in reply["error"], body
    status, reply = _post(server, "/api/vote", b"{not json")
    assert status == 400 and "not JSON" in reply["error"]
    status, reply = _post(server, "/api/vote", b"[]")
    assert status == 400 and "JSON object" in reply["error"]
    status, reply = _post(server, "/api/vote", {"frame": "f0.npy", "classes": ["double_tip"]},
                          content_type="text/plain")
    assert status == 415
    status, reply = _post(server, "/api/undo", {})
    assert status == 200 and reply["undone"] is None
    assert _get(server, "/api/guess/f0.npy")[0] == 404  # no model given
    assert _log(out) == []
    assert not (out / "images").exists()


def test_session_and_server_arguments(folder, tmp_path):
    refs = folder_frames(folder)
    with pytest.raises(ValueError, match="at least one frame"):
        LabellingSession([], surface="hsi100", labeller="a", out_dir=tmp_path)
    with pytest.raises(ValueError, match="two frames are named 'f0.npy'"):
        LabellingSession([refs[1], refs[1]], surface="hsi100", labeller="a", out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="model bundle"):
        LabellingSession(refs, surface="hsi100", labeller="a", out_dir=tmp_path,
                         model=tmp_path / "none")
    with pytest.raises(ValueError, match="labeller"):
        LabellingSession(refs, surface="hsi100", labeller="a b", out_dir=tmp_path)
    session = LabellingSession(refs, surface="hsi100", labeller="a", out_dir=tmp_path)
    for port in (-1, 70000, True, 1.5):
        with pytest.raises(ValueError, match="port"):
            LabellingServer(session, port=port)


def test_every_frame_done_gives_null_frame(tmp_path):
    ref = FrameRef("only.npy", "s", "memory", lambda: np.ones((8, 8)))
    session = LabellingSession([ref], surface="hsi100", labeller="a", out_dir=tmp_path)
    reply = session.vote("only.npy", ["rows"])
    assert reply["frame"] is None and reply["upcoming"] is None
    assert reply["progress"]["remaining"] == 0 and reply["progress"]["merged_frames"] == 1


@pytest.mark.timeout(240)
def test_model_guess_matches_the_ensemble(tmp_path, tiny_bundle):
    from qcodes_stmtip.classify.preprocess import preprocess_frame
    from qcodes_stmtip.taxonomy import CLASSES

    ens, bundle = tiny_bundle
    size = 32
    rng = np.random.default_rng(0)
    frame = rng.normal(size=(40, 40))
    short = np.full((40, 40), np.nan)
    short[:3] = 1.0
    refs = [FrameRef("a.npy", "s", "memory", lambda: frame),
            FrameRef("b.npy", "s", "memory", lambda: short)]
    session = LabellingSession(refs, surface="hsi100", labeller="a", out_dir=tmp_path / "out",
                               model=bundle)
    with LabellingServer(session) as server:
        assert json.loads(_get(server, "/api/config")[2])["model"] == str(bundle)
        status, _, body = _get(server, "/api/guess/a.npy")
        assert status == 200
        guess = json.loads(body)
        status, _, body = _get(server, "/api/guess/b.npy")
        assert status == 200 and "finite lines" in json.loads(body)["error"]
    expected = ens.predict(preprocess_frame(frame, size)[None, :, :, None])
    assert guess["classes"] == list(CLASSES["hsi100"])
    np.testing.assert_allclose(guess["probabilities"], expected.mean[0], rtol=1e-5)
    assert guess["tip_change_probability"] == pytest.approx(
        float(expected.tip_change_probability[0]), rel=1e-5)
    assert guess["decision"] == CLASSES["hsi100"][int(expected.decision[0])]


def test_foreign_host_names_are_refused(served):
    server, _, out = served
    req = urllib.request.Request(server.url + "api/config", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 403
    req = urllib.request.Request(server.url + "api/skip", data=b'{"frame": "f0.npy"}',
                                 headers={"Host": "evil.example", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 403
    assert _log(out) == []
    req = urllib.request.Request(server.url + "api/config", headers={"Host": f"localhost:{server.port}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


# ---------------------------------------------------------------- issue 15: bounded requests
def _raw_post(server, body: bytes, length: str | None, *, close_write: bool = False,
              path: str = "/api/skip") -> tuple[int, dict]:
    """POST over a bare socket with any Content-Length; returns (status, JSON reply)."""
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
            "Content-Type: application/json"]
    if length is not None:
        head.append(f"Content-Length: {length}")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.fixture
def strict(folder, tmp_path):
    session = LabellingSession(folder_frames(folder), surface="au111", labeller="eve",
                               out_dir=tmp_path / "out")
    with LabellingServer(session, timeout=0.3, max_body_bytes=1024) as server:
        yield server, tmp_path / "out"


@pytest.mark.parametrize(("length", "status", "message"), [
    ("-1", 400, "not a non-negative integer"),
    ("abc", 400, "not a non-negative integer"),
    ("1e3", 400, "not a non-negative integer"),
    (str(2**31), 413, "exceeds the 1024-byte limit"),
    ("9" * 40, 413, "exceeds the 1024-byte limit"),
])
def test_bad_content_length_is_refused_without_reading(strict, length, status, message):
    server, out = strict
    got, reply = _raw_post(server, b'{"frame": "f0.npy"}', length)
    assert got == status and message in reply["error"]
    assert not (out / "votes" / "eve.csv").exists() or _log(out) == []


def test_a_body_shorter_than_declared_cannot_pin_a_thread(strict):
    server, out = strict
    # The client keeps the connection open and sends no more: 408 after the timeout.
    got, reply = _raw_post(server, b'{"frame": "f0.npy"}', "200")
    assert got == 408 and "19 of 200 bytes" in reply["error"]
    # The client hangs up early: 400 at once.
    got, reply = _raw_post(server, b'{"frame": "f0.npy"}', "200", close_write=True)
    assert got == 400 and "ended after 19 of 200 bytes" in reply["error"]
    assert _raw_post(server, b'{"frame": "f0.npy"}', "19")[0] == 200
    assert _log(out) == [("skip", "f0.npy", "")]


def test_trickled_headers_cannot_pin_a_thread(strict):
    server, _ = strict
    header = f"X-Slow: {'a' * 40}\r\n".encode()
    sent = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"POST /api/skip HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())

        def trickle() -> None:  # one byte every 50 ms: each recv is quick, the whole is not
            try:
                for byte in header:
                    s.sendall(bytes([byte]))
                    sent.append(byte)
                    time.sleep(0.05)
            except OSError:
                pass

        t = threading.Thread(target=trickle)
        t.start()
        try:
            assert s.recv(1024) == b""  # the server hung up (0.3 s) ...
        except ConnectionResetError:
            pass
        assert len(sent) < len(header)  # ... long before the headers could have ended
        t.join(5)


@pytest.mark.parametrize("body", [
    b"[" * 60_000, b'{"a":' * 12_000, b"[" * 33 + b"]" * 33,
    b'{"frame": ' + b"[" * 5000 + b"]" * 5000 + b"}",
], ids=["open_arrays", "open_objects", "depth_33", "deep_frame"])
def test_deeply_nested_json_is_a_400(served, body):
    server, _, out = served
    status, reply = _post(server, "/api/skip", body)
    assert status == 400 and "nests deeper than 32 levels" in reply["error"]
    status, reply = _post(server, "/api/skip", {"frame": "f0.npy", "x": [[[["]]]]"]]]]})
    assert status == 200  # brackets inside strings do not count; 4 levels are fine


def test_non_utf8_body_is_a_400(served):
    server, _, _ = served
    status, reply = _post(server, "/api/skip", b'{"frame": "\xff\xfe"}')
    assert status == 400 and "not UTF-8" in reply["error"]


def test_server_limits_are_validated(folder, tmp_path):
    session = LabellingSession(folder_frames(folder), surface="au111", labeller="eve",
                               out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="timeout"):
        LabellingServer(session, timeout=0)
    with pytest.raises(ValueError, match="max_body_bytes"):
        LabellingServer(session, max_body_bytes=-1)


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                     st.sampled_from(["frame", "classes", "x"]), inner, max_size=3),
                 max_leaves=40).map(lambda v: json.dumps(v).encode()),
), path=st.sampled_from(["/api/vote", "/api/skip", "/api/undo"]))
def test_fuzz_post_bodies_never_give_a_500(strict, body: bytes, path: str):
    server, _ = strict
    status, reply = _raw_post(server, body, str(len(body)), path=path)
    assert status in (200, 400, 404, 413, 422), (status, reply)
    assert status == 200 or reply["error"]
