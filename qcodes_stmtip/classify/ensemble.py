"""Majority-vote ensembles with per-class confidence thresholds and the good/bad collapse.

The voting logic (:func:`majority_vote`, :func:`collapse_good_bad`) is plain
numpy; :class:`Ensemble` wraps Keras member models but does not import Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from qcodes_stmtip.classify.decision import BadTipDecision

#: Decision value of a frame whose winning class is below its confidence threshold.
UNCERTAIN = -1


@dataclass
class EnsemblePrediction:
    """Ensemble outputs for N frames and K classes (M members).

    ``member_probabilities`` (M, N, K); ``mean`` (N, K) their average; ``votes``
    (N, K) how many members rank each class first; ``vote_class`` (N,) the
    majority class (ties → higher mean probability); ``decision`` (N,) the
    majority class, or :data:`UNCERTAIN` when its mean probability is below the
    class threshold; ``tip_change_probability`` (N,) from the binary network, or None.
    """

    member_probabilities: np.ndarray
    mean: np.ndarray
    votes: np.ndarray
    vote_class: np.ndarray
    decision: np.ndarray
    tip_change_probability: np.ndarray | None = None


def majority_vote(
    member_probabilities: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None,
    class_weights: Sequence[float] | np.ndarray | None = None,
) -> EnsemblePrediction:
    """Combine (M, N, K) member probabilities by majority vote, then apply per-class thresholds.

    ``class_weights`` (K positive numbers) weight each class's probability when members pick
    their first class and when vote ties are broken (e.g. 1 / class frequency: the decision
    that maximises balanced accuracy for calibrated probabilities); the probabilities, and
    the threshold each decision is held to, stay unweighted. None is the paper's plain vote.
    """
    p = np.asarray(member_probabilities, dtype=np.float64)
    if p.ndim != 3 or p.shape[0] < 1 or p.shape[2] < 1:
        raise ValueError(f"member_probabilities must have shape (M, N, K), got {p.shape}")
    m, n, k = p.shape
    th = np.zeros(k) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if th.shape != (k,):
        raise ValueError(f"thresholds must have one value per class ({k}), got shape {th.shape}")
    w = np.ones(k) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    if w.shape != (k,) or not np.all(np.isfinite(w)) or not np.all(w > 0):
        raise ValueError(f"class_weights must be {k} positive finite numbers, got {class_weights!r}")
    mean = p.mean(axis=0)
    votes = np.zeros((n, k), dtype=int)
    firsts = np.argmax(p * w, axis=2)  # (M, N)
    for j in range(m):
        votes[np.arange(n), firsts[j]] += 1
    # Majority class; ties between vote counts resolved by the higher (weighted) mean probability.
    tie_break = np.where(votes == votes.max(axis=1, keepdims=True), mean * w, -np.inf)
    vote_class = np.argmax(tie_break, axis=1)
    confident = mean[np.arange(n), vote_class] >= th[vote_class]
    decision = np.where(confident, vote_class, UNCERTAIN)
    return EnsemblePrediction(p, mean, votes, vote_class, decision)


def collapse_good_bad(
    decision: np.ndarray,
    classes: Sequence[str],
    good_classes: frozenset[str] | set[str],
    tip_change: np.ndarray | None = None,
) -> np.ndarray:
    """Map decisions to ``"good"`` / ``"bad"`` / ``"uncertain"``; a flagged tip change is ``"bad"``."""
    unknown = set(good_classes) - set(classes)
    if unknown:
        raise ValueError(f"good_classes {sorted(unknown)} are not among classes {tuple(classes)}")
    d = np.asarray(decision, dtype=int)
    good_idx = [i for i, c in enumerate(classes) if c in good_classes]
    out = np.where(np.isin(d, good_idx), "good", "bad").astype(object)
    out[d == UNCERTAIN] = "uncertain"
    if tip_change is not None:
        out[np.asarray(tip_change, dtype=bool)] = "bad"
    return out.astype(str)


def verdict_reasons(
    prediction: EnsemblePrediction,
    classes: Sequence[str],
    good_classes: frozenset[str] | set[str],
    thresholds: Sequence[float] | np.ndarray,
    tip_change_threshold: float = 0.5,
) -> list[str]:
    """Why each frame's good/bad verdict (:func:`collapse_good_bad`) is not ``"good"``.

    One line per frame, empty for a good verdict; otherwise the rule that fired, with its
    numbers: a class that is not a good-tip class, a majority class below its confidence
    threshold, and/or a flagged tip change (which makes the verdict ``"bad"`` whatever the
    class says).
    """
    th = np.asarray(thresholds, dtype=np.float64)
    tip = prediction.tip_change_probability
    out = []
    for n, (d, v) in enumerate(zip(prediction.decision, prediction.vote_class, strict=True)):
        parts = []
        name = classes[int(v)]
        p = float(prediction.mean[n, int(v)])
        if d == UNCERTAIN:
            parts.append(f"uncertain: {name} p={p:.2f} is below its threshold {th[int(v)]:.2f}")
        elif name not in good_classes:
            parts.append(f"{name} p={p:.2f} is not a good-tip class")
        if tip is not None and tip[n] >= tip_change_threshold:
            parts.append(f"tip change flagged: p={float(tip[n]):.2f} >= {tip_change_threshold:.2f}")
        out.append("; ".join(parts))
    return out


@dataclass
class Member:
    """One ensemble member: a name, its architecture and a model with K probability outputs (a
    Keras network, or a :class:`~qcodes_stmtip.classify.feature_model.FeatureModel` whose
    ``architecture`` is its kind)."""

    name: str
    architecture: str
    model: object
    info: dict | None = None


class Ensemble:
    """Majority-vote ensemble of Keras models for one surface, plus an optional tip-change network.

    ``thresholds`` (one per class, default 0.5) gate the majority class; ``class_weights``
    (optional) weight the vote (see :func:`majority_vote`);
    ``tip_change`` is a 2-output model whose column 1 is P(tip change), flagged
    at ``tip_change_threshold``. With ``tta`` every network's output is the mean over
    exact symmetry views of each frame (:func:`~qcodes_stmtip.classify.augment.dihedral_views`):
    the 8 symmetries of the square for the members, the horizontal flip for the
    tip-change network (and the vertical flips with ``tip_change_vertical_flip``, for a
    network trained with them) — 8 (2 or 4) times the inference cost.
    """

    def __init__(
        self,
        surface: str,
        classes: Sequence[str],
        members: Sequence[Member],
        *,
        thresholds: Sequence[float] | None = None,
        tip_change: Member | None = None,
        tip_change_threshold: float = 0.5,
        good_classes: frozenset[str] | None = None,
        tta: bool = False,
        tip_change_vertical_flip: bool = False,
        class_weights: Sequence[float] | None = None,
        decision: BadTipDecision | None = None,
        decision_rule: str = "calibrated",
    ):
        from qcodes_stmtip.classify.decision import DECISION_RULES

        if not members:
            raise ValueError("members must hold at least one model")
        self.surface = surface
        self.classes = tuple(classes)
        self.members = list(members)
        self.thresholds = np.full(len(self.classes), 0.5) if thresholds is None else np.asarray(
            thresholds, dtype=np.float64
        )
        if self.thresholds.shape != (len(self.classes),):
            raise ValueError(f"thresholds must have {len(self.classes)} values, got {self.thresholds.shape}")
        self.tip_change = tip_change
        self.tip_change_threshold = float(tip_change_threshold)
        if good_classes is None:
            from qcodes_stmtip.taxonomy import GOOD_CLASSES

            good_classes = GOOD_CLASSES.get(surface, frozenset())
        self.good_classes = frozenset(good_classes)
        from qcodes_stmtip.taxonomy import CONTENT_CLASSES

        self.content_classes = frozenset(CONTENT_CLASSES.get(surface, frozenset())) - self.good_classes
        if decision_rule not in DECISION_RULES:
            raise ValueError(f"decision_rule must be one of {DECISION_RULES}, got {decision_rule!r}")
        self.decision = decision
        self.decision_rule = decision_rule
        self.tta = bool(tta)
        self.tip_change_vertical_flip = bool(tip_change_vertical_flip)
        self.class_weights = None if class_weights is None else np.asarray(class_weights, dtype=np.float64)
        if self.class_weights is not None and (self.class_weights.shape != (len(self.classes),)
                                               or not np.all(np.isfinite(self.class_weights))
                                               or not np.all(self.class_weights > 0)):
            raise ValueError(f"class_weights must be {len(self.classes)} positive numbers, got {class_weights!r}")

    def member_views(self, batch: np.ndarray) -> list[np.ndarray]:
        """The views each member sees of ``batch`` (just ``[batch]`` without TTA)."""
        from qcodes_stmtip.classify.augment import dihedral_views

        return dihedral_views(batch) if self.tta else [batch]

    def tip_change_views(self, batch: np.ndarray) -> list[np.ndarray]:
        """The views the tip-change network sees of ``batch`` (just ``[batch]`` without TTA)."""
        from qcodes_stmtip.classify.augment import dihedral_views

        if not self.tta:
            return [batch]
        return dihedral_views(batch, restricted=True, vertical_flip=self.tip_change_vertical_flip)

    def predict(self, batch: np.ndarray, batch_size: int = 64) -> EnsemblePrediction:
        """Classify a preprocessed (N, s, s, 1) float32 batch."""
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(f"batch must have shape (N, size, size, 1), got {x.shape}")
        features = None
        if any(not _is_network(m.model) for m in self.networks):
            from qcodes_stmtip.classify.features import frame_features

            features = frame_features(x)  # once for every feature member

        def run(member: Member, views: Callable[[np.ndarray], list[np.ndarray]]) -> np.ndarray:
            if _is_network(member.model):
                return mean_over_views(member.model, x, views, batch_size)
            return member.model.predict_features(features)

        pred = self.vote(np.stack([run(m, self.member_views) for m in self.members]))
        if self.tip_change is not None:
            pred.tip_change_probability = run(self.tip_change, self.tip_change_views)[:, 1]
        return pred

    def vote(self, member_probabilities: np.ndarray) -> EnsemblePrediction:
        """This ensemble's decision rule on (M, N, K) member probabilities: majority vote with
        its class weights, then its per-class thresholds."""
        return majority_vote(member_probabilities, self.thresholds, self.class_weights)

    @property
    def networks(self) -> list[Member]:
        """The members and the tip-change member, in that order."""
        return [*self.members, *([self.tip_change] if self.tip_change is not None else [])]

    @property
    def all_networks(self) -> bool:
        """True when every member (and the tip-change member) is a Keras network."""
        return all(_is_network(m.model) for m in self.networks)

    @property
    def calibrated(self) -> bool:
        """True when verdicts come from the calibrated P(bad) (:mod:`~qcodes_stmtip.classify.decision`),
        False for the paper's vote rule (chosen, or a bundle trained before the decision existed)."""
        return self.decision is not None and self.decision_rule == "calibrated"

    def bad_probability(self, prediction: EnsemblePrediction) -> np.ndarray:
        """(N,) calibrated P(bad tip) per frame; NaN when the ensemble has no calibrated decision."""
        n = len(prediction.mean)
        if self.decision is None:
            return np.full(n, np.nan)
        from qcodes_stmtip.classify.decision import bad_class_evidence

        evidence = bad_class_evidence(prediction.mean, self.classes, self.good_classes, self.content_classes)
        return self.decision.probability(evidence, prediction.tip_change_probability)

    def good_bad(self, prediction: EnsemblePrediction) -> np.ndarray:
        """``"good"`` / ``"bad"`` / ``"uncertain"`` per frame of ``prediction``: the calibrated
        decision when the ensemble has one (:attr:`calibrated`), else the paper's vote rule."""
        if self.calibrated:
            return self.decision.verdicts(self.bad_probability(prediction))
        flag = None
        if prediction.tip_change_probability is not None:
            flag = prediction.tip_change_probability >= self.tip_change_threshold
        return collapse_good_bad(prediction.decision, self.classes, self.good_classes, flag)

    def reasons(self, prediction: EnsemblePrediction) -> list[str]:
        """Why each frame of ``prediction`` is not ``"good"``: the calibrated P(bad), its operating
        point and the evidence behind it, or the vote rule's reasons (:func:`verdict_reasons`)."""
        if self.calibrated:
            p_bad = self.bad_probability(prediction)
            bad = [i for i, c in enumerate(self.classes)
                   if c not in self.good_classes and c not in self.content_classes]
            tip = prediction.tip_change_probability
            out = []
            for n, p in enumerate(p_bad):
                worst = max(bad, key=lambda i: prediction.mean[n, i]) if bad else None
                parts = [] if worst is None else [f"{self.classes[worst]} p={prediction.mean[n, worst]:.2f}"]
                if tip is not None:
                    parts.append(f"tip change p={float(tip[n]):.2f}")
                out.append(self.decision.reason(float(p), ", ".join(parts)))
            return out
        return verdict_reasons(prediction, self.classes, self.good_classes, self.thresholds,
                               self.tip_change_threshold)


def _is_network(model) -> bool:
    """A Keras network (symmetry views apply), not a :class:`~qcodes_stmtip.classify.feature_model.FeatureModel`."""
    return getattr(model, "symmetry_views", True)


def mean_over_views(model, x: np.ndarray, views: Callable[[np.ndarray], list[np.ndarray]],
                    batch_size: int, chunk: int = 256) -> np.ndarray:
    """(N, K) float64: ``model``'s outputs for ``x`` averaged over ``views(x)`` (equally long
    arrays). Works through ``chunk`` frames at a time, so the views of a large set (8× its
    size) are never all in memory."""
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]))
    parts = []
    for start in range(0, len(x), chunk):
        vs = views(x[start:start + chunk])
        out = np.asarray(model.predict(np.concatenate(vs), batch_size=batch_size, verbose=0),
                         dtype=np.float64)
        parts.append(out.reshape(len(vs), len(vs[0]), -1).mean(axis=0))
    return np.concatenate(parts)
