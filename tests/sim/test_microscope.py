"""SimulatedMicroscope: scan timing, NaN masking, physics frames and tip dynamics."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from qcodes_stmtip.sim import microscope as ms
from qcodes_stmtip.sim.microscope import SimulatedMicroscope


class FakeClock:
    """A wall clock the test advances by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make(surface: str = "hsi100", seed: int = 3, accel: float = 10.0, tip: str | None = "rows",
         pixels: int = 32, lines: int = 32) -> tuple[SimulatedMicroscope, FakeClock]:
    clock = FakeClock()
    m = SimulatedMicroscope(surface, seed=seed, time_acceleration=accel, initial_tip=tip, clock=clock)
    m.set_buffer([ms.CURRENT, ms.Z], pixels, lines)
    m.set_speed(0, 0, 0.1, 0.1, 2, 1.0)  # 0.1 s per line each way: a line takes 0.2 s
    return m, clock


def finite_rows(data: np.ndarray) -> list[int]:
    return [i for i in range(data.shape[0]) if np.isfinite(data[i]).all()]


def flatten(frame: np.ndarray) -> np.ndarray:
    """Subtract a least-squares line from every row (removes tilt, offsets and drift)."""
    x = np.arange(frame.shape[1])
    coeffs = np.polynomial.polynomial.polyfit(x, frame.T, 1)
    return frame - np.polynomial.polynomial.polyval(x, coeffs)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = flatten(a), flatten(b)
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def test_frame_takes_lines_times_line_period_in_simulated_time() -> None:
    m, clock = make()
    m.scan_action(0, True)
    assert m.scan_running()
    clock.advance(0.305)  # 3.05 simulated s = 15 full lines + 0.05 s of line 15's trace
    _, fwd, up = m.frame_data(ms.Z, True)
    _, bwd, _ = m.frame_data(ms.Z, False)
    assert up is True and fwd.dtype == np.float32 and fwd.shape == (32, 32)
    assert finite_rows(fwd) == list(range(15))
    assert finite_rows(bwd) == list(range(15))
    # Line 15 is half traced (left half) and not yet retraced.
    assert np.isfinite(fwd[15, :16]).all() and np.isnan(fwd[15, 16:]).all()
    assert np.isnan(bwd[15]).all()
    assert np.isnan(fwd[16:]).all()
    clock.advance(0.64 - 0.305 - 0.001)
    assert m.scan_running()
    clock.advance(0.002)
    assert not m.scan_running()
    assert m.ground_truth().frame_complete
    assert np.isfinite(m.frame_data(ms.Z, True)[1]).all()


def test_scan_down_fills_from_the_top_and_backward_from_the_right() -> None:
    m, clock = make()
    m.scan_action(0, False)
    clock.advance(0.115)  # 5 lines done; line 5 traced and 0.05 s into the retrace
    _, fwd, up = m.frame_data(ms.Z, True)
    _, bwd, _ = m.frame_data(ms.Z, False)
    assert up is False
    assert finite_rows(fwd) == list(range(26, 32))
    assert finite_rows(bwd) == list(range(27, 32))
    assert np.isfinite(bwd[26, 16:]).all() and np.isnan(bwd[26, :16]).all()


def test_pause_freezes_progress_and_resume_continues() -> None:
    m, clock = make()
    m.scan_action(0, True)
    clock.advance(0.1)  # 5 lines
    m.scan_action(2, True)
    clock.advance(5.0)
    assert len(finite_rows(m.frame_data(ms.Z, True)[1])) == 5
    assert m.scan_running()  # paused counts as in progress
    m.scan_action(3, True)
    clock.advance(0.1)
    assert len(finite_rows(m.frame_data(ms.Z, True)[1])) == 10
    m.scan_action(1, True)
    clock.advance(1.0)
    assert not m.scan_running()
    assert len(finite_rows(m.frame_data(ms.Z, True)[1])) == 10


def test_wait_end_of_scan_times_out_then_returns_the_path() -> None:
    m = SimulatedMicroscope("hsi100", seed=1, time_acceleration=20.0, initial_tip="rows")
    m.set_buffer([ms.Z], 32, 32)
    m.set_speed(0, 0, 0.1, 0.1, 2, 1.0)  # 6.4 s simulated = 320 ms wall
    m.set_props(0, 0, 1, "tipcheck_", "", [], 0)
    m.scan_action(0, True)
    assert m.wait_end_of_scan(0) == (True, "")
    timed_out, path = m.wait_end_of_scan(5000)
    assert not timed_out and path.endswith("tipcheck_00001.sxm")
    assert m.wait_end_of_scan(-1) == (False, path)  # nothing running: at once


def _expected_render(m: SimulatedMicroscope, shift_x: float, shift_y: float):
    """What render_scan gives for the microscope's last frame at a sample offset."""
    from qcodes_stmtip.sim.frames import render_scan

    scan = m._scan
    g = scan.geometry
    return render_scan(
        m.surface, scan.start_tip, replace(g, centre_x=g.centre_x + shift_x, centre_y=g.centre_y + shift_y),
        np.random.default_rng(scan.seed), sample_seed=m.seed, scan_up=scan.up,
        seconds_per_line=scan.fwd_time, t0=scan.t0,
    )


def test_frames_are_the_physics_render_and_coarse_moves_reach_fresh_area() -> None:
    m, clock = make(tip="rows", pixels=64, lines=64)
    m.set_frame(5e-9, -3e-9, 30e-9, 30e-9, 0.0)
    m.dynamics.model.spontaneous_mean_s = (1e12,) * 4  # no spontaneous changes here
    m.scan_action(0, True)
    clock.advance(2.6)
    _, z, _ = m.frame_data(ms.Z, True)
    expected = _expected_render(m, 0.0, 0.0)
    np.testing.assert_allclose(z, expected.forward.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(m.frame_data(ms.Z, False)[1], expected.backward.astype(np.float32),
                               rtol=1e-6)
    assert m.ground_truth().frame_label == expected.label
    m.motor_move(0, 10)  # 10 coarse steps along X+
    m.motor_move(3, 2)  # 2 along Y-
    m.scan_action(0, True)
    clock.advance(2.6)
    _, moved, _ = m.frame_data(ms.Z, True)
    fresh = _expected_render(m, 10 * ms.STEP_XY, -2 * ms.STEP_XY)
    np.testing.assert_allclose(moved, fresh.forward.astype(np.float32), rtol=1e-6)
    stay = _expected_render(m, 0.0, 0.0)
    assert not np.allclose(moved, stay.forward.astype(np.float32), rtol=1e-3)


def test_current_channel_and_signals_follow_the_setpoint() -> None:
    m, clock = make()
    m.set_setpoint(100e-12)
    currents = [m.get_current() for _ in range(200)]
    assert np.mean(currents) == pytest.approx(100e-12, rel=0.01)
    assert 0.005 < np.std(currents) / 100e-12 < 0.05
    m.scan_action(0, True)
    clock.advance(1.0)
    name, current, _ = m.frame_data(ms.CURRENT, True)
    assert name == "Current (A)"
    assert np.nanmedian(current) == pytest.approx(100e-12, rel=0.1)
    assert m.signal_value(ms.SIG_BIAS) == m.get_bias()  # signal indexes are 0..127, not slots
    assert m.signal_value(ms.SIG_SETPOINT) == pytest.approx(100e-12)


def test_feedback_off_current_decays_exponentially_with_z() -> None:
    m, _ = make()
    m.set_safe_tip(0, 0, 1.0)
    z0 = m.get_z()
    m.set_feedback(False)
    m.set_z(z0 + 1e-10)  # 1 Å further away: e^-2 ≈ 0.135
    far = np.mean([m.get_current() for _ in range(100)])
    assert far / m.get_setpoint() == pytest.approx(math.exp(-2), rel=0.02)


def test_withdraw_and_approach() -> None:
    m, clock = make()
    m.withdraw(wait=False)
    assert m.z_status() == ms.ZSTATUS_WITHDRAWING
    clock.advance(1.0)
    assert m.z_status() == ms.ZSTATUS_OFF
    assert m.get_current() == 0.0 and m.get_z() == ms.Z_LIMIT and not m.get_feedback()
    m.set_approach(True)
    assert m.get_approach()
    clock.advance(ms.APPROACH_MIN_S / 10 + 0.01)
    assert not m.get_approach()
    assert m.get_feedback() and m.z_status() == ms.ZSTATUS_ON
    assert m.get_current() == pytest.approx(m.get_setpoint(), rel=0.1)


def test_big_pulses_change_the_tip_through_the_dynamics() -> None:
    m, _ = make(accel=1e6)
    changes = 0
    for _ in range(10):
        before = m.ground_truth().tip
        after = m.bias_pulse(width_s=1.0, amplitude_V=8.0, wait=False)
        assert after == m.ground_truth().tip
        changes += after != before
    assert changes >= 8
    # A gentle pulse (0.5 V, 1 ms) almost never does anything.
    before = m.ground_truth().tip
    m.bias_pulse(width_s=1e-3, amplitude_V=0.5, wait=False)
    assert m.ground_truth().tip == before


def test_pulse_during_scan_becomes_a_tip_change_line_and_keeps_acquired_rows() -> None:
    m, clock = make(tip="rows")
    m.dynamics.model.spontaneous_mean_s = (1e12,) * 4
    m.scan_action(0, True)
    clock.advance(0.2)  # 10 lines
    before = m.frame_data(ms.Z, True)[1]
    for _ in range(20):  # keep pulsing until the apex changes (p ≈ 1 per pulse)
        if m.bias_pulse(width_s=1.0, amplitude_V=9.0, wait=False) != m.ground_truth().tip or m.ground_truth().tip_change_lines:
            break
    truth = m.ground_truth()
    assert truth.tip_change_lines == (11,)
    clock.advance(1.0)
    after = m.frame_data(ms.Z, True)[1]
    np.testing.assert_array_equal(after[:10], before[:10])


def test_spontaneous_change_lands_on_the_right_line() -> None:
    m, clock = make(tip="rows", lines=64)
    m.dynamics.model.spontaneous_mean_s = (2.0,) * 4  # a change every ~10 lines
    m.scan_action(0, True)
    clock.advance(0.2)
    clock.advance(1.2)
    truth = m.ground_truth()
    assert truth.frame_complete
    assert truth.tip_change_lines, "expected spontaneous changes with a 2 s mean"
    assert all(1 <= line < 64 for line in truth.tip_change_lines)
    assert m.dynamics.changes >= len(truth.tip_change_lines)


def test_deep_z_crash_indents_the_tip_when_safetip_does_not_stop_it() -> None:
    m, _ = make(tip="individual_atoms")
    m.set_safe_tip(0, 0, 1.0)  # threshold above the contact current: no protection
    before = m.ground_truth().tip
    m.set_feedback(False)
    m.set_z(m.get_z() - 5e-9)
    assert m.ground_truth().tip != before
    assert m.safe_tip_events == 0


def test_safetip_trips_before_contact_and_pauses_the_scan() -> None:
    m, clock = make(tip="individual_atoms")
    m.set_safe_tip(0, 1, 1e-9)  # auto-recovery off (0), auto-pause on (1)
    m.scan_action(0, True)
    clock.advance(0.1)
    before = m.ground_truth().tip
    m.set_feedback(False)
    m.set_z(m.get_z() - 5e-9)
    assert m.safe_tip_events == 1
    assert m.z_status() == ms.ZSTATUS_SAFETIP
    assert not m.get_feedback()
    assert m.ground_truth().tip == before
    # Stopped where the current is just below the threshold, not in contact.
    assert 0.1e-9 < m.get_current() < 1e-9
    rows = len(finite_rows(m.frame_data(ms.Z, True)[1]))
    clock.advance(1.0)
    assert len(finite_rows(m.frame_data(ms.Z, True)[1])) == rows  # auto-paused


def test_tip_shaper_with_deep_lift_changes_the_tip() -> None:
    m, _ = make(accel=1e6, tip="individual_atoms")
    m.set_tip_shaper(tip_lift=-4e-9, bias_lift=0.5)
    changed = 0
    for _ in range(5):
        before = m.ground_truth().tip
        changed += m.tip_shaper_start(wait=False) != before
    assert changed >= 4
    assert m.get_feedback()  # restore_feedback = 1


def test_continuous_bouncy_scanning_alternates_direction() -> None:
    m, clock = make()
    m.set_props(1, 1, 3, "", "", [], 0)
    m.scan_action(0, True)
    clock.advance(0.65)
    assert m.scan_running()
    assert m.frame_data(ms.Z, True)[2] is False
    assert m.ground_truth().frames_completed == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.set_bias(20.0), "bias"),
        (lambda m: m.set_setpoint(-1e-9), "setpoint"),
        (lambda m: m.set_buffer([99], 32, 32), "channel indexes"),
        (lambda m: m.set_buffer([0], 30, 32), "pixels"),
        (lambda m: m.set_frame(0, 0, -1e-9, 1e-9, 0), "frame size"),
        (lambda m: m.set_speed(0, 0, 0.0, 0.1, 2, 1.0), "time per line"),
        (lambda m: m.scan_action(9, True), "scan action"),
        (lambda m: m.frame_data(3, True), "not in the scan buffer"),
        (lambda m: m.set_z(0.0), "Z controller off"),
        (lambda m: m.signal_value(500), "signal index"),
        (lambda m: m.motor_move(7, 1), "motor direction"),
        (lambda m: m.bias_pulse(width_s=0.0, amplitude_V=3.0), "pulse width"),
        (lambda m: m.set_tip_shaper(tip_lift=1.0), "tip_lift"),
    ],
)
def test_bad_arguments_raise_value_errors(call, match: str) -> None:
    m, _ = make()
    with pytest.raises(ValueError, match=match):
        call(m)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="surface"):
        SimulatedMicroscope("graphite")
    with pytest.raises(ValueError, match="time_acceleration"):
        SimulatedMicroscope(time_acceleration=0)
    with pytest.raises(ValueError, match="initial_tip"):
        SimulatedMicroscope("au111", initial_tip="rows")


def test_parts_and_the_old_attribute_names_are_the_same_state() -> None:
    m, _ = make()
    assert m._lock is m.clock.lock and m.dynamics is m.zctrl.dynamics is m.scanner.dynamics
    m.bias = 0.5  # the old names read and write the parts' state
    assert m.zctrl.bias == 0.5 and m.get_bias() == 0.5
    m.settings.series_name = "part_"
    assert m.series_name == "part_"
    m.scan_action(0, True)
    assert m._scan is m.scanner.scan and m._scan is not None
