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


# ---- both signs, exact boundaries and the violation's fields (issue 29: mutation testing) ----
def _violation(call) -> SafetyViolation:
    with pytest.raises(SafetyViolation) as info:
        call()
    return info.value


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_current_reading_limit_holds_for_both_signs(sign: float) -> None:
    env = ConditioningEnvelope(limits=ConditioningLimits(max_current_A=10e-9))
    env.check_readings(sign * 10e-9, 0.0)  # the limit itself passes
    exc = _violation(lambda: env.check_readings(sign * 11e-9, 0.0))
    assert (exc.quantity, exc.requested, exc.limit, exc.unit) == (
        "|current| reading", sign * 11e-9, 10e-9, "A")
    exc = _violation(lambda: env.check_readings(sign * math.inf, 0.0))
    assert exc.quantity == "|current| reading" and exc.requested == sign * math.inf


@pytest.mark.parametrize(("z", "ok"), [(-150e-9, True), (150e-9, True), (0.0, True),
                                       (-151e-9, False), (151e-9, False), (math.nan, False)])
def test_z_reading_range_includes_its_ends(z: float, ok: bool) -> None:
    env = ConditioningEnvelope()
    if ok:
        env.check_readings(0.0, z)
        return
    exc = _violation(lambda: env.check_readings(0.0, z))
    assert (exc.quantity, exc.limit, exc.unit) == ("Z reading", (-150e-9, 150e-9), "m")
    assert exc.requested == z or (math.isnan(z) and math.isnan(exc.requested))


def test_action_budgets_count_exactly_and_name_the_next_action() -> None:
    env = ConditioningEnvelope(limits=ConditioningLimits(max_actions_per_area=2, max_actions=3))
    assert env.budget_left == 3 and env.actions_in(0) == 0
    pulse = Action.pulse(2.0, 0.01)
    for area in (0, 0):
        env.check_action(pulse, area, None)
        env.record(pulse, area, None)
    assert env.actions_in(0) == 2 and env.actions == 2 and env.budget_left == 1
    exc = _violation(lambda: env.check_action(pulse, 0, None))
    assert (exc.quantity, exc.requested, exc.limit) == ("tip actions in area 0", 3, 2)
    env.check_action(pulse, 1, None)  # another area still has room
    env.record(pulse, 1, None)
    assert env.area_actions == {0: 2, 1: 1} and env.budget_left == 0
    exc = _violation(lambda: env.check_action(pulse, 2, None))
    assert (exc.quantity, exc.requested, exc.limit) == ("tip actions in this experiment", 4, 3)
    env.check_action(Action.move("fresh area"), 2, None)  # moves and rescans always pass
    env.check_action(Action.rescan("again"), 2, None)
    env.record(Action.move("fresh area"), 2, None)
    assert env.actions == 3 and 2 not in env.area_actions
    env.actions = 10
    assert env.budget_left == 0


def test_indentation_sites_and_their_distance() -> None:
    env = ConditioningEnvelope(limits=ConditioningLimits(min_site_distance_m=10e-9))
    assert env.nearest_site((0.0, 0.0)) is None and env.site_is_free((0.0, 0.0))
    env.record(Action.pulse(2.0, 0.01), 0, (1e-9, 1e-9))  # a pulse leaves no crater
    assert env.sites == [] and env.nearest_site((0.0, 0.0)) is None
    env.record(Action.indent(1e-9), 0, None)  # no site known: counted, not placed
    assert env.sites == [] and env.actions == 2
    env.record(Action.indent(1e-9), 0, (3e-9, 4e-9))
    env.record(Action.indent(1e-9), 1, (100e-9, 0.0))
    assert env.sites == [(3e-9, 4e-9), (100e-9, 0.0)]
    assert env.nearest_site((0.0, 0.0)) == pytest.approx(5e-9)
    assert env.nearest_site((100e-9, 12e-9)) == pytest.approx(12e-9)
    assert env.nearest_site((3e-9, -4e-9)) == pytest.approx(8e-9)  # differences, not sums
    assert not env.site_is_free((0.0, 0.0)) and env.site_is_free((3e-9, 14e-9))
    assert env.site_is_free((13e-9, 4e-9))  # exactly 10 nm from (3, 4) nm
    exc = _violation(lambda: env.check_action(Action.indent(1e-9), 0, (0.0, 0.0)))
    assert exc.quantity == "distance to the nearest earlier indentation site"
    assert exc.requested == pytest.approx(5e-9) and exc.limit == ">= 1e-08" and exc.unit == "m"
    env.check_action(Action.pulse(2.0, 0.01), 0, (0.0, 0.0))  # pulses may reuse a site


def test_limits_fields_and_as_dict() -> None:
    limits = ConditioningLimits(min_site_distance_m=5e-9, max_actions_per_area=1, max_actions=1,
                                max_current_A=1e-9, z_range_m=[-1e-9, 2e-9])
    assert limits.z_range_m == (-1e-9, 2e-9)
    assert limits.as_dict() == {"min_site_distance_m": 5e-9, "max_actions_per_area": 1,
                                "max_actions": 1, "max_current_A": 1e-9,
                                "z_range_m": (-1e-9, 2e-9)}
    for kwargs, match in (
            ({"min_site_distance_m": 0.0}, r"min_site_distance_m must be a finite number > 0, got 0.0"),
            ({"max_current_A": True}, r"max_current_A must be a finite number > 0, got True"),
            ({"max_current_A": "1"}, r"max_current_A must be a finite number > 0"),
            ({"max_current_A": math.inf}, r"max_current_A must be a finite number > 0"),
            ({"max_actions": 0}, r"max_actions must be an integer >= 1, got 0"),
            ({"max_actions_per_area": 1.0}, r"max_actions_per_area must be an integer >= 1"),
            ({"max_actions_per_area": False}, r"max_actions_per_area must be an integer >= 1"),
            ({"z_range_m": (1e-9, 1e-9)}, r"z_range_m must be finite with low < high"),
            ({"z_range_m": (0.0, math.inf)}, r"z_range_m must be finite with low < high"),
            ({"z_range_m": (math.nan, 1.0)}, r"z_range_m must be finite with low < high"),
            ({"z_range_m": None}, r"z_range_m must be a \(low, high\) pair"),
            ({"z_range_m": (1.0, 2.0, 3.0)}, r"z_range_m must be a \(low, high\) pair")):
        with pytest.raises(ValueError, match=f"^ConditioningLimits.{match}"):
            ConditioningLimits(**kwargs)
    assert ConditioningLimits(max_actions=1, max_actions_per_area=1).max_actions == 1
