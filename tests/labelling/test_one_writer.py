"""Issue 26, class 1: one labeller's votes survive two sessions, a crash and a damaged log.

Before: two ``stmtip label`` processes of one labeller on one folder both wrote
``votes/L.csv``; 8 threads × 40 vote/undo requests across them gave HTTP 500s and 400s and an
undo row naming the wrong frame, after which ``read_log`` raised, ``--merge-only`` exited 1
and no session would start.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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


def main(argv: list[str]) -> int:
    """``stmtip label …`` in this process (its handler alone: no other command's imports)."""
    from qcodes_stmtip.labelling.cli import register

    parser = argparse.ArgumentParser(prog="stmtip")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_FRAMES):
        np.save(src / f"f{i}.npy", rng.normal(size=(12, 12)))
    return src


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


@pytest.mark.timeout(120)
def test_second_session_is_refused_and_one_session_keeps_the_log_consistent(folder, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["label", "--surface", "au111", "--folder", str(folder), "--labeller", "L", "--out", str(out)]
    first = LabellingSession(folder_frames(folder), surface="au111", labeller="L", out_dir=out)
    with LabellingServer(first) as server:
        # A second tab on another port, same labeller, same folder: refused in one line.
        capsys.readouterr()
        assert main(args) == 1, "a second session of the same labeller started"
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert f"port {server.port}, PID {os.getpid()}" in err[0] and "--take-over" in err[0]
        codes = _hammer([server.url], requests=15)  # 8 threads on the one session
        assert codes == {200: 120}, codes
    events = read_log(out / "votes" / "L.csv", "au111", strict=True)
    assert events  # the log replays without a single damaged line
    assert main([*args[:3], *args[5:], "--merge-only"]) == 0
    assert "warning" not in capsys.readouterr().err


CHILD = """
import sys, time
from qcodes_stmtip.labelling.votes import VoteStore
store = VoteStore(sys.argv[1], "L", "au111")
store.announce(port=4321)
store.vote("f0.npy", ["impurity"])
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_a_session_in_another_process_is_refused_until_it_crashes(tmp_path):
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(LogInUseError, match=rf"port 4321, PID {child.pid} "):
            VoteStore(out, "L", "au111")
    finally:
        child.kill()  # SIGKILL: a crash, no clean stop
        child.wait(10)
        child.stdout.close()
    with VoteStore(out, "L", "au111") as store:  # no --take-over needed: the OS let go of the lock
        assert store.writer.previous["pid"] == child.pid and not store.writer.took_over
        assert [e.frame for e in store.events] == ["f0.npy"]


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


def test_a_damaged_log_keeps_every_good_vote_and_never_refuses_to_start(folder, tmp_path, capsys):
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
    capsys.readouterr()
    assert main(["label", "--surface", "au111", "--labeller", "L", "--out", str(out), "--merge-only"]) == 0
    assert "L.csv:5: undo names frame 'f12.npy'" in capsys.readouterr().err

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


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
