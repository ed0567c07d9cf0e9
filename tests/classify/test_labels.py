"""Label sheets (H:Si(100) votes and simulated layout) and the session split."""

from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.classify.labels import load_labels, session_split, vote_label
from tests.conftest import shared_data_missing

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
HSI100 = SHARED / "data" / "hsi100"

VOTES_HEADER = "session,Name,No. Responses,Asymmetries,Individual Atoms,Dimers,Rows,Tip Change,Bad/Blurry\n"


def test_vote_label_rules():
    assert vote_label(np.array([0.2, 0.6, 0.1, 0.0])) == 1
    assert vote_label(np.array([0.5, 0.5, 0.0, 0.0])) == -1  # tie
    assert vote_label(np.array([0.4, 0.3, 0.0, 0.0])) == -1  # below 0.5
    assert vote_label(np.array([0.0, 0.0, 0.0, 0.5])) == 3


def test_votes_layout(tmp_path):
    rows = [
        "s1,a.png,2,1,0,0,0,0,0",      # Asymmetries → dimers_asymmetries
        "s1,b.png,2,0,0,0.5,0,1,0",    # Dimers 0.5 → dimers_asymmetries, tip change
        "s2,c.png,3,0,0.67,0,0.33,0,0",  # individual atoms
        "s2,d.png,2,0,0,0,0.5,0,0.5",  # tie rows / bad → ambiguous
        "s3,e.png,1,0,0,0,0,0.5,1",    # bad, tip change at exactly 0.5
    ]
    (tmp_path / "labels.csv").write_text(VOTES_HEADER + "\n".join(rows) + "\n")
    d = load_labels(tmp_path)
    assert d.surface == "hsi100"
    assert d.classes == ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
    assert d.labels.tolist() == [0, 0, 1, -1, 3]
    assert d.tip_change.tolist() == [False, True, False, False, True]
    assert d.paths[0] == tmp_path / "images" / "a.png"
    with pytest.raises(ValueError, match="vote sheet"):
        load_labels(tmp_path, "au111")


def test_votes_bad_number(tmp_path):
    (tmp_path / "labels.csv").write_text(VOTES_HEADER + "s1,a.png,2,x,0,0,0,0,0\n")
    with pytest.raises(ValueError, match=r"labels.csv:2: column 'Asymmetries'"):
        load_labels(tmp_path)


def test_simulated_layout_prefers_npy_frames(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "images").mkdir()
    np.save(tmp_path / "frames" / "f0.npy", np.zeros((4, 4)))
    (tmp_path / "images" / "f1.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text(
        "session,Name,surface,label,tip_change\n"
        "0,f0.png,au111,double_tip,0\n"
        "1,f1.png,au111,tip_change,1\n"
        "1,f2.png,cu111,impurity,0\n"
    )
    d = load_labels(tmp_path, "au111")
    assert len(d) == 2 and d.labels.tolist() == [1, 2]
    assert d.paths == [tmp_path / "frames" / "f0.npy", tmp_path / "images" / "f1.png"]
    assert d.tip_change.tolist() == [False, True]
    with pytest.raises(ValueError, match="several surfaces"):
        load_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("session,Name,surface,label\n0,f0.png,au111,rows\n")
    with pytest.raises(ValueError, match="'rows' is not a au111 class"):
        load_labels(tmp_path)


def test_missing_sheet(tmp_path):
    with pytest.raises(FileNotFoundError, match="no labels.csv"):
        load_labels(tmp_path)


def test_session_split_is_disjoint_and_sized():
    sessions = np.repeat([f"s{i}" for i in range(10)], [5, 30, 10, 10, 20, 8, 12, 3, 40, 2])
    tr, va = session_split(sessions, 0.25, seed=3)
    assert set(sessions[tr]).isdisjoint(sessions[va])
    assert len(tr) + len(va) == len(sessions) and len(va) >= 0.25 * len(sessions)
    tr2, va2 = session_split(sessions, 0.25, seed=3)
    np.testing.assert_array_equal(va, va2)
    with pytest.raises(ValueError, match="val_fraction"):
        session_split(sessions, 1.0)
    with pytest.raises(ValueError, match="two sessions"):
        session_split(np.array(["a", "a"]), 0.5)


def test_real_hsi100_counts_match_readme():
    if not HSI100.is_dir():
        shared_data_missing(f"real data ../shared/data/hsi100 not present at {HSI100}")
    d = load_labels(HSI100)
    s = d.summary()
    assert s["frames"] == 3659
    assert s["class_counts"] == {"dimers_asymmetries": 1244, "individual_atoms": 196,
                                 "rows": 475, "generic_defect": 1122}
    assert s["ambiguous"] == 622 and s["tip_changes"] == 641
    assert all(p.is_file() for p in d.paths[:20])
