"""Instrument realism: drift and creep, tilt, feedback response, noise and scan glitches.

These act on the ideal topography seen by the apex (:mod:`surfaces`) and turn it into
what a real constant-current scan records: the lateral position of each pixel drifts
(thermal drift, logarithmic piezo creep after a frame move), the sample plane is
tilted, the z feedback is a damped second-order loop that rings after steps (in the
scan direction, so trace and retrace differ), the retrace is shifted by piezo
hysteresis, each line gets an offset, and the tunnelling signal carries 1/f and white
noise in acquisition order — noise and glitches enter before the loop, so the loop's
bandwidth smooths them along the fast axis while lines stay independent (streaks). An unstable or contaminated apex adds glitches: height jumps and
streaks, saturated or dropped lines, lost-feedback bursts and spikes. All lengths here
are nanometres; times are seconds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy.signal import lfilter, lfilter_zi


@dataclass
class InstrumentNoise:
    """Per-frame instrument imperfections: drift, creep, noise, z-loop response (nm, s).

    A noise model, not an instrument driver; the defaults are an ideal instrument.

    Draw typical ones with :func:`sample_instrument`.
    """

    drift_nm_s: tuple[float, float] = (0.0, 0.0)
    creep_nm: tuple[float, float] = (0.0, 0.0)
    creep_tau_s: float = 2.0
    z_drift_nm_s: float = 0.0
    line_offset_nm: float = 0.0
    white_noise_nm: float = 0.0
    flicker_noise_nm: float = 0.0
    feedback_hz: float = math.inf  # natural frequency of the z loop, Hz (inf: ideal loop)
    feedback_damping: float = 0.7
    retrace_shift_px: float = 0.0

    def feedback_omega(self, seconds_per_pixel: float) -> float:
        """Loop natural frequency in radians per pixel at a pixel dwell time (s)."""
        return 2 * math.pi * self.feedback_hz * seconds_per_pixel

    def drift(self, t: np.ndarray) -> np.ndarray:
        """Lateral displacement (…, 2) in nm at times ``t`` (s) after the last frame move."""
        t = np.maximum(np.asarray(t, dtype=float), 0.0)
        creep = np.log1p(t / self.creep_tau_s)[..., None] * np.asarray(self.creep_nm)
        return t[..., None] * np.asarray(self.drift_nm_s) + creep


def sample_instrument(rng: np.random.Generator, *, quiet: bool = False,
                      low_temperature: bool = False) -> InstrumentNoise:
    """Draw typical instrument parameters.

    Room temperature (the H:Si(100) VT-STM data): drift ~0.01–0.05 nm/s, noise of a few
    pm to ~20 pm. ``low_temperature`` (the 4.5 K Au/Cu data): ~10× less drift and noise.
    ``quiet`` gives an ideal, drift- and noise-free instrument.
    """
    if quiet:
        return InstrumentNoise()
    lt = 0.12 if low_temperature else 1.0
    phi = rng.uniform(0, 2 * np.pi)
    speed = lt * rng.lognormal(math.log(0.01), 0.8)  # nm/s
    cphi = rng.uniform(0, 2 * np.pi)
    creep = lt * rng.uniform(0.0, 0.6)
    return InstrumentNoise(
        drift_nm_s=(speed * math.cos(phi), speed * math.sin(phi)),
        creep_nm=(creep * math.cos(cphi), creep * math.sin(cphi)),
        creep_tau_s=rng.uniform(1.0, 10.0),
        z_drift_nm_s=lt * rng.normal(0, 0.005),
        line_offset_nm=lt * rng.lognormal(math.log(0.003), 0.7),
        white_noise_nm=lt * rng.lognormal(math.log(0.003), 0.6),
        flicker_noise_nm=lt * rng.lognormal(math.log(0.004), 0.7),
        feedback_hz=math.exp(rng.uniform(math.log(40.0), math.log(400.0))),
        feedback_damping=rng.uniform(0.25, 0.9),
        retrace_shift_px=rng.normal(0, 0.3),
    )


def sample_tilt(sample_seed: int) -> tuple[float, float]:
    """Slope (dz/dx, dz/dy) of the mounted sample plane, fixed for a sample."""
    r = np.random.default_rng([int(sample_seed), 97])
    return tuple(r.normal(0, 0.015, 2))


def feedback(z: np.ndarray, omega: float, damping: float, reverse: bool = False) -> np.ndarray:
    """Response of a second-order z loop to the topography ``z`` along each row.

    The loop follows ``z`` with natural frequency ``omega`` (rad/pixel) and ``damping``
    (< 1 rings after steps). ``reverse`` runs the scan right to left (retrace).
    """
    if omega <= 0 or damping <= 0:
        raise ValueError(f"feedback needs omega > 0 and damping > 0, got {omega}, {damping}")
    if omega >= 3.0:
        return z
    # bilinear transform of w²/(s² + 2ζws + w²) at 1 sample per pixel
    k = 2.0
    w2, zw = omega * omega, 2 * damping * omega
    a0 = k * k + zw * k + w2
    b = np.array([w2, 2 * w2, w2]) / a0
    a = np.array([1.0, (2 * w2 - 2 * k * k) / a0, (k * k - zw * k + w2) / a0])
    x = z[:, ::-1] if reverse else z
    zi = lfilter_zi(b, a)[None, :] * x[:, :1]
    y, _ = lfilter(b, a, x, axis=1, zi=zi)
    return y[:, ::-1] if reverse else y


@functools.lru_cache(maxsize=16)
def _pink_shape(n: int) -> tuple[np.ndarray, float]:
    k = np.arange(n // 2 + 1, dtype=float)
    k[0] = 1.0
    return 1.0 / np.sqrt(k), float(np.sum(1.0 / k[1:]))


def flicker(rng: np.random.Generator, n: int, amplitude: float, white: float = 0.0) -> np.ndarray:
    """``n`` samples of 1/f (pink) noise of standard deviation ``amplitude`` plus white noise of ``white``.

    Both are shaped in one inverse FFT (variances add).
    """
    if n < 2 or (amplitude <= 0 and white <= 0):
        return np.zeros(n)
    m = n // 2 + 1
    inv_sqrt_k, harmonic = _pink_shape(n)
    # an irfft of unit complex normals weighted w_k has variance ~ 4 Σ w_k² / n²
    pink = amplitude * n / np.sqrt(4.0 * harmonic)
    weights = (pink * inv_sqrt_k + white * np.sqrt(n / 2.0)).astype(np.float32)
    weights[0] = 0.0
    z = rng.standard_normal(2 * m, dtype=np.float32)
    spec = (z[:m] + 1j * z[m:]) * weights  # complex64: noise needs no double precision
    return sfft.irfft(spec, n)


def fractional_shift(rows: np.ndarray, shift_px: float) -> np.ndarray:
    """Shift every row by ``shift_px`` pixels (linear interpolation, edges held)."""
    if abs(shift_px) < 1e-3:
        return rows
    n = rows.shape[1]
    src = np.clip(np.arange(n) - shift_px, 0, n - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = src - i0
    return rows[:, i0] * (1 - f) + rows[:, i1] * f


def glitches(rng: np.random.Generator, fwd: np.ndarray, bwd: np.ndarray, instability: float,
             contamination: float, z_range_nm: float) -> None:
    """Add apex-instability glitches in place to trace/retrace (rows in acquisition order).

    ``instability`` (0–1) sets the rate of jumps, streaks, saturated/dropped lines and
    lost-feedback bursts; ``contamination`` (0–1) the rate of spikes and short streaks.
    """
    from qcodes_stmtip.imaging import flatten_lines

    lines, pixels = fwd.shape
    span = float(np.ptp(flatten_lines(fwd))) + 1e-3  # contrast range the image will show
    if instability > 0:
        n_events = rng.poisson(instability * (2 + lines / 32))
        for _ in range(n_events):
            kind = rng.choice(5, p=[0.5, 0.1, 0.1, 0.15, 0.15])
            line = int(rng.integers(lines))
            n = int(min(lines - line, max(1, rng.geometric(0.3 if kind != 4 else 0.08))))
            sl = slice(line, line + n)
            if kind == 0:  # apex jumps: a stripe offset on part of a line run
                start = int(rng.integers(pixels))
                dz = rng.normal(0, 0.3) * span
                fwd[sl, start:] += dz
                bwd[sl, : pixels - start] += dz
            elif kind == 1:  # saturated: z pinned far outside the frame's range
                v = float(np.mean(fwd)) + np.sign(rng.normal()) * min(z_range_nm, rng.uniform(1, 3) * span)
                fwd[sl] = v
                bwd[sl] = v
            elif kind == 2:  # dropped lines: the controller repeats a constant
                fwd[sl] = fwd[line - 1] if line > 0 else 0.0
                bwd[sl] = bwd[line - 1] if line > 0 else 0.0
            elif kind == 3:  # high-frequency burst (tip oscillating)
                amp = rng.uniform(0.1, 0.6) * span
                fwd[sl] += rng.normal(0, amp, (n, pixels))
                bwd[sl] += rng.normal(0, amp, (n, pixels))
            else:  # lost feedback: slow runaway then recovery across several lines
                ramp = np.cumsum(rng.normal(0, 0.05 * span, (n, pixels)).ravel()).reshape(n, pixels)
                fwd[sl] += ramp
                bwd[sl] += ramp[:, ::-1]
    if contamination > 0:
        n_spikes = rng.poisson(contamination * (2 + lines / 16))
        for _ in range(n_spikes):
            line = int(rng.integers(lines))
            start = int(rng.integers(pixels))
            length = int(rng.integers(1, max(2, pixels // 6)))
            dz = rng.normal(0, 0.25) * span
            fwd[line, start:start + length] += dz
        fwd += rng.normal(0, 0.01 * contamination * span, fwd.shape)
        bwd += rng.normal(0, 0.01 * contamination * span, bwd.shape)
