"""Monitor soak: 1,000 simulated frames through the driver into one dataset; nothing may be lost.

Acquires ``--frames`` frames from the simulated controller (time-accelerated) through
:class:`~qcodes_stmtip.drivers.nanonis_stm.NanonisSTM` into one QCoDeS run with a
:class:`~qcodes_stmtip.monitor.TipStateMonitor` attached (the 3-member paper-size
ensemble of ``benchmarks/monitor.py``), then reloads the run and prints: frames and
results stored, lost frames/results (must be 0), unclassified count and reasons, result
latency, and the process's resident memory (VmRSS) every 100 frames and at the end, so
growth would show. Exit status 1 if anything was lost.

Usage::

    .venv/bin/python benchmarks/monitor_soak.py              # 1000 frames, ~3-5 min on 2 cores
    .venv/bin/python benchmarks/monitor_soak.py --frames 200 --on-full unclassified
"""

from __future__ import annotations

import argparse
import collections
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--pixels", type=int, default=128)
    parser.add_argument("--time-acceleration", type=float, default=2000.0)
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--on-full", default="block", choices=("block", "unclassified"))
    parser.add_argument("--no-monitor", action="store_true",
                        help="acquire without the monitor (baseline for the memory numbers)")
    parser.add_argument("--keep-db", action="store_true", help="keep the temporary database")
    args = parser.parse_args()

    from monitor import ensemble  # benchmarks/monitor.py
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_by_run_spec,
        load_or_create_experiment,
    )
    from qcodes.instrument import Instrument
    from qcodes.parameters import ManualParameter

    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.monitor import TipStateMonitor
    from qcodes_stmtip.sim.controller import serve_simulator

    tmp = Path(tempfile.mkdtemp(prefix="monitor_soak_"))
    ens, what = ensemble()
    bundle = getattr(ens, "path", None) or save_bundle(ens, tmp / "bundle")
    initialise_or_create_database_at(tmp / "soak.db")
    exp = load_or_create_experiment("monitor_soak", sample_name="simulated hsi100")
    server = serve_simulator(surface="hsi100", seed=0, time_acceleration=args.time_acceleration)
    stm = NanonisSTM("stm_soak", address="127.0.0.1", port=server.port)
    callbacks = collections.Counter()
    rss = [(0, rss_mib())]
    try:
        stm.pixels(args.pixels)
        stm.lines(args.pixels)
        monitor = TipStateMonitor(bundle, queue_size=args.queue_size, on_full=args.on_full)
        monitor.on_state(lambda i, r: callbacks.update([r.state]))
        frame_index = ManualParameter("frame_index", initial_value=0)
        meas = Measurement(exp=exp, name="soak")
        meas.register_parameter(frame_index)
        meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
        if not args.no_monitor:
            monitor.register(meas, frame_index)
        rss.append((0, rss_mib()))
        t0 = time.perf_counter()
        with meas.run() as saver:
            for i in range(args.frames):
                stm.set_frame((i % 20) * 150e-9 - 1.5e-6, (i // 20 % 20) * 150e-9 - 1.5e-6,
                              20e-9, 20e-9, 0.0)
                image = stm.scan_image()
                saver.add_result((frame_index, i), (stm.scan_image, image))
                if not args.no_monitor:
                    monitor.submit(i, image, saver)
                if (i + 1) % 100 == 0:
                    rss.append((i + 1, rss_mib()))
                    print(f"  {i + 1:5d} frames  {time.perf_counter() - t0:7.1f} s  "
                          f"RSS {rss[-1][1]:7.1f} MiB", flush=True)
            results = [] if args.no_monitor else monitor.finish(saver, timeout=600)
        wall = time.perf_counter() - t0
        monitor.close()
        rss.append((args.frames, rss_mib()))
        run_id = saver.run_id
    finally:
        stm.close()
        Instrument.close_all()
        server.stop()

    if args.no_monitor:
        print(f"baseline without monitor: {args.frames} frames, wall {wall:.1f} s; RSS after the "
              f"first {rss[2][0]} frames {rss[2][1]:.0f} MiB, at the end {rss[-1][1]:.0f} MiB "
              f"(growth since: {rss[-1][1] - rss[2][1]:+.0f} MiB)")
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    ds = load_by_run_spec(captured_run_id=run_id)
    states = ds.get_parameter_data("tip_state")["tip_state"]
    image_name = [p for p in ds.parameters.split(",") if p.endswith("scan_image")][0]
    images = ds.get_parameter_data(image_name)[image_name]
    stored_idx = set(np.ravel(states["frame_index"]).astype(int).tolist())
    image_idx = set(np.unique(np.asarray(images["frame_index"])).astype(int).tolist())
    expected = set(range(args.frames))
    lost_results = len(expected - stored_idx)
    lost_frames = len(expected - image_idx)
    reasons = collections.Counter(r.reason.split(":")[0] for r in results if not r.classified)
    lat = np.array([r.latency_s for r in results])
    print(f"soak: {args.frames} frames {args.pixels}², {what}, on_full={args.on_full}, "
          f"queue {args.queue_size}; wall {wall:.1f} s ({args.frames / wall:.1f} frames/s)")
    print(f"  stored frames {len(image_idx)}, stored results {len(states['tip_state'])} "
          f"(distinct {len(stored_idx)}); lost frames {lost_frames}, lost results {lost_results}; "
          f"callbacks {sum(callbacks.values())}")
    print(f"  states {dict(callbacks)}; unclassified reasons {dict(reasons)}")
    print(f"  result latency median {np.median(lat) * 1e3:.0f} ms, p95 "
          f"{np.percentile(lat, 95) * 1e3:.0f} ms, max {lat.max() * 1e3:.0f} ms")
    print(f"  RSS: before monitor {rss[0][1]:.0f} MiB, after loading it {rss[1][1]:.0f} MiB, "
          f"after the first {rss[2][0]} frames {rss[2][1]:.0f} MiB, at the end {rss[-1][1]:.0f} MiB "
          f"(growth since: {rss[-1][1] - rss[2][1]:+.0f} MiB); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.keep_db:
        print(f"  database: {tmp / 'soak.db'}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if lost_frames or lost_results or len(states["tip_state"]) != args.frames else 0


if __name__ == "__main__":
    raise SystemExit(main())
