"""Issue 26, class 1: one labeller's votes survive two sessions, a crash and a damaged log.

Before: two ``stmtip label`` processes of one labeller on one folder both wrote
``votes/L.csv``; 8 threads × 40 vote/undo requests across them gave HTTP 500s and 400s and an
undo row naming the wrong frame, after which ``read_log`` raised, ``--merge-only`` exited 1
and no session would start.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcodes_stmtip.labelling.lock import LogInUseError, LogTakenOverError, LogWriter
from qcodes_stmtip.labelling.merge import merge_votes
from qcodes_stmtip.labelling.server import LabellingServer, LabellingSession
from qcodes_stmtip.labelling.sources import folder_frames
from qcodes_stmtip.labelling.votes import VoteStore, load_log, read_log

N_FRAMES = 40


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_FRAMES):
        np.save(src / f"f{i}.npy", rng.normal(size=(12, 12)))
    return src


def _start(folder: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "qcodes_stmtip", "label", "--surface", "au111", "--folder",
         str(folder), "--labeller", "L", "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in iter(proc.stdout.readline, ""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _url(lines: queue.Queue) -> str:
    while True:
        line = lines.get(timeout=60)
        assert line is not None, "the session ended before serving"
        if line.startswith("open "):
            return line.split()[1]


def _hammer(urls: list[str], threads: int = 8, requests: int = 40) -> dict:
    """``threads`` × ``requests`` votes and undos spread over ``urls``; status counts."""
    codes: dict = {}
    guard = threading.Lock()

    def work(t: int) -> None:
        r = random.Random(t)
        for j in range(requests):
            url = urls[(t + j) % len(urls)]
            if r.random() < 0.35:
                path, body = "api/undo", {}
            else:
                path, body = "api/vote", {"frame": f"f{r.randrange(N_FRAMES)}.npy",
                                          "classes": ["impurity"]}
            req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    code = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            with guard:
                codes[code] = codes.get(code, 0) + 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    return codes


def _end(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(240)
def test_second_session_is_refused_and_one_session_keeps_the_log_consistent(folder, tmp_path):
    out = tmp_path / "out"
    first, lines = _start(folder, out)
    second = None
    try:
        url = _url(lines)
        port = int(url.rsplit(":", 1)[1].strip("/"))
        # A second tab on another port, same labeller, same folder: refused in one line.
        second, second_lines = _start(folder, out)
        assert second.wait(timeout=60) == 1, "a second session of the same labeller started"
        err = second.stderr.read().strip().splitlines()
        assert len(err) == 1, err
        assert f"port {port}" in err[0] and f"PID {first.pid}" in err[0] and "--take-over" in err[0]

        codes = _hammer([url])  # 8 threads x 40 requests on the one session
        assert codes == {200: 320}, codes
    finally:
        assert _end(first) == 0  # SIGTERM stops it cleanly (the log's lock is released)
        if second is not None and second.poll() is None:
            _end(second)
    events = read_log(out / "votes" / "L.csv", "au111", strict=True)
    assert events  # the log replays without a single damaged line
    merged = subprocess.run([sys.executable, "-m", "qcodes_stmtip", "label", "--surface", "au111",
                             "--labeller", "L", "--out", str(out), "--merge-only"],
                            capture_output=True, text=True, timeout=120)
    assert merged.returncode == 0, merged.stderr
    assert "warning" not in merged.stderr


@pytest.mark.timeout(240)
def test_a_crashed_session_does_not_block_the_next_one(folder, tmp_path):
    out = tmp_path / "out"
    first, lines = _start(folder, out)
    try:
        url = _url(lines)
        assert _hammer([url], threads=2, requests=5) == {200: 10}
    finally:
        _end(first, signal.SIGKILL)  # a crash: no clean stop
    again, lines = _start(folder, out)
    try:
        _url(lines)  # starts without --take-over: the OS released the dead session's lock
    finally:
        assert _end(again) == 0
    err = again.stderr.read()
    assert f"PID {first.pid}" in err and "did not stop cleanly" in err


def test_take_over_fences_a_hung_session(folder, tmp_path):
    out = tmp_path / "out"
    refs = folder_frames(folder)
    hung = LabellingSession(refs, surface="au111", labeller="L", out_dir=out)
    with LabellingServer(hung) as old:
        hung.vote("f0.npy", ["impurity"])
        with pytest.raises(LogInUseError, match=rf"port {old.port}, PID {os.getpid()}"):
            LabellingSession(refs, surface="au111", labeller="L", out_dir=out)
        with LabellingServer(LabellingSession(refs, surface="au111", labeller="L", out_dir=out,
                                              take_over=True)) as new:
            assert new.session.store.writer.took_over
            assert new.session.store.writer.previous["port"] == old.port
            # the old page's next vote is refused (409) and names the session that took over
            req = urllib.request.Request(old.url + "api/vote", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"frame": "f1.npy", "classes": ["impurity"]}).encode())
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=10)
            assert refused.value.code == 409
            assert f"port {new.port}" in json.loads(refused.value.read())["error"]
            with pytest.raises(LogTakenOverError):
                hung.store.undo()
            new.session.vote("f2.npy", ["double_tip"])
    assert [e.frame for e in read_log(out / "votes" / "L.csv", "au111", strict=True)] == ["f0.npy", "f2.npy"]


GOOD = [
    "time,action,frame,session,source,classes",
    "t1,vote,f1.npy,s,,impurity",
    "t2,vote,f2.npy,s,,double_tip;tip_change",
    "t3,skip,f3.npy,s,,",
    "t4,undo,f12.npy,s,,",  # the two-session repro: an undo naming the wrong frame
    "t5,vote,f4.npy,s,,corruption",
    "t6,vote,f5.npy,s,,not_a_class",
    "t7,vote,f6.npy",  # too few fields
    "\xff\xfe garbage",  # not UTF-8 once encoded below
    "t8,undo,f5.npy,s,,",  # undoes f4: names the wrong frame, skipped too
    "t9,undo,f4.npy,s,,",
    "t10,vote,f7.npy,s,,step_edge",
]


def _damaged_log(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b""
    for line in GOOD:
        data += (line.encode("latin-1") if line.startswith("\xff") else line.encode()) + b"\r\n"
    data += b"x" * 70_000 + b"\r\n"  # a line longer than a record may be
    data += b"t11,vote,f8.npy,s,,impu"  # cut short by a crash: no newline
    path.write_bytes(data)


def test_a_damaged_log_keeps_every_good_vote_and_never_refuses_to_start(folder, tmp_path):
    out = tmp_path / "out"
    log = out / "votes" / "L.csv"
    _damaged_log(log)
    with pytest.raises(Exception, match=r"L.csv:5: undo names frame 'f12.npy'"):
        read_log(log, "au111", strict=True)
    reading = load_log(log, "au111")
    assert [e.frame for e in reading.events] == ["f1.npy", "f2.npy", "f3.npy", "f7.npy"]
    lines = [int(p.split(":")[-2]) for p in reading.problems]
    assert lines == [5, 7, 8, 9, 10, 13, 14]

    merged = merge_votes(out, "au111")  # the merge goes on, listing what it skipped
    assert [f.name for f in merged.frames] == ["f1.npy", "f2.npy", "f7.npy"]
    assert len(merged.problems) == 7
    cli = subprocess.run([sys.executable, "-m", "qcodes_stmtip", "label", "--surface", "au111",
                          "--labeller", "L", "--out", str(out), "--merge-only"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "L.csv:5: undo names frame 'f12.npy'" in cli.stderr

    session = LabellingSession(folder_frames(folder), surface="au111", labeller="L", out_dir=out)
    try:  # a fresh session starts, keeps every good vote, and writes on a line of its own
        assert set(session.store.decisions()) == {"f1.npy", "f2.npy", "f3.npy", "f7.npy"}
        session.vote("f9.npy", ["impurity"])
        session.undo()
        session.vote("f10.npy", ["impurity"])
    finally:
        session.close()
    (torn,) = (out / "votes").glob("L.csv.damaged-*")
    assert torn.read_bytes() == b"t11,vote,f8.npy,s,,impu"
    again = load_log(log, "au111")
    assert [e.frame for e in again.events] == ["f1.npy", "f2.npy", "f3.npy", "f7.npy", "f10.npy"]
    assert [int(p.split(":")[-2]) for p in again.problems] == [5, 7, 8, 9, 10, 13]


def test_an_append_is_all_or_nothing(tmp_path, monkeypatch):
    store = VoteStore(tmp_path, "L", "au111")
    store.vote("a.npy", ["impurity"])
    before = store.path.read_bytes()
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:  # a full disk: half a row reaches the file
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr("qcodes_stmtip.labelling.lock.os.write", short_write)
    with pytest.raises(OSError, match="short write"):
        store.vote("b.npy", ["impurity"])
    monkeypatch.undo()
    assert store.path.read_bytes() == before  # cut back: no partial line
    store.vote("c.npy", ["impurity"])
    store.close()
    assert [e.frame for e in read_log(store.path, "au111", strict=True)] == ["a.npy", "c.npy"]


def test_the_owner_record_survives_a_refused_attempt(tmp_path):
    first = LogWriter(tmp_path / "L.csv", port=8123)
    for _ in range(3):
        with pytest.raises(LogInUseError, match=r"port 8123, PID \d+"):
            LogWriter(tmp_path / "L.csv")
    assert json.loads((tmp_path / "L.lock").read_text())["port"] == 8123
    first.close()
    LogWriter(tmp_path / "L.csv").close()  # free again once the first one let go


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=400), cut=st.integers(0, 200))
def test_any_damage_leaves_a_store_that_opens_and_round_trips(tmp_path_factory, garbage, cut):
    out = tmp_path_factory.mktemp("fuzz")
    log = out / "votes" / "L.csv"
    log.parent.mkdir()
    good = "\r\n".join(GOOD[:4]).encode() + b"\r\n"
    log.write_bytes(good[: len(good) - cut % 40] + garbage)
    with VoteStore(out, "L", "au111") as store:  # never raises for the content
        store.vote("new.npy", ["impurity"])
        expected = [(e.action, e.frame, e.classes) for e in store.events]
    again = load_log(log, "au111")
    assert [(e.action, e.frame, e.classes) for e in again.events] == expected
