import math

import numpy as np
import pytest

from qcodes_stmtip.sim.dynamics import LADDERS, TipDynamics, TransitionModel
from qcodes_stmtip.sim.tips import TipState


def _fraction_changed(action, n=600, seed=0, initial="rows"):
    changed = improved = worse = 0
    rng = np.random.default_rng(seed)
    for _ in range(n):
        d = TipDynamics("hsi100", rng, initial=initial)
        before = d.rank
        action(d)
        if d.changes:
            changed += 1
            improved += d.rank < before
            worse += d.rank > before
    return changed / n, improved / max(changed, 1), worse / max(changed, 1)


def test_bigger_pulses_change_more_often_and_make_it_worse_more_often():
    small, small_better, small_worse = _fraction_changed(lambda d: d.pulse(2.5, 0.02))
    big, big_better, big_worse = _fraction_changed(lambda d: d.pulse(9.0, 0.5))
    tiny, _, _ = _fraction_changed(lambda d: d.pulse(0.5, 0.01))
    assert tiny < 0.05
    assert small < big and big > 0.9
    assert big_better < small_better and big_worse > small_worse


def test_deeper_indentations_change_more_and_worsen_more():
    shallow, sb, sw = _fraction_changed(lambda d: d.indent(0.3e-9))
    deep, db, dw = _fraction_changed(lambda d: d.indent(4e-9))
    assert shallow < 0.3 < 0.9 < deep
    assert db < sb and dw > sw


def test_negative_polarity_is_weaker():
    d = TipDynamics("hsi100", np.random.default_rng(0))
    assert d.pulse_severity(-4.0, 0.1) < d.pulse_severity(4.0, 0.1)


def test_spontaneous_change_rate_matches_the_model():
    model = TransitionModel()
    rng = np.random.default_rng(5)
    dt = 300.0
    n = 2000
    hits = sum(TipDynamics("hsi100", rng, initial="individual_atoms").evolve(dt) is not None for _ in range(n))
    expected = 1 - math.exp(-dt / model.spontaneous_mean_s[0])
    assert hits / n == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / n))
    assert TipDynamics("hsi100", rng).evolve(0.0) is None


def test_moves_rarely_change_the_tip():
    rate, _, _ = _fraction_changed(lambda d: d.move(2e-6), n=1000)
    assert 0.02 < rate < 0.15


def test_changed_state_is_a_new_apex_with_a_height_jump():
    rng = np.random.default_rng(3)
    d = TipDynamics("au111", rng, initial="double_tip")
    old = d.state
    while not d.changes:
        d.pulse(8.0, 0.3)
    assert d.state is not old and d.state.label in LADDERS["au111"]
    assert d.state.apex_z_m != old.apex_z_m


def test_deterministic_for_a_seed():
    def run(seed):
        d = TipDynamics("cu111", np.random.default_rng(seed))
        return [d.pulse(5.0, 0.1).label, d.indent(1e-9).label, str(d.evolve(900)), d.move(1e-6).label]
    assert run(7) == run(7)


def test_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="surface"):
        TipDynamics("graphene", rng)
    with pytest.raises(ValueError, match="initial"):
        TipDynamics("au111", rng, initial="rows")
    with pytest.raises(ValueError, match="initial"):
        TipDynamics("hsi100", rng, initial=TipState("double_tip"))
    d = TipDynamics("hsi100", rng)
    with pytest.raises(ValueError, match="amplitude_V"):
        d.pulse(0.0, 0.1)
    with pytest.raises(ValueError, match="amplitude_V"):
        d.pulse(15.0, 0.1)
    with pytest.raises(ValueError, match="width_s"):
        d.pulse(3.0, -0.1)
    with pytest.raises(ValueError, match="depth_m"):
        d.indent(-1e-9)
    with pytest.raises(ValueError, match="dt_s"):
        d.evolve(-1)
    with pytest.raises(ValueError, match="distance_m"):
        d.move(float("nan"))
