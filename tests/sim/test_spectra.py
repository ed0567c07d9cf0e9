"""Simulated point spectra: the surface-state step and what blunt, double, dirty tips do to it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qcodes_stmtip.sim.spectra import SURFACE_STATE_ONSET_V, ldos, point_spectrum, tip_features
from qcodes_stmtip.sim.tips import TipState

BIAS = np.linspace(-1.0, 0.3, 651)
SHARP = TipState("individual_atoms", apex_radius_m=40e-12)


def _steps(rho: np.ndarray) -> np.ndarray:
    """Biases where d(rho)/dV has a local maximum above a third of its largest one."""
    d = np.gradient(rho, BIAS)
    peaks = (d[1:-1] > d[:-2]) & (d[1:-1] >= d[2:]) & (d[1:-1] > d.max() / 3)
    return BIAS[1:-1][peaks]


@pytest.mark.parametrize("surface", ["au111", "cu111"])
def test_a_sharp_clean_tip_shows_one_sharp_step_at_the_onset(surface: str) -> None:
    steps = _steps(ldos(surface, SHARP, BIAS))
    assert len(steps) == 1 and steps[0] == pytest.approx(SURFACE_STATE_ONSET_V[surface], abs=0.01)
    assert tip_features(SHARP).width_V < 0.015


def test_blunt_double_and_contaminated_tips_broaden_shift_or_add_features() -> None:
    sharp = ldos("au111", SHARP, BIAS)
    blunt = ldos("au111", dataclasses.replace(SHARP, apex_radius_m=600e-12), BIAS)
    # broadened: the steepest slope of the step is several times lower
    assert np.gradient(blunt, BIAS).max() < np.gradient(sharp, BIAS).max() / 4
    double = dataclasses.replace(SHARP, label="double_tip", double_offset_m=(1e-9, 0.0),
                                 double_ratio=0.9)
    steps = _steps(ldos("au111", double, BIAS))
    assert len(steps) == 2 and min(abs(steps + 0.5)) < 0.01  # the second onset is shifted
    dirty = dataclasses.replace(SHARP, label="corruption", contamination=0.8)
    features = tip_features(dirty)
    assert features.peaks and features.step_weight < 0.5
    assert features == tip_features(dirty)  # the same apex gives the same features


def test_hsi100_shows_its_gap() -> None:
    rho = ldos("hsi100", SHARP, np.array([-1.5, -0.2, 0.0, 0.2, 1.0]))
    assert rho[1:4].max() < 0.05 < min(rho[0], rho[4])


def test_current_is_stabilised_at_the_setpoint_and_the_lock_in_gives_didv() -> None:
    s = point_spectrum("au111", SHARP, BIAS, setpoint_A=1e-9, setpoint_bias_V=0.1,
                       modulation_V=0.005, rng=None)
    assert np.interp(0.1, BIAS, s.current) == pytest.approx(1e-9, rel=1e-3)
    assert np.interp(0.0, BIAS, s.current) == pytest.approx(0.0, abs=1e-13)
    numeric = np.gradient(s.current, BIAS) * 0.005 / np.sqrt(2)
    np.testing.assert_allclose(s.lockin_x[20:-20], numeric[20:-20], rtol=0.05)
    noisy = point_spectrum("au111", SHARP, BIAS, setpoint_A=1e-9, setpoint_bias_V=0.1,
                           modulation_V=0.005, rng=np.random.default_rng(0))
    assert not np.array_equal(noisy.current, s.current)
    with pytest.raises(ValueError, match="setpoint bias"):
        point_spectrum("au111", SHARP, BIAS, setpoint_A=1e-9, setpoint_bias_V=0.0)
