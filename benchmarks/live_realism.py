"""How far the live simulator's H:Si(100) frames are from real ones, per class, in the classifier's own features.

A statistics discriminator: the 120 frame features (:mod:`qcodes_stmtip.classify.features`) of real frames of
each class in ``../shared/data/hsi100`` (tip-change frames left out) against simulated frames of the same class
rendered by :func:`~qcodes_stmtip.sim.frames.render_scan` at one scan geometry (default: the demo's,
:data:`qcodes_stmtip.demo.DEMO_FRAMES`), both through the classifier's 128² preprocessing. For every feature,
the difference of the medians in units of the real frames' standard deviation; printed: the mean |d| per class
and the largest ones, and the share of clean simulated frames the real-trained bundle flags as a tip change.
``--feedback-hz LO-HI`` redraws the simulated z-loop bandwidth log-uniformly in that range (the simulator's own
draw is 40–400 Hz), to see which instrument model the real frames favour.

    .venv/bin/python benchmarks/live_realism.py                            # the demo's frames, ~1 min
    .venv/bin/python benchmarks/live_realism.py --pixels 300
    .venv/bin/python benchmarks/live_realism.py --feedback-hz 150-1500
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
from table1_rows import command_line

from qcodes_stmtip.demo import DEMO_FRAMES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hsi100"
DEFAULT_BUNDLE = REPO / "qcodes_stmtip" / "classify" / "bundles" / "hsi100"


def parse_args() -> argparse.Namespace:
    size_m, pixels, angle = DEMO_FRAMES["hsi100"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="real labelled frames [../shared/data/hsi100]")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="real-trained bundle [classify/bundles/hsi100]")
    p.add_argument("--frame-nm", type=float, default=size_m * 1e9, help="frame side, nm [the demo's]")
    p.add_argument("--pixels", type=int, default=pixels, help="pixels = lines [the demo's]")
    p.add_argument("--angle", type=float, default=angle, help="scan angle, deg [the demo's]")
    p.add_argument("--feedback-hz", default=None, help="LO-HI: redraw the z-loop bandwidth in this range, Hz")
    p.add_argument("--per-class", type=int, default=100, help="simulated frames per class [100]")
    p.add_argument("--real-per-class", type=int, default=300, help="real frames per class at most [300]")
    p.add_argument("--top", type=int, default=4, help="largest differences printed per class [4]")
    p.add_argument("--seed", type=int, default=5)
    return p.parse_args()


def simulated(label: str, count: int, args: argparse.Namespace, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` clean forward frames of class ``label`` at the chosen geometry (heights in m)."""
    from qcodes_stmtip.sim.frames import render_scan
    from qcodes_stmtip.sim.geometry import ScanGeometry
    from qcodes_stmtip.sim.realism import sample_instrument
    from qcodes_stmtip.sim.tips import sample_tip

    loop = [float(v) for v in args.feedback_hz.split("-")] if args.feedback_hz else None
    size = args.frame_nm * 1e-9
    frames: list[np.ndarray] = []
    for _ in range(20 * count):  # areas that cannot show the class are skipped; bounded, never a hang
        if len(frames) == count:
            break
        tip = sample_tip("hsi100", label, rng)
        instrument = sample_instrument(rng)
        if loop:
            hz = math.exp(rng.uniform(math.log(loop[0]), math.log(loop[1])))
            instrument = dataclasses.replace(instrument, feedback_hz=hz)
        cx, cy = rng.uniform(-1.5e-6, 1.5e-6, 2)
        geometry = ScanGeometry(size, size, args.pixels, args.pixels, float(cx), float(cy), args.angle)
        try:
            scan = render_scan("hsi100", tip, geometry, rng, sample_seed=int(rng.integers(1000)),
                               scan_up=bool(rng.random() < 0.5), instrument=instrument)
        except ValueError:  # this sample area cannot show the class
            continue
        frames.append(scan.forward)
    if not frames:
        raise SystemExit(f"no simulated {label} frame could be rendered at this geometry")
    return frames


def main() -> int:
    args = parse_args()
    from qcodes_stmtip.classify.bundle import load_bundle
    from qcodes_stmtip.classify.dataset_images import load_images
    from qcodes_stmtip.classify.features import feature_names, frame_features
    from qcodes_stmtip.classify.labels import load_labels
    from qcodes_stmtip.classify.preprocess import preprocess_batch

    if not (args.data / "labels.csv").is_file():
        print(f"no real data at {args.data}: nothing to compare with")
        return 2
    t0 = time.perf_counter()
    real = load_labels(args.data, "hsi100")
    rng = np.random.default_rng(args.seed)
    names = feature_names(128)
    ens = load_bundle(args.bundle, "hsi100")
    loop = f"z loop {args.feedback_hz} Hz" if args.feedback_hz else "the simulator's z loop (40–400 Hz)"
    print(f"live simulator vs real H:Si(100) frames: {args.frame_nm:g} nm, {args.pixels}², {args.angle:g}°, {loop}; "
          f"{args.per_class} simulated frames per class; d = (sim median − real median) / real s.d. per feature")
    print(f"{'class':<20} {'real':>5} {'mean |d|':>9} {'tip-change flags':>17}  largest |d|")
    for c, label in enumerate(real.classes):
        idx = np.flatnonzero((real.labels == c) & ~real.tip_change)
        idx = rng.choice(idx, min(len(idx), args.real_per_class), replace=False)
        real_f = frame_features(load_images(real.subset(np.sort(idx)), 128, progress=False).images)
        images = preprocess_batch(simulated(label, args.per_class, args, rng), 128)
        sim_f = frame_features(images)
        d = (np.median(sim_f, 0) - np.median(real_f, 0)) / (real_f.std(0) + 1e-9)
        flags = ens.predict(images).tip_change_probability
        flagged = float(np.mean(flags >= ens.tip_change_threshold)) if flags is not None else float("nan")
        top = np.argsort(-np.abs(d))[: args.top]
        print(f"{label:<20} {len(idx):>5} {np.mean(np.abs(d)):>9.3f} {flagged:>17.0%}  "
              + ", ".join(f"{names[i]} {d[i]:+.1f}" for i in top), flush=True)
    print(f"{time.perf_counter() - t0:.0f} s; command: {command_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
