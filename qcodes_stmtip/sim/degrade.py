"""Domain randomisation of simulated training frames: image degradations measured on real frames.

The renderer (:mod:`frames`) models the physics of one scan; real frames of the labelled
H:Si(100) set also carry what the export and the microscope's bad days add, and the
classifier sees those. :func:`sample_degradation` draws, per frame, from distributions
fitted to per-class statistics of the real frames (``benchmarks/sim_realism.py --sim``,
benchmarks/RESULTS.md, issue 13) and to Kolev et al., arXiv 2510.25921 (2025):

* **multiple tips** (bad frames only): 2–4 laterally displaced copies of the frame combined as
  constant-current apexes (a soft maximum with random, sigmoid-drawn weights);
* **adsorbates**: a few bright Gaussian blobs (σ 2–6 px) on every class (real good frames show them);
* **blur**: an anisotropic Gaussian, σ 0.4–1.0 px along x and 0.1–0.5 px along y (a blunt apex,
  and the 300/512 → 128 px resize of the real frames, which averages line noise); bad frames
  also, in 40 %, a blur of σ 1.5–4 px that comes and goes along the slow axis (an unstable apex);
* **contrast drift**: a slow gain change along the slow axis (up to ±40 %);
* **scan-line shifts**: in 30 % of frames, a share of the lines shifted along x by N(0, 0.8 px);
* **streaks**: short runs of lines with fast-axis noise or a partial-line height step.

Last, :func:`export_shape` / :func:`resample` give the frame the pixel count of a real export
(300² in 91 % of the real frames, 512² in 5 %, short strips of scans stopped early in 4 %; and a tenth
at 64², the frames ``stmtip demo`` scanned when the shipped ``hsi100-sim`` was built): the
classifier's preprocessing then resizes it to 128² as it does a real frame (the resize leaves
traces the frame features see, e.g. line means that are not exactly zero after flattening).

All amplitudes are relative to the frame's own height spread (after line flattening), so
they mean the same at every scan size; :func:`apply_degradation` works on any (lines, pixels)
height array and returns a new one in the same units. Deterministic for a generator state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

#: Classes whose frames may carry multiple-tip copies (a bad tip), per surface.
MULTI_TIP_CLASSES: dict[str, tuple[str, ...]] = {"hsi100": ("generic_defect",)}


@dataclass
class Degradation:
    """What :func:`apply_degradation` adds to one frame (lengths in pixels, amplitudes relative
    to the frame's height spread)."""

    blur_px: tuple[float, float] = (0.0, 0.0)  # Gaussian σ along (y = slow, x = fast), px
    gain_drift: float = 0.0  # peak relative contrast change along the slow axis
    shift_px: float = 0.0  # σ of the lateral shift of a shifted line, px
    shift_fraction: float = 0.0  # share of lines shifted
    streaks: int = 0  # streak events (runs of lines)
    adsorbates: int = 0  # bright blobs
    copies: list[tuple[float, float, float]] = field(default_factory=list)  # (dx px, dy px, weight)
    patchy_blur_px: float = 0.0  # σ of an extra blur that comes and goes along the slow axis, px

    @property
    def is_identity(self) -> bool:
        """True when applying it changes nothing."""
        return (max(self.blur_px) <= 0 and self.gain_drift == 0 and self.shift_fraction == 0
                and self.streaks == 0 and self.adsorbates == 0 and not self.copies
                and self.patchy_blur_px <= 0)


def sample_degradation(surface: str, label: str, rng: np.random.Generator) -> Degradation:
    """Draw the degradations of one training frame of class ``label`` on ``surface``."""
    copies: list[tuple[float, float, float]] = []
    if label in MULTI_TIP_CLASSES.get(surface, ()) and rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 4))):  # 1–3 extra apexes: 2–4 copies in all
            r, phi = rng.uniform(2.0, 12.0), rng.uniform(0, 2 * math.pi)
            w = 1.0 / (1.0 + math.exp(-rng.normal(0.0, 1.5)))  # sigmoid-drawn weight in (0, 1)
            copies.append((r * math.cos(phi), r * math.sin(phi), w))
    patchy = 0.0
    if label in MULTI_TIP_CLASSES.get(surface, ()) and rng.random() < 0.4:
        patchy = float(rng.uniform(1.5, 4.0))
    shifted = rng.random() < 0.3
    return Degradation(
        blur_px=(float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.4, 1.0))),
        gain_drift=float(rng.uniform(0.0, 0.4)),
        shift_px=0.8 if shifted else 0.0,
        shift_fraction=float(rng.uniform(0.1, 1.0)) if shifted else 0.0,
        streaks=int(rng.poisson(1.0)),
        adsorbates=int(rng.poisson(1.2)),
        copies=copies,
        patchy_blur_px=patchy,
    )


#: Exported frame sizes of the real H:Si(100) set: ((lines, pixels) or None for a strip, share).
#: A tenth are exported at 64² (the demo's frames when ``hsi100-sim`` was built), which no real frame has.
EXPORT_SIZES: tuple[tuple[tuple[int, int] | None, float], ...] = (((300, 300), 0.82), ((512, 512), 0.045),
                                                                  (None, 0.035), ((64, 64), 0.10))


def export_shape(lines: int, rng: np.random.Generator) -> tuple[int, tuple[int, int]]:
    """(rendered lines to keep, exported (lines, pixels)) of one frame drawn from :data:`EXPORT_SIZES`.

    A strip keeps the first 8–``lines``·0.8 acquired lines at 300 px per line.
    """
    shares = np.array([w for _, w in EXPORT_SIZES])
    shape = EXPORT_SIZES[int(rng.choice(len(EXPORT_SIZES), p=shares / shares.sum()))][0]
    if shape is not None:
        return lines, shape
    keep = int(rng.integers(8, max(9, int(0.8 * lines))))
    return keep, (max(8, round(keep * 300 / lines)), 300)


def resample(z: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``z`` resized to ``shape`` = (lines, pixels) with bilinear interpolation (float64)."""
    from PIL import Image

    if z.shape == tuple(shape):
        return np.asarray(z, dtype=np.float64).copy()
    scale = float(np.max(np.abs(z))) or 1.0  # float32 image mode: keep metres-sized values well scaled
    img = Image.fromarray(np.ascontiguousarray(z / scale, dtype=np.float32))
    out = img.resize((int(shape[1]), int(shape[0])), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float64) * scale


def _span(z: np.ndarray) -> float:
    """Robust height spread of a frame after line flattening (1–99 % range)."""
    from qcodes_stmtip.imaging import flatten_lines

    lo, hi = np.percentile(flatten_lines(z), [1, 99])
    return float(hi - lo) + 1e-30


def _shift2d(z: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``z`` displaced by (dx, dy) px (linear interpolation, edges held)."""
    from scipy.ndimage import shift

    return shift(z, (dy, dx), order=1, mode="nearest")


def apply_degradation(z: np.ndarray, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """A degraded copy of the height frame ``z`` (lines, pixels); row order as given."""
    z = np.asarray(z, dtype=np.float64)
    if d.is_identity or z.ndim != 2 or min(z.shape) < 4:
        return z.copy()
    lines, pixels = z.shape
    span = _span(z)
    out = z.copy()
    if d.adsorbates:
        yy, xx = np.mgrid[:lines, :pixels]
        for _ in range(d.adsorbates):
            cy, cx = rng.uniform(0, lines), rng.uniform(0, pixels)
            s = rng.uniform(2.0, 6.0)
            out += rng.uniform(0.7, 2.0) * span * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    if d.copies:  # constant current over several apexes: a soft maximum of the displaced images
        beta = 6.0 / span
        stack = [beta * out] + [beta * _shift2d(out, dx, dy) + math.log(w) for dx, dy, w in d.copies]
        out = np.logaddexp.reduce(np.stack(stack), axis=0) / beta
    if d.patchy_blur_px > 0:  # an unstable apex: sharp and blunt by turns during the frame
        t = np.linspace(0, 1, lines)
        w = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 2 * math.pi))
        out = out + w[:, None] * (gaussian_filter(out, d.patchy_blur_px, mode="nearest") - out)
    if max(d.blur_px) > 0:
        out = gaussian_filter(out, d.blur_px, mode="nearest")
    if d.gain_drift:
        t = np.linspace(0, 1, lines)
        phase = rng.uniform(0, 2 * math.pi)
        gain = 1.0 + d.gain_drift * np.sin(2 * math.pi * rng.uniform(0.3, 1.5) * t + phase)
        mean = out.mean(axis=1, keepdims=True)
        out = mean + (out - mean) * gain[:, None]
    if d.shift_fraction > 0:
        x = np.arange(pixels, dtype=float)
        for i in np.flatnonzero(rng.random(lines) < d.shift_fraction):
            out[i] = np.interp(x - rng.normal(0.0, d.shift_px), x, out[i])
    for _ in range(d.streaks):
        line = int(rng.integers(lines))
        n = int(min(lines - line, rng.geometric(0.4)))
        start = int(rng.integers(pixels))
        if rng.random() < 0.5:
            out[line:line + n, start:] += rng.normal(0.0, 0.3) * span
        else:
            out[line:line + n] += rng.normal(0.0, rng.uniform(0.05, 0.3) * span, (n, pixels))
    return out
