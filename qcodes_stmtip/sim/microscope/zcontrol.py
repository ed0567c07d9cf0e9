"""The tip above the sample: bias, Z controller, SafeTip, approach, coarse motor, tip shaper.

:class:`ZController` holds the junction's settings and state (bias, setpoint, feedback,
piezo height, withdrawn / coarse gap / approach, SafeTip, coarse-motor offset, tip-shaper
properties) and its physics: the tunnelling height of the current apex, the current at a
height (``I = setpoint · exp(−2κ·gap)``, capped at the point-contact current ``G0·|V|``),
and the contact height below which the apex is indented.

Tip-changing actions (pulses, indents, coarse moves) go through the tip dynamics; a change
is reported to the scan (:class:`ScanHooks`) so that the running frame shows it from the
current line on. The scan also pauses on a SafeTip trip and forbids lateral coarse moves
while a frame is in progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from qcodes_stmtip.sim.microscope.state import (
    APPROACH_MIN_S,
    APPROACH_S_PER_M,
    G0,
    MAX_INDENT,
    STEP_TIME,
    STEP_XY,
    STEP_Z,
    WITHDRAW_S,
    Z_LIMIT,
    ZSTATUS_OFF,
    ZSTATUS_ON,
    ZSTATUS_SAFETIP,
    ZSTATUS_WITHDRAWING,
    SimClock,
    check_finite,
)
from qcodes_stmtip.sim.physics import KAPPA
from qcodes_stmtip.sim.tips import TipState

if TYPE_CHECKING:
    from qcodes_stmtip.sim.dynamics import TipDynamics


#: The tip shaper's two flags (booleans in the state; 0/1/2 in ``PropsSet``, 0/1 in ``PropsGet``).
_SHAPER_FLAGS = ("change_bias", "restore_feedback")


class ScanHooks(Protocol):
    """What the Z controller asks of the scan (the microscope's :class:`Scanner`)."""

    def busy(self) -> bool:
        """Whether a frame is in progress (running or paused)."""

    def record_tip_change(self, new: TipState) -> None:
        """The tip just changed to ``new``: show it in the running frame from now on."""

    def pause_for_safe_tip(self) -> None:
        """SafeTip tripped with auto-pause on: pause a running frame."""


class ZController:
    """Bias, Z controller, SafeTip, auto-approach, coarse motor and tip shaper.

    ``scan`` is wired by the microscope after construction.
    """

    scan: ScanHooks

    def __init__(self, clock: SimClock, dynamics: TipDynamics, rng: np.random.Generator,
                 surface: str) -> None:
        self.clock = clock
        self.dynamics = dynamics
        self.rng = rng  # shared with the scan: measurement noise and frame seeds, one stream
        self.bias = 1.0 if surface == "hsi100" else 0.1
        self.setpoint = 50e-12 if surface == "hsi100" else 1e-9
        self.feedback = True
        self.zstatus_override: tuple[int, float] | None = None  # (status, until sim time)
        self.z = self.tunnel_z()
        self.withdrawn = False
        self.coarse_gap = 0.0  # m beyond the piezo range; 0 when approached
        self.approach_until: float | None = None
        self.safe_tip_auto_recovery = False
        self.safe_tip_auto_pause = True
        self.safe_tip_threshold = 1e-6
        self.safe_tip_events = 0
        self.coarse_x, self.coarse_y = 0.0, 0.0  # sample offset from coarse moves (m)
        self.tip_shaper = {
            "switch_off_delay": 0.05, "change_bias": False, "bias": 0.0, "tip_lift": -1.5e-9,
            "lift_time_1": 0.1, "bias_lift": 2.0, "bias_settling_time": 0.05,
            "lift_height": 2e-9, "lift_time_2": 0.1, "end_wait_time": 0.05,
            "restore_feedback": True,
        }  # the two flags are booleans: PropsSet's 0/1/2 is decoded on the way in

    # ------------------------------------------------------------------ physics
    def tunnel_z(self) -> float:
        """Z reading (m) at the setpoint over the reference surface: a longer apex reads lower."""
        return -self.dynamics.state.apex_z_m

    def approached(self) -> bool:
        return not self.withdrawn and self.coarse_gap == 0.0 and self.approach_until is None

    def current_at(self, z: float) -> float:
        """Tunnelling current (A) with the tip at piezo height ``z`` (feedback off)."""
        if not self.approached():
            return 0.0
        gap = z - self.tunnel_z()
        tunnelling = self.setpoint * math.exp(min(-2.0 * KAPPA * gap, 50.0))
        return min(tunnelling, self.contact_current())

    def contact_current(self) -> float:
        """Point-contact current (A): one conductance quantum at the bias."""
        return G0 * max(abs(self.bias), 0.01)

    def contact_z(self) -> float:
        """Piezo height (m) at which the apex touches the sample."""
        return self.tunnel_z() - math.log(self.contact_current() / self.setpoint) / (2.0 * KAPPA)

    def follow_tip(self) -> None:
        """With the feedback on and the tip approached, Z follows the apex to the tunnelling height."""
        if self.feedback and self.approached():
            self.z = self.tunnel_z()

    def apply_action(self, action: Callable[[], TipState]) -> TipState:
        """Run a tip-dynamics action now; tell the scan if it changed the tip."""
        before = self.dynamics.state
        new = action()
        if new != before:
            self.scan.record_tip_change(new)
        return new

    # ------------------------------------------------------------------ bias
    def get_bias(self) -> float:
        with self.clock.lock:
            self.clock.update()
            return self.bias

    def set_bias(self, volts: float) -> None:
        """Set the bias (V); |V| ≤ 10."""
        check_finite(volts, "bias")
        if abs(volts) > 10:
            raise ValueError(f"bias {volts} V is outside the ±10 V range")
        with self.clock.lock:
            self.clock.update()
            self.bias = float(volts)

    def bias_pulse(self, *, amplitude_V: float, width_s: float, wait: bool = True, z_hold: int = 0,
                   absolute: int = 0) -> TipState:
        """Apply a bias pulse, keyword arguments only (side effect: the tip dynamics may change the apex).

        ``absolute``: 0/2 the pulse is ``amplitude_V`` (V); 1 it is ``bias + amplitude_V``.
        Blocks ``width_s`` simulated seconds when ``wait``. Returns the new tip state.
        """
        volts = amplitude_V
        check_finite(width_s, "width")
        check_finite(volts, "bias")
        if not 0 < width_s <= 10:
            raise ValueError(f"pulse width {width_s} s must be in (0, 10] s")
        if z_hold not in (0, 1, 2) or absolute not in (0, 1, 2):
            raise ValueError(f"z_hold={z_hold} and absolute={absolute} must be 0, 1 or 2")
        with self.clock.lock:
            self.clock.update()
            amplitude = self.bias + volts if absolute == 1 else volts
            if abs(amplitude) > 10:
                raise ValueError(f"pulse amplitude {amplitude} V is outside the ±10 V range")
            if not self.approached():
                new = self.dynamics.state  # nothing to pulse against
            else:
                new = self.apply_action(lambda: self.dynamics.pulse(amplitude, width_s))
        if wait:
            self.clock.sleep(width_s)
        return new

    # ------------------------------------------------------------------ current & Z
    def get_current(self) -> float:
        """Tunnelling current (A): ≈ setpoint with 2 % noise in feedback, 0 when withdrawn."""
        with self.clock.lock:
            self.clock.update()
            if not self.approached():
                return 0.0
            if self.feedback:
                return float(self.setpoint * (1.0 + 0.02 * self.rng.standard_normal()))
            return self.current_at(self.z) * (1.0 + 0.02 * float(self.rng.standard_normal()))

    def get_setpoint(self) -> float:
        with self.clock.lock:
            return self.setpoint

    def set_setpoint(self, amperes: float) -> None:
        """Set the current setpoint (A), 0 < I ≤ 100 nA."""
        check_finite(amperes, "setpoint")
        if not 0 < amperes <= 100e-9:
            raise ValueError(f"setpoint {amperes} A must be in (0, 100 nA]")
        with self.clock.lock:
            self.clock.update()
            self.setpoint = float(amperes)

    def get_feedback(self) -> bool:
        with self.clock.lock:
            self.clock.update()
            return self.feedback

    def set_feedback(self, on: bool) -> None:
        """Switch the Z controller on (the tip returns to the tunnelling height) or off (Z holds)."""
        with self.clock.lock:
            self.clock.update()
            if on and self.approached():
                self.z = self.tunnel_z()
            self.feedback = bool(on)
            self.zstatus_override = None

    def get_z(self) -> float:
        with self.clock.lock:
            self.clock.update()
            if self.feedback and self.approached():
                return self.tunnel_z() + 0.5e-12 * float(self.rng.standard_normal())
            return self.z

    def set_z(self, z: float) -> None:
        """Move the tip to piezo height ``z`` (m) with the feedback off.

        Driving into the sample indents the apex (tip dynamics); SafeTip stops the
        approach where the current passes its threshold.
        """
        check_finite(z, "z")
        if abs(z) > Z_LIMIT:
            raise ValueError(f"z {z} m is outside the ±{Z_LIMIT} m piezo range")
        with self.clock.lock:
            self.clock.update()
            if self.feedback:
                raise ValueError("ZCtrl.ZPosSet needs the Z controller off (it is on)")
            self.z = float(z)
            if not self.approached():
                return
            if self.current_at(z) > self.safe_tip_threshold:
                self._safe_tip_trip()
                return
            depth = self.contact_z() - z
            if depth > 0:
                self.apply_action(lambda: self.dynamics.indent(min(depth, MAX_INDENT)))
                self.z = self.contact_z()

    def _safe_tip_trip(self) -> None:
        """SafeTip: stop at the threshold height, feedback off, pause the scan."""
        self.safe_tip_events += 1
        self.z = self.tunnel_z() - math.log(self.safe_tip_threshold / self.setpoint) / (2 * KAPPA)
        self.z += 1e-10  # retract a little, as the real one does
        self.feedback = False
        self.zstatus_override = (ZSTATUS_SAFETIP, math.inf)
        if self.safe_tip_auto_pause:
            self.scan.pause_for_safe_tip()
        if self.safe_tip_auto_recovery:
            self.feedback = True
            self.z = self.tunnel_z()
            self.zstatus_override = (ZSTATUS_SAFETIP, self.clock.now() + 0.5)

    def z_status(self) -> int:
        """``ZCtrl.StatusGet`` code: 1 off, 2 on, 5 safe-tip event, 6 withdrawing."""
        with self.clock.lock:
            self.clock.update()
            if self.zstatus_override is not None:
                status, until = self.zstatus_override
                if self.clock.now() < until:
                    return status
                self.zstatus_override = None
            return ZSTATUS_ON if self.feedback else ZSTATUS_OFF

    def withdraw(self, wait: bool = True, timeout_ms: int = -1) -> None:
        """Feedback off and the tip retracted to the top of the Z range."""
        with self.clock.lock:
            self.clock.update()
            self.feedback = False
            self.withdrawn = True
            self.z = Z_LIMIT
            self.approach_until = None
            self.zstatus_override = (ZSTATUS_WITHDRAWING, self.clock.now() + WITHDRAW_S)
        if wait:
            limit = WITHDRAW_S if timeout_ms < 0 else min(WITHDRAW_S, timeout_ms / 1000.0)
            self.clock.sleep(limit)

    def home(self) -> None:
        """Feedback off and Z to its home position (10 nm above the tunnelling height)."""
        with self.clock.lock:
            self.clock.update()
            self.feedback = False
            self.z = self.tunnel_z() + 10e-9

    # ------------------------------------------------------------------ SafeTip / approach
    def set_safe_tip(self, auto_recovery: int, auto_pause: int, threshold: float) -> None:
        """SafeTip settings, as ``SafeTip.PropsSet``: ``auto_recovery``/``auto_pause`` 0 Off,
        1 On; ``threshold`` the current (A) that trips it."""
        check_finite(threshold, "threshold")
        if auto_recovery not in (0, 1) or auto_pause not in (0, 1):
            raise ValueError(f"SafeTip auto_recovery {auto_recovery} and auto_pause {auto_pause} "
                             "must be 0 (Off) or 1 (On)")
        if not threshold > 0:
            raise ValueError(f"SafeTip threshold {threshold} A must be positive")
        with self.clock.lock:
            self.safe_tip_auto_recovery = bool(auto_recovery)
            self.safe_tip_auto_pause = bool(auto_pause)
            self.safe_tip_threshold = float(threshold)

    def get_safe_tip(self) -> tuple[int, int, float]:
        """``(auto_recovery, auto_pause, threshold A)``, the flags 0 Off / 1 On."""
        with self.clock.lock:
            return (int(self.safe_tip_auto_recovery), int(self.safe_tip_auto_pause),
                    self.safe_tip_threshold)

    def set_approach(self, on: bool) -> None:
        """Start (True) or stop the auto-approach; it ends in tunnelling with the feedback on."""
        with self.clock.lock:
            self.clock.update()
            if on:
                if self.approached():
                    self.feedback = True
                    self.z = self.tunnel_z()
                    return
                self.approach_until = self.clock.now() + APPROACH_MIN_S + APPROACH_S_PER_M * self.coarse_gap
            else:
                self.approach_until = None

    def get_approach(self) -> bool:
        with self.clock.lock:
            self.clock.update()
            return self.approach_until is not None

    def approach_done(self, now: float) -> bool:
        """Whether an auto-approach in progress has ended by simulated time ``now``."""
        return self.approach_until is not None and now >= self.approach_until

    def finish_approach(self) -> None:
        self.approach_until = None
        self.withdrawn = False
        self.coarse_gap = 0.0
        self.feedback = True
        self.z = self.tunnel_z()

    # ------------------------------------------------------------------ tip shaper / motor
    def get_tip_shaper(self) -> dict[str, float]:
        """Tip-shaper properties as ``TipShaper.PropsGet`` returns them: ``change_bias`` and
        ``restore_feedback`` 0 False, 1 True."""
        with self.clock.lock:
            return {k: int(v) if k in _SHAPER_FLAGS else v for k, v in self.tip_shaper.items()}

    def set_tip_shaper(self, **props: float) -> None:
        """Tip-shaper properties (names as in the protocol table; SI units), as
        ``TipShaper.PropsSet``: ``change_bias``/``restore_feedback`` 0 no change, 1 True, 2 False."""
        unknown = set(props) - set(self.tip_shaper)
        if unknown:
            raise ValueError(f"unknown tip-shaper properties {sorted(unknown)}")
        for name, value in props.items():
            check_finite(value, name)
        for name in _SHAPER_FLAGS:
            if name in props and props[name] not in (0, 1, 2):
                raise ValueError(f"tip shaper {name} {props[name]} must be 0 (no change), "
                                 "1 (True) or 2 (False)")
        for name in ("switch_off_delay", "lift_time_1", "bias_settling_time", "lift_time_2",
                     "end_wait_time"):
            if name in props and not 0 <= props[name] <= 60:
                raise ValueError(f"tip shaper {name} {props[name]} s must be in [0, 60] s")
        for name in ("tip_lift", "lift_height"):
            if name in props and abs(props[name]) > 100e-9:
                raise ValueError(f"tip shaper {name} {props[name]} m exceeds ±100 nm")
        for name in ("bias", "bias_lift"):
            if name in props and abs(props[name]) > 10:
                raise ValueError(f"tip shaper {name} {props[name]} V is outside the ±10 V range")
        with self.clock.lock:
            for k, v in props.items():
                if k in _SHAPER_FLAGS:
                    if v:  # 0: no change
                        self.tip_shaper[k] = v == 1
                else:
                    self.tip_shaper[k] = float(v)

    def tip_shaper_start(self, wait: bool = True, timeout_ms: int = -1) -> TipState:
        """Run the tip shaper: feedback off, (``change_bias``: apply ``bias``), move by
        ``tip_lift`` (indenting past contact), apply ``bias_lift``, retract by
        ``lift_height``, restore the initial bias, then (``restore_feedback``) the initial
        Z-controller status, else the feedback stays off. Changes the tip through the
        dynamics; blocks the procedure's simulated duration when ``wait``.
        """
        with self.clock.lock:
            self.clock.update()
            if not self.approached():
                raise ValueError("TipShaper.Start needs the tip in tunnelling range (approach first)")
            p = self.tip_shaper
            initial_bias, initial_feedback = self.bias, self.feedback
            z0 = self.tunnel_z() if self.feedback else self.z
            if p["change_bias"]:
                self.bias = p["bias"]
            target = z0 + p["tip_lift"]
            depth = self.contact_z() - target
            new = self.dynamics.state
            if depth > 0:
                new = self.apply_action(lambda: self.dynamics.indent(min(depth, MAX_INDENT)))
            if abs(p["bias_lift"]) >= 1.5:
                width = max(p["bias_settling_time"] + p["lift_time_2"], 1e-3)
                new = self.apply_action(lambda: self.dynamics.pulse(p["bias_lift"], width))
            self.bias = initial_bias  # restored after the second ramp, before the end wait
            self.feedback = bool(p["restore_feedback"]) and initial_feedback
            self.z = self.tunnel_z() if self.feedback else z0 + p["tip_lift"] + p["lift_height"]
            duration = sum(p[k] for k in ("switch_off_delay", "lift_time_1", "bias_settling_time",
                                          "lift_time_2", "end_wait_time"))
        if wait:
            limit = duration if timeout_ms < 0 else min(duration, timeout_ms / 1000.0)
            self.clock.sleep(limit)
        return new

    def motor_move(self, direction: int, steps: int, group: int = 0, wait: bool = True) -> None:
        """Coarse steps: 0 X+, 1 X−, 2 Y+, 3 Y−, 4 Z+ (away), 5 Z− (towards the sample).

        Lateral steps withdraw first and reach fresh sample area (the dynamics'
        ``move``); Z− steps beyond the piezo range crash the tip (``indent``).
        """
        if direction not in range(6):
            raise ValueError(f"motor direction {direction} must be 0..5")
        if not 0 <= steps <= 65535:
            raise ValueError(f"steps {steps} must be in 0..65535")
        if group not in range(6):
            raise ValueError(f"motor group {group} must be 0..5")
        with self.clock.lock:
            self.clock.update()
            if steps == 0:
                return
            if direction < 4:
                if self.scan.busy():
                    raise ValueError("cannot move the coarse motor while a scan is in progress")
                distance = steps * STEP_XY
                dx, dy = [(distance, 0), (-distance, 0), (0, distance), (0, -distance)][direction]
                self.coarse_x += dx
                self.coarse_y += dy
                self.dynamics.move(distance)
                self.follow_tip()
            elif direction == 4:
                self.coarse_gap += steps * STEP_Z
                self.withdrawn = True
                self.feedback = False
                self.z = Z_LIMIT
            else:
                travel = steps * STEP_Z
                if self.approached():
                    room = Z_LIMIT - (self.tunnel_z() if self.feedback else self.z)
                    excess = travel - room
                else:
                    excess = travel - self.coarse_gap - (Z_LIMIT - (-Z_LIMIT))
                    self.coarse_gap = max(0.0, self.coarse_gap - travel)
                if excess > 0:
                    self.apply_action(lambda: self.dynamics.indent(min(excess, MAX_INDENT)))
                    self.coarse_gap = 0.0
        if wait:
            self.clock.sleep(steps * STEP_TIME)
