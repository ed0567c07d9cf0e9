"""Hand-made frame features for tree and linear members: spectra, texture, and line statistics.

Computed in numpy from the preprocessed (N, s, s, 1) network input (−1…1), so a feature
member sees exactly what a CNN member sees. The features, in :func:`feature_names` order:

* ``radial``: log10 power of the Hann-windowed 2-D FFT in :data:`RADIAL_BANDS` radial bands
  (lattice periods, blur: a blunt tip removes the high bands);
* ``anisotropy``: for 3 radial bands, the log of max/min and max/mean power over 8 angle
  sectors (rows and dimers are directional, a generic defect is not), and the share of power
  on the kx = 0 and ky = 0 axes (streaks along the fast-scan axis);
* ``autocorrelation``: the highest normalised autocorrelation in 4 distance rings (how
  periodic the frame is);
* ``height``: standard deviation, skewness, kurtosis, percentiles and the 1–99 % range;
* ``gradient``: mean |∂x|, |∂y|, their log ratio, and the Laplacian energy;
* ``lines``: statistics of consecutive scan lines: jumps of the line mean and line spread,
  line-to-line correlation, and the largest texture change between the 8 lines above and the
  8 lines below any line (a tip change is a sudden change between lines), with the same for
  columns as a reference.

Every feature is finite for any finite input (a constant frame gives zeros).
"""

from __future__ import annotations

import numpy as np

#: Radial bands of the power spectrum (log-spaced from 1 px⁻¹·s to the Nyquist ring).
RADIAL_BANDS: int = 32
#: Angle sectors of the anisotropy features (over 0…π).
SECTORS: int = 8
#: Lines on each side of the line-change window.
LINE_WINDOW: int = 8
_EPS = 1e-12


def _radial_geometry(size: int) -> tuple[np.ndarray, np.ndarray]:
    f = np.fft.fftfreq(size) * size
    ky, kx = np.meshgrid(f, f, indexing="ij")
    return np.hypot(kx, ky), np.mod(np.arctan2(ky, kx), np.pi)


def _band_edges(size: int) -> np.ndarray:
    return np.geomspace(1.0, size / 2.0, RADIAL_BANDS + 1)


def feature_names(size: int = 128) -> list[str]:
    """Names of the columns of :func:`frame_features` (for reports and importance plots)."""
    names = [f"radial_{i}" for i in range(RADIAL_BANDS)]
    for band in ("low", "mid", "high"):
        names += [f"aniso_{band}_maxmin", f"aniso_{band}_maxmean"]
    names += ["axis_power_kx0", "axis_power_ky0"]
    names += [f"autocorr_ring_{i}" for i in range(4)]
    names += ["std", "skew", "kurtosis", "p01", "p05", "p25", "p50", "p75", "p95", "p99", "range_1_99"]
    names += ["grad_x", "grad_y", "grad_log_ratio", "laplacian"]
    for axis in ("row", "col"):
        names += [f"{axis}_mean_jump_max", f"{axis}_mean_jump_mean", f"{axis}_std_jump_max",
                  f"{axis}_corr_min", f"{axis}_corr_p05", f"{axis}_corr_mean",
                  f"{axis}_window_std_change", f"{axis}_window_mean_change", f"{axis}_window_spec_change"]
    return names


def _line_features(img: np.ndarray) -> list[float]:
    """Statistics of consecutive rows of ``img`` (lines along axis 0)."""
    means = img.mean(axis=1)
    stds = img.std(axis=1)
    dm = np.abs(np.diff(means))
    ds = np.abs(np.diff(stds))
    a = img - means[:, None]
    num = (a[1:] * a[:-1]).sum(axis=1)
    den = np.sqrt((a[1:] ** 2).sum(axis=1) * (a[:-1] ** 2).sum(axis=1)) + _EPS
    corr = num / den
    w = LINE_WINDOW
    n = img.shape[0]
    std_change, mean_change, spec_change = 0.0, 0.0, 0.0
    if n >= 2 * w + 1:
        # Row-wise spectra (along the fast axis), averaged in windows above/below each line.
        spec = np.log10(np.abs(np.fft.rfft(a, axis=1))[:, 1:] ** 2 + 1e-6)
        cs = np.concatenate([np.zeros((1, spec.shape[1])), np.cumsum(spec, axis=0)])
        cm = np.concatenate([[0.0], np.cumsum(means)])
        cv = np.concatenate([[0.0], np.cumsum(stds)])
        i = np.arange(w, n - w + 1)
        above_s, below_s = (cs[i] - cs[i - w]) / w, (cs[i + w] - cs[i]) / w
        spec_change = float(np.max(np.mean(np.abs(above_s - below_s), axis=1)))
        mean_change = float(np.max(np.abs((cm[i] - cm[i - w]) - (cm[i + w] - cm[i])) / w))
        sa, sb = (cv[i] - cv[i - w]) / w, (cv[i + w] - cv[i]) / w
        std_change = float(np.max(np.abs(np.log((sa + 1e-3) / (sb + 1e-3)))))
    return [float(dm.max(initial=0.0)), float(dm.mean()) if dm.size else 0.0,
            float(ds.max(initial=0.0)), float(corr.min(initial=1.0)),
            float(np.percentile(corr, 5)) if corr.size else 1.0, float(corr.mean()) if corr.size else 1.0,
            std_change, mean_change, spec_change]


def _one_frame(img: np.ndarray, window: np.ndarray, radius: np.ndarray, angle: np.ndarray,
               edges: np.ndarray) -> list[float]:
    size = img.shape[0]
    x = img - img.mean()
    power = np.abs(np.fft.fft2(x * window)) ** 2
    total = power.sum() + _EPS
    out: list[float] = []
    band = np.digitize(radius, edges) - 1
    valid = (band >= 0) & (band < RADIAL_BANDS)
    sums = np.bincount(band[valid], weights=power[valid], minlength=RADIAL_BANDS)
    counts = np.bincount(band[valid], minlength=RADIAL_BANDS)
    out += list(np.log10(sums / np.maximum(counts, 1) + 1e-6))
    sector = np.minimum((angle / np.pi * SECTORS).astype(int), SECTORS - 1)
    for lo, hi in ((2.0, size / 16), (size / 16, size / 6), (size / 6, size / 2)):
        ring = (radius >= lo) & (radius < hi)
        per = np.bincount(sector[ring], weights=power[ring], minlength=SECTORS) + _EPS
        out += [float(np.log(per.max() / per.min())), float(np.log(per.max() / per.mean()))]
    off_dc = radius > 0.5
    out += [float(power[0, 1:].sum() / total), float(power[1:, 0].sum() / total)]
    # Autocorrelation from the unwindowed spectrum (Wiener–Khinchin), normalised to 1 at zero shift.
    ac = np.real(np.fft.ifft2(np.abs(np.fft.fft2(x)) ** 2))
    ac = ac / (ac[0, 0] + _EPS)
    for lo, hi in ((2, 5), (5, 10), (10, 20), (20, 40)):
        ring = (radius >= lo) & (radius < hi) & off_dc
        out.append(float(ac[ring].max()))
    sd = float(x.std())
    z = x / (sd + _EPS)
    q = np.percentile(img, [1, 5, 25, 50, 75, 95, 99])
    out += [sd, float(np.mean(z ** 3)), float(np.mean(z ** 4)), *map(float, q), float(q[-1] - q[0])]
    gx = np.abs(np.diff(img, axis=1)).mean()
    gy = np.abs(np.diff(img, axis=0)).mean()
    lap = img[1:-1, 1:-1] * 4 - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:]
    out += [float(gx), float(gy), float(np.log((gx + 1e-6) / (gy + 1e-6))), float(np.mean(lap ** 2))]
    out += _line_features(img)
    out += _line_features(img.T)
    return out


def frame_features(images: np.ndarray) -> np.ndarray:
    """(N, F) float64 features of a preprocessed (N, s, s, 1) or (N, s, s) batch (see module doc)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1] != x.shape[2] or x.shape[1] < 2 * LINE_WINDOW + 1:
        raise ValueError(f"images must have shape (N, s, s[, 1]) with s ≥ {2 * LINE_WINDOW + 1}, got "
                         f"{np.shape(images)}")
    size = x.shape[1]
    hann = np.hanning(size)
    window = np.outer(hann, hann)
    radius, angle = _radial_geometry(size)
    edges = _band_edges(size)
    n_features = len(feature_names(size))
    out = np.empty((x.shape[0], n_features))
    for i, img in enumerate(x):
        if not np.all(np.isfinite(img)):
            raise ValueError(f"image {i} holds non-finite values")
        out[i] = _one_frame(img, window, radius, angle, edges)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
