"""Experiment-level limits: each check raises and names its limit."""

from __future__ import annotations

import math

import pytest

from qcodes_stmtip.conditioning.envelope import ConditioningEnvelope, ConditioningLimits
from qcodes_stmtip.conditioning.policy import Action
from qcodes_stmtip.safety import SafetyEnvelope, SafetyViolation


def test_each_limit_raises_and_names_itself() -> None:
    env = ConditioningEnvelope(SafetyEnvelope(max_pulse_amplitude_V=5.0, max_indentation_m=1e-9),
                               ConditioningLimits(min_site_distance_m=10e-9, max_actions_per_area=2,
                                                  max_actions=3))
    env.check_action(Action.pulse(5.0, 0.1), 0, (0.0, 0.0))
    with pytest.raises(SafetyViolation, match="pulse amplitude"):
        env.check_action(Action.pulse(5.5, 0.1), 0, (0.0, 0.0))
    with pytest.raises(SafetyViolation, match="pulse width"):
        env.check_action(Action.pulse(3.0, 2.0), 0, (0.0, 0.0))
    with pytest.raises(SafetyViolation, match="indentation depth"):
        env.check_action(Action.indent(1.2e-9), 0, (0.0, 0.0))
    with pytest.raises(SafetyViolation, match="tip x"):
        env.check_action(Action.pulse(3.0, 0.1), 0, (6e-6, 0.0))
    env.record(Action.indent(1e-9), 0, (0.0, 0.0))
    with pytest.raises(SafetyViolation, match="earlier indentation site"):
        env.check_action(Action.indent(1e-9), 0, (6e-9, 8e-9 - 1e-12))
    env.check_action(Action.indent(1e-9), 0, (6e-9, 8e-9))  # exactly 10 nm away
    env.check_action(Action.pulse(3.0, 0.1), 0, (1e-9, 0.0))  # pulses may reuse a site
    env.record(Action.pulse(3.0, 0.1), 0, (1e-9, 0.0))
    assert env.sites == [(0.0, 0.0)] and env.actions_in(0) == 2
    with pytest.raises(SafetyViolation, match="tip actions in area 0"):
        env.check_action(Action.pulse(3.0, 0.1), 0, (0.0, 0.0))
    env.record(Action.pulse(3.0, 0.1), 1, (0.0, 0.0))
    assert env.budget_left == 0
    with pytest.raises(SafetyViolation, match="tip actions in this experiment"):
        env.check_action(Action.pulse(3.0, 0.1), 2, (0.0, 0.0))
    env.check_action(Action.move(), 2, None)  # moving is always allowed


def test_readings_outside_the_limits_raise() -> None:
    env = ConditioningEnvelope(limits=ConditioningLimits(max_current_A=1e-9, z_range_m=(-1e-8, 1e-8)))
    env.check_readings(0.9e-9, 0.0)
    with pytest.raises(SafetyViolation, match="current"):
        env.check_readings(-1.1e-9, 0.0)
    with pytest.raises(SafetyViolation, match="Z reading"):
        env.check_readings(0.0, 1.1e-8)
    with pytest.raises(SafetyViolation, match="current"):
        env.check_readings(math.nan, 0.0)


def test_limits_validate_their_fields() -> None:
    for kwargs, name in (({"min_site_distance_m": 0}, "min_site_distance_m"),
                         ({"max_actions_per_area": 0}, "max_actions_per_area"),
                         ({"max_actions": 1.5}, "max_actions"),
                         ({"max_current_A": -1}, "max_current_A"),
                         ({"z_range_m": (1, 0)}, "z_range_m")):
        with pytest.raises(ValueError, match=name):
            ConditioningLimits(**kwargs)


def test_readings_are_converted_once_and_non_numbers_withdraw() -> None:
    class Shifty(float):
        calls = 0

        def __float__(self) -> float:
            type(self).calls += 1
            return 1e-12 if type(self).calls == 1 else 1e-6

    env = ConditioningEnvelope()
    env.check_readings(Shifty(0.0), 0.0)
    assert Shifty.calls == 1
    for current, z in ((None, 0.0), (1e-12, "high"), (1e-12, 200e-9)):
        with pytest.raises(SafetyViolation):
            env.check_readings(current, z)  # type: ignore[arg-type]
