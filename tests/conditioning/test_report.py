"""Reports of a stored experiment, and the ``stmtip condition`` / ``stmtip report`` commands."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec

from qcodes_stmtip.cli import main
from qcodes_stmtip.conditioning.experiment import ConditioningExperiment
from qcodes_stmtip.conditioning.policy import EscalatingPolicy
from qcodes_stmtip.conditioning.report import (
    frame_marks,
    plot_gallery,
    summarise,
    summary_text,
    truth_agreement,
    write_report,
)

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


# ---- classifier against the stored truth (issue 13) --------------------------------------------
AGREE_LINE = re.compile(r"^classifier vs simulator truth \(good/bad\): (\d+) of (\d+) frames agree$", re.M)


def _frame(index: int, state: str, quality: str, truth: str):
    from qcodes_stmtip.conditioning.records import FrameRecord

    return FrameRecord(index, state, quality, 0.9, 0, 0.0, 0.0, 10.0 * index, -1, truth)


def _run(frames):
    from qcodes_stmtip.conditioning.records import ConditioningRun

    config = {"surface": "hsi100", "policy": {"name": "escalating"}, "clock": "simulated",
              "target": {"classes": ["individual_atoms", "dimers_asymmetries"]}, "frame_size_m": 6e-9}
    return ConditioningRun([1], "guid", config, {"outcome": "good_tip", "reason": "", "time_to_good_s": 40.0},
                           list(frames))


def test_truth_agreement_counts_uncertain_as_not_agreeing_and_marks_every_disagreement(tmp_path) -> None:
    run = _run([_frame(0, "individual_atoms", "good", "generic_defect"),  # false good
                _frame(1, "uncertain", "uncertain", "generic_defect"),
                _frame(2, "generic_defect", "bad", "generic_defect"),
                _frame(3, "generic_defect", "bad", "rows"),  # false bad (rows is a good class)
                _frame(4, "individual_atoms", "good", "individual_atoms"),
                _frame(5, "unclassified", "unclassified", "generic_defect"),  # not counted
                _frame(6, "uncertain", "bad", "generic_defect"),  # a flagged tip change: bad, agrees
                _frame(7, "individual_atoms", "bad", "rows")])  # flagged, but the truth is good
    agreement = truth_agreement(run)
    assert (agreement.agree, agreement.frames, agreement.uncertain) == (3, 7, 1)
    assert (agreement.called_good_truth_bad, agreement.called_bad_truth_good) == (1, 2)
    assert agreement.not_agreeing == (0, 1, 3, 7)
    text = summary_text(summarise(run))
    assert AGREE_LINE.findall(text) == [("3", "7")]
    assert "uncertain never agrees" in text and "1 called good on a bad tip" in text
    assert "2 called bad on a good tip" in text

    marks = frame_marks(run)
    assert marks[0].outline == "tab:red" and marks[0].caption == "classifier: good · truth: bad"
    assert marks[0].colour != "tab:green"  # a target state, but the truth says bad
    assert marks[3].outline == "tab:red" and marks[3].caption == "classifier: bad · truth: good"
    assert marks[1].outline and marks[1].caption == "classifier: uncertain · truth: bad"
    assert marks[6].outline is None and marks[6].caption == "tip change flagged → bad"
    assert marks[7].caption == "tip change flagged → bad\nclassifier: bad · truth: good"
    assert marks[7].colour == "tab:red"
    assert [i for i, m in marks.items() if m.outline] == [0, 1, 3, 7]
    assert marks[4].colour == "tab:green" and marks[4].outline is None and not marks[4].caption

    images = {i: np.random.default_rng(i).normal(size=(16, 16)) for i in range(8)}
    path = plot_gallery(run, images, tmp_path / "g.png")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    red = (np.abs(rgb - [214, 39, 40]).sum(axis=2) < 30).sum()  # tab:red outlines and captions
    assert red > 500


def test_a_run_without_truth_has_no_comparison() -> None:
    run = _run([_frame(0, "individual_atoms", "good", ""), _frame(1, "generic_defect", "bad", "")])
    assert truth_agreement(run) is None
    summary = summarise(run)
    assert summary["truth_agreement"] is None and not AGREE_LINE.search(summary_text(summary))
    assert all(m.outline is None for m in frame_marks(run).values())
    assert frame_marks(run)[0].colour == "tab:green"


def test_report_of_a_run_with_truth_lists_every_frame_the_classifier_got_wrong(rig, db, tmp_path) -> None:
    from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
    from qcodes_stmtip.taxonomy import GOOD_CLASSES

    oracle = GroundTruthClassifier("hsi100", rig.microscope.ground_truth, error_rate=0.5, seed=3)
    result = ConditioningExperiment(rig.stm, oracle, EscalatingPolicy(), surface="hsi100", area_bounds=BOUNDS,
                                    max_frames=12, truth=rig.microscope.ground_truth,
                                    clock=rig.microscope.sim_time, clock_name="simulated").run(db)
    files = write_report(result.run_id, tmp_path / "report")
    ds = load_by_run_spec(captured_run_id=result.run_id)
    quality = ds.get_parameter_data("tip_quality")["tip_quality"]["tip_quality"]
    truth = ds.get_parameter_data("frame_true_state")["frame_true_state"]["frame_true_state"]
    verdicts = [(str(q), "good" if t in GOOD_CLASSES["hsi100"] else "bad") for q, t in zip(quality, truth,
                                                                                        strict=True)]
    agree = sum(q == t for q, t in verdicts)
    assert agree < len(verdicts)  # the oracle errs on half the frames: something to mark
    line = f"classifier vs simulator truth (good/bad): {agree} of {len(verdicts)} frames agree"
    assert files.data["truth_agreement"]["line"] == line
    page = files.html.read_text()
    assert line in page and 'id="truth"' in page
    assert page.count('<tr class="disagree">') + page.count('<tr class="uncertain">') == len(verdicts) - agree
