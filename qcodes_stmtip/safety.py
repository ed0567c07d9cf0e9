"""The safety envelope: hard limits on what may be asked of a real microscope.

A :class:`SafetyEnvelope` is a frozen set of limits (bias, pulse, indentation,
setpoint current, scan area and size, tip position, coarse-motor steps). Its
``check_*`` methods raise :class:`SafetyViolation` — naming the limit and the
requested value — and otherwise return the checked value(s) converted once to a
plain ``float`` (``int`` for motor steps); they never clamp. A caller sends
exactly what a check returned, never the original object again: a number whose
conversion changes from call to call (a float subclass with a mutable
``__float__``) is then checked and sent as the same float. The QCoDeS driver
derives its parameter validators from the envelope (:class:`EnvelopeValidator`)
and calls the checks again inside every setter and action, below the
validators, so an out-of-envelope request never reaches the controller — not
even through ``Parameter.set_raw``. The conditioning loop uses the same object
as its policy.

All values are SI (V, A, m, s); angles in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from qcodes.validators import Validator

__all__ = ["EnvelopeValidator", "SafetyEnvelope", "SafetyViolation"]


class SafetyViolation(ValueError):
    """A request outside the :class:`SafetyEnvelope`; nothing was sent.

    Attributes:
        quantity: what was requested (e.g. ``"bias"``).
        requested: the requested value (SI units).
        limit: the limit that it violates (SI units; a number or a ``(low, high)`` pair).
    """

    def __init__(self, quantity: str, requested: Any, limit: Any, unit: str = "") -> None:
        self.quantity = quantity
        self.requested = requested
        self.limit = limit
        self.unit = unit
        sep = " " if unit else ""
        super().__init__(
            f"safety envelope: {quantity} = {requested!r}{sep}{unit} is outside the "
            f"allowed limit {limit!r}{sep}{unit}; nothing was sent"
        )


def _finite(quantity: str, value: Any) -> float:
    """``value`` converted once to a plain ``float``; a non-number or NaN/inf raises.

    Strings and bools are refused (``"2"`` and ``True`` are not voltages). The result
    is an exact ``float`` whatever ``value`` is, so checking it and sending it cannot
    disagree. Raises :class:`SafetyViolation`.
    """
    if isinstance(value, str | bytes | bool):
        raise SafetyViolation(quantity, value, "a finite number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise SafetyViolation(quantity, value, "a finite number") from None
    if type(number) is not float:  # paranoia: float() of a subclass is exact in CPython
        number = float.__float__(number)
    if not math.isfinite(number):
        raise SafetyViolation(quantity, number, "a finite number")
    return number


@dataclass(frozen=True)
class SafetyEnvelope:
    """Limits on bias, pulses, indentation, setpoint, scan frame, tip moves and coarse motion.

    Defaults are conservative for a room-temperature or LT STM:

    * ``max_bias_V`` = 10 V, ``max_pulse_amplitude_V`` = 10 V, ``max_pulse_width_s`` = 1 s
      (controlled pulses in the literature are 1–5 V for ms; 10 V for 1 s is already
      an aggressive field-evaporation pulse);
    * ``max_indentation_m`` = 2 nm, smaller than the 5 nm the issue allows: gentle
      conditioning dips of 0.5–2 nm are what automated reconditioning (Rashidi &
      Wolkow 2018) uses; deeper crashes pick up a macroscopic cluster and should be a
      deliberate, explicitly configured choice;
    * ``max_setpoint_current_A`` = 5 nA (typical imaging is 10 pA – 1 nA);
    * scan area and tip position ±5 µm in x and y (the fine-scanner range of a
      typical piezo tube), ``max_scan_size_m`` = 1 µm;
    * ``max_z_m`` = 1 µm for the absolute z position a caller may command;
    * ``max_motor_steps`` = 100 coarse steps per move;
    * ``max_approach_steps`` = 1 coarse step towards the sample per move, and only with
      the tip withdrawn: a coarse step is tens to hundreds of nm, far beyond
      ``max_indentation_m``, so an approach goes one step at a time with a surface check
      (feedback on or auto-approach) in between; the auto-approach is the usual way.
    """

    max_bias_V: float = 10.0
    max_pulse_amplitude_V: float = 10.0
    max_pulse_width_s: float = 1.0
    max_indentation_m: float = 2e-9
    max_setpoint_current_A: float = 5e-9
    max_z_m: float = 1e-6
    scan_area_x_m: tuple[float, float] = (-5e-6, 5e-6)
    scan_area_y_m: tuple[float, float] = (-5e-6, 5e-6)
    max_scan_size_m: float = 1e-6
    max_motor_steps: int = 100
    max_approach_steps: int = 1

    def __post_init__(self) -> None:
        for name in (
            "max_bias_V",
            "max_pulse_amplitude_V",
            "max_pulse_width_s",
            "max_indentation_m",
            "max_setpoint_current_A",
            "max_z_m",
            "max_scan_size_m",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"SafetyEnvelope.{name} must be a number, got {value!r}")
            value = float(value)  # a limit is a plain float, converted once
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"SafetyEnvelope.{name} must be finite and > 0, got {value!r}")
            object.__setattr__(self, name, value)
        for name in ("max_motor_steps", "max_approach_steps"):
            steps = getattr(self, name)
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                raise ValueError(f"SafetyEnvelope.{name} must be an int >= 0, got {steps!r}")
            object.__setattr__(self, name, int(steps))
        for name in ("scan_area_x_m", "scan_area_y_m"):
            value = getattr(self, name)
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"SafetyEnvelope.{name} must be a (low, high) pair of metres, got {value!r}"
                ) from None
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(
                    f"SafetyEnvelope.{name} must be finite with low < high, got {value!r}"
                )
            object.__setattr__(self, name, (low, high))

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SafetyEnvelope:
        """Build an envelope from a dict (e.g. a station YAML section); unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(
                f"unknown SafetyEnvelope field(s) {unknown}; known fields: {sorted(known)}"
            )
        values = dict(mapping)
        for name in ("scan_area_x_m", "scan_area_y_m"):
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def coerce(cls, value: SafetyEnvelope | Mapping[str, Any] | None) -> SafetyEnvelope:
        """Return ``value`` as an envelope: an envelope, a dict of fields, or ``None`` (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_mapping(value)
        raise ValueError(
            f"safety must be a SafetyEnvelope, a mapping of its fields or None, got {value!r}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The limits as a plain dict (for snapshots and metadata)."""
        return asdict(self)

    # -- checks --------------------------------------------------------------------------
    def check_bias(self, bias_V: float) -> float:
        """Raise unless ``|bias_V| <= max_bias_V``; return the checked bias (V) as a float."""
        value = _finite("bias", bias_V)
        if abs(value) > self.max_bias_V:
            raise SafetyViolation("|bias|", value, self.max_bias_V, "V")
        return value

    def check_bias_sweep(self, start_V: float, end_V: float,
                         modulation_V: float = 0.0) -> tuple[float, float, float]:
        """Raise unless a bias sweep from ``start_V`` to ``end_V``, with a lock-in modulation of
        peak amplitude ``modulation_V`` on top, stays within ``|bias| <= max_bias_V`` and
        ``start_V != end_V``. Returns ``(start_V, end_V, modulation_V)`` as checked floats.
        """
        start = _finite("sweep start bias", start_V)
        end = _finite("sweep end bias", end_V)
        modulation = _finite("lock-in modulation amplitude", modulation_V)
        if modulation < 0:
            raise SafetyViolation("lock-in modulation amplitude", modulation, ">= 0", "V")
        if start == end:
            raise SafetyViolation("sweep end bias", end, f"!= start {start}", "V")
        reach = max(abs(start), abs(end)) + modulation
        if reach > self.max_bias_V:
            raise SafetyViolation("|sweep bias| + modulation", reach, self.max_bias_V, "V")
        return start, end, modulation

    def check_setpoint_current(self, current_A: float) -> float:
        """Raise unless ``|current_A| <= max_setpoint_current_A``; return it (A) as a float."""
        value = _finite("setpoint current", current_A)
        if abs(value) > self.max_setpoint_current_A:
            raise SafetyViolation("|setpoint current|", value, self.max_setpoint_current_A, "A")
        return value

    def check_pulse(self, amplitude_V: float, width_s: float) -> tuple[float, float]:
        """Raise unless ``|amplitude_V| <= max_pulse_amplitude_V`` and ``0 < width_s <= max``.

        Returns ``(amplitude_V, width_s)`` as the floats that were checked.
        """
        amplitude = _finite("pulse amplitude", amplitude_V)
        width = _finite("pulse width", width_s)
        if abs(amplitude) > self.max_pulse_amplitude_V:
            raise SafetyViolation("|pulse amplitude|", amplitude, self.max_pulse_amplitude_V, "V")
        if width <= 0:
            raise SafetyViolation("pulse width", width, "> 0", "s")
        if width > self.max_pulse_width_s:
            raise SafetyViolation("pulse width", width, self.max_pulse_width_s, "s")
        return amplitude, width

    def check_indentation(self, depth_m: float) -> float:
        """Raise unless ``0 <= depth_m <= max_indentation_m`` (depth into the sample, positive).

        Returns the checked depth (m) as a float.
        """
        depth = _finite("indentation depth", depth_m)
        if depth < 0:
            raise SafetyViolation("indentation depth", depth, ">= 0 (into the sample)", "m")
        if depth > self.max_indentation_m:
            raise SafetyViolation("indentation depth", depth, self.max_indentation_m, "m")
        return depth

    def check_z(self, z_m: float) -> float:
        """Raise unless ``|z_m| <= max_z_m`` (an absolute z-piezo position command); return it."""
        value = _finite("z position", z_m)
        if abs(value) > self.max_z_m:
            raise SafetyViolation("|z position|", value, self.max_z_m, "m")
        return value

    def check_z_move(self, z_m: float, tunnelling_z_m: float) -> float:
        """Raise unless a feedback-off Z move to ``z_m`` stays within the indentation limit.

        ``tunnelling_z_m`` is the Z (m) of the tunnelling position (where the feedback
        was last on); more negative Z is towards the sample. ``z_m`` must satisfy
        ``|z_m| <= max_z_m`` and ``z_m >= tunnelling_z_m - max_indentation_m``.
        Returns the checked ``z_m`` as a float.
        """
        value = self.check_z(z_m)
        reference = _finite("tunnelling z position", tunnelling_z_m)
        depth = reference - value
        if depth > self.max_indentation_m:
            raise SafetyViolation(
                f"z below the tunnelling position {reference!r} m (feedback off)",
                depth, self.max_indentation_m, "m",
            )
        return value

    def check_tip_move(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Raise unless the tip target ``(x_m, y_m)`` lies inside the allowed scan area.

        Returns ``(x_m, y_m)`` as the floats that were checked.
        """
        x = _finite("tip x", x_m)
        y = _finite("tip y", y_m)
        self._check_in_range("tip x", x, self.scan_area_x_m)
        self._check_in_range("tip y", y, self.scan_area_y_m)
        return x, y

    def check_scan_size(self, width_m: float, height_m: float) -> tuple[float, float]:
        """Raise unless ``0 < width, height <= max_scan_size_m``; return them as floats."""
        sizes = []
        for name, value in (("scan width", width_m), ("scan height", height_m)):
            size = _finite(name, value)
            if size <= 0:
                raise SafetyViolation(name, size, "> 0", "m")
            if size > self.max_scan_size_m:
                raise SafetyViolation(name, size, self.max_scan_size_m, "m")
            sizes.append(size)
        return sizes[0], sizes[1]

    def check_frame(
        self,
        centre_x_m: float,
        centre_y_m: float,
        width_m: float,
        height_m: float,
        angle_deg: float = 0.0,
    ) -> tuple[float, float, float, float, float]:
        """Raise unless the (rotated) frame has an allowed size and all four corners in the area.

        Returns ``(centre_x, centre_y, width, height, angle)`` as the floats that were checked.
        """
        cx = _finite("scan centre x", centre_x_m)
        cy = _finite("scan centre y", centre_y_m)
        angle = _finite("scan angle", angle_deg)
        width, height = self.check_scan_size(width_m, height_m)
        half_w, half_h = width / 2, height / 2
        # clockwise rotation by `angle` (Nanonis convention)
        theta = -math.radians(angle)
        c, s = math.cos(theta), math.sin(theta)
        for dx, dy in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)):
            x = cx + c * dx - s * dy
            y = cy + s * dx + c * dy
            self._check_in_range("scan frame corner x", x, self.scan_area_x_m)
            self._check_in_range("scan frame corner y", y, self.scan_area_y_m)
        return cx, cy, width, height, angle

    def check_motor_steps(self, steps: int) -> int:
        """Raise unless ``steps`` is an int with ``0 <= steps <= max_motor_steps``; return it."""
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise SafetyViolation("motor steps", steps, "an integer")
        number = int(steps)
        if type(number) is not int:  # paranoia: int() of a subclass is exact in CPython
            number = int.__int__(number)
        if number < 0 or number > self.max_motor_steps:
            raise SafetyViolation("motor steps", number, (0, self.max_motor_steps))
        return number

    def check_approach_steps(self, steps: int, *, withdrawn: bool) -> int:
        """Raise unless coarse ``steps`` towards the sample are allowed; return them as an int.

        A coarse step towards the sample is an approach: it is allowed only with the tip
        ``withdrawn`` (feedback off, Z piezo retracted) and at most ``max_approach_steps``
        at a time, below the general ``max_motor_steps``.
        """
        number = self.check_motor_steps(steps)
        if number > self.max_approach_steps:
            raise SafetyViolation("coarse steps towards the sample", number,
                                  (0, self.max_approach_steps))
        if number and not withdrawn:
            raise SafetyViolation("coarse steps towards the sample with the tip not withdrawn",
                                  number, "0 (withdraw the tip first)")
        return number

    @staticmethod
    def _check_in_range(quantity: str, value: float, limits: tuple[float, float]) -> None:
        low, high = limits
        # a relative tolerance of 1e-9 keeps float32 round trips of a boundary value inside
        tol = 1e-9 * max(abs(low), abs(high))
        if value < low - tol or value > high + tol:
            raise SafetyViolation(quantity, value, limits, "m")


class EnvelopeValidator(Validator[float]):
    """A QCoDeS validator that delegates to one :class:`SafetyEnvelope` check.

    ``EnvelopeValidator(envelope.check_bias, "|bias| <= 10 V")`` raises the
    envelope's :class:`SafetyViolation` from ``validate`` — i.e. inside
    ``Parameter.set`` before the set command runs.
    """

    is_numeric = True

    def __init__(
        self,
        check: Callable[[float], None],
        description: str,
        valid_values: tuple[float, ...] = (0.0,),
    ) -> None:
        self._check = check
        self._description = description
        self._valid_values = valid_values

    def validate(self, value: float, context: str = "") -> None:
        try:
            self._check(value)
        except SafetyViolation as exc:
            if context:
                exc.args = (f"{exc.args[0]}; {context}",)
            raise

    def __repr__(self) -> str:
        return f"<EnvelopeValidator: {self._description}>"
