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


def main() -> None:
    from scipy.stats import wasserstein_distance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hsi100")
    args = parser.parse_args()
    if not (args.data / "labels.csv").exists():
        raise SystemExit(f"real data not found at {args.data}")
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
