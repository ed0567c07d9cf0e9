"""AUROC against lines scanned: the tip judged from the first N lines of real H:Si(100) frames.

Session folds exactly as ``benchmarks/cv_hsi100.py`` (its :func:`fold_masks`, same seed and
count). In each fold the partial-frame ensemble is trained through the one recipe,
:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble` (``stmtip train``'s defaults:
``--members best`` = hgb + logreg on frame features, session-split validation, thresholds,
refit), on the training sessions' frames cut into their first N lines for every N of
``--train-lines`` and into ``--windows`` further windows of N lines spread over each frame
(:mod:`qcodes_stmtip.classify.partial_training`; the frame's labels hold for each cut, tip
change included), and scored on the held-out
sessions' frames cut to each N of ``--lines`` with
:func:`~qcodes_stmtip.classify.ensemble_training.evaluate_ensemble` (the ``stmtip evaluate``
path). The PNGs carry no scan direction, so the first lines are the top rows. A frame with
fewer lines than N gives its every line. ``--fallback`` also trains the full-frame recipe on
the full frames of the same folds (what a bundle without a partial section does: that
ensemble on the partial view).

Tip-change AUROC is against the *frame's* tip-change vote: a change that happens below the
first N lines cannot be in the view, so it is bounded by how many changes fall early.

    .venv/bin/python benchmarks/partial_frames.py                       # N = 8, 16, 32, 64, full
    .venv/bin/python benchmarks/partial_frames.py --only 0,1 --json-dir /tmp/pf   # some folds, saved
    .venv/bin/python benchmarks/partial_frames.py --summarise /tmp/pf   # the table of saved folds
    .venv/bin/python benchmarks/partial_frames.py --design stretch --lines 8,32 --train-lines 8,32

``--evaluate-bundle BUNDLE`` trains nothing: it scores the bundle's shipped partial model, and
its full-frame ensemble on the same partial views (the fallback), on the held-out labelled set
``--data`` of ``--surface`` (e.g. simulated frames of other seeds, hence other sessions, than
the ones the bundle was trained on) cut to its first N lines for each N of ``--lines``:

    .venv/bin/python benchmarks/partial_frames.py --evaluate-bundle qcodes_stmtip/classify/bundles/au111 \
        --surface au111 --data /tmp/au111_test --lines 8,16,32,full
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
from cv_hsi100 import fold_masks
from table1_rows import command_line, load_cached

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "hsi100"
#: Columns of the table: (label, key path in evaluate_ensemble's result).
COLUMNS = (
    ("4-class AUROC", ("table", "ensemble", "mean_auroc")),
    ("4-class bal.acc", ("table", "ensemble", "balanced_accuracy")),
    ("good/bad AUROC", ("good_bad", "auroc")),
    ("good/bad bal.acc", ("good_bad", "balanced_accuracy")),
    ("tip-change AUROC", ("tip_change", "auroc")),
)


def _lines(text: str) -> list[int | None]:
    out: list[int | None] = []
    for t in text.split(","):
        t = t.strip()
        if t:
            out.append(None if t == "full" else int(t))
    return out


def _name(n: int | None) -> str:
    return "full" if n is None else str(n)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only", type=str, default=None, help="comma list of fold numbers to run (default all)")
    p.add_argument("--lines", type=_lines, default=_lines("8,16,32,64,full"),
                   help="line counts scored [8,16,32,64,full]")
    p.add_argument("--train-lines", type=_lines, default=None,
                   help="line counts of the training views [those of qcodes_stmtip.classify.partial.TRAINED_LINES]")
    p.add_argument("--design", default=None, help="partial-view design [partial.DEFAULT_DESIGN]")
    p.add_argument("--windows", type=int, default=None,
                   help="further training windows per frame and line count [partial_training.WINDOWS]")
    p.add_argument("--members", default="best", help="as stmtip train --members [best]")
    p.add_argument("--target-precision", type=float, default=0.9)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-refit", action="store_true", help="as stmtip train --no-refit")
    p.add_argument("--fallback", action="store_true",
                   help="also score the full-frame recipe (trained on full frames) on the partial views")
    p.add_argument("--cache", type=Path, default=Path("/tmp/stmtip-table1-cache"),
                   help="the full-frame cache of cv_hsi100 / table1 (and the partial views, cached beside it)")
    p.add_argument("--json-dir", type=Path, default=None, help="write each fold's scores here (fold_<i>.json)")
    p.add_argument("--summarise", type=Path, default=None,
                   help="print the table of the fold_*.json in this folder and exit (no training)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--evaluate-bundle", type=Path, default=None,
                   help="score this bundle's partial model (and its full-frame fallback) on --data; no training")
    p.add_argument("--surface", default="hsi100", help="surface of --data (with --evaluate-bundle) [hsi100]")
    return p.parse_args()


def _get(result: dict, path: tuple[str, ...]) -> float:
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return float("nan")
        result = result[key]
    return float(result)


def table(folds: list[dict], key: str, lines: list[str], classes: int = 4) -> list[str]:
    """Mean ± s.d. over folds of every column (the value alone for one fold), one row per line
    count; ``classes`` names the multi-class columns."""
    head = f"{'lines':>6}  " + "  ".join(f"{c[0].replace('4-class', f'{classes}-class'):>17}" for c in COLUMNS)
    out = [head, "-" * len(head)]
    for n in lines:
        cells = []
        for _, path in COLUMNS:
            v = np.array([_get(f[key].get(n, {}), path) for f in folds if key in f])
            if not np.isfinite(v).any():
                cells.append("—")
            else:
                cells.append(f"{np.nanmean(v):.3f}" + (f" ± {np.nanstd(v):.3f}" if len(v) > 1 else ""))
        out.append(f"{n:>6}  " + "  ".join(f"{c:>17}" for c in cells))
    return out


def report(folds: list[dict]) -> list[str]:
    lines = list(folds[0]["partial"])
    meta = folds[0]["meta"]
    out = [f"partial-frame ensemble ({meta['members']}, design {meta['design']}, trained on first-N views "
           f"N = {', '.join(meta['train_lines'])} + {meta.get('windows', 0)} further windows per N): "
           f"mean ± s.d. over {len(folds)} session folds "
           f"({', '.join(str(f['fold']) for f in folds)})", *table(folds, "partial", lines)]
    if all("fallback" in f for f in folds):
        out += ["", "fallback: full-frame recipe (trained on full frames) on the same partial views",
                *table(folds, "fallback", lines)]
    out.append(f"training time per fold {np.mean([f['train_seconds'] for f in folds]):.0f} s")
    return out


def cached_views(args, frames, lines, design, windows):
    """:func:`frame_views` of ``frames``, cached as npz beside the full-frame cache."""
    from qcodes_stmtip.classify.partial_training import PartialViews, frame_views

    key = hashlib.sha1((args.data / "labels.csv").read_bytes()).hexdigest()[:16]
    tag = "-".join(_name(n) for n in lines)
    path = None if args.cache is None else args.cache / f"partial-{design}-{tag}-w{windows}-{key}.npz"
    if path is not None and path.is_file():
        z = np.load(path, allow_pickle=False)
        views = {n: z[f"view_{_name(n)}"] for n in lines}
        skipped = list(zip(z["skipped_paths"].tolist(), z["skipped_reasons"].tolist(), strict=True))
        return PartialViews(frames.subset(z["keep"]), views, z["available"], skipped, design, z["windows"],
                            z["window_frame"], z["window_lines"], z["window_start"])
    pv = frame_views(frames, lines, design=design, windows=windows, progress=not args.quiet)
    if path is not None:
        kept = {str(p) for p in pv.frames.paths}
        keep = np.array([i for i, p in enumerate(frames.paths) if str(p) in kept], dtype=int)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, keep=keep, available=pv.lines_available,
                 skipped_paths=np.array([s[0] for s in pv.skipped], dtype=str),
                 skipped_reasons=np.array([s[1] for s in pv.skipped], dtype=str), windows=pv.windows,
                 window_frame=pv.window_frame, window_lines=pv.window_lines, window_start=pv.window_start,
                 **{f"view_{_name(n)}": v for n, v in pv.views.items()})
    return pv


def evaluate_bundle(args: argparse.Namespace) -> None:
    """Score ``args.evaluate_bundle``'s partial model and its fallback on ``args.data`` at each N."""
    from qcodes_stmtip.classify.bundle import load_bundle
    from qcodes_stmtip.classify.ensemble_training import evaluate_ensemble
    from qcodes_stmtip.classify.labels import load_labels
    from qcodes_stmtip.classify.partial import load_partial
    from qcodes_stmtip.classify.partial_training import frame_views

    model = load_partial(args.evaluate_bundle, args.surface)
    if model.fallback:
        raise SystemExit(f"{args.evaluate_bundle} has no partial section")
    full = load_bundle(args.evaluate_bundle, surface=args.surface)
    frames = load_labels(args.data, args.surface)
    pv = frame_views(frames, args.lines, size=model.image_size, design=model.design, windows=0,
                     progress=not args.quiet)
    fr = pv.frames
    print(f"{args.evaluate_bundle}: {len(fr)} held-out frames ({int((fr.labels >= 0).sum())} labelled) from "
          f"{np.unique(fr.sessions).size} sessions of {args.data}; {len(pv.skipped)} skipped; design {model.design}")
    result: dict = {"meta": {"members": "shipped", "design": model.design, "train_lines": [
        _name(n) for n in model.manifest.get("lines", [])], "windows": "shipped", "command": command_line()},
        "fold": "held-out", "train_seconds": float("nan"), "partial": {}, "fallback": {}}
    for key, ens in (("partial", model.ensemble), ("fallback", full)):
        for n in args.lines:
            r = evaluate_ensemble(ens, pv.image_set(None, [n]))
            result[key][_name(n)] = {k: r[k] for k in ("table", "good_bad", "tip_change") if k in r}
    lines = list(result["partial"])
    k = len(model.classes)
    print("\n".join(["partial-frame model (shipped)", *table([result], "partial", lines, k), "",
                     "fallback: the bundle's full-frame ensemble on the same partial views",
                     *table([result], "fallback", lines, k)]))
    if args.json_dir is not None:
        args.json_dir.mkdir(parents=True, exist_ok=True)
        out = args.json_dir / f"heldout_{args.surface}.json"
        out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"\n{command_line()}")


def main() -> None:
    args = parse_args()
    if args.evaluate_bundle is not None:
        warnings.filterwarnings("ignore", category=UserWarning)
        evaluate_bundle(args)
        return
    if args.summarise is not None:
        folds = [json.loads(p.read_text()) for p in sorted(args.summarise.glob("fold_*.json"))]
        if not folds:
            raise SystemExit(f"no fold_*.json in {args.summarise}")
        print("\n".join(report(folds)))
        return
    warnings.filterwarnings("ignore", category=UserWarning)
    from qcodes_stmtip.classify.dataset_images import ImageSet
    from qcodes_stmtip.classify.ensemble_training import (
        evaluate_ensemble,
        parse_members,
        train_ensemble,
    )
    from qcodes_stmtip.classify.labels import load_labels
    from qcodes_stmtip.classify.partial import DEFAULT_DESIGN, TRAINED_LINES
    from qcodes_stmtip.classify.partial_training import WINDOWS
    from qcodes_stmtip.classify.training import TrainConfig

    design = args.design or DEFAULT_DESIGN
    windows = WINDOWS if args.windows is None else args.windows
    train_lines = args.train_lines or list(TRAINED_LINES)
    every = list(dict.fromkeys([*train_lines, *args.lines]))
    frames = load_labels(args.data, "hsi100")
    pv = cached_views(args, frames, every, design, windows)
    fr = pv.frames
    labelled = fr.labels >= 0
    members = parse_members(args.members)
    base = TrainConfig(members[0].architecture, seed=args.seed)
    # the folds of cv_hsi100 (same frames: those preprocess_frame accepts, dealt by session)
    full, _ = load_cached(args.data, args.cache, progress=not args.quiet)
    if [str(p) for p in full.frames.paths] != [str(p) for p in fr.paths]:
        raise SystemExit("the partial views and the full-frame cache hold different frames")
    masks = fold_masks("session", fr.sessions, labelled, args.folds, args.seed)
    run = range(args.folds) if args.only is None else [int(i) for i in args.only.split(",")]
    print(f"{len(fr)} frames ({int(labelled.sum())} four-class labelled) from {np.unique(fr.sessions).size} "
          f"sessions; design {design}; training views N = {', '.join(_name(n) for n in train_lines)} "
          f"+ {windows} windows per N ({len(pv.windows)} in all); "
          f"members {args.members}", flush=True)
    meta = {"design": design, "windows": windows, "members": args.members,
            "train_lines": [_name(n) for n in train_lines],
            "lines": [_name(n) for n in args.lines], "command": command_line()}
    folds = []
    for i in run:
        test = masks[i]
        t0 = time.perf_counter()
        ensemble, rep = train_ensemble(
            pv.image_set(~test, train_lines, windows=True), base, members, val_fraction=args.val_fraction,
            split_seed=args.seed + i, target_precision=args.target_precision, progress=not args.quiet,
            refit=not args.no_refit)
        train_s = time.perf_counter() - t0
        result = {"fold": i, "meta": meta, "train_seconds": train_s, "n_test": int(test.sum()),
                  "validation_sessions": rep["validation_sessions"], "partial": {}}
        for n in args.lines:
            r = evaluate_ensemble(ensemble, pv.image_set(test, [n]))
            result["partial"][_name(n)] = {k: r[k] for k in ("table", "good_bad", "tip_change", "n_labelled")
                                          if k in r}
        if args.fallback:
            reference, _ = train_ensemble(
                ImageSet(full.images[~test], fr.subset(~test), []), base, members, val_fraction=args.val_fraction,
                split_seed=args.seed + i, target_precision=args.target_precision, progress=not args.quiet,
                refit=not args.no_refit)
            result["fallback"] = {}
            for n in args.lines:
                r = evaluate_ensemble(reference, pv.image_set(test, [n]))
                result["fallback"][_name(n)] = {k: r[k] for k in ("table", "good_bad", "tip_change") if k in r}
        folds.append(result)
        p32 = result["partial"]
        print(f"fold {i}: {int((fr.labels[test] >= 0).sum())} four-class test frames, trained in {train_s:.0f} s; "
              + "; ".join(f"N={n}: {_get(p32[n], COLUMNS[0][1]):.3f} / {_get(p32[n], COLUMNS[2][1]):.3f} / "
                          f"{_get(p32[n], COLUMNS[4][1]):.3f}" for n in p32), flush=True)
        if args.json_dir is not None:
            args.json_dir.mkdir(parents=True, exist_ok=True)
            (args.json_dir / f"fold_{i}.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print("\n" + "\n".join(report(folds)))
    print(f"\n{command_line()}")


if __name__ == "__main__":
    main()
