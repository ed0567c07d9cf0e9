"""The state a conditioning experiment carries from frame to frame, in one object.

:class:`ConditioningState` is built by :class:`~qcodes_stmtip.conditioning.experiment.ConditioningExperiment`
at construction and replaced as a whole by :meth:`ConditioningState.from_run` on resume,
so a field added here is reset and restored in one place (``tests/conditioning/test_state.py``
checks that a resume restores every field). The experiment's attributes of the same names
(``area``, ``frames``, ``actions``, …) are views of it. Units: metres, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qcodes_stmtip.conditioning.policy import Action
from qcodes_stmtip.conditioning.records import ActionRecord, ConditioningRun

__all__ = ["ConditioningState", "done_actions"]

Bounds = tuple[tuple[float, float], tuple[float, float]]


@dataclass
class ConditioningState:
    """Everything of an experiment that a resume must restore.

    Geometry: ``start_centre`` (m, the first frame's centre; None until the run starts),
    ``frame_size_m`` (None: the controller's present width), ``area_bounds``
    (``((x_low, x_high), (y_low, y_high))`` m; None: the envelope's scan area),
    ``area_spacing_m``. Progress: ``area`` (index in the planner), ``frames`` and
    ``action_count`` (the next frame/action index), ``states`` (every frame's tip state),
    ``actions`` (every action sent, oldest first), ``moves``, ``state_at_last_action``,
    ``pending_after`` (action waiting for its ``state_after``), ``last_action_index``
    (−1: none), ``stopped_frames`` (frames whose scan was stopped early, ``early_abort``),
    ``elapsed_offset`` (s spent in earlier runs). Provenance:
    ``resumed_from`` (the run continued, as stored in ``conditioning_resumed_from``),
    ``previous_run_ids``.
    """

    start_centre: tuple[float, float] | None = None
    frame_size_m: float | None = None
    area_bounds: Bounds | None = None
    area_spacing_m: float = 300e-9
    area: int = 0
    frames: int = 0
    action_count: int = 0
    states: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    moves: int = 0
    state_at_last_action: str | None = None
    pending_after: int | None = None
    last_action_index: int = -1
    stopped_frames: int = 0
    elapsed_offset: float = 0.0
    resumed_from: dict[str, Any] | None = None
    previous_run_ids: list[int] = field(default_factory=list)

    @classmethod
    def from_run(cls, run: ConditioningRun) -> ConditioningState:
        """The state at the end of the stored experiment ``run`` (all of its runs).

        Geometry comes from its ``conditioning_config``; counts, histories and the pending
        action from its frame and action rows (refused and dry-run actions were never sent).
        """
        cfg = run.config
        done = done_actions(run)
        state_at_last_action = None
        for a in done:
            if a.action.touches_tip:
                state_at_last_action = a.state_before
        moves = sum(1 for a in done if a.action.kind == "move")
        pending = None
        if done and not done[-1].state_after and (
                not run.frames or run.frames[-1].after_action < done[-1].index):
            pending = done[-1].index
        return cls(
            start_centre=tuple(cfg["start_centre_m"]),  # type: ignore[arg-type]
            frame_size_m=float(cfg["frame_size_m"]),
            area_bounds=tuple(tuple(b) for b in cfg["area_bounds_m"]),  # type: ignore[arg-type]
            area_spacing_m=float(cfg["area_spacing_m"]),
            area=moves,  # every move goes to the next area of the planner
            frames=(run.frames[-1].index + 1) if run.frames else 0,
            action_count=(run.actions[-1].index + 1) if run.actions else 0,
            states=[f.state for f in run.frames],
            actions=[a.action for a in done],
            moves=moves,
            state_at_last_action=state_at_last_action,
            pending_after=pending,
            last_action_index=done[-1].index if done else -1,
            stopped_frames=sum(f.stopped for f in run.frames),
            elapsed_offset=max([f.elapsed_s for f in run.frames]
                               + [a.elapsed_s for a in run.actions] + [0.0]),
            resumed_from={"run_id": run.run_id, "guid": run.guid,
                          "frames": len(run.frames), "actions": len(run.actions)},
            previous_run_ids=list(run.run_ids),
        )


def done_actions(run: ConditioningRun) -> list[ActionRecord]:
    """The actions of ``run`` that were sent (neither refused nor dry-run), oldest first."""
    return [a for a in run.actions if not a.refused and not a.status.startswith("dry-run")]
