"""The demo's frames through both shipped H:Si(100) bundles: which one should ``stmtip demo`` classify with?

Renders ``--count`` simulated frames at the demo's geometry (:func:`qcodes_stmtip.demo.demo_geometry`:
4 nm, 128 px, scan angle 45°, centres within ±1.5 µm; ``--frame-nm``/``--pixels``/``--angle`` change it) with
:func:`~qcodes_stmtip.classify.default_bundles.geometry_set` — the four classes in turn, each frame on a
fresh simulated sample, apex clean unless ``--tip-change-p`` — and scores each bundle on them
(default: ``classify/bundles/hsi100``, trained on real frames, and ``classify/bundles/hsi100-sim``,
trained on simulated frames only):

* good/bad AUROC (P(bad) = sum of the bad classes' mean probability against the true class's
  good/bad) and four-class AUROC;
* the demo's agreement line, counted as ``stmtip demo`` counts it
  (:func:`qcodes_stmtip.conditioning.report.truth_agreement`): the bundle's verdict
  (:meth:`~qcodes_stmtip.classify.ensemble.Ensemble.good_bad`: the thresholded decision, a flagged
  tip change is bad) against the good/bad of the true class; N is every frame, an ``uncertain``
  verdict never agrees.

    .venv/bin/python benchmarks/demo_bundles.py                 # 240 frames, seed 30000, ~1-2 min on 2 cores
    .venv/bin/python benchmarks/demo_bundles.py --count 400 --tip-change-p 0.15

The demo's own frames follow its run (mostly the bad start tip); these are balanced over the classes,
so an AUROC is defined.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from table1_rows import command_line

from qcodes_stmtip.demo import DEMO_ANGLE_DEG, DEMO_FRAME_M, DEMO_PIXELS

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "qcodes_stmtip" / "classify" / "bundles"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundles", type=Path, nargs="+", default=[BUNDLES / "hsi100", BUNDLES / "hsi100-sim"],
                   help="bundles to score [classify/bundles/hsi100 classify/bundles/hsi100-sim]")
    p.add_argument("--surface", default="hsi100", choices=("hsi100", "au111", "cu111"),
                   help="simulated surface (give --bundles and the demo's metal frame with it) [hsi100]")
    p.add_argument("--count", type=int, default=240, help="frames rendered (classes in turn) [240]")
    p.add_argument("--seed", type=int, default=30_000, help="render seed [30000]")
    p.add_argument("--tip-change-p", type=float, default=0.0,
                   help="share of frames whose apex changes during the frame [0]")
    p.add_argument("--frame-nm", type=float, default=DEMO_FRAME_M * 1e9, help="frame side, nm [the demo's]")
    p.add_argument("--pixels", type=int, default=DEMO_PIXELS, help="pixels = lines per frame [the demo's]")
    p.add_argument("--angle", type=float, default=DEMO_ANGLE_DEG, help="scan angle, deg [the demo's]")
    p.add_argument("--degrade", action="store_true",
                   help="domain-randomise the frames as the training sets are (sim/degrade.py)")
    return p.parse_args()


def score_bundle(path: Path, images: np.ndarray, labels: np.ndarray, surface: str = "hsi100") -> dict:
    """AUROCs and the demo's agreement count of the bundle at ``path`` on ``images``."""
    from qcodes_stmtip.classify.bundle import load_bundle
    from qcodes_stmtip.classify.metrics import good_bad_scores, score

    t0 = time.perf_counter()
    ens = load_bundle(path, surface)
    pred = ens.predict(images)
    seconds = time.perf_counter() - t0
    good = np.array([c in ens.good_classes for c in ens.classes])
    truth = np.where(good[labels], "good", "bad")
    verdict = ens.good_bad(pred)
    return {
        "good_bad_auroc": good_bad_scores(labels, pred.mean, pred.vote_class, ens.classes,
                                          ens.good_classes)["auroc"],
        "four_class_auroc": score(labels, pred.mean, ens.classes, predictions=pred.vote_class).mean_auroc,
        "agree": int(np.sum(verdict == truth)),
        "frames": len(labels),
        "uncertain": int(np.sum(verdict == "uncertain")),
        "called_good_truth_bad": int(np.sum((verdict == "good") & (truth == "bad"))),
        "called_bad_truth_good": int(np.sum((verdict == "bad") & (truth == "good"))),
        "per_class": {c: {v: int(np.sum(verdict[labels == k] == v)) for v in ("good", "bad", "uncertain")}
                      for k, c in enumerate(ens.classes)},
        "seconds": seconds,
    }


def main() -> int:
    args = parse_args()
    from qcodes_stmtip.classify.bundle import read_manifest
    from qcodes_stmtip.classify.default_bundles import geometry_set
    from qcodes_stmtip.demo import demo_geometry

    sizes = {b: int(read_manifest(b)["preprocessing"]["image_size"]) for b in args.bundles}
    rendered: dict[int, object] = {}
    t0 = time.perf_counter()
    for size in sorted(set(sizes.values())):  # the same seed renders the same frames at each size
        rendered[size] = geometry_set(args.surface, args.count, args.seed,
                                      demo_geometry(args.pixels, args.frame_nm * 1e-9, args.angle),
                                      image_size=size, tip_change_p=args.tip_change_p, degrade=args.degrade)
    some = next(iter(rendered.values()))
    labels = some.frames.labels
    counts = np.bincount(labels, minlength=len(some.frames.classes))
    print(f"{len(labels)} simulated frames ({args.frame_nm:g} nm, {args.pixels} px, {args.angle:g}°"
          f"{', domain-randomised' if args.degrade else ''}; "
          f"{', '.join(f'{c} {n}' for c, n in zip(some.frames.classes, counts, strict=True))}; "
          f"{int(some.frames.tip_change.sum())} with a tip change), rendered in {time.perf_counter() - t0:.0f} s")
    print(f"{'bundle':<12} {'good/bad AUROC':>14} {'4-class AUROC':>13}  agreement (uncertain / "
          f"good on bad / bad on good)")
    for bundle in args.bundles:
        r = score_bundle(bundle, rendered[sizes[bundle]].images, labels, args.surface)
        print(f"{bundle.name:<12} {r['good_bad_auroc']:>14.3f} {r['four_class_auroc']:>13.3f}  "
              f"classifier vs simulator truth (good/bad): {r['agree']} of {r['frames']} frames agree "
              f"({r['uncertain']} / {r['called_good_truth_bad']} / {r['called_bad_truth_good']}; "
              f"{r['seconds']:.0f} s)")
        print("    verdicts per true class (good / bad / uncertain): " + "; ".join(
            f"{c} {v['good']}/{v['bad']}/{v['uncertain']}" for c, v in r["per_class"].items()))
    print(f"command: {command_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
