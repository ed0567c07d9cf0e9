"""Sim-to-real: models trained on simulated H:Si(100) frames only, scored on the real frames.

Generate the training set first (seeded, ~1 min per 2,000 frames on 2 cores):

    .venv/bin/stmtip sim dataset --surface hsi100 --count 2000 --pixels 128 --seed 1 --jobs 2 --out /tmp/sim_hsi100

Two recipes:

* ``--recipe features`` (default): the one training recipe of ``stmtip train``
  (:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`, members ``best`` = hgb + logreg,
  tip-change model, thresholds and vote weights calibrated on held-out *simulated* sessions).
  ``--test-fraction`` of the simulated sessions are held out before training and give the
  in-domain AUROC; every labelled real frame of ../shared/data/hsi100 is test data (four-class,
  good/bad collapse, tip change). ``--save-bundle DIR`` writes the bundle (feature members as
  deflated skops, manifest ``training_data.source`` = simulated, ``metrics.held_out_simulated``).
  ``--reverse BUNDLE`` also scores a real-trained bundle (default ``classify/bundles/hsi100``) on
  all the simulated frames (the other direction).

      .venv/bin/python benchmarks/sim_to_real.py --sim /tmp/sim_hsi100
      .venv/bin/python benchmarks/sim_to_real.py --sim /tmp/sim_hsi100 --reverse --save-bundle /tmp/b

* ``--recipe cnn``: Table I of CNNs (``table1_rows.py``), validation on held-out simulated sessions:

      .venv/bin/python benchmarks/sim_to_real.py --recipe cnn --sim /tmp/sim_hsi100 --width 0.125 --epochs 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np
from table1_rows import Split, add_training_args, command_line, load_cached, report, table_rows

from qcodes_stmtip.classify.labels import session_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO / ".." / "shared" / "data" / "hsi100"
DEFAULT_REVERSE = REPO / "qcodes_stmtip" / "classify" / "bundles" / "hsi100"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", type=Path, required=True, help="output folder of 'stmtip sim dataset --surface hsi100'")
    p.add_argument("--real", type=Path, default=DEFAULT_REAL)
    p.add_argument("--recipe", choices=("features", "cnn"), default="features")
    p.add_argument("--val-fraction", type=float, default=0.2, help="simulated sessions held out for validation")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="features: simulated sessions held out as in-domain test [0.2]")
    p.add_argument("--members", default="best", help="features: as stmtip train --members [best]")
    p.add_argument("--save-bundle", type=Path, default=None, help="features: write the sim-only bundle here")
    p.add_argument("--reverse", type=Path, nargs="?", const=DEFAULT_REVERSE, default=None,
                   help="features: also score this real-trained bundle on the simulated frames "
                        "[classify/bundles/hsi100]")
    add_training_args(p)
    return p.parse_args()


def _summary(result: dict) -> dict[str, float]:
    out = {"four_class_auroc": result["table"]["ensemble"]["mean_auroc"],
           "four_class_balanced_accuracy": result["table"]["ensemble"]["balanced_accuracy"],
           "good_bad_auroc": result["good_bad"]["auroc"],
           "good_bad_balanced_accuracy": result["good_bad"]["balanced_accuracy"]}
    if "tip_change" in result:
        out["tip_change_auroc"] = result["tip_change"]["auroc"]
    out["per_class_auroc"] = result["table"]["ensemble"]["auroc"]
    return out


def deflate_members(bundle: Path) -> None:
    """Re-write a bundle's skops members deflated (about a third of the size) and update their sha256."""
    import skops.io as sio

    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entries = list(manifest["members"]) + ([manifest["tip_change"]] if manifest.get("tip_change") else [])
    for entry in entries:
        if entry.get("kind") != "sklearn":
            continue
        file = bundle / entry["file"]
        estimator = sio.load(file, trusted=sio.get_untrusted_types(file=file))
        sio.dump(estimator, file, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
        entry["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")


def run_features(args: argparse.Namespace, sim, real) -> None:
    from qcodes_stmtip.classify.bundle import load_bundle, save_bundle
    from qcodes_stmtip.classify.dataset_images import ImageSet
    from qcodes_stmtip.classify.ensemble_training import (
        evaluate_ensemble,
        parse_members,
        train_ensemble,
    )
    from qcodes_stmtip.classify.training import TrainConfig

    f = sim.frames
    part = lambda m: ImageSet(sim.images[m], f.subset(m), [])  # noqa: E731
    train_idx, test_idx = session_split(f.sessions, args.test_fraction, args.seed + 100)
    train_mask = np.zeros(len(f), bool)
    train_mask[train_idx] = True
    members = parse_members(args.members)
    base = TrainConfig(members[0].architecture, seed=args.seed)
    t0 = time.perf_counter()
    ensemble, rep = train_ensemble(part(train_mask), base, members, val_fraction=args.val_fraction,
                                   split_seed=args.seed, target_precision=args.target_precision,
                                   progress=not args.quiet)
    train_s = time.perf_counter() - t0
    results = {"sim_held_out": evaluate_ensemble(ensemble, part(~train_mask)),
               "real": evaluate_ensemble(ensemble, real)}
    print(f"\nSim-to-real ({args.members}, stmtip train's recipe): trained on {int(train_mask.sum())} simulated "
          f"frames in {train_s:.0f} s; {int((~train_mask).sum())} held-out simulated frames (other sessions); "
          f"{results['real']['n_labelled']} four-class real frames of {results['real']['n_frames']}")
    rows = {"sim-only bundle on held-out simulated": results["sim_held_out"],
            "sim-only bundle on real": results["real"]}
    if args.reverse is not None:
        shipped = load_bundle(args.reverse, surface="hsi100")
        results["reverse"] = evaluate_ensemble(shipped, sim)
        rows[f"{args.reverse.name} (real-trained) on simulated"] = results["reverse"]
    print(f"{'':45s} {'4-class AUROC':>13s} {'bal.acc':>7s} {'good/bad AUROC':>14s} {'tip change AUROC':>16s}")
    for name, r in rows.items():
        s = _summary(r)
        print(f"{name:45s} {s['four_class_auroc']:13.3f} {s['four_class_balanced_accuracy']:7.3f} "
              f"{s['good_bad_auroc']:14.3f} {s.get('tip_change_auroc', float('nan')):16.3f}   "
              + " ".join(f"{c[:5]} {v:.2f}" for c, v in s["per_class_auroc"].items()))
    print(command_line())
    if args.json:
        args.json.write_text(json.dumps({k: _summary(v) for k, v in results.items()}, indent=2) + "\n")
    if args.save_bundle is not None:
        summary = {**part(train_mask).frames.summary(), "source": f"simulated (qcodes_stmtip.sim.dataset, {args.sim})",
                   "validation_sessions": rep["validation_sessions"], "members": args.members}
        save_bundle(ensemble, args.save_bundle, training_data=summary,
                    metrics={"validation": rep, "held_out_simulated": results["sim_held_out"],
                             "real_hsi100": _summary(results["real"])})
        deflate_members(args.save_bundle)
        size = sum(p.stat().st_size for p in args.save_bundle.rglob("*") if p.is_file()) / 1e6
        print(f"saved {args.save_bundle} ({size:.1f} MB)")


def main() -> int:
    args = parse_args()
    for name, folder in (("--sim", args.sim), ("--real", args.real)):
        if not (folder / "labels.csv").is_file():
            raise SystemExit(f"{name}: no labels.csv in {folder}")
    sim, _ = load_cached(args.sim, args.cache, progress=not args.quiet)
    real, _ = load_cached(args.real, args.cache, progress=not args.quiet)
    if sim.frames.surface != "hsi100" or sim.frames.classes != real.frames.classes:
        raise SystemExit(f"--sim must be a simulated hsi100 set with classes {real.frames.classes}, "
                         f"got {sim.frames.surface} {sim.frames.classes}")
    if args.recipe == "features":
        run_features(args, sim, real)
        return 0
    tr, va = session_split(sim.frames.sessions, args.val_fraction, args.seed)
    f = sim.frames
    train = Split(sim.images[tr], f.labels[tr], None if f.tip_change is None else f.tip_change[tr])
    val = Split(sim.images[va], f.labels[va], None if f.tip_change is None else f.tip_change[va])
    test = Split(real.images, real.frames.labels, real.frames.tip_change)
    print(f"simulated frames: train {len(tr)}, validation {len(va)}; real test frames {len(real.frames)} "
          f"({(real.frames.labels >= 0).sum()} four-class)")
    t0 = time.perf_counter()
    result = table_rows(train, val, test, f.classes, "hsi100", args)
    report(result, f.classes,
           f"Sim-to-real Table I: trained on {len(tr)} simulated H:Si(100) frames, scored on "
           f"{(real.frames.labels >= 0).sum()} real frames (SqueezeNet width {args.width}, ≤{args.epochs} epochs); "
           f"total {time.perf_counter() - t0:.0f} s:", args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
