"""``stmtip label``: a real process serving the page, stopped with Ctrl-C; argument errors."""

import csv
import json
import queue
import signal
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

from qcodes_stmtip.cli import main


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        np.save(src / f"a{i}.npy", np.random.default_rng(i).normal(size=(9, 9)))
    return src


def _lines(stream, q):
    for line in iter(stream.readline, ""):
        q.put(line)


def _start(folder, out):
    proc = subprocess.Popen(
        [sys.executable, "-m", "qcodes_stmtip", "label", "--surface", "hsi100", "--folder",
         str(folder), "--labeller", "zoe", "--out", str(out), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C must reach the child even when this test runs in a background job (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    q: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, q), daemon=True).start()
    return proc, q


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(120)
def test_label_serves_until_interrupted(folder, tmp_path):
    out = folder / "labels"  # inside the folder: its images/ must not become frames to label
    proc, q = _start(folder, out)
    try:
        first = q.get(timeout=60)
        assert "labelling 2 frame(s) of hsi100 as 'zoe' (2 left)" in first
        url = q.get(timeout=10).split()[1]
        assert url.startswith("http://127.0.0.1:")
        req = urllib.request.Request(url + "api/vote", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"frame": "a1.npy", "classes": ["rows"]}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["progress"]["voted"] == 1
    finally:
        assert _stop(proc) == 0
    assert "labels: 1 frame(s)" in proc.stderr.read()
    with open(out / "labels.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["Name"], row["No. Responses"], row["Rows"]) == ("a1.npy", "1", "1")
    assert (out / "images" / "a1.npy").is_file()

    # Restarted: the exported copy in labels/images is not a new frame, and one is left.
    proc, q = _start(folder, out)
    try:
        assert "labelling 2 frame(s) of hsi100 as 'zoe' (1 left)" in q.get(timeout=60)
        assert q.get(timeout=10).startswith("open http://127.0.0.1:")
    finally:
        assert _stop(proc) == 0


def test_merge_only(tmp_path, capsys):
    from qcodes_stmtip.labelling.votes import VoteStore

    VoteStore(tmp_path, "a", "au111").vote("x.npy", ["impurity"])
    VoteStore(tmp_path, "b", "au111").vote("x.npy", ["double_tip"])
    VoteStore(tmp_path, "b", "au111").vote("y.npy", ["corruption"])
    assert main(["label", "--surface", "au111", "--labeller", "a",
                 "--out", str(tmp_path), "--merge-only"]) == 0
    assert "merged 2 labeller(s): 1 frame(s)" in capsys.readouterr().out
    with open(tmp_path / "labels.csv", newline="") as fh:
        assert [r["label"] for r in csv.DictReader(fh)] == ["corruption"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--db", "x.db"], "--db needs --run-id"),
    ([], "--folder DIR or --db PATH"),
    (["--folder", "{folder}", "--run-id", "3"], "--run-id goes with --db"),
    (["--folder", "{tmp}/missing"], "does not exist"),
    (["--db", "{tmp}/none.db", "--run-id", "1"], "does not exist"),
    (["--folder", "{folder}", "--labeller", "no way"], "labeller"),
])
def test_argument_errors(folder, tmp_path, capsys, extra, message):
    args = [a.format(folder=folder, tmp=tmp_path) for a in extra]
    if "--labeller" not in args:
        args += ["--labeller", "a"]
    assert main(["label", "--surface", "hsi100", "--out", str(tmp_path / "o"), *args]) == 1
    assert message in capsys.readouterr().err


def test_cli_parser_stays_tensorflow_free():
    code = ("import sys; from qcodes_stmtip.cli import build_parser; "
            "build_parser().parse_args(['label', '--surface', 'cu111', '--folder', '.', "
            "'--labeller', 'a', '--out', 'o']); import qcodes_stmtip.labelling.server; "
            "print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"
