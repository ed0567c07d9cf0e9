"""The state of a simulated Nanonis-controlled STM (no networking).

:class:`SimulatedMicroscope` holds what the controller software would hold — bias,
Z controller, scan frame/buffer/speed/properties, the scan state machine, tip
position, coarse motor, SafeTip — and produces measurements from the physics in
:mod:`qcodes_stmtip.sim` (frames from :func:`~qcodes_stmtip.sim.frames.render_scan`,
tip changes from :class:`~qcodes_stmtip.sim.dynamics.TipDynamics`).

It is a thin composition of small parts, each readable on its own:

* :mod:`.state` — constants, the :class:`GroundTruth` and frame records, the
  :class:`~.state.SimClock` (simulated time, the lock) and the :class:`~.state.ScanSettings`;
* :mod:`.zcontrol` — :class:`~.zcontrol.ZController`: bias, Z controller, SafeTip,
  approach, coarse motor, tip shaper, and the tunnelling/contact physics;
* :mod:`.scan` — :class:`~.scan.Scanner`: the scan state machine, frame progress and line
  timing, tip changes mid-frame, the tip's lateral position;
* :mod:`.spectro` — :class:`~.spectro.Spectroscopy`: the Bias Spectroscopy module and
  the lock-in (point spectra from :mod:`qcodes_stmtip.sim.spectra`);
* :mod:`.channels` — the data generator: rendering a frame and deriving every channel.

The Z controller and the scanner share the clock, the tip dynamics and one random
stream (measurement noise and frame seeds, drawn in call order); the scanner reads the
Z controller's state when it starts a frame, and the Z controller tells the scanner of
tip changes and SafeTip trips (:class:`~.zcontrol.ScanHooks`).

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
import time
from collections.abc import Callable, Sequence

import numpy as np

from qcodes_stmtip.sim.microscope.scan import Scanner
from qcodes_stmtip.sim.microscope.spectro import Spectroscopy
from qcodes_stmtip.sim.microscope.state import (  # noqa: F401  (re-exported constants)
    APPROACH_MIN_S,
    APPROACH_S_PER_M,
    BIAS,
    CURRENT,
    CURRENT_FILTER_INDEX,
    CURRENT_FILTERS,
    CURRENT_GAIN_INDEX,
    CURRENT_GAINS,
    FOLME_SPEED,
    G0,
    MAX_FRAME_VALUES,
    MAX_INDENT,
    SETPOINT,
    SIG_BIAS,
    SIG_CURRENT,
    SIG_LI_X,
    SIG_LI_Y,
    SIG_SETPOINT,
    SIG_X,
    SIG_Y,
    SIG_Z,
    SIGNAL_NAMES,
    SLOT_NAMES,
    SLOT_SIGNALS,
    STEP_TIME,
    STEP_XY,
    STEP_Z,
    WITHDRAW_S,
    Z_LIMIT,
    Z_P_GAIN,
    Z_TIME_CONSTANT,
    ZSTATUS_HOLD,
    ZSTATUS_OFF,
    ZSTATUS_ON,
    ZSTATUS_SAFETIP,
    ZSTATUS_SWITCHING_OFF,
    ZSTATUS_WITHDRAWING,
    Frame,
    GroundTruth,
    ScanSettings,
    SimClock,
    X,
    Y,
    Z,
)
from qcodes_stmtip.sim.microscope.zcontrol import ZController
from qcodes_stmtip.sim.physics import KAPPA  # noqa: F401  (1/m, for callers of microscope.KAPPA)
from qcodes_stmtip.sim.tips import TipState
from qcodes_stmtip.taxonomy import check_label, check_surface

__all__ = ["GroundTruth", "SimulatedMicroscope", "SIGNAL_NAMES", "SLOT_NAMES", "SLOT_SIGNALS"]


def _forward(part: str, name: str) -> property:
    """An attribute of the microscope that is ``name`` of one of its parts (read and write)."""
    def get(self: SimulatedMicroscope) -> object:
        return getattr(getattr(self, part), name)

    def set_(self: SimulatedMicroscope, value: object) -> None:
        setattr(getattr(self, part), name, value)

    return property(get, set_, doc=f"``{part}.{name}``")


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

    Parts: ``clock`` (:class:`~.state.SimClock`), ``settings``
    (:class:`~.state.ScanSettings`), ``zctrl`` (:class:`~.zcontrol.ZController`),
    ``scanner`` (:class:`~.scan.Scanner`), ``dynamics`` (the tip). Their state is also
    reachable under the names it had before the split (``bias``, ``frame``, ``tip_x`` …).
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
        self.surface = surface
        self.seed = int(seed)
        seeds = np.random.SeedSequence(self.seed).spawn(3)
        self._rng = np.random.default_rng(seeds[0])  # measurement noise, frame seeds
        # spontaneous changes draw from their own stream: what an action does to the tip does not
        # depend on how many lines were scanned or how often the microscope was polled before it
        time_seed = np.random.SeedSequence(self.seed).spawn(4)[3]
        self.dynamics = TipDynamics(surface, np.random.default_rng(seeds[1]), initial_tip,
                                    time_rng=np.random.default_rng(time_seed))
        self.clock = SimClock(clock, float(time_acceleration))
        self.settings = ScanSettings(self.clock, surface, max_frame_values)
        self.zctrl = ZController(self.clock, self.dynamics, self._rng, surface)
        self.scanner = Scanner(self.clock, self.settings, self.zctrl, self.dynamics, self._rng,
                               surface, self.seed, schedule_rng=np.random.default_rng([self.seed, 14]))
        self.zctrl.scan = self.scanner
        # spectra draw their noise from their own stream: taking one leaves frames unchanged
        self.spectro = Spectroscopy(self.clock, self.zctrl, self.scanner,
                                    np.random.default_rng([self.seed, 28]), surface)
        self.clock.advance = self._advance

    def _advance(self, now: float) -> None:
        """What happens as simulated time passes to ``now``: an auto-approach ends, then the
        scan runs (or, idle, the tip evolves). Called by ``clock.update()`` with the lock held."""
        if self.zctrl.approach_done(now):
            self.zctrl.finish_approach()
        self.scanner.advance(now - self.clock.t)

    # ------------------------------------------------------------------ state under its old names
    time_acceleration = _forward("clock", "time_acceleration")
    max_frame_values = _forward("settings", "max_frame_values")
    frame = _forward("settings", "frame")
    channels = _forward("settings", "channels")
    pixels = _forward("settings", "pixels")
    lines = _forward("settings", "lines")
    fwd_time = _forward("settings", "fwd_time")
    speed_ratio = _forward("settings", "speed_ratio")
    keep_speed = _forward("settings", "keep_speed")
    continuous = _forward("settings", "continuous")
    bouncy = _forward("settings", "bouncy")
    autosave = _forward("settings", "autosave")
    series_name = _forward("settings", "series_name")
    comment = _forward("settings", "comment")
    modules = _forward("settings", "modules")
    autopaste = _forward("settings", "autopaste")
    bias = _forward("zctrl", "bias")
    setpoint = _forward("zctrl", "setpoint")
    feedback = _forward("zctrl", "feedback")
    z = _forward("zctrl", "z")
    withdrawn = _forward("zctrl", "withdrawn")
    coarse_gap = _forward("zctrl", "coarse_gap")
    coarse_x = _forward("zctrl", "coarse_x")
    coarse_y = _forward("zctrl", "coarse_y")
    safe_tip_auto_recovery = _forward("zctrl", "safe_tip_auto_recovery")
    safe_tip_auto_pause = _forward("zctrl", "safe_tip_auto_pause")
    safe_tip_threshold = _forward("zctrl", "safe_tip_threshold")
    safe_tip_events = _forward("zctrl", "safe_tip_events")
    tip_shaper = _forward("zctrl", "tip_shaper")
    tip_x = _forward("scanner", "tip_x")
    tip_y = _forward("scanner", "tip_y")
    _lock = _forward("clock", "lock")
    _scan = _forward("scanner", "scan")

    def _update(self) -> None:
        """Advance the simulation to now (call with the lock held)."""
        self.clock.update()

    def _finish_approach(self) -> None:
        self.zctrl.finish_approach()

    # ------------------------------------------------------------------ time, signals, truth
    def sim_time(self) -> float:
        """Simulated seconds since the microscope was created."""
        with self.clock.lock:
            return self.clock.now()

    def signal_value(self, index: int) -> float:
        """Value of signal ``index`` (0–127 of :data:`SIGNAL_NAMES`; SI units).

        Current, bias, setpoint, X/Y/Z and the lock-in outputs are modelled; every other
        signal reads ADC noise around 0 V.
        """
        if isinstance(index, bool) or not isinstance(index, int | np.integer) \
                or not 0 <= index < len(SIGNAL_NAMES):
            raise ValueError(f"signal index {index} is not in 0..{len(SIGNAL_NAMES) - 1}")
        if index == SIG_CURRENT:
            return self.get_current()
        if index == SIG_Z:
            return self.get_z()
        if index in (SIG_X, SIG_Y):
            return self.xy_position()[index - SIG_X]
        if index in (SIG_LI_X, SIG_LI_Y):
            return self.spectro.lockin_value(index == SIG_LI_X)
        with self.clock.lock:
            self.clock.update()
            if index == SIG_BIAS:
                return self.zctrl.bias
            if index == SIG_SETPOINT:
                return self.zctrl.setpoint
            return 1e-4 * float(self._rng.standard_normal())

    def signal_values(self, indexes: Sequence[int]) -> tuple[float, ...]:
        """Values of several signals (``Signals.ValsGet``), in the order asked."""
        if len(indexes) == 0:
            raise ValueError("Signals.ValsGet needs at least one signal index")
        return tuple(self.signal_value(i) for i in indexes)

    def ground_truth(self) -> GroundTruth:
        """The current tip and the current/last frame's label and tip-change lines."""
        with self.clock.lock:
            self.clock.update()
            scan = self.scanner.scan
            return GroundTruth(
                tip_label=self.dynamics.state.label,
                tip=self.dynamics.state,
                frame_label=None if scan is None else scan.label,
                tip_change_lines=None if scan is None else scan.tip_change_lines,
                frame_complete=scan is not None and scan.complete,
                frames_completed=self.scanner.frames_completed,
                frame_start_label=None if scan is None else scan.start_tip.label,
                lines_acquired=None if scan is None else scan.lines_acquired,
                scheduled_tip_change_line=None if scan is None or scan.scheduled is None
                else scan.scheduled[0],
            )

    # ------------------------------------------------------------------ Z controller (zctrl)
    def get_bias(self) -> float:
        return self.zctrl.get_bias()

    def set_bias(self, volts: float) -> None:
        self.zctrl.set_bias(volts)

    def bias_pulse(self, *, amplitude_V: float, width_s: float, wait: bool = True, z_hold: int = 0,
                   absolute: int = 0) -> TipState:
        """Apply a bias pulse, keyword arguments only (:meth:`ZController.bias_pulse`)."""
        return self.zctrl.bias_pulse(amplitude_V=amplitude_V, width_s=width_s, wait=wait,
                                     z_hold=z_hold, absolute=absolute)

    def get_current(self) -> float:
        return self.zctrl.get_current()

    def get_setpoint(self) -> float:
        return self.zctrl.get_setpoint()

    def set_setpoint(self, amperes: float) -> None:
        self.zctrl.set_setpoint(amperes)

    def get_feedback(self) -> bool:
        return self.zctrl.get_feedback()

    def set_feedback(self, on: bool) -> None:
        self.zctrl.set_feedback(on)

    def get_z(self) -> float:
        return self.zctrl.get_z()

    def set_z(self, z: float) -> None:
        self.zctrl.set_z(z)

    def z_status(self) -> int:
        return self.zctrl.z_status()

    def withdraw(self, wait: bool = True, timeout_ms: int = -1) -> None:
        self.zctrl.withdraw(wait, timeout_ms)

    def home(self) -> None:
        self.zctrl.home()

    def set_safe_tip(self, auto_recovery: int, auto_pause: int, threshold: float) -> None:
        self.zctrl.set_safe_tip(auto_recovery, auto_pause, threshold)

    def get_safe_tip(self) -> tuple[int, int, float]:
        return self.zctrl.get_safe_tip()

    def set_approach(self, on: bool) -> None:
        self.zctrl.set_approach(on)

    def get_approach(self) -> bool:
        return self.zctrl.get_approach()

    def get_tip_shaper(self) -> dict[str, float]:
        return self.zctrl.get_tip_shaper()

    def set_tip_shaper(self, **props: float) -> None:
        self.zctrl.set_tip_shaper(**props)

    def tip_shaper_start(self, wait: bool = True, timeout_ms: int = -1) -> TipState:
        return self.zctrl.tip_shaper_start(wait, timeout_ms)

    def motor_move(self, direction: int, steps: int, group: int = 0, wait: bool = True) -> None:
        self.zctrl.motor_move(direction, steps, group, wait)

    def get_z_gains(self) -> tuple[float, float, float]:
        """``ZCtrl.GainGet``: P gain (m), time constant (s), I gain = P/T (m/s)."""
        return Z_P_GAIN, Z_TIME_CONSTANT, Z_P_GAIN / Z_TIME_CONSTANT

    def get_z_limits(self) -> tuple[float, float]:
        """``ZCtrl.LimitsGet``: high and low Z limits (m); the piezo range (limits not enabled)."""
        return Z_LIMIT, -Z_LIMIT

    def get_current_gains(self) -> tuple[tuple[str, ...], int, tuple[str, ...], int]:
        """``Current.GainsGet``: the preamplifier's gains, the selected one, its filters and the
        selected one."""
        return CURRENT_GAINS, CURRENT_GAIN_INDEX, CURRENT_FILTERS, CURRENT_FILTER_INDEX

    # ------------------------------------------------------------------ scan settings (settings)
    def get_frame(self) -> tuple[float, float, float, float, float]:
        return self.settings.get_frame()

    def set_frame(self, cx: float, cy: float, width: float, height: float, angle: float) -> None:
        self.settings.set_frame(cx, cy, width, height, angle)

    def get_buffer(self) -> tuple[tuple[int, ...], int, int]:
        return self.settings.get_buffer()

    def set_buffer(self, channels: Sequence[int], pixels: int, lines: int) -> None:
        self.settings.set_buffer(channels, pixels, lines)

    def get_speed(self) -> tuple[float, float, float, float, int, float]:
        return self.settings.get_speed()

    def set_speed(self, fwd_speed: float, bwd_speed: float, fwd_time: float, bwd_time: float,
                  keep: int, ratio: float) -> None:
        self.settings.set_speed(fwd_speed, bwd_speed, fwd_time, bwd_time, keep, ratio)

    def get_props(self) -> dict[str, object]:
        """``Scan.PropsGet``'s fields: continuous/bouncy 0 off, 1 on; autosave 0 all,
        1 next, 2 off; autopaste as set (1 all, 2 next, 3 off; 0 never set)."""
        s = self.settings
        with self.clock.lock:
            return {"continuous": int(s.continuous), "bouncy": int(s.bouncy),
                    "autosave": s.autosave - 1, "series_name": s.series_name,
                    "comment": s.comment, "modules": s.modules,
                    "params_per_module": (0,) * len(s.modules),
                    "parameters": tuple(() for _ in s.modules), "autopaste": s.autopaste}

    def scan_save(self) -> str:
        """``Scan.Save``: save the scan buffer to the next file of the series; returns its path."""
        return self.scanner.save()

    def set_props(self, continuous: int, bouncy: int, autosave: int, series_name: str,
                  comment: str, modules: Sequence[str], autopaste: int) -> None:
        self.settings.set_props(continuous, bouncy, autosave, series_name, comment, modules,
                                autopaste)

    # ------------------------------------------------------------------ scan (scanner)
    def scan_action(self, action: int, up: bool) -> None:
        self.scanner.scan_action(action, up)

    def scan_running(self) -> bool:
        return self.scanner.scan_running()

    def wait_end_of_scan(self, timeout_ms: int) -> tuple[bool, str]:
        return self.scanner.wait_end_of_scan(timeout_ms)

    def frame_data(self, channel: int, forward: bool) -> tuple[str, np.ndarray, bool]:
        return self.scanner.frame_data(channel, forward)

    def xy_position(self) -> tuple[float, float]:
        return self.scanner.xy_position()

    def schedule_tip_change(self, line: int | None = None, tip: TipState | str | None = None) -> None:
        """Make the tip change (or degrade) at acquisition line ``line`` of a frame.

        ``line``: lines ``0 … line−1`` keep the old apex, the rest image the new one (a
        line past the frame's end becomes its last line); ``None`` draws a random line in
        the middle three quarters of the frame (its own random stream, reproducible for a
        seed). ``tip``: a label of the surface (a fresh apex of that class), a
        :class:`TipState`, or ``None``: one rung worse on the quality ladder (a fresh apex of
        the same class for the worst). The change goes to the frame in progress if it has
        not reached ``line`` yet, else to the next frame started; several schedules go to
        successive frames, one each. The ground truth records it: the frame's
        ``tip_change_lines`` (and ``scheduled_tip_change_line``) hold the line, ``tip`` the
        new apex. For tests and benchmarks; a real microscope has no such knob.
        """
        self.scanner.schedule_tip_change(line, tip)

    def move_tip(self, x: float, y: float, wait: bool = True) -> None:
        self.scanner.move_tip(x, y, wait)
