"""Point spectra: the tunnelling current I(V) and dI/dV at one site, for a surface and a tip.

The sample's local density of states ρ(E) (dimensionless, ≈ 1 far from features):

* Au(111) / Cu(111): a smooth bulk background plus the Shockley surface state, a 2-D
  band whose onset :data:`SURFACE_STATE_ONSET_V` (−0.50 V on Au(111), −0.44 V on Cu(111))
  appears in dI/dV as a step up (ρ is a step for a 2-D free-electron band, with a small
  peak at the band edge).
* H:Si(100): a gap between the valence-band edge (−1.0 V) and the conduction-band edge
  (+0.5 V); contamination adds states inside it.

The tip enters as real spectroscopy tips do (Barker & Sweetman 2025 judge metal tips this
way): a sharp clean apex shows a sharp step (width ~10 mV); a blunt apex broadens it
(width grows with the apex radius); a double apex adds a second onset, shifted by a
few tens of mV and weighted by the second apex's share of the current; an adsorbate on
the apex (``contamination``) weakens the step and adds tip-state peaks at energies fixed
for that apex; an unstable apex (``instability``) makes the current jump (telegraph
noise). Tip-dependent features are drawn from a stream seeded by the apex itself, so the
same apex gives the same features at every site.

The current follows the Tersoff–Hamann / WKB picture at constant height: the tip is
stabilised at ``setpoint_A`` and ``setpoint_bias_V``, the feedback is held, and
``I(V) = I_s · N(V) / N(V_s) · e^{−2κ Δz}`` with ``N(V) = ∫_0^V ρ(E) dE``. The lock-in
signal is a real demodulation of that current under a sinusoidal bias modulation.
Everything is in SI units (V, A, S, m).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from qcodes_stmtip.sim.physics import KAPPA
from qcodes_stmtip.sim.tips import TipState
from qcodes_stmtip.taxonomy import SURFACE_STATE_ONSET_V, check_surface

__all__ = ["SURFACE_STATE_ONSET_V", "Spectrum", "ldos", "point_spectrum", "tip_features"]

#: H:Si(100) band edges (V, sample bias): valence, conduction.
HSI_BAND_EDGES_V = (-1.0, 0.5)
#: Width of the onset (V) for a sharp clean apex (thermal + lifetime broadening at 4.5 K).
SHARP_WIDTH_V = 0.010
#: Relative white noise per point (of the largest value in the sweep): current, lock-in.
CURRENT_NOISE, LOCKIN_NOISE = 0.003, 0.02
#: Half-width of the integration grid beyond the largest bias asked for (V).
_GRID_STEP_V = 0.002


@dataclass(frozen=True)
class TipFeatures:
    """What an apex does to a spectrum (derived from a :class:`TipState`)."""

    width_V: float  # onset broadening
    step_weight: float  # surface-state contrast (1 clean, less with an adsorbate)
    second_shift_V: float  # onset shift seen by the second apex
    second_weight: float  # share of the current through the second apex (0: single apex)
    peaks: tuple[tuple[float, float, float], ...]  # tip states: (energy V, height, width V)
    telegraph: float  # relative size of current jumps (0: stable)


def _tip_rng(tip: TipState) -> np.random.Generator:
    """A random stream fixed by the apex (the same apex gives the same features)."""
    key = repr((tip.label, round(tip.apex_radius_m, 15), tip.double_offset_m,
                round(tip.double_ratio, 9), round(tip.contamination, 9),
                round(tip.instability, 9)))
    return np.random.default_rng(zlib.crc32(key.encode()))


def tip_features(tip: TipState) -> TipFeatures:
    """The spectroscopic signature of ``tip`` (see the module docstring)."""
    rng = _tip_rng(tip)
    width = SHARP_WIDTH_V + 0.25 * max(0.0, tip.apex_radius_m - 50e-12) / 1e-9
    second_weight, shift = 0.0, 0.0
    if tip.is_double:
        second_weight = tip.double_ratio / (1.0 + tip.double_ratio)
        shift = float(rng.choice((-1.0, 1.0)) * rng.uniform(0.06, 0.15))
    n_peaks = 0 if tip.contamination < 0.05 else 1 + int(rng.integers(0, 3))
    peaks = tuple((float(rng.uniform(-1.2, 1.2)), float(tip.contamination * rng.uniform(0.6, 1.5)),
                   float(rng.uniform(0.04, 0.12))) for _ in range(n_peaks))
    return TipFeatures(width_V=width, step_weight=1.0 - 0.7 * tip.contamination,
                       second_shift_V=shift, second_weight=second_weight, peaks=peaks,
                       telegraph=0.3 * tip.instability)


def _step(e: np.ndarray, onset: float, width: float) -> np.ndarray:
    """A 2-D band's LDOS: a broadened step at ``onset`` with a small band-edge peak."""
    rise = 0.5 * (1.0 + erf((e - onset) / (math.sqrt(2.0) * width)))
    edge = 0.25 * np.exp(-0.5 * ((e - onset - width) / (2.0 * width + 0.02)) ** 2)
    return rise + edge * rise


def ldos(surface: str, tip: TipState, energies_V: np.ndarray) -> np.ndarray:
    """Effective LDOS (sample convolved with the apex, dimensionless) at ``energies_V``."""
    check_surface(surface)
    e = np.asarray(energies_V, dtype=np.float64)
    f = tip_features(tip)
    if surface == "hsi100":
        valence, conduction = HSI_BAND_EDGES_V
        w = max(f.width_V, 0.03)
        rho = (np.logaddexp(0.0, (valence - e) / w) * w * 4.0
               + np.logaddexp(0.0, (e - conduction) / w) * w * 4.0 + 0.02)
    else:
        onset = SURFACE_STATE_ONSET_V[surface]
        background = 1.0 + 0.12 * e + 0.06 * e ** 2
        state = (1.0 - f.second_weight) * _step(e, onset, f.width_V) \
            + f.second_weight * _step(e, onset + f.second_shift_V, f.width_V)
        rho = background + 0.8 * f.step_weight * state
    for energy, height, width in f.peaks:
        rho = rho + height * np.exp(-0.5 * ((e - energy) / width) ** 2)
    return rho


@dataclass(frozen=True)
class Spectrum:
    """A simulated sweep: bias (V), current (A), lock-in X and Y (A), all the same length."""

    bias: np.ndarray
    current: np.ndarray
    lockin_x: np.ndarray
    lockin_y: np.ndarray


def point_spectrum(surface: str, tip: TipState, bias_V: np.ndarray, *, setpoint_A: float,
                   setpoint_bias_V: float, z_offset_m: float = 0.0, modulation_V: float = 0.0,
                   sweeps: int = 1, rng: np.random.Generator | None = None) -> Spectrum:
    """I(V) and the lock-in's dI/dV signal at the points ``bias_V`` (feedback held).

    ``setpoint_A``/``setpoint_bias_V``: where the tip was stabilised (|V_s| > 0);
    ``z_offset_m``: tip lift after stabilising (> 0 away from the sample);
    ``modulation_V``: lock-in modulation amplitude (peak; 0: no lock-in, X and Y are
    noise); ``sweeps``: sweeps averaged (noise falls as 1/√sweeps); ``rng``: noise (None:
    noiseless). Lock-in X is the RMS first-harmonic current, ≈ dI/dV · A/√2.
    """
    bias = np.asarray(bias_V, dtype=np.float64)
    if bias.ndim != 1 or bias.size < 2 or not np.all(np.isfinite(bias)):
        raise ValueError("bias_V must be a 1-D array of at least 2 finite voltages")
    if not (math.isfinite(setpoint_bias_V) and abs(setpoint_bias_V) >= 1e-3):
        raise ValueError(f"setpoint bias {setpoint_bias_V} V must be at least 1 mV in magnitude")
    if not setpoint_A > 0:
        raise ValueError(f"setpoint current {setpoint_A} A must be positive")
    if sweeps < 1:
        raise ValueError(f"sweeps {sweeps} must be >= 1")
    amp = abs(float(modulation_V))
    reach = max(np.abs(bias).max(), abs(setpoint_bias_V)) + amp + 0.05
    n = int(math.ceil(reach / _GRID_STEP_V))
    grid = np.linspace(-n * _GRID_STEP_V, n * _GRID_STEP_V, 2 * n + 1)
    rho = ldos(surface, tip, grid)
    integral = np.concatenate(([0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(grid))))
    integral -= np.interp(0.0, grid, integral)  # N(0) = 0: no current at zero bias
    scale = setpoint_A / np.interp(setpoint_bias_V, grid, integral) \
        * math.exp(-2.0 * KAPPA * z_offset_m)

    def current_at(v: np.ndarray) -> np.ndarray:
        return scale * np.interp(v, grid, integral)

    current = current_at(bias)
    features = tip_features(tip)
    if amp > 0:
        phases = np.linspace(0.0, 2.0 * math.pi, 32, endpoint=False)
        samples = current_at(bias[:, None] + amp * np.cos(phases)[None, :])
        lockin_x = (2.0 / phases.size) * (samples * np.cos(phases)).sum(axis=1) / math.sqrt(2.0)
    else:
        lockin_x = np.zeros_like(bias)
    lockin_y = np.zeros_like(bias)
    if rng is not None:
        root = math.sqrt(sweeps)
        typical = np.abs(current).max() + 1e-15
        current = current + CURRENT_NOISE / root * typical * rng.standard_normal(bias.size)
        jumps = np.ones(bias.size)
        if features.telegraph > 0:  # the apex switches between two configurations
            states = np.cumsum(rng.random(bias.size) < 0.05 + 0.2 * features.telegraph) % 2
            jumps = 1.0 + features.telegraph * states
            current = current * jumps
        if amp > 0:
            li_typical = np.abs(lockin_x).max() + 1e-18
            level = LOCKIN_NOISE / root * li_typical
            lockin_x = lockin_x * jumps + level * rng.standard_normal(bias.size)
            lockin_y = level * rng.standard_normal(bias.size)
        else:
            lockin_x = 1e-15 * rng.standard_normal(bias.size)
            lockin_y = 1e-15 * rng.standard_normal(bias.size)
    return Spectrum(bias=bias, current=current, lockin_x=lockin_x, lockin_y=lockin_y)
