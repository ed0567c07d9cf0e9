"""Frames per second of :func:`qcodes_stmtip.sim.render_scan` at 128² and 512², per surface.

Usage: ``.venv/bin/python benchmarks/sim_speed.py [--seconds 3]``. Each frame draws a
random class tip, a random 5–40 nm frame at a random rotation and a fresh instrument;
prints one line per (surface, size): wall-clock rate and rate per CPU second (the
latter is what one free core would give on a shared machine). ``--jobs N`` also runs N
independent renderers in parallel processes (as ``stmtip sim dataset --jobs N`` does) and
prints their summed wall-clock rate: the machine's throughput.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

from qcodes_stmtip.sim import CLASSES, SURFACES, ScanGeometry, render_scan, sample_tip


def bench(surface: str, pixels: int, seconds: float, seed: int = 0) -> tuple[float, float, int]:
    """(wall-clock frames/s, CPU-time frames/s, frames rendered)."""
    rng = np.random.default_rng(seed)
    jobs = []
    for _ in range(400):
        label = str(rng.choice(CLASSES[surface]))
        size = float(np.exp(rng.uniform(np.log(5e-9), np.log(40e-9))))
        geo = ScanGeometry(size, size, pixels, pixels, *rng.uniform(-1e-6, 1e-6, 2), float(rng.uniform(0, 360)))
        jobs.append((sample_tip(surface, label, rng), geo, int(rng.integers(0, 50))))
    render_scan(surface, jobs[0][0], jobs[0][1], rng, sample_seed=jobs[0][2])  # warm caches
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds and n < len(jobs):
        tip, geo, sample = jobs[n]
        render_scan(surface, tip, geo, rng, sample_seed=sample)
        n += 1
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu), n


def _bench_worker(job: tuple[str, int, float, int]) -> tuple[float, float, int]:
    surface, pixels, seconds, seed = job
    return bench(surface, pixels, seconds, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement")
    parser.add_argument("--jobs", type=int, default=1,
                        help="also measure N renderer processes in parallel (default 1: off)")
    args = parser.parse_args()
    for pixels in (128, 512):
        for surface in SURFACES:
            fps, cpu_fps, n = bench(surface, pixels, args.seconds)
            print(f"{surface:7s} {pixels:4d}x{pixels:<4d} {fps:8.1f} frames/s wall "
                  f"{cpu_fps:8.1f} frames/CPU-s  ({n} frames)")
            if args.jobs > 1:
                with mp.get_context("spawn").Pool(args.jobs) as pool:
                    pool.map(_bench_worker, [(surface, pixels, 0.2, s) for s in range(args.jobs)])
                    runs = pool.map(_bench_worker,
                                    [(surface, pixels, args.seconds, s) for s in range(args.jobs)])
                total = sum(r[0] for r in runs)
                print(f"{surface:7s} {pixels:4d}x{pixels:<4d} {total:8.1f} frames/s wall "
                      f"with {args.jobs} processes ({sum(r[2] for r in runs)} frames)")


if __name__ == "__main__":
    main()
