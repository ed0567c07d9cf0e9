"""The state of a simulated Nanonis-controlled STM (no networking).

:class:`SimulatedMicroscope` holds what the controller software would hold — bias,
Z controller, scan frame/buffer/speed/properties, the scan state machine, tip
position, coarse motor, SafeTip — and produces measurements from the physics in
:mod:`qcodes_stmtip.sim` (frames from :func:`~qcodes_stmtip.sim.frames.render_scan`,
tip changes from :class:`~qcodes_stmtip.sim.dynamics.TipDynamics`).

Time: the microscope runs on *simulated* seconds, which advance ``time_acceleration``
times faster than wall time. A frame takes ``lines × (forward + backward time per
line)`` simulated seconds. The state is advanced lazily whenever a method is called;
spontaneous tip changes are drawn line by line and become ``tip_changes`` of the frame
being acquired (the frame is re-rendered from that line on; acquired lines are kept).

Frame data follow the project convention: ``(lines, pixels)``, row 0 is the bottom
line, column index increases with x, for both scan directions; unacquired pixels are
NaN. Bad arguments raise ``ValueError`` (the controller turns them into error replies).

All public methods are thread-safe (one lock; blocking waits release it). Work per
call is bounded: a frame holds at most ``max_frame_values`` pixels (pixels × lines),
and a scan started by :meth:`SimulatedMicroscope.scan_action` is rendered with the lock
released, so other callers are served meanwhile. (A frame re-rendered after a tip
change mid-scan, or started by continuous scanning, is rendered under the lock; the
frame limit bounds that time.)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.physics import KAPPA  # 1/m, re-exported for callers of microscope.KAPPA
from qcodes_stmtip.sim.tips import TipState
from qcodes_stmtip.taxonomy import check_label, check_surface

__all__ = ["GroundTruth", "SimulatedMicroscope", "SIGNAL_NAMES"]

#: Signal names served by ``Signals.NamesGet``; index ``i`` names signal ``i``
#: (0 = Current, 14 = Z, as on a default Nanonis system).
SIGNAL_NAMES: tuple[str, ...] = (
    "Current (A)", "Bias (V)", "Input 2 (V)", "Input 3 (V)", "Input 4 (V)", "Input 5 (V)",
    "Input 6 (V)", "Input 7 (V)", "Input 8 (V)", "Output 1 (V)", "Output 2 (V)",
    "Output 3 (V)", "Output 4 (V)", "Setpoint (A)", "Z (m)", "X (m)", "Y (m)",
    "Phase (deg)", "Amplitude (m)", "Frequency Shift (Hz)", "Excitation (V)",
)
CURRENT, BIAS, SETPOINT, Z, X, Y = 0, 1, 13, 14, 15, 16

#: Conductance quantum (S): the current at point contact is about G0·|V|.
G0 = 7.748e-5
#: Piezo Z range: ±Z_LIMIT around the tunnelling height (m). Withdraw goes to +Z_LIMIT.
Z_LIMIT = 200e-9
#: Coarse-motor step sizes (m) laterally and in Z.
STEP_XY = 150e-9
STEP_Z = 50e-9
#: Deepest indentation the tip model distinguishes (m): a deeper crash does the same damage.
MAX_INDENT = 20e-9
#: Follow-Me speed (m/s) and the time a coarse step takes (s), simulated.
FOLME_SPEED = 100e-9
STEP_TIME = 2e-3
#: Auto-approach time per metre of coarse gap plus a fixed settling time (s), simulated.
APPROACH_S_PER_M = 2e6
APPROACH_MIN_S = 5.0
WITHDRAW_S = 0.05
#: Z-controller statuses of ``ZCtrl.StatusGet``.
ZSTATUS_OFF, ZSTATUS_ON, ZSTATUS_HOLD, ZSTATUS_SWITCHING_OFF, ZSTATUS_SAFETIP, ZSTATUS_WITHDRAWING = (
    1, 2, 3, 4, 5, 6)

_DEFAULT_SIZE = {"hsi100": 20e-9, "au111": 20e-9, "cu111": 20e-9}
#: Largest scan buffer (pixels × lines) by default: 1024 × 1024 renders in about 0.6 s;
#: 4096 × 4096 would hold a thread (and, mid-scan, the lock) for half a minute.
MAX_FRAME_VALUES = 1024 * 1024


@dataclass(frozen=True)
class GroundTruth:
    """What the simulation knows and a real microscope would not tell (for tests).

    ``frame_label``/``tip_change_lines`` describe the current (or last) frame;
    ``tip_change_lines`` are acquisition-order line indexes; both are ``None`` before
    the first scan.
    """

    tip_label: str
    tip: TipState
    frame_label: str | None
    tip_change_lines: tuple[int, ...] | None
    frame_complete: bool
    frames_completed: int


@dataclass
class _Frame:
    """A frame being (or last) acquired."""

    geometry: ScanGeometry
    up: bool
    fwd_time: float  # s per forward line
    bwd_time: float  # s per backward line
    seed: int
    start_tip: TipState
    t0: float  # simulated start time (s)
    feedback: bool  # constant-current (True) or constant-height
    z_hold: float
    setpoint: float
    bias: float
    channels: tuple[int, ...]
    coarse: tuple[float, float] = (0.0, 0.0)  # sample offset from coarse moves (m)
    tip_changes: list[tuple[int, TipState]] = field(default_factory=list)
    tip_change_lines: tuple[int, ...] = ()
    instrument: object | None = None  # the renderer's drift/noise model, fixed per frame
    forward: np.ndarray | None = None
    backward: np.ndarray | None = None
    label: str = ""
    elapsed: float = 0.0  # active simulated seconds acquired
    lines_evolved: int = 0  # lines whose tip dynamics have been drawn
    complete: bool = False
    path: str = ""

    @property
    def line_period(self) -> float:
        return self.fwd_time + self.bwd_time

    @property
    def duration(self) -> float:
        return self.geometry.lines * self.line_period

    def row_of(self, acquisition_line: int) -> int:
        return acquisition_line if self.up else self.geometry.lines - 1 - acquisition_line


class SimulatedMicroscope:
    """A simulated STM with a Nanonis controller's state.

    Args:
        surface: ``"hsi100"``, ``"au111"`` or ``"cu111"``.
        seed: seeds the sample (``sample_seed``), the tip dynamics and the noise.
        time_acceleration: simulated seconds per wall second (> 0).
        initial_tip: a class name of ``surface`` or a :class:`TipState`; ``None`` lets
            the tip dynamics choose.
        clock: wall-clock function (seconds); tests may pass a fake one.
        max_frame_values: largest scan buffer, pixels × lines (bounds the work of
            rendering a frame).
    """

    def __init__(self, surface: str = "hsi100", seed: int = 0, time_acceleration: float = 1.0,
                 initial_tip: TipState | str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_frame_values: int = MAX_FRAME_VALUES) -> None:
        from qcodes_stmtip.sim.dynamics import TipDynamics

        check_surface(surface)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not (isinstance(time_acceleration, int | float) and math.isfinite(time_acceleration)
                and time_acceleration > 0):
            raise ValueError(f"time_acceleration must be a positive number, got {time_acceleration!r}")
        if isinstance(initial_tip, str):
            check_label(surface, initial_tip, "initial_tip")
        if isinstance(max_frame_values, bool) or not isinstance(max_frame_values, int) \
                or not 32 <= max_frame_values <= 4096 * 4096:
            raise ValueError(f"max_frame_values must be an integer in 32..{4096 * 4096}, "
                             f"got {max_frame_values!r}")
        self.max_frame_values = max_frame_values
        self.surface = surface
        self.seed = int(seed)
        self.time_acceleration = float(time_acceleration)
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        seeds = np.random.SeedSequence(self.seed).spawn(3)
        self._rng = np.random.default_rng(seeds[0])  # measurement noise, frame seeds
        self.dynamics = TipDynamics(surface, np.random.default_rng(seeds[1]), initial_tip)
        self._wall0 = clock()
        self._sim_t = 0.0  # simulated time of the last update
        # Controller settings.
        self.bias = 1.0 if surface == "hsi100" else 0.1
        self.setpoint = 50e-12 if surface == "hsi100" else 1e-9
        self.feedback = True
        self._zstatus_override: tuple[int, float] | None = None  # (status, until sim time)
        self.z = self._tunnel_z()
        self.withdrawn = False
        self.coarse_gap = 0.0  # m beyond the piezo range; 0 when approached
        self._approach_until: float | None = None
        self.safe_tip_auto_recovery = False
        self.safe_tip_auto_pause = True
        self.safe_tip_threshold = 1e-6
        self.safe_tip_events = 0
        size = _DEFAULT_SIZE[surface]
        self.frame = (0.0, 0.0, size, size, 0.0)  # cx, cy, w, h, angle
        self.channels: tuple[int, ...] = (CURRENT, Z)
        self.pixels = 256
        self.lines = 256
        self.fwd_time = 0.1
        self.speed_ratio = 1.0
        self.keep_speed = False  # False: keep time per line when the frame changes
        self.continuous = False
        self.bouncy = False
        self.autosave = 1  # 1 all, 2 next, 3 off
        self.series_name = "sim_"
        self.comment = ""
        self.modules: tuple[str, ...] = ()
        self.autopaste = 0
        self.tip_x, self.tip_y = 0.0, 0.0
        self.coarse_x, self.coarse_y = 0.0, 0.0  # sample offset from coarse moves (m)
        self.tip_shaper = {
            "switch_off_delay": 0.05, "change_bias": 2, "bias": 0.0, "tip_lift": -1.5e-9,
            "lift_time_1": 0.1, "bias_lift": 2.0, "bias_settling_time": 0.05,
            "lift_height": 2e-9, "lift_time_2": 0.1, "end_wait_time": 0.05, "restore_feedback": 1,
        }
        self._frame_moved_t = 0.0  # simulated time of the last FrameSet (piezo creep)
        self._scan: _Frame | None = None
        self._scan_state = "idle"  # idle, running, paused
        self._frozen = False
        self._frames_completed = 0
        self._file_counter = 0
        self._last_path = ""

    # ------------------------------------------------------------------ time
    def sim_time(self) -> float:
        """Simulated seconds since the microscope was created."""
        with self._lock:
            return self._sim_t_now()

    def _sim_t_now(self) -> float:
        return (self._clock() - self._wall0) * self.time_acceleration

    def _sleep_sim(self, seconds: float) -> None:
        """Block the caller for ``seconds`` of simulated time (lock released)."""
        if seconds > 0:
            with self._changed:
                self._changed.wait_for(lambda: False, timeout=seconds / self.time_acceleration)

    def _update(self) -> None:
        """Advance the simulation to now (call with the lock held)."""
        now = self._sim_t_now()
        if now <= self._sim_t:
            return
        if self._approach_until is not None and now >= self._approach_until:
            self._finish_approach()
        scan = self._scan
        if scan is not None and self._scan_state == "running" and not scan.complete:
            self._advance_scan(scan, now - self._sim_t)
        else:
            self._evolve_idle(now - self._sim_t)
        self._sim_t = now

    def _evolve_idle(self, dt: float) -> None:
        if dt > 0 and not self.withdrawn:
            self.dynamics.evolve(dt)

    def _advance_scan(self, scan: _Frame, dt: float) -> None:
        remaining = scan.duration - scan.elapsed
        step = min(dt, remaining)
        scan.elapsed += step
        # Tip dynamics for every line completed in this step.
        done_lines = min(scan.geometry.lines, int(scan.elapsed / scan.line_period + 1e-9))
        while scan.lines_evolved < done_lines:
            new = self.dynamics.evolve(scan.line_period)
            scan.lines_evolved += 1
            if new is not None and scan.lines_evolved < scan.geometry.lines:
                self._tip_change(scan, scan.lines_evolved, new)
        if scan.elapsed >= scan.duration - 1e-12:
            self._complete_frame(scan)
            leftover = dt - step
            if self.continuous and self._scan_state == "running":
                up = (not scan.up) if self.bouncy else scan.up
                # Skip whole frames that ended unobserved: only the last is rendered.
                n_skip = int(leftover // scan.duration) if scan.duration > 0 else 0
                if n_skip:
                    self._evolve_idle(n_skip * scan.duration)
                    self._frames_completed += n_skip
                    leftover -= n_skip * scan.duration
                    if self.bouncy and n_skip % 2:
                        up = not up
                self._start_scan(up, self._sim_t + dt - leftover)
                self._advance_scan(self._scan, leftover)
            else:
                self._scan_state = "idle"
                self._evolve_idle(leftover)

    def _complete_frame(self, scan: _Frame) -> None:
        scan.complete = True
        self._frames_completed += 1
        if self.autosave in (1, 2):
            self._file_counter += 1
            scan.path = f"C:/Users/simulated/Data/{self.series_name}{self._file_counter:05d}.sxm"
            if self.autosave == 2:
                self.autosave = 3
        self._last_path = scan.path
        self._changed.notify_all()

    # ------------------------------------------------------------------ physics helpers
    def _tunnel_z(self) -> float:
        """Z reading (m) at the setpoint over the reference surface: a longer apex reads lower."""
        return -self.dynamics.state.apex_z_m

    def _approached(self) -> bool:
        return not self.withdrawn and self.coarse_gap == 0.0 and self._approach_until is None

    def _current_at(self, z: float) -> float:
        """Tunnelling current (A) with the tip at piezo height ``z`` (feedback off)."""
        if not self._approached():
            return 0.0
        gap = z - self._tunnel_z()
        tunnelling = self.setpoint * math.exp(min(-2.0 * KAPPA * gap, 50.0))
        return min(tunnelling, self._contact_current())

    def _contact_current(self) -> float:
        """Point-contact current (A): one conductance quantum at the bias."""
        return G0 * max(abs(self.bias), 0.01)

    def _contact_z(self) -> float:
        """Piezo height (m) at which the apex touches the sample."""
        return self._tunnel_z() - math.log(self._contact_current() / self.setpoint) / (2.0 * KAPPA)

    def _tip_change(self, scan: _Frame | None, line: int | None, new: TipState) -> None:
        """Record a tip change at acquisition ``line`` of a running frame and re-render."""
        if self.feedback and self._approached():
            self.z = self._tunnel_z()
        if scan is None or line is None or scan.complete or line >= scan.geometry.lines:
            return
        scan.tip_changes = [c for c in scan.tip_changes if c[0] < line] + [(line, new)]
        old_f, old_b = scan.forward, scan.backward
        self._render(scan)
        keep = [scan.row_of(a) for a in range(line)]
        if keep and old_f is not None and old_b is not None:
            scan.forward[keep] = old_f[keep]
            scan.backward[keep] = old_b[keep]

    def _render(self, scan: _Frame) -> None:
        from qcodes_stmtip.sim.frames import render_scan

        g = scan.geometry
        sample_geometry = replace(g, centre_x=g.centre_x + scan.coarse[0],
                                  centre_y=g.centre_y + scan.coarse[1])
        sim = render_scan(
            self.surface, scan.start_tip, sample_geometry, np.random.default_rng(scan.seed),
            sample_seed=self.seed, scan_up=scan.up, seconds_per_line=scan.fwd_time,
            tip_changes=tuple(scan.tip_changes), t0=scan.t0, instrument=scan.instrument,
        )
        scan.instrument = sim.instrument
        scan.tip_change_lines = tuple(sim.tip_change_lines)
        scan.forward = np.asarray(sim.forward, dtype=np.float64)
        scan.backward = np.asarray(sim.backward, dtype=np.float64)
        scan.label = sim.label

    def _new_frame(self, up: bool, t0: float) -> _Frame:
        """A frame from the current settings, not rendered yet (call with the lock held)."""
        cx, cy, w, h, angle = self.frame
        geometry = ScanGeometry(w, h, self.pixels, self.lines, cx, cy, angle)
        return _Frame(
            geometry=geometry, up=up, fwd_time=self.fwd_time,
            bwd_time=self.fwd_time / self.speed_ratio, seed=int(self._rng.integers(1 << 62)),
            start_tip=self.dynamics.state, t0=max(0.0, t0 - self._frame_moved_t), feedback=self.feedback and self._approached(),
            z_hold=self.z, setpoint=self.setpoint, bias=self.bias, channels=self.channels,
            coarse=(self.coarse_x, self.coarse_y),
        )

    def _install(self, scan: _Frame) -> None:
        """Make a rendered frame the running one (call with the lock held)."""
        self._scan = scan
        self._scan_state = "running"
        self._frozen = False

    def _start_scan(self, up: bool, t0: float) -> None:
        """Start a frame now, rendering it under the lock (continuous scanning)."""
        scan = self._new_frame(up, t0)
        self._render(scan)
        self._install(scan)

    def _start_scan_unlocked(self, up: bool) -> None:
        """Start a frame, rendering it with the lock released (``Scan.Action`` start).

        If the tip or the sample offset changed while rendering, the frame is rendered
        again from the new state (twice at most, then under the lock). Rendering takes
        no scan time.
        """
        for _ in range(3):
            with self._lock:
                self._update()
                scan = self._new_frame(up, self._sim_t)
                tip = self.dynamics.state
            self._render(scan)  # touches only ``scan`` and immutable settings
            with self._lock:
                if self.dynamics.state is tip and scan.coarse == (self.coarse_x, self.coarse_y):
                    self._install(scan)
                    self._sim_t = max(self._sim_t, self._sim_t_now())
                    return
        with self._lock:
            self._update()
            self._start_scan(up, self._sim_t)
            self._sim_t = max(self._sim_t, self._sim_t_now())

    # ------------------------------------------------------------------ bias
    def get_bias(self) -> float:
        with self._lock:
            self._update()
            return self.bias

    def set_bias(self, volts: float) -> None:
        """Set the bias (V); |V| ≤ 10."""
        _check_finite(volts, "bias")
        if abs(volts) > 10:
            raise ValueError(f"bias {volts} V is outside the ±10 V range")
        with self._lock:
            self._update()
            self.bias = float(volts)

    def bias_pulse(self, *, amplitude_V: float, width_s: float, wait: bool = True, z_hold: int = 0,
                   absolute: int = 0) -> TipState:
        """Apply a bias pulse, keyword arguments only (side effect: the tip dynamics may change the apex).

        ``absolute``: 0/2 the pulse is ``amplitude_V`` (V); 1 it is ``bias + amplitude_V``.
        Blocks ``width_s`` simulated seconds when ``wait``. Returns the new tip state.
        """
        volts = amplitude_V
        _check_finite(width_s, "width")
        _check_finite(volts, "bias")
        if not 0 < width_s <= 10:
            raise ValueError(f"pulse width {width_s} s must be in (0, 10] s")
        if z_hold not in (0, 1, 2) or absolute not in (0, 1, 2):
            raise ValueError(f"z_hold={z_hold} and absolute={absolute} must be 0, 1 or 2")
        with self._lock:
            self._update()
            amplitude = self.bias + volts if absolute == 1 else volts
            if abs(amplitude) > 10:
                raise ValueError(f"pulse amplitude {amplitude} V is outside the ±10 V range")
            if not self._approached():
                new = self.dynamics.state  # nothing to pulse against
            else:
                new = self._apply_action(lambda: self.dynamics.pulse(amplitude, width_s))
        if wait:
            self._sleep_sim(width_s)
        return new

    def _apply_action(self, action: Callable[[], TipState]) -> TipState:
        """Run a tip-dynamics action now; record it in the running frame if it changed the tip."""
        before = self.dynamics.state
        new = action()
        if new != before:
            scan = self._scan
            line = None
            if scan is not None and self._scan_state != "idle" and not scan.complete:
                line = min(scan.geometry.lines, int(scan.elapsed / scan.line_period) + 1)
            self._tip_change(scan, line, new)
        return new

    # ------------------------------------------------------------------ current & Z
    def get_current(self) -> float:
        """Tunnelling current (A): ≈ setpoint with 2 % noise in feedback, 0 when withdrawn."""
        with self._lock:
            self._update()
            if not self._approached():
                return 0.0
            if self.feedback:
                return float(self.setpoint * (1.0 + 0.02 * self._rng.standard_normal()))
            return self._current_at(self.z) * (1.0 + 0.02 * float(self._rng.standard_normal()))

    def get_setpoint(self) -> float:
        with self._lock:
            return self.setpoint

    def set_setpoint(self, amperes: float) -> None:
        """Set the current setpoint (A), 0 < I ≤ 100 nA."""
        _check_finite(amperes, "setpoint")
        if not 0 < amperes <= 100e-9:
            raise ValueError(f"setpoint {amperes} A must be in (0, 100 nA]")
        with self._lock:
            self._update()
            self.setpoint = float(amperes)

    def get_feedback(self) -> bool:
        with self._lock:
            self._update()
            return self.feedback

    def set_feedback(self, on: bool) -> None:
        """Switch the Z controller on (the tip returns to the tunnelling height) or off (Z holds)."""
        with self._lock:
            self._update()
            if on and self._approached():
                self.z = self._tunnel_z()
            self.feedback = bool(on)
            self._zstatus_override = None

    def get_z(self) -> float:
        with self._lock:
            self._update()
            if self.feedback and self._approached():
                return self._tunnel_z() + 0.5e-12 * float(self._rng.standard_normal())
            return self.z

    def set_z(self, z: float) -> None:
        """Move the tip to piezo height ``z`` (m) with the feedback off.

        Driving into the sample indents the apex (tip dynamics); SafeTip stops the
        approach where the current passes its threshold.
        """
        _check_finite(z, "z")
        if abs(z) > Z_LIMIT:
            raise ValueError(f"z {z} m is outside the ±{Z_LIMIT} m piezo range")
        with self._lock:
            self._update()
            if self.feedback:
                raise ValueError("ZCtrl.ZPosSet needs the Z controller off (it is on)")
            self.z = float(z)
            if not self._approached():
                return
            if self._current_at(z) > self.safe_tip_threshold:
                self._safe_tip_trip()
                return
            depth = self._contact_z() - z
            if depth > 0:
                self._apply_action(lambda: self.dynamics.indent(min(depth, MAX_INDENT)))
                self.z = self._contact_z()

    def _safe_tip_trip(self) -> None:
        """SafeTip: stop at the threshold height, feedback off, pause the scan."""
        self.safe_tip_events += 1
        self.z = self._tunnel_z() - math.log(self.safe_tip_threshold / self.setpoint) / (2 * KAPPA)
        self.z += 1e-10  # retract a little, as the real one does
        self.feedback = False
        self._zstatus_override = (ZSTATUS_SAFETIP, math.inf)
        if self.safe_tip_auto_pause and self._scan_state == "running":
            self._scan_state = "paused"
        if self.safe_tip_auto_recovery:
            self.feedback = True
            self.z = self._tunnel_z()
            self._zstatus_override = (ZSTATUS_SAFETIP, self._sim_t_now() + 0.5)

    def z_status(self) -> int:
        """``ZCtrl.StatusGet`` code: 1 off, 2 on, 5 safe-tip event, 6 withdrawing."""
        with self._lock:
            self._update()
            if self._zstatus_override is not None:
                status, until = self._zstatus_override
                if self._sim_t_now() < until:
                    return status
                self._zstatus_override = None
            return ZSTATUS_ON if self.feedback else ZSTATUS_OFF

    def withdraw(self, wait: bool = True, timeout_ms: int = -1) -> None:
        """Feedback off and the tip retracted to the top of the Z range."""
        with self._lock:
            self._update()
            self.feedback = False
            self.withdrawn = True
            self.z = Z_LIMIT
            self._approach_until = None
            self._zstatus_override = (ZSTATUS_WITHDRAWING, self._sim_t_now() + WITHDRAW_S)
        if wait:
            limit = WITHDRAW_S if timeout_ms < 0 else min(WITHDRAW_S, timeout_ms / 1000.0)
            self._sleep_sim(limit)

    def home(self) -> None:
        """Feedback off and Z to its home position (10 nm above the tunnelling height)."""
        with self._lock:
            self._update()
            self.feedback = False
            self.z = self._tunnel_z() + 10e-9

    # ------------------------------------------------------------------ SafeTip / approach
    def set_safe_tip(self, auto_recovery: int, auto_pause: int, threshold: float) -> None:
        """SafeTip settings; ``auto_recovery``/``auto_pause``: 0 no change, 1 on, 2 off."""
        _check_finite(threshold, "threshold")
        if auto_recovery not in (0, 1, 2) or auto_pause not in (0, 1, 2):
            raise ValueError("SafeTip auto_recovery and auto_pause must be 0, 1 or 2")
        if not threshold > 0:
            raise ValueError(f"SafeTip threshold {threshold} A must be positive")
        with self._lock:
            if auto_recovery:
                self.safe_tip_auto_recovery = auto_recovery == 1
            if auto_pause:
                self.safe_tip_auto_pause = auto_pause == 1
            self.safe_tip_threshold = float(threshold)

    def set_approach(self, on: bool) -> None:
        """Start (True) or stop the auto-approach; it ends in tunnelling with the feedback on."""
        with self._lock:
            self._update()
            if on:
                if self._approached():
                    self.feedback = True
                    self.z = self._tunnel_z()
                    return
                self._approach_until = self._sim_t_now() + APPROACH_MIN_S + APPROACH_S_PER_M * self.coarse_gap
            else:
                self._approach_until = None

    def get_approach(self) -> bool:
        with self._lock:
            self._update()
            return self._approach_until is not None

    def _finish_approach(self) -> None:
        self._approach_until = None
        self.withdrawn = False
        self.coarse_gap = 0.0
        self.feedback = True
        self.z = self._tunnel_z()

    # ------------------------------------------------------------------ scan
    def scan_action(self, action: int, up: bool) -> None:
        """0 start, 1 stop, 2 pause, 3 resume, 4 freeze, 5 unfreeze, 6 go to centre."""
        if action not in range(7):
            raise ValueError(f"scan action {action} must be 0..6")
        if action == 0:
            self._start_scan_unlocked(bool(up))  # rendering takes no scan time
            return
        with self._lock:
            self._update()
            if action == 1:
                if self._scan_state != "idle":
                    self._scan_state = "idle"
                    self._changed.notify_all()
            elif action in (2, 4):
                if self._scan_state == "running":
                    self._scan_state = "paused"
                    self._frozen = action == 4
            elif action in (3, 5):
                if self._scan_state == "paused":
                    self._scan_state = "running"
                    self._frozen = False
            else:
                cx, cy = self.frame[:2]
                self.tip_x, self.tip_y = cx, cy

    def scan_running(self) -> bool:
        """Whether a frame is in progress (running or paused)."""
        with self._lock:
            self._update()
            return self._scan_state != "idle"

    def wait_end_of_scan(self, timeout_ms: int) -> tuple[bool, str]:
        """Block until the running (or paused) frame completes or ``timeout_ms`` passes.

        Returns ``(timed_out, path)``; with no scan in progress it returns at once with
        the last frame's path. ``timeout_ms`` = -1 waits forever.
        """
        if timeout_ms < -1:
            raise ValueError(f"timeout_ms {timeout_ms} must be -1 (forever) or ≥ 0")
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0
        with self._changed:
            self._update()
            scan = self._scan
            if scan is None or self._scan_state == "idle":
                return False, self._last_path
            while True:
                self._update()
                if scan.complete:
                    return False, scan.path
                if self._scan is not scan or self._scan_state == "idle":  # stopped or restarted
                    return False, ""
                remaining_wall = (scan.duration - scan.elapsed) / self.time_acceleration
                if self._scan_state == "paused":
                    remaining_wall = 0.05
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return True, ""
                    remaining_wall = min(remaining_wall, left)
                self._changed.wait(max(min(remaining_wall, 0.25), 1e-4))

    def frame_data(self, channel: int, forward: bool) -> tuple[str, np.ndarray, bool]:
        """Channel data of the current/last frame: ``(name, float32 (lines, pixels), scan_up)``.

        Rows not yet acquired (and the unacquired part of the current line) are NaN.
        """
        with self._lock:
            self._update()
            scan = self._scan
            if channel not in self.channels and (scan is None or channel not in scan.channels):
                raise ValueError(f"channel {channel} is not in the scan buffer {self.channels}")
            if scan is None:
                return SIGNAL_NAMES[channel], np.full((self.lines, self.pixels), np.nan,
                                                      np.float32), True
            if channel not in scan.channels:
                raise ValueError(f"channel {channel} was not recorded in the last frame {scan.channels}")
            data = self._channel_data(scan, channel, forward)
            return SIGNAL_NAMES[channel], self._mask_unacquired(scan, data, forward), scan.up

    def _channel_data(self, scan: _Frame, channel: int, forward: bool) -> np.ndarray:
        heights = scan.forward if forward else scan.backward
        assert heights is not None
        rng = np.random.default_rng([scan.seed, channel, int(forward)])
        if channel == Z:
            if scan.feedback:
                return heights.copy()
            return np.full_like(heights, scan.z_hold)
        if channel == CURRENT:
            if scan.feedback:
                # Feedback lag along the fast axis: error signal ∝ local slope.
                from scipy.signal import lfilter

                sweep = heights if forward else heights[:, ::-1]
                lag = lfilter([0.4], [1.0, -0.6], sweep - sweep[:, :1], axis=1) + sweep[:, :1]
                error = lag - sweep
                error -= np.median(error, axis=1, keepdims=True)  # integral action: no offset
                if not forward:
                    error = error[:, ::-1]
                current = scan.setpoint * np.exp(np.clip(-2 * KAPPA * error, -50, 50))
            else:
                topo = heights - np.median(heights)
                gap = scan.z_hold - (-scan.start_tip.apex_z_m) - topo
                current = scan.setpoint * np.exp(np.clip(-2 * KAPPA * gap, -700, 50))
            return current * (1 + 0.02 * rng.standard_normal(current.shape))
        if channel == BIAS:
            return np.full_like(heights, scan.bias)
        if channel == SETPOINT:
            return np.full_like(heights, scan.setpoint)
        if channel in (X, Y):
            g = scan.geometry
            xs, ys = np.meshgrid(g.x_setpoints() - g.centre_x, g.y_setpoints() - g.centre_y)
            sx, sy = g.to_sample(xs, ys)
            return sx if channel == X else sy
        # Unconnected inputs/outputs: ADC noise around 0 V.
        return 1e-4 * rng.standard_normal(heights.shape)

    def _mask_unacquired(self, scan: _Frame, data: np.ndarray, forward: bool) -> np.ndarray:
        out = data.astype(np.float32)
        if scan.complete:
            return out
        lines, pixels = out.shape
        line = int(scan.elapsed / scan.line_period + 1e-9)
        into = scan.elapsed - line * scan.line_period
        if forward:
            done = pixels if into >= scan.fwd_time else int(pixels * into / scan.fwd_time + 1e-6)
        else:
            done = 0 if into <= scan.fwd_time else int(
                pixels * (into - scan.fwd_time) / scan.bwd_time + 1e-6)
        rows_pending = [scan.row_of(a) for a in range(line + 1, lines)]
        if line < lines:
            row = scan.row_of(line)
            if forward:
                out[row, done:] = np.nan
            else:  # the backward sweep runs from the right end
                out[row, : pixels - done] = np.nan
        out[rows_pending] = np.nan
        return out

    def get_frame(self) -> tuple[float, float, float, float, float]:
        with self._lock:
            return self.frame

    def set_frame(self, cx: float, cy: float, width: float, height: float, angle: float) -> None:
        """Scan frame (m, degrees clockwise); applies to the next frame started."""
        for name, value in (("centre_x", cx), ("centre_y", cy), ("width", width),
                            ("height", height), ("angle", angle)):
            _check_finite(value, name)
        if not (0 < width <= 2e-6 and 0 < height <= 2e-6):
            raise ValueError(f"frame size {width} x {height} m must be in (0, 2 µm]")
        if max(abs(cx) + width / 2, abs(cy) + height / 2) > 1e-6 + 1e-6:
            raise ValueError(f"frame centre ({cx}, {cy}) m lies outside the ±2 µm scan range")
        with self._lock:
            self._update()
            old_width = self.frame[2]
            self.frame = tuple(float(v) for v in (cx, cy, width, height, angle))  # type: ignore[assignment]
            self._frame_moved_t = self._sim_t
            if self.keep_speed:
                self.fwd_time = self.fwd_time * width / old_width

    def get_buffer(self) -> tuple[tuple[int, ...], int, int]:
        with self._lock:
            return self.channels, self.pixels, self.lines

    def set_buffer(self, channels: Sequence[int], pixels: int, lines: int) -> None:
        """Recorded signal indexes and resolution (pixels a multiple of 16, 16..4096; lines
        2..4096; pixels × lines ≤ ``max_frame_values``)."""
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("the scan buffer needs at least one channel")
        bad = [c for c in channels if not 0 <= c < len(SIGNAL_NAMES)]
        if bad:
            raise ValueError(f"channel indexes {bad} are not signals 0..{len(SIGNAL_NAMES) - 1}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"channel indexes {channels} contain duplicates")
        if not (16 <= pixels <= 4096 and pixels % 16 == 0):
            raise ValueError(f"pixels {pixels} must be a multiple of 16 in 16..4096")
        if not 2 <= lines <= 4096:
            raise ValueError(f"lines {lines} must be in 2..4096")
        if pixels * lines > self.max_frame_values:
            raise ValueError(f"scan buffer {pixels} pixels x {lines} lines exceeds the simulator's "
                             f"limit of {self.max_frame_values} values per frame")
        with self._lock:
            self._update()
            self.channels, self.pixels, self.lines = channels, int(pixels), int(lines)

    def get_speed(self) -> tuple[float, float, float, float, int, float]:
        """``(fwd m/s, bwd m/s, fwd s/line, bwd s/line, keep (0 speed, 1 time), ratio)``."""
        with self._lock:
            width = self.frame[2]
            bwd_time = self.fwd_time / self.speed_ratio
            return (width / self.fwd_time, width / bwd_time, self.fwd_time, bwd_time,
                    0 if self.keep_speed else 1, self.speed_ratio)

    def set_speed(self, fwd_speed: float, bwd_speed: float, fwd_time: float, bwd_time: float,
                  keep: int, ratio: float) -> None:
        """Scan speed. ``keep``: 0 unchanged, 1 the speeds are given, 2 the times are given.

        The backward sweep follows from the forward one and ``ratio`` (bwd/fwd speed).
        """
        for name, value in (("forward_speed", fwd_speed), ("backward_speed", bwd_speed),
                            ("forward_time_per_line", fwd_time),
                            ("backward_time_per_line", bwd_time), ("speed_ratio", ratio)):
            _check_finite(value, name)
        if keep not in (0, 1, 2):
            raise ValueError(f"keep_constant {keep} must be 0, 1 or 2")
        if not 0.01 <= ratio <= 100:
            raise ValueError(f"speed_ratio {ratio} must be in [0.01, 100]")
        with self._lock:
            self._update()
            keep_speed = self.keep_speed if keep == 0 else keep == 1
            width = self.frame[2]
            if keep_speed:
                if not fwd_speed > 0:
                    raise ValueError(f"forward_speed {fwd_speed} m/s must be positive")
                new_time = width / fwd_speed
            else:
                new_time = fwd_time
            if not 1e-3 <= new_time <= 100:
                raise ValueError(f"forward time per line {new_time} s must be in [1 ms, 100 s]")
            self.fwd_time, self.speed_ratio, self.keep_speed = float(new_time), float(ratio), keep_speed

    def set_props(self, continuous: int, bouncy: int, autosave: int, series_name: str,
                  comment: str, modules: Sequence[str], autopaste: int) -> None:
        """Scan properties; 0 leaves a setting unchanged."""
        if continuous not in (0, 1, 2) or bouncy not in (0, 1, 2):
            raise ValueError("continuous and bouncy must be 0, 1 or 2")
        if autosave not in (0, 1, 2, 3):
            raise ValueError(f"autosave {autosave} must be 0..3")
        if autopaste not in (0, 1, 2, 3):
            raise ValueError(f"autopaste {autopaste} must be 0..3")
        with self._lock:
            self._update()
            if continuous:
                self.continuous = continuous == 1
            if bouncy:
                self.bouncy = bouncy == 1
            if autosave:
                self.autosave = autosave
            if autopaste:
                self.autopaste = autopaste
            if series_name:
                self.series_name = series_name
            self.comment = comment
            self.modules = tuple(modules)

    def xy_position(self) -> tuple[float, float]:
        """Tip position (m, sample coordinates of the piezo): on the scan line while scanning."""
        with self._lock:
            self._update()
            scan = self._scan
            if scan is None or self._scan_state == "idle" or scan.complete:
                return self.tip_x, self.tip_y
            g = scan.geometry
            line = min(int(scan.elapsed // scan.line_period), g.lines - 1)
            into = scan.elapsed - line * scan.line_period
            frac = into / scan.fwd_time if into < scan.fwd_time else 1 - (into - scan.fwd_time) / scan.bwd_time
            xf = (min(max(frac, 0.0), 1.0) - 0.5) * g.width
            yf = g.y_setpoints()[scan.row_of(line)] - g.centre_y
            x, y = g.to_sample(np.array(xf), np.array(yf))
            return float(x), float(y)

    def move_tip(self, x: float, y: float, wait: bool = True) -> None:
        """Follow-Me move to ``(x, y)`` (m) at 100 nm/s simulated; not while scanning."""
        _check_finite(x, "x")
        _check_finite(y, "y")
        if max(abs(x), abs(y)) > 2e-6:
            raise ValueError(f"position ({x}, {y}) m is outside the ±2 µm scan range")
        with self._lock:
            self._update()
            if self._scan_state != "idle":
                raise ValueError("cannot move the tip while a scan is in progress")
            distance = math.hypot(x - self.tip_x, y - self.tip_y)
            self.tip_x, self.tip_y = float(x), float(y)
        if wait:
            self._sleep_sim(distance / FOLME_SPEED)

    # ------------------------------------------------------------------ tip shaper / motor
    def get_tip_shaper(self) -> dict[str, float]:
        with self._lock:
            return dict(self.tip_shaper)

    def set_tip_shaper(self, **props: float) -> None:
        """Tip-shaper properties (names as in the protocol table; SI units)."""
        unknown = set(props) - set(self.tip_shaper)
        if unknown:
            raise ValueError(f"unknown tip-shaper properties {sorted(unknown)}")
        for name, value in props.items():
            _check_finite(value, name)
        for name in ("change_bias", "restore_feedback"):
            if name in props and props[name] not in (0, 1, 2):
                raise ValueError(f"tip shaper {name} {props[name]} must be 0, 1 or 2")
        for name in ("switch_off_delay", "lift_time_1", "bias_settling_time", "lift_time_2",
                     "end_wait_time"):
            if name in props and not 0 <= props[name] <= 60:
                raise ValueError(f"tip shaper {name} {props[name]} s must be in [0, 60] s")
        for name in ("tip_lift", "lift_height"):
            if name in props and abs(props[name]) > 100e-9:
                raise ValueError(f"tip shaper {name} {props[name]} m exceeds ±100 nm")
        with self._lock:
            self.tip_shaper.update({k: int(v) if k in ("change_bias", "restore_feedback")
                                    else float(v) for k, v in props.items()})

    def tip_shaper_start(self, wait: bool = True, timeout_ms: int = -1) -> TipState:
        """Run the tip shaper: feedback off, move by ``tip_lift`` (indenting past contact),
        apply ``bias_lift``, retract by ``lift_height``, restore. Changes the tip through
        the dynamics; blocks the procedure's simulated duration when ``wait``.
        """
        with self._lock:
            self._update()
            if not self._approached():
                raise ValueError("TipShaper.Start needs the tip in tunnelling range (approach first)")
            p = self.tip_shaper
            z0 = self._tunnel_z() if self.feedback else self.z
            target = z0 + p["tip_lift"]
            depth = self._contact_z() - target
            new = self.dynamics.state
            if depth > 0:
                new = self._apply_action(lambda: self.dynamics.indent(min(depth, MAX_INDENT)))
            if abs(p["bias_lift"]) >= 1.5:
                width = max(p["bias_settling_time"] + p["lift_time_2"], 1e-3)
                new = self._apply_action(lambda: self.dynamics.pulse(p["bias_lift"], width))
            if p["change_bias"] == 1:
                self.bias = p["bias"]
            restore = p["restore_feedback"] == 1 or (p["restore_feedback"] == 0 and self.feedback)
            self.feedback = restore
            self.z = self._tunnel_z() if restore else z0 + p["tip_lift"] + p["lift_height"]
            duration = sum(p[k] for k in ("switch_off_delay", "lift_time_1", "bias_settling_time",
                                          "lift_time_2", "end_wait_time"))
        if wait:
            limit = duration if timeout_ms < 0 else min(duration, timeout_ms / 1000.0)
            self._sleep_sim(limit)
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
        with self._lock:
            self._update()
            if steps == 0:
                return
            if direction < 4:
                if self._scan_state != "idle":
                    raise ValueError("cannot move the coarse motor while a scan is in progress")
                distance = steps * STEP_XY
                dx, dy = [(distance, 0), (-distance, 0), (0, distance), (0, -distance)][direction]
                self.coarse_x += dx
                self.coarse_y += dy
                self.dynamics.move(distance)
                if self.feedback and self._approached():
                    self.z = self._tunnel_z()
            elif direction == 4:
                self.coarse_gap += steps * STEP_Z
                self.withdrawn = True
                self.feedback = False
                self.z = Z_LIMIT
            else:
                travel = steps * STEP_Z
                if self._approached():
                    room = Z_LIMIT - (self._tunnel_z() if self.feedback else self.z)
                    excess = travel - room
                else:
                    excess = travel - self.coarse_gap - (Z_LIMIT - (-Z_LIMIT))
                    self.coarse_gap = max(0.0, self.coarse_gap - travel)
                if excess > 0:
                    self._apply_action(lambda: self.dynamics.indent(min(excess, MAX_INDENT)))
                    self.coarse_gap = 0.0
        if wait:
            self._sleep_sim(steps * STEP_TIME)

    # ------------------------------------------------------------------ signals & truth
    def signal_value(self, index: int) -> float:
        """Value of signal ``index`` (SI units)."""
        if not 0 <= index < len(SIGNAL_NAMES):
            raise ValueError(f"signal index {index} is not in 0..{len(SIGNAL_NAMES) - 1}")
        if index == CURRENT:
            return self.get_current()
        if index == Z:
            return self.get_z()
        if index in (X, Y):
            return self.xy_position()[index - X]
        with self._lock:
            self._update()
            if index == BIAS:
                return self.bias
            if index == SETPOINT:
                return self.setpoint
            return 1e-4 * float(self._rng.standard_normal())

    def ground_truth(self) -> GroundTruth:
        """The current tip and the current/last frame's label and tip-change lines."""
        with self._lock:
            self._update()
            scan = self._scan
            return GroundTruth(
                tip_label=self.dynamics.state.label,
                tip=self.dynamics.state,
                frame_label=None if scan is None else scan.label,
                tip_change_lines=None if scan is None else scan.tip_change_lines,
                frame_complete=scan is not None and scan.complete,
                frames_completed=self._frames_completed,
            )


def _check_finite(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
