"""Archive throughput: ``stmtip classify`` in one process against a local Dask cluster
(``--workers 2``) and a separately started ``dask scheduler`` + ``dask worker`` on loopback.

Writes ``--frames`` small ``.npy`` frames (64×64 random-walk surfaces, float32) to a temporary
folder, classifies them with the shipped hsi100 bundle in each mode (each mode in a fresh
process, so bundle loading is counted once per process like a real run), and prints per mode:
wall time, frames/s, peak resident memory of the process that classified (the client for one
process; each worker for the clusters), and the largest probability difference to the
single-process rows; ``stages`` splits one process's time per frame into reading, features and
prediction. No pass/fail: numbers only.

    nice -n 10 .venv/bin/python benchmarks/archive.py --frames 20000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _maxrss_mb() -> float:
    """Peak resident memory of this process, MB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_frames(folder: Path, n: int, size: int = 64, seed: int = 0) -> None:
    """``n`` random-walk frames as float32 .npy files in ``folder``."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        frame = rng.normal(size=(size, size)).cumsum(axis=1).astype(np.float32)
        np.save(folder / f"f{i:06d}.npy", frame)


def run_one(mode: str, folder: Path, out: Path, chunk: int, scheduler: str | None) -> dict:
    """Classify ``folder`` in ``mode`` (single, workers2, scheduler); timing and memory."""
    from qcodes_stmtip.classify.archive import classify_files, connect

    t0 = time.perf_counter()
    if mode == "single":
        result = classify_files([folder], out, surface="hsi100", chunk_size=chunk, as_frame=False)
        workers_mb = [_maxrss_mb()]
    else:
        cluster = connect(2) if mode == "workers2" else connect(scheduler=scheduler)
        try:
            result = classify_files([folder], out, surface="hsi100", chunk_size=chunk, client=cluster.client,
                                    as_frame=False)
            workers_mb = sorted(v for v in cluster.client.run(_maxrss_mb).values())
        finally:
            cluster.close()
    wall = time.perf_counter() - t0
    return {"mode": mode, "frames": result.new, "wall_s": round(wall, 1),
            "frames_per_s": round(result.new / wall, 1), "peak_rss_mb": [round(m) for m in workers_mb],
            "client_rss_mb": round(_maxrss_mb())}


def stages(folder: Path, n: int, chunk: int) -> dict:
    """One process, per stage: bundle load, reading + preprocessing, frame features, model
    prediction (ms per frame over the first ``n`` frames, chunks of ``chunk``)."""
    from qcodes_stmtip.classify.archive import _model, _read, make_job
    from qcodes_stmtip.classify.features import frame_features

    job = make_job(surface="hsi100")
    t0 = time.perf_counter()
    ensemble = _model(job)
    load = time.perf_counter() - t0
    size = int(ensemble.manifest["preprocessing"]["image_size"])
    paths = sorted(str(p) for p in folder.glob("*.npy"))[:n]
    read = feats = pred = 0.0
    for i in range(0, len(paths), chunk):
        t0 = time.perf_counter()
        batch = np.stack([_read(p, job, size, None)[0] for p in paths[i:i + chunk]])[..., None]
        t1 = time.perf_counter()
        frame_features(batch)
        t2 = time.perf_counter()
        ensemble.predict(batch)  # features again + every member + the tip-change model
        t3 = time.perf_counter()
        read, feats, pred = read + t1 - t0, feats + t2 - t1, pred + t3 - t2
    k = 1000 / len(paths)
    return {"mode": "stages", "frames": len(paths), "bundle_load_s": round(load, 1),
            "read_preprocess_ms": round(read * k, 1), "features_ms": round(feats * k, 1),
            "predict_ms_incl_features": round(pred * k, 1)}


def _diff(a: Path, b: Path) -> float:
    from qcodes_stmtip.classify.archive import make_job, read_output

    job = make_job(surface="hsi100")
    x = read_output(a, job).sort_values("file").reset_index(drop=True)
    y = read_output(b, job).sort_values("file").reset_index(drop=True)
    assert list(x["file"]) == list(y["file"]) and list(x["good_bad"]) == list(y["good_bad"])
    cols = [*job.classes, "tip_change"]
    return float(np.nanmax(np.abs(x[cols].to_numpy(float) - y[cols].to_numpy(float))))


def _scheduler(tmp: Path) -> tuple[str, list[subprocess.Popen]]:
    dask = str(Path(sys.executable).parent / "dask")
    sched = tmp / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    deadline = time.monotonic() + 60
    while not sched.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(sched), "--nworkers", "2",
                                   "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return str(sched), procs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=20000, help="frames to classify per mode [20000]")
    p.add_argument("--chunk-size", type=int, default=64, help="files per chunk [64]")
    p.add_argument("--modes", default="stages,single,workers2,scheduler",
                   help="comma list: stages (per-stage ms per frame, 512 frames, one process), single, "
                        "workers2 (a local Dask cluster), scheduler (dask scheduler + worker on loopback)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--scheduler", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one == "stages":
        print(json.dumps(stages(Path(args.folder), 512, args.chunk_size)))
        return
    if args.one:  # child: one mode in a fresh process
        print(json.dumps(run_one(args.one, Path(args.folder), Path(args.out), args.chunk_size, args.scheduler)))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="stmtip-archive-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "frames"
        folder.mkdir()
        t0 = time.perf_counter()
        write_frames(folder, args.frames)
        print(f"wrote {args.frames} frames (64x64 float32 .npy) in {time.perf_counter() - t0:.1f} s")
        outs = {}
        for mode in args.modes.split(","):
            procs: list[subprocess.Popen] = []
            sched = None
            if mode == "scheduler":
                sched, procs = _scheduler(tmp)
            try:
                outs[mode] = tmp / f"{mode}.csv"
                cmd = [sys.executable, __file__, "--one", mode, "--folder", str(folder), "--out", str(outs[mode]),
                       "--chunk-size", str(args.chunk_size)] + (["--scheduler", sched] if sched else [])
                res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if res.returncode:
                    print(f"{mode}: failed\n{res.stderr[-2000:]}")
                    continue
                row = json.loads(res.stdout.strip().splitlines()[-1])
            finally:
                for proc in reversed(procs):
                    proc.terminate()
                    proc.wait(timeout=30)
            if "single" in outs and mode != "single" and outs["single"].is_file():
                row["max_prob_diff_vs_single"] = _diff(outs["single"], outs[mode])
            print(json.dumps(row))


if __name__ == "__main__":
    main()
