"""The safety envelope: every limit raises with the limit and the request; nothing is clamped."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qcodes.parameters import Parameter

from qcodes_stmtip.safety import EnvelopeValidator, SafetyEnvelope, SafetyViolation

ENV = SafetyEnvelope()


def test_defaults_are_the_documented_conservative_values() -> None:
    assert ENV.max_bias_V == 10.0
    assert ENV.max_pulse_amplitude_V == 10.0
    assert ENV.max_pulse_width_s == 1.0
    assert ENV.max_indentation_m == 2e-9
    assert ENV.scan_area_x_m == (-5e-6, 5e-6)
    assert ENV.scan_area_y_m == (-5e-6, 5e-6)


def test_violation_is_a_value_error_that_names_limit_and_request() -> None:
    with pytest.raises(SafetyViolation) as info:
        ENV.check_bias(-10.5)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert exc.requested == -10.5 and exc.limit == 10.0
    assert "-10.5" in str(exc) and "10.0" in str(exc) and "bias" in str(exc)


@pytest.mark.parametrize("bias", [-10.0, -1e-3, 0.0, 2.5, 10.0])
def test_bias_inside_passes(bias: float) -> None:
    ENV.check_bias(bias)


@pytest.mark.parametrize("bias", [-10.000001, 10.01, 1e3, math.nan, math.inf, "2V", None])
def test_bias_outside_or_not_a_number_raises(bias: object) -> None:
    with pytest.raises(SafetyViolation):
        ENV.check_bias(bias)  # type: ignore[arg-type]


def test_pulse_limits_amplitude_and_width() -> None:
    ENV.check_pulse(-10.0, 1.0)
    ENV.check_pulse(3.0, 1e-3)
    with pytest.raises(SafetyViolation, match="pulse amplitude"):
        ENV.check_pulse(10.5, 0.01)
    with pytest.raises(SafetyViolation, match="pulse width"):
        ENV.check_pulse(3.0, 1.5)
    with pytest.raises(SafetyViolation, match="pulse width"):
        ENV.check_pulse(3.0, 0.0)


def test_indentation_depth_is_positive_into_sample_and_bounded() -> None:
    ENV.check_indentation(0.0)
    ENV.check_indentation(2e-9)
    with pytest.raises(SafetyViolation, match="indentation"):
        ENV.check_indentation(2.1e-9)
    with pytest.raises(SafetyViolation, match="into the sample"):
        ENV.check_indentation(-1e-9)


def test_frame_corners_must_stay_inside_area_including_rotation() -> None:
    ENV.check_frame(0.0, 0.0, 1e-6, 1e-6, 0.0)
    ENV.check_frame(4.5e-6, -4.5e-6, 1e-6, 1e-6, 0.0)  # touches the corner of the area
    with pytest.raises(SafetyViolation, match="corner x"):
        ENV.check_frame(4.6e-6, 0.0, 1e-6, 1e-6, 0.0)
    # the same frame rotated by 45 degrees sticks out by (sqrt(2) - 1) * 0.5 um
    with pytest.raises(SafetyViolation, match="corner"):
        ENV.check_frame(4.5e-6, 0.0, 1e-6, 1e-6, 45.0)
    with pytest.raises(SafetyViolation, match="scan width"):
        ENV.check_frame(0.0, 0.0, 2e-6, 1e-6)
    with pytest.raises(SafetyViolation, match="scan height"):
        ENV.check_frame(0.0, 0.0, 1e-6, -1e-9)


def test_tip_move_and_motor_steps() -> None:
    ENV.check_tip_move(5e-6, -5e-6)
    with pytest.raises(SafetyViolation, match="tip y"):
        ENV.check_tip_move(0.0, 5.1e-6)
    ENV.check_motor_steps(100)
    with pytest.raises(SafetyViolation, match="motor steps"):
        ENV.check_motor_steps(101)
    with pytest.raises(SafetyViolation, match="motor steps"):
        ENV.check_motor_steps(2.0)  # type: ignore[arg-type]


def test_setpoint_and_z() -> None:
    ENV.check_setpoint_current(-5e-9)
    with pytest.raises(SafetyViolation, match="setpoint"):
        ENV.check_setpoint_current(6e-9)
    ENV.check_z(-1e-6)
    with pytest.raises(SafetyViolation, match="z position"):
        ENV.check_z(1.5e-6)


@given(st.floats(min_value=0.0, max_value=20.0, allow_nan=False))
def test_bias_check_matches_the_limit_exactly(value: float) -> None:
    env = SafetyEnvelope(max_bias_V=3.0)
    if value <= 3.0:
        env.check_bias(value)
        env.check_bias(-value)
    else:
        with pytest.raises(SafetyViolation):
            env.check_bias(value)
        with pytest.raises(SafetyViolation):
            env.check_bias(-value)


def test_from_mapping_and_coerce() -> None:
    env = SafetyEnvelope.coerce({"max_bias_V": 2.0, "scan_area_x_m": [-1e-6, 1e-6]})
    assert env.max_bias_V == 2.0 and env.scan_area_x_m == (-1e-6, 1e-6)
    assert SafetyEnvelope.coerce(None) == SafetyEnvelope()
    assert SafetyEnvelope.coerce(env) is env
    with pytest.raises(ValueError, match="max_bias"):
        SafetyEnvelope.coerce({"max_bais_V": 2.0})
    with pytest.raises(ValueError, match="safety must be"):
        SafetyEnvelope.coerce(3.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_bias_V": -1.0}, "max_bias_V"),
        ({"max_pulse_width_s": math.nan}, "max_pulse_width_s"),
        ({"scan_area_x_m": (1e-6, -1e-6)}, "scan_area_x_m"),
        ({"scan_area_y_m": "wide"}, "scan_area_y_m"),
        ({"max_motor_steps": -3}, "max_motor_steps"),
    ],
)
def test_invalid_envelope_raises_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SafetyEnvelope(**kwargs)


def test_envelope_validator_raises_inside_parameter_set_before_set_cmd() -> None:
    sent: list[float] = []
    env = SafetyEnvelope(max_bias_V=1.0)
    param = Parameter(
        "bias", set_cmd=sent.append, get_cmd=None,
        vals=EnvelopeValidator(env.check_bias, "|bias| <= 1 V"),
    )
    param.set(0.5)
    with pytest.raises(SafetyViolation, match="bias"):
        param.set(1.5)
    assert sent == [0.5]


class _Shifty(float):
    """A float whose conversion changes after the first call (3.0, then 9.0 for ever)."""

    calls = 0

    def __float__(self) -> float:
        type(self).calls += 1
        return 3.0 if type(self).calls == 1 else 9.0


def test_checks_return_the_one_plain_float_they_checked() -> None:
    _Shifty.calls = 0
    env = SafetyEnvelope(max_pulse_amplitude_V=4.0)
    amplitude, width = env.check_pulse(_Shifty(0.0), 0.01)
    assert type(amplitude) is float and amplitude == 3.0 and _Shifty.calls == 1
    with pytest.raises(SafetyViolation, match="9.0"):  # the next conversion is what it is
        env.check_pulse(_Shifty(0.0), 0.01)
    assert env.check_bias(1) == 1.0 and type(env.check_bias(1)) is float
    assert env.check_frame(0, 0, 1e-7, 1e-7) == (0.0, 0.0, 1e-7, 1e-7, 0.0)
    assert env.check_tip_move(1e-7, -1e-7) == (1e-7, -1e-7)
    assert env.check_indentation(1e-9) == 1e-9
    assert env.check_z(-1e-8) == -1e-8
    assert env.check_setpoint_current(1e-10) == 1e-10
    assert env.check_motor_steps(7) == 7


@pytest.mark.parametrize("value", ["2", b"2", True])
def test_strings_and_bools_are_not_numbers(value: object) -> None:
    with pytest.raises(SafetyViolation, match="finite number"):
        ENV.check_bias(value)  # type: ignore[arg-type]


def test_z_move_is_bounded_below_the_tunnelling_position() -> None:
    assert ENV.check_z_move(-1.9e-9, 0.0) == -1.9e-9
    assert ENV.check_z_move(100e-9, 0.0) == 100e-9  # away from the sample: free up to max_z_m
    with pytest.raises(SafetyViolation, match="below the tunnelling position"):
        ENV.check_z_move(-150e-9, 0.0)
    with pytest.raises(SafetyViolation, match="below the tunnelling position"):
        ENV.check_z_move(7.9e-9, 10e-9)
    with pytest.raises(SafetyViolation, match="z position"):
        ENV.check_z_move(2e-6, 0.0)
    with pytest.raises(SafetyViolation, match="tunnelling z"):
        ENV.check_z_move(0.0, math.nan)


def test_approach_steps_need_a_withdrawn_tip_and_are_bounded_separately() -> None:
    assert ENV.max_approach_steps == 1
    assert ENV.check_approach_steps(1, withdrawn=True) == 1
    assert ENV.check_approach_steps(0, withdrawn=False) == 0
    with pytest.raises(SafetyViolation, match="not withdrawn"):
        ENV.check_approach_steps(1, withdrawn=False)
    with pytest.raises(SafetyViolation, match="towards the sample"):
        ENV.check_approach_steps(10, withdrawn=True)  # inside max_motor_steps, still refused
    with pytest.raises(ValueError, match="max_approach_steps"):
        SafetyEnvelope(max_approach_steps=-1)


# ---- both signs of every limit, and what the violation says (issue 29: mutation testing) ----
#: (check, its limit attribute, the quantity it names, unit); each check is called with one value.
SIGNED = [
    (lambda env, v: env.check_bias(v), "max_bias_V", "|bias|", "V"),
    (lambda env, v: env.check_setpoint_current(v), "max_setpoint_current_A",
     "|setpoint current|", "A"),
    (lambda env, v: env.check_pulse(v, 1e-3), "max_pulse_amplitude_V", "|pulse amplitude|", "V"),
    (lambda env, v: env.check_z(v), "max_z_m", "|z position|", "m"),
]


@pytest.mark.parametrize("sign", [+1.0, -1.0])
@pytest.mark.parametrize(("check", "limit_name", "quantity", "unit"), SIGNED,
                         ids=["bias", "setpoint", "pulse_amplitude", "z"])
def test_symmetric_limits_hold_for_both_signs(check, limit_name: str, quantity: str, unit: str,
                                               sign: float) -> None:
    """A negative value past the limit (−20 V pulse, −1 µA setpoint, z = −2 µm) raises too."""
    limit = getattr(ENV, limit_name)
    check(ENV, sign * limit)  # the limit itself is allowed, whatever the sign
    for over in (limit * 1.001, limit * 2, limit * 1e3):
        with pytest.raises(SafetyViolation) as info:
            check(ENV, sign * over)
        exc = info.value
        assert (exc.quantity, exc.requested, exc.limit, exc.unit) == (quantity, sign * over,
                                                                      limit, unit)
        assert str(exc) == (f"safety envelope: {quantity} = {sign * over!r} {unit} is outside "
                            f"the allowed limit {limit!r} {unit}; nothing was sent")


def test_named_negative_requests_never_pass() -> None:
    """The three requests of issue 29 that a dropped ``abs()`` would let through."""
    for call in (lambda: ENV.check_pulse(-20.0, 1e-3), lambda: ENV.check_setpoint_current(-1e-6),
                 lambda: ENV.check_z(-2e-6)):
        with pytest.raises(SafetyViolation):
            call()


@pytest.mark.parametrize(("call", "quantity", "requested", "limit", "unit"), [
    (lambda: ENV.check_pulse(1.0, 0.0), "pulse width", 0.0, "> 0", "s"),
    (lambda: ENV.check_pulse(1.0, -1e-3), "pulse width", -1e-3, "> 0", "s"),
    (lambda: ENV.check_pulse(1.0, 1.5), "pulse width", 1.5, 1.0, "s"),
    (lambda: ENV.check_indentation(-1e-10), "indentation depth", -1e-10,
     ">= 0 (into the sample)", "m"),
    (lambda: ENV.check_indentation(3e-9), "indentation depth", 3e-9, 2e-9, "m"),
    (lambda: ENV.check_scan_size(0.0, 1e-7), "scan width", 0.0, "> 0", "m"),
    (lambda: ENV.check_scan_size(1e-7, -1e-7), "scan height", -1e-7, "> 0", "m"),
    (lambda: ENV.check_scan_size(2e-6, 1e-7), "scan width", 2e-6, 1e-6, "m"),
    (lambda: ENV.check_scan_size(1e-7, 2e-6), "scan height", 2e-6, 1e-6, "m"),
    (lambda: ENV.check_tip_move(-6e-6, 0.0), "tip x", -6e-6, (-5e-6, 5e-6), "m"),
    (lambda: ENV.check_tip_move(0.0, 6e-6), "tip y", 6e-6, (-5e-6, 5e-6), "m"),
    (lambda: ENV.check_motor_steps(-1), "motor steps", -1, (0, 100), ""),
    (lambda: ENV.check_motor_steps(101), "motor steps", 101, (0, 100), ""),
    (lambda: ENV.check_motor_steps(2.0), "motor steps", 2.0, "an integer", ""),
    (lambda: ENV.check_approach_steps(2, withdrawn=True), "coarse steps towards the sample",
     2, (0, 1), ""),
    (lambda: ENV.check_approach_steps(1, withdrawn=False),
     "coarse steps towards the sample with the tip not withdrawn", 1,
     "0 (withdraw the tip first)", ""),
    (lambda: ENV.check_bias("1"), "bias", "1", "a finite number", ""),
    (lambda: ENV.check_bias(None), "bias", None, "a finite number", ""),
    (lambda: ENV.check_setpoint_current(math.inf), "setpoint current", math.inf,
     "a finite number", ""),
    (lambda: ENV.check_pulse(math.nan, 1e-3), "pulse amplitude", None, "a finite number", ""),
    (lambda: ENV.check_pulse(1.0, "1ms"), "pulse width", "1ms", "a finite number", ""),
    (lambda: ENV.check_indentation(True), "indentation depth", True, "a finite number", ""),
    (lambda: ENV.check_z([1]), "z position", [1], "a finite number", ""),
    (lambda: ENV.check_z_move(0.0, math.nan), "tunnelling z position", None,
     "a finite number", ""),
    (lambda: ENV.check_tip_move("0", 0.0), "tip x", "0", "a finite number", ""),
    (lambda: ENV.check_tip_move(0.0, b"0"), "tip y", b"0", "a finite number", ""),
    (lambda: ENV.check_frame(math.inf, 0.0, 1e-7, 1e-7), "scan centre x", math.inf,
     "a finite number", ""),
    (lambda: ENV.check_frame(0.0, "0", 1e-7, 1e-7), "scan centre y", "0", "a finite number", ""),
    (lambda: ENV.check_frame(0.0, 0.0, 1e-7, 1e-7, None), "scan angle", None,
     "a finite number", ""),
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_violation_names_its_quantity_request_limit_and_unit(
        call, quantity: str, requested: object, limit: object, unit: str) -> None:
    with pytest.raises(SafetyViolation) as info:
        call()
    exc = info.value
    assert (exc.quantity, exc.limit, exc.unit) == (quantity, limit, unit)
    if requested is None and isinstance(exc.requested, float):  # NaN: compare as NaN
        assert math.isnan(exc.requested)
    else:
        assert exc.requested == requested and type(exc.requested) is type(requested)
    assert quantity in str(exc) and "nothing was sent" in str(exc)


def test_frame_corner_violation_names_the_axis_and_the_area() -> None:
    with pytest.raises(SafetyViolation) as info:
        ENV.check_frame(4.9e-6, 0.0, 5e-7, 5e-7)
    assert info.value.quantity == "scan frame corner x" and info.value.limit == (-5e-6, 5e-6)
    with pytest.raises(SafetyViolation) as info:
        ENV.check_frame(0.0, -4.9e-6, 5e-7, 5e-7)
    assert info.value.quantity == "scan frame corner y" and info.value.unit == "m"


def _corners(cx: float, cy: float, w: float, h: float, angle_deg: float) -> list[tuple[float, float]]:
    """The four frame corners, rotated clockwise by ``angle_deg`` (Nanonis), computed here."""
    a = math.radians(angle_deg)
    return [(cx + dx * math.cos(a) + dy * math.sin(a), cy - dx * math.sin(a) + dy * math.cos(a))
            for dx in (-w / 2, w / 2) for dy in (-h / 2, h / 2)]


@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0, 120.0, 200.0, -45.0])
@pytest.mark.parametrize("edge", ["x-low", "x-high", "y-low", "y-high"])
def test_every_corner_of_a_rotated_oblong_frame_is_checked(angle: float, edge: str) -> None:
    """A 400 × 100 nm frame pushed against each edge of the area: 0.1 nm inside passes, 0.1 nm
    outside raises and names the corner coordinate that left the area."""
    w, h = 4e-7, 1e-7
    axis, side = edge.split("-")
    k = 0 if axis == "x" else 1
    bound = ENV.scan_area_x_m if axis == "x" else ENV.scan_area_y_m
    limit = bound[0] if side == "low" else bound[1]
    extreme = (min if side == "low" else max)(c[k] for c in _corners(0.0, 0.0, w, h, angle))
    for margin, ok in ((1e-10, True), (-1e-10, False)):
        shift = limit - extreme + (margin if side == "low" else -margin)
        centre = (shift, 0.0) if axis == "x" else (0.0, shift)
        if ok:
            assert ENV.check_frame(*centre, w, h, angle) == (*centre, w, h, angle)
            continue
        with pytest.raises(SafetyViolation) as info:
            ENV.check_frame(*centre, w, h, angle)
        assert info.value.quantity == f"scan frame corner {axis}"
        outside = limit + margin if side == "low" else limit - margin
        assert info.value.requested == pytest.approx(outside, abs=1e-12)


def test_bias_sweep_both_signs_modulation_and_returns() -> None:
    assert ENV.check_bias_sweep(-9.0, 9.5, 0.5) == (-9.0, 9.5, 0.5)
    assert ENV.check_bias_sweep(2, -3) == (2.0, -3.0, 0.0)
    assert ENV.check_bias_sweep(-10.0, 10.0) == (-10.0, 10.0, 0.0)  # the limit itself
    for start, end, mod, reach in ((-10.5, 1.0, 0.0, 10.5), (1.0, -10.5, 0.0, 10.5),
                                   (10.5, 1.0, 0.0, 10.5), (1.0, 10.5, 0.0, 10.5),
                                   (-9.8, 1.0, 0.3, 10.1), (1.0, -9.8, 0.3, 10.1),
                                   (9.8, -1.0, 0.3, 10.1)):
        with pytest.raises(SafetyViolation) as info:
            ENV.check_bias_sweep(start, end, mod)
        exc = info.value
        assert (exc.quantity, exc.limit, exc.unit) == ("|sweep bias| + modulation", 10.0, "V")
        assert exc.requested == pytest.approx(reach)
    with pytest.raises(SafetyViolation) as info:
        ENV.check_bias_sweep(1.0, 2.0, -0.1)
    assert (info.value.quantity, info.value.requested, info.value.limit, info.value.unit) == (
        "lock-in modulation amplitude", -0.1, ">= 0", "V")
    with pytest.raises(SafetyViolation) as info:
        ENV.check_bias_sweep(1.5, 1.5)
    assert (info.value.quantity, info.value.requested, info.value.limit, info.value.unit) == (
        "sweep end bias", 1.5, "!= start 1.5", "V")
    assert ENV.check_bias_sweep(1.0, 2.0, 0.0) == (1.0, 2.0, 0.0)  # no modulation is allowed
    for args, quantity in (((math.nan, 1.0), "sweep start bias"), ((1.0, "2"), "sweep end bias"),
                           ((1.0, 2.0, None), "lock-in modulation amplitude")):
        with pytest.raises(SafetyViolation) as info:
            ENV.check_bias_sweep(*args)
        assert info.value.quantity == quantity and info.value.limit == "a finite number"


def test_envelope_fields_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match=r"^SafetyEnvelope.max_bias_V must be a number, got '5'$"):
        SafetyEnvelope(max_bias_V="5")
    with pytest.raises(ValueError, match=r"max_pulse_width_s must be finite and > 0, got 0.0"):
        SafetyEnvelope(max_pulse_width_s=0)
    assert SafetyEnvelope(max_motor_steps=0, max_approach_steps=0).max_motor_steps == 0
    with pytest.raises(ValueError, match=r"max_motor_steps must be an int >= 0, got '3'"):
        SafetyEnvelope(max_motor_steps="3")
    with pytest.raises(ValueError, match=r"max_approach_steps must be an int >= 0, got -1"):
        SafetyEnvelope(max_approach_steps=-1)
    with pytest.raises(ValueError, match=r"scan_area_y_m must be finite with low < high"):
        SafetyEnvelope(scan_area_y_m=(1e-6, 1e-6))
    for name in ("scan_area_x_m", "scan_area_y_m"):
        with pytest.raises(ValueError, match=rf"{name} must be a \(low, high\) pair"):
            SafetyEnvelope.from_mapping({name: None})
        env = SafetyEnvelope.from_mapping({name: [-1e-6, 2e-6]})
        assert getattr(env, name) == (-1e-6, 2e-6)


def test_area_bounds_include_their_float_tolerance_exactly() -> None:
    low, high = ENV.scan_area_x_m
    tol = 1e-9 * max(abs(low), abs(high))
    assert ENV.check_tip_move(low - tol, high + tol) == (low - tol, high + tol)
    with pytest.raises(SafetyViolation):
        ENV.check_tip_move(math.nextafter(low - tol, -1.0), 0.0)
    with pytest.raises(SafetyViolation):
        ENV.check_tip_move(0.0, math.nextafter(high + tol, 1.0))


def test_z_move_may_reach_the_indentation_limit_exactly_and_names_the_depth() -> None:
    assert ENV.check_z_move(-2e-9, 0.0) == -2e-9  # depth 2 nm == max_indentation_m
    with pytest.raises(SafetyViolation) as info:
        ENV.check_z_move(-3e-9, 0.0)
    exc = info.value
    assert exc.quantity == "z below the tunnelling position 0.0 m (feedback off)"
    assert (exc.requested, exc.limit, exc.unit) == (3e-9, 2e-9, "m")


def test_scan_size_returns_width_then_height_and_names_a_bad_value() -> None:
    assert ENV.check_scan_size(2e-7, 3e-7) == (2e-7, 3e-7)
    with pytest.raises(SafetyViolation) as info:
        ENV.check_scan_size(math.nan, 1e-7)
    assert info.value.quantity == "scan width" and info.value.limit == "a finite number"


def test_a_violation_without_unit_has_no_stray_space_and_a_validator_adds_only_its_context() -> None:
    assert str(SafetyViolation("motor steps", 101, (0, 100))) == (
        "safety envelope: motor steps = 101 is outside the allowed limit (0, 100); nothing was sent")
    validator = EnvelopeValidator(ENV.check_bias, "|bias| <= 10 V", valid_values=(1.0,))
    assert repr(validator) == "<EnvelopeValidator: |bias| <= 10 V>"
    assert validator.valid_values == (1.0,)
    with pytest.raises(SafetyViolation) as info:
        validator.validate(11.0)
    assert str(info.value) == str(SafetyViolation("|bias|", 11.0, 10.0, "V"))
    with pytest.raises(SafetyViolation, match=r"nothing was sent; setting bias$"):
        validator.validate(11.0, "setting bias")


def test_as_dict_round_trips_through_from_mapping() -> None:
    env = SafetyEnvelope(max_bias_V=5.0, scan_area_x_m=(-1e-6, 2e-6), max_motor_steps=7)
    d = env.as_dict()
    assert d["max_bias_V"] == 5.0 and d["scan_area_x_m"] == (-1e-6, 2e-6) and d["max_motor_steps"] == 7
    assert SafetyEnvelope.from_mapping(d) == env
