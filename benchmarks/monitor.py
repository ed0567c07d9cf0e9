"""Tip-state monitor benchmark: ensemble latency vs the naive path, FLOP efficiency, acquisition overhead.

Prints, on this machine's CPU (or GPU if TensorFlow sees one):

1. per-frame latency (median, p95) of the shipped ``hsi100`` bundle (feature members:
   ``Ensemble.predict``, the monitor's path for them); then, fused one-call folded
   ``tf.function`` (the monitor's path for CNN ensembles) vs Keras ``predict`` per member, for
   the first shipped bundle made of networks only (``au111``: VGG members trained on
   simulated frames) and for three paper-size (width 1) SqueezeNet-like members
   with random weights (the paper's FLOPs);
2. each ensemble's GFLOP per frame (convolutions + dense, counted from the layers), the
   GFLOP/s the fused path reaches, and the practical peak measured in the same run (a
   2048² float32 matmul in TensorFlow) — goal ≥ 75 % of it and ≤ 40 ms per frame (the
   efficiency goal is meaningful for the paper-size members; the compact shipped ones are
   bound by per-op overhead, not arithmetic);
3. wall time to acquire ``--frames`` simulated 128² frames through the driver into a
   QCoDeS dataset with and without the monitor, interleaved ``--pairs`` times, with the
   simulated controller in its own process as a real controller would be (``--simulator
   thread`` shares this process) — goal ≤ 2 % overhead — and where the time went;
   ``--durable both`` adds interleaved runs with the monitor's per-write database commit
   off (``TipStateMonitor(durable=False)``), which measures what durable writes cost;
4. the import time of ``qcodes_stmtip`` + driver creation, and that TensorFlow stays out;
5. with ``--flush-cost``: what one durable write costs per frame on its own — the monitor's
   writes to a ``DataSaver`` (a 128² frame row and a result row per frame) with and without
   the commit after each, interleaved, no simulator and no inference (so no noise from them);
6. with ``--watch``: the acquisition overhead of watching scans in progress (issue 14) —
   ``--frames`` frames with the monitor (as in 3) against the same with
   ``monitor.watch_scan(stm, saver, every_lines=--watch-every, abort=False)`` (the partial
   frame read and classified every k lines, never stopped, so both acquire the same lines),
   interleaved ``--pairs`` times — goal ≤ 2 %; with the partial checks posted, classified and
   dropped as stale per frame.

Usage::

    .venv/bin/python benchmarks/monitor.py                 # everything (~5 min on 2 cores)
    .venv/bin/python benchmarks/monitor.py --skip-acquisition --repeats 60
    .venv/bin/python benchmarks/monitor.py --skip-latency --frames 100 --pairs 3
    .venv/bin/python benchmarks/monitor.py --skip-latency --skip-acquisition --watch --pairs 3
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def shipped_ensemble(surface: str = "hsi100"):
    """The shipped default bundle of ``surface`` (members + tip-change model), or None if it is
    not installed."""
    from qcodes_stmtip.classify.bundle import BundleError, default_bundle_path, load_bundle

    try:
        return load_bundle(default_bundle_path(surface))
    except BundleError as exc:
        print(f"  (shipped {surface} bundle not available: {exc})")
        return None


def shipped_network_ensemble():
    """``(ensemble, name)`` of the first shipped bundle whose full-frame members are all networks
    (the monitor's fused folded path), or ``(None, "")``."""
    for surface in ("hsi100", "au111", "cu111"):
        ens = shipped_ensemble(surface)
        if ens is not None and ens.all_networks:
            return ens, surface
    return None, ""


def latency_of_predict(ens, what: str, repeats: int) -> None:
    """Print the latency of ``ens.predict`` on 128² frames: the monitor's path for ensembles
    with feature members (features computed once per frame, then every member)."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 1)).astype(np.float32)
    kinds = ", ".join(f"{m.name} ({m.architecture})" for m in ens.networks)
    print(f"{what}: {kinds}; path Ensemble.predict (features in numpy, members in scikit-learn)")
    x8 = np.repeat(x, 8, axis=0)
    for name, t in (("single frame", timed(lambda: ens.predict(x), repeats)),
                    ("batches of 8, per frame", timed(lambda: ens.predict(x8), max(5, repeats // 4)) / 8)):
        med = np.median(t)
        print(f"  {name:<26} median {med * 1e3:7.1f} ms  p95 {np.percentile(t, 95) * 1e3:7.1f} ms  "
              f"{1 / med:6.1f} frames/s")


def paper_size_ensemble(size: int = 128):
    """Three paper-size (width 1) SqueezeNet-like members with random weights (the paper's FLOPs)."""
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.taxonomy import CLASSES

    rng = np.random.default_rng(1)
    members = []
    for i in range(3):
        model = build_model("squeezenet", 4, size=size)
        model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
        members.append(Member(f"squeezenet_{i}", "squeezenet", model))
    return Ensemble("hsi100", CLASSES["hsi100"], members)


def ensemble():
    """``(ensemble, description)``: the shipped hsi100 bundle, else the paper-size members."""
    shipped = shipped_ensemble()
    if shipped is not None:
        return shipped, "shipped hsi100 bundle"
    return paper_size_ensemble(), "3 paper-size SqueezeNets (random weights)"


def networks(ens) -> list:
    """Every network the fused call runs: the members and the tip-change network."""
    return [m.model for m in ens.members] + ([ens.tip_change.model] if ens.tip_change else [])


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


def latency_of(ens, what: str, repeats: int, peak: float) -> None:
    """Print fused vs naive latency of ``ens`` on 128² frames and its share of ``peak``."""
    from qcodes_stmtip.classify.inference.fused import FusedEnsemble

    fused = FusedEnsemble(ens)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 1)).astype(np.float32)
    views = [len(ens.member_views(x))] * len(ens.members)
    if ens.tip_change is not None:
        views.append(len(ens.tip_change_views(x)))
    gflop = sum(v * flops_per_frame(m) for v, m in zip(views, networks(ens), strict=True)) / 1e9
    print(f"{what}: {len(networks(ens))} networks, {gflop:.3f} GFLOP per 128² frame; device "
          f"{fused.device}; path {fused.path}")
    t_fused = timed(lambda: fused(x), repeats)
    t_naive = timed(lambda: ens.predict(x), max(5, repeats // 4))
    x8 = np.repeat(x, 8, axis=0)
    t_batch = timed(lambda: fused(x8), max(5, repeats // 4)) / 8
    for name, t in (("fused folded tf.function", t_fused), ("Keras predict per member", t_naive),
                    ("fused, batches of 8", t_batch)):
        med = np.median(t)
        print(f"  {name:<26} median {med * 1e3:7.1f} ms  p95 {np.percentile(t, 95) * 1e3:7.1f} ms  "
              f"{1 / med:6.1f} frames/s  {gflop / med:6.1f} GFLOP/s ({gflop / med / peak:4.0%} of peak)")
    print(f"  best single-frame fused call {np.min(t_fused) * 1e3:.1f} ms = "
          f"{gflop / np.min(t_fused):.0f} GFLOP/s = {gflop / np.min(t_fused) / peak:.0%} of peak; "
          f"speed-up fused vs naive (medians) {np.median(t_naive) / np.median(t_fused):.1f}x")


def latency(repeats: int, tta: bool = False) -> None:
    peak = matmul_peak()
    shipped, paper = shipped_ensemble(), paper_size_ensemble()
    suffix = ""
    if tta:  # what `stmtip train` bundles do by default
        for ens in (shipped, paper):
            if ens is not None:
                ens.tta, ens.tip_change_vertical_flip = True, True
        suffix = ", test-time views (8 per member, 4 for the tip-change net)"
    if shipped is not None and not shipped.all_networks:
        latency_of_predict(shipped, "shipped hsi100 bundle (real-data feature members)", repeats)
        shipped, name = shipped_network_ensemble()
        if shipped is not None and tta:
            shipped.tta, shipped.tip_change_vertical_flip = True, True
        suffix = f" {name} (CNNs trained on simulated frames)" + suffix
    else:
        suffix = " hsi100" + suffix
    if shipped is not None:
        latency_of(shipped, "shipped" + suffix, repeats, peak)
    latency_of(paper, "3 x paper-size SqueezeNet-like (width 1, random weights)"
               + (", test-time views" if tta else ""), repeats, peak)
    peak = max(peak, matmul_peak())
    print(f"practical peak (TF 2048² float32 matmul, best of 20 before and 20 after; the percentages "
          f"above use the first): {peak:.1f} GFLOP/s")


@contextmanager
def simulator(where: str, acceleration: float):
    """Yield the port of a simulated controller: a separate ``stmtip sim serve`` process (like a
    real controller, which never shares the acquisition PC's CPU with its scan) or a thread here."""
    if where == "thread":
        from qcodes_stmtip.sim.controller import serve_simulator

        server = serve_simulator(surface="hsi100", seed=0, time_acceleration=acceleration)
        try:
            yield server.port
        finally:
            server.stop()
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "qcodes_stmtip.cli", "sim", "serve", "--surface", "hsi100",
         "--seed", "0", "--time-acceleration", str(acceleration), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r":(\d+) ", line)
        if not match:
            raise RuntimeError(f"simulator did not report its port: {line!r}")
        yield int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(10)


def acquisition(frames: int, acceleration: float, pairs: int, where: str, bundle_dir: Path,
                durable: str = "on") -> None:
    """Acquire ``frames`` frames without and with the monitor, ``pairs`` times interleaved.

    ``durable``: the monitor's per-write commit ``"on"`` (its default), ``"off"``, or
    ``"both"`` (a third interleaved run per pair, so the commit's cost is measured).
    """
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

    ens, what = ensemble()
    bundle = getattr(ens, "path", None) or save_bundle(ens, bundle_dir / "bundle")
    initialise_or_create_database_at(bundle_dir / "bench.db")
    exp = load_or_create_experiment("monitor_bench", sample_name="simulated hsi100")
    with simulator(where, acceleration) as port:
        stm = NanonisSTM("stm_bench", address="127.0.0.1", port=port)
        stm.pixels(128)
        stm.lines(128)
        stm.set_frame(0.0, 0.0, 20e-9, 20e-9, 0.0)
        monitor = TipStateMonitor(bundle)
        try:
            modes = {"on": (None, True), "off": (None, False), "both": (None, False, True)}[durable]
            walls: dict[bool | None, list[float]] = {}
            for mode in modes * pairs:
                use = mode is not None
                if use:
                    monitor.durable = mode
                frame_index = ManualParameter("frame_index", initial_value=0)
                meas = Measurement(exp=exp, name=f"bench_monitor_{mode}")
                meas.register_parameter(frame_index)
                meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
                if use:
                    monitor.register(meas, frame_index)
                t_scan = t_save = t_submit = 0.0
                t0 = time.perf_counter()
                with meas.run() as saver:
                    for i in range(frames):
                        ta = time.perf_counter()
                        image = stm.scan_image()
                        tb = time.perf_counter()
                        saver.add_result((frame_index, i), (stm.scan_image, image))
                        tc = time.perf_counter()
                        if use:
                            monitor.submit(i, image, saver)
                        t_scan += tb - ta
                        t_save += tc - tb
                        t_submit += time.perf_counter() - tc
                    t_loop = time.perf_counter() - t0
                    if use:
                        results = monitor.finish(saver)
                wall = time.perf_counter() - t0
                walls.setdefault(mode, []).append(wall)
                split = (f"scan_image {t_scan:.2f} s, saving frames {t_save:.2f} s, "
                         f"monitor.submit+writes {t_submit:.2f} s")
                if use:
                    ds = load_by_run_spec(captured_run_id=saver.run_id)
                    stored = len(ds.get_parameter_data("tip_state")["tip_state"]["tip_state"])
                    lat = np.array([r.latency_s for r in results])
                    label = "with monitor:   " if mode else "monitor, no commit per write:"
                    print(f"  {label} {wall:6.2f} s ({split}; finish {wall - t_loop:.2f} s); "
                          f"stored {stored}/{frames} results, result latency median "
                          f"{np.median(lat) * 1e3:.0f} ms, max {lat.max() * 1e3:.0f} ms")
                else:
                    print(f"  without monitor: {wall:6.2f} s ({split})")
            base = min(walls[None])
            for mode in modes[1:]:
                mon = min(walls[mode])
                kind = "durable monitor" if mode else "monitor without per-write commits"
                print(f"acquisition of {frames} frames (128², {what}, simulator in a {where}, time "
                      f"acceleration {acceleration:g}, {frames * 128 * 0.2 / acceleration:.1f} s of "
                      f"scanning): best of {pairs} without {base:.2f} s, with {kind} {mon:.2f} s -> "
                      f"overhead {100 * (mon - base) / base:+.1f} %; median of {pairs}: "
                      f"{100 * (np.median(walls[mode]) - np.median(walls[None])) / np.median(walls[None]):+.1f} %")
        finally:
            monitor.close()
            stm.close()
            Instrument.close_all()


def watch_overhead(frames: int, acceleration: float, pairs: int, where: str, bundle_dir: Path,
                   every_lines: int) -> None:
    """Acquire ``frames`` frames with the monitor, watched and not, ``pairs`` times interleaved (6.)."""
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )
    from qcodes.instrument import Instrument

    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM, frame_index_parameter
    from qcodes_stmtip.monitor import TipStateMonitor

    ens, what = ensemble()
    bundle = getattr(ens, "path", None) or save_bundle(ens, bundle_dir / "bundle")
    initialise_or_create_database_at(bundle_dir / "watch.db")
    exp = load_or_create_experiment("watch_bench", sample_name="simulated hsi100")
    with simulator(where, acceleration) as port:
        stm = NanonisSTM("stm_watch_bench", address="127.0.0.1", port=port)
        stm.pixels(128)
        stm.lines(128)
        stm.set_frame(0.0, 0.0, 20e-9, 20e-9, 0.0)
        monitor = TipStateMonitor(bundle)
        try:
            walls: dict[bool, list[float]] = {}
            for watched in (False, True) * pairs:
                frame_index = frame_index_parameter()
                meas = Measurement(exp=exp, name=f"bench_watch_{watched}")
                meas.register_parameter(frame_index)
                meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
                for record in stm.frame_parameters:
                    meas.register_parameter(record, setpoints=(frame_index,))
                monitor.register(meas, frame_index, partial=watched)
                t0 = time.perf_counter()
                with meas.run() as saver:
                    watcher = monitor.watch_scan(stm, saver, every_lines=every_lines) if watched else None
                    for i in range(frames):
                        if watcher is not None:
                            watcher.scan(i)
                        else:
                            image = stm.scan_image()
                            saver.add_result((frame_index, i), (stm.scan_image, image),
                                             *((p, p()) for p in stm.frame_parameters))
                            monitor.submit(i, image, saver)
                    t_loop = time.perf_counter() - t0
                    monitor.finish(saver)
                wall = time.perf_counter() - t0
                walls.setdefault(watched, []).append(wall)
                if watcher is not None:
                    recs = watcher.records
                    posted = sum(r.posted for r in recs)
                    checks = sum(len(r.checks) for r in recs)
                    lat = [c.latency_s for r in recs for c in r.checks]
                    print(f"  watched:   {wall:6.2f} s (loop {t_loop:.2f} s; {posted / frames:.1f} partial "
                          f"frames posted per frame, {checks / frames:.1f} classified, "
                          f"{sum(r.dropped for r in recs) / frames:.1f} dropped as stale; check latency "
                          f"median {np.median(lat) * 1e3:.0f} ms; stopped {sum(r.stopped for r in recs)})")
                else:
                    print(f"  unwatched: {wall:6.2f} s (loop {t_loop:.2f} s)")
            base, watch = min(walls[False]), min(walls[True])
            med = np.median(walls[True]) / np.median(walls[False]) - 1
            print(f"watching every {every_lines} lines, {frames} frames (128², {what}, simulator in a "
                  f"{where}, time acceleration {acceleration:g}, {frames * 128 * 0.2 / acceleration:.1f} s "
                  f"of scanning): best of {pairs} unwatched {base:.2f} s, watched {watch:.2f} s -> "
                  f"overhead {100 * (watch - base) / base:+.1f} %; median of {pairs}: {100 * med:+.1f} %")
        finally:
            monitor.close()
            stm.close()
            Instrument.close_all()


def flush_cost(frames: int, pairs: int, bundle_dir: Path) -> None:
    """Per-frame cost of the durable monitor's commit after each write (see module doc, 5)."""
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )
    from qcodes.parameters import ManualParameter, Parameter, ParameterWithSetpoints
    from qcodes.validators import Arrays

    from qcodes_stmtip.monitor.results import ResultParameters, TipStateResult
    from qcodes_stmtip.taxonomy import CLASSES

    initialise_or_create_database_at(bundle_dir / "flush.db")
    exp = load_or_create_experiment("flush_cost", sample_name="synthetic")
    ys = Parameter("scan_y", get_cmd=lambda: np.arange(128.0), vals=Arrays(shape=(128,)))
    xs = Parameter("scan_x", get_cmd=lambda: np.arange(128.0), vals=Arrays(shape=(128,)))
    image = ParameterWithSetpoints("scan_image", setpoints=(ys, xs), vals=Arrays(shape=(128, 128)),
                                   get_cmd=None, set_cmd=None)
    classes = tuple(CLASSES["hsi100"])
    params = ResultParameters(classes, ("a", "b", "c"), lambda name: None)
    rng = np.random.default_rng(0)
    data = [rng.normal(size=(128, 128)) for _ in range(frames)]
    result = TipStateResult(0, classes[0], "good", {c: 0.25 for c in classes}, (classes[0],) * 3,
                            0.1, time.time())
    per_frame: dict[bool, list[float]] = {}
    for durable in (False, True) * pairs:
        frame_index = ManualParameter("frame_index", initial_value=0)
        meas = Measurement(exp=exp, name=f"flush_cost_{durable}")
        meas.register_parameter(frame_index)
        meas.register_parameter(image, setpoints=(frame_index,))
        params.register(meas, frame_index)
        with meas.run() as saver:
            t0 = time.perf_counter()
            for i, frame in enumerate(data):
                saver.add_result((frame_index, i), (image, frame))
                saver.add_result((frame_index, i), *params.values(result))
                if durable:
                    saver.flush_data_to_database(block=True)
            saver.flush_data_to_database(block=True)
            per_frame.setdefault(durable, []).append((time.perf_counter() - t0) / frames)
    off, on = np.median(per_frame[False]), np.median(per_frame[True])
    print(f"monitor writes of {frames} 128² frames + results, median of {pairs}: "
          f"{off * 1e3:.2f} ms/frame committed every write_period, {on * 1e3:.2f} ms/frame "
          f"committed after each frame -> durable commit {1e3 * (on - off):+.2f} ms/frame")


def import_time() -> None:
    code = ("import sys, time; t = time.perf_counter(); import qcodes_stmtip, qcodes_stmtip.monitor; "
            "from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM; "
            "NanonisSTM('s', port=6501, connect_on_init=False).close(); "
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
    parser.add_argument("--pairs", type=int, default=2,
                        help="acquisition runs without/with the monitor, interleaved [2]")
    parser.add_argument("--simulator", choices=("process", "thread"), default="process",
                        help="simulated controller in its own process (like hardware) or a thread here")
    parser.add_argument("--durable", choices=("on", "off", "both"), default="on",
                        help="the monitor's commit per write: on (default), off, or both interleaved")
    parser.add_argument("--flush-cost", action="store_true",
                        help="also measure the durable commit's cost per frame on its own (see 5.)")
    parser.add_argument("--watch", action="store_true",
                        help="also measure the acquisition overhead of watching scans (see 6.)")
    parser.add_argument("--watch-every", type=int, default=16,
                        help="lines between partial checks when watching [16]")
    parser.add_argument("--skip-acquisition", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--tta", action="store_true",
                        help="time the ensembles with test-time symmetry views (stmtip train's default)")
    args = parser.parse_args()
    import_time()
    if not args.skip_latency:
        latency(args.repeats, args.tta)
    if args.flush_cost:
        with tempfile.TemporaryDirectory() as tmp:
            flush_cost(args.frames, max(args.pairs, 3), Path(tmp))
    if not args.skip_acquisition:
        with tempfile.TemporaryDirectory() as tmp:
            acquisition(args.frames, args.time_acceleration, args.pairs, args.simulator, Path(tmp),
                        args.durable)
    if args.watch:
        with tempfile.TemporaryDirectory() as tmp:
            watch_overhead(args.frames, args.time_acceleration, args.pairs, args.simulator, Path(tmp),
                           args.watch_every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
