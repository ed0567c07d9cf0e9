"""Tip changes scheduled at a chosen or random line of a frame (sim/microscope/scan.py)."""

from __future__ import annotations

import numpy as np
import pytest

from qcodes_stmtip.sim import microscope as ms
from qcodes_stmtip.sim.dynamics import LADDERS, TipDynamics
from qcodes_stmtip.sim.microscope import SimulatedMicroscope
from qcodes_stmtip.sim.tips import sample_tip


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make(tip: str = "individual_atoms", lines: int = 32, seed: int = 3):
    clock = FakeClock()
    m = SimulatedMicroscope("hsi100", seed=seed, time_acceleration=10.0, initial_tip=tip, clock=clock)
    m.set_buffer([ms.CURRENT, ms.Z], 32, lines)
    m.set_speed(0, 0, 0.1, 0.1, 2, 1.0)  # 0.2 s per line: 0.02 s of wall time per line
    m.dynamics.model.spontaneous_mean_s = (1e12,) * 4  # only the scheduled change
    return m, clock


def test_change_at_a_chosen_line_keeps_the_lines_before_and_is_in_the_truth() -> None:
    m, clock = make()
    m.schedule_tip_change(12, "generic_defect")
    m.scan_action(0, True)
    clock.advance(0.2)  # 10 lines
    truth = m.ground_truth()
    assert truth.lines_acquired == 10 and truth.tip_change_lines == ()
    assert truth.scheduled_tip_change_line == 12 and truth.tip_label == "individual_atoms"
    before = m.frame_data(ms.Z, True)[1]
    clock.advance(1.0)  # past the end
    truth = m.ground_truth()
    assert truth.frame_complete and truth.lines_acquired == 32
    assert truth.tip_change_lines == (12,)
    assert truth.tip_label == "generic_defect" and truth.frame_start_label == "individual_atoms"
    after = m.frame_data(ms.Z, True)[1]
    np.testing.assert_array_equal(after[:10], before[:10])  # acquired lines are kept
    assert not np.allclose(after[12:], before[12:], equal_nan=True)


def test_a_line_already_passed_goes_to_the_next_frame_and_schedules_queue() -> None:
    m, clock = make()
    m.scan_action(0, True)
    clock.advance(0.3)  # 15 lines
    m.schedule_tip_change(5)  # too late for this frame
    m.schedule_tip_change(20, "rows")
    clock.advance(1.0)
    assert m.ground_truth().tip_change_lines == ()
    m.scan_action(0, True)
    clock.advance(0.7)
    first = m.ground_truth()
    assert first.tip_change_lines == (5,) and first.tip_label == "dimers_asymmetries"  # one rung worse
    m.scan_action(0, True)
    clock.advance(0.7)
    second = m.ground_truth()
    assert second.tip_change_lines == (20,) and second.tip_label == "rows"


def test_random_line_lies_in_the_middle_of_the_frame_and_is_reproducible() -> None:
    lines = []
    for _ in range(2):
        m, clock = make(lines=64)
        for _ in range(5):
            m.schedule_tip_change()
            m.scan_action(0, True)
            clock.advance(1.5)
            truth = m.ground_truth()
            assert truth.frame_complete and len(truth.tip_change_lines) == 1
            assert 8 <= truth.tip_change_lines[0] < 56
            assert truth.scheduled_tip_change_line == truth.tip_change_lines[0]
        lines.append(m.ground_truth().tip_change_lines)
    assert lines[0] == lines[1]


def test_a_stopped_frame_keeps_its_line_count_and_nan_beyond() -> None:
    m, clock = make()
    m.schedule_tip_change(8, "generic_defect")
    m.scan_action(0, True)
    clock.advance(0.245)  # 12.25 lines: line 12 half-way through its forward sweep
    m.scan_action(1, True)  # stop
    clock.advance(1.0)
    truth = m.ground_truth()
    assert not truth.frame_complete and truth.lines_acquired == 12 and truth.tip_change_lines == (8,)
    data = m.frame_data(ms.Z, True)[1]
    finite = np.all(np.isfinite(data), axis=1)
    assert finite[:12].all() and not finite[12:].any()


def test_change_to_degrades_one_rung_and_takes_labels_or_states() -> None:
    rng = np.random.default_rng(0)
    dyn = TipDynamics("au111", rng, "individual_atoms")
    assert dyn.change_to().label == "double_tip" and dyn.changes == 1
    assert dyn.change_to().label == "corruption"
    assert dyn.change_to().label == "corruption"  # the worst stays the worst, a fresh apex
    tip = sample_tip("au111", "individual_atoms", rng)
    assert dyn.change_to(tip) is tip and dyn.changes == 4
    assert dyn.change_to("double_tip").label == "double_tip"
    with pytest.raises(ValueError, match="not a tip state"):
        dyn.change_to("rows")
    assert LADDERS["au111"][0] == "individual_atoms"


@pytest.mark.parametrize(("args", "match"), [
    ((0,), "line must be"), ((True,), "line must be"), ((3.5,), "line must be"),
    ((5, "step_edge"), "not a tip state"), ((5, 3), "tip must be"),
])
def test_bad_schedules_raise(args, match) -> None:
    m, _ = make()
    with pytest.raises(ValueError, match=match):
        m.schedule_tip_change(*args)


def test_action_outcomes_do_not_depend_on_how_often_time_was_polled() -> None:
    """Spontaneous changes draw from their own stream: runs with and without early abort
    (fewer lines scanned, more polling) see the same outcomes of the same actions."""
    outcomes = []
    for polls in (0, 200):
        m, clock = make(tip="generic_defect", seed=7)
        for _ in range(polls):  # each update lets time pass: one draw of the time stream
            clock.advance(0.001)
            m.ground_truth()
        labels = []
        for _ in range(6):
            m.bias_pulse(amplitude_V=6.0, width_s=0.2, wait=False)
            labels.append((m.ground_truth().tip_label, m.ground_truth().tip.apex_radius_m))
        outcomes.append(labels)
    assert outcomes[0] == outcomes[1]
