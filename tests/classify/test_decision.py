"""The calibrated good/bad decision: fit, operating points, verdicts, reasons, round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qcodes_stmtip.classify.decision import (
    BadTipDecision,
    Risk,
    bad_class_evidence,
    fit_decision,
    truth_bad,
)

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
GOOD = frozenset(CLASSES[:3])


def _validation(n: int = 600, seed: int = 0):
    """Bad frames carry higher class and tip-change evidence than good ones, with overlap."""
    rng = np.random.default_rng(seed)
    bad = rng.random(n) < 0.3
    evidence = np.clip(np.where(bad, rng.beta(5, 2, n), rng.beta(2, 5, n)), 0, 1)
    change = np.clip(np.where(bad, rng.beta(3, 3, n), rng.beta(1, 6, n)), 0, 1)
    return evidence, change, bad.astype(int)


def test_truth_bad_counts_bad_classes_and_tip_changes_and_leaves_out_the_rest() -> None:
    labels = np.array([0, 3, -1, -1, 2])
    change = np.array([False, False, True, False, True])
    assert truth_bad(labels, CLASSES, GOOD, change).tolist() == [0, 1, 1, -1, 1]
    metal = ("individual_atoms", "double_tip", "tip_change", "step_edge", "impurity", "corruption")
    out = truth_bad(np.array([0, 1, 3, 4, 5]), metal, frozenset({"individual_atoms"}), None,
                    frozenset({"step_edge", "impurity"}))
    assert out.tolist() == [0, 1, -1, -1, 1]  # content frames are neither good nor bad


def test_bad_class_evidence_renormalises_over_tip_classes() -> None:
    metal = ("individual_atoms", "double_tip", "step_edge")
    p = np.array([[0.2, 0.2, 0.6]])
    assert bad_class_evidence(p, metal, {"individual_atoms"}, {"step_edge"})[0] == pytest.approx(0.5)
    assert bad_class_evidence(np.array([[0.1, 0.2, 0.3, 0.4]]), CLASSES, GOOD)[0] == pytest.approx(0.4)


def test_fit_meets_the_stated_risk_on_its_validation_frames() -> None:
    evidence, change, bad = _validation()
    risk = Risk(bad_called_good=0.02, good_called_bad=0.05)
    d = fit_decision(evidence, change, bad, risk, sessions=4)
    assert d.class_weight > 0 and d.change_weight > 0  # both kinds of evidence point to a bad tip
    v = d.verdicts(d.probability(evidence, change))
    y = bad.astype(bool)
    assert np.mean((v == "good") & y) <= 0.02 + 1e-12
    assert np.mean((v == "bad") & ~y) <= 0.05 + 1e-12
    assert d.validation["sessions"] == 4 and d.validation["frames"] == 600
    assert 0 < d.validation["coverage"] <= 1
    # calibrated: the mean P(bad) is close to the share of bad frames
    assert np.mean(d.probability(evidence, change)) == pytest.approx(bad.mean(), abs=0.02)


def test_a_stricter_risk_abstains_more() -> None:
    evidence, change, bad = _validation()
    loose = fit_decision(evidence, change, bad, Risk(0.05, 0.10))
    strict = fit_decision(evidence, change, bad, Risk(0.005, 0.01))
    assert strict.validation["coverage"] < loose.validation["coverage"]
    assert strict.good_below <= loose.good_below and strict.bad_above >= loose.bad_above


def test_separable_evidence_needs_no_abstention() -> None:
    bad = np.array([0] * 50 + [1] * 50)
    evidence = np.where(bad == 1, 0.9, 0.1)
    d = fit_decision(evidence, None, bad, Risk(0.02, 0.05))
    v = d.verdicts(d.probability(evidence))
    assert d.change_weight == 0.0
    assert (v == np.where(bad == 1, "bad", "good")).all()


def test_fit_refuses_validation_without_both_kinds() -> None:
    with pytest.raises(ValueError, match="good and bad validation frames"):
        fit_decision(np.full(10, 0.2), None, np.zeros(10, int))


def test_verdicts_and_reasons_at_the_operating_points() -> None:
    d = BadTipDecision(1.0, 0.0, 0.0, good_below=0.2, bad_above=0.6)
    assert d.verdicts(np.array([0.1, 0.2, 0.4, 0.6, math.nan])).tolist() == [
        "good", "good", "uncertain", "bad", "uncertain"]
    assert d.reason(0.1, "x") == ""
    assert d.reason(0.7, "generic_defect p=0.70").startswith("p(bad)=0.70 >= 0.60 (generic_defect")
    assert d.reason(0.4, "e").startswith("uncertain: p(bad)=0.40 is between 0.20 and 0.60")


def test_round_trip_and_refusals() -> None:
    evidence, change, bad = _validation(300)
    d = fit_decision(evidence, change, bad)
    back = BadTipDecision.from_dict(d.as_dict())
    assert back == d
    with pytest.raises(ValueError, match="good_below"):
        BadTipDecision(1.0, 0.0, 0.0, good_below=0.7, bad_above=0.6)
    with pytest.raises(ValueError, match="decision.bias must be a finite number"):
        BadTipDecision(1.0, 0.0, math.nan, 0.1, 0.5)
    with pytest.raises(ValueError, match="missing 'bias'"):
        BadTipDecision.from_dict({k: v for k, v in d.as_dict().items() if k != "bias"})
    with pytest.raises(ValueError, match="Risk.bad_called_good"):
        Risk(bad_called_good=1.5)
