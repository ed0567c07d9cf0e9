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
  columns as a reference;
* ``axis spectra``: log power of the 1-D spectra along the fast (x) and the slow (y) scan
  axis in :data:`AXIS_BANDS` log-spaced bands (streaks and noise are not isotropic);
* ``blocks``: how unequal the frame is over 4×4 blocks (spread of log height spread and of
  the mean fast-axis gradient: a frame that changes part-way);
* ``coarse lines``: line-to-line correlation at half resolution (min, 10th percentile, mean);
* ``maxima``: density of local maxima above mean + ½ s.d. after Gaussian smoothing at
  σ = 0.8 and 1.5 px (resolved atoms versus dimer rows);
* ``histogram``: entropy of the height histogram (32 bins) and the share of pixels near ±1.

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
#: Log-spaced bands of the 1-D spectra along each scan axis.
AXIS_BANDS: int = 16
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
    names += [f"{axis}_spectrum_{i}" for axis in ("x", "y") for i in range(AXIS_BANDS)]
    names += ["block_std_spread", "block_std_range", "block_gradient_log_range", "block_gradient_spread"]
    names += ["coarse_row_corr_min", "coarse_row_corr_p10", "coarse_row_corr_mean"]
    names += ["maxima_density_0.8px", "maxima_density_1.5px", "histogram_entropy", "share_near_extremes"]
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
    out += _axis_spectra(img) + _axis_spectra(img.T)
    out += _blocks(img) + _coarse_lines(img) + _maxima(img) + _histogram(img)
    return out


def _axis_spectra(img: np.ndarray) -> list[float]:
    """Log mean power of the 1-D spectra along axis 1 (after removing each line's mean) in
    :data:`AXIS_BANDS` log-spaced bands; a band narrower than one frequency bin takes the
    interpolated log power at its centre."""
    size = img.shape[1]
    a = img - img.mean(axis=1, keepdims=True)
    log_p = np.log10((np.abs(np.fft.rfft(a * np.hanning(size)[None, :], axis=1)) ** 2).mean(axis=0)[1:] + 1e-9)
    k = np.arange(1, log_p.size + 1)
    edges = np.geomspace(1, log_p.size + 1, AXIS_BANDS + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (k >= lo) & (k < hi)
        out.append(float(log_p[inside].mean()) if inside.any() else float(np.interp(np.sqrt(lo * hi), k, log_p)))
    return out


def _blocks(img: np.ndarray) -> list[float]:
    size = img.shape[0] // 4 * 4
    b = img[:size, :size].reshape(4, size // 4, 4, size // 4).transpose(0, 2, 1, 3).reshape(16, -1)
    log_std = np.log(b.std(axis=1) + 1e-4)
    g = np.abs(np.diff(img[:size, :size + 1] if img.shape[1] > size else img[:size, :size], axis=1))
    cols = g.shape[1] // 4 * 4
    g = g[:, :cols].reshape(4, size // 4, 4, cols // 4).mean(axis=(1, 3))
    return [float(log_std.std()), float(log_std.max() - log_std.min()),
            float(np.log((g.max() + 1e-6) / (g.min() + 1e-6))), float(np.log(g + 1e-6).std())]


def _coarse_lines(img: np.ndarray) -> list[float]:
    size = img.shape[0] // 2 * 2
    d = img[:size, :size].reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3))
    d = d - d.mean(axis=1, keepdims=True)
    c = (d[1:] * d[:-1]).sum(1) / (np.sqrt((d[1:] ** 2).sum(1) * (d[:-1] ** 2).sum(1)) + _EPS)
    return [float(c.min()), float(np.percentile(c, 10)), float(c.mean())]


def _maxima(img: np.ndarray) -> list[float]:
    from scipy.ndimage import gaussian_filter, maximum_filter

    out = []
    for sigma in (0.8, 1.5):
        g = gaussian_filter(img, sigma)
        peaks = (g == maximum_filter(g, size=3)) & (g > g.mean() + 0.5 * g.std())
        out.append(float(peaks.mean()))
    return out


def _histogram(img: np.ndarray) -> list[float]:
    h, _ = np.histogram(img, bins=32, range=(-1, 1))
    h = h / max(h.sum(), 1)
    nz = h[h > 0]
    return [float(-(nz * np.log(nz)).sum()), float(np.mean(np.abs(img) > 0.9))]


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
