"""The conditioning loop on the simulated microscope: success, every safety limit, dry run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from qcodes.dataset import load_by_run_spec

from qcodes_stmtip.conditioning.envelope import ConditioningLimits
from qcodes_stmtip.conditioning.experiment import ConditioningExperiment, Target
from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.conditioning.policy import Action, EscalatingPolicy
from qcodes_stmtip.conditioning.records import (
    CONFIG_KEY,
    OUTCOME_KEY,
    load_conditioning_run,
    load_frame_images,
)
from qcodes_stmtip.taxonomy import GOOD_CLASSES

#: Area bounds inside the simulator's ±2 µm scan range, m (as the conftest's).
BOUNDS = ((-1.5e-6, 1.5e-6), (-1.5e-6, 1.5e-6))

#: Commands that touch the tip or move it or the frame.
TIP_COMMANDS = {"Bias.Pulse", "TipShaper.Start", "TipShaper.PropsSet", "FolMe.XYPosSet",
                "Scan.FrameSet", "Motor.StartMove", "ZCtrl.Withdraw", "ZCtrl.ZPosSet",
                "ZCtrl.OnOffSet", "Bias.Set", "AutoApproach.OnOffSet", "ZCtrl.Home"}


def always(label: str) -> SimpleNamespace:
    """A ground truth that always says ``label`` (a classifier that never sees a good tip)."""
    return SimpleNamespace(frame_label=label, tip_label=label, tip_change_lines=())


def experiment(rig, policy, **kwargs) -> ConditioningExperiment:
    kwargs.setdefault("area_bounds", BOUNDS)
    kwargs.setdefault("clock", rig.microscope.sim_time)
    return ConditioningExperiment(rig.stm, kwargs.pop("monitor", None) or rig.oracle(), policy,
                                  surface="hsi100", **kwargs)


def test_escalating_policy_reaches_a_good_tip_for_a_fixed_seed(rig, db) -> None:
    lines: list[str] = []
    exp = experiment(rig, EscalatingPolicy(), truth=rig.microscope.ground_truth, echo=lines.append)
    result = exp.run(db)
    assert result.outcome == "good_tip", "\n".join(lines)
    assert rig.microscope.ground_truth().tip_label in GOOD_CLASSES["hsi100"]
    assert 1 <= result.tip_actions <= 40 and result.time_to_good_s > 0
    assert "Bias.Pulse" in rig.commands and not rig.microscope.withdrawn

    run = load_conditioning_run(result.run_id)
    assert run.finished and run.outcome["outcome"] == "good_tip"
    assert [f.index for f in run.frames] == list(range(result.frames))
    assert run.frames[0].state == "generic_defect" == run.frames[0].true_state
    assert [f.state for f in run.frames[-2:]] == [f.true_state for f in run.frames[-2:]]
    assert all(f.state in GOOD_CLASSES["hsi100"] for f in run.frames[-2:])
    tip_actions = [a for a in run.actions if a.action.touches_tip]
    assert len(tip_actions) == result.tip_actions
    for a in tip_actions:  # state after = the state of the next frame
        nxt = next(f for f in run.frames if f.after_action == a.index)
        assert a.state_after == nxt.state and a.status == "done"
        assert a.action.x_m is not None and a.elapsed_s > 0
    config = json.loads(load_by_run_spec(captured_run_id=result.run_id).metadata[CONFIG_KEY])
    assert config["policy"]["name"] == "escalating" and config["clock"] == "wall"
    images = load_frame_images(run)
    assert sorted(images) == list(range(result.frames)) and images[0].shape == (32, 32)
    assert np.isfinite(images[0]).all() and np.ptp(images[0]) > 10e-12


def _bad_forever() -> GroundTruthClassifier:
    return GroundTruthClassifier("hsi100", lambda: always("generic_defect"))


@pytest.mark.parametrize(
    ("policy", "safety", "limits", "match", "sent"),
    [
        (lambda c: Action.pulse(6.0, 0.05), {"max_pulse_amplitude_V": 5.0}, {}, "pulse amplitude", 0),
        (lambda c: Action.pulse(3.0, 0.5), {"max_pulse_width_s": 0.2}, {}, "pulse width", 0),
        (lambda c: Action.indent(3e-9), {}, {}, "indentation depth", 0),
        (lambda c: Action("indent", depth_m=0.3e-9, x_m=0.0, y_m=-15e-9), {}, {},
         "earlier indentation site", 1),
        (lambda c: Action.pulse(2.0, 0.01), {}, {"max_actions_per_area": 2}, "tip actions in area 0", 2),
        (lambda c: Action.move() if c.actions_in_area else Action.pulse(2.0, 0.01), {},
         {"max_actions": 3}, "tip actions in this experiment", 3),
    ],
    ids=["pulse-amplitude", "pulse-width", "indent-depth", "site-distance", "per-area", "budget"])
def test_each_action_limit_refuses_records_and_withdraws(db, rig_factory, policy, safety, limits,
                                                          match, sent) -> None:
    rig = rig_factory(safety=safety or None)
    exp = experiment(rig, policy, monitor=_bad_forever(), limits=ConditioningLimits(**limits))
    result = exp.run(db)
    assert result.outcome == "refused" and match in result.reason
    assert rig.microscope.withdrawn and rig.commands[-1] == "ZCtrl.Withdraw"
    tip_sends = rig.commands.count("Bias.Pulse") + rig.commands.count("TipShaper.Start")
    assert tip_sends == sent  # the refused action never reached the controller
    run = load_conditioning_run(result.run_id)
    refused = run.actions[-1]
    assert refused.refused and match in refused.status
    assert sum(a.status == "done" and a.action.touches_tip for a in run.actions) == sent
    assert run.outcome["outcome"] == "refused"


@pytest.mark.parametrize(("limits", "match"), [
    ({"max_current_A": 10e-12}, "current"),  # the setpoint is 50 pA
    ({"z_range_m": (1e-9, 2e-9)}, "Z reading"),
])
def test_current_and_z_limits_withdraw_before_anything_else(rig, db, limits, match) -> None:
    exp = experiment(rig, EscalatingPolicy(), limits=ConditioningLimits(**limits))
    result = exp.run(db)
    assert result.outcome == "limit_tripped" and match in result.reason
    assert result.frames == 0 and rig.microscope.withdrawn
    assert "Scan.Action" not in rig.commands and "ZCtrl.Withdraw" in rig.commands
    meta = load_by_run_spec(captured_run_id=result.run_id).metadata
    assert json.loads(meta[OUTCOME_KEY])["outcome"] == "limit_tripped"


def test_dry_run_scans_and_classifies_but_sends_nothing_that_touches_the_tip(rig, db) -> None:
    changes = rig.microscope.dynamics.changes
    rig.commands.clear()
    lines: list[str] = []
    result = experiment(rig, EscalatingPolicy(), dry_run=True, echo=lines.append).run(db)
    assert result.outcome == "dry_run" and "would pulse 3.0 V" in result.reason
    assert any(line.startswith("WOULD pulse") for line in lines)
    assert "Scan.Action" in rig.commands and "Scan.FrameDataGrab" in rig.commands
    assert not TIP_COMMANDS & set(rig.commands), sorted(TIP_COMMANDS & set(rig.commands))
    assert rig.microscope.dynamics.changes == changes or not rig.microscope.withdrawn
    run = load_conditioning_run(result.run_id)
    assert len(run.frames) == 1 and run.frames[0].state == "generic_defect"
    assert run.actions[-1].status.startswith("dry-run") and run.actions[-1].action.kind == "pulse"


def test_content_frames_relocate_and_inconclusive_frames_rescan(db, rig_factory) -> None:
    labels = iter(["step_edge", "tip_change", "tip_change", "individual_atoms", "individual_atoms"])
    rig = rig_factory("au111", initial_tip="individual_atoms")
    oracle = GroundTruthClassifier("au111", lambda: always(next(labels)))
    exp = ConditioningExperiment(rig.stm, oracle, EscalatingPolicy(), surface="au111",
                                 area_bounds=BOUNDS)
    result = exp.run(db)
    assert result.outcome == "good_tip" and result.tip_actions == 0 and result.moves == 1
    run = load_conditioning_run(result.run_id)
    assert [a.action.kind for a in run.actions] == ["move", "rescan", "rescan", "rescan"]
    assert run.frames[1].area == 1 and run.frames[1].centre_x_m != run.frames[0].centre_x_m \
        or run.frames[1].centre_y_m != run.frames[0].centre_y_m
    assert "Bias.Pulse" not in rig.commands and "TipShaper.Start" not in rig.commands


def test_a_move_to_a_fresh_area_keeps_the_users_scan_angle(rig, db) -> None:
    rig.stm.set_frame(0.0, 0.0, 20e-9, 20e-9, 45.0)
    exp = experiment(rig, lambda c: Action.move("always"), monitor=_bad_forever(), max_frames=2)
    exp.run(db)
    assert exp.moves >= 1
    cx, cy, _, _, angle = rig.microscope.settings.frame
    assert angle == pytest.approx(45.0)
    assert (cx, cy) != (0.0, 0.0)


def test_target_judges_results() -> None:
    from qcodes_stmtip.monitor.results import TipStateResult

    target = Target.for_surface("hsi100", min_confidence=0.6)

    def res(state, p, tc=0.0, quality="good", others=None):
        return TipStateResult(0, state, quality, {state: p, **(others or {})}, (state,), tc, 0.0)

    assert target.judge(res("rows", 0.7)) == "good"
    assert target.judge(res("rows", 0.5)) == "inconclusive"  # a target state, weak evidence
    # the target states' summed probability counts: a good tip between two good classes
    assert target.judge(res("uncertain", 0.35, others={"rows": 0.35, "individual_atoms": 0.3})) == "good"
    assert target.judge(res("rows", 0.9, quality="bad")) == "bad"  # the verdict is the tip quality
    assert target.judge(res("rows", 0.9, quality="uncertain")) == "inconclusive"
    assert target.judge(res("rows", 0.9, tc=0.8)) == "good"  # the tip-change gate is off by default ...
    gated = Target.for_surface("hsi100", max_tip_change_probability=0.5)
    assert gated.judge(res("rows", 0.9, tc=0.8)) == "inconclusive"  # ... and on when asked for
    assert target.judge(res("generic_defect", 0.9, quality="bad")) == "bad"
    assert target.judge(res("uncertain", 0.3, quality="uncertain")) == "inconclusive"
    atoms = Target.for_surface("hsi100", classes={"individual_atoms"})
    assert atoms.judge(res("rows", 0.9)) == "off_target"  # a good tip, not the target: never "bad"
    with pytest.raises(ValueError, match="max_belief_bad"):
        Target.for_surface("hsi100", max_belief_bad=0.0)
    with pytest.raises(ValueError, match="consecutive"):
        Target.for_surface("hsi100", consecutive=0)
    with pytest.raises(ValueError, match="overlap"):
        Target(frozenset({"step_edge"}), content_classes=frozenset({"step_edge"}))


def test_running_out_of_fresh_areas_stops_and_withdraws(rig, db) -> None:
    tight = ((-0.05e-6, 0.35e-6), (-0.05e-6, 0.05e-6))  # room for 2 areas 300 nm apart
    exp = experiment(rig, lambda c: Action.move("always"), monitor=_bad_forever(), area_bounds=tight)
    result = exp.run(db)
    assert result.outcome == "no_area_left" and result.moves == 1
    assert rig.microscope.withdrawn and rig.commands.count("Scan.FrameSet") == 1 + 2
    run = load_conditioning_run(result.run_id)
    assert [a.action.kind for a in run.actions] == ["move", "move"]
    assert run.actions[-1].refused and "no fresh area" in run.actions[-1].status
    assert {f.area for f in run.frames} == {0, 1}


@pytest.mark.parametrize(("middle", "frames", "tip_actions"), [
    (SimpleNamespace(frame_label="rows", tip_label="rows", tip_change_lines=(9,)), 3, 0),  # tip change
    (always("generic_defect"), 4, 1),  # bad: the count restarts after the action
])
def test_good_frame_count_survives_inconclusive_frames_but_not_bad_ones(rig, db, middle, frames,
                                                                        tip_actions) -> None:
    seen = iter([always("rows"), middle, always("rows"), always("rows")])
    oracle = GroundTruthClassifier("hsi100", lambda: next(seen))
    result = experiment(rig, EscalatingPolicy(), monitor=oracle).run(db)
    assert result.outcome == "good_tip"
    assert (result.frames, result.tip_actions) == (frames, tip_actions)


def _sequence(labels: list[str]) -> GroundTruthClassifier:
    """The oracle on a fixed sequence of frame labels, then ``generic_defect`` for ever."""
    seen = iter([always(label) for label in labels])
    return GroundTruthClassifier("hsi100", lambda: next(seen, always("generic_defect")))


@pytest.mark.parametrize(("consecutive", "labels", "frames"), [
    (1, ["rows"], 1),
    (1, ["generic_defect", "rows"], 2),
    (2, ["rows", "rows"], 2),
    (2, ["rows", "generic_defect", "rows", "rows"], 4),  # good–bad–good: not yet two in a row
    (3, ["rows", "rows", "rows"], 3),
    (3, ["rows", "rows", "generic_defect", "rows", "rows", "rows"], 6),
    (3, ["rows", "generic_defect", "rows", "rows", "generic_defect", "rows", "rows", "rows"], 8),
], ids=["1", "1-after-bad", "2", "2-good-bad-good", "3", "3-good-good-bad", "3-twice-broken"])
def test_stop_rule_counts_target_consecutive_good_frames_and_a_bad_frame_resets_it(
        rig, db, consecutive: int, labels: list[str], frames: int) -> None:
    """The policy only rescans (never touches the tip), so only the bad frame can reset the count."""
    exp = experiment(rig, lambda c: Action.rescan("policy rescans"), monitor=_sequence(labels),
                     target=Target.for_surface("hsi100", consecutive=consecutive),
                     max_frames=len(labels) + 3)
    result = exp.run(db)
    assert result.outcome == "good_tip", result.reason
    assert result.frames == frames and result.tip_actions == 0
    assert result.reason.startswith(f"{consecutive} consecutive good frames (rows")
    assert rig.commands.count("Bias.Pulse") == 0


def test_bad_frames_without_an_action_never_end_in_a_good_tip(rig, db) -> None:
    """Good and bad frames alternate: with ``consecutive=2`` the loop runs out of frames."""
    labels = ["rows", "generic_defect"] * 3
    exp = experiment(rig, lambda c: Action.rescan("policy rescans"), monitor=_sequence(labels),
                     max_frames=len(labels))
    result = exp.run(db)
    assert result.outcome == "max_frames" and result.frames == len(labels)


def test_a_good_tip_that_is_not_the_target_is_off_target_never_bad() -> None:
    """The demo's target is dimers/atoms: a confident ``rows`` frame has tip_quality good, so the
    loop calls it ``off_target`` (and acts), not ``bad``."""
    from qcodes_stmtip.monitor.results import TipStateResult

    target = Target(frozenset({"individual_atoms", "dimers_asymmetries"}))
    rows = TipStateResult(0, "rows", "good", {"rows": 0.95}, ("rows",), 0.0, 0.0)
    defect = TipStateResult(1, "generic_defect", "bad", {"generic_defect": 0.95}, ("x",), 0.0, 0.0)
    assert target.judge(rows) == "off_target"
    assert target.judge(defect) == "bad"


def _with_tip_changes(labels: list[str | None]) -> GroundTruthClassifier:
    """The oracle on ``labels``; None is a ``rows`` frame with a tip change (inconclusive)."""
    tc = SimpleNamespace(frame_label="rows", tip_label="rows", tip_change_lines=(9,))
    seen = iter([tc if label is None else always(label) for label in labels])
    return GroundTruthClassifier("hsi100", lambda: next(seen, always("generic_defect")))


def test_mostly_inconclusive_evidence_ends_inconclusive_not_good_tip(rig, db) -> None:
    """Two good frames in a row are not enough when three inconclusive ones came between them
    since the last tip action: the loop says it cannot confirm a good tip."""
    exp = experiment(rig, lambda c: Action.rescan("policy rescans"), max_rescans=3,
                     monitor=_with_tip_changes(["rows", None, None, None, "rows"]),
                     target=Target.for_surface("hsi100", consecutive=2), max_frames=8)
    result = exp.run(db)
    assert result.outcome == "inconclusive", result.reason
    assert "3 of the 5 frames since the last tip action were inconclusive" in result.reason
    assert result.time_to_good_s is None
    run = load_conditioning_run(result.run_id)
    assert [f.frame_verdict for f in run.frames] == ["good", "inconclusive", "inconclusive",
                                                     "inconclusive", "good"]
    # with fewer inconclusive frames than good ones the same rule stops on a good tip
    exp = experiment(rig, lambda c: Action.rescan("policy rescans"), max_rescans=3,
                     monitor=_with_tip_changes(["rows", None, "rows"]),
                     target=Target.for_surface("hsi100", consecutive=2), max_frames=8)
    assert exp.run(db).outcome == "good_tip"


def test_target_fields_are_checked_and_kept_as_frozensets() -> None:
    """Issue 29 (mutation testing): each bound of each field, and the exact messages."""
    t = Target(["rows", "individual_atoms"], content_classes=["step_edge"])
    assert t.classes == frozenset({"rows", "individual_atoms"}) and type(t.classes) is frozenset
    assert t.content_classes == frozenset({"step_edge"}) and type(t.content_classes) is frozenset
    rows = frozenset({"rows"})
    for value in (0, 0.0, 1, 1.0):
        assert Target(rows, min_confidence=value).min_confidence == value
    assert Target(rows, consecutive=1).consecutive == 1
    assert Target(rows, max_tip_change_probability=1.0).max_tip_change_probability == 1.0
    for kwargs, match in (
            ({"classes": frozenset()}, r"^Target.classes must name at least one acceptable tip state$"),
            ({"min_confidence": 1.01}, r"^Target.min_confidence must be in \[0, 1\], got 1.01$"),
            ({"min_confidence": -0.01}, r"^Target.min_confidence must be in \[0, 1\]"),
            ({"min_confidence": "0.5"}, r"^Target.min_confidence must be in \[0, 1\], got '0.5'$"),
            ({"consecutive": 0}, r"^Target.consecutive must be an integer >= 1, got 0$"),
            ({"consecutive": True}, r"^Target.consecutive must be an integer >= 1, got True$"),
            ({"consecutive": 2.0}, r"^Target.consecutive must be an integer >= 1, got 2.0$"),
            ({"max_tip_change_probability": 0.0},
             r"^Target.max_tip_change_probability must be in \(0, 1\], got 0.0$"),
            ({"max_tip_change_probability": 1.5}, r"^Target.max_tip_change_probability must be in"),
            ({"max_tip_change_probability": "1"}, r"^Target.max_tip_change_probability must be in"),
            ({"content_classes": frozenset({"rows", "step_edge"})},
             r"^Target.classes and content_classes overlap: \['rows'\]$")):
        kwargs.setdefault("classes", frozenset({"rows", "individual_atoms"}))
        with pytest.raises(ValueError, match=match):
            Target(**kwargs)


def test_judge_at_its_edges() -> None:
    from qcodes_stmtip.monitor.results import TipStateResult

    target = Target(frozenset({"rows"}), min_confidence=0.6, max_tip_change_probability=0.5,
                    content_classes=frozenset({"step_edge"}))

    def res(state, probabilities, tc=0.0, quality="good"):
        return TipStateResult(0, state, quality, probabilities, (state,), tc, 0.0)

    assert target.judge(res("rows", {"rows": 0.9}, tc=0.5)) == "inconclusive"  # flag at == threshold
    assert target.judge(res("rows", {"rows": 0.9}, tc=0.49)) == "good"
    assert target.judge(res("rows", {"rows": 0.9}, tc=float("nan"))) == "good"  # no tip-change network
    assert target.judge(res("rows", {"rows": 0.6})) == "good"  # confidence == min_confidence
    assert target.judge(res("rows", {"generic_defect": 0.9})) == "inconclusive"  # no probability
    assert target.judge(res("step_edge", {"step_edge": 0.9})) == "content"
    assert target.judge(res("tip_change", {"rows": 0.9})) == "inconclusive"
    assert target.judge(res("unclassified", {})) == "inconclusive"
    assert target.judge(res("generic_defect", {"generic_defect": 0.9}, quality="good")) == "off_target"
    assert target.judge(res("generic_defect", {"generic_defect": 0.9}, quality="bad")) == "bad"
    assert target.judge(res("rows", {"rows": 0.9}, quality="bad")) == "bad"  # the quality decides
    assert target.judge(res("step_edge", {"step_edge": 0.9}, quality="bad")) == "content"


def test_the_loop_echoes_one_line_per_frame_and_its_actions(rig, db) -> None:
    """The console line of each frame (state, probability, verdict, why) and the time to good."""
    lines: list[str] = []
    exp = experiment(rig, lambda c: Action.rescan("policy rescans"), echo=lines.append,
                     monitor=_sequence(["rows", "generic_defect", "rows", "rows"]), max_frames=7)
    result = exp.run(db)
    assert [line for line in lines if line.startswith("frame ")] == [
        "frame   0  area  0  rows                 p=1.00  good",
        "frame   1  area  0  generic_defect       p=1.00  bad",
        "frame   2  area  0  rows                 p=1.00  good",
        "frame   3  area  0  rows                 p=1.00  good"]
    assert result.outcome == "good_tip" and result.time_to_good_s is not None
    assert result.reason == "2 consecutive good frames (rows, p=1.00)"


def test_an_off_target_frame_resets_the_good_streak(rig, db) -> None:
    """individual_atoms is a good tip but not this target's: like a bad frame, it breaks the run."""
    exp = experiment(rig, lambda c: Action.rescan("policy rescans"),
                     monitor=_sequence(["rows", "individual_atoms", "rows", "rows"]),
                     target=Target(frozenset({"rows"}), consecutive=2), max_frames=7)
    result = exp.run(db)
    assert result.outcome == "good_tip" and result.frames == 4


def test_inconclusive_frames_are_rescanned_at_most_max_rescans_times_in_a_row(rig, db) -> None:
    """max_rescans=2: two rescans, then the policy (a move here), then rescans again."""
    exp = experiment(rig, lambda c: Action.move("policy moves"), max_rescans=2,
                     monitor=_with_tip_changes([None] * 5), max_frames=5)
    result = exp.run(db)
    assert result.outcome == "max_frames"
    run = load_conditioning_run(result.run_id)
    assert [a.action.kind for a in run.actions] == ["rescan", "rescan", "move", "rescan", "rescan"]


class _CalibratedOracle(GroundTruthClassifier):
    """The oracle's labels with a calibrated P(bad) per frame, as a calibrated bundle gives them."""

    def __init__(self, labels: list[str], p_bad: list[float]) -> None:
        seen = iter([always(label) for label in labels])
        super().__init__("hsi100", lambda: next(seen, always("generic_defect")))
        self.p_bad = iter(p_bad)

    def _keep(self, result, datasaver) -> None:
        from dataclasses import replace

        super()._keep(replace(result, p_bad=next(self.p_bad, 0.9)), datasaver)


@pytest.mark.parametrize(("p_bad", "frames"), [
    ([0.001, 0.01], 2),  # one clearly good frame is not enough (a confidently wrong frame happens): two are
    ([0.15, 0.15, 0.15], 3),  # moderately good frames add up: 0.15, then 0.034, then 0.011
    ([0.15, 0.5, 0.15, 0.15], 4),  # a frame at the base rate adds nothing but does not reset
])
def test_a_calibrated_classifier_stops_on_the_evidence_of_the_frames_since_the_last_action(
        rig, db, p_bad: list[float], frames: int) -> None:
    lines: list[str] = []
    oracle = _CalibratedOracle(["rows"] * len(p_bad), p_bad)
    result = experiment(rig, lambda c: Action.rescan("policy rescans"), monitor=oracle, echo=lines.append,
                        max_frames=len(p_bad) + 2).run(db)
    assert result.outcome == "good_tip" and result.frames == frames, "\n".join(lines)
    assert "P(bad tip)=" in result.reason
    run = load_conditioning_run(result.run_id)
    beliefs = [f.belief_bad for f in run.frames]
    assert beliefs[-1] <= 0.03
    assert all(b > 0.03 or n == 0 for n, b in enumerate(beliefs[:-1]))  # only the first frame may be that low
    assert [f.p_bad for f in run.frames] == pytest.approx(p_bad)
    assert "stop, good tip" in run.frames[-1].rule
    assert all("rescan to confirm" in f.rule for f in run.frames[:-1])


def test_a_tip_action_resets_the_evidence(rig, db) -> None:
    # good evidence, then a bad frame the policy pulses on: the good frames before the pulse no longer count
    oracle = _CalibratedOracle(["rows", "generic_defect", "rows", "rows", "rows"], [0.15, 0.95, 0.15, 0.15, 0.15])
    result = experiment(rig, lambda c: Action.pulse(2.0, 0.01), monitor=oracle, max_frames=8).run(db)
    run = load_conditioning_run(result.run_id)
    assert result.outcome == "good_tip" and result.tip_actions == 1 and result.frames == 5
    assert run.frames[2].belief_bad == pytest.approx(0.15)  # restarted from 0.5 after the pulse
    assert "policy" in run.frames[1].rule and "pulse" in run.frames[1].rule
