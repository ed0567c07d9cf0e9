"""The good/bad decision as one: a calibrated P(bad tip) and two operating points.

The class evidence (the ensemble-mean probability of the classes that mean a bad tip) and
the tip-change evidence (the binary model's probability) are combined by a logistic model
fitted on the validation sessions, so ``p_bad`` is one calibrated probability that the
tip is bad now. Two thresholds turn it into a verdict:

* ``good`` when ``p_bad <= good_below``, ``bad`` when ``p_bad >= bad_above``, else
  ``uncertain`` (the frame abstains);
* ``good_below`` is the highest threshold at which bad tips called good stay within
  ``risk.bad_called_good`` of the validation frames, ``bad_above`` the lowest at which good
  tips called bad stay within ``risk.good_called_bad`` (shares of all validation frames).
  Where the two ranges overlap no abstention is needed, and one threshold (fewest errors on
  validation, inside the overlap) serves as both.

Content classes (the sample, not the tip: Au/Cu step edges, impurities) are neither good nor
bad evidence; frames labelled with them are left out of the fit. The paper's plain
vote-and-threshold rule stays available (:class:`~qcodes_stmtip.classify.ensemble.Ensemble`
``decision_rule="vote"``). Plain numpy; scikit-learn is imported only by :func:`fit_decision`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["DEFAULT_RISK", "DECISION_RULES", "BadTipDecision", "Risk", "fit_decision", "truth_bad"]

#: ``calibrated``: the calibrated P(bad) and its operating points; ``vote``: the paper's majority
#: vote, per-class thresholds and the tip-change flag.
DECISION_RULES = ("calibrated", "vote")
#: Probabilities are clipped to [EPS, 1 − EPS] before the logit (float64).
EPS = 1e-4


@dataclass(frozen=True)
class Risk:
    """The stated risk the operating points are chosen for, as shares of all frames:
    ``bad_called_good`` (a bad tip kept: a wasted scan session) and ``good_called_bad`` (a good
    tip called bad: a pulse or indentation fired at a good tip)."""

    bad_called_good: float = 0.02
    good_called_bad: float = 0.05

    def __post_init__(self) -> None:
        for name in ("bad_called_good", "good_called_bad"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
                raise ValueError(f"Risk.{name} must be a share in [0, 1), got {v!r}")


#: The default risk of ``stmtip train`` (docs/decisions/0006-calibrated-decision.md).
DEFAULT_RISK = Risk()


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(q / (1 - q))


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"decision.{name} must be a finite number, got {value!r}")
    return float(value)


def bad_class_evidence(mean: np.ndarray, classes: Sequence[str], good_classes: frozenset[str] | set[str],
                       content_classes: frozenset[str] | set[str] = frozenset()) -> np.ndarray:
    """(N,) summed ensemble-mean probability of the classes that mean a bad tip (neither good
    nor content), renormalised over the tip classes when content classes exist."""
    p = np.asarray(mean, dtype=np.float64)
    bad = [i for i, c in enumerate(classes) if c not in good_classes and c not in content_classes]
    tip = [i for i, c in enumerate(classes) if c not in content_classes]
    total = p[:, tip].sum(axis=1)
    return np.where(total > 0, p[:, bad].sum(axis=1) / np.maximum(total, 1e-12), 0.5)


def truth_bad(labels: np.ndarray, classes: Sequence[str], good_classes: frozenset[str] | set[str],
              tip_change: np.ndarray | None = None,
              content_classes: frozenset[str] | set[str] = frozenset()) -> np.ndarray:
    """Per frame: 1 = bad tip (a bad class, or a labelled tip change), 0 = good tip, −1 = no
    good/bad truth (no class label and no tip change, or a content class)."""
    y = np.asarray(labels, dtype=int)
    out = np.full(y.shape, -1, dtype=int)
    lab = y >= 0
    names = np.array(classes, dtype=object)
    cls = np.where(lab, y, 0)
    is_good = np.isin(names[cls], list(good_classes)) & lab
    is_content = np.isin(names[cls], list(content_classes)) & lab
    out[is_good] = 0
    out[lab & ~is_good & ~is_content] = 1
    if tip_change is not None:
        out[np.asarray(tip_change, dtype=bool)] = 1
    return out


@dataclass(frozen=True)
class BadTipDecision:
    """``p_bad = sigmoid(class_weight · logit(bad-class evidence) + change_weight ·
    logit(P(tip change)) + bias)``, then ``good`` at or below ``good_below``, ``bad`` at or
    above ``bad_above``, ``uncertain`` between. ``validation`` records what the operating
    points were chosen on (frames, sessions, rates reached there)."""

    class_weight: float
    change_weight: float
    bias: float
    good_below: float
    bad_above: float
    risk: Risk = field(default_factory=Risk)
    validation: Mapping[str, float | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("class_weight", "change_weight", "bias", "good_below", "bad_above"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if not 0 <= self.good_below <= self.bad_above <= 1:
            raise ValueError(f"decision thresholds need 0 <= good_below ({self.good_below}) <= bad_above "
                             f"({self.bad_above}) <= 1")

    def probability(self, class_evidence: np.ndarray, tip_change: np.ndarray | None = None) -> np.ndarray:
        """(N,) calibrated P(bad tip) from the bad-class evidence and P(tip change) (None: no
        tip-change model; its term is left out)."""
        z = self.class_weight * _logit(class_evidence) + self.bias
        if tip_change is not None and self.change_weight:
            z = z + self.change_weight * _logit(tip_change)
        return 1.0 / (1.0 + np.exp(-z))

    def verdicts(self, p_bad: np.ndarray) -> np.ndarray:
        """``"good"`` / ``"bad"`` / ``"uncertain"`` per frame (NaN is ``"uncertain"``)."""
        p = np.asarray(p_bad, dtype=np.float64)
        out = np.full(p.shape, "uncertain", dtype=object)
        out[p <= self.good_below] = "good"
        out[p >= self.bad_above] = "bad"
        return out.astype(str)

    def reason(self, p_bad: float, evidence: str) -> str:
        """One line saying why a frame with ``p_bad`` is not good (empty when it is)."""
        if not math.isfinite(p_bad):
            return "p(bad) is not a number"
        if p_bad >= self.bad_above:
            return f"p(bad)={p_bad:.2f} >= {self.bad_above:.2f} ({evidence})"
        if p_bad > self.good_below:
            return f"uncertain: p(bad)={p_bad:.2f} is between {self.good_below:.2f} and {self.bad_above:.2f} ({evidence})"
        return ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["validation"] = dict(self.validation)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> BadTipDecision:
        """Rebuild from :meth:`as_dict` output (a bundle manifest); ``ValueError`` naming the
        field on anything else."""
        if not isinstance(d, Mapping):
            raise ValueError(f"decision must be a mapping, got {type(d).__name__}")
        risk = d.get("risk", {})
        if not isinstance(risk, Mapping):
            raise ValueError("decision.risk must be a mapping")
        validation = d.get("validation", {})
        if not isinstance(validation, Mapping):
            raise ValueError("decision.validation must be a mapping")
        try:
            return cls(d["class_weight"], d["change_weight"], d["bias"], d["good_below"], d["bad_above"],
                       Risk(**{k: risk[k] for k in ("bad_called_good", "good_called_bad") if k in risk}),
                       dict(validation))
        except KeyError as exc:
            raise ValueError(f"decision is missing {exc.args[0]!r}") from None


def _operating_points(p: np.ndarray, bad: np.ndarray, risk: Risk) -> tuple[float, float]:
    """(good_below, bad_above) on validation: the widest good and bad ranges within ``risk``."""
    n = p.size
    order = np.argsort(p, kind="stable")
    ps, bs = p[order], bad[order].astype(int)
    candidates = np.unique(np.concatenate([[0.0, 1.0], ps]))
    below = np.searchsorted(ps, candidates, side="right")  # frames with p <= t
    at_or_above = n - np.searchsorted(ps, candidates, side="left")  # frames with p >= t
    cum_bad = np.concatenate([[0], np.cumsum(bs)])
    cum_good_from_top = np.concatenate([[0], np.cumsum((1 - bs)[::-1])])
    bad_called_good = cum_bad[below] / n  # p <= t and bad
    good_called_bad = cum_good_from_top[at_or_above] / n  # p >= t and good
    ok = candidates[bad_called_good <= risk.bad_called_good]
    good_below = float(ok.max()) if ok.size else 0.0
    ok = candidates[good_called_bad <= risk.good_called_bad]
    bad_above = float(ok.min()) if ok.size else 1.0
    if good_below >= bad_above:  # the ranges overlap: one threshold, fewest errors inside the overlap
        inside = (candidates >= bad_above) & (candidates <= good_below)
        strictly_below = np.searchsorted(ps, candidates, side="left")  # p < t
        errors = good_called_bad * n + cum_bad[strictly_below]
        t = float(candidates[inside][int(np.argmin(errors[inside]))])
        return (float(np.nextafter(t, 0.0)) if t > 0 else 0.0), t
    return good_below, bad_above


def fit_decision(class_evidence: np.ndarray, tip_change: np.ndarray | None, bad: np.ndarray,
                 risk: Risk = DEFAULT_RISK, sessions: int | None = None) -> BadTipDecision:
    """Fit the calibration (logistic regression, scikit-learn) and choose the operating points
    on validation frames: ``bad`` is 1/0 per frame (frames with −1 are left out)."""
    from sklearn.linear_model import LogisticRegression

    b = np.asarray(bad, dtype=int)
    keep = b >= 0
    if keep.sum() < 2 or np.unique(b[keep]).size < 2:
        raise ValueError(f"the decision needs good and bad validation frames, got {int(np.sum(b == 0))} good "
                         f"and {int(np.sum(b == 1))} bad")
    cols = [_logit(class_evidence)[keep]]
    if tip_change is not None:
        cols.append(_logit(tip_change)[keep])
    x = np.stack(cols, axis=1)
    model = LogisticRegression(C=1.0).fit(x, b[keep])
    w = model.coef_[0]
    decision = BadTipDecision(float(w[0]), float(w[1]) if tip_change is not None else 0.0,
                              float(model.intercept_[0]), 0.0, 1.0, risk)
    p = decision.probability(np.asarray(class_evidence)[keep],
                             None if tip_change is None else np.asarray(tip_change)[keep])
    y = b[keep].astype(bool)
    good_below, bad_above = _operating_points(p, y, risk)
    verdict = np.where(p <= good_below, 0, np.where(p >= bad_above, 1, -1))
    decided = verdict >= 0
    validation = {"frames": int(keep.sum()), "bad_frames": int(y.sum()),
                  "coverage": float(decided.mean()),
                  "accuracy_decided": float(np.mean(verdict[decided] == y[decided])) if decided.any() else math.nan,
                  "bad_called_good": float(np.mean((verdict == 0) & y)),
                  "good_called_bad": float(np.mean((verdict == 1) & ~y))}
    if sessions is not None:
        validation["sessions"] = int(sessions)
    return BadTipDecision(decision.class_weight, decision.change_weight, decision.bias, good_below, bad_above,
                          risk, validation)
