"""What the simulated microscope's parts share: constants, records, the clock, the settings.

* the controller's constants (signal indexes, piezo range, coarse steps, Z-controller
  statuses) and :class:`GroundTruth`, what the simulation knows and a microscope would not;
* :class:`Frame`, the record of the frame being (or last) acquired;
* :class:`SimClock`: simulated time, the one lock every public call holds, and the lazy
  update that advances the simulation to now;
* :class:`ScanSettings`: frame, buffer, speed and properties (``Scan.*Set``), which apply
  to the next frame started.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.tips import TipState

#: The 128 signals of the controller, served by ``Signals.NamesGet``: index ``i`` (0–127)
#: names signal ``i`` of ``Signals.ValGet``/``ValsGet`` and of the lock-in's signal
#: selections. Like a real controller: physical inputs and outputs (output 1 is the
#: bias), the positions, internal channels and many unused "Internal" slots.
SIGNAL_NAMES: tuple[str, ...] = (
    ("Current (A)",) + tuple(f"Input {i} (V)" for i in range(2, 9))
    + ("Bias (V)",) + tuple(f"Output {i} (V)" for i in range(2, 9))
    + ("X (m)", "Y (m)", "Z (m)", "Setpoint (A)", "Phase (deg)", "Amplitude (m)",
       "Frequency Shift (Hz)", "Excitation (V)", "LI Demod 1 X (A)", "LI Demod 1 Y (A)",
       "LI Demod 2 X (A)", "LI Demod 2 Y (A)")
    + tuple(f"Internal {i} (V)" for i in range(1, 101))
)
#: Signal indexes (0–127) of the signals the simulator models.
SIG_CURRENT, SIG_BIAS, SIG_X, SIG_Y, SIG_Z, SIG_SETPOINT, SIG_LI_X, SIG_LI_Y = (
    0, 8, 16, 17, 18, 19, 24, 25)
#: The 24 signal slots of the Signals Manager: slot ``i`` holds signal ``SLOT_SIGNALS[i]``.
#: Scan-buffer and bias-spectroscopy *channel* indexes are slot indexes (0–23), as on a
#: real controller; the slot order keeps Current at 0 and Z at 14.
SLOT_SIGNALS: tuple[int, ...] = (
    SIG_CURRENT, SIG_BIAS, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, SIG_SETPOINT, SIG_Z, SIG_X,
    SIG_Y, 20, 21, 22, 23, SIG_LI_X, SIG_LI_Y, 13)
#: Names of the 24 slots (``SIGNAL_NAMES[SLOT_SIGNALS[i]]``).
SLOT_NAMES: tuple[str, ...] = tuple(SIGNAL_NAMES[i] for i in SLOT_SIGNALS)
#: Slot (channel) indexes of the modelled signals.
CURRENT, BIAS, SETPOINT, Z, X, Y, LI_X, LI_Y = 0, 1, 13, 14, 15, 16, 21, 22

#: Z-controller gains of ``ZCtrl.GainGet``: P gain (m) and time constant (s).
Z_P_GAIN, Z_TIME_CONSTANT = 5e-12, 1e-3
#: The current preamplifier of ``Current.GainsGet``: gains, filters, the selected ones.
CURRENT_GAINS: tuple[str, ...] = ("LN 10^7", "LN 10^8", "LN 10^9", "HS 10^8", "HS 10^9", "HS 10^10")
CURRENT_GAIN_INDEX = 4
CURRENT_FILTERS: tuple[str, ...] = ("Off", "300 Hz", "1 kHz", "3 kHz", "10 kHz")
CURRENT_FILTER_INDEX = 0

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
    ``tip_change_lines`` are acquisition-order line indexes (spontaneous, action-caused and
    scheduled changes alike: the apex differs from that line on); both are ``None`` before
    the first scan. ``frame_start_label``: the class of the apex the frame started with;
    ``lines_acquired``: lines of the frame completed so far (all of them once complete;
    a stopped frame keeps its count); ``scheduled_tip_change_line``: the line of the
    frame's scheduled change (:meth:`SimulatedMicroscope.schedule_tip_change`), if any.
    """

    tip_label: str
    tip: TipState
    frame_label: str | None
    tip_change_lines: tuple[int, ...] | None
    frame_complete: bool
    frames_completed: int
    frame_start_label: str | None = None
    lines_acquired: int | None = None
    scheduled_tip_change_line: int | None = None


@dataclass
class Frame:
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
    scheduled: tuple[int, TipState | str | None] | None = None  # (line, tip) to change to there
    complete: bool = False
    path: str = ""

    @property
    def line_period(self) -> float:
        return self.fwd_time + self.bwd_time

    @property
    def duration(self) -> float:
        return self.geometry.lines * self.line_period

    @property
    def lines_acquired(self) -> int:
        """Lines completed so far (all of them once the frame is complete)."""
        if self.complete:
            return self.geometry.lines
        return min(self.geometry.lines, int(self.elapsed / self.line_period + 1e-9))

    def row_of(self, acquisition_line: int) -> int:
        return acquisition_line if self.up else self.geometry.lines - 1 - acquisition_line


class SimClock:
    """Simulated seconds (``time_acceleration`` × wall seconds since creation) and the lock.

    ``t`` is the simulated time the simulation has been advanced to; :meth:`update`
    advances it to now by calling ``advance(now)`` (wired by the microscope) first.
    Every public call of a part holds ``lock`` and calls :meth:`update` before it reads
    or changes state.
    """

    def __init__(self, clock: Callable[[], float], time_acceleration: float) -> None:
        self.clock = clock
        self.time_acceleration = time_acceleration
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.wall0 = clock()
        self.t = 0.0  # simulated time of the last update
        self.advance: Callable[[float], None] = lambda now: None

    def now(self) -> float:
        return (self.clock() - self.wall0) * self.time_acceleration

    def update(self) -> None:
        """Advance the simulation to now (call with the lock held)."""
        now = self.now()
        if now <= self.t:
            return
        self.advance(now)
        self.t = now

    def sleep(self, seconds: float) -> None:
        """Block the caller for ``seconds`` of simulated time (lock released)."""
        if seconds > 0:
            with self.changed:
                self.changed.wait_for(lambda: False, timeout=seconds / self.time_acceleration)


class ScanSettings:
    """Scan frame, buffer, speed and properties; they apply to the next frame started."""

    def __init__(self, clock: SimClock, surface: str, max_frame_values: int) -> None:
        self.clock = clock
        self.max_frame_values = max_frame_values
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
        self.frame_moved_t = 0.0  # simulated time of the last FrameSet (piezo creep)

    def get_frame(self) -> tuple[float, float, float, float, float]:
        with self.clock.lock:
            return self.frame

    def set_frame(self, cx: float, cy: float, width: float, height: float, angle: float) -> None:
        """Scan frame (m, degrees clockwise); applies to the next frame started."""
        for name, value in (("centre_x", cx), ("centre_y", cy), ("width", width),
                            ("height", height), ("angle", angle)):
            check_finite(value, name)
        if not (0 < width <= 2e-6 and 0 < height <= 2e-6):
            raise ValueError(f"frame size {width} x {height} m must be in (0, 2 µm]")
        if max(abs(cx) + width / 2, abs(cy) + height / 2) > 1e-6 + 1e-6:
            raise ValueError(f"frame centre ({cx}, {cy}) m lies outside the ±2 µm scan range")
        with self.clock.lock:
            self.clock.update()
            old_width = self.frame[2]
            self.frame = tuple(float(v) for v in (cx, cy, width, height, angle))  # type: ignore[assignment]
            self.frame_moved_t = self.clock.t
            if self.keep_speed:
                self.fwd_time = self.fwd_time * width / old_width

    def get_buffer(self) -> tuple[tuple[int, ...], int, int]:
        with self.clock.lock:
            return self.channels, self.pixels, self.lines

    def set_buffer(self, channels: Sequence[int], pixels: int, lines: int) -> None:
        """Recorded signal slots (channel indexes 0–23) and resolution (pixels a multiple of 16, 16..4096; lines
        2..4096; pixels × lines ≤ ``max_frame_values``)."""
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("the scan buffer needs at least one channel")
        bad = [c for c in channels if not 0 <= c < len(SLOT_SIGNALS)]
        if bad:
            raise ValueError(f"channel indexes {bad} are not signal slots 0..{len(SLOT_SIGNALS) - 1}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"channel indexes {channels} contain duplicates")
        if not (16 <= pixels <= 4096 and pixels % 16 == 0):
            raise ValueError(f"pixels {pixels} must be a multiple of 16 in 16..4096")
        if not 2 <= lines <= 4096:
            raise ValueError(f"lines {lines} must be in 2..4096")
        if pixels * lines > self.max_frame_values:
            raise ValueError(f"scan buffer {pixels} pixels x {lines} lines exceeds the simulator's "
                             f"limit of {self.max_frame_values} values per frame")
        with self.clock.lock:
            self.clock.update()
            self.channels, self.pixels, self.lines = channels, int(pixels), int(lines)

    def get_speed(self) -> tuple[float, float, float, float, int, float]:
        """``(fwd m/s, bwd m/s, fwd s/line, bwd s/line, keep (0 speed, 1 time), ratio)``."""
        with self.clock.lock:
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
            check_finite(value, name)
        if keep not in (0, 1, 2):
            raise ValueError(f"keep_constant {keep} must be 0, 1 or 2")
        if not 0.01 <= ratio <= 100:
            raise ValueError(f"speed_ratio {ratio} must be in [0.01, 100]")
        with self.clock.lock:
            self.clock.update()
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
        with self.clock.lock:
            self.clock.update()
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


def check_finite(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
