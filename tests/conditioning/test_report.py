"""Reports of a stored experiment, and the ``stmtip condition`` / ``stmtip report`` commands."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec

from qcodes_stmtip.cli import main
from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
from qcodes_stmtip.conditioning.policy import EscalatingPolicy
from qcodes_stmtip.conditioning.report import summary_text, write_report

BOUNDS = ((-1.5e-6, 1.5e-6), (-1.5e-6, 1.5e-6))


def test_report_files_match_the_stored_run(rig, db, tmp_path: Path) -> None:
    result = ConditioningExperiment(rig.stm, rig.oracle(), EscalatingPolicy(), surface="hsi100",
                                    area_bounds=BOUNDS, clock=rig.microscope.sim_time,
                                    clock_name="simulated").run(db)
    files = write_report(result.run_id, tmp_path / "report")
    summary = json.loads(files.summary.read_text())
    assert summary["outcome"] == result.outcome == "good_tip"
    assert summary["frames"] == result.frames and summary["tip_actions"] == result.tip_actions
    assert summary["time_to_good_s"] == pytest.approx(result.time_to_good_s)
    assert summary["first_state"] == "generic_defect"
    for png in (files.timeline, files.gallery):
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 400
    page = files.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 2 and base64.b64decode(embedded[0]) == files.timeline.read_bytes()
    assert "simulated min" in summary_text(summary) and "<table>" in page
    assert page.count("<tr><td>") == sum(1 for _ in range(result.tip_actions + result.moves))
    assert "\\u00" not in page and "\\u00" not in files.summary.read_text()  # × and → as they are


def test_summary_says_so_when_the_first_and_last_states_agree() -> None:
    summary = {"run_ids": [1], "surface": "hsi100", "policy": "escalating", "classifier": {},
               "outcome": "good_tip", "reason": "", "frames": 2, "good_frames": 2, "tip_actions": 0,
               "pulses": 0, "indentations": 0, "moves": 0, "first_state": "individual_atoms",
               "final_state": "individual_atoms", "time_to_good_s": 0.0, "clock": "wall",
               "actions_by_kind": {}, "refused": []}
    text = summary_text(summary)
    assert "individual_atoms → individual_atoms" not in text
    assert "tip state: individual_atoms in the first and the last frame" in text


def test_report_of_a_run_that_is_not_an_experiment_fails_clearly(db, tmp_path: Path) -> None:
    from qcodes.dataset import Measurement
    from qcodes.parameters import ManualParameter

    x = ManualParameter("x")
    meas = Measurement(exp=db)
    meas.register_parameter(x)
    with meas.run() as saver:
        saver.add_result((x, 1.0))
    with pytest.raises(ValueError, match="not a conditioning experiment"):
        write_report(saver.run_id, tmp_path)


def test_cli_dry_run_with_a_real_bundle_sends_no_tip_command_and_reports(rig, tiny_bundle, tmp_path,
                                                                         capsys) -> None:
    db = tmp_path / "cli.db"
    rig.commands.clear()
    code = main(["condition", "--port", str(rig.server.port), "--surface", "hsi100", "--model",
                 str(tiny_bundle), "--db", str(db), "--dry-run", "--bounds=-1.5e-6,1.5e-6,-1.5e-6,1.5e-6",
                 "--report", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "connected: Nanonis" in out and "outcome: " in out and "report: " in out
    tip = {"Bias.Pulse", "TipShaper.Start", "TipShaper.PropsSet", "FolMe.XYPosSet", "Scan.FrameSet",
           "Motor.StartMove", "ZCtrl.Withdraw", "ZCtrl.ZPosSet", "Bias.Set", "ZCtrl.OnOffSet"}
    assert not tip & set(rig.commands), sorted(tip & set(rig.commands))
    assert "Scan.FrameDataGrab" in rig.commands
    initialise_or_create_database_at(db)
    ds = load_by_run_spec(captured_run_id=1)
    meta = json.loads(ds.metadata["tip_monitor"])
    assert meta["inference_path"].startswith("tensorflow")  # the real monitor classified it
    states = ds.get_parameter_data("tip_state")["tip_state"]["tip_state"]
    assert len(states) >= 1
    assert main(["report", "1", "--db", str(db), "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "run1.html").is_file()
    assert main(["report", "1", "--db", str(tmp_path / "missing.db")]) == 1
