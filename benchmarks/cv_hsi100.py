"""Cross-validation of ``stmtip train`` on the real H:Si(100) votes, under two protocols.

* **session folds** (the honest number): the 26 sessions of ``../shared/data/hsi100`` are dealt
  into ``--folds`` folds of about equal labelled-frame count; each fold is held out once.
* **paper protocol** (to compare with Gordon et al. 2019 and 2020 on their terms): a random
  frame split into ``--folds`` folds, scored on all labelled test frames and on the frames whose
  votes name one class only (rescans of the same area sit on both sides of such a split, so
  it flatters).

Each fold trains exactly as ``stmtip train`` does
(:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`: its own session-split
validation set, every threshold calibrated there, the same defaults) and is scored with
:func:`~qcodes_stmtip.classify.ensemble_training.evaluate_ensemble` (the code path of
``stmtip evaluate``). Beside it, on the same folds, the **feature baseline** of issue 12:
gradient-boosted trees (``HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05,
class_weight="balanced")``) on its ~43 features (32 radial FFT bands, angular max/min and
max/mean in 3 bands, height std / skewness / 1–99 % range, max and mean line-mean jump).
Precision is given both as the paper used it (confident calls at the calibrated thresholds,
with their coverage) and for every call. ``--predictions`` saves every frame's probabilities
per protocol, so blends can be scored without retraining.

    .venv/bin/python benchmarks/cv_hsi100.py                                 # both protocols, defaults
    .venv/bin/python benchmarks/cv_hsi100.py --protocol session --members cnn  # the CNN ensemble
    .venv/bin/python benchmarks/cv_hsi100.py --predictions /tmp/cv.npz --json /tmp/cv.json
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np
from table1_rows import command_line, load_cached

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "hsi100"
#: Rows of the summary: (label, key path in a fold's result).
SUMMARY = (
    ("four-class AUROC", ("table", "ensemble", "mean_auroc")),
    ("four-class balanced accuracy", ("table", "ensemble", "balanced_accuracy")),
    ("precision, every call", ("table", "ensemble", "mean_precision")),
    ("average precision (PR area)", ("table", "ensemble", "average_precision")),
    ("precision, confident calls", ("confident", "mean_precision")),
    ("coverage of confident calls", ("confident", "coverage")),
    ("good/bad AUROC", ("good_bad", "auroc")),
    ("good/bad balanced accuracy", ("good_bad", "balanced_accuracy")),
    ("good/bad precision", ("good_bad", "mean_precision")),
    ("tip change AUROC", ("tip_change", "auroc")),
    ("tip change balanced accuracy", ("tip_change", "balanced_accuracy")),
    ("expected calibration error", ("calibration", "ece")),
    ("verdicts: coverage (decided frames)", ("decision", "coverage")),
    ("verdicts: accuracy on decided frames", ("decision", "accuracy_decided")),
    ("verdicts: bad tips called good (of all)", ("decision", "bad_called_good")),
    ("verdicts: good tips called bad (of all)", ("decision", "good_called_bad")),
    ("good/bad verdicts agreeing (as stmtip demo counts)", ("verdicts", "agreement")),
    ("  share of uncertain verdicts", ("verdicts", "uncertain")),
    ("  good frames called bad (tip-change flags incl.)", ("verdicts", "bad_on_good")),
)
#: The issue-12 feature baseline: columns of :func:`~qcodes_stmtip.classify.features.frame_features`.
BASELINE_COLUMNS = (
    [f"radial_{i}" for i in range(32)]
    + [f"aniso_{b}_{r}" for b in ("low", "mid", "high") for r in ("maxmin", "maxmean")]
    + ["std", "skew", "range_1_99", "row_mean_jump_max", "row_mean_jump_mean"]
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--protocol", choices=("both", "session", "paper"), default="both")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only", type=str, default=None, help="comma list of fold numbers to run (default all)")
    p.add_argument("--members", default="best", help="as stmtip train --members [best]")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="augmented batches per epoch (the authors' repeats; default one pass)")
    p.add_argument("--lr-decay", type=float, default=0.95, help="learning-rate factor per epoch [0.95]")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tip-change", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tip-change-vflip", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--tip-change-epochs", type=int, default=None, help="[twice --epochs]")
    p.add_argument("--tip-change-patience", type=int, default=8)
    p.add_argument("--target-precision", type=float, default=0.9,
                   help="per-class thresholds set on each fold's validation sessions [0.9]")
    p.add_argument("--plain-vote", action="store_true", help="as stmtip train --plain-vote")
    p.add_argument("--no-refit", action="store_true", help="as stmtip train --no-refit")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true", help="skip the feature baseline")
    p.add_argument("--cache", type=Path, default=Path("/tmp/stmtip-table1-cache"))
    p.add_argument("--json", type=Path, default=None, help="write every fold's scores here")
    p.add_argument("--predictions", type=Path, default=None, help="write every frame's predictions (npz)")
    p.add_argument("--save-bundles", type=Path, default=None,
                   help="save each fold's trained ensemble as DIR/PROTOCOL-fold-I (a bundle directory)")
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


def fold_masks(protocol: str, sessions: np.ndarray, labelled: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Boolean test mask of each fold: whole sessions, or a seeded random frame split."""
    if protocol == "session":
        return [np.isin(sessions, f) for f in session_folds(sessions, labelled, k, seed)]
    fold_of = np.random.default_rng(seed).permutation(len(sessions)) % k
    return [fold_of == i for i in range(k)]


def vote_sheet(data_dir: Path, paths) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (by file name): ``No. Responses`` (−1 if absent) and whether its four-class votes
    name one class only (exactly one of the four class votes is non-zero)."""
    with open(data_dir / "labels.csv", newline="") as fh:
        sheet = {row.get("Name", ""): row for row in csv.DictReader(fh)}
    voters, one_class = [], []
    for p in paths:
        row = sheet.get(Path(p).name, {})
        try:
            voters.append(int(float(row.get("No. Responses", ""))))
        except ValueError:
            voters.append(-1)
        try:
            v = [max(float(row["Asymmetries"]), float(row["Dimers"])), float(row["Individual Atoms"]),
                 float(row["Rows"]), float(row["Bad/Blurry"])]
            one_class.append(sum(x > 0 for x in v) == 1)
        except (KeyError, ValueError):
            one_class.append(False)
    return np.array(voters), np.array(one_class)


def verdict_agreement(ensemble, pred, labels: np.ndarray) -> dict:
    """The ensemble's good/bad verdicts (thresholded decision; a flagged tip change is bad; ``uncertain``
    never agrees) against the good/bad of the human label, counted as ``stmtip demo`` counts them
    against the simulator's truth: shares of the labelled frames."""
    lab = labels >= 0
    good = np.array([c in ensemble.good_classes for c in ensemble.classes])
    truth = np.where(good[labels[lab]], "good", "bad")
    verdict = ensemble.good_bad(pred)[lab]
    return {"agreement": float(np.mean(verdict == truth)), "uncertain": float(np.mean(verdict == "uncertain")),
            "bad_on_good": float(np.mean(verdict[truth == "good"] == "bad")),
            "good_on_bad": float(np.mean(verdict[truth == "bad"] == "good"))}


def calibration_error(y: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the winning class's probability (equal-width bins)."""
    conf = probabilities.max(axis=1)
    hit = probabilities.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    return float(sum(abs(hit[which == b].mean() - conf[which == b].mean()) * np.mean(which == b)
                     for b in range(bins) if np.any(which == b)))


def baseline_scores(features: np.ndarray, names: list[str], data, train: np.ndarray, test: np.ndarray,
                    classes, good, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Scores and per-frame (P, P_tip_change) of the issue-12 feature baseline on one fold."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from qcodes_stmtip.classify.metrics import binary_scores, good_bad_scores, score

    cols = [names.index(c) for c in BASELINE_COLUMNS]
    x = features[:, cols]
    y, tc = data.frames.labels, data.frames.tip_change.astype(int)

    def model():
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, class_weight="balanced",
                                              random_state=seed)
    lab = train & (y >= 0)
    p = model().fit(x[lab], y[lab]).predict_proba(x[test])
    t = model().fit(x[train], tc[train]).predict_proba(x[test])[:, 1]
    lt = y[test] >= 0
    out = {"table": {"ensemble": score(y[test][lt], p[lt], classes).as_dict()},
           "good_bad": good_bad_scores(y[test][lt], p[lt], p[lt].argmax(1), classes, good),
           "tip_change": binary_scores(tc[test].astype(bool), t)}
    return out, p, t


def _get(result: dict, path: tuple[str, ...]) -> float:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return float("nan")
        result = result[key]
    return float(result)


def summarise(title: str, results: list[dict]) -> list[str]:
    lines = [f"{title}: mean ± standard deviation over {len(results)} folds (min – max)"]
    for label, path in SUMMARY:
        v = np.array([_get(r, path) for r in results])
        if np.isfinite(v).any():
            lines.append(f"  {label:<32} {np.nanmean(v):.3f} ± {np.nanstd(v):.3f}  "
                         f"({np.nanmin(v):.3f} – {np.nanmax(v):.3f})")
    return lines


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    from qcodes_stmtip.classify.dataset_images import ImageSet
    from qcodes_stmtip.classify.decision import truth_bad
    from qcodes_stmtip.classify.ensemble_training import (
        evaluate_ensemble,
        parse_members,
        train_ensemble,
    )
    from qcodes_stmtip.classify.features import feature_names, frame_features
    from qcodes_stmtip.classify.metrics import score, verdict_figures
    from qcodes_stmtip.classify.train_config import TrainConfig

    data, load_s = load_cached(args.data, args.cache, progress=not args.quiet)
    frames = data.frames
    labelled = frames.labels >= 0
    voters, one_class = vote_sheet(args.data, frames.paths)
    members = parse_members(args.members)
    base = TrainConfig(members[0].architecture, width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                       patience=args.patience, seed=args.seed, restricted_vertical_flip=args.tip_change_vflip,
                       steps_per_epoch=args.steps_per_epoch, lr_decay=args.lr_decay)
    print(f"{len(frames)} frames ({int(labelled.sum())} four-class labelled, {int((labelled & one_class).sum())} "
          f"of them with one-class votes) from {np.unique(frames.sessions).size} sessions; members "
          f"{args.members}; preprocessing {load_s:.0f} s (0 = cached)")
    features = names = None
    if not args.no_baseline:
        t0 = time.perf_counter()
        features, names = frame_features(data.images), feature_names(data.images.shape[1])
        print(f"baseline features: {time.perf_counter() - t0:.0f} s")
    protocols = ("session", "paper") if args.protocol == "both" else (args.protocol,)
    all_results: dict[str, dict] = {}
    saved: dict[str, np.ndarray] = {"paths": np.array([str(p) for p in frames.paths]),
                                    "sessions": frames.sessions.astype(str), "labels": frames.labels,
                                    "tip_change": frames.tip_change.astype(int), "one_class": one_class,
                                    "voters": voters}
    report: list[str] = []
    for protocol in protocols:
        masks = fold_masks(protocol, frames.sessions, labelled, args.folds, args.seed)
        run = range(args.folds) if args.only is None else [int(i) for i in args.only.split(",")]
        n, k = len(frames), len(frames.classes)
        fold_of = np.full(n, -1)
        p_mean, p_tc = np.full((n, k), np.nan), np.full(n, np.nan)
        b_mean, b_tc = np.full((n, k), np.nan), np.full(n, np.nan)
        results, base_results, one_results = [], [], []
        for i in run:
            test = masks[i]
            part = lambda m: ImageSet(data.images[m], frames.subset(m), [])  # noqa: E731
            t0 = time.perf_counter()
            ensemble, rep = train_ensemble(
                part(~test), base, members, val_fraction=args.val_fraction, split_seed=args.seed + i,
                tip_change=args.tip_change, target_precision=args.target_precision, progress=not args.quiet,
                tta=args.tta,
                tip_change_epochs=2 * args.epochs if args.tip_change_epochs is None else args.tip_change_epochs,
                tip_change_patience=args.tip_change_patience, balanced_decisions=not args.plain_vote,
                refit=not args.no_refit, keep_validation_outputs=args.predictions is not None)
            train_s = time.perf_counter() - t0
            if args.save_bundles is not None:
                from qcodes_stmtip.classify.bundle import save_bundle

                save_bundle(ensemble, args.save_bundles / f"{protocol}-fold-{i}",
                            training_data={"validation_sessions": rep["validation_sessions"]})
            held_out = part(test)
            result = evaluate_ensemble(ensemble, held_out)
            pred = ensemble.predict(held_out.images)
            fold_of[test] = i
            p_mean[test] = pred.mean
            if args.predictions is not None:  # everything a decision rule needs, per fold
                outer = np.flatnonzero(~test)
                vo = rep["validation_outputs"]
                tc_va = vo["tip_change_probability"]
                saved.update({
                    f"{protocol}_{i}_test_members": pred.member_probabilities.astype(np.float32),
                    f"{protocol}_{i}_val_labelled": outer[vo["labelled_index"]],
                    f"{protocol}_{i}_val_members": vo["member_probabilities"].astype(np.float32),
                    f"{protocol}_{i}_val_index": outer[vo["index"]],
                    f"{protocol}_{i}_val_tip_change": np.array([]) if tc_va is None else tc_va,
                    f"{protocol}_{i}_member_names": np.array([m.name for m in ensemble.members])})
            if pred.tip_change_probability is not None:
                p_tc[test] = pred.tip_change_probability
            lab = held_out.frames.labels >= 0
            result["calibration"] = {"ece": calibration_error(held_out.frames.labels[lab], pred.mean[lab])}
            result["verdicts"] = verdict_agreement(ensemble, pred, held_out.frames.labels)
            # the issue-23 truth: bad when the label is a bad class or the voters saw a tip change
            result["decision"] = verdict_figures(ensemble.good_bad(pred), truth_bad(
                held_out.frames.labels, ensemble.classes, ensemble.good_classes, held_out.frames.tip_change))
            one = lab & one_class[test]
            if one.any():
                s = score(held_out.frames.labels[one], pred.mean[one], ensemble.classes)
                one_results.append({"table": {"ensemble": s.as_dict()}})
            result.update(fold=i, n_test=int(test.sum()), validation_sessions=rep["validation_sessions"],
                          train_seconds=train_s)
            results.append(result)
            line = (f"{protocol} fold {i}: {result['n_labelled']} four-class test frames, trained in "
                    f"{train_s:.0f} s; AUROC {_get(result, SUMMARY[0][1]):.3f}, bal. acc. "
                    f"{_get(result, SUMMARY[1][1]):.3f}, good/bad {_get(result, ('good_bad', 'auroc')):.3f}, "
                    f"tip change {_get(result, ('tip_change', 'auroc')):.3f}"
                    + f"; verdicts: coverage {_get(result, ('decision', 'coverage')):.3f}, accuracy on decided "
                    f"{_get(result, ('decision', 'accuracy_decided')):.3f}, bad called good "
                    f"{_get(result, ('decision', 'bad_called_good')):.3f}, good called bad "
                    f"{_get(result, ('decision', 'good_called_bad')):.3f}")
            if features is not None:
                b, bp, bt = baseline_scores(features, names, data, ~test, test, ensemble.classes,
                                            ensemble.good_classes, args.seed)
                b_mean[test], b_tc[test] = bp, bt
                base_results.append(b)
                line += (f" | baseline AUROC {_get(b, SUMMARY[0][1]):.3f}, bal. acc. {_get(b, SUMMARY[1][1]):.3f}, "
                         f"good/bad {_get(b, ('good_bad', 'auroc')):.3f}, tip change "
                         f"{_get(b, ('tip_change', 'auroc')):.3f}")
            print(line, flush=True)
            if args.predictions:  # after every fold, so a long run's finished folds are never lost
                saved.update({f"{protocol}_fold": fold_of, f"{protocol}_mean": p_mean,
                              f"{protocol}_tip_change": p_tc, f"{protocol}_baseline_mean": b_mean,
                              f"{protocol}_baseline_tip_change": b_tc})
                np.savez_compressed(args.predictions, **saved)
        report += summarise(f"\n{protocol} protocol, stmtip train ({args.members})", results)
        if one_results:
            report += summarise(f"{protocol} protocol, stmtip train, test frames with one-class votes",
                                one_results)
        if base_results:
            report += summarise(f"{protocol} protocol, feature baseline (issue 12)", base_results)
        report.append(f"  training time per fold {np.mean([r['train_seconds'] for r in results]):.0f} s")
        all_results[protocol] = {"folds": results, "one_class": one_results, "baseline": base_results}
        saved.update({f"{protocol}_fold": fold_of, f"{protocol}_mean": p_mean, f"{protocol}_tip_change": p_tc,
                      f"{protocol}_baseline_mean": b_mean, f"{protocol}_baseline_tip_change": b_tc})
    print("\n".join(report))
    print(f"\n{command_line()}")
    if args.json:
        args.json.write_text(json.dumps(all_results, indent=2, default=float) + "\n")
    if args.predictions:
        np.savez_compressed(args.predictions, **saved)


if __name__ == "__main__":
    main()
