"""Evidence across frames: the running probability that the tip is bad.

Between two actions the tip is the same tip unless it changes, so frames are not judged
alone. :class:`TipBelief` is a two-state (good/bad) filter:

* before each frame the carried belief relaxes towards ``after_action`` by
  ``change_per_frame`` (the prior chance that the apex changes between two frames by itself);
* a tip action, or a frame whose tip-change probability is flagged, resets it to
  ``after_action`` (earlier frames showed another apex);
* the frame's calibrated P(bad) (:mod:`~qcodes_stmtip.classify.decision`) enters as a
  likelihood ratio against the calibration set's share of bad frames (``base_rate``), so a
  frame at the base rate carries no evidence and two frames at p = 0.2 weigh more than one.

Each :meth:`TipBelief.update` returns a :class:`BeliefStep` that says what was carried over,
what the frame added and the result, for the run's record. Plain Python, no imports beyond math.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BeliefStep", "TipBelief"]

#: Probabilities are clipped to [EPS, 1 − EPS] before odds are taken.
EPS = 1e-4


def _odds(p: float) -> float:
    q = min(max(p, EPS), 1 - EPS)
    return q / (1 - q)


def _check_share(name: str, value: object, low_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not (0 < value < 1 if low_open else 0 <= value < 1):
        raise ValueError(f"TipBelief.{name} must be a probability in {'(0, 1)' if low_open else '[0, 1)'}, "
                         f"got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BeliefStep:
    """One frame's update: ``carried`` (belief before the frame's evidence, after relaxing or
    a reset), ``frame_p_bad`` (the frame's own calibrated P(bad), NaN if none), ``belief``
    (after it) and ``rule`` (one line: what happened)."""

    carried: float
    frame_p_bad: float
    belief: float
    rule: str


class TipBelief:
    """Running P(bad tip) over the frames since the last tip action.

    ``after_action``: P(bad) right after a tip action or a detected tip change;
    ``change_per_frame``: chance the apex changes between two frames without an action;
    ``base_rate``: share of bad frames the frame probabilities were calibrated on.
    """

    def __init__(self, *, after_action: float = 0.5, change_per_frame: float = 0.05,
                 base_rate: float = 0.5) -> None:
        self.after_action = _check_share("after_action", after_action)
        self.change_per_frame = _check_share("change_per_frame", change_per_frame, low_open=False)
        self.base_rate = _check_share("base_rate", base_rate)
        self.belief = self.after_action
        self.frames = 0  # frames of evidence since the last reset

    def reset(self) -> None:
        """Forget the evidence (side effect: belief = ``after_action``): call after a tip action."""
        self.belief = self.after_action
        self.frames = 0

    def update(self, p_bad: float, *, tip_changed: bool = False) -> BeliefStep:
        """Add one frame's calibrated ``p_bad``; ``tip_changed``: the frame flags a tip change
        (the belief restarts from ``after_action`` before this frame's evidence)."""
        if tip_changed:
            self.reset()
            carried, rule = self.belief, "tip change flagged: evidence restarted"
        else:
            h = self.change_per_frame
            carried = (1 - h) * self.belief + h * self.after_action
            rule = f"carried {carried:.3f} from {self.frames} frame(s)"
        if not math.isfinite(p_bad):
            self.belief = carried
            return BeliefStep(carried, math.nan, carried, rule + "; this frame has no P(bad): nothing added")
        odds = _odds(carried) * _odds(p_bad) / _odds(self.base_rate)
        self.belief = odds / (1 + odds)
        self.frames += 1
        return BeliefStep(carried, float(p_bad), self.belief,
                          f"{rule}, frame p(bad)={p_bad:.3f} -> P(bad tip)={self.belief:.3f}")
