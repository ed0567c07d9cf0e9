"""How responsive the labelling server stays on a paper-sized set (prints numbers, no asserts).

Three labellers have already voted on N frames (default 3,659, the size of the real H:Si(100)
set); then we time: a full merge of all vote logs, the round trip of one more vote over HTTP
(append + export + re-merge + next frame), ``/api/next``, and drawing a 512×512 frame as PNG.

    .venv/bin/python benchmarks/labelling_speed.py [--frames 3659] [--votes 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from qcodes_stmtip.labelling.merge import merge_votes
from qcodes_stmtip.labelling.render import frame_png
from qcodes_stmtip.labelling.server import LabellingServer, LabellingSession
from qcodes_stmtip.labelling.sources import FrameRef
from qcodes_stmtip.labelling.votes import VoteStore, categories


def _ms(samples: list[float]) -> str:
    return (f"median {1e3 * statistics.median(samples):7.1f} ms, "
            f"max {1e3 * max(samples):7.1f} ms (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3659)
    parser.add_argument("--votes", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cats = categories("hsi100")
    frame = rng.normal(size=(512, 512)) * 1e-10

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t = time.perf_counter()
        for name in ("ann", "ben", "cat"):
            store = VoteStore(out, name, "hsi100")
            for i in range(args.frames):
                store.vote(f"f{i:05d}.npy", [cats[int(rng.integers(len(cats)))]], session="s")
        print(f"wrote {3 * args.frames} votes in {time.perf_counter() - t:.1f} s")

        samples = []
        for _ in range(5):
            t = time.perf_counter()
            result = merge_votes(out, "hsi100")
            samples.append(time.perf_counter() - t)
        print(f"merge of {len(result.frames)} frames x 3 labellers: {_ms(samples)}")

        refs = [FrameRef(f"f{i:05d}.npy", "s", "memory", lambda: frame)
                for i in range(args.frames + args.votes)]
        session = LabellingSession(refs, surface="hsi100", labeller="dan", out_dir=out)
        with LabellingServer(session) as server:
            base = server.url.rstrip("/")
            nxt, votes = [], []
            for _ in range(args.votes):
                t = time.perf_counter()
                with urllib.request.urlopen(base + "/api/next") as r:
                    name = json.loads(r.read())["frame"]["name"]
                nxt.append(time.perf_counter() - t)
                req = urllib.request.Request(
                    base + "/api/vote", headers={"Content-Type": "application/json"},
                    data=json.dumps({"frame": name, "classes": ["rows"]}).encode())
                t = time.perf_counter()
                with urllib.request.urlopen(req) as r:
                    r.read()
                votes.append(time.perf_counter() - t)
        print(f"/api/next with {len(refs)} frames: {_ms(nxt)}")
        print(f"/api/vote round trip (log + export 512x512 + merge 4 logs + next): {_ms(votes)}")

    renders = []
    for _ in range(10):
        t = time.perf_counter()
        frame_png(frame)
        renders.append(time.perf_counter() - t)
    print(f"frame_png 512x512: {_ms(renders)}")


if __name__ == "__main__":
    main()
