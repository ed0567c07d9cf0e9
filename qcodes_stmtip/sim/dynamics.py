"""Stochastic tip dynamics for conditioning: spontaneous apex changes and responses to actions.

Transition model (all probabilities are parameters of :class:`TransitionModel`):

* **Ladder.** Tip labels are ordered from best to worst —
  H:Si(100): ``individual_atoms`` > ``dimers_asymmetries`` > ``rows`` > ``generic_defect``;
  Au/Cu(111): ``individual_atoms`` > ``double_tip`` > ``corruption``. A change draws a new
  apex (:func:`~qcodes_stmtip.sim.tips.sample_tip`) for a label that is better, the same
  ("sideways": a new apex of the same class) or worse.
* **Severity.** Each action has a severity ``S``; it changes the apex with probability
  ``1 − exp(−S)``, and a change improves the tip with probability
  ``improve_max · exp(−S / improve_scale)`` (otherwise sideways or worse, with worse jumps
  more likely for large ``S``). So larger actions are both more likely to change the apex
  and more likely to make it worse.
* **Bias pulses** ``S = (|V| / pulse_v0)^pulse_v_exp · (width / pulse_w0)^pulse_w_exp``
  with ``pulse_v0 = 3.5 V``, ``pulse_w0 = 50 ms``: pulses below ~1.5 V rarely do anything,
  the 2–10 V, 10–500 ms pulses used for in-situ conditioning (e.g. Rashidi & Wolkow,
  ACS Nano 12, 5185 (2018); Krull et al., Commun. Phys. 3, 54 (2020); the pulsing and
  "tip crashing" of Gordon et al., RSI 90, 103704 (2019)) change the apex in a large
  fraction of attempts. Negative sample bias
  (``amplitude_V < 0``) is weighted by ``negative_polarity_factor`` (field emission from
  the tip at positive sample bias is the usual reshaping route).
* **Indentations** ``S = (depth / indent_d0)^indent_exp`` with ``indent_d0 = 1 nm``:
  0.2–0.5 nm gentle pokes rarely change a tip, 2–5 nm plunges almost always do and often
  pick up a cluster (worse).
* **Moves** to a fresh area change the apex with probability
  ``move_p · (1 − exp(−distance / move_scale))`` (a small, mostly sideways change).
* **Spontaneous changes** occur as a Poisson process with a mean time between changes
  per rung (``spontaneous_mean_s``: 30 min for the best tips down to 5 min for bad ones
  at room temperature), biased towards getting worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qcodes_stmtip.sim.tips import TipState, sample_tip
from qcodes_stmtip.taxonomy import check_surface

#: Tip-quality ladders, best first.
LADDERS: dict[str, tuple[str, ...]] = {
    "hsi100": ("individual_atoms", "dimers_asymmetries", "rows", "generic_defect"),
    "au111": ("individual_atoms", "double_tip", "corruption"),
    "cu111": ("individual_atoms", "double_tip", "corruption"),
}

#: Starting-tip label distribution (a freshly approached tip is usually not great).
INITIAL_WEIGHTS: dict[str, tuple[float, ...]] = {
    "hsi100": (0.05, 0.25, 0.25, 0.45),
    "au111": (0.3, 0.4, 0.3),
    "cu111": (0.3, 0.4, 0.3),
}


@dataclass
class TransitionModel:
    """Parameters of the stochastic tip model (see the module docstring)."""

    pulse_v0: float = 3.5
    pulse_v_exp: float = 2.0
    pulse_w0: float = 0.05
    pulse_w_exp: float = 0.5
    negative_polarity_factor: float = 0.7
    indent_d0: float = 1e-9
    indent_exp: float = 1.5
    move_p: float = 0.08
    move_scale: float = 1e-6
    improve_max: float = 0.6
    improve_scale: float = 3.0
    sideways: float = 0.3
    spontaneous_mean_s: tuple[float, ...] = field(default_factory=lambda: (1800.0, 1200.0, 600.0, 300.0))
    spontaneous_improve: float = 0.25
    height_jump_m: float = 0.15e-9


class TipDynamics:
    """A simulated apex that changes over time and in response to conditioning actions.

    ``initial`` is a :class:`TipState`, a label of ``surface``, or ``None`` (draw one from
    :data:`INITIAL_WEIGHTS`). ``rng`` drives every random choice (deterministic for a seed);
    ``time_rng``, if given, drives the spontaneous changes of :meth:`evolve` instead, so the
    outcomes of actions do not depend on how often, or in how many steps, time was let pass
    (how many lines were scanned, how often the microscope was polled).
    Each action returns the (possibly unchanged) current state; ``changes`` counts changes.
    """

    def __init__(self, surface: str, rng: np.random.Generator,
                 initial: TipState | str | None = None, model: TransitionModel | None = None,
                 time_rng: np.random.Generator | None = None) -> None:
        check_surface(surface)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        self.surface = surface
        self.rng = rng
        self.time_rng = rng if time_rng is None else time_rng
        self.model = model or TransitionModel()
        self.ladder = LADDERS[surface]
        self.changes = 0
        if initial is None:
            label = str(rng.choice(self.ladder, p=INITIAL_WEIGHTS[surface]))
            self.state = sample_tip(surface, label, rng)
        elif isinstance(initial, str):
            if initial not in self.ladder:
                raise ValueError(f"initial={initial!r} is not a tip state of {surface!r}; expected one of {self.ladder}")
            self.state = sample_tip(surface, initial, rng)
        elif isinstance(initial, TipState):
            if initial.label not in self.ladder:
                raise ValueError(f"initial.label={initial.label!r} is not a tip state of {surface!r}")
            self.state = initial
        else:
            raise ValueError(f"initial must be a TipState, a label or None, got {type(initial).__name__}")

    @property
    def rank(self) -> int:
        """Position of the current label on the ladder (0 = best)."""
        return self.ladder.index(self.state.label)

    def _rung_mean(self) -> float:
        means = self.model.spontaneous_mean_s
        return means[min(self.rank, len(means) - 1)] if self.surface == "hsi100" else means[min(2 * self.rank, len(means) - 1)]

    def _new_state(self, severity: float, improve_p: float,
                   rng: np.random.Generator | None = None) -> TipState:
        rng = self.rng if rng is None else rng
        rank, top = self.rank, len(self.ladder) - 1
        u = rng.random()
        if u < improve_p and rank > 0:
            new = int(rng.integers(0, rank))
        elif u < improve_p + self.model.sideways * (1 - improve_p) or rank == top:
            new = rank
        else:
            # worse: jump further down for severe actions
            span = top - rank
            weights = np.exp(np.arange(span) * min(severity, 4.0) / 2 - np.arange(span))
            new = rank + 1 + int(rng.choice(span, p=weights / weights.sum()))
        state = sample_tip(self.surface, self.ladder[new], rng)
        state.apex_z_m = self.state.apex_z_m + rng.normal(0, self.model.height_jump_m)
        self.state = state
        self.changes += 1
        return state

    def _act(self, severity: float) -> TipState:
        if self.rng.random() < 1.0 - math.exp(-severity):
            improve = self.model.improve_max * math.exp(-severity / self.model.improve_scale)
            return self._new_state(severity, improve)
        return self.state

    def evolve(self, dt_s: float) -> TipState | None:
        """Let ``dt_s`` seconds pass; return the new state if the apex changed spontaneously, else None."""
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise ValueError(f"dt_s must be a non-negative time in seconds, got {dt_s!r}")
        if self.time_rng.random() < 1.0 - math.exp(-dt_s / self._rung_mean()):
            return self._new_state(0.5, self.model.spontaneous_improve, self.time_rng)
        return None

    def pulse_severity(self, amplitude_V: float, width_s: float) -> float:
        """Severity S of a bias pulse (see module docstring)."""
        m = self.model
        s = (abs(amplitude_V) / m.pulse_v0) ** m.pulse_v_exp * (width_s / m.pulse_w0) ** m.pulse_w_exp
        return s * (m.negative_polarity_factor if amplitude_V < 0 else 1.0)

    def pulse(self, amplitude_V: float, width_s: float) -> TipState:
        """Apply a bias pulse of ``amplitude_V`` volts (sign = polarity) for ``width_s`` seconds."""
        if not (math.isfinite(amplitude_V) and 0 < abs(amplitude_V) <= 10.0):
            raise ValueError(f"amplitude_V must be non-zero and within ±10 V, got {amplitude_V!r}")
        if not (math.isfinite(width_s) and 0 < width_s <= 10.0):
            raise ValueError(f"width_s must be in (0, 10] s, got {width_s!r}")
        return self._act(self.pulse_severity(amplitude_V, width_s))

    def indent_severity(self, depth_m: float) -> float:
        """Severity S of an indentation of ``depth_m`` metres."""
        return (depth_m / self.model.indent_d0) ** self.model.indent_exp

    def indent(self, depth_m: float) -> TipState:
        """Poke the apex ``depth_m`` metres (0 < depth ≤ 20 nm) into the surface."""
        if not (math.isfinite(depth_m) and 0 < depth_m <= 20e-9):
            raise ValueError(f"depth_m must be in (0, 20e-9] m, got {depth_m!r}")
        return self._act(self.indent_severity(depth_m))

    def change_to(self, tip: TipState | str | None = None) -> TipState:
        """Change the apex now, whatever the odds: to ``tip`` (a :class:`TipState`, or a label
        of the surface: a fresh apex of that class) or, with ``None``, one rung worse on the
        ladder (a fresh apex of the same class when the tip is already the worst). The apex
        height jumps as in a spontaneous change. For scheduled changes (tests, benchmarks)."""
        if tip is None:
            tip = self.ladder[min(self.rank + 1, len(self.ladder) - 1)]
        if isinstance(tip, str):
            if tip not in self.ladder:
                raise ValueError(f"tip={tip!r} is not a tip state of {self.surface!r}; expected one of {self.ladder}")
            state = sample_tip(self.surface, tip, self.rng)
            state.apex_z_m = self.state.apex_z_m + self.rng.normal(0, self.model.height_jump_m)
        elif isinstance(tip, TipState):
            if tip.label not in self.ladder:
                raise ValueError(f"tip.label={tip.label!r} is not a tip state of {self.surface!r}")
            state = tip
        else:
            raise ValueError(f"tip must be a TipState, a label or None, got {type(tip).__name__}")
        self.state = state
        self.changes += 1
        return state

    def move(self, distance_m: float) -> TipState:
        """Move the tip ``distance_m`` metres to a fresh area (mostly a sideways change, rarely any)."""
        if not (math.isfinite(distance_m) and distance_m >= 0):
            raise ValueError(f"distance_m must be a non-negative distance in m, got {distance_m!r}")
        m = self.model
        if self.rng.random() < m.move_p * (1 - math.exp(-distance_m / m.move_scale)):
            return self._new_state(0.3, m.improve_max * 0.5)
        return self.state
