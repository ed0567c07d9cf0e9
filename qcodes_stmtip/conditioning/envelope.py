"""Experiment-level safety limits of a conditioning run, on top of the driver's envelope.

The instrument's :class:`~qcodes_stmtip.safety.SafetyEnvelope` bounds every single
request (pulse amplitude and width, indentation depth, tip and frame positions);
:class:`ConditioningEnvelope` adds what only a whole experiment can know — where the
tip has already been indented, how many actions one area has taken, how many actions
the run has spent — and the current/Z readings that must withdraw the tip. Each check
raises :class:`~qcodes_stmtip.safety.SafetyViolation` (naming the limit) and never
clamps; the experiment then refuses the action, records why, withdraws and stops.

SI units (m, A).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from qcodes_stmtip.conditioning.policy import Action
from qcodes_stmtip.safety import SafetyEnvelope, SafetyViolation

__all__ = ["ConditioningEnvelope", "ConditioningLimits"]


@dataclass(frozen=True)
class ConditioningLimits:
    """Limits of one conditioning experiment.

    * ``min_site_distance_m``: no indentation closer than this to an earlier one (10 nm;
      a 1–2 nm dip leaves a crater a few nm wide);
    * ``max_actions_per_area``: tip actions in one area before the tip must move (6);
    * ``max_actions``: tip actions in the whole experiment (40);
    * ``max_current_A``: a |current| reading above this withdraws the tip (10 nA);
    * ``z_range_m``: a Z reading outside ``(low, high)`` withdraws the tip (±150 nm).
    """

    min_site_distance_m: float = 10e-9
    max_actions_per_area: int = 6
    max_actions: int = 40
    max_current_A: float = 10e-9
    z_range_m: tuple[float, float] = (-150e-9, 150e-9)

    def __post_init__(self) -> None:
        for name in ("min_site_distance_m", "max_current_A"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ConditioningLimits.{name} must be a finite number > 0, got {value!r}")
        for name in ("max_actions_per_area", "max_actions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ConditioningLimits.{name} must be an integer >= 1, got {value!r}")
        try:
            low, high = (float(v) for v in self.z_range_m)
        except (TypeError, ValueError):
            raise ValueError(f"ConditioningLimits.z_range_m must be a (low, high) pair of metres, "
                             f"got {self.z_range_m!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"ConditioningLimits.z_range_m must be finite with low < high, "
                             f"got {self.z_range_m!r}")
        object.__setattr__(self, "z_range_m", (low, high))

    def as_dict(self) -> dict[str, Any]:
        """The limits as a plain dict (run metadata)."""
        return asdict(self)


@dataclass
class ConditioningEnvelope:
    """The driver's envelope plus the experiment's limits and bookkeeping.

    ``sites`` are the recorded indentation sites ``(x, y)`` in metres; ``area_actions``
    counts tip actions per area index; ``actions`` the tip actions of the experiment.
    """

    safety: SafetyEnvelope = field(default_factory=SafetyEnvelope)
    limits: ConditioningLimits = field(default_factory=ConditioningLimits)
    sites: list[tuple[float, float]] = field(default_factory=list)
    area_actions: dict[int, int] = field(default_factory=dict)
    actions: int = 0

    @property
    def budget_left(self) -> int:
        """Tip actions the total budget still allows."""
        return max(0, self.limits.max_actions - self.actions)

    def actions_in(self, area: int) -> int:
        """Tip actions taken so far in area ``area``."""
        return self.area_actions.get(area, 0)

    def check_action(self, action: Action, area: int, site: tuple[float, float] | None) -> None:
        """Raise :class:`SafetyViolation` unless ``action`` at ``site`` in ``area`` is allowed.

        Tip actions: the total budget, the per-area limit, the driver envelope's
        pulse/indentation limits and tip-position area; indentations also the minimum
        distance from every recorded indentation site. Moves and rescans always pass.
        """
        if not action.touches_tip:
            return
        if self.actions >= self.limits.max_actions:
            raise SafetyViolation("tip actions in this experiment", self.actions + 1,
                                  self.limits.max_actions)
        in_area = self.actions_in(area)
        if in_area >= self.limits.max_actions_per_area:
            raise SafetyViolation(f"tip actions in area {area}", in_area + 1,
                                  self.limits.max_actions_per_area)
        if action.kind == "pulse":
            self.safety.check_pulse(action.amplitude_V, action.width_s)
        else:
            self.safety.check_indentation(action.depth_m)
        if site is not None:
            self.safety.check_tip_move(*site)
            if action.kind == "indent":
                nearest = self.nearest_site(site)
                if nearest is not None and nearest < self.limits.min_site_distance_m:
                    raise SafetyViolation("distance to the nearest earlier indentation site",
                                          nearest, f">= {self.limits.min_site_distance_m}", "m")

    def nearest_site(self, site: tuple[float, float]) -> float | None:
        """Distance (m) from ``site`` to the nearest recorded indentation site, or None."""
        if not self.sites:
            return None
        x, y = site
        return min(math.hypot(x - sx, y - sy) for sx, sy in self.sites)

    def site_is_free(self, site: tuple[float, float]) -> bool:
        """Whether an indentation at ``site`` keeps the minimum distance."""
        nearest = self.nearest_site(site)
        return nearest is None or nearest >= self.limits.min_site_distance_m

    def record(self, action: Action, area: int, site: tuple[float, float] | None) -> None:
        """Count an executed tip action (and its site, for indentations)."""
        if not action.touches_tip:
            return
        self.actions += 1
        self.area_actions[area] = self.actions_in(area) + 1
        if action.kind == "indent" and site is not None:
            self.sites.append((float(site[0]), float(site[1])))

    def check_readings(self, current_A: float, z_m: float) -> None:
        """Raise :class:`SafetyViolation` if the current or Z reading is outside the limits.

        Each reading is converted to a plain float once and that float is checked.
        """
        current = _reading(current_A)
        if not math.isfinite(current) or abs(current) > self.limits.max_current_A:
            raise SafetyViolation("|current| reading", current, self.limits.max_current_A, "A")
        low, high = self.limits.z_range_m
        z = _reading(z_m)
        if not math.isfinite(z) or not low <= z <= high:
            raise SafetyViolation("Z reading", z, (low, high), "m")


def _reading(value: object) -> float:
    """``value`` as one plain float; NaN (refused by the caller) when it is not a number."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan
