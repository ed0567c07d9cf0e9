"""Action tags are stored with the run and read back; runs recorded before tags still load."""

from __future__ import annotations

import json

import numpy as np
from qcodes.dataset import Measurement
from qcodes.parameters import ManualParameter, Parameter
from qcodes.validators import Numbers, Strings

from qcodes_stmtip.conditioning.policy import EXHAUSTED, RESTART, Action, ActionTag
from qcodes_stmtip.conditioning.records import CONFIG_KEY, RunRecorder, load_conditioning_run


class _NoMonitor:
    """Registers nothing: an action-only run is enough here."""

    def register(self, meas: Measurement, index: Parameter) -> None:
        pass


ACTIONS = (
    Action("pulse", amplitude_V=3.0, width_s=0.05, reason="restart ladder: state changed",
           tag=ActionTag.LADDER_RESTART),
    Action.pulse(3.5, 0.1, "level 1 of 6"),
    Action("move", reason="ladder exhausted in this area", tag=ActionTag.LADDER_EXHAUSTED),
    Action.indent(1e-9, "restart ladder (a user's wording, untagged)"),
)


def test_tags_round_trip_through_the_records(db) -> None:
    recorder = RunRecorder(ManualParameter("scan_image", vals=Numbers()), _NoMonitor())
    meas = Measurement(exp=db, name="tags")
    recorder.register(meas)
    with meas.run() as saver:
        saver.dataset.add_metadata(CONFIG_KEY, json.dumps({"surface": "hsi100"}))
        recorder.saver = saver
        for i, action in enumerate(ACTIONS):
            recorder.write_action(i, action, site=(0.0, 0.0) if action.touches_tip else None, area=0,
                                  elapsed_s=float(i), state_before="generic_defect", status="done")
    run = load_conditioning_run(saver.run_id)
    assert [a.action.tag for a in run.actions] == [a.tag for a in ACTIONS]
    assert [a.action.reason for a in run.actions] == [a.reason for a in ACTIONS]


def test_a_run_recorded_before_tags_existed_loads_with_tags_read_from_its_reasons(db) -> None:
    """The old layout had no ``action_tag``: its ladder restarts are recognised by their reason."""
    index = ManualParameter("action_index", vals=Numbers())
    num = {n: ManualParameter(n, vals=Numbers()) for n in (
        "action_amplitude", "action_width", "action_depth", "action_x", "action_y", "action_area",
        "action_time", "action_elapsed")}
    text = {n: ManualParameter(n, vals=Strings()) for n in (
        "action_kind", "action_state_before", "action_reason", "action_status")}
    meas = Measurement(exp=db, name="old layout")
    meas.register_parameter(index)
    for p in (*num.values(), *text.values()):
        meas.register_parameter(p, setpoints=(index,))
    with meas.run() as saver:
        saver.dataset.add_metadata(CONFIG_KEY, json.dumps({"surface": "hsi100"}))
        for i, action in enumerate(ACTIONS):
            saver.add_result(
                (index, i), (text["action_kind"], action.kind),
                (num["action_amplitude"], action.amplitude_V), (num["action_width"], action.width_s),
                (num["action_depth"], action.depth_m), (num["action_x"], np.nan),
                (num["action_y"], np.nan), (num["action_area"], 0), (num["action_time"], 0.0),
                (num["action_elapsed"], float(i)), (text["action_state_before"], "generic_defect"),
                (text["action_reason"], action.reason), (text["action_status"], "done"))
    run = load_conditioning_run(saver.run_id)
    assert [a.action.kind for a in run.actions] == ["pulse", "pulse", "move", "indent"]
    assert run.actions[0].action.reason.startswith(RESTART)
    assert run.actions[2].action.reason.startswith(EXHAUSTED)
    # legacy reasons give the tags the ladder of that time keyed on
    assert [a.action.tag for a in run.actions] == [ActionTag.LADDER_RESTART, "", ActionTag.LADDER_EXHAUSTED,
                                                   ActionTag.LADDER_RESTART]
