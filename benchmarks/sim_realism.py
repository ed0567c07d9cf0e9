"""Simulated vs real H:Si(100) frames through the same preprocessing: distribution comparison.

Usage: ``.venv/bin/python benchmarks/sim_realism.py [--per-class 40] [--data ../shared/data/hsi100]``.

Real frames: the 300×300 PNGs of ``../shared/data/hsi100`` whose votes give a clear
four-class label (unique maximum ≥ 0.5, as in that README). Simulated frames: the same
number per class from :func:`qcodes_stmtip.sim.dataset.generate_example` at 300 px,
line-flattened and min–max scaled to 8 bit exactly like the real export. For each
class it prints, real vs simulated:

* ``slope``  — log-log slope of the radially averaged power spectrum (0.02–0.25 cycles/px),
* ``psd_rms`` — RMS difference (decades) between the mean log10 radial spectra,
* ``hist_w1`` — Wasserstein-1 distance between the pooled grey-level histograms (0–1 scale),
* ``aniso`` — mean |∂z/∂y| / mean |∂z/∂x| (line-to-line streaking vs in-line roughness),
* ``acx``/``acy`` — lag-1 autocorrelation along x (fast axis) and y,
* ``floor`` — ``psd_rms`` between two halves of the real frames (what "indistinguishable" looks like).

``--sim DIR`` (a ``stmtip sim dataset --surface hsi100`` folder) adds the **per-class statistics a
classifier sees** (issue 13): both sets through the classifier's preprocessing (line flattening,
128² resize, −1…1), every real frame (any size) against every simulated frame, per content class and
for the tip-change flag. Per frame (:func:`frame_statistics`):

* ``diag`` / ``axis`` — share of frames whose strongest lattice peak (periods 2.5–40 px) lies within
  15° of a diagonal / of the scan axes (orientation of the dimer rows in the frame),
* ``period`` — median period of that peak in px of the 128² input (10th–90th percentile),
* ``peak`` — how far the peak stands out (log10 of peak power / median power of its ring),
* ``jumps`` — share of line pairs whose difference energy is > 4× the frame's median (streaks,
  line jumps and shifts),
* ``hf`` — share of spectral power above 0.25 cycles/px (blur: a blunt tip removes it),
* ``xy`` — log10 of the fast-axis (x) to slow-axis (y) high-frequency power (noise texture),
* ``drift`` — coefficient of variation of the height spread over 4 bands of lines (contrast changes),
* ``ghost`` — highest autocorrelation ≥ 8 px from the origin that is not on the lattice peak's
  direction (doubled features of a multiple tip).

``--features`` adds, per class, how well each of the classifier's own frame features
(:func:`~qcodes_stmtip.classify.features.frame_features`) tells real from simulated frames: the mean over
features of |AUROC − 0.5| (0 = indistinguishable one feature at a time) and the most telling features; and,
for the good/bad split, how each feature's good-vs-bad AUROC on real frames compares with the simulated one.

Each cell is ``real/sim`` (means; the period's median); ``|d|`` is the mean over the statistics of
|real − sim mean| / real standard deviation (0 = matched means).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from qcodes_stmtip.taxonomy import CLASSES

VOTES = {"dimers_asymmetries": ("Asymmetries", "Dimers"), "individual_atoms": ("Individual Atoms",),
         "rows": ("Rows",), "generic_defect": ("Bad/Blurry",)}


def real_frames(data: Path, per_class: int, size: int = 300) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {c: [] for c in VOTES}
    with (data / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            score = {c: max(float(row[k]) for k in keys) for c, keys in VOTES.items()}
            best = max(score, key=score.get)
            if score[best] < 0.5 or sum(v == score[best] for v in score.values()) > 1:
                continue
            if len(out[best]) >= per_class:
                continue
            img = Image.open(data / "images" / row["Name"]).convert("L")
            if img.size != (size, size):
                continue
            out[best].append(np.asarray(img, dtype=np.float64) / 255.0)
    return out


def sim_frames(per_class: int, size: int = 300, seed: int = 0,
               classes: tuple[str, ...] = CLASSES["hsi100"]) -> dict[str, list[np.ndarray]]:
    from qcodes_stmtip.sim.dataset import generate_example
    from qcodes_stmtip.sim.export import to_uint8

    rng = np.random.default_rng(seed)
    return {c: [to_uint8(generate_example("hsi100", c, rng, pixels=size).scan.forward) / 255.0
                for _ in range(per_class)] for c in classes}


def radial_psd(img: np.ndarray, bins: np.ndarray) -> np.ndarray:
    z = img - img.mean()
    w = np.hanning(z.shape[0])[:, None] * np.hanning(z.shape[1])[None, :]
    p = np.abs(np.fft.fft2(z * w)) ** 2
    f = np.hypot(np.fft.fftfreq(z.shape[0])[:, None], np.fft.fftfreq(z.shape[1])[None, :])
    idx = np.digitize(f.ravel(), bins)
    s = np.bincount(idx, weights=p.ravel(), minlength=len(bins) + 1)
    n = np.bincount(idx, minlength=len(bins) + 1)
    return (s / np.maximum(n, 1))[1:len(bins)] / p.sum()


def stats(frames: list[np.ndarray]) -> dict[str, float | np.ndarray]:
    bins = np.geomspace(0.02, 0.25, 16)
    centres = np.sqrt(bins[1:] * bins[:-1])
    logs = np.array([np.log10(radial_psd(f, bins) + 1e-20) for f in frames])
    mean_log = logs.mean(axis=0)
    slope = np.polyfit(np.log10(centres), mean_log, 1)[0]
    gx = np.mean([np.abs(np.diff(f, axis=1)).mean() for f in frames])
    gy = np.mean([np.abs(np.diff(f, axis=0)).mean() for f in frames])

    def lag1(f: np.ndarray, axis: int) -> float:
        z = f - f.mean()
        a = np.take(z, np.arange(z.shape[axis] - 1), axis=axis)
        b = np.take(z, np.arange(1, z.shape[axis]), axis=axis)
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    return {"psd": mean_log, "slope": float(slope), "aniso": float(gy / gx),
            "acx": float(np.mean([lag1(f, 1) for f in frames])),
            "acy": float(np.mean([lag1(f, 0) for f in frames])),
            "values": np.concatenate([f.ravel() for f in frames])}


def frame_statistics(img: np.ndarray) -> dict[str, float]:
    """The per-frame statistics of the module doc, of one preprocessed (s, s) frame (−1…1)."""
    n = img.shape[0]
    z = img - img.mean()
    w = np.hanning(n)[:, None] * np.hanning(n)[None, :]
    p = np.abs(np.fft.fft2(z * w)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    r = np.hypot(fx, fy)
    band = (r > 1 / 40) & (r < 1 / 2.5)
    i = int(np.argmax(np.where(band, p, -1)))
    kx, ky, kr = fx.flat[i], fy.flat[i], r.flat[i]
    ring = band & (np.abs(r - kr) < 0.01)
    angle = float(np.degrees(np.arctan2(ky, kx)) % 90.0)  # 0 = along an axis, 45 = diagonal
    d_axis = min(angle, 90.0 - angle)
    total = p[r > 0].sum() + 1e-20
    rows = np.diff(img, axis=0)
    e = (rows ** 2).mean(axis=1)
    hx = (np.abs(np.fft.rfft(z, axis=1)) ** 2)[:, n // 4:].sum()
    hy = (np.abs(np.fft.rfft(z, axis=0)) ** 2)[n // 4:, :].sum()
    bands = [b.std() for b in np.array_split(img, 4, axis=0)]
    ac = np.fft.ifft2(np.abs(np.fft.fft2(z)) ** 2).real
    ac = np.fft.fftshift(ac / (ac.flat[0] + 1e-20))
    yy, xx = np.mgrid[:n, :n] - n // 2
    dist = np.hypot(xx, yy)
    # off-lattice: away from the line through the origin along the rows (perpendicular to k)
    along = np.abs(xx * kx + yy * ky) / (kr + 1e-12)  # px across the rows
    phase = (along * kr) % 1.0
    off = (dist >= 8) & (dist <= n / 4) & (np.minimum(phase, 1 - phase) > 0.25)
    return {"diag": float(d_axis > 30.0), "axis": float(d_axis < 15.0), "period": float(1.0 / kr),
            "peak": float(np.log10(p.flat[i] / (np.median(p[ring]) + 1e-20))),
            "jumps": float(np.mean(e > 4 * np.median(e) + 1e-12)),
            "hf": float(p[r > 0.25].sum() / total), "xy": float(np.log10((hx + 1e-20) / (hy + 1e-20))),
            "drift": float(np.std(bands) / (np.mean(bands) + 1e-12)),
            "ghost": float(ac[off].max()) if off.any() else 0.0}


STAT_NAMES = ("diag", "axis", "period", "peak", "jumps", "hf", "xy", "drift", "ghost")


def class_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic of :func:`frame_statistics` over a batch (N, s, s[, 1]) of preprocessed frames."""
    rows = [frame_statistics(np.asarray(x).reshape(x.shape[0], x.shape[1])) for x in images]
    return {k: np.array([r[k] for r in rows]) for k in STAT_NAMES}


def per_class_table(real, sim) -> list[str]:
    """Lines of the per-class table (real/sim) of two :class:`ImageSet` s (real first)."""
    classes = real.frames.classes
    groups = [(c, real.frames.labels == k, sim.frames.labels == k) for k, c in enumerate(classes)]
    if real.frames.tip_change is not None and sim.frames.tip_change is not None:
        groups.append(("tip change", real.frames.tip_change.astype(bool), sim.frames.tip_change.astype(bool)))
    out = [f"{'class':18s} {'n real/sim':>10s} " + " ".join(f"{k:>11s}" for k in STAT_NAMES) + "   |d|"]
    for name, mr, ms in groups:
        if not mr.any() or not ms.any():
            continue
        a, b = class_statistics(real.images[mr]), class_statistics(sim.images[ms])
        cells, ds = [], []
        for k in STAT_NAMES:
            ra, sb = a[k], b[k]
            if k == "period":
                cells.append(f"{np.median(ra):5.1f}/{np.median(sb):<5.1f}")
            else:
                cells.append(f"{ra.mean():5.2f}/{sb.mean():<5.2f}")
            ds.append(abs(ra.mean() - sb.mean()) / (ra.std() + 1e-9))
        out.append(f"{name:18s} {int(mr.sum()):4d}/{int(ms.sum()):<5d} " + " ".join(f"{c:>11s}" for c in cells)
                   + f" {np.mean(ds):5.2f}")
    return out


def feature_table(real, sim, top: int = 4) -> list[str]:
    """Lines of the ``--features`` report (real vs simulated through the classifier's features)."""
    from sklearn.metrics import roc_auc_score

    from qcodes_stmtip.classify.features import feature_names, frame_features

    names = feature_names(real.images.shape[1])
    fr, fs = frame_features(real.images), frame_features(sim.images)

    def aurocs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        y = np.r_[np.zeros(len(a)), np.ones(len(b))]
        return np.array([roc_auc_score(y, np.r_[a[:, j], b[:, j]]) for j in range(a.shape[1])])

    out = ["real vs simulated, one classifier feature at a time (mean |AUROC − 0.5|; most telling, AUROC "
           "of sim > real):"]
    for k, c in enumerate(real.frames.classes):
        a, b = fr[real.frames.labels == k], fs[sim.frames.labels == k]
        if len(a) and len(b):
            au = aurocs(a, b)
            order = np.argsort(-np.abs(au - 0.5))[:top]
            out.append(f"  {c:20s} {np.mean(np.abs(au - 0.5)):.3f}   "
                       + ", ".join(f"{names[j]} {au[j]:.2f}" for j in order))
    bad = real.frames.classes.index("generic_defect")
    lr, ls = real.frames.labels >= 0, sim.frames.labels >= 0
    gr = aurocs(fr[lr & (real.frames.labels != bad)], fr[lr & (real.frames.labels == bad)])
    gs = aurocs(fs[ls & (sim.frames.labels != bad)], fs[ls & (sim.frames.labels == bad)])
    order = np.argsort(-np.abs(gr - 0.5))[:8]
    out.append(f"good vs bad, per feature AUROC real/sim (the 8 most telling on real; mean |real − sim| over "
               f"all features {np.mean(np.abs(gr - gs)):.3f}): "
               + ", ".join(f"{names[j]} {gr[j]:.2f}/{gs[j]:.2f}" for j in order))
    return out


def main() -> None:
    from scipy.stats import wasserstein_distance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hsi100")
    parser.add_argument("--sim", type=Path, default=None,
                        help="a 'stmtip sim dataset --surface hsi100' folder: per-class statistics (module doc)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/stmtip-table1-cache"))
    parser.add_argument("--features", action="store_true", help="with --sim: real vs simulated per classifier "
                        "feature (module doc; ~1 min per 4,000 frames)")
    args = parser.parse_args()
    if not (args.data / "labels.csv").exists():
        raise SystemExit(f"real data not found at {args.data}")
    if args.sim is not None:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from table1_rows import load_cached

        real_set, _ = load_cached(args.data, args.cache, progress=False)
        sim_set, _ = load_cached(args.sim, args.cache, progress=False)
        print(f"per-class statistics of the 128² classifier input, real ({args.data.name}) / simulated "
              f"({args.sim}):")
        print("\n".join(per_class_table(real_set, sim_set)))
        if args.features:
            print("\n".join(feature_table(real_set, sim_set)))
        print()
    real = real_frames(args.data, args.per_class)
    sim = sim_frames(args.per_class)
    print(f"{'class':20s} {'n':>4s} | {'slope real/sim':>15s} | {'psd_rms':>7s} | {'hist_w1':>7s} | "
          f"{'aniso real/sim':>15s} | {'acx real/sim':>13s} | {'acy real/sim':>13s} | {'floor':>5s}")
    for c in CLASSES["hsi100"]:
        if not real[c]:
            continue
        r, s = stats(real[c]), stats(sim[c])
        rms = float(np.sqrt(np.mean((r["psd"] - s["psd"]) ** 2)))
        half = len(real[c]) // 2
        floor = float(np.sqrt(np.mean((stats(real[c][:half])["psd"] - stats(real[c][half:])["psd"]) ** 2)))
        w1 = wasserstein_distance(r["values"][::7], s["values"][::7])
        print(f"{c:20s} {len(real[c]):4d} | {r['slope']:7.2f}/{s['slope']:<7.2f} | {rms:7.3f} | {w1:7.3f} | "
              f"{r['aniso']:7.2f}/{s['aniso']:<7.2f} | {r['acx']:6.3f}/{s['acx']:<6.3f} | "
              f"{r['acy']:6.3f}/{s['acy']:<6.3f} | {floor:5.3f}")


if __name__ == "__main__":
    main()
