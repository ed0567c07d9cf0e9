"""Merging several labellers' votes into mean votes that ``classify.labels`` reads."""

import csv

import numpy as np
import pytest

from qcodes_stmtip.classify.labels import VOTE_COLUMNS, load_labels
from qcodes_stmtip.labelling.merge import column_title, merge_votes
from qcodes_stmtip.labelling.votes import VoteStore


def _sheet(path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, {row["Name"]: row for row in reader}


def _images(out, names):
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        np.save(out / "images" / name, np.arange(64.0).reshape(8, 8) * (i + 1))


def test_hsi100_mean_votes_in_the_papers_layout(tmp_path):
    a = VoteStore(tmp_path, "alice", "hsi100")
    b = VoteStore(tmp_path, "bob", "hsi100")
    c = VoteStore(tmp_path, "carol", "hsi100")
    a.vote("f1.npy", ["rows", "tip_change"], session="2015Jan01-000000")
    b.vote("f1.npy", ["rows"], session="2015Jan01-000000")
    c.vote("f1.npy", ["dimers_asymmetries"], session="2015Jan01-000000")
    a.vote("f2.npy", ["generic_defect"], session="s2")
    b.skip("f2.npy", session="s2")  # a skip is no response
    c.vote("f2.npy", ["generic_defect", "tip_change"], session="s2")
    a.vote("f3.npy", ["individual_atoms"], session="s2")
    b.vote("f3.npy", ["rows"], session="s2")  # tie: ambiguous
    b.skip("f4.npy", session="s2")  # nobody voted: not in the sheet
    c.vote("f5.npy", ["rows"], session="s3")
    c.undo()  # undone: not in the sheet

    result = merge_votes(tmp_path, "hsi100")
    assert result.labellers == ("alice", "bob", "carol")
    fields, rows = _sheet(tmp_path / "labels.csv")
    assert fields[:3] == ["session", "Name", "No. Responses"]
    assert tuple(fields[3:9]) == VOTE_COLUMNS
    assert sorted(rows) == ["f1.npy", "f2.npy", "f3.npy"]
    f1 = rows["f1.npy"]
    assert f1["session"] == "2015Jan01-000000" and f1["No. Responses"] == "3"
    assert float(f1["Rows"]) == pytest.approx(2 / 3, abs=1e-6)
    assert float(f1["Tip Change"]) == pytest.approx(1 / 3, abs=1e-6)
    assert float(f1["Asymmetries"]) == float(f1["Dimers"]) == pytest.approx(1 / 3, abs=1e-6)
    assert float(f1["Individual Atoms"]) == 0.0 and float(f1["Bad/Blurry"]) == 0.0
    f2 = rows["f2.npy"]
    assert f2["No. Responses"] == "2"
    assert float(f2["Bad/Blurry"]) == 1.0 and float(f2["Tip Change"]) == 0.5

    _images(tmp_path, sorted(rows))
    frames = load_labels(tmp_path, surface="hsi100")
    by_name = {p.name: i for i, p in enumerate(frames.paths)}
    classes = frames.classes
    assert frames.labels[by_name["f1.npy"]] == classes.index("rows")
    assert frames.labels[by_name["f2.npy"]] == classes.index("generic_defect")
    assert frames.labels[by_name["f3.npy"]] == -1  # 0.5 / 0.5 tie
    assert frames.tip_change.tolist() == [False, True, False]
    assert all(p.is_file() for p in frames.paths)


def test_metal_sheet_splits_off_ambiguous_frames(tmp_path):
    a = VoteStore(tmp_path, "alice", "cu111")
    b = VoteStore(tmp_path, "bob", "cu111")
    a.vote("m1.npy", ["double_tip", "tip_change"], session="run")
    b.vote("m1.npy", ["double_tip"], session="run")
    a.vote("m2.npy", ["step_edge"], session="run")
    b.vote("m2.npy", ["impurity"], session="run")  # tie → ambiguous
    a.vote("m3.npy", ["individual_atoms", "tip_change"], session="other")
    b.vote("m3.npy", ["tip_change"], session="other")  # tip_change 1.0 beats atoms 0.5
    a.vote("m4.npy", ["individual_atoms"], session="other")
    b.vote("m4.npy", ["individual_atoms", "corruption"], session="other")

    result = merge_votes(tmp_path, "cu111")
    assert (result.labelled, result.ambiguous) == (3, 1)
    fields, rows = _sheet(tmp_path / "labels.csv")
    assert fields[:6] == ["session", "Name", "surface", "label", "tip_change", "No. Responses"]
    assert fields[6:] == ["Individual Atoms", "Double Tip", "Tip Change", "Step Edge",
                          "Impurity", "Corruption"]
    # Tip change is flagged at a mean vote >= 0.5, the paper's threshold.
    assert rows["m1.npy"]["label"] == "double_tip" and rows["m1.npy"]["tip_change"] == "1"
    assert float(rows["m1.npy"]["Tip Change"]) == 0.5
    assert rows["m3.npy"]["label"] == "tip_change" and rows["m3.npy"]["tip_change"] == "1"
    assert rows["m4.npy"]["label"] == "individual_atoms" and rows["m4.npy"]["tip_change"] == "0"
    assert float(rows["m4.npy"]["Corruption"]) == 0.5
    _, amb = _sheet(tmp_path / "ambiguous.csv")
    assert list(amb) == ["m2.npy"] and amb["m2.npy"]["label"] == ""
    assert float(amb["m2.npy"]["Step Edge"]) == float(amb["m2.npy"]["Impurity"]) == 0.5

    _images(tmp_path, ["m1.npy", "m3.npy", "m4.npy"])
    frames = load_labels(tmp_path, surface="cu111")
    assert [frames.classes[i] for i in frames.labels] == ["double_tip", "tip_change",
                                                          "individual_atoms"]
    assert frames.sessions.tolist() == ["run", "other", "other"]
    assert frames.tip_change.tolist() == [True, True, False]


def test_votes_with_another_surfaces_classes_are_refused(tmp_path):
    VoteStore(tmp_path, "alice", "au111").vote("x.npy", ["double_tip"])
    with pytest.raises(ValueError, match=r"alice.csv.*'double_tip'.*hsi100"):
        merge_votes(tmp_path, "hsi100")


def test_merge_of_no_votes_writes_a_header_only_sheet(tmp_path):
    result = merge_votes(tmp_path / "new", "hsi100")
    assert result.labelled == 0
    assert (tmp_path / "new" / "labels.csv").read_text().startswith("session,Name,No. Responses")


def test_column_titles():
    assert column_title("double_tip") == "Double Tip"
    assert column_title("corruption") == "Corruption"


def test_other_labellers_new_votes_are_seen_by_the_next_merge(tmp_path):
    a = VoteStore(tmp_path, "alice", "hsi100")
    b = VoteStore(tmp_path, "bob", "hsi100")
    a.vote("f.npy", ["rows"])
    b.vote("f.npy", ["rows"])
    assert merge_votes(tmp_path, "hsi100").frames[0].responses == 2
    b.undo()  # bob's log grows: the cached replay must not be reused
    merged = merge_votes(tmp_path, "hsi100", known={"alice": a.events})
    assert merged.frames[0].responses == 1 and merged.frames[0].labellers == ("alice",)
    b.vote("g.npy", ["generic_defect"])
    assert [f.name for f in merge_votes(tmp_path, "hsi100").frames] == ["f.npy", "g.npy"]
