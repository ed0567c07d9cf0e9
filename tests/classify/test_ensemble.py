"""Majority voting, thresholds and the good/bad collapse on constructed member outputs."""

import numpy as np
import pytest

from qcodes_stmtip.classify.ensemble import (
    UNCERTAIN,
    Ensemble,
    Member,
    collapse_good_bad,
    majority_vote,
)

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")


def test_majority_beats_mean():
    # two weak votes for class 1 win over one confident vote for class 0
    p = np.array([[[0.40, 0.60]], [[0.45, 0.55]], [[0.99, 0.01]]])
    pred = majority_vote(p)
    assert pred.mean[0, 0] > pred.mean[0, 1]
    assert pred.vote_class[0] == 1 and pred.decision[0] == 1
    np.testing.assert_array_equal(pred.votes, [[1, 2]])


def test_tie_broken_by_mean_probability():
    p = np.array([[[0.7, 0.3, 0.0]], [[0.1, 0.8, 0.1]]])
    pred = majority_vote(p)
    np.testing.assert_array_equal(pred.votes, [[1, 1, 0]])
    assert pred.vote_class[0] == 1  # mean 0.55 beats 0.4


def test_thresholds_gate_the_decision_per_class():
    p = np.array([[[0.6, 0.4], [0.1, 0.9]]] * 3)  # every member agrees
    pred = majority_vote(p, thresholds=[0.7, 0.5])
    np.testing.assert_array_equal(pred.vote_class, [0, 1])
    np.testing.assert_array_equal(pred.decision, [UNCERTAIN, 1])
    with pytest.raises(ValueError, match="one value per class"):
        majority_vote(p, thresholds=[0.5])
    with pytest.raises(ValueError, match=r"\(M, N, K\)"):
        majority_vote(np.zeros((3, 2)))


def test_class_weights_shift_votes_but_not_probabilities_or_thresholds():
    p = np.array([[[0.6, 0.4], [0.9, 0.1]], [[0.55, 0.45], [0.8, 0.2]]])
    plain = majority_vote(p)
    np.testing.assert_array_equal(plain.vote_class, [0, 0])
    weighted = majority_vote(p, thresholds=[0.5, 0.5], class_weights=[1.0, 2.0])
    # 0.4·2 > 0.6 and 0.45·2 > 0.55 flip frame 0 to class 1; 0.1·2, 0.2·2 < 0.9, 0.8 keep frame 1
    np.testing.assert_array_equal(weighted.vote_class, [1, 0])
    np.testing.assert_array_equal(weighted.mean, plain.mean)
    np.testing.assert_array_equal(weighted.decision, [UNCERTAIN, 0])  # class 1 holds 0.425 < 0.5
    for bad in ([1.0], [1.0, 0.0], [1.0, np.nan], [1.0, -2.0]):
        with pytest.raises(ValueError, match="class_weights must be 2 positive"):
            majority_vote(p, class_weights=bad)
    ens = Ensemble("hsi100", CLASSES, [Member("a", "x", None)], class_weights=[1, 2, 3, 4])
    np.testing.assert_array_equal(ens.vote(np.full((1, 1, 4), 0.25)).vote_class, [3])
    with pytest.raises(ValueError, match="class_weights must be 4 positive"):
        Ensemble("hsi100", CLASSES, [Member("a", "x", None)], class_weights=[1, 2])


def test_good_bad_collapse():
    decision = np.array([0, 1, 2, 3, UNCERTAIN, 0])
    good = frozenset(CLASSES[:3])
    out = collapse_good_bad(decision, CLASSES, good, tip_change=[0, 0, 0, 0, 0, 1])
    assert out.tolist() == ["good", "good", "good", "bad", "uncertain", "bad"]
    with pytest.raises(ValueError, match="not among classes"):
        collapse_good_bad(decision, CLASSES, {"double_tip"})


def test_a_flagged_tip_change_is_bad_even_when_the_class_decision_is_uncertain():
    """Uncertain + tip-change flag: the flag wins (a changed apex is never just "uncertain")."""
    decision = np.array([UNCERTAIN, UNCERTAIN, 2, 3, UNCERTAIN])
    good = frozenset(CLASSES[:3])
    flags = np.array([True, False, True, False, True])
    out = collapse_good_bad(decision, CLASSES, good, tip_change=flags)
    assert out.tolist() == ["bad", "uncertain", "bad", "bad", "bad"]
    # the same frames without flags: the decision alone
    assert collapse_good_bad(decision, CLASSES, good).tolist() == [
        "uncertain", "uncertain", "good", "bad", "uncertain"]


class _Fixed:
    """Stand-in model with a fixed output per input row (Keras ``predict`` signature)."""

    def __init__(self, out):
        self.out = np.asarray(out, dtype=np.float32)

    def predict(self, x, batch_size=64, verbose=0):
        assert x.dtype == np.float32 and x.ndim == 4
        return self.out[: len(x)]


def test_ensemble_predict_and_tip_change():
    members = [Member(f"m{i}", "squeezenet", _Fixed(o)) for i, o in enumerate([
        [[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]],
        [[0.6, 0.2, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]],
        [[0.1, 0.1, 0.1, 0.7], [0.1, 0.1, 0.1, 0.7]],
    ])]
    tip = Member("tip_change", "squeezenet", _Fixed([[0.9, 0.1], [0.2, 0.8]]))
    ens = Ensemble("hsi100", CLASSES, members, tip_change=tip,
                   good_classes=frozenset(CLASSES[:3]))
    pred = ens.predict(np.zeros((2, 8, 8, 1)))
    # class 0 wins 2:1 but its mean probability 0.467 is below the default 0.5 threshold
    np.testing.assert_array_equal(pred.vote_class, [0, 3])
    np.testing.assert_array_equal(pred.decision, [UNCERTAIN, 3])
    assert ens.good_bad(pred).tolist() == ["uncertain", "bad"]
    ens.thresholds = np.full(4, 0.4)
    pred = ens.predict(np.zeros((2, 8, 8, 1)))
    np.testing.assert_array_equal(pred.decision, [0, 3])
    np.testing.assert_allclose(pred.tip_change_probability, [0.1, 0.8], rtol=1e-6)
    assert pred.member_probabilities.shape == (3, 2, 4)
    assert ens.good_bad(pred).tolist() == ["good", "bad"]
    with pytest.raises(ValueError, match="at least one"):
        Ensemble("hsi100", CLASSES, [])


def test_mean_over_views_works_in_chunks():
    """Chunked view averaging gives the per-frame means of every view, in frame order."""
    from qcodes_stmtip.classify.ensemble import mean_over_views

    class _Sum:  # output depends on the frame and on the view: (sum, first pixel)
        output_shape = (None, 2)

        def predict(self, x, batch_size=64, verbose=0):
            return np.stack([x.sum(axis=(1, 2, 3)), x[:, 0, 0, 0]], axis=1)

    x = np.random.default_rng(1).normal(size=(7, 4, 4, 1)).astype(np.float32)
    def views(b):
        return [b, b[:, ::-1]]
    want = np.stack([x.sum(axis=(1, 2, 3)), (x[:, 0, 0, 0] + x[:, -1, 0, 0]) / 2], axis=1)
    for chunk in (1, 3, 256):
        np.testing.assert_allclose(mean_over_views(_Sum(), x, views, 64, chunk=chunk), want, rtol=1e-5)
    assert mean_over_views(_Sum(), x[:0], views, 64).shape == (0, 2)


def test_verdict_reasons_say_which_rule_fired() -> None:
    """Good frames have no reason; bad, uncertain and tip-change-flagged frames name the rule and
    its numbers — including an uncertain frame made bad by a flagged tip change."""
    from qcodes_stmtip.classify.ensemble import collapse_good_bad, verdict_reasons

    classes = ("good_a", "bad_b")
    p = np.array([[[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.9, 0.1]]])
    pred = majority_vote(p, thresholds=[0.6, 0.6])
    pred.tip_change_probability = np.array([0.1, 0.1, 0.7, 0.7])
    flagged = pred.tip_change_probability >= 0.5
    quality = collapse_good_bad(pred.decision, classes, {"good_a"}, flagged)
    assert list(quality) == ["good", "bad", "bad", "bad"]
    reasons = verdict_reasons(pred, classes, {"good_a"}, [0.6, 0.6], 0.5)
    assert reasons[0] == ""
    assert reasons[1] == "bad_b p=0.80 is not a good-tip class"
    assert reasons[2] == ("uncertain: good_a p=0.55 is below its threshold 0.60; "
                          "tip change flagged: p=0.70 >= 0.50")
    assert reasons[3] == "tip change flagged: p=0.70 >= 0.50"


# ---- the decision's edges (issue 29: mutation testing) ----------------------------------------
def test_vote_outputs_are_float64_probabilities_and_integer_votes():
    p = np.array([[[0.75, 0.25]], [[0.25, 0.75]], [[0.5, 0.5]]], dtype=np.float32)
    pred = majority_vote(p)
    assert pred.member_probabilities.dtype == np.float64 and pred.mean.dtype == np.float64
    assert pred.votes.dtype.kind == "i"


def test_vote_shape_checks_allow_one_class_and_refuse_no_member():
    pred = majority_vote(np.ones((2, 3, 1)))
    assert pred.decision.tolist() == [0, 0, 0]
    for shape in ((0, 2, 3), (2, 3, 0), (2, 3)):
        with pytest.raises(ValueError, match="must have shape"):
            majority_vote(np.zeros(shape))


def test_vote_ties_are_broken_per_frame():
    """Frame 0 is unanimous (3 votes), frame 1 a three-way tie (1 vote each) that the mean decides."""
    p = np.array([
        [[0.1, 0.8, 0.1], [0.6, 0.1, 0.3]],
        [[0.1, 0.8, 0.1], [0.1, 0.5, 0.4]],
        [[0.1, 0.8, 0.1], [0.05, 0.05, 0.9]],
    ])
    pred = majority_vote(p)
    np.testing.assert_array_equal(pred.votes, [[0, 3, 0], [1, 1, 1]])
    assert pred.vote_class.tolist() == [1, 2]  # frame 1: mean 0.25, 0.22, 0.53


def test_a_vote_tie_is_broken_by_the_weighted_mean():
    p = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])  # weighted firsts: class 0, class 1 -> a tie
    pred = majority_vote(p, class_weights=[1.0, 4.0])
    np.testing.assert_array_equal(pred.votes, [[1, 1]])
    assert pred.vote_class[0] == 1  # weighted mean 0.7 vs 1.2; unweighted it would be class 0


def test_a_mean_equal_to_its_threshold_is_confident():
    p = np.array([[[0.75, 0.25]], [[0.75, 0.25]]])
    assert majority_vote(p, thresholds=[0.75, 0.5]).decision[0] == 0
    assert majority_vote(p, thresholds=[0.8, 0.5]).decision[0] == UNCERTAIN


def test_ensemble_good_bad_flags_tip_changes_at_its_threshold():
    ens = Ensemble("hsi100", CLASSES, [Member("m", "rw", None)], tip_change_threshold=0.5)
    p = np.tile(np.array([0.7, 0.1, 0.1, 0.1]), (1, 4, 1))
    pred = majority_vote(p)
    assert ens.good_bad(pred).tolist() == ["good"] * 4  # no tip-change network: no flag
    pred.tip_change_probability = np.array([0.5, 0.49, 0.9, 0.0])
    assert ens.good_bad(pred).tolist() == ["bad", "good", "bad", "good"]


def test_verdict_reasons_flag_a_tip_change_at_the_default_threshold_exactly():
    from qcodes_stmtip.classify.ensemble import verdict_reasons

    classes = ("good_a", "bad_b")
    pred = majority_vote(np.array([[[0.9, 0.1], [0.9, 0.1], [0.3, 0.7]]]), thresholds=[0.5, 0.5])
    pred.tip_change_probability = np.array([0.5, 0.49, 0.5])
    reasons = verdict_reasons(pred, classes, {"good_a"}, [0.5, 0.5])  # default threshold 0.5
    assert reasons == ["tip change flagged: p=0.50 >= 0.50", "",
                       "bad_b p=0.70 is not a good-tip class; tip change flagged: p=0.50 >= 0.50"]


def _calibrated(rule: str = "calibrated") -> Ensemble:
    from qcodes_stmtip.classify.decision import BadTipDecision

    members = [Member("m", "squeezenet", _Fixed([
        [0.45, 0.05, 0.45, 0.05],  # split between two good classes: class uncertain, tip good
        [0.30, 0.30, 0.30, 0.10],  # class uncertain, little bad evidence, but a tip change is likely
        [0.05, 0.05, 0.05, 0.85],  # a bad class
        [0.10, 0.10, 0.75, 0.05],  # rows: a good tip
    ]))]
    tip = Member("tip_change", "squeezenet", _Fixed([[0.99, 0.01], [0.01, 0.99], [0.5, 0.5], [0.99, 0.01]]))
    decision = BadTipDecision(class_weight=1.0, change_weight=1.0, bias=0.0, good_below=0.2, bad_above=0.6)
    return Ensemble("hsi100", CLASSES, members, tip_change=tip, decision=decision, decision_rule=rule)


def test_the_calibrated_decision_decides_and_every_other_verdict_says_why() -> None:
    ens = _calibrated()
    pred = ens.predict(np.zeros((4, 8, 8, 1)))
    p_bad = ens.bad_probability(pred)
    assert ens.calibrated and np.all((p_bad > 0) & (p_bad < 1))
    verdicts = ens.good_bad(pred).tolist()
    # frame 0: the class is uncertain, but the tip is good; frame 1: the tip-change evidence makes it bad
    assert np.asarray(pred.decision).tolist()[0] == UNCERTAIN and verdicts[0] == "good"
    assert verdicts == ["good", "bad", "bad", "good"]
    reasons = ens.reasons(pred)
    assert reasons[0] == "" and reasons[3] == ""
    assert reasons[1].startswith("p(bad)=") and "tip change p=0.99" in reasons[1]
    assert "generic_defect p=0.85" in reasons[2]


def test_the_vote_rule_stays_available_beside_a_stored_decision() -> None:
    ens = _calibrated("vote")
    pred = ens.predict(np.zeros((4, 8, 8, 1)))
    assert not ens.calibrated
    assert ens.good_bad(pred).tolist() == ["uncertain", "bad", "bad", "good"]  # the paper's rule
    assert np.all(np.isfinite(ens.bad_probability(pred)))  # still reported
    with pytest.raises(ValueError, match="decision_rule"):
        Ensemble("hsi100", CLASSES, [Member("m", "x", None)], decision_rule="majority")
