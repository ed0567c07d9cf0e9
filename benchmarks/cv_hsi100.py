"""Session-fold cross-validation of ``stmtip train`` on the real H:Si(100) votes.

The 26 sessions of ``../shared/data/hsi100`` are dealt into ``--folds`` folds of about equal
labelled-frame count. For each fold the ensemble is trained exactly as ``stmtip train`` does
(:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`, its own session-split
validation set for early stopping and thresholds, the same defaults: three adam SqueezeNets,
width 0.125, test-time views, the tip-change network with vertical flips) on the other folds
and scored on the held-out fold with :func:`~qcodes_stmtip.classify.ensemble_training.evaluate_ensemble`
(the code path of ``stmtip evaluate``). Every session is test data exactly once, so the mean
over folds is a steadier estimate than one 4-session test set, and the spread over folds
says how much one test set can move.

    .venv/bin/python benchmarks/cv_hsi100.py                       # 5 folds, the stmtip train defaults
    .venv/bin/python benchmarks/cv_hsi100.py --members paper-fast  # the paper's member mix
    .venv/bin/python benchmarks/cv_hsi100.py --folds 5 --only 0 --no-tip-change --epochs 3  # quick look
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from table1_rows import command_line, load_cached

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "hsi100"
#: Rows of the summary: (label, key path in a fold's result).
SUMMARY = (
    ("ensemble AUROC", ("table", "ensemble", "mean_auroc")),
    ("ensemble balanced accuracy", ("table", "ensemble", "balanced_accuracy")),
    ("ensemble mean precision", ("table", "ensemble", "mean_precision")),
    ("ensemble AP", ("table", "ensemble", "average_precision")),
    ("good/bad AUROC", ("good_bad", "auroc")),
    ("good/bad balanced accuracy", ("good_bad", "balanced_accuracy")),
    ("good/bad mean precision", ("good_bad", "mean_precision")),
    ("confident-call precision", ("confident", "mean_precision")),
    ("confident-call coverage", ("confident", "coverage")),
    ("tip change AUROC", ("tip_change", "auroc")),
    ("tip change balanced accuracy", ("tip_change", "balanced_accuracy")),
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only", type=str, default=None, help="comma list of fold numbers to run (default all)")
    p.add_argument("--members", default="best", help="as stmtip train --members [best]")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tip-change", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tip-change-vflip", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tip-change-epochs", type=int, default=None, help="[twice --epochs]")
    p.add_argument("--tip-change-patience", type=int, default=8)
    p.add_argument("--target-precision", type=float, default=0.9,
                   help="per-class thresholds set on each fold's validation sessions [0.9]")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=Path("/tmp/stmtip-table1-cache"))
    p.add_argument("--json", type=Path, default=None, help="write every fold's scores here")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args()


def session_folds(sessions: np.ndarray, labelled: np.ndarray, k: int, seed: int) -> list[list[str]]:
    """Deal whole sessions into ``k`` folds: largest first, each to the fold with the fewest
    labelled frames so far (ties by a seeded shuffle)."""
    names = np.unique(sessions)
    if names.size < k:
        raise SystemExit(f"{names.size} sessions cannot make {k} folds")
    counts = {s: int(np.sum(labelled[sessions == s])) for s in names}
    order = sorted(np.random.default_rng(seed).permutation(names), key=lambda s: -counts[s])
    folds: list[list[str]] = [[] for _ in range(k)]
    load = np.zeros(k, int)
    for s in order:
        i = int(np.argmin(load))
        folds[i].append(str(s))
        load[i] += counts[s]
    return folds


def voter_counts(data_dir: Path, paths) -> np.ndarray:
    """``No. Responses`` of each frame (by file name) from the vote sheet; −1 where it has none
    (e.g. a simulated dataset)."""
    import csv

    with open(data_dir / "labels.csv", newline="") as fh:
        sheet = {row.get("Name", ""): row.get("No. Responses", "") for row in csv.DictReader(fh)}
    out = []
    for p in paths:
        try:
            out.append(int(float(sheet.get(Path(p).name, ""))))
        except ValueError:
            out.append(-1)
    return np.array(out)


def by_voters(y: np.ndarray, mean: np.ndarray, voters: np.ndarray, classes) -> dict[str, dict]:
    """Ensemble AUROC / balanced accuracy on frames with one voter and with several."""
    from qcodes_stmtip.classify.metrics import score

    out = {}
    for name, keep in (("one voter", voters == 1), ("two or more voters", voters >= 2)):
        if keep.sum() and np.unique(y[keep]).size == len(classes):
            s = score(y[keep], mean[keep], classes)
            out[name] = {"n": int(keep.sum()), "mean_auroc": s.mean_auroc,
                         "balanced_accuracy": s.balanced_accuracy}
    return out


def _get(result: dict, path: tuple[str, ...]) -> float:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return float("nan")
        result = result[key]
    return float(result)


def main() -> None:
    args = parse_args()
    from qcodes_stmtip.classify.dataset_images import ImageSet
    from qcodes_stmtip.classify.ensemble_training import (
        evaluate_ensemble,
        format_table,
        parse_members,
        train_ensemble,
    )
    from qcodes_stmtip.classify.training import TrainConfig

    data, load_s = load_cached(args.data, args.cache, progress=not args.quiet)
    frames = data.frames
    folds = session_folds(frames.sessions, frames.labels >= 0, args.folds, args.seed)
    voters = voter_counts(args.data, frames.paths)
    members = parse_members(args.members)
    base = TrainConfig(members[0].architecture, width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                       patience=args.patience, seed=args.seed, restricted_vertical_flip=args.tip_change_vflip)
    run = range(args.folds) if args.only is None else [int(i) for i in args.only.split(",")]
    print(f"{len(frames)} frames ({int((frames.labels >= 0).sum())} four-class labelled) from "
          f"{np.unique(frames.sessions).size} sessions; preprocessing {load_s:.0f} s (0 = cached)")
    results = []
    for i in run:
        test = np.isin(frames.sessions, folds[i])
        part = lambda m: ImageSet(data.images[m], frames.subset(m), [])  # noqa: E731
        t0 = time.perf_counter()
        ensemble, report = train_ensemble(
            part(~test), base, members, val_fraction=args.val_fraction, split_seed=args.seed + i,
            tip_change=args.tip_change, target_precision=args.target_precision, progress=not args.quiet,
            tta=args.tta, tip_change_epochs=2 * args.epochs if args.tip_change_epochs is None else args.tip_change_epochs,
            tip_change_patience=args.tip_change_patience,
        )
        train_s = time.perf_counter() - t0
        held_out = part(test)
        result = evaluate_ensemble(ensemble, held_out)
        lab = held_out.frames.labels >= 0
        pred = ensemble.predict(held_out.images[lab])
        result["by_voters"] = by_voters(held_out.frames.labels[lab], pred.mean, voters[test][lab],
                                        ensemble.classes)
        result.update(fold=i, test_sessions=folds[i], validation_sessions=report["validation_sessions"],
                      train_seconds=train_s, member_seconds=[m["seconds"] for m in report["members"]])
        results.append(result)
        print(f"\nfold {i}: test sessions {', '.join(folds[i])} ({result['n_labelled']} four-class frames, "
              f"{result['n_frames']} in all); trained in {train_s / 60:.1f} min "
              f"(members {sum(result['member_seconds']) / 60:.1f} min)")
        print(format_table(result["table"], ensemble.classes))
        print("  " + ", ".join(f"{label} {_get(result, path):.3f}" for label, path in SUMMARY[4:]
                               if np.isfinite(_get(result, path))))
        print("  ensemble on frames with " + "; ".join(
            f"{k}: AUROC {v['mean_auroc']:.3f}, bal. acc. {v['balanced_accuracy']:.3f} ({v['n']} frames)"
            for k, v in result["by_voters"].items()))
    print(f"\n{len(results)} folds, mean ± standard deviation over folds (min – max):")
    for label, path in SUMMARY:
        v = np.array([_get(r, path) for r in results])
        if np.isfinite(v).any():
            print(f"  {label:<28} {np.nanmean(v):.3f} ± {np.nanstd(v):.3f}  ({np.nanmin(v):.3f} – "
                  f"{np.nanmax(v):.3f})")
    for group in ("one voter", "two or more voters"):
        v = np.array([r["by_voters"][group]["mean_auroc"] for r in results if group in r["by_voters"]])
        if v.size:
            print(f"  {'AUROC, ' + group:<28} {v.mean():.3f} ± {v.std():.3f}  ({v.min():.3f} – {v.max():.3f})")
    best = [max((n for n in r["table"] if n != "ensemble"), key=lambda n: r["table"][n]["mean_auroc"])
            for r in results]
    single = [r["table"][n]["mean_auroc"] for r, n in zip(results, best, strict=True)]
    print(f"  {'best single member AUROC':<28} {np.mean(single):.3f} (chosen on test: optimistic)")
    print(f"  training time per fold {np.mean([r['train_seconds'] for r in results]) / 60:.1f} min")
    print(f"\n{command_line()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
