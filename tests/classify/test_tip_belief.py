"""Evidence across frames: the running P(bad tip)."""

from __future__ import annotations

import math

import pytest

from qcodes_stmtip.classify.tip_belief import TipBelief


def test_two_moderately_good_frames_weigh_more_than_one() -> None:
    b = TipBelief(after_action=0.5, change_per_frame=0.05, base_rate=0.5)
    first = b.update(0.15)
    second = b.update(0.15)
    assert first.belief == pytest.approx(0.15)
    assert second.belief < first.belief / 3
    assert second.carried == pytest.approx(0.95 * first.belief + 0.05 * 0.5)
    assert "frame p(bad)=0.150" in second.rule and b.frames == 2


def test_a_frame_at_the_base_rate_carries_no_evidence() -> None:
    b = TipBelief(after_action=0.4, change_per_frame=0.0, base_rate=0.3)
    assert b.update(0.3).belief == pytest.approx(0.4)


def test_reset_on_action_and_on_a_flagged_tip_change() -> None:
    b = TipBelief()
    for _ in range(4):
        b.update(0.02)
    assert b.belief < 0.001
    b.reset()
    assert b.belief == 0.5 and b.frames == 0
    b.update(0.02)
    step = b.update(0.9, tip_changed=True)
    assert step.carried == 0.5 and "tip change flagged" in step.rule
    assert step.belief == pytest.approx(0.9)


def test_a_frame_without_p_bad_adds_nothing() -> None:
    b = TipBelief(change_per_frame=0.0)
    b.update(0.1)
    step = b.update(math.nan)
    assert step.belief == pytest.approx(0.1) and "nothing added" in step.rule


@pytest.mark.parametrize("kw", [{"after_action": 0.0}, {"base_rate": 1.0}, {"change_per_frame": -0.1},
                                {"after_action": math.nan}, {"base_rate": True}])
def test_refuses_impossible_settings(kw: dict) -> None:
    with pytest.raises(ValueError, match="TipBelief"):
        TipBelief(**kw)
