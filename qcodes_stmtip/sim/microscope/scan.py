"""The scan: frames started from the settings, their progress in simulated time, the tip position.

:class:`Scanner` runs the scan state machine (idle, running, paused) over one
:class:`~qcodes_stmtip.sim.microscope.state.Frame` at a time. A frame takes
``lines × (forward + backward time per line)`` simulated seconds; as time passes
(:meth:`Scanner.advance`), the tip dynamics are drawn line by line, and a spontaneous
change (or one reported by the Z controller, :meth:`Scanner.record_tip_change`, or one
scheduled at a chosen or random line, :meth:`Scanner.schedule_tip_change`) re-renders
the frame from that line on, keeping the lines already acquired. A completed frame gets a
file path (autosave); continuous scanning starts the next one, frames that ended unobserved
are skipped without rendering. The tip position follows the scan line while scanning.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.microscope.channels import channel_data, mask_unacquired, render
from qcodes_stmtip.sim.microscope.state import (
    FOLME_SPEED,
    SLOT_NAMES,
    Frame,
    ScanSettings,
    SimClock,
    check_finite,
)
from qcodes_stmtip.sim.microscope.zcontrol import ZController
from qcodes_stmtip.sim.tips import TipState

if TYPE_CHECKING:
    from qcodes_stmtip.sim.dynamics import TipDynamics


class Scanner:
    """The frame being (or last) acquired, the scan state machine and the tip's lateral position."""

    def __init__(self, clock: SimClock, settings: ScanSettings, zctrl: ZController,
                 dynamics: TipDynamics, rng: np.random.Generator, surface: str,
                 sample_seed: int, schedule_rng: np.random.Generator | None = None) -> None:
        self.clock = clock
        self.settings = settings
        self.zctrl = zctrl
        self.dynamics = dynamics
        self.rng = rng  # frame seeds (shared with the Z controller's measurement noise)
        self.surface = surface
        self.sample_seed = sample_seed
        self.tip_x, self.tip_y = 0.0, 0.0
        self.scan: Frame | None = None
        self.state = "idle"  # idle, running, paused
        self.frozen = False
        self.frames_completed = 0
        self.file_counter = 0
        self.last_path = ""
        #: Scheduled tip changes not yet given to a frame: ``(line or None, tip)``, oldest first.
        self.scheduled: list[tuple[int | None, TipState | str | None]] = []
        # random lines of scheduled changes (its own stream: the frame seeds stay as they were)
        self.schedule_rng = schedule_rng if schedule_rng is not None else np.random.default_rng(
            [sample_seed, 14])

    # ------------------------------------------------------------------ time passing
    def advance(self, dt: float) -> None:
        """Let ``dt`` simulated seconds pass (from ``clock.t``; call with the lock held)."""
        scan = self.scan
        if scan is not None and self.state == "running" and not scan.complete:
            self._advance_scan(scan, dt)
        else:
            self._evolve_idle(dt)

    def _evolve_idle(self, dt: float) -> None:
        if dt > 0 and not self.zctrl.withdrawn:
            self.dynamics.evolve(dt)

    def _advance_scan(self, scan: Frame, dt: float) -> None:
        remaining = scan.duration - scan.elapsed
        step = min(dt, remaining)
        scan.elapsed += step
        # Tip dynamics for every line completed in this step.
        done_lines = min(scan.geometry.lines, int(scan.elapsed / scan.line_period + 1e-9))
        while scan.lines_evolved < done_lines:
            new = self.dynamics.evolve(scan.line_period)
            scan.lines_evolved += 1
            if scan.scheduled is not None and scan.scheduled[0] == scan.lines_evolved:
                new = self.dynamics.change_to(scan.scheduled[1])
            if new is not None and scan.lines_evolved < scan.geometry.lines:
                self._tip_change(scan, scan.lines_evolved, new)
        if scan.elapsed >= scan.duration - 1e-12:
            self._complete_frame(scan)
            leftover = dt - step
            s = self.settings
            if s.continuous and self.state == "running":
                up = (not scan.up) if s.bouncy else scan.up
                # Skip whole frames that ended unobserved: only the last is rendered.
                n_skip = int(leftover // scan.duration) if scan.duration > 0 else 0
                if n_skip:
                    self._evolve_idle(n_skip * scan.duration)
                    self.frames_completed += n_skip
                    leftover -= n_skip * scan.duration
                    if s.bouncy and n_skip % 2:
                        up = not up
                self._start(up, self.clock.t + dt - leftover)
                if self.scan is None:  # pragma: no cover - _start always sets it
                    raise RuntimeError("the next continuous frame did not start")
                self._advance_scan(self.scan, leftover)
            else:
                self.state = "idle"
                self._evolve_idle(leftover)

    def _complete_frame(self, scan: Frame) -> None:
        scan.complete = True
        self.frames_completed += 1
        s = self.settings
        if s.autosave in (1, 2):
            self.file_counter += 1
            scan.path = f"C:/Users/simulated/Data/{s.series_name}{self.file_counter:05d}.sxm"
            if s.autosave == 2:
                s.autosave = 3
        self.last_path = scan.path
        self.clock.changed.notify_all()

    def save(self) -> str:
        """Save the scan buffer (a frame in progress as far as acquired) to the next file."""
        with self.clock.lock:
            self.clock.update()
            if self.scan is None:
                raise ValueError("Scan.Save: the scan buffer is empty (no frame was scanned yet)")
            self.file_counter += 1
            path = f"C:/Users/simulated/Data/{self.settings.series_name}{self.file_counter:05d}.sxm"
            self.last_path = path
            return path

    # ------------------------------------------------------------------ tip changes
    def busy(self) -> bool:
        """Whether a frame is in progress (running or paused; call with the lock held)."""
        return self.state != "idle"

    def pause_for_safe_tip(self) -> None:
        if self.state == "running":
            self.state = "paused"

    def record_tip_change(self, new: TipState) -> None:
        """The tip changed now: the running frame shows ``new`` from the next line on."""
        scan = self.scan
        line = None
        if scan is not None and self.state != "idle" and not scan.complete:
            line = min(scan.geometry.lines, int(scan.elapsed / scan.line_period) + 1)
        self._tip_change(scan, line, new)

    def schedule_tip_change(self, line: int | None = None, tip: TipState | str | None = None) -> None:
        """Change the tip at acquisition ``line`` of a frame (see
        :meth:`~qcodes_stmtip.sim.microscope.SimulatedMicroscope.schedule_tip_change`)."""
        if line is not None and (isinstance(line, bool) or not isinstance(line, int | np.integer)
                                 or line < 1):
            raise ValueError(f"line must be an integer >= 1 or None (random), got {line!r}")
        if isinstance(tip, str) and tip not in self.dynamics.ladder:
            raise ValueError(f"tip={tip!r} is not a tip state of {self.surface!r}; "
                             f"expected one of {self.dynamics.ladder}")
        if tip is not None and not isinstance(tip, str | TipState):
            raise ValueError(f"tip must be a TipState, a label or None, got {type(tip).__name__}")
        with self.clock.lock:
            self.clock.update()
            scan = self.scan
            running = scan is not None and self.state != "idle" and not scan.complete
            if running and not self.scheduled and scan.scheduled is None and (  # type: ignore[union-attr]
                    line is None or scan.lines_evolved < line < scan.geometry.lines):  # type: ignore[union-attr]
                self._assign(scan, line, tip)  # type: ignore[arg-type]
            else:
                self.scheduled.append((None if line is None else int(line), tip))

    def _assign(self, scan: Frame, line: int | None, tip: TipState | str | None) -> None:
        """Give ``scan`` a scheduled change; a random line lies in the middle three quarters of
        the lines not yet acquired; a line past the frame's end becomes its last line."""
        lines = scan.geometry.lines
        if line is None:
            lo = max(scan.lines_evolved + 1, lines // 8, 1)
            hi = max(lo + 1, lines - lines // 8)
            line = int(self.schedule_rng.integers(lo, hi))
        scan.scheduled = (min(max(int(line), scan.lines_evolved + 1, 1), lines - 1), tip)

    def _tip_change(self, scan: Frame | None, line: int | None, new: TipState) -> None:
        """Record a tip change at acquisition ``line`` of a running frame and re-render."""
        self.zctrl.follow_tip()
        if scan is None or line is None or scan.complete or line >= scan.geometry.lines:
            return
        scan.tip_changes = [c for c in scan.tip_changes if c[0] < line] + [(line, new)]
        old_f, old_b = scan.forward, scan.backward
        render(scan, self.surface, self.sample_seed)
        keep = [scan.row_of(a) for a in range(line)]
        if keep and old_f is not None and old_b is not None:
            if scan.forward is None or scan.backward is None:  # pragma: no cover - render sets both
                raise RuntimeError("re-rendering the frame after a tip change left no data")
            scan.forward[keep] = old_f[keep]
            scan.backward[keep] = old_b[keep]

    # ------------------------------------------------------------------ starting frames
    def _new_frame(self, up: bool, t0: float) -> Frame:
        """A frame from the current settings, not rendered yet (call with the lock held)."""
        s, z = self.settings, self.zctrl
        cx, cy, w, h, angle = s.frame
        geometry = ScanGeometry(w, h, s.pixels, s.lines, cx, cy, angle)
        return Frame(
            geometry=geometry, up=up, fwd_time=s.fwd_time,
            bwd_time=s.fwd_time / s.speed_ratio, seed=int(self.rng.integers(1 << 62)),
            start_tip=self.dynamics.state, t0=max(0.0, t0 - s.frame_moved_t),
            feedback=z.feedback and z.approached(), z_hold=z.z, setpoint=z.setpoint, bias=z.bias,
            channels=s.channels, coarse=(z.coarse_x, z.coarse_y),
        )

    def _install(self, scan: Frame) -> None:
        """Make a rendered frame the running one (call with the lock held)."""
        self.scan = scan
        self.state = "running"
        self.frozen = False
        if self.scheduled and scan.scheduled is None and scan.geometry.lines >= 2:
            self._assign(scan, *self.scheduled.pop(0))

    def _start(self, up: bool, t0: float) -> None:
        """Start a frame now, rendering it under the lock (continuous scanning)."""
        scan = self._new_frame(up, t0)
        render(scan, self.surface, self.sample_seed)
        self._install(scan)

    def _start_unlocked(self, up: bool) -> None:
        """Start a frame, rendering it with the lock released (``Scan.Action`` start).

        If the tip or the sample offset changed while rendering, the frame is rendered
        again from the new state (twice at most, then under the lock). Rendering takes
        no scan time.
        """
        clock = self.clock
        for _ in range(3):
            with clock.lock:
                clock.update()
                scan = self._new_frame(up, clock.t)
                tip = self.dynamics.state
            render(scan, self.surface, self.sample_seed)  # touches only ``scan`` and immutable settings
            with clock.lock:
                if self.dynamics.state is tip and scan.coarse == (self.zctrl.coarse_x,
                                                                   self.zctrl.coarse_y):
                    self._install(scan)
                    clock.t = max(clock.t, clock.now())
                    return
        with clock.lock:
            clock.update()
            self._start(up, clock.t)
            clock.t = max(clock.t, clock.now())

    # ------------------------------------------------------------------ scan commands
    def scan_action(self, action: int, up: bool) -> None:
        """0 start, 1 stop, 2 pause, 3 resume, 4 freeze, 5 unfreeze, 6 go to centre."""
        if action not in range(7):
            raise ValueError(f"scan action {action} must be 0..6")
        if action == 0:
            self._start_unlocked(bool(up))  # rendering takes no scan time
            return
        with self.clock.lock:
            self.clock.update()
            if action == 1:
                if self.state != "idle":
                    self.state = "idle"
                    self.clock.changed.notify_all()
            elif action in (2, 4):
                if self.state == "running":
                    self.state = "paused"
                    self.frozen = action == 4
            elif action in (3, 5):
                if self.state == "paused":
                    self.state = "running"
                    self.frozen = False
            else:
                cx, cy = self.settings.frame[:2]
                self.tip_x, self.tip_y = cx, cy

    def scan_running(self) -> bool:
        """Whether a frame is in progress (running or paused)."""
        with self.clock.lock:
            self.clock.update()
            return self.state != "idle"

    def wait_end_of_scan(self, timeout_ms: int) -> tuple[bool, str]:
        """Block until the running (or paused) frame completes or ``timeout_ms`` passes.

        Returns ``(timed_out, path)``; with no scan in progress it returns at once with
        the last frame's path. ``timeout_ms`` = -1 waits forever.
        """
        if timeout_ms < -1:
            raise ValueError(f"timeout_ms {timeout_ms} must be -1 (forever) or ≥ 0")
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0
        clock = self.clock
        with clock.changed:
            clock.update()
            scan = self.scan
            if scan is None or self.state == "idle":
                return False, self.last_path
            while True:
                clock.update()
                if scan.complete:
                    return False, scan.path
                if self.scan is not scan or self.state == "idle":  # stopped or restarted
                    return False, ""
                remaining_wall = (scan.duration - scan.elapsed) / clock.time_acceleration
                if self.state == "paused":
                    remaining_wall = 0.05
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return True, ""
                    remaining_wall = min(remaining_wall, left)
                clock.changed.wait(max(min(remaining_wall, 0.25), 1e-4))

    def frame_data(self, channel: int, forward: bool) -> tuple[str, np.ndarray, bool]:
        """Channel data of the current/last frame: ``(name, float32 (lines, pixels), scan_up)``.

        Rows not yet acquired (and the unacquired part of the current line) are NaN.
        """
        with self.clock.lock:
            self.clock.update()
            scan = self.scan
            s = self.settings
            if channel not in s.channels and (scan is None or channel not in scan.channels):
                raise ValueError(f"channel {channel} is not in the scan buffer {s.channels}")
            if scan is None:
                return SLOT_NAMES[channel], np.full((s.lines, s.pixels), np.nan,
                                                    np.float32), True
            if channel not in scan.channels:
                raise ValueError(f"channel {channel} was not recorded in the last frame {scan.channels}")
            data = channel_data(scan, channel, forward)
            return SLOT_NAMES[channel], mask_unacquired(scan, data, forward), scan.up

    # ------------------------------------------------------------------ tip position
    def xy_position(self) -> tuple[float, float]:
        """Tip position (m, sample coordinates of the piezo): on the scan line while scanning."""
        with self.clock.lock:
            self.clock.update()
            scan = self.scan
            if scan is None or self.state == "idle" or scan.complete:
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
        check_finite(x, "x")
        check_finite(y, "y")
        if max(abs(x), abs(y)) > 2e-6:
            raise ValueError(f"position ({x}, {y}) m is outside the ±2 µm scan range")
        with self.clock.lock:
            self.clock.update()
            if self.state != "idle":
                raise ValueError("cannot move the tip while a scan is in progress")
            distance = math.hypot(x - self.tip_x, y - self.tip_y)
            self.tip_x, self.tip_y = float(x), float(y)
        if wait:
            self.clock.sleep(distance / FOLME_SPEED)
