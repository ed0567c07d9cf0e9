"""Table I scores with scikit-learn: per-class and mean AUROC, balanced accuracy, mean precision.

Besides the decision-based mean precision (every frame gets its arg-max / voted class),
:func:`confident_precision` scores the paper's use of confidence thresholds: a frame is
given a class only when that class's probability reaches the class threshold (thresholds
picked on validation data, :func:`thresholds_for_precision`), and the precision of those
positive calls is reported together with the fraction of frames that got one (coverage).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_curve,
    precision_score,
    roc_auc_score,
)


@dataclass
class Scores:
    """Scores of one model on one labelled set (JSON-ready via :meth:`as_dict`).

    ``auroc`` maps class → one-vs-rest AUROC (NaN when the class is absent);
    ``mean_auroc`` averages the defined ones; ``balanced_accuracy`` and
    ``mean_precision`` (macro) use the predicted classes; ``average_precision`` is the
    macro mean of the per-class areas under the precision–recall curve (threshold-free);
    ``confusion`` has true classes in rows, predictions in columns.
    """

    classes: tuple[str, ...]
    auroc: dict[str, float]
    mean_auroc: float
    balanced_accuracy: float
    mean_precision: float
    confusion: list[list[int]]
    n: int
    average_precision: float = float("nan")

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["classes"] = list(self.classes)
        return out


def _check(y_true: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> None:
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ValueError(
            f"probabilities must have shape (N, {len(classes)}), got {probabilities.shape}"
        )
    if y_true.shape != (probabilities.shape[0],):
        raise ValueError(f"y_true must have shape ({probabilities.shape[0]},), got {y_true.shape}")
    if y_true.size == 0:
        raise ValueError("y_true is empty: nothing to score")
    if np.any((y_true < 0) | (y_true >= len(classes))):
        raise ValueError("y_true holds labels outside 0…n_classes−1 (drop ambiguous frames first)")


def score(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: tuple[str, ...] | list[str],
    predictions: np.ndarray | None = None,
) -> Scores:
    """Score class ``probabilities`` (N, K) against integer ``y_true``.

    ``predictions`` (N,) default to the arg-max of ``probabilities``; an ensemble
    passes its majority vote instead.
    """
    classes = tuple(classes)
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probabilities, dtype=np.float64)
    _check(y, p, classes)
    pred = np.argmax(p, axis=1) if predictions is None else np.asarray(predictions, dtype=int)
    labels = list(range(len(classes)))
    auroc: dict[str, float] = {}
    for k, name in enumerate(classes):
        positive = y == k
        if positive.all() or not positive.any():
            auroc[name] = float("nan")
        else:
            auroc[name] = float(roc_auc_score(positive, p[:, k]))
    defined = [v for v in auroc.values() if np.isfinite(v)]
    present = np.unique(y)
    ap = [float(average_precision_score(y == k, p[:, k])) for k in range(len(classes))
          if (y == k).any() and not (y == k).all()]
    return Scores(
        classes=classes,
        auroc=auroc,
        mean_auroc=float(np.mean(defined)) if defined else float("nan"),
        balanced_accuracy=float(balanced_accuracy_score(y, pred)),
        mean_precision=float(
            precision_score(y, pred, labels=present, average="macro", zero_division=0)
        ),
        confusion=confusion_matrix(y, pred, labels=labels).tolist(),
        n=int(y.size),
        average_precision=float(np.mean(ap)) if ap else float("nan"),
    )


def confident_precision(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    thresholds: np.ndarray,
    predictions: np.ndarray | None = None,
) -> dict[str, float]:
    """Precision of the confident calls only (see module doc).

    A frame's class (``predictions``, default arg-max) counts as a positive call when
    its probability is ≥ that class's threshold; other frames get no call. Returns
    ``mean_precision`` (macro over the classes that received at least one call),
    ``classes_called``, ``coverage`` (fraction of frames with a call) and
    ``balanced_accuracy`` with uncalled frames counted as wrong.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probabilities, dtype=np.float64)
    th = np.asarray(thresholds, dtype=np.float64)
    if th.shape != (p.shape[1],):
        raise ValueError(f"thresholds must have one value per class ({p.shape[1]}), got {th.shape}")
    pred = np.argmax(p, axis=1) if predictions is None else np.asarray(predictions, dtype=int)
    if pred.shape != y.shape:
        raise ValueError(f"predictions must have shape {y.shape}, got {pred.shape}")
    called = p[np.arange(len(y)), pred] >= th[pred]
    called_classes = np.unique(pred[called])
    precision = (float(precision_score(y[called], pred[called], labels=called_classes,
                                       average="macro", zero_division=0))
                 if called.any() else float("nan"))
    return {
        "mean_precision": precision,
        "classes_called": int(called_classes.size),
        "coverage": float(called.mean()),
        "balanced_accuracy": _balanced_accuracy_with_no_call(y, np.where(called, pred, -1)),
    }


def _balanced_accuracy_with_no_call(y: np.ndarray, pred: np.ndarray) -> float:
    """Balanced accuracy where ``pred == -1`` (no call) is simply wrong (scikit-learn warns about
    the extra label; that is intended here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y, pred))


def binary_scores(y_true: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUROC, balanced accuracy and precision of a binary detector (e.g. tip change)."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(probability, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y_true and probability must be equal 1-D shapes, got {y.shape}, {p.shape}")
    pred = p >= threshold
    both = y.any() and not y.all()
    return {
        "auroc": float(roc_auc_score(y, p)) if both else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "n": int(y.size),
        "positives": int(y.sum()),
    }


def good_bad_scores(y_true: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray,
                    classes: tuple[str, ...], good_classes) -> dict[str, float]:
    """Collapse to good tip vs bad tip: AUROC of P(bad) = Σ P(bad classes), balanced accuracy and
    mean precision (over good and bad) of the class decisions mapped to good/bad."""
    y = np.asarray(y_true, dtype=int)
    good = np.array([c in good_classes for c in classes])
    bad_true, bad_pred = ~good[y], ~good[np.asarray(predictions, dtype=int)]
    p_bad = np.asarray(probabilities)[:, ~good].sum(axis=1)
    both = bad_true.any() and not bad_true.all()
    return {
        "auroc": float(roc_auc_score(bad_true, p_bad)) if both else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(bad_true, bad_pred)),
        "mean_precision": float(precision_score(bad_true, bad_pred, average="macro", zero_division=0)),
        "n": int(y.size), "bad": int(bad_true.sum()),
    }


def thresholds_for_precision(
    y_true: np.ndarray, probabilities: np.ndarray, target: float, default: float = 0.5
) -> np.ndarray:
    """Per-class confidence thresholds: the lowest reaching ``target`` precision on (validation) data.

    A class that never reaches ``target`` (or is absent) keeps ``default``.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target}")
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probabilities, dtype=np.float64)
    out = np.full(p.shape[1], default, dtype=np.float64)
    for k in range(p.shape[1]):
        positive = y == k
        if not positive.any() or positive.all():
            continue
        precision, _, thresholds = precision_recall_curve(positive, p[:, k])
        ok = np.flatnonzero(precision[:-1] >= target)
        if ok.size:
            out[k] = float(thresholds[ok[0]])
    return out


def tip_change_threshold(y_true: np.ndarray, probability: np.ndarray, target_precision: float = 0.5,
                         max_false_positive_rate: float = 0.05, min_recall: float = 0.1) -> tuple[float, str]:
    """Tip-change threshold from validation data and how it was chosen.

    The lowest threshold whose precision reaches ``target_precision`` while still
    flagging at least ``min_recall`` of the positives; if none does, the threshold
    flagging at most ``max_false_positive_rate`` of the negatives.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    if not 0.0 <= max_false_positive_rate < 1.0:
        raise ValueError(f"max_false_positive_rate must be in [0, 1), got {max_false_positive_rate}")
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(probability, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or not y.any() or y.all():
        raise ValueError("y_true must be 1-D, match probability, and hold both classes")
    precision, recall, thresholds = precision_recall_curve(y, p)
    ok = np.flatnonzero((precision[:-1] >= target_precision) & (recall[:-1] >= min_recall))
    if ok.size:
        return float(thresholds[ok[0]]), f"precision >= {target_precision} on validation"
    negatives = np.sort(p[~y])
    k = int(np.floor(max_false_positive_rate * negatives.size))
    t = float(np.nextafter(negatives[negatives.size - 1 - k], np.inf)) if k < negatives.size else 0.0
    return t, f"false-positive rate <= {max_false_positive_rate} on validation (precision target unreached)"


#: Fewest validation frames of a class (or tip changes) that a calibrated threshold may rest on
#: without a warning from :func:`calibration_warnings`.
MIN_CALIBRATION_FRAMES = 30
#: Fewest validation sessions that calibrated thresholds may rest on without a warning.
MIN_CALIBRATION_SESSIONS = 3
#: Share of validation frames a tip-change threshold may flag before it is reported as suspect.
MAX_TIP_CHANGE_FLAGGED = 0.5


def calibration_warnings(y_val: np.ndarray, classes: Sequence[str], sessions: int, *,
                         class_thresholds_calibrated: bool,
                         tip_change_labels: np.ndarray | None = None,
                         tip_change_probability: np.ndarray | None = None,
                         tip_change_threshold: float | None = None) -> list[str]:
    """One line per threshold that rests on too little validation evidence (empty: none).

    ``y_val`` are the validation class labels (−1: ambiguous, ignored), ``sessions`` the
    number of validation sessions. Warns when fewer than :data:`MIN_CALIBRATION_SESSIONS`
    sessions, when a calibrated class threshold rests on fewer than
    :data:`MIN_CALIBRATION_FRAMES` frames of its class, and when the tip-change threshold rests
    on fewer tip changes or flags more than :data:`MAX_TIP_CHANGE_FLAGGED` of the frames.
    """
    out: list[str] = []
    if sessions < MIN_CALIBRATION_SESSIONS:
        out.append(f"thresholds calibrated on {sessions} validation session(s) "
                   f"(fewer than {MIN_CALIBRATION_SESSIONS}): they may not hold on new sessions")
    y = np.asarray(y_val, dtype=int)
    if class_thresholds_calibrated:
        for k, name in enumerate(classes):
            n = int(np.count_nonzero(y == k))
            if n < MIN_CALIBRATION_FRAMES:
                out.append(f"the threshold of {name!r} rests on {n} validation frame(s) "
                           f"(fewer than {MIN_CALIBRATION_FRAMES})")
    if tip_change_threshold is not None and tip_change_labels is not None:
        positives = int(np.count_nonzero(np.asarray(tip_change_labels, dtype=bool)))
        if positives < MIN_CALIBRATION_FRAMES:
            out.append(f"the tip-change threshold ({tip_change_threshold:.3g}) rests on {positives} "
                       f"validation tip change(s) (fewer than {MIN_CALIBRATION_FRAMES})")
        if tip_change_probability is not None and np.size(tip_change_probability):
            share = float(np.mean(np.asarray(tip_change_probability) >= tip_change_threshold))
            if share > MAX_TIP_CHANGE_FLAGGED:
                out.append(f"the tip-change threshold ({tip_change_threshold:.3g}) flags "
                           f"{share:.0%} of the validation frames as tip changes")
    return out


def balanced_accuracy_weights(y_true: np.ndarray, probabilities: np.ndarray, start: np.ndarray | None = None,
                              span: float = 1.5, steps: int = 31, rounds: int = 3) -> np.ndarray:
    """Class weights ``w`` (mean 1) whose decision arg-max(``probabilities`` · w) has the highest
    balanced accuracy on (validation) data.

    Coordinate ascent over log-weights on a grid ``span`` either side of ``log(start)``
    (default: equal weights), ``rounds`` passes over the classes; a change is kept only when it
    raises the balanced accuracy, so the result never scores below ``start``. Classes absent from
    ``y_true`` keep their start weight.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probabilities, dtype=np.float64)
    k = p.shape[1]
    base = np.zeros(k) if start is None else np.log(np.asarray(start, dtype=np.float64))
    if base.shape != (k,) or not np.all(np.isfinite(base)):
        raise ValueError(f"start must be {k} positive finite weights, got {start!r}")
    log_p = np.log(np.clip(p, 1e-9, None))
    present = np.unique(y)
    offsets = base.copy()
    best = balanced_accuracy_score(y, np.argmax(log_p + offsets, axis=1))
    grid = np.linspace(-span, span, steps)
    for _ in range(rounds):
        improved = False
        for c in present:
            for g in grid:
                trial = offsets.copy()
                trial[c] = base[c] + g
                s = balanced_accuracy_score(y, np.argmax(log_p + trial, axis=1))
                if s > best + 1e-12:
                    best, offsets, improved = s, trial, True
        if not improved:
            break
    w = np.exp(offsets - offsets.max())
    return w / w.mean()


def verdict_figures(verdicts: np.ndarray, bad: np.ndarray) -> dict[str, float]:
    """The four figures of a good/bad decision against a good/bad truth (``bad``: 1 bad tip,
    0 good tip, −1 no truth: left out): ``coverage`` (share of frames decided, not
    ``uncertain``), ``accuracy_decided``, and, as shares of all frames, ``bad_called_good``
    (a bad tip kept) and ``good_called_bad`` (a good tip acted on); ``frames`` counted."""
    v = np.asarray(verdicts).astype(str)
    b = np.asarray(bad, dtype=int)
    keep = b >= 0
    v, y = v[keep], b[keep] == 1
    if v.size == 0:
        return {"frames": 0, "coverage": float("nan"), "accuracy_decided": float("nan"),
                "bad_called_good": float("nan"), "good_called_bad": float("nan")}
    decided = v != "uncertain"
    return {"frames": int(v.size), "coverage": float(decided.mean()),
            "accuracy_decided": float(np.mean((v[decided] == "bad") == y[decided])) if decided.any()
            else float("nan"),
            "bad_called_good": float(np.mean((v == "good") & y)),
            "good_called_bad": float(np.mean((v == "bad") & ~y))}
