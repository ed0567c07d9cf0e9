"""Issue 26 class 1: two ``stmtip label`` processes of one labeller on one folder.

Starts two sessions (``--labeller L --out DIR``, a second tab on another port), then 8 threads
× 40 vote/undo requests spread over the sessions that started; prints the HTTP status counts,
whether the log replays strictly (``read_log(..., strict=True)``) and ``--merge-only``'s exit
status. Before issue 26 both sessions started and wrote the same log.

    .venv/bin/python benchmarks/labelling_two_sessions.py
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from qcodes_stmtip.labelling.votes import read_log

FRAMES = 40


def start(src: Path, out: Path) -> tuple[subprocess.Popen, str | None, str]:
    proc = subprocess.Popen([sys.executable, "-m", "qcodes_stmtip", "label", "--surface", "au111",
                             "--folder", str(src), "--labeller", "L", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("open "):
            return proc, line.split()[1], ""
    proc.wait(30)
    return proc, None, proc.stderr.read().strip()


def hammer(urls: list[str], threads: int = 8, requests: int = 40) -> dict:
    codes: dict = {}
    guard = threading.Lock()

    def work(t: int) -> None:
        r = random.Random(t)
        for j in range(requests):
            url = urls[(t + j) % len(urls)]
            path, body = (("api/undo", {}) if r.random() < 0.35 else
                          ("api/vote", {"frame": f"f{r.randrange(FRAMES)}.npy", "classes": ["impurity"]}))
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
        w.join()
    return codes


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, out = root / "src", root / "out"
        src.mkdir()
        rng = np.random.default_rng(0)
        for i in range(FRAMES):
            np.save(src / f"f{i}.npy", rng.normal(size=(16, 16)))
        sessions = [start(src, out) for _ in range(2)]
        for k, (proc, url, err) in enumerate(sessions):
            print(f"session {k + 1}: " + (f"serving {url}" if url else f"refused (exit {proc.returncode}): {err}"))
        urls = [url for _, url, _ in sessions if url]
        print(f"8 threads x 40 requests over {len(urls)} session(s): {hammer(urls)}")
        for proc, _, _ in sessions:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        try:
            events = read_log(out / "votes" / "L.csv", "au111", strict=True)
            print(f"read_log(strict=True): {len(events)} decisions in effect, no damaged line")
        except ValueError as exc:
            print(f"read_log(strict=True): {type(exc).__name__}: {exc}")
        merged = subprocess.run([sys.executable, "-m", "qcodes_stmtip", "label", "--surface", "au111",
                                 "--labeller", "L", "--out", str(out), "--merge-only"],
                                capture_output=True, text=True)
        print(f"--merge-only: exit {merged.returncode}")


if __name__ == "__main__":
    main()
