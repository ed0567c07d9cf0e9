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
