"""One explicit conditioning state: built by ``__init__``, loaded whole by ``resume_from``."""

from __future__ import annotations

import json
from dataclasses import fields
from types import SimpleNamespace

import numpy as np

from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.conditioning.policy import Action, EscalatingPolicy
from qcodes_stmtip.conditioning.state import ConditioningState

from .conftest import BOUNDS

#: Fields that describe where a resumed state came from (a live, fresh run has none).
PROVENANCE = {"resumed_from", "previous_run_ids", "elapsed_offset"}


def _experiment(rig, **kwargs) -> ConditioningExperiment:
    bad = SimpleNamespace(frame_label="generic_defect", tip_label="generic_defect", tip_change_lines=(),
                          frame_start_label="generic_defect")
    policy = EscalatingPolicy((Action.pulse(2.5, 0.02), Action.indent(0.5e-9)), attempts_per_level=1)
    return ConditioningExperiment(rig.stm, GroundTruthClassifier("hsi100", lambda: bad), policy,
                                  surface="hsi100", area_bounds=BOUNDS, area_spacing_m=250e-9, **kwargs)


def _plain(value):
    """Comparable form: Actions hold NaN for unused fields (compare their JSON), and the
    dataset keeps sites to about 15 digits (compare 12)."""
    if isinstance(value, list) and value and isinstance(value[0], Action):
        return [json.dumps({k: f"{v:.12g}" if isinstance(v, float) else v for k, v in a.as_dict().items()})
                for a in value]
    return value


def test_resume_restores_every_field_of_the_state(db, rig_factory) -> None:
    """A tip that never gets good: pulse, indent, move (ladder exhausted), pulse, indent, then
    ``max_frames`` with the last indentation still waiting for its ``state_after``."""
    rig = rig_factory(seed=3)
    live = _experiment(rig, max_frames=5, early_abort=True)  # every frame stopped early
    assert live.state == ConditioningState(area_bounds=BOUNDS, area_spacing_m=250e-9)  # what __init__ builds
    result = live.run(db)
    assert result.outcome == "max_frames"

    resumed = _experiment(rig_factory(seed=4), early_abort=True)
    resumed.resume_from(result.run_id)
    state, default = resumed.state, ConditioningState()
    for f in fields(ConditioningState):
        # a field a resume forgot to restore would keep its default
        assert _plain(getattr(state, f.name)) != _plain(getattr(default, f.name)), f.name
        if f.name not in PROVENANCE:
            assert _plain(getattr(state, f.name)) == _plain(getattr(live.state, f.name)), f.name
    assert state.resumed_from is not None and state.resumed_from["run_id"] == result.run_id
    assert state.previous_run_ids == [result.run_id]
    assert state.elapsed_offset > 0
    assert state.pending_after == state.last_action_index == 4 and state.area == state.moves == 1
    assert state.stopped_frames == live.stopped_frames == 5
    # the attributes of the experiment are views of its state
    assert resumed.area is state.area and resumed.actions is state.actions
    resumed.frames += 1
    assert state.frames == 6
    # the safety budget is rebuilt from the same actions
    assert resumed.envelope.actions == live.envelope.actions == 4
    np.testing.assert_allclose(np.array(resumed.envelope.sites), np.array(live.envelope.sites), rtol=1e-12)
