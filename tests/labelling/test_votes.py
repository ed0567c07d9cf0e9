"""A labeller's vote log: append-only rows, undo, replay after a restart, clear errors."""

import csv

import pytest

from qcodes_stmtip.labelling.votes import (
    LOG_COLUMNS,
    VoteLogError,
    VoteStore,
    categories,
    check_labeller,
    decisions,
    read_log,
    replay,
)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_categories_follow_the_class_scheme():
    assert categories("hsi100") == (
        "dimers_asymmetries", "individual_atoms", "rows", "generic_defect", "tip_change")
    assert categories("au111") == (
        "individual_atoms", "double_tip", "tip_change", "step_edge", "impurity", "corruption")
    with pytest.raises(ValueError, match="surface"):
        categories("graphite")


@pytest.mark.parametrize("name", ["", "../evil", "a b", "x" * 65, "_lead", "a/b"])
def test_bad_labeller_names_are_refused(name):
    with pytest.raises(ValueError, match="labeller"):
        check_labeller(name)


def test_vote_skip_undo_are_appended_and_replayed(tmp_path):
    store = VoteStore(tmp_path, "alice", "hsi100")
    assert store.path == tmp_path / "votes" / "alice.csv"
    # Classes are stored in category order whatever order they were ticked in.
    store.vote("f1.npy", ["tip_change", "rows"], session="s1", source="/data/f1.png")
    store.skip("f2.npy", session="s1")
    store.vote("f3.npy", ["generic_defect"], session="s2")
    undone = store.undo()
    assert undone.frame == "f3.npy" and undone.classes == ("generic_defect",)
    store.vote("f3.npy", ["individual_atoms"], session="s2")

    rows = _rows(store.path)
    assert tuple(rows[0]) == LOG_COLUMNS
    assert [(r[1], r[2], r[5]) for r in rows[1:]] == [
        ("vote", "f1.npy", "rows;tip_change"),
        ("skip", "f2.npy", ""),
        ("vote", "f3.npy", "generic_defect"),
        ("undo", "f3.npy", ""),
        ("vote", "f3.npy", "individual_atoms"),
    ]
    assert rows[1][3:5] == ["s1", "/data/f1.png"]

    # A new store on the same file (server restart) sees the same decisions.
    store.close()
    again = VoteStore(tmp_path, "alice", "hsi100")
    d = again.decisions()
    assert list(d) == ["f1.npy", "f2.npy", "f3.npy"]
    assert d["f1.npy"].classes == ("rows", "tip_change")
    assert d["f2.npy"].action == "skip"
    assert d["f3.npy"].classes == ("individual_atoms",)
    # Undo keeps working across the restart, newest first.
    assert again.undo().frame == "f3.npy"
    assert again.undo().frame == "f2.npy"
    assert read_log(again.path)[-1].frame == "f1.npy"


def test_undo_with_nothing_left_returns_none_and_writes_nothing(tmp_path):
    store = VoteStore(tmp_path, "bob", "au111")
    assert store.undo() is None
    assert len(_rows(store.path)) == 1


def test_revote_latest_decision_wins():
    events = replay([
        {"action": "vote", "frame": "a", "classes": "rows"},
        {"action": "skip", "frame": "b", "classes": ""},
        {"action": "vote", "frame": "a", "classes": "generic_defect"},
    ])
    d = decisions(events)
    assert d["a"].classes == ("generic_defect",)
    assert list(d) == ["b", "a"]


@pytest.mark.parametrize(
    ("classes", "match"),
    [([], "at least one"), (["double_tip"], "not categories"), (["Rows"], "not categories")],
)
def test_invalid_votes_are_refused_and_not_logged(tmp_path, classes, match):
    store = VoteStore(tmp_path, "carol", "hsi100")
    with pytest.raises(ValueError, match=match):
        store.vote("f.npy", classes)
    with pytest.raises(ValueError, match="frame"):
        store.vote("", ["rows"])
    assert len(_rows(store.path)) == 1
    assert store.events == []


def test_malformed_logs_name_file_and_line(tmp_path):
    """Strict reading names the file and line; a store opens the log anyway (issue 26)."""
    path = tmp_path / "votes" / "dave.csv"
    path.parent.mkdir()
    path.write_text("time,action,frame,session,source,classes\n"
                    "t,vote,a,s,,rows\n"
                    "t,undo,b,s,,\n")
    with pytest.raises(VoteLogError, match=r"dave.csv:3: undo names frame 'b'"):
        read_log(path, strict=True)
    with VoteStore(tmp_path, "dave", "hsi100") as store:  # never refuses to start
        assert [e.frame for e in store.events] == ["a"]
        assert store.problems == (f"{path}:3: undo names frame 'b' but the latest decision is on 'a'",)
    path.write_text("time,action,frame,session,source,classes\nt,undo,,,,\n")
    with pytest.raises(VoteLogError, match="dave.csv:2: undo with no vote"):
        read_log(path, strict=True)
    path.write_text("time,action,frame,session,source,classes\nt,like,a,,,\n")
    with pytest.raises(VoteLogError, match="action must be one of"):
        read_log(path, strict=True)
    path.write_text("time,frame\nt,a\n")
    with pytest.raises(VoteLogError, match="missing columns"):
        read_log(path, strict=True)
    assert read_log(path) == []
