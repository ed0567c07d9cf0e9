"""Conditioning policies: what to do to a bad tip next.

A policy is any object with ``name`` and ``choose(context) -> Action`` (or a plain
function of the context, see :func:`as_policy`). The experiment asks it only when the
last frame showed a bad tip; it never sends anything itself. A user policy is a few
lines::

    class PulseThenMove:
        name = "pulse-then-move"

        def choose(self, ctx: PolicyContext) -> Action:
            if ctx.actions_in_area >= ctx.max_actions_per_area:
                return Action.move()
            return Action.pulse(3.0, 0.05)

Shipped: :class:`EscalatingPolicy` (small pulses → larger pulses → shallow → deeper
indentations → a fresh area, the experimentalists' routine) and :class:`RandomPolicy`
(uniformly random actions within the allowed ranges, the baseline).

Units: volts, seconds, metres.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qcodes_stmtip.taxonomy import FrameState

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_LADDER",
    "TIP_ACTIONS",
    "Action",
    "ActionTag",
    "EscalatingPolicy",
    "Policy",
    "PolicyContext",
    "RandomPolicy",
    "as_policy",
]

#: Every action kind an experiment records.
ACTION_KINDS = ("pulse", "indent", "move", "rescan")
#: Kinds that touch the tip (count against the per-area and total budgets).
TIP_ACTIONS = frozenset({"pulse", "indent"})


class ActionTag(StrEnum):
    """Structured marks on an action that an algorithm may key on (stored as ``action_tag``).

    The ``reason`` of an action is free text for people; policies decide on tags only, so
    rewording a message never changes what a policy does.
    """

    #: No mark (a user policy's actions, unless it sets one).
    NONE = ""
    #: The first rung of the escalating ladder again, because the tip state changed.
    LADDER_RESTART = "ladder_restart"
    #: The move after the top rung of the escalating ladder (the ladder starts again).
    LADDER_EXHAUSTED = "ladder_exhausted"


@dataclass(frozen=True)
class Action:
    """One step of a conditioning experiment.

    ``kind``: ``"pulse"`` (``amplitude_V``, ``width_s``), ``"indent"`` (``depth_m`` into
    the sample), ``"move"`` (to a fresh area: the next one of the planner, or the area
    centred at ``x_m``, ``y_m``) or ``"rescan"`` (scan again, tip untouched). For pulses
    and indentations ``x_m``/``y_m`` optionally fix the site (default: the experiment
    picks one beside the imaging frame). ``reason`` is free text stored with the action;
    ``tag`` (an :class:`ActionTag` value, or ``""``) is the structured mark policies key on.
    """

    kind: str
    amplitude_V: float = math.nan
    width_s: float = math.nan
    depth_m: float = math.nan
    x_m: float | None = None
    y_m: float | None = None
    reason: str = ""
    tag: str = ActionTag.NONE

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"Action.kind must be one of {ACTION_KINDS}, got {self.kind!r}")
        if not isinstance(self.tag, str):
            raise ValueError(f"Action.tag must be a string (an ActionTag), got {self.tag!r}")
        object.__setattr__(self, "tag", str(self.tag))  # plain text: JSON and datasets
        if self.kind == "pulse":
            for name in ("amplitude_V", "width_s"):
                value = getattr(self, name)
                if not isinstance(value, int | float) or not math.isfinite(value):
                    raise ValueError(f"Action.{name} of a pulse must be a finite number, got {value!r}")
        if self.kind == "indent" and not (
                isinstance(self.depth_m, int | float) and math.isfinite(self.depth_m)):
            raise ValueError(f"Action.depth_m of an indent must be a finite number, got {self.depth_m!r}")
        if (self.x_m is None) != (self.y_m is None):
            raise ValueError("Action.x_m and Action.y_m must be given together")

    @classmethod
    def pulse(cls, amplitude_V: float, width_s: float, reason: str = "") -> Action:
        """A bias pulse of ``amplitude_V`` (V) for ``width_s`` (s)."""
        return cls("pulse", amplitude_V=amplitude_V, width_s=width_s, reason=reason)

    @classmethod
    def indent(cls, depth_m: float, reason: str = "") -> Action:
        """A controlled indentation ``depth_m`` (m) into the sample."""
        return cls("indent", depth_m=depth_m, reason=reason)

    @classmethod
    def move(cls, reason: str = "") -> Action:
        """Move to the next fresh area."""
        return cls("move", reason=reason)

    @classmethod
    def rescan(cls, reason: str = "") -> Action:
        """Scan again without touching the tip."""
        return cls("rescan", reason=reason)

    @property
    def touches_tip(self) -> bool:
        """Whether the action acts on the tip (pulse or indentation)."""
        return self.kind in TIP_ACTIONS

    def describe(self) -> str:
        """Short human-readable form, e.g. ``pulse 3.0 V × 50 ms``."""
        if self.kind == "pulse":
            return f"pulse {self.amplitude_V:.1f} V × {self.width_s * 1e3:.0f} ms"
        if self.kind == "indent":
            return f"indent {self.depth_m * 1e9:.2f} nm"
        return self.kind

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON metadata)."""
        return {"kind": self.kind, "amplitude_V": self.amplitude_V, "width_s": self.width_s,
                "depth_m": self.depth_m, "x_m": self.x_m, "y_m": self.y_m, "reason": self.reason,
                "tag": self.tag}


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may look at when the tip is bad.

    ``state``/``confidence``: the last frame's class and its ensemble probability;
    ``states``: every frame's state so far (oldest first); ``actions``: every action
    taken so far; ``state_at_last_action``: the state the last tip action was chosen on
    (None before the first); ``actions_in_area``/``max_actions_per_area``: tip actions
    in the present area and the envelope's limit; ``budget_left``: tip actions the total
    budget still allows; ``surface``; ``rng``: the experiment's generator.
    """

    surface: str
    state: str
    confidence: float
    states: tuple[str, ...]
    actions: tuple[Action, ...]
    state_at_last_action: str | None
    actions_in_area: int
    max_actions_per_area: int
    budget_left: int
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    @property
    def tip_actions(self) -> tuple[Action, ...]:
        """The tip-touching actions so far."""
        return tuple(a for a in self.actions if a.touches_tip)


@runtime_checkable
class Policy(Protocol):
    """Chooses the next action for a bad tip."""

    name: str

    def choose(self, context: PolicyContext) -> Action:
        """The next action (must not send anything)."""
        ...


class _FunctionPolicy:
    def __init__(self, func: Callable[[PolicyContext], Action]) -> None:
        self.func = func
        self.name = getattr(func, "__name__", "function")

    def choose(self, context: PolicyContext) -> Action:
        return self.func(context)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


def as_policy(policy: Policy | Callable[[PolicyContext], Action]) -> Policy:
    """Return ``policy`` as a :class:`Policy` (a plain function is wrapped)."""
    if isinstance(policy, Policy):
        return policy
    if callable(policy):
        return _FunctionPolicy(policy)
    raise ValueError(f"policy must have choose(context) or be callable, got {policy!r}")


#: Reason text (for people) of the action tagged :attr:`ActionTag.LADDER_RESTART`.
RESTART = "restart ladder"
#: Reason text (for people) of the move tagged :attr:`ActionTag.LADDER_EXHAUSTED`.
EXHAUSTED = "ladder exhausted"


def legacy_tag(kind: str, reason: str) -> str:
    """The tag of an action recorded before tags existed, read from its reason text.

    Only for loading old records (their ``action_tag`` column is missing), so that a
    resumed escalating ladder continues where it was; new code never parses reasons.
    """
    if kind == "move" and reason.startswith(EXHAUSTED):
        return ActionTag.LADDER_EXHAUSTED.value
    if kind in TIP_ACTIONS and reason.startswith(RESTART):
        return ActionTag.LADDER_RESTART.value
    return ActionTag.NONE.value

#: The escalating ladder, gentle → harsh: 3–4 V pulses of 50–200 ms, then 0.8–1.6 nm dips
#: (the range of automated reconditioning, Rashidi & Wolkow 2018; sub-2 V pulses and
#: sub-0.5 nm pokes rarely change an apex and are left out).
DEFAULT_LADDER: tuple[Action, ...] = (
    Action.pulse(3.0, 0.05),
    Action.pulse(3.5, 0.1),
    Action.pulse(4.0, 0.2),
    Action.indent(0.8e-9),
    Action.indent(1.2e-9),
    Action.indent(1.6e-9),
)


class EscalatingPolicy:
    """Escalate gently: repeat each ladder rung, climb on failure, move area at the top.

    ``ladder`` (gentle first, default :data:`DEFAULT_LADDER`) is climbed one rung per
    ``attempts_per_level`` consecutive failures. When the tip state changes (the apex did
    change, but is still bad), the ladder restarts at the bottom — a changed apex
    deserves gentle treatment again. When the area's action limit is reached the policy
    moves to a fresh area and climbs on; after the top rung it moves and starts again.
    """

    def __init__(self, ladder: Sequence[Action] = DEFAULT_LADDER, attempts_per_level: int = 2) -> None:
        ladder = tuple(ladder)
        if not ladder or any(not a.touches_tip for a in ladder):
            raise ValueError("ladder must be a non-empty sequence of pulse/indent Actions")
        if isinstance(attempts_per_level, bool) or not isinstance(attempts_per_level, int) \
                or attempts_per_level < 1:
            raise ValueError(f"attempts_per_level must be an integer >= 1, got {attempts_per_level!r}")
        self.ladder = ladder
        self.attempts_per_level = attempts_per_level
        self.name = "escalating"

    def level(self, context: PolicyContext) -> int:
        """Ladder rung for the next attempt (past the top means: move to a fresh area).

        Counts the tip actions since the ladder was last exhausted or restarted (a restart
        counts); a move forced by the per-area limit or by the experiment does not reset it.
        Keyed on :class:`ActionTag` only, never on the reason text.
        """
        count = 0
        for action in reversed(context.actions):
            if action.kind == "move" and action.tag == ActionTag.LADDER_EXHAUSTED:
                break
            if action.touches_tip:
                count += 1
                if action.tag == ActionTag.LADDER_RESTART:
                    break
        return count // self.attempts_per_level

    @staticmethod
    def state_changed(context: PolicyContext) -> bool:
        """Whether the last tip action turned one classified state into another.

        Uncertain or unclassified frames say nothing about a change.
        """
        before, now = context.state_at_last_action, context.state
        vague = tuple(FrameState)
        return before is not None and before not in vague and now not in vague and before != now

    def choose(self, context: PolicyContext) -> Action:
        if context.actions_in_area >= context.max_actions_per_area:
            return Action.move(f"{context.actions_in_area} actions in this area (the limit)")
        if self.state_changed(context):
            first = self.ladder[0]
            return _with_reason(first, f"{RESTART}: state changed to {context.state}",
                                ActionTag.LADDER_RESTART)
        level = self.level(context)
        if level >= len(self.ladder):
            return Action("move", reason=f"{EXHAUSTED} in this area", tag=ActionTag.LADDER_EXHAUSTED)
        return _with_reason(self.ladder[level], f"level {level} of {len(self.ladder)}")

    def config(self) -> dict[str, Any]:
        """The policy's settings (stored in the run metadata)."""
        return {"name": self.name, "attempts_per_level": self.attempts_per_level,
                "ladder": [a.describe() for a in self.ladder]}


class RandomPolicy:
    """Baseline: each step a random action drawn uniformly from the allowed ranges.

    A pulse (amplitude uniform in ``amplitude_V``, width log-uniform in ``width_s``) or an
    indentation (depth uniform in ``depth_m``) with equal probability, or with
    probability ``p_move`` a move to a fresh area. No memory; it only respects the
    per-area limit (moves when it is reached) so that the envelope does not stop it.
    ``seed`` seeds its own generator. Defaults lie inside the default safety envelope.
    """

    def __init__(self, amplitude_V: tuple[float, float] = (1.0, 6.0),
                 width_s: tuple[float, float] = (1e-3, 0.5),
                 depth_m: tuple[float, float] = (0.2e-9, 2e-9), p_move: float = 0.1,
                 seed: int | None = None) -> None:
        for name, (low, high) in (("amplitude_V", amplitude_V), ("width_s", width_s),
                                  ("depth_m", depth_m)):
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ValueError(f"{name} must be a (low, high) range with 0 < low <= high, "
                                 f"got {(low, high)!r}")
        if not 0 <= p_move < 1:
            raise ValueError(f"p_move must be in [0, 1), got {p_move!r}")
        self.amplitude_V = amplitude_V
        self.width_s = width_s
        self.depth_m = depth_m
        self.p_move = p_move
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.name = "random"

    def choose(self, context: PolicyContext) -> Action:
        if context.actions_in_area >= context.max_actions_per_area:
            return Action.move(f"{context.actions_in_area} actions in this area (the limit)")
        u = self.rng.random()
        if u < self.p_move:
            return Action.move("random choice")
        if u < self.p_move + (1 - self.p_move) / 2:
            amplitude = float(self.rng.uniform(*self.amplitude_V))
            width = float(np.exp(self.rng.uniform(*np.log(self.width_s))))
            return Action.pulse(amplitude, width, "random choice")
        return Action.indent(float(self.rng.uniform(*self.depth_m)), "random choice")

    def config(self) -> dict[str, Any]:
        """The policy's settings (stored in the run metadata)."""
        return {"name": self.name, "seed": self.seed, "amplitude_V": list(self.amplitude_V),
                "width_s": list(self.width_s), "depth_m": list(self.depth_m), "p_move": self.p_move}


def _with_reason(action: Action, reason: str, tag: str = ActionTag.NONE) -> Action:
    """``action`` with ``reason`` and ``tag`` (a ladder rung carries no tag of its own)."""
    return replace(action, reason=reason, tag=tag)
