"""A native-resolution view beside ``reflect`` for partial frames (issue 14): session folds.

The shipped partial model judges the first N lines through the ``reflect`` view (each line
flattened, the strip mirrored along y to a square, resized to 128²), which downsamples a
300-px strip about 2.3×. This experiment asks whether a view that keeps the native pixels
adds to it. Views of every cut (:func:`cut_views`):

* ``reflect``: :func:`~qcodes_stmtip.classify.partial.partial_view`'s shipped design;
* ``stack``: the same with ``design="stack"`` (strip cut along x, pieces stacked, resized);
* ``native``: a 128-px-wide centre crop of the flattened strip, **not resized**, mirrored along
  y to 128 lines as ``reflect`` does (a strip of ≥ 128 lines: its middle 128 lines).

Arms (features of :func:`~qcodes_stmtip.classify.features.frame_features` computed once per
view and cut; hgb + logreg of :func:`~qcodes_stmtip.classify.feature_model.make_estimator`
fitted directly on the training sessions' labelled cuts; the mean of the members'
probabilities, no thresholds, no refit, no validation split): ``reflect`` (the baseline),
``stack``, ``native``, ``reflect+stack`` / ``reflect+native`` (a view ensemble: the four
members' probabilities averaged) and ``reflect|stack`` / ``reflect|native`` (the two views'
feature vectors concatenated, one hgb + one logreg).

Training cuts, the same for every arm: the first N lines for N = 8, 16, 32, 64 and every line,
plus :data:`~qcodes_stmtip.classify.partial_training.WINDOWS` further windows of N lines per
frame and N (:func:`~qcodes_stmtip.classify.partial_training.window_starts`), as the shipped
recipe. Scored on the held-out sessions' first N lines (the PNGs carry no direction: the top N
rows), four-class AUROC and good/bad AUROC, per fold and mean ± s.d. Session folds exactly as
``benchmarks/cv_hsi100.py`` / ``partial_frames.py`` (:func:`fold_masks`, 5 folds, seed 0).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/partial_views.py                 # features cached in /tmp
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/partial_views.py --arms reflect,reflect+stack --lines 8,32
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/partial_views.py --arms 'reflect,reflect|stack' --member-seed 1

Features are cached (``--cache``, keyed by the label file) so a rerun only fits. ``--jobs``
processes compute features and fit folds (default 2).
"""

from __future__ import annotations

import argparse
import hashlib
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from cv_hsi100 import fold_masks

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "hsi100"
VIEWS: tuple[str, ...] = ("reflect", "stack", "native")
ARMS: tuple[str, ...] = ("reflect", "stack", "native", "reflect+stack", "reflect+native",
                         "reflect|stack", "reflect|native")
#: Line counts of the training cuts (0 stands for every line in the cache arrays).
TRAIN_LINES: tuple[int | None, ...] = (8, 16, 32, 64, None)
SIZE = 128


def _name(n: int | None) -> str:
    return "full" if n is None else str(n)


def _lines(text: str) -> list[int | None]:
    return [None if t.strip() == "full" else int(t) for t in text.split(",") if t.strip()]


def native_view(strip: np.ndarray, size: int = SIZE) -> np.ndarray:
    """A flattened (n, P) strip as a (size, size) float32 view at native resolution: the middle
    ``size`` pixels of each line (a narrower strip is resized along x to ``size``), mirrored
    along y to ``size`` lines as ``reflect`` does (a strip of ≥ ``size`` lines: its middle
    ``size`` lines), min–max scaled to −1…1."""
    from qcodes_stmtip.classify.preprocess import resize, scale_symmetric

    n, p = strip.shape
    if p >= size:
        x0 = (p - size) // 2
        crop = strip[:, x0:x0 + size]
    else:
        from PIL import Image

        crop = np.asarray(Image.fromarray(np.ascontiguousarray(strip, np.float32)).resize(
            (size, n), Image.Resampling.BILINEAR), dtype=np.float64)
    if n >= size:
        y0 = (n - size) // 2
        square = crop[y0:y0 + size]
    else:
        reps = -(-size // n)
        square = np.concatenate([crop if i % 2 == 0 else crop[::-1] for i in range(reps)], axis=0)[:size]
    return scale_symmetric(resize(square, size))


def cut_views(strip: np.ndarray, size: int = SIZE) -> dict[str, np.ndarray]:
    """The (size, size) views of one flattened strip, by name (:data:`VIEWS`)."""
    from qcodes_stmtip.classify.partial import strip_to_square
    from qcodes_stmtip.classify.preprocess import resize, scale_symmetric

    return {"reflect": scale_symmetric(resize(strip_to_square(strip, "reflect"), size)),
            "stack": scale_symmetric(resize(strip_to_square(strip, "stack"), size)),
            "native": native_view(strip, size)}


def _frame_job(path: str) -> tuple[list[tuple[int, int, bool]], dict[str, np.ndarray]] | None:
    """Every training / scoring cut of one frame: [(lines (0 = all), start, is_window)] and the
    features of each view (None: too short)."""
    from qcodes_stmtip.classify.features import frame_features
    from qcodes_stmtip.classify.frame_files import read_frame_array
    from qcodes_stmtip.classify.partial import acquired_lines, first_lines
    from qcodes_stmtip.classify.partial_training import WINDOWS, window_starts
    from qcodes_stmtip.classify.preprocess import FrameTooShortError, flatten_lines

    frame = read_frame_array(path)
    try:
        first_lines(frame, None)
    except FrameTooShortError:
        return None
    have = acquired_lines(frame)
    cuts = [(n, 0, False) for n in TRAIN_LINES]
    cuts += [(n, s, True) for n in TRAIN_LINES for s in window_starts(have, n, WINDOWS)]
    images: dict[str, list[np.ndarray]] = {v: [] for v in VIEWS}
    for n, start, _ in cuts:
        views = cut_views(flatten_lines(first_lines(frame, n, start=start)))
        for v in VIEWS:
            images[v].append(views[v])
    feats = {v: frame_features(np.stack(images[v])) for v in VIEWS}
    return [(0 if n is None else n, s, w) for n, s, w in cuts], feats


def features(data: Path, cache: Path, jobs: int) -> dict:
    """Labels, sessions and per-view features of every cut of every readable frame (cached)."""
    from qcodes_stmtip.classify.labels import load_labels

    frames = load_labels(data, "hsi100")
    key = hashlib.sha1((data / "labels.csv").read_bytes()).hexdigest()[:16]
    path = cache / f"partial-views-{'-'.join(VIEWS)}-{key}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        out = {k: z[k] for k in z.files}
        print(f"features from {path}", flush=True)
    else:
        t0 = time.perf_counter()
        owner, lines, start, window = [], [], [], []
        per_view: dict[str, list[np.ndarray]] = {v: [] for v in VIEWS}
        keep = []
        paths = [str(p) for p in frames.paths]
        with ProcessPoolExecutor(jobs) as pool:
            for i, res in enumerate(pool.map(_frame_job, paths, chunksize=16)):
                if i % 250 == 0:
                    print(f"  features: frame {i} of {len(paths)}, {time.perf_counter() - t0:.0f} s", flush=True)
                if res is None:
                    continue
                cuts, feats = res
                for n, s, w in cuts:
                    owner.append(len(keep))
                    lines.append(n)
                    start.append(s)
                    window.append(w)
                for v in VIEWS:
                    per_view[v].append(feats[v])
                keep.append(i)
        out = {"keep": np.array(keep, int), "owner": np.array(owner, int), "lines": np.array(lines, int),
               "start": np.array(start, int), "window": np.array(window, bool),
               **{f"features_{v}": np.concatenate(per_view[v]) for v in VIEWS}}
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
        print(f"features of {len(out['owner'])} cuts of {len(keep)} frames in {time.perf_counter() - t0:.0f} s "
              f"-> {path}", flush=True)
    fr = frames.subset(out["keep"])
    out["labels"] = fr.labels
    out["sessions"] = fr.sessions
    out["classes"] = tuple(fr.classes)
    out["paths"] = [str(p) for p in fr.paths]
    return out


def _arm_features(f: dict, arm: str) -> list[np.ndarray]:
    """Feature matrices of the member groups of ``arm`` (one per view of an ensemble, one
    concatenated for ``a|b``)."""
    if "|" in arm:
        return [np.concatenate([f[f"features_{v}"] for v in arm.split("|")], axis=1)]
    return [f[f"features_{v}"] for v in arm.split("+")]


def _fit_fold(args: tuple) -> dict:
    """Probabilities of every arm on the held-out first-N cuts of one fold."""
    f, arms, test_frames, eval_lines, fold, member_seed = args
    from qcodes_stmtip.classify.feature_model import FeatureModel

    warnings.filterwarnings("ignore")
    owner = f["owner"]
    y_cut = f["labels"][owner]
    test_cut = np.isin(owner, test_frames)
    train = np.flatnonzero(~test_cut & (y_cut >= 0))
    k = len(f["classes"])
    out: dict = {"fold": fold, "probs": {}, "seconds": {}}
    cache: dict[str, list[np.ndarray]] = {}  # per view (or concatenation), the member probabilities
    for arm in arms:
        t0 = time.perf_counter()
        groups = arm.split("+") if "|" not in arm else [arm]
        member_probs = []
        for g in groups:
            if g not in cache:
                x = _arm_features(f, g)[0]
                models = [FeatureModel.train(kind, x[train], y_cut[train], k, SIZE, seed=member_seed + i)
                          for i, kind in enumerate(("hgb", "logreg"))]
                sel = np.flatnonzero(test_cut & ~f["window"])
                cache[g] = [(sel, m.predict_features(x[sel])) for m in models]
            member_probs += [p for _, p in cache[g]]
        sel = cache[groups[0]][0][0]
        mean = np.mean(member_probs, axis=0)
        out["probs"][arm] = {_name(n): (owner[sel][f["lines"][sel] == (0 if n is None else n)],
                                        mean[f["lines"][sel] == (0 if n is None else n)]) for n in eval_lines}
        out["seconds"][arm] = time.perf_counter() - t0
        print(f"  fold {fold}: {arm} fitted ({out['seconds'][arm]:.0f} s)", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--cache", type=Path, default=Path("/tmp/stmtip-table1-cache"))
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {', '.join(ARMS)}")
    p.add_argument("--lines", type=_lines, default=_lines("8,32"), help="line counts scored [8,32]")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--member-seed", type=int, default=0,
                   help="seed of the hgb member (logreg: +1; a noise check of the arms' differences) [0]")
    args = p.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    from qcodes_stmtip.classify.metrics import good_bad_scores, score
    from qcodes_stmtip.taxonomy import GOOD_CLASSES

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for a in arms:
        if a not in ARMS:
            raise SystemExit(f"unknown arm {a!r} (known: {', '.join(ARMS)})")
    if any(n not in TRAIN_LINES for n in args.lines):
        raise SystemExit(f"--lines must be among the cut line counts {TRAIN_LINES}")
    t0 = time.perf_counter()
    f = features(args.data, args.cache, args.jobs)
    labelled = f["labels"] >= 0
    masks = fold_masks("session", f["sessions"], labelled, args.folds, args.seed)
    classes = f["classes"]
    good = GOOD_CLASSES["hsi100"]
    print(f"{len(f['labels'])} frames ({int(labelled.sum())} four-class labelled), {len(f['owner'])} cuts "
          f"({int(f['window'].sum())} windows), {args.folds} session folds; arms {', '.join(arms)}", flush=True)
    shared = {k: f[k] for k in ("owner", "lines", "window", "labels", "classes",
                                *[f"features_{v}" for v in VIEWS])}
    jobs = [(shared, arms, np.flatnonzero(m), args.lines, i, args.member_seed)
            for i, m in enumerate(masks)]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_fit_fold, jobs))
    table: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in results:
        for arm in arms:
            for n, (frames_idx, probs) in r["probs"][arm].items():
                y = f["labels"][frames_idx]
                lab = y >= 0
                four = score(y[lab], probs[lab], classes).mean_auroc
                gb = good_bad_scores(y[lab], probs[lab], probs[lab].argmax(axis=1), classes, good)["auroc"]
                table.setdefault((arm, n), []).append((four, gb))
    for n in [_name(n) for n in args.lines]:
        print(f"\nN = {n}: four-class AUROC / good/bad AUROC, per fold and mean ± s.d. over {args.folds} folds")
        head = f"{'arm':<16}" + "".join(f"{f'fold {i}':>15}" for i in range(args.folds)) + f"{'mean ± s.d.':>30}"
        print(head)
        print("-" * len(head))
        base = np.array(table[("reflect", n)]) if ("reflect", n) in table else None
        for arm in arms:
            v = np.array(table[(arm, n)])
            cells = "".join(f"{a:>8.3f}/{b:.3f}" for a, b in v)
            mean = f"{v[:, 0].mean():.3f} ± {v[:, 0].std():.3f} / {v[:, 1].mean():.3f} ± {v[:, 1].std():.3f}"
            extra = ""
            if base is not None and arm != "reflect":
                d = v[:, 0] - base[:, 0]
                extra = f"   vs reflect: {d.mean():+.3f} four-class, better in {int((d > 0).sum())} of {len(d)} folds"
            print(f"{arm:<16}{cells}{mean:>36}{extra}")
    secs = {arm: np.mean([r["seconds"][arm] for r in results]) for arm in arms}
    print("\nfit seconds per fold (an arm reuses the members of views already fitted): "
          + ", ".join(f"{a} {s:.0f}" for a, s in secs.items()))
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
