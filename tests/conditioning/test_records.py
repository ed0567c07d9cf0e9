"""A hard crash mid-experiment loses no recorded frame or action; the run resumes from the database."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment

from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.conditioning.policy import Action, EscalatingPolicy
from qcodes_stmtip.conditioning.records import load_conditioning_run

BOUNDS = ((-1.5e-6, 1.5e-6), (-1.5e-6, 1.5e-6))
#: The crashing experiment: a classifier that never sees a good tip, a one-attempt ladder
#: (pulse, indent, move, ...) and a process that dies (os._exit) inside the 2nd indentation.
CRASH_SCRIPT = """
import os, sys
from types import SimpleNamespace
from qcodes.dataset import initialise_or_create_database_at, load_or_create_experiment
from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.conditioning.policy import Action, EscalatingPolicy
from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.sim.controller import serve_simulator

initialise_or_create_database_at(sys.argv[1])
exp = load_or_create_experiment("crash", sample_name="simulated")
server = serve_simulator("hsi100", seed=5, time_acceleration=200.0, initial_tip="generic_defect")
stm = NanonisSTM("stm", port=server.port)
stm.pixels(32); stm.lines(32); stm.set_frame(0.0, 0.0, 20e-9, 20e-9, 0.0)
bad = SimpleNamespace(frame_label="generic_defect", tip_label="generic_defect", tip_change_lines=())
oracle = GroundTruthClassifier("hsi100", lambda: bad)
indents = []
real_shaper = stm.tip_shaper
def dying_shaper(depth_m, **kw):
    indents.append(depth_m)
    if len(indents) == 2:
        print("CRASH", flush=True)
        os._exit(3)
    real_shaper(depth_m, **kw)
stm.tip_shaper = dying_shaper
ladder = (Action.pulse(2.5, 0.02), Action.indent(0.5e-9))
policy = EscalatingPolicy(ladder, attempts_per_level=1)
ConditioningExperiment(stm, oracle, policy, surface="hsi100", area_bounds=BOUNDS_HERE,
                       echo=lambda line: print(line, flush=True)).run(exp)
print("NOT REACHED", flush=True)
""".replace("BOUNDS_HERE", repr(BOUNDS))


def test_hard_crash_loses_nothing_and_the_experiment_resumes(tmp_path: Path, rig_factory) -> None:
    db = tmp_path / "crash.db"
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASH_SCRIPT))
    proc = subprocess.run([sys.executable, str(script), str(db)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    printed = proc.stdout.splitlines()
    assert printed[-1] == "CRASH" and "NOT REACHED" not in proc.stdout
    frames_printed = [line for line in printed if line.startswith("frame ")]
    actions_printed = [line for line in printed if line.startswith(("pulse", "indent", "move"))]

    initialise_or_create_database_at(db)
    crashed = load_conditioning_run(1)
    assert not crashed.finished  # no outcome: the process died
    # every frame and every action the experiment reported is in the database
    assert len(crashed.frames) == len(frames_printed) == 5
    assert [a.action.kind for a in crashed.actions] == ["pulse", "indent", "move", "pulse", "indent"]
    assert len(actions_printed) == len(crashed.actions)
    assert all(f.state == "generic_defect" for f in crashed.frames)
    last = crashed.actions[-1]  # written before it was sent, then the crash
    assert last.status == "done" and last.state_after == "" and last.area == 1
    assert crashed.actions[0].state_after == "generic_defect"
    # a crashed run still has a report
    from qcodes_stmtip.conditioning.report import write_report

    files = write_report(1, tmp_path / "crashed_report")
    assert files.data["outcome"].startswith("unfinished") and files.data["frames"] == 5
    assert files.data["indentations"] == 2 and len(files.data["indentation_sites_m"]) == 2

    # resume against the (still running, here: a fresh) microscope with the real loop
    rig = rig_factory(seed=5)
    exp = load_or_create_experiment("crash", sample_name="simulated")
    lines: list[str] = []
    resumed = ConditioningExperiment(rig.stm, GroundTruthClassifier("hsi100", rig.microscope.ground_truth),
                                     EscalatingPolicy((Action.pulse(3.0, 0.05),), attempts_per_level=1),
                                     surface="hsi100", area_bounds=BOUNDS, echo=lines.append)
    resumed.resume_from(1)
    # the recorded indentation sites, area and budget carry over
    first_indent = crashed.actions[1].action
    assert resumed.envelope.sites[0] == (first_indent.x_m, first_indent.y_m)
    assert len(resumed.envelope.sites) == 2 and resumed.area == 1 and resumed.envelope.actions == 4
    assert resumed.envelope.actions_in(1) == 2
    result = resumed.run(exp)
    assert result.outcome == "good_tip", "\n".join(lines)
    assert result.run_ids == [1, result.run_id] and result.run_id == 2

    chain = load_conditioning_run(result.run_id)
    assert chain.run_ids == [1, 2] and chain.finished
    assert [f.index for f in chain.frames] == list(range(len(chain.frames)))
    assert [a.index for a in chain.actions] == list(range(len(chain.actions)))
    assert chain.frames[5].area == 1 and chain.frames[5].after_action == 4
    # the crashed indentation gets its "after" state from the first resumed frame
    assert chain.actions[4].state_after == chain.frames[5].state
    assert chain.frames[5].elapsed_s >= crashed.frames[-1].elapsed_s
    assert chain.frames[5].centre_x_m == crashed.frames[-1].centre_x_m
    assert chain.frames[5].centre_y_m == crashed.frames[-1].centre_y_m


def test_a_run_that_moves_exports_as_one_frame_grid(rig, db, tmp_path: Path) -> None:
    """Conditioning moves to fresh areas; the run still exports to xarray and netCDF."""
    from types import SimpleNamespace

    import numpy as np
    import xarray as xr
    from qcodes.dataset import load_by_run_spec

    bad = SimpleNamespace(frame_label="generic_defect", tip_label="generic_defect",
                          tip_change_lines=())
    monitor = GroundTruthClassifier("hsi100", lambda: bad)
    experiment = ConditioningExperiment(
        rig.stm, monitor, lambda c: Action.move("fresh area"), surface="hsi100",
        area_bounds=BOUNDS, clock=rig.microscope.sim_time, max_frames=3)
    result = experiment.run(db)
    assert result.frames == 3
    ds = load_by_run_spec(captured_run_id=result.run_id)
    x = ds.to_xarray_dataset()
    name = rig.stm.scan_image.register_name
    assert x[name].dims == ("frame_index", f"{rig.stm.name}_scan_line",
                            f"{rig.stm.name}_scan_pixel")
    assert x[name].shape == (3, 32, 32)
    np.testing.assert_array_equal(x["frame_index"].values, [0, 1, 2])
    centres = x[f"{rig.stm.name}_frame_centre_x"].values
    assert len(set(centres.tolist())) >= 2  # the tip moved between frames
    np.testing.assert_allclose(centres, x["frame_centre_x"].values)
    assert list(x["tip_state"].values) == ["generic_defect"] * 3
    ds.export("netcdf", path=str(tmp_path))
    with xr.load_dataset(ds.export_info.export_paths["nc"]) as back:
        np.testing.assert_array_equal(back[name].values, x[name].values)
        np.testing.assert_allclose(back[f"{rig.stm.name}_frame_centre_x"].values, centres)
