"""The oracle stand-in classifier: ground-truth labels in the monitor's result layout."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from qcodes_stmtip.conditioning.oracle import GroundTruthClassifier
from qcodes_stmtip.monitor.results import ResultParameters


def truth(label: str, changes: tuple[int, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(frame_label=label, tip_label=label, tip_change_lines=changes)


def test_labels_tip_changes_and_quality_per_surface() -> None:
    frames = iter([truth("rows"), truth("rows", (7,)), truth("generic_defect")])
    oracle = GroundTruthClassifier("hsi100", lambda: next(frames))
    for i in range(3):
        oracle.submit(i, np.zeros((4, 4)))
    r = [oracle.result(i) for i in range(3)]
    assert (r[0].state, r[0].quality, r[0].tip_change_probability) == ("rows", "good", 0.0)
    assert (r[1].state, r[1].quality, r[1].tip_change_probability) == ("rows", "bad", 1.0)
    assert (r[2].state, r[2].quality) == ("generic_defect", "bad")
    assert r[0].probabilities == {"dimers_asymmetries": 0.0, "individual_atoms": 0.0, "rows": 1.0,
                                  "generic_defect": 0.0}
    metal = GroundTruthClassifier("au111", lambda: truth("individual_atoms", (3,)))
    metal.submit(0, np.zeros((4, 4)))
    assert metal.result(0).state == "tip_change" and math.isnan(metal.result(0).tip_change_probability)
    with pytest.raises(ValueError, match="already submitted"):
        metal.submit(0, np.zeros((4, 4)))
    assert [x.frame_index for x in metal.finish()] == [0] and metal.results == {}


def test_error_rate_mislabels_that_fraction_with_other_classes() -> None:
    oracle = GroundTruthClassifier("cu111", lambda: truth("double_tip"), error_rate=0.3, seed=2)
    for i in range(1000):
        oracle.submit(i, np.zeros((2, 2)))
    states = [oracle.result(i).state for i in range(1000)]
    wrong = [s for s in states if s != "double_tip"]
    assert 250 < len(wrong) < 350
    assert set(wrong) == {"individual_atoms", "tip_change", "step_edge", "impurity", "corruption"}
    with pytest.raises(ValueError, match="error_rate"):
        GroundTruthClassifier("cu111", lambda: truth("x"), error_rate=1.0)


def test_stores_the_monitors_parameters() -> None:
    oracle = GroundTruthClassifier("hsi100", lambda: truth("rows"))
    names = [p.name for p in oracle.parameters]
    reference = ResultParameters(oracle.classes, ("oracle",), lambda name: None)
    assert names == [p.name for p in reference.all]
    assert "tip_state" in names and "tip_p_generic_defect" in names
