"""``stmtip train``, ``stmtip evaluate`` and ``stmtip classify`` (Keras imported in the handlers only)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the classifier subcommands to the ``stmtip`` parser."""
    from qcodes_stmtip.taxonomy import SURFACES

    p = subparsers.add_parser("train", help="train a tip-state ensemble bundle",
                              description="Train the ensemble (and the H:Si(100) tip-change network) "
                              "on DIR (images + labels.csv) with a session-split validation set.")
    p.add_argument("--surface", required=True, choices=SURFACES,
                   help="sample surface of the data set (its class vocabulary)")
    p.add_argument("--data", required=True, type=Path, help="dataset directory with labels.csv")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to create")
    p.add_argument("--members", default="best",
                   help="comma list of architecture[:optimizer[:lr]] or feature kinds (hgb, logreg), or a "
                   "preset: 'best' (default: gradient-boosted trees + logistic regression on frame "
                   "features, the best measured on real H:Si(100) session folds; seconds to train), 'cnn' "
                   "(three adam SqueezeNets), 'paper' "
                   "(the paper's two SqueezeNets + VGG-BN, adam/sgd/rmsprop at 1e-3/1e-4/1e-4), "
                   "'paper-fast' (the same with sgd 1e-2 and rmsprop 1e-3, so short CPU runs converge)")
    p.add_argument("--width", type=float, default=0.125,
                   help="filter-count multiplier (1 = paper size) [0.125]")
    p.add_argument("--epochs", type=int, default=25, help="most epochs per member [25]")
    p.add_argument("--batch-size", type=int, default=128, help="frames per training step [128]")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="training steps per epoch [one pass over the training frames]")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience, epochs [5]")
    p.add_argument("--lr-decay", type=float, default=0.95, help="learning-rate factor per epoch")
    p.add_argument("--head", choices=("softmax", "sigmoid"), default="softmax",
                   help="output layer of the networks: one class (softmax) or independent (sigmoid) "
                        "[softmax]")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of the sessions held out for validation and thresholds [0.2]")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training [0]")
    p.add_argument("--target-precision", type=float, default=0.9,
                   help="per-class confidence thresholds: the lowest reaching this precision on the "
                        "validation sessions [0.9]")
    p.add_argument("--tip-change-precision", type=float, default=0.5,
                   help="tip-change threshold: the lowest reaching this precision on the validation "
                        "sessions [0.5]")
    p.add_argument("--plain-vote", action="store_true",
                   help="decide by the paper's plain majority vote instead of the class-weighted vote (weights "
                        "start at 1 / class frequency, tuned on the validation sessions for balanced accuracy)")
    p.add_argument("--decision", choices=("calibrated", "vote"), default="calibrated",
                   help="good/bad verdicts: one calibrated P(bad) from class and tip-change evidence with two "
                        "operating points (default), or the paper's vote, per-class thresholds and tip-change flag "
                        "(the calibration is stored either way)")
    p.add_argument("--max-bad-called-good", type=float, default=0.02,
                   help="the risk the good threshold is chosen for: bad tips called good, share of the "
                        "validation frames [0.02]")
    p.add_argument("--max-good-called-bad", type=float, default=0.05,
                   help="the risk the bad threshold is chosen for: good tips called bad, share of the "
                        "validation frames [0.05]")
    p.add_argument("--no-refit", action="store_true",
                   help="keep the feature members fitted on the training sessions only (default: fitted once "
                        "more on training + validation sessions after the thresholds are set)")
    p.add_argument("--notice", type=Path, default=None,
                   help="text file copied into the bundle as NOTICE (e.g. the training data's licence "
                        "and source), recorded in the manifest")
    p.add_argument("--no-tip-change", action="store_true", help="skip the binary tip-change network")
    p.add_argument("--tip-change-vflip", action=argparse.BooleanOptionalAction, default=True,
                   help="also flip tip-change samples vertically in training and at test time (the "
                        "paper: horizontal flips and noise only) [on]")
    p.add_argument("--tip-change-epochs", type=int, default=None,
                   help="most epochs of the tip-change network [twice --epochs]")
    p.add_argument("--tip-change-patience", type=int, default=8,
                   help="early-stopping patience of the tip-change network [8]")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                   help="average every network over the exact symmetry views of a frame (8 for the "
                        "members, flips for the tip-change network); stored in the bundle, so classify, "
                        "evaluate and the monitor use it too (8x the inference cost) [on]")
    p.add_argument("--pretrain", type=Path, default=None,
                   help="dataset of the same surface and classes (e.g. from `stmtip sim dataset`) every "
                        "member first trains on")
    p.add_argument("--pretrain-epochs", type=int, default=8, help="epochs on --pretrain [8]")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="score a bundle on a labelled dataset (Table I, plots)",
                              description="Score a model bundle on a labelled data set (DIR with "
                              "labels.csv): per-class precision/recall (the paper's Table I), "
                              "good/bad AUROC and balanced accuracy, optional ROC/PR/confusion "
                              "plots and JSON.")
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--data", required=True, type=Path, help="dataset directory with labels.csv")
    p.add_argument("--plots", type=Path, default=None, help="directory for roc.png, pr.png, confusion.png")
    p.add_argument("--json", type=Path, default=None, help="write the scores as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("classify", help="classify frame files, folders or an archive into CSV/Parquet rows",
                              description="Classify frame files with a model bundle (or a surface's shipped "
                              "default) and write one row per file: class probabilities, decision, good/bad, "
                              "and for a file that cannot be classified its reason (unreadable, no such "
                              "channel, constant channel, too few lines); the run goes on past such files. "
                              "Rows are written as chunks complete (CSV appended, or a folder of Parquet "
                              "parts), so --resume continues a killed run. --workers/--scheduler run on a "
                              "Dask cluster (the 'archive' extra). See docs/archive.md.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="bundle directory (on every worker's file system)")
    src.add_argument("--surface", choices=SURFACES, help="use the shipped default bundle")
    p.add_argument("--output", required=True, type=Path,
                   help="rows to write: FILE.csv, or FILE.parquet (a folder of Parquet parts; needs pyarrow)")
    p.add_argument("--channel", default=None,
                   help="channel to classify, as the file names it (default: topography), as in stmtip info")
    p.add_argument("--direction", choices=("forward", "backward"), default="forward",
                   help="trace of each line [forward]")
    p.add_argument("--lines", type=int, default=None, metavar="N",
                   help="classify each file as if only its first N acquired lines existed (N >= 8; scan "
                        "direction from the file's metadata, else the top N rows) with the bundle's "
                        "partial-frame model (its full-frame ensemble when it has none)")
    p.add_argument("--resume", action="store_true",
                   help="continue an existing --output: files already in it are skipped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    engine = p.add_mutually_exclusive_group()
    engine.add_argument("--workers", type=int, default=None, metavar="N",
                        help="run on a local Dask cluster of N worker processes")
    engine.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on an existing Dask cluster: its scheduler's address "
                             "(tcp://host:8786) or scheduler file; files and --model must be readable "
                             "at the same paths on its workers")
    p.add_argument("--chunk-size", type=int, default=64, metavar="N",
                   help="files per unit of work; rows reach the output a chunk at a time [64]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("files", nargs="+",
                   help="frame files, folders (searched recursively for .sxm, .gwy, *_mtrx, .dat, .sm4, "
                        ".png, .npy) or glob patterns ('**' recursive; quote them)")
    p.set_defaults(func=_classify)

    p = subparsers.add_parser("train-partial", help="add a partial-frame model to an existing bundle",
                              description="Train the partial-frame ensemble (the tip judged from the first N "
                              "lines of a frame) on DIR through the same recipe as `stmtip train`, and add "
                              "it to (or replace it in) the bundle's 'partial' section; the bundle's "
                              "full-frame members are left as they are.")
    p.add_argument("--surface", required=True, choices=SURFACES, help="sample surface of the data set")
    p.add_argument("--data", required=True, type=Path, help="dataset directory with labels.csv")
    p.add_argument("--bundle", required=True, type=Path, help="existing bundle directory to add the section to")
    p.add_argument("--lines", default="8,16,32,64,full",
                   help="line counts of the training views, comma list ('full' = every line) [8,16,32,64,full]")
    p.add_argument("--design", default=None, help="partial-view design (reflect, stretch, stack) [reflect]")
    p.add_argument("--members", default="best", help="as stmtip train --members [best]")
    p.add_argument("--windows", type=int, default=2,
                   help="further windows of N lines per frame and N added to the training views [2]")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of the sessions held out for validation and thresholds [0.2]")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training [0]")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train_partial)


def _need_dir(path: Path, option: str, *, labels: bool = False) -> None:
    """Raise FileNotFoundError (one line) unless ``path`` is a directory (with labels.csv)."""
    if not path.is_dir():
        what = "model bundle directory" if option == "--model" else "directory"
        raise FileNotFoundError(f"{option} {path}: {what} not found")
    if labels and not (path / "labels.csv").is_file():
        raise FileNotFoundError(f"{option} {path}: no labels.csv in it")


def _train(args: argparse.Namespace) -> int:
    # checked before the imports below load TensorFlow
    _need_dir(args.data, "--data", labels=True)
    if args.pretrain is not None:
        _need_dir(args.pretrain, "--pretrain", labels=True)
    if args.notice is not None and not args.notice.is_file():
        raise FileNotFoundError(f"--notice {args.notice}: no such file")
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.dataset_images import load_images
    from qcodes_stmtip.classify.decision import Risk
    from qcodes_stmtip.classify.ensemble_training import parse_members, train_ensemble
    from qcodes_stmtip.classify.labels import load_labels
    from qcodes_stmtip.classify.train_config import TrainConfig

    members = parse_members(args.members)
    frames = load_labels(args.data, args.surface)
    data = load_images(frames, progress=not args.quiet)
    base = TrainConfig(members[0].architecture, width=args.width, head=args.head, epochs=args.epochs,
                       batch_size=args.batch_size, patience=args.patience, lr_decay=args.lr_decay,
                       steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                       restricted_vertical_flip=args.tip_change_vflip)
    pretrain = None
    if args.pretrain is not None:
        pretrain = load_images(load_labels(args.pretrain, args.surface), progress=not args.quiet)
    ensemble, report = train_ensemble(
        data, base, members, val_fraction=args.val_fraction, split_seed=args.seed,
        tip_change=False if args.no_tip_change else None,
        target_precision=args.target_precision, progress=not args.quiet,
        pretrain=pretrain, pretrain_epochs=args.pretrain_epochs, tta=args.tta,
        tip_change_epochs=2 * args.epochs if args.tip_change_epochs is None else args.tip_change_epochs,
        tip_change_patience=args.tip_change_patience, tip_change_precision=args.tip_change_precision,
        balanced_decisions=not args.plain_vote, refit=not args.no_refit,
        decision_rule=args.decision, decision_risk=Risk(args.max_bad_called_good, args.max_good_called_bad),
    )
    summary = {**data.frames.summary(), "skipped_frames": len(data.skipped),
               "validation_sessions": report["validation_sessions"], "members": args.members}
    notice = None
    if args.notice is not None:
        notice = args.notice.read_text()
        summary["provenance"] = notice.strip().splitlines()[0][:300] if notice.strip() else ""
    save_bundle(ensemble, args.out, training_data=summary, metrics={"validation": report}, notice=notice)
    e = report["ensemble"]
    print(f"saved {args.out}: validation AUROC {e['mean_auroc']:.3f}, balanced accuracy "
          f"{e['balanced_accuracy']:.3f}, mean precision {e['mean_precision']:.3f}")
    if report.get("decision"):
        d, v = report["decision"], report["decision"]["validation"]
        print(f"good/bad ({d['rule']}): good at P(bad) <= {d['good_below']:.3f}, bad at >= {d['bad_above']:.3f}; on the "
              f"validation sessions coverage {v['coverage']:.3f}, accuracy on decided {v['accuracy_decided']:.3f}, "
              f"bad tips called good {v['bad_called_good']:.3f}, good tips called bad {v['good_called_bad']:.3f}")
    for line in report.get("warnings", []):
        print(f"stmtip train: warning: {line}", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    _need_dir(args.model, "--model")  # before TensorFlow loads
    _need_dir(args.data, "--data", labels=True)
    from qcodes_stmtip.classify.bundle import load_bundle
    from qcodes_stmtip.classify.dataset_images import load_images
    from qcodes_stmtip.classify.ensemble_training import evaluate_ensemble, format_table
    from qcodes_stmtip.classify.labels import load_labels

    ensemble = load_bundle(args.model)
    data = load_images(load_labels(args.data, ensemble.surface), progress=not args.quiet)
    result = evaluate_ensemble(ensemble, data, args.plots)
    print(format_table(result["table"], ensemble.classes))
    g = result["good_bad"]
    print(f"ensemble good/bad: AUROC {g['auroc']:.3f}, balanced accuracy {g['balanced_accuracy']:.3f}, "
          f"mean precision {g['mean_precision']:.3f} ({g['bad']} of {g['n']} frames bad)")
    c = result["confident"]
    print(f"ensemble calls at the bundle's confidence thresholds: precision {c['mean_precision']:.3f} over "
          f"{c['classes_called']} called classes, coverage {c['coverage']:.3f}, balanced accuracy "
          f"{c['balanced_accuracy']:.3f} (no call = wrong)")
    if "tip_change" in result:
        t = result["tip_change"]
        print(f"tip change (binary): AUROC {t['auroc']:.3f}, balanced accuracy "
              f"{t['balanced_accuracy']:.3f}, precision {t['precision']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _classify(args: argparse.Namespace) -> int:
    from qcodes_stmtip.classify.archive import classify_files

    if args.model is not None:
        _need_dir(args.model, "--model")
    if args.lines is not None and args.lines < 8:
        raise ValueError(f"--lines {args.lines}: a partial frame needs at least 8 lines")
    if args.lines is not None:
        from qcodes_stmtip.classify.bundle import default_bundle_path, read_manifest

        path = args.model if args.model is not None else default_bundle_path(args.surface)
        if not read_manifest(path).get("partial"):
            print(f"stmtip classify: {path} has no partial-frame model; the full-frame ensemble judges the "
                  f"first {args.lines} lines", file=sys.stderr)
    try:
        result = classify_files(
            args.files, args.output, model=args.model, surface=args.surface, channel=args.channel,
            direction=args.direction, lines=args.lines, workers=args.workers, scheduler=args.scheduler,
            chunk_size=args.chunk_size, resume=args.resume, overwrite=args.overwrite,
            progress=not args.quiet, as_frame=False)
    except KeyboardInterrupt:
        print(f"stmtip classify: interrupted; the rows of finished chunks are in {args.output}, "
              "--resume continues", file=sys.stderr)
        return 130
    print(result.summary())
    print(f"wrote {result.new} rows to {args.output}")
    return 0


def _train_partial(args: argparse.Namespace) -> int:
    _need_dir(args.data, "--data", labels=True)
    _need_dir(args.bundle, "--bundle")
    from qcodes_stmtip.classify.partial import DEFAULT_DESIGN
    from qcodes_stmtip.classify.partial_training import train_partial_bundle

    lines = [None if t.strip() == "full" else int(t) for t in args.lines.split(",") if t.strip()]
    if any(n is not None and n < 8 for n in lines):
        raise ValueError(f"--lines {args.lines}: every line count must be at least 8")
    report = train_partial_bundle(args.data, args.bundle, surface=args.surface, lines=lines,
                                  design=args.design or DEFAULT_DESIGN, windows=args.windows, members=args.members,
                                  seed=args.seed, val_fraction=args.val_fraction, progress=not args.quiet)
    e = report["ensemble"]
    print(f"added the partial-frame model to {args.bundle}: validation AUROC {e['mean_auroc']:.3f}, "
          f"balanced accuracy {e['balanced_accuracy']:.3f} (views of the first "
          f"{', '.join(t.strip() for t in args.lines.split(','))} lines)")
    return 0
