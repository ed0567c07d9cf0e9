"""Early abort: the conditioning loop stops a scan on a confidently bad partial frame or a
flagged tip change, acts, and stores everything (issue 14). The oracle judges partial frames
from the simulator's truth of the lines acquired. The simulator runs at ×20 (10 ms of wall
time a line): simulated time is wall time × 20, so the watcher's few milliseconds of requests
per frame stay small against a 0.32 s frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qcodes.dataset import load_by_run_spec

from qcodes_stmtip.conditioning.envelope import ConditioningLimits
from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.conditioning.policy import Action, EscalatingPolicy
from qcodes_stmtip.conditioning.records import CONFIG_KEY, load_conditioning_run, load_frame_images
from qcodes_stmtip.monitor.scanwatch import WATCH_METADATA_KEY

from .conftest import BOUNDS
from .test_experiment import TIP_COMMANDS, always

#: Simulated seconds per wall second of these tests' microscopes.
SLOW = 20.0
#: Commands that act on the tip or move it: never while a scan runs.
ACTING = {"Bias.Pulse", "TipShaper.Start", "FolMe.XYPosSet", "Motor.StartMove", "Scan.FrameSet"}


def _experiment(rig, policy, **kwargs) -> ConditioningExperiment:
    kwargs.setdefault("area_bounds", BOUNDS)
    kwargs.setdefault("clock", rig.microscope.sim_time)
    kwargs.setdefault("early_abort", True)
    kwargs.setdefault("watch_every_lines", 4)
    return ConditioningExperiment(rig.stm, kwargs.pop("monitor", None) or rig.oracle(), policy,
                                  surface="hsi100", **kwargs)


def _scanner_states(rig) -> list[tuple[str, str]]:
    """Log ``(command, scanner state)`` of every request as it arrives."""
    seen: list[tuple[str, str]] = []
    dispatch = rig.server.dispatch

    def logged(request):
        seen.append((request.command, rig.microscope.scanner.state))
        return dispatch(request)

    rig.server.dispatch = logged
    return seen


def test_a_mid_scan_tip_change_stops_the_scan_and_nothing_is_lost(db, rig_factory) -> None:
    rig = rig_factory(seed=2, initial_tip="individual_atoms", time_acceleration=SLOW)
    rig.microscope.schedule_tip_change(12, "generic_defect")  # the first frame's apex breaks at line 12
    states = _scanner_states(rig)
    lines: list[str] = []
    result = _experiment(rig, EscalatingPolicy(), truth=rig.microscope.ground_truth,
                         echo=lines.append).run(db)
    assert result.outcome == "good_tip", "\n".join(lines)
    assert result.stopped_frames >= 2
    run = load_conditioning_run(result.run_id)
    first, second = run.frames[0], run.frames[1]
    # frame 0: the change flagged after line 12 (a window or two late on a busy machine)
    assert first.stopped and first.verdict == "tip_change" and 12 <= first.decided_line <= 24
    assert "stopped at line" in lines[0] and "tip_change" in lines[0]
    # frame 1 (a rescan of the inconclusive frame) starts bad: stopped at the first check
    assert second.stopped and second.verdict == "bad" and second.state == "generic_defect"
    assert 8 <= second.decided_line < 32
    # the actions carry the line count their frame was decided on
    rescan, pulse = run.actions[0], run.actions[1]
    assert rescan.action.kind == "rescan" and rescan.lines == first.decided_line
    assert pulse.action.kind == "pulse" and pulse.lines == second.decided_line
    assert pulse.state_before == "generic_defect" and pulse.status == "done"
    assert all(a.lines is not None for a in run.actions)
    # the stopped frames are stored with their NaN lines
    images = load_frame_images(run)
    for f in (first, second):
        finite = np.all(np.isfinite(images[f.index]), axis=1)
        assert f.decided_line <= finite.sum() < 32 and not finite[finite.sum():].any()
    xds = load_by_run_spec(captured_run_id=result.run_id).to_xarray_dataset()
    assert xds["tip_partial_verdict"].values[0] == "tip_change"
    assert xds["tip_window_verdict"].shape == (result.frames, 7)
    meta = load_by_run_spec(captured_run_id=result.run_id).metadata
    config = json.loads(meta[CONFIG_KEY])
    assert config["early_abort"] and config["watch_every_lines"] == 4
    assert config["partial_rule"]["bad_classes"] == ["generic_defect"]
    assert json.loads(meta[WATCH_METADATA_KEY])["stopped"] == result.stopped_frames
    # the tip is only acted on when no scan runs
    acting = [(c, s) for c, s in states if c in ACTING]
    assert acting and all(s == "idle" for _, s in acting), acting


def test_early_abort_spends_less_simulated_time_per_bad_frame(db, rig_factory) -> None:
    elapsed = {}
    for abort in (False, True):
        rig = rig_factory(seed=4 + abort, time_acceleration=SLOW)
        monitor = GroundTruthClassifier("hsi100", lambda: always("generic_defect"))
        result = _experiment(rig, lambda c: Action.pulse(2.0, 0.01), monitor=monitor, max_frames=4,
                             early_abort=abort, watch_every_lines=4 if abort else None).run(db)
        assert result.outcome == "max_frames" and result.frames == 4
        assert result.stopped_frames == (4 if abort else 0)
        elapsed[abort] = result.elapsed_s
    assert elapsed[True] < 0.6 * elapsed[False], elapsed  # 8–12 of 32 lines per frame


@pytest.mark.parametrize(("policy", "limits", "match", "sent"), [
    (lambda c: Action.pulse(2.0, 0.01), {"max_actions_per_area": 2}, "tip actions in area 0", 2),
    (lambda c: Action.move() if c.actions_in_area else Action.pulse(2.0, 0.01), {"max_actions": 3},
     "tip actions in this experiment", 3),
], ids=["per-area", "budget"])
def test_the_envelope_still_bounds_every_action(db, rig_factory, policy, limits, match, sent) -> None:
    rig = rig_factory(time_acceleration=SLOW)
    states = _scanner_states(rig)
    monitor = GroundTruthClassifier("hsi100", lambda: always("generic_defect"))
    result = _experiment(rig, policy, monitor=monitor, limits=ConditioningLimits(**limits)).run(db)
    assert result.outcome == "refused" and match in result.reason
    assert rig.microscope.withdrawn and rig.commands[-1] == "ZCtrl.Withdraw"
    assert rig.commands.count("Bias.Pulse") == sent
    run = load_conditioning_run(result.run_id)
    assert all(f.stopped and f.verdict == "bad" for f in run.frames)
    refused = run.actions[-1]
    assert refused.refused and refused.lines == run.frames[-1].decided_line
    assert all(s == "idle" for c, s in states if c in TIP_COMMANDS), \
        [(c, s) for c, s in states if c in TIP_COMMANDS and s != "idle"]


def test_watching_without_abort_stores_checks_but_never_stops(db, rig_factory) -> None:
    rig = rig_factory(time_acceleration=SLOW)
    monitor = GroundTruthClassifier("hsi100", lambda: always("generic_defect"))
    result = _experiment(rig, lambda c: Action.pulse(2.0, 0.01), monitor=monitor, max_frames=2,
                         early_abort=False, watch_every_lines=8).run(db)
    run = load_conditioning_run(result.run_id)
    assert result.stopped_frames == 0
    assert all(not f.stopped and f.verdict == "bad" and f.decided_line <= 16 for f in run.frames)
    assert all(a.lines == 32 for a in run.actions)  # decided on the whole frame


def test_early_abort_needs_a_classifier_that_watches_scans(rig) -> None:
    class Plain:  # a TipClassifier without the scan-watch half
        classes = ("a",)
        parameters: list = []

        def register(self, meas, frame_index): ...
        def submit(self, frame_index, frame, datasaver=None, *, timestamp=None): ...
        def result(self, frame_index, timeout=None): ...
        def flush(self, datasaver=None): ...
        def finish(self, datasaver=None): ...
        def metadata(self): ...
        def close(self): ...

    with pytest.raises(TypeError, match="watches scans"):
        _experiment(rig, EscalatingPolicy(), monitor=Plain())
    with pytest.raises(ValueError, match="watch_every_lines"):
        _experiment(rig, EscalatingPolicy(), watch_every_lines=0)
