"""Bias spectroscopy and the lock-in: the Bias Spectroscopy module and one lock-in.

:class:`Spectroscopy` holds what ``BiasSpectr.*Set`` and ``LockIn.*Set`` configure and
runs a point spectrum at the tip's position (:meth:`Spectroscopy.start`): the tip is
stabilised where it is (bias and setpoint of the Z controller), the feedback held, the
bias swept from the start to the end limit (and back with a backward sweep), the
recorded channels measured by :func:`qcodes_stmtip.sim.spectra.point_spectrum`, and at
the end the bias reset (``reset_bias``) and the feedback restored. It blocks the
sweep's simulated duration (initial settling + points × (settling + integration) per
sweep + end settling + Z averaging).

Flags follow the vendor's encodings: ``*Set`` takes 0 no change, 1 on, 2 off (where the
vendor says so); ``*Get`` returns 0 off, 1 on. Channel indexes are signal *slots* (0–23,
:data:`~.state.SLOT_SIGNALS`); lock-in signal indexes are signals 0–127.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from qcodes_stmtip.sim.microscope.state import (
    BIAS,
    CURRENT,
    LI_X,
    LI_Y,
    SIG_BIAS,
    SIG_CURRENT,
    SIGNAL_NAMES,
    SLOT_NAMES,
    SLOT_SIGNALS,
    SimClock,
    check_finite,
)

if TYPE_CHECKING:
    from qcodes_stmtip.sim.microscope.scan import Scanner
    from qcodes_stmtip.sim.microscope.zcontrol import ZController

#: Most points per sweep the simulator accepts.
MAX_POINTS = 10000
#: Lock-in modulators / demodulators (numbered from 1, as the vendor does).
N_MODULATORS = 8
#: Name of the swept-bias row that leads ``BiasSpectr.Start``'s data.
SWEEP_CHANNEL = "Bias calc (V)"
#: Names of ``BiasSpectr.Start``'s fixed parameters and parameters (in that order).
FIXED_PARAMETERS = ("Sweep Start (V)", "Sweep End (V)")
PARAMETERS = ("X (m)", "Y (m)", "Z (m)")


def _flag3(value: int, name: str) -> bool | None:
    """A 0 no change / 1 on / 2 off flag: ``None`` for no change."""
    if value not in (0, 1, 2):
        raise ValueError(f"{name} {value} must be 0 (no change), 1 (on) or 2 (off)")
    return None if value == 0 else value == 1


class Spectroscopy:
    """The Bias Spectroscopy module and the lock-in of the simulated controller."""

    def __init__(self, clock: SimClock, zctrl: ZController, scanner: Scanner,
                 rng: np.random.Generator, surface: str) -> None:
        self.clock, self.zctrl, self.scanner, self.rng = clock, zctrl, scanner, rng
        self.surface = surface
        self.open = False
        self.save_all, self.sweeps, self.backward, self.points = False, 1, False, 256
        self.z_offset, self.autosave, self.show_dialog = 0.0, False, False
        self.start_V, self.end_V = (-1.5, 1.5) if surface == "hsi100" else (-1.0, 0.5)
        # z averaging, initial settling, max slew rate, settling, integration, end settling, z control
        self.timing = {"z_averaging_time": 0.1, "initial_settling_time": 0.01,
                       "max_slew_rate": 10.0, "settling_time": 1e-3, "integration_time": 2e-3,
                       "end_settling_time": 0.01, "z_control_time": 0.1}
        self.reset_bias, self.z_hold, self.record_final_z, self.lockin_run = True, True, False, False
        self.channels: tuple[int, ...] = (CURRENT,)
        self.mod_on = [False] * N_MODULATORS
        self.mod_signal = [SIG_BIAS] * N_MODULATORS
        self.mod_amp = [0.01] * N_MODULATORS
        self.mod_freq = [973.0] * N_MODULATORS
        self.demod_signal = [SIG_CURRENT] * N_MODULATORS
        self.spectra_taken = 0
        self.base_name = "Bias-Spectroscopy"

    # ------------------------------------------------------------------ BiasSpectr settings
    def set_props(self, save_all: int, sweeps: int, backward: int, points: int, z_offset: float,
                  autosave: int, show_dialog: int) -> None:
        """``BiasSpectr.PropsSet``: flags 0 no change, 1 on, 2 off; ``sweeps``/``points`` 0
        no change; ``z_offset`` (m, > 0 retracts) is always set."""
        check_finite(z_offset, "z_offset")
        flags = [_flag3(v, n) for v, n in ((save_all, "save_all"), (backward, "backward_sweep"),
                                           (autosave, "autosave"), (show_dialog, "show_save_dialog"))]
        if sweeps < 0 or sweeps > 1000:
            raise ValueError(f"number of sweeps {sweeps} must be in 0..1000 (0: no change)")
        if points != 0 and not 2 <= points <= MAX_POINTS:
            raise ValueError(f"number of points {points} must be in 2..{MAX_POINTS} (0: no change)")
        if abs(z_offset) > 50e-9:
            raise ValueError(f"z_offset {z_offset} m exceeds ±50 nm")
        with self.clock.lock:
            names = ("save_all", "backward", "autosave", "show_dialog")
            for name, flag in zip(names, flags, strict=True):
                if flag is not None:
                    setattr(self, name, flag)
            if sweeps:
                self.sweeps = int(sweeps)
            if points:
                self.points = int(points)
            self.z_offset = float(z_offset)

    def get_props(self) -> dict[str, object]:
        """``BiasSpectr.PropsGet``'s fields (flags 0 off, 1 on)."""
        with self.clock.lock:
            return {"save_all": int(self.save_all), "sweeps": self.sweeps,
                    "backward": int(self.backward), "points": self.points,
                    "channel_names": self.channel_names(),
                    "parameters": PARAMETERS, "fixed_parameters": FIXED_PARAMETERS}

    def set_adv_props(self, reset_bias: int, z_hold: int, record_final_z: int,
                      lockin_run: int) -> None:
        """``BiasSpectr.AdvPropsSet``: each 0 no change, 1 on, 2 off."""
        flags = [_flag3(v, n) for v, n in ((reset_bias, "reset_bias"), (z_hold, "z_hold"),
                                           (record_final_z, "record_final_z"),
                                           (lockin_run, "lockin_run"))]
        with self.clock.lock:
            for name, flag in zip(("reset_bias", "z_hold", "record_final_z", "lockin_run"),
                                  flags, strict=True):
                if flag is not None:
                    setattr(self, name, flag)

    def get_adv_props(self) -> tuple[int, int, int, int]:
        with self.clock.lock:
            return (int(self.reset_bias), int(self.z_hold), int(self.record_final_z),
                    int(self.lockin_run))

    def set_limits(self, start: float, end: float) -> None:
        """Sweep start and end (V), each within ±10 V and different."""
        check_finite(start, "start")
        check_finite(end, "end")
        if max(abs(start), abs(end)) > 10:
            raise ValueError(f"sweep {start} V to {end} V leaves the ±10 V range")
        if start == end:
            raise ValueError(f"sweep start and end are both {start} V")
        with self.clock.lock:
            self.start_V, self.end_V = float(start), float(end)

    def get_limits(self) -> tuple[float, float]:
        with self.clock.lock:
            return self.start_V, self.end_V

    def set_timing(self, z_averaging_time: float, z_offset: float, initial_settling_time: float,
                   max_slew_rate: float, settling_time: float, integration_time: float,
                   end_settling_time: float, z_control_time: float) -> None:
        """``BiasSpectr.TimingSet`` (s, m, V/s); the Z offset is the one of ``PropsSet``."""
        values = {"z_averaging_time": z_averaging_time, "initial_settling_time": initial_settling_time,
                  "max_slew_rate": max_slew_rate, "settling_time": settling_time,
                  "integration_time": integration_time, "end_settling_time": end_settling_time,
                  "z_control_time": z_control_time}
        check_finite(z_offset, "z_offset")
        for name, value in values.items():
            check_finite(value, name)
            if name != "max_slew_rate" and not 0 <= value <= 10:
                raise ValueError(f"{name} {value} s must be in [0, 10] s")
        if not max_slew_rate > 0:
            raise ValueError(f"max_slew_rate {max_slew_rate} V/s must be positive")
        if abs(z_offset) > 50e-9:
            raise ValueError(f"z_offset {z_offset} m exceeds ±50 nm")
        with self.clock.lock:
            self.timing.update({k: float(v) for k, v in values.items()})
            self.z_offset = float(z_offset)

    def get_timing(self) -> dict[str, float]:
        with self.clock.lock:
            return {**self.timing, "z_offset": self.z_offset}

    def set_channels(self, channels: Sequence[int]) -> None:
        """Recorded channels: signal slots 0–23, at least one, no duplicates."""
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("bias spectroscopy needs at least one channel")
        bad = [c for c in channels if not 0 <= c < len(SLOT_SIGNALS)]
        if bad:
            raise ValueError(f"channel indexes {bad} are not signal slots 0..{len(SLOT_SIGNALS) - 1}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"channel indexes {channels} contain duplicates")
        with self.clock.lock:
            self.channels = channels

    def channel_names(self) -> tuple[str, ...]:
        return tuple(SLOT_NAMES[c] for c in self.channels)

    def duration(self) -> float:
        """Simulated seconds one ``BiasSpectr.Start`` takes with the present settings."""
        t = self.timing
        per_sweep = self.points * (t["settling_time"] + t["integration_time"]) \
            + abs(self.end_V - self.start_V) / t["max_slew_rate"]
        sweeps = self.sweeps * (2 if self.backward else 1)
        return t["initial_settling_time"] + sweeps * per_sweep + t["end_settling_time"] \
            + t["z_averaging_time"]

    # ------------------------------------------------------------------ the measurement
    def start(self, get_data: bool, base_name: str) -> tuple[tuple[str, ...], np.ndarray,
                                                               tuple[float, ...]]:
        """Run one point spectrum; returns ``(channel names, data, parameters)``.

        ``data`` is float32 ``(channels, points)``: the swept bias (``Bias calc (V)``) then
        each recorded channel; with a backward sweep each channel's backward row follows
        (named ``... [bwd]``, in sweep order). ``parameters``: the fixed parameters
        (sweep start, end) then X, Y, Z (m) at the site. Side effects: the bias ends at
        its initial value (``reset_bias``) or at the end limit; the Z controller's
        status is restored; blocks the sweep's simulated duration.
        """
        from qcodes_stmtip.sim.spectra import point_spectrum

        z = self.zctrl
        with self.clock.lock:
            self.clock.update()
            if not z.approached():
                raise ValueError("BiasSpectr.Start needs the tip in tunnelling range (approach first)")
            if self.scanner.busy():
                raise ValueError("BiasSpectr.Start: a scan is in progress (stop it first)")
            if base_name:
                self.base_name = base_name
            bias = np.linspace(self.start_V, self.end_V, self.points)
            tip = self.zctrl.dynamics.state
            setpoint_bias = z.bias if abs(z.bias) >= 1e-3 else 1e-3
            gap = 0.0 if z.feedback else z.z - z.tunnel_z()
            lockin = self.mod_on[0] or self.lockin_run
            amp = self.mod_amp[0] if lockin and self.mod_signal[0] == SIG_BIAS else 0.0
            sweeps = [point_spectrum(self.surface, tip, bias, setpoint_A=z.setpoint,
                                     setpoint_bias_V=setpoint_bias, z_offset_m=self.z_offset + gap,
                                     modulation_V=amp, sweeps=self.sweeps, rng=self.rng)]
            if self.backward:
                sweeps.append(point_spectrum(self.surface, tip, bias[::-1], setpoint_A=z.setpoint,
                                             setpoint_bias_V=setpoint_bias,
                                             z_offset_m=self.z_offset + gap, modulation_V=amp,
                                             sweeps=self.sweeps, rng=self.rng))
            x, y = self.scanner.tip_x, self.scanner.tip_y
            z_m = z.tunnel_z() if z.feedback else z.z
            initial_bias, initial_feedback = z.bias, z.feedback
            end_bias = initial_bias if self.reset_bias else self.end_V
            duration = self.duration()
        self.clock.sleep(duration)
        with self.clock.lock:
            z.bias = end_bias
            z.feedback = initial_feedback
            if initial_feedback:
                z.follow_tip()
            self.spectra_taken += 1
        names = [SWEEP_CHANNEL]
        rows = [bias]
        for direction, sweep in enumerate(sweeps):
            suffix = " [bwd]" if direction else ""
            for c in self.channels:
                names.append(SLOT_NAMES[c] + suffix)
                rows.append(self._channel_row(c, sweep, setpoint_bias, z.setpoint))
        data = np.asarray(rows, dtype=np.float32)
        if not get_data:
            return (), np.zeros((0, 0), np.float32), ()
        return tuple(names), data, (self.start_V, self.end_V, x, y, z_m)

    def _channel_row(self, slot: int, sweep: object, setpoint_bias: float,
                     setpoint: float) -> np.ndarray:
        from qcodes_stmtip.sim.spectra import Spectrum

        if not isinstance(sweep, Spectrum):
            raise TypeError(f"sweep must be a Spectrum, got {type(sweep).__name__}")
        if slot == CURRENT:
            return sweep.current
        if slot == BIAS:
            return sweep.bias
        if slot == LI_X:
            return sweep.lockin_x
        if slot == LI_Y:
            return sweep.lockin_y
        if SLOT_SIGNALS[slot] == SIGNAL_NAMES.index("Setpoint (A)"):
            return np.full_like(sweep.bias, setpoint)
        return 1e-4 * self.rng.standard_normal(sweep.bias.size)

    # ------------------------------------------------------------------ lock-in
    def _modulator(self, number: int) -> int:
        if isinstance(number, bool) or not 1 <= number <= N_MODULATORS:
            raise ValueError(f"lock-in modulator/demodulator number {number} must be in 1..{N_MODULATORS}")
        return number - 1

    def set_mod_on(self, number: int, on: int) -> None:
        if on not in (0, 1):
            raise ValueError(f"lock-in on/off {on} must be 0 (off) or 1 (on)")
        i = self._modulator(number)
        with self.clock.lock:
            self.mod_on[i] = bool(on)

    def set_mod_signal(self, number: int, signal: int) -> None:
        i = self._modulator(number)
        self._check_signal(signal)
        with self.clock.lock:
            self.mod_signal[i] = int(signal)

    def set_demod_signal(self, number: int, signal: int) -> None:
        i = self._modulator(number)
        self._check_signal(signal)
        with self.clock.lock:
            self.demod_signal[i] = int(signal)

    @staticmethod
    def _check_signal(signal: int) -> None:
        if not 0 <= signal < len(SIGNAL_NAMES):
            raise ValueError(f"signal index {signal} is not in 0..{len(SIGNAL_NAMES) - 1}")

    def set_mod_amp(self, number: int, amplitude: float) -> None:
        """Modulation amplitude (units of the modulated signal; V for the bias, ≤ 1 V)."""
        i = self._modulator(number)
        check_finite(amplitude, "amplitude")
        if not 0 <= amplitude <= 1.0:
            raise ValueError(f"modulation amplitude {amplitude} must be in [0, 1]")
        with self.clock.lock:
            self.mod_amp[i] = float(amplitude)

    def set_mod_freq(self, number: int, frequency: float) -> None:
        i = self._modulator(number)
        check_finite(frequency, "frequency")
        if not 0 < frequency <= 100e3:
            raise ValueError(f"modulation frequency {frequency} Hz must be in (0, 100 kHz]")
        with self.clock.lock:
            self.mod_freq[i] = float(frequency)

    def get(self, attribute: str, number: int) -> float | int:
        """A lock-in setting of modulator/demodulator ``number`` (``mod_on`` as 0/1)."""
        i = self._modulator(number)
        with self.clock.lock:
            value = getattr(self, attribute)[i]
        return int(value) if isinstance(value, bool) else value

    def lockin_value(self, x: bool) -> float:
        """Demodulator 1's output now (A): X ≈ dI/dV · A/√2 at the present bias, Y ≈ 0."""
        from qcodes_stmtip.sim.spectra import point_spectrum

        z = self.zctrl
        with self.clock.lock:
            self.clock.update()
            if not (self.mod_on[0] and self.mod_signal[0] == SIG_BIAS and z.approached()):
                return 1e-15 * float(self.rng.standard_normal())
            v = z.bias if abs(z.bias) >= 1e-3 else 1e-3
            s = point_spectrum(self.surface, z.dynamics.state, np.array([v, v]), setpoint_A=z.setpoint,
                               setpoint_bias_V=v, modulation_V=self.mod_amp[0], rng=self.rng)
            return float(s.lockin_x[0] if x else s.lockin_y[0])

