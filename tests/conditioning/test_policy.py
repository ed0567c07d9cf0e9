"""Policies: the escalating ladder, the random baseline, user functions; Action validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qcodes_stmtip.conditioning.policy import (
    DEFAULT_LADDER,
    Action,
    EscalatingPolicy,
    PolicyContext,
    RandomPolicy,
    as_policy,
)


def ctx(actions=(), state="generic_defect", at_last=None, in_area=0, limit=6) -> PolicyContext:
    return PolicyContext("hsi100", state, 0.9, (), tuple(actions), at_last, in_area, limit, 40,
                         np.random.default_rng(0))


def test_escalating_climbs_one_rung_per_two_failures_then_moves() -> None:
    policy = EscalatingPolicy(attempts_per_level=2)
    taken: list[Action] = []
    chosen = []
    for _ in range(2 * len(DEFAULT_LADDER) + 1):
        a = policy.choose(ctx(taken, at_last="generic_defect" if taken else None, limit=100))
        chosen.append(a)
        taken.append(a)
    expected = [rung for rung in DEFAULT_LADDER for _ in range(2)]
    assert [a.describe() for a in chosen[:-1]] == [a.describe() for a in expected]
    assert chosen[-1].kind == "move"
    # after the move the ladder starts again at the bottom
    again = policy.choose(ctx(taken, at_last="generic_defect", limit=100))
    assert again.kind == "pulse" and again.amplitude_V == DEFAULT_LADDER[0].amplitude_V


def test_escalating_restarts_gently_when_the_state_changed() -> None:
    policy = EscalatingPolicy()
    history = [DEFAULT_LADDER[2]] * 3
    same = policy.choose(ctx(history, state="generic_defect", at_last="generic_defect", limit=100))
    assert same.describe() == DEFAULT_LADDER[1].describe()
    changed = policy.choose(ctx(history, state="rows", at_last="generic_defect", limit=100))
    assert changed.amplitude_V == DEFAULT_LADDER[0].amplitude_V and "restart" in changed.reason
    vague = policy.choose(ctx(history, state="uncertain", at_last="generic_defect", limit=100))
    assert vague.describe() == DEFAULT_LADDER[1].describe()  # an uncertain frame is no change
    # the restart counts as the first attempt of the new ladder
    nxt = policy.choose(ctx([*history, changed], state="rows", at_last="rows", limit=100))
    assert nxt.amplitude_V == DEFAULT_LADDER[0].amplitude_V
    nxt2 = policy.choose(ctx([*history, changed, nxt], state="rows", at_last="rows", limit=100))
    assert nxt2.amplitude_V == DEFAULT_LADDER[1].amplitude_V


def test_escalation_continues_across_a_move_forced_by_the_area_limit() -> None:
    policy = EscalatingPolicy()
    taken = list(DEFAULT_LADDER[:3]) * 2  # six pulses: the area limit
    forced = policy.choose(ctx(taken, at_last="generic_defect", in_area=6, limit=6))
    assert forced.kind == "move" and "limit" in forced.reason
    nxt = policy.choose(ctx([*taken, forced], at_last="generic_defect", in_area=0, limit=6))
    assert nxt.describe() == DEFAULT_LADDER[3].describe()  # the first indentation


def test_policies_move_when_the_area_limit_is_reached() -> None:
    assert EscalatingPolicy().choose(ctx(in_area=6, limit=6)).kind == "move"
    assert RandomPolicy(seed=1).choose(ctx(in_area=6, limit=6)).kind == "move"


def test_random_policy_draws_uniformly_within_its_ranges() -> None:
    policy = RandomPolicy(amplitude_V=(1.0, 6.0), width_s=(1e-3, 0.5), depth_m=(0.2e-9, 2e-9),
                          p_move=0.1, seed=3)
    draws = [policy.choose(ctx()) for _ in range(2000)]
    kinds = [a.kind for a in draws]
    assert 150 < kinds.count("move") < 250  # 200 expected
    assert 800 < kinds.count("pulse") < 1000 and 800 < kinds.count("indent") < 1000
    amps = np.array([a.amplitude_V for a in draws if a.kind == "pulse"])
    widths = np.array([a.width_s for a in draws if a.kind == "pulse"])
    depths = np.array([a.depth_m for a in draws if a.kind == "indent"])
    assert amps.min() >= 1.0 and amps.max() <= 6.0 and abs(amps.mean() - 3.5) < 0.2
    # log-uniform widths: the median is the geometric mean of the range
    assert widths.min() >= 1e-3 and widths.max() <= 0.5
    assert abs(np.log(np.median(widths)) - np.log(np.sqrt(0.5e-3))) < 0.3
    assert depths.min() >= 0.2e-9 and depths.max() <= 2e-9
    first = RandomPolicy(seed=3).choose(ctx())
    assert first == draws[0]
    with pytest.raises(ValueError, match="amplitude_V"):
        RandomPolicy(amplitude_V=(2.0, 1.0))
    with pytest.raises(ValueError, match="p_move"):
        RandomPolicy(p_move=1.0)


def test_user_function_is_a_policy() -> None:
    def pulse_only(c: PolicyContext) -> Action:
        return Action.pulse(3.0, 0.05)

    policy = as_policy(pulse_only)
    assert policy.name == "pulse_only"
    assert policy.choose(ctx()).amplitude_V == 3.0
    with pytest.raises(ValueError, match="policy"):
        as_policy(42)


def test_action_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="kind"):
        Action("zap")
    with pytest.raises(ValueError, match="amplitude_V"):
        Action("pulse", amplitude_V=math.nan, width_s=0.1)
    with pytest.raises(ValueError, match="depth_m"):
        Action("indent")
    with pytest.raises(ValueError, match="x_m"):
        Action("indent", depth_m=1e-9, x_m=0.0)
    with pytest.raises(ValueError, match="ladder"):
        EscalatingPolicy([Action.move()])
    with pytest.raises(ValueError, match="attempts_per_level"):
        EscalatingPolicy(attempts_per_level=0)
    assert Action.indent(1.5e-9).describe() == "indent 1.50 nm"
    assert Action.pulse(3, 0.05).describe() == "pulse 3.0 V × 50 ms"


def test_the_ladder_keys_on_action_tags_not_on_reason_text() -> None:
    """Issue 17: ``level`` used ``reason.startswith(...)``; a user policy whose reasons start with
    the same words, or a reworded message, must not change the algorithm."""
    from qcodes_stmtip.conditioning.policy import EXHAUSTED, RESTART, ActionTag

    policy = EscalatingPolicy(attempts_per_level=1)
    rung = DEFAULT_LADDER[0]
    # a user's actions whose reasons look like the ladder's own: no restart, no exhaustion
    lookalikes = [Action.pulse(rung.amplitude_V, rung.width_s, f"{RESTART} because I say so"),
                  Action.move(f"{EXHAUSTED}? no, the user just moved"),
                  Action.pulse(rung.amplitude_V, rung.width_s, "mine")]
    assert policy.level(ctx(lookalikes, at_last="generic_defect", limit=100)) == 2
    plain = [Action.pulse(rung.amplitude_V, rung.width_s, "x"), Action.move("y"),
             Action.pulse(rung.amplitude_V, rung.width_s, "z")]
    assert policy.level(ctx(plain, at_last="generic_defect", limit=100)) == 2
    # the tags do the work, whatever the reason says
    tagged = [Action("pulse", amplitude_V=3.0, width_s=0.05, reason="anything",
                     tag=ActionTag.LADDER_RESTART), Action.pulse(3.0, 0.05, "more")]
    assert policy.level(ctx(tagged, at_last="generic_defect", limit=100)) == 2
    assert policy.level(ctx([*tagged, Action("move", reason="", tag=ActionTag.LADDER_EXHAUSTED)],
                            at_last="generic_defect", limit=100)) == 0
    # the policy's own actions carry the tags (and still explain themselves in the reason)
    changed = policy.choose(ctx([rung], state="rows", at_last="generic_defect", limit=100))
    assert changed.tag == ActionTag.LADDER_RESTART and changed.reason.startswith(RESTART)
    top = policy.choose(ctx(list(DEFAULT_LADDER), at_last="generic_defect", limit=100))
    assert top.kind == "move" and top.tag == ActionTag.LADDER_EXHAUSTED
    assert Action.pulse(3.0, 0.05).tag == "" and Action.pulse(3.0, 0.05).as_dict()["tag"] == ""
    with pytest.raises(ValueError, match="tag"):
        Action("move", tag=3)  # type: ignore[arg-type]


# ---- the policy's decisions at their edges (issue 29: mutation testing) ----------------------
def test_actions_validate_describe_and_serialise() -> None:
    pulse = Action.pulse(3, 0.05, "why")
    assert (pulse.kind, pulse.amplitude_V, pulse.width_s, pulse.reason) == ("pulse", 3, 0.05, "why")
    assert pulse.touches_tip and Action.indent(1e-9, "r").touches_tip
    assert Action.indent(1e-9, "r").reason == "r" and Action.indent(1e-9).depth_m == 1e-9
    assert not Action.move("m").touches_tip and not Action.rescan("s").touches_tip
    assert (Action.move("m").reason, Action.rescan("s").reason) == ("m", "s")
    assert Action.move().describe() == "move" and Action.rescan().describe() == "rescan"
    assert Action.pulse(-3.25, 0.2).describe() == "pulse -3.2 V × 200 ms"
    d = Action("indent", depth_m=1e-9, x_m=1e-8, y_m=-2e-8, reason="r", tag="ladder_restart").as_dict()
    assert d == {"kind": "indent", "amplitude_V": d["amplitude_V"], "width_s": d["width_s"],
                 "depth_m": 1e-9, "x_m": 1e-8, "y_m": -2e-8, "reason": "r", "tag": "ladder_restart"}
    assert math.isnan(d["amplitude_V"]) and math.isnan(d["width_s"])
    from qcodes_stmtip.conditioning.policy import ActionTag

    tagged = Action("move", tag=ActionTag.LADDER_EXHAUSTED)
    assert type(tagged.tag) is str and tagged.tag == "ladder_exhausted"
    for kwargs, match in (
            ({"kind": "move", "tag": 1}, r"^Action.tag must be a string \(an ActionTag\), got 1$"),
            ({"kind": "pulse", "amplitude_V": 1.0, "width_s": math.inf},
             r"^Action.width_s of a pulse must be a finite number, got inf$"),
            ({"kind": "pulse", "amplitude_V": "1", "width_s": 0.1},
             r"^Action.amplitude_V of a pulse must be a finite number"),
            ({"kind": "indent", "depth_m": "1e-9"}, r"^Action.depth_m of an indent must be a finite"),
            ({"kind": "indent", "depth_m": 1e-9, "y_m": 0.0}, r"^Action.x_m and Action.y_m must be"),
            ({"kind": "zap"}, r"^Action.kind must be one of \('pulse', 'indent', 'move', 'rescan'\)")):
        with pytest.raises(ValueError, match=match):
            Action(**kwargs)
    assert Action("move", x_m=1e-7, y_m=2e-7).x_m == 1e-7  # a move may name its area centre
    assert Action("pulse", amplitude_V=1, width_s=1).width_s == 1  # ints are numbers


def test_context_tip_actions_and_function_policies() -> None:
    actions = (Action.move(), Action.pulse(3.0, 0.05), Action.rescan(), Action.indent(1e-9))
    assert ctx(actions).tip_actions == (actions[1], actions[3])

    def mine(context):
        return Action.rescan("mine")

    policy = as_policy(mine)
    assert policy.name == "mine" and policy.config() == {"name": "mine"}
    assert policy.choose(ctx()).reason == "mine"
    escalating = EscalatingPolicy()
    assert as_policy(escalating) is escalating
    with pytest.raises(ValueError, match="policy must have choose"):
        as_policy(42)


def test_legacy_tags_are_read_from_old_reason_texts() -> None:
    from qcodes_stmtip.conditioning.policy import EXHAUSTED, RESTART, legacy_tag

    assert legacy_tag("move", f"{EXHAUSTED} in this area") == "ladder_exhausted"
    assert legacy_tag("pulse", f"{RESTART}: state changed") == "ladder_restart"
    assert legacy_tag("indent", f"{RESTART}: state changed") == "ladder_restart"
    assert legacy_tag("move", f"{RESTART}: x") == ""
    assert legacy_tag("pulse", f"{EXHAUSTED} in this area") == ""
    assert legacy_tag("rescan", f"{RESTART}: x") == ""
    assert legacy_tag("pulse", "level 0 of 6") == ""


@pytest.mark.parametrize(("before", "now", "changed"), [
    (None, "rows", False), ("generic_defect", "generic_defect", False),
    ("generic_defect", "rows", True), ("uncertain", "rows", False), ("rows", "uncertain", False),
    ("unclassified", "rows", False), ("rows", "unclassified", False)])
def test_state_changed_needs_two_different_classified_states(before, now, changed) -> None:
    assert EscalatingPolicy.state_changed(ctx(state=now, at_last=before)) is changed


def test_escalating_choices_at_the_area_limit_restart_and_top() -> None:
    from qcodes_stmtip.conditioning.policy import ActionTag

    policy = EscalatingPolicy(attempts_per_level=1)
    move = policy.choose(ctx(in_area=6, limit=6))
    assert move.kind == "move" and move.reason == "6 actions in this area (the limit)"
    assert policy.choose(ctx(in_area=5, limit=6)).kind == "pulse"  # one below the limit
    restart = policy.choose(ctx([Action.pulse(4.0, 0.2)], state="rows", at_last="generic_defect"))
    assert restart.tag == ActionTag.LADDER_RESTART and restart.amplitude_V == DEFAULT_LADDER[0].amplitude_V
    assert restart.reason == "restart ladder: state changed to rows"
    top = [Action.pulse(3.0, 0.05)] * len(DEFAULT_LADDER)
    exhausted = policy.choose(ctx(top, limit=100))
    assert (exhausted.kind, exhausted.tag, exhausted.reason) == (
        "move", ActionTag.LADDER_EXHAUSTED, "ladder exhausted in this area")
    rung = policy.choose(ctx(top[:-1], limit=100))
    assert rung.depth_m == DEFAULT_LADDER[-1].depth_m and rung.reason == "level 5 of 6"
    assert rung.tag == ""
    # after the exhausted move the ladder starts again at the bottom
    assert policy.level(ctx([*top, exhausted], limit=100)) == 0
    assert policy.level(ctx([*top, exhausted, Action.pulse(3.0, 0.05)], limit=100)) == 1
    assert policy.config() == {"name": "escalating", "attempts_per_level": 1,
                               "ladder": [a.describe() for a in DEFAULT_LADDER]}
    with pytest.raises(ValueError, match="attempts_per_level must be an integer >= 1, got True"):
        EscalatingPolicy(attempts_per_level=True)
    with pytest.raises(ValueError, match="ladder must be a non-empty"):
        EscalatingPolicy([])
    assert EscalatingPolicy([Action.indent(1e-9)], attempts_per_level=3).ladder == (Action.indent(1e-9),)


def test_random_policy_ranges_and_config() -> None:
    for kwargs, match in (({"amplitude_V": (2.0, 1.0)}, "amplitude_V must be a"),
                          ({"width_s": (0.0, 0.1)}, "width_s must be a"),
                          ({"depth_m": (1e-9, math.inf)}, "depth_m must be a"),
                          ({"depth_m": (math.nan, 1e-9)}, "depth_m must be a"),
                          ({"p_move": 1.0}, r"p_move must be in \[0, 1\), got 1.0"),
                          ({"p_move": -0.1}, r"p_move must be in \[0, 1\)")):
        with pytest.raises(ValueError, match=match):
            RandomPolicy(**kwargs)
    fixed = RandomPolicy(amplitude_V=(2.0, 2.0), width_s=(0.1, 0.1), depth_m=(1e-9, 1e-9),
                         p_move=0.0, seed=3)
    kinds = [fixed.choose(ctx(limit=100)) for _ in range(60)]
    assert {a.kind for a in kinds} == {"pulse", "indent"}
    assert all(a.amplitude_V == 2.0 and a.width_s == pytest.approx(0.1) for a in kinds if a.kind == "pulse")
    assert all(a.depth_m == 1e-9 and a.reason == "random choice" for a in kinds if a.kind == "indent")
    assert fixed.config() == {"name": "random", "seed": 3, "amplitude_V": [2.0, 2.0],
                              "width_s": [0.1, 0.1], "depth_m": [1e-9, 1e-9], "p_move": 0.0}
    limit = fixed.choose(ctx(in_area=2, limit=2))
    assert limit.kind == "move" and limit.reason == "2 actions in this area (the limit)"
    mover = RandomPolicy(p_move=0.99, seed=1)
    moves = [mover.choose(ctx(limit=100)) for _ in range(50)]
    assert sum(a.kind == "move" for a in moves) >= 45
    assert all(a.reason == "random choice" for a in moves)


def test_default_reasons_names_and_the_context_a_function_policy_sees() -> None:
    assert [a.reason for a in (Action.pulse(1.0, 0.1), Action.indent(1e-9), Action.move(),
                               Action.rescan())] == ["", "", "", ""]
    assert Action.pulse(2.0, 1.0).describe() == "pulse 2.0 V × 1000 ms"
    assert Action.indent(1e-2).describe() == "indent 10000000.00 nm"

    class Callable:
        def __call__(self, context):
            return Action.rescan(f"saw {context.state}")

    policy = as_policy(Callable())
    assert policy.name == "function" and policy.choose(ctx(state="rows")).reason == "saw rows"
    with pytest.raises(ValueError, match=r"^ladder must be a non-empty sequence of pulse/indent Actions$"):
        EscalatingPolicy([Action.rescan()])
    pulses = [a for a in (RandomPolicy(p_move=0.0, seed=s).choose(ctx(limit=100)) for s in range(20))
              if a.kind == "pulse"]
    assert pulses and all(a.reason == "random choice" for a in pulses)
