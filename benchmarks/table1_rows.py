"""Shared engine of the Table I benchmarks: cached images, session splits, and every Table I row.

``table1_hsi100.py`` (real votes), ``table1_sim.py`` (simulated Au/Cu(111)) and ``sim_to_real.py``
(trained on simulated H:Si(100), scored on real frames) all call :func:`table_rows`. It trains the
CNN candidates (two SqueezeNets, VGG-BN, VGG, RW), builds the paper's ensemble as the majority vote
of the 3 candidates with the best *validation* AUROC, adds the mean-probability ensemble of the same
3 (labelled: not the paper's rule), the random forest and weighted random guessing, the good/bad
collapse of every row and, when labels exist, the binary tip-change network. Test data are never
used to choose anything. Keras is imported inside functions only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: (row name, architecture, optimizer, learning rate) of the CNN candidates. The paper's sgd / rmsprop
#: rates (1e-4) are raised (sgd with Nesterov momentum) so that the short CPU runs converge.
#: ``squeezenet_3`` (adam again, another seed) is not in the paper's table: a third strong candidate
#: for the best-3 vote (on this machine the SqueezeNet trains best and VGG-BN worst).
CANDIDATES: tuple[tuple[str, str, str, float], ...] = (
    ("squeezenet", "squeezenet", "adam", 1e-3),
    ("squeezenet_2", "squeezenet", "sgd", 1e-2),
    ("vgg_bn", "vgg_bn", "rmsprop", 1e-3),
    ("vgg", "vgg", "adam", 1e-3),
    ("rw", "rw", "adam", 1e-3),
    ("squeezenet_3", "squeezenet", "adam", 1e-3),
)
ALL_MODELS = "squeezenet,squeezenet_2,vgg_bn,vgg,rw,squeezenet_3,rfc,random,tip_change"


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The training options shared by the three benchmarks."""
    p.add_argument("--width", type=float, default=0.125, help="filter multiplier of SqueezeNet (1 = paper)")
    p.add_argument("--vgg-width", type=float, default=None, help="filter multiplier of VGG/VGG-BN/RW "
                   "(default: --width)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--patience", type=int, default=5, help="epochs without validation-loss gain")
    p.add_argument("--lr-decay", type=float, default=0.95, help="per-epoch learning-rate factor (paper)")
    p.add_argument("--batch-size", type=int, default=128, help="the paper's 128")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=ALL_MODELS, help=f"rows to compute, of {ALL_MODELS}")
    p.add_argument("--ensemble-size", type=int, default=3, help="members voted (best by validation AUROC)")
    p.add_argument("--pretrain-sim", type=Path, default=None,
                   help="simulated dataset of the same surface (stmtip sim dataset) every CNN first trains on "
                        "(not in the paper)")
    p.add_argument("--pretrain-epochs", type=int, default=8, help="epochs on --pretrain-sim [8]")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: CNN outputs averaged over the 8 square symmetries "
                        "(2 flips for the tip-change network); not in the paper")
    p.add_argument("--tip-change-vflip", action="store_true",
                   help="tip-change network also trained (and, with --tta, viewed) with vertical flips; "
                        "the paper allows horizontal flips and noise only")
    p.add_argument("--target-precision", type=float, default=0.9,
                   help="validation precision the per-class confidence thresholds are set to reach [0.9]")
    p.add_argument("--rfc-trees", type=int, default=5000, help="the paper's 5,000")
    p.add_argument("--rfc-size", type=int, default=32, help="RFC input side (pixels)")
    p.add_argument("--jobs", type=int, default=2, help="RFC worker processes")
    p.add_argument("--cache", type=Path, default=Path("/tmp/stmtip-table1-cache"),
                   help="folder for preprocessed 128² images (npz), reused across runs")
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument("--quiet", action="store_true")


def command_line() -> str:
    """The exact command that produced the output (printed with the results)."""
    return " ".join([".venv/bin/python", *sys.argv])


def load_cached(data_dir: Path, cache: Path | None, progress: bool):
    """Preprocessed :class:`ImageSet` of ``data_dir``, cached as npz keyed by the label file's content."""
    from qcodes_stmtip.classify.dataset_images import ImageSet, load_images
    from qcodes_stmtip.classify.labels import load_labels

    frames = load_labels(data_dir)
    key = hashlib.sha1((data_dir / "labels.csv").read_bytes()).hexdigest()[:16]
    path = None if cache is None else cache / f"{data_dir.resolve().name}-{key}.npz"
    if path is not None and path.is_file():
        z = np.load(path, allow_pickle=False)
        skipped = list(zip(z["skipped_paths"].tolist(), z["skipped_reasons"].tolist(), strict=True))
        return ImageSet(z["images"], frames.subset(z["keep"]), skipped), 0.0
    t0 = time.perf_counter()
    data = load_images(frames, progress=progress)
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = {str(p) for p in data.frames.paths}
        keep = np.array([i for i, p in enumerate(frames.paths) if str(p) in kept], dtype=int)
        np.savez(path, images=data.images, keep=keep,
                 skipped_paths=np.array([s[0] for s in data.skipped], dtype=str),
                 skipped_reasons=np.array([s[1] for s in data.skipped], dtype=str))
    return data, seconds


def three_way_split(sessions: np.ndarray, test_fraction: float, val_fraction: float, seed: int):
    """(train, validation, test) frame indexes, split by whole sessions."""
    from qcodes_stmtip.classify.labels import session_split

    rest, test = session_split(sessions, test_fraction, seed)
    tr_rel, va_rel = session_split(sessions[rest], val_fraction / (1 - test_fraction), seed + 1)
    return rest[tr_rel], rest[va_rel], test


@dataclass
class Split:
    """Images, integer labels (−1 ambiguous) and optional tip-change flags of one part of the data."""

    x: np.ndarray
    y: np.ndarray
    tip_change: np.ndarray | None = None

    def labelled(self) -> Split:
        keep = self.y >= 0
        return Split(self.x[keep], self.y[keep], None if self.tip_change is None else self.tip_change[keep])


@dataclass
class TableResult:
    rows: dict[str, dict] = field(default_factory=dict)
    good_bad: dict[str, dict] = field(default_factory=dict)
    validation_auroc: dict[str, float] = field(default_factory=dict)
    timings: dict[str, dict] = field(default_factory=dict)
    ensemble_members: list[str] = field(default_factory=list)
    tip_change: dict | None = None


def good_bad_scores(y: np.ndarray, probs: np.ndarray, pred: np.ndarray, classes, surface: str) -> dict:
    """:func:`qcodes_stmtip.classify.metrics.good_bad_scores` with the surface's good classes."""
    from qcodes_stmtip.classify.metrics import good_bad_scores as scores
    from qcodes_stmtip.taxonomy import GOOD_CLASSES

    return scores(y, probs, pred, tuple(classes), GOOD_CLASSES[surface])


def table_rows(train: Split, val: Split, test: Split, classes, surface: str,
               args: argparse.Namespace) -> TableResult:
    """Train and score every requested row (see module doc); ``val`` picks epochs and members."""
    from qcodes_stmtip.classify.baselines import RandomForestBaseline, WeightedRandomGuess
    from qcodes_stmtip.classify.ensemble import majority_vote
    from qcodes_stmtip.classify.metrics import (
        binary_scores,
        confident_precision,
        score,
        thresholds_for_precision,
    )
    from qcodes_stmtip.classify.training import TrainConfig, predict_probabilities, train_classifier

    wanted = set(args.models.split(","))
    tr, va, te = train.labelled(), val.labelled(), test.labelled()
    restricted = np.zeros(len(tr.y), bool)
    if "tip_change" in classes:  # tip-change class images get flips + noise only (paper)
        restricted = tr.y == list(classes).index("tip_change")
    out = TableResult()
    probs: dict[str, np.ndarray] = {}
    val_probs: dict[str, np.ndarray] = {}

    def add(name: str, p: np.ndarray, pred: np.ndarray | None = None, p_val: np.ndarray | None = None,
            pred_val: np.ndarray | None = None) -> None:
        out.rows[name] = score(te.y, p, classes, predictions=pred).as_dict()
        decided = np.argmax(p, axis=1) if pred is None else pred
        out.good_bad[name] = good_bad_scores(te.y, p, decided, classes, surface)
        if p_val is not None:  # the paper's confidence thresholds, chosen on validation data
            th = thresholds_for_precision(va.y, _called_probability(p_val, pred_val), args.target_precision)
            out.rows[name]["thresholds"] = th.tolist()
            out.rows[name]["confident"] = confident_precision(te.y, p, th, pred)

    pretrain = None
    if getattr(args, "pretrain_sim", None) is not None:
        sim, _ = load_cached(args.pretrain_sim, args.cache, progress=not args.quiet)
        if tuple(sim.frames.classes) != tuple(classes):
            raise SystemExit(f"--pretrain-sim classes {sim.frames.classes} differ from {tuple(classes)}")
        keep = sim.frames.labels >= 0
        pretrain = (sim.images[keep], sim.frames.labels[keep])
        print(f"pre-training every CNN for {args.pretrain_epochs} epochs on {keep.sum()} simulated frames "
              f"({args.pretrain_sim})", flush=True)
    base = TrainConfig("squeezenet", width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                       patience=args.patience, lr_decay=args.lr_decay, seed=args.seed)
    for i, (name, arch, opt, lr) in enumerate(CANDIDATES):
        if name not in wanted:
            continue
        width = args.width if arch == "squeezenet" else (args.vgg_width or args.width)
        cfg = TrainConfig(**{**base.__dict__, "architecture": arch, "optimizer": opt, "width": width,
                             "learning_rate": lr, "seed": args.seed + i})
        r = train_classifier(tr.x, tr.y, va.x, va.y, len(classes), cfg, restricted=restricted,
                             progress=not args.quiet, name=name, pretrain=pretrain,
                             pretrain_epochs=args.pretrain_epochs if pretrain else 0)
        val_probs[name] = predict_probabilities(r.model, va.x, tta=args.tta)
        out.validation_auroc[name] = score(va.y, val_probs[name], classes).mean_auroc
        probs[name] = predict_probabilities(r.model, te.x, tta=args.tta)
        add(name, probs[name], p_val=val_probs[name])
        out.timings[name] = {"seconds": round(r.seconds, 1), "epochs": r.epochs_run, "best_epoch": r.best_epoch,
                             "params": int(r.model.count_params()), "width": width, "optimizer": opt, "lr": lr}
        print(f"  {name}: {r.seconds:.0f} s, {r.epochs_run} epochs (best {r.best_epoch}), validation AUROC "
              f"{out.validation_auroc[name]:.3f}", flush=True)
    if len(probs) >= args.ensemble_size:
        best = sorted(probs, key=lambda n: out.validation_auroc[n], reverse=True)[: args.ensemble_size]
        out.ensemble_members = best
        vote = majority_vote(np.stack([probs[n] for n in best]))
        vote_val = majority_vote(np.stack([val_probs[n] for n in best]))
        add("ensemble", vote.mean, vote.vote_class, vote_val.mean, vote_val.vote_class)
        add("ensemble_mean_prob*", vote.mean, p_val=vote_val.mean)
        out.timings["ensemble"] = {"seconds": round(sum(out.timings[n]["seconds"] for n in best), 1),
                                   "members": "+".join(best)}
        for table in (out.rows, out.good_bad):  # ensemble rows first, as in the paper
            front = {k: table.pop(k) for k in ("ensemble", "ensemble_mean_prob*")}
            rest = dict(table)
            table.clear()
            table.update({**front, **rest})
    if "rfc" in wanted:
        t = time.perf_counter()
        rfc = RandomForestBaseline(args.rfc_trees, args.rfc_size, seed=args.seed, n_jobs=args.jobs)
        rfc.fit(np.concatenate([tr.x, va.x]), np.concatenate([tr.y, va.y]), len(classes))
        add("rfc", rfc.predict_proba(te.x))
        out.timings["rfc"] = {"seconds": round(time.perf_counter() - t, 1), "trees": args.rfc_trees}
    if "random" in wanted:
        add("random", WeightedRandomGuess(args.seed).fit(tr.y, len(classes)).predict_proba(len(te.y)))
    if "tip_change" in wanted and train.tip_change is not None and test.tip_change is not None:
        vflip = bool(getattr(args, "tip_change_vflip", False))
        cfg = TrainConfig(**{**base.__dict__, "architecture": "squeezenet", "restricted_augment": True,
                             "restricted_vertical_flip": vflip, "seed": args.seed + 10})
        r = train_classifier(train.x, train.tip_change.astype(int), val.x, val.tip_change.astype(int), 2, cfg,
                             progress=not args.quiet, name="tip_change")
        p_tc = predict_probabilities(r.model, test.x, tta=args.tta, restricted=True, vertical_flip=vflip)[:, 1]
        out.tip_change = binary_scores(test.tip_change.astype(bool), p_tc)
        out.timings["tip_change"] = {"seconds": round(r.seconds, 1), "epochs": r.epochs_run,
                                     "best_epoch": r.best_epoch}
    return out


def _called_probability(p: np.ndarray, pred: np.ndarray | None) -> np.ndarray:
    """(N, K) scores for threshold tuning: each frame's probability in its decided class, 0 elsewhere
    (so a class's threshold is tuned on the frames that class would be called for)."""
    pred = np.argmax(p, axis=1) if pred is None else pred
    out = np.zeros_like(p)
    out[np.arange(len(p)), pred] = p[np.arange(len(p)), pred]
    return out


def report(result: TableResult, classes, title: str, args: argparse.Namespace) -> None:
    """Print Table I, the good/bad collapse, the tip-change network, timings and the command line."""
    from qcodes_stmtip.classify.ensemble_training import format_table

    print(f"\n{title}")
    print(format_table(result.rows, tuple(classes)))
    if result.ensemble_members:
        print(f"ensemble = majority vote of the {len(result.ensemble_members)} best by validation AUROC: "
              f"{', '.join(result.ensemble_members)}; * = mean-probability arg-max of the same members "
              "(not the paper's rule)")
    print("Prec = macro average over the test classes of the precision of the model's decision (arg-max, "
          "or the ensemble's vote), every frame called; AP = macro area under the precision-recall curves.")
    confident = {n: r["confident"] for n, r in result.rows.items() if "confident" in r}
    if confident:
        print(f"\nwith the paper's per-class confidence thresholds (set on the validation sessions to reach "
              f"precision {args.target_precision:g}; a frame below its class threshold gets no call):")
        print(f"{'model':<28} {'Prec':>6} {'cover':>6} {'BalAcc':>6} {'classes':>7}")
        for n, c in confident.items():
            print(f"{n:<28} {c['mean_precision']:>6.3f} {c['coverage']:>6.3f} {c['balanced_accuracy']:>6.3f} "
                  f"{c['classes_called']:>7d}")
    print(f"\ngood/bad collapse ({'bad' if not result.good_bad else next(iter(result.good_bad.values()))['bad']}"
          " bad-tip test frames):")
    print(f"{'model':<28} {'AUROC':>6} {'BalAcc':>6} {'Prec':>6}")
    for name, g in result.good_bad.items():
        print(f"{name:<28} {g['auroc']:>6.3f} {g['balanced_accuracy']:>6.3f} {g['mean_precision']:>6.3f}")
    if result.tip_change:
        t = result.tip_change
        print(f"\ntip change (binary, {t['n']} test frames, {t['positives']} positive): AUROC {t['auroc']:.3f}, "
              f"balanced accuracy {t['balanced_accuracy']:.3f}, precision {t['precision']:.3f}")
    print("\ntraining time on this machine:")
    for name, t in result.timings.items():
        extra = ", ".join(f"{k} {v}" for k, v in t.items() if k != "seconds")
        print(f"  {name:<14} {t['seconds']:8.1f} s  {extra}")
    print(f"\ncommand: {command_line()}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": command_line(), "table": result.rows, "good_bad": result.good_bad,
            "validation_auroc": result.validation_auroc, "ensemble_members": result.ensemble_members,
            "tip_change": result.tip_change, "timings": result.timings}, indent=2) + "\n")
