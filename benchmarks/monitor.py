"""Tip-state monitor benchmark: ensemble latency vs the naive path, FLOP efficiency, acquisition overhead.

Prints, on this machine's CPU (or GPU if TensorFlow sees one):

1. per-frame latency (median, p95) and throughput of a 3-member ensemble on 128² frames,
   fused one-call ``tf.function`` (the monitor's path) vs Keras ``predict`` per member;
   the shipped ``hsi100`` bundle if one is installed, else three paper-size (width 1)
   SqueezeNet-like members with random weights (same FLOPs);
2. the ensemble's GFLOP per frame (convolutions + dense, counted from the layers), the
   GFLOP/s the fused path reaches, and the practical peak measured in the same run (a
   2048² float32 matmul in TensorFlow) — goal ≥ 75 % of it and ≤ 40 ms per frame;
3. wall time to acquire ``--frames`` simulated 128² frames through the driver into a
   QCoDeS dataset with and without the monitor (goal ≤ 2 % overhead);
4. the import time of ``qcodes_stmtip`` + driver creation, and that TensorFlow stays out.

Usage::

    .venv/bin/python benchmarks/monitor.py                 # everything (~3 min on 2 cores)
    .venv/bin/python benchmarks/monitor.py --frames 20 --repeats 30
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def ensemble(size: int = 128):
    """The shipped hsi100 bundle if installed, else 3 random paper-size SqueezeNet members."""
    from qcodes_stmtip.classify.bundle import BundleError, default_bundle_path, load_bundle

    try:
        return load_bundle(default_bundle_path("hsi100")), "shipped hsi100 bundle"
    except BundleError:
        pass
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.sim.classes import CLASSES

    members = [Member(f"squeezenet_{i}", "squeezenet", build_model("squeezenet", 4, size=size))
               for i in range(3)]
    return Ensemble("hsi100", CLASSES["hsi100"], members), "3 x SqueezeNet-like (width 1, random weights)"


def flops_per_frame(model) -> float:
    """Multiply-adds × 2 of the Conv2D and Dense layers of one frame (nested models included)."""
    from qcodes_stmtip.classify.keras_backend import keras

    total = 0.0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2.0 * h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2.0 * cin * cout
    return total


def timed(fn, repeats: int) -> np.ndarray:
    fn()
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out)


def matmul_peak(n: int = 2048, repeats: int = 20) -> float:
    """Practical peak GFLOP/s: the fastest of ``repeats`` float32 n×n matmuls in TensorFlow
    (best, not median: on a shared machine the median measures the neighbours' load)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    t = timed(lambda: f().numpy(), repeats)
    return 2.0 * n**3 / np.min(t) / 1e9


def latency(repeats: int) -> None:
    from qcodes_stmtip.monitor.inference import FusedEnsemble

    ens, what = ensemble()
    fused = FusedEnsemble(ens)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 1)).astype(np.float32)
    gflop = sum(flops_per_frame(m.model) for m in ens.members) / 1e9
    print(f"ensemble: {what}; {gflop:.2f} GFLOP per 128² frame; device {fused.device}")
    peak = matmul_peak()
    t_fused = timed(lambda: fused(x), repeats)
    t_naive = timed(lambda: ens.predict(x), max(5, repeats // 3))
    x8 = np.repeat(x, 8, axis=0)
    t_batch = timed(lambda: fused(x8), max(5, repeats // 3)) / 8
    peak = max(peak, matmul_peak())  # again after, so a busy moment does not deflate it
    for name, t in (("fused tf.function", t_fused), ("Keras predict per member", t_naive),
                    ("fused, batches of 8", t_batch)):
        med = np.median(t)
        print(f"  {name:<26} median {med * 1e3:7.1f} ms  p95 {np.percentile(t, 95) * 1e3:7.1f} ms  "
              f"{1 / med:6.1f} frames/s  {gflop / med:6.1f} GFLOP/s ({gflop / med / peak:4.0%} of peak)")
    print(f"  practical peak (TF 2048² float32 matmul, best of 40, before and after): "
          f"{peak:.1f} GFLOP/s; best single-frame fused call {np.min(t_fused) * 1e3:.1f} ms = "
          f"{gflop / np.min(t_fused) / peak:.0%} of peak")
    print(f"  speed-up fused vs naive: {np.median(t_naive) / np.median(t_fused):.1f}x")


def acquisition(frames: int, acceleration: float, bundle_dir: Path) -> None:
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

    ens, what = ensemble()
    bundle = getattr(ens, "path", None) or save_bundle(ens, bundle_dir / "bundle")
    initialise_or_create_database_at(bundle_dir / "bench.db")
    exp = load_or_create_experiment("monitor_bench", sample_name="simulated hsi100")
    server = serve_simulator(surface="hsi100", seed=0, time_acceleration=acceleration)
    stm = NanonisSTM("stm_bench", address="127.0.0.1", port=server.port)
    stm.pixels(128)
    stm.lines(128)
    stm.set_frame(0.0, 0.0, 20e-9, 20e-9, 0.0)
    monitor = TipStateMonitor(bundle)
    try:
        walls = {}
        for use in (False, True, False, True):
            frame_index = ManualParameter("frame_index", initial_value=0)
            meas = Measurement(exp=exp, name=f"bench_monitor_{use}")
            meas.register_parameter(frame_index)
            meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
            if use:
                monitor.register(meas, frame_index)
            t0 = time.perf_counter()
            with meas.run() as saver:
                for i in range(frames):
                    image = stm.scan_image()
                    saver.add_result((frame_index, i), (stm.scan_image, image))
                    if use:
                        monitor.submit(i, image, saver)
                if use:
                    t_loop = time.perf_counter() - t0
                    results = monitor.finish(saver)
            wall = time.perf_counter() - t0
            walls.setdefault(use, []).append(wall)
            if use:
                ds = load_by_run_spec(captured_run_id=saver.run_id)
                stored = len(ds.get_parameter_data("tip_state")["tip_state"]["tip_state"])
                lat = np.array([r.latency_s for r in results])
                print(f"  with monitor: {wall:.2f} s (loop {t_loop:.2f} s, finish "
                      f"{wall - t_loop:.2f} s); stored {stored}/{frames} results; "
                      f"result latency median {np.median(lat) * 1e3:.0f} ms, max {lat.max() * 1e3:.0f} ms")
            else:
                print(f"  without monitor: {wall:.2f} s")
        base, mon = min(walls[False]), min(walls[True])
        print(f"acquisition of {frames} frames (128², {what}, time acceleration {acceleration:g}, "
              f"{frames * 128 * 0.2 / acceleration:.1f} s of scanning): best of 2 without "
              f"{base:.2f} s, with {mon:.2f} s -> overhead {100 * (mon - base) / base:+.1f} %")
    finally:
        monitor.close()
        stm.close()
        Instrument.close_all()
        server.stop()


def import_time() -> None:
    code = ("import sys, time; t = time.perf_counter(); import qcodes_stmtip, qcodes_stmtip.monitor; "
            "from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM; "
            "NanonisSTM('s', port=6501).close(); "
            "print(time.perf_counter() - t, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, tf_loaded = out.stdout.split()
    tf = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); "
                         "import tensorflow; print(time.perf_counter() - t)"],
                        capture_output=True, text=True, check=True)
    print(f"import qcodes_stmtip + monitor + create driver: {float(seconds):.2f} s, "
          f"TensorFlow imported: {tf_loaded}; (import tensorflow alone: {float(tf.stdout):.2f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60, help="timed inference calls [60]")
    parser.add_argument("--frames", type=int, default=100, help="frames per acquisition run [100]")
    parser.add_argument("--time-acceleration", type=float, default=100.0,
                        help="simulated seconds per wall second [100]")
    parser.add_argument("--skip-acquisition", action="store_true")
    args = parser.parse_args()
    import_time()
    latency(args.repeats)
    if not args.skip_acquisition:
        with tempfile.TemporaryDirectory() as tmp:
            acquisition(args.frames, args.time_acceleration, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
