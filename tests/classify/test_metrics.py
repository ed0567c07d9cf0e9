"""Table I scores and confidence thresholds (scikit-learn based)."""

import numpy as np
import pytest

from qcodes_stmtip.classify.metrics import (
    balanced_accuracy_weights,
    binary_scores,
    confident_precision,
    good_bad_scores,
    score,
    thresholds_for_precision,
)

CLASSES = ("a", "b", "c")


def test_perfect_and_inverted_classifiers():
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y] * 0.8 + 0.1
    s = score(y, perfect, CLASSES)
    assert s.mean_auroc == 1.0 and s.balanced_accuracy == 1.0 and s.mean_precision == 1.0
    assert s.confusion == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    worst = 1.0 - perfect
    assert score(y, worst, CLASSES).mean_auroc == 0.0


def test_known_values_and_vote_predictions():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([[.8, .1, .1], [.6, .3, .1], [.2, .7, .1], [.3, .6, .1], [.5, .4, .1], [.1, .1, .8]])
    s = score(y, p, CLASSES)
    # class a: positives scores .8 .6 .2 vs negatives .3 .5 .1 → 7 of 9 pairs ranked right
    assert s.auroc["a"] == pytest.approx(7 / 9)
    # predictions a a b b a c → recalls 2/3, 1/2, 1 → balanced accuracy 13/18
    assert s.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precisions a 2/3, b 1/2, c 1
    assert s.mean_precision == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    s2 = score(y, p, CLASSES, predictions=np.array([0, 0, 0, 1, 1, 2]))
    assert s2.balanced_accuracy == 1.0 and s2.auroc == s.auroc


def test_absent_class_gives_nan_auroc_and_bad_input_raises():
    y = np.array([0, 1, 0, 1])
    s = score(y, np.array([[.9, .1, 0], [.1, .9, 0], [.8, .2, 0], [.3, .7, 0]]), CLASSES)
    assert np.isnan(s.auroc["c"]) and s.mean_auroc == 1.0
    with pytest.raises(ValueError, match="shape"):
        score(y, np.zeros((4, 2)), CLASSES)
    with pytest.raises(ValueError, match="ambiguous"):
        score(np.array([0, -1, 1, 1]), np.zeros((4, 3)), CLASSES)


def test_binary_scores():
    y = np.array([0, 0, 1, 1, 1], bool)
    r = binary_scores(y, np.array([.1, .6, .7, .8, .4]))
    assert r["auroc"] == pytest.approx(5 / 6)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_thresholds_for_precision():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([.1, .2, .3, .6, .4, .7, .8, .9])
    p = np.stack([1 - p1, p1], axis=1)
    th = thresholds_for_precision(y, p, target=1.0)
    assert th[1] == pytest.approx(0.7)  # lowest threshold with no false positive for class 1
    th = thresholds_for_precision(y, p, target=0.75)
    assert th[1] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="target"):
        thresholds_for_precision(y, p, 0.0)


def test_average_precision_is_the_macro_pr_area():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([[.8, .1, .1], [.6, .3, .1], [.2, .7, .1], [.3, .6, .1], [.5, .4, .1], [.1, .1, .8]])
    s = score(y, p, CLASSES)
    # a: ranked .8+ .6+ .5- .3- .2+ .1- → AP = (1 + 1 + 3/5) / 3; b: .7- .6+ .4+ .3 .1 .1 → (1/2 + 2/3) / 2;
    # c: the top score is the positive → 1
    assert s.average_precision == pytest.approx(((1 + 1 + 3 / 5) / 3 + (1 / 2 + 2 / 3) / 2 + 1) / 3)


def test_confident_precision_only_counts_calls_above_their_class_threshold():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([[.8, .1, .1], [.6, .3, .1], [.2, .7, .1], [.3, .6, .1], [.5, .4, .1], [.1, .1, .8]])
    # arg-max calls a a b b a c; with a ≥ .55, b ≥ .65, c ≥ .9: calls a (.8), a (.6), b (.7) only
    r = confident_precision(y, p, np.array([.55, .65, .9]))
    assert r["coverage"] == pytest.approx(3 / 6)
    assert r["classes_called"] == 2
    assert r["mean_precision"] == pytest.approx((1 + 0) / 2)  # a: 2/2 right, b: the .7 frame is an a
    # uncalled frames count as wrong: recalls a 2/3, b 0, c 0
    assert r["balanced_accuracy"] == pytest.approx((2 / 3) / 3)
    # zero thresholds: every frame called, precision equals the decision-based one
    r0 = confident_precision(y, p, np.zeros(3))
    assert r0["coverage"] == 1.0
    assert r0["mean_precision"] == pytest.approx(score(y, p, CLASSES).mean_precision)
    with pytest.raises(ValueError, match="one value per class"):
        confident_precision(y, p, np.zeros(2))


def test_good_bad_scores_collapse_classes_by_hand():
    classes = ("a", "b", "bad")
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]])
    pred = probs.argmax(axis=1)  # good, bad, bad, good
    s = good_bad_scores(y, probs, pred, classes, {"a", "b"})
    # P(bad) = 0.1, 0.6, 0.8, 0.2 for good, good, bad, bad: 3 of 4 pairs ranked right
    assert s["auroc"] == pytest.approx(0.75)
    assert s["balanced_accuracy"] == pytest.approx(0.5)  # good recall 1/2, bad recall 1/2
    assert s["mean_precision"] == pytest.approx(0.5)
    assert (s["n"], s["bad"]) == (4, 2)
    assert np.isnan(good_bad_scores(y[:2], probs[:2], pred[:2], classes, {"a", "b"})["auroc"])


def test_balanced_accuracy_weights_recover_a_rare_class_and_never_score_below_the_start():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    # class 2 is rare and its probability systematically under-stated: arg-max never picks it
    y = np.repeat([0, 1, 2], [300, 300, 30])
    p = np.full((y.size, 3), 0.1)
    p[np.arange(y.size), y] = 0.6
    p[y == 2] = [0.45, 0.2, 0.35]
    p += rng.uniform(0, 0.05, p.shape)
    p /= p.sum(axis=1, keepdims=True)
    before = balanced_accuracy_score(y, p.argmax(axis=1))
    w = balanced_accuracy_weights(y, p)
    after = balanced_accuracy_score(y, (p * w).argmax(axis=1))
    assert before < 0.7 and after > 0.95
    assert w.shape == (3,) and np.isclose(w.mean(), 1.0) and w[2] == w.max()
    start = np.array([0.5, 0.5, 2.0])
    tuned = balanced_accuracy_weights(y, p, start=start)
    assert balanced_accuracy_score(y, (p * tuned).argmax(axis=1)) >= balanced_accuracy_score(y, (p * start).argmax(axis=1))
    with pytest.raises(ValueError, match="positive finite"):
        balanced_accuracy_weights(y, p, start=np.array([1.0, 0.0, 1.0]))


def test_calibration_warnings_name_thin_evidence() -> None:
    from qcodes_stmtip.classify.metrics import MIN_CALIBRATION_FRAMES, calibration_warnings

    classes = ("a", "b")
    plenty = np.repeat([0, 1], MIN_CALIBRATION_FRAMES)
    changes = np.r_[np.ones(MIN_CALIBRATION_FRAMES, bool), np.zeros(3 * MIN_CALIBRATION_FRAMES, bool)]
    p_tc = changes.astype(float)
    assert calibration_warnings(plenty, classes, 5, class_thresholds_calibrated=True,
                                tip_change_labels=changes, tip_change_probability=p_tc,
                                tip_change_threshold=0.5) == []
    few = calibration_warnings(plenty[1:], classes, 2, class_thresholds_calibrated=True)
    assert len(few) == 2 and "2 validation session(s)" in few[0] and "'a' rests on 29" in few[1]
    # uncalibrated class thresholds (the 0.5 default) rest on nothing: no class warning
    assert calibration_warnings(plenty[1:], classes, 5, class_thresholds_calibrated=False) == []
    flagged = calibration_warnings(plenty, classes, 5, class_thresholds_calibrated=True,
                                   tip_change_labels=changes, tip_change_probability=np.full(120, 0.1),
                                   tip_change_threshold=0.058)
    assert flagged == ["the tip-change threshold (0.058) flags 100% of the validation frames as tip changes"]
    thin = calibration_warnings(plenty, classes, 5, class_thresholds_calibrated=True,
                                tip_change_labels=changes[:-100], tip_change_probability=None,
                                tip_change_threshold=0.3)
    assert thin == ["the tip-change threshold (0.3) rests on 20 validation tip change(s) (fewer than 30)"]
