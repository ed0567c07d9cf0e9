"""What a conditioning experiment stores, and reading it back (reports, resume).

One QCoDeS run per experiment segment (a resumed experiment continues in a new run
linked to the old one by the ``conditioning_resumed_from`` metadata). Two index
parameters, each with its own dependents:

``frame_index`` (an integer) → the frame (``<stm>_scan_image`` with its pixel-index
  setpoints ``scan_line``/``scan_pixel``), the driver's per-frame record
  (``<stm>_frame_centre_x`` … ``<stm>_frame_timestamp``, see
  :attr:`~qcodes_stmtip.drivers.nanonis_stm.NanonisSTM.frame_parameters`), the monitor's tip-state parameters (``tip_state``, ``tip_quality``, ``tip_p_*``, …,
  see :mod:`qcodes_stmtip.monitor.results`) and ``frame_area``, ``frame_centre_x``,
  ``frame_centre_y`` (m), ``frame_elapsed`` (s since the experiment started),
  ``frame_after_action`` (index of the action just before it, −1 for none), on a
  simulator ``frame_true_state`` (ground truth), and ``frame_verdict`` (the loop's verdict,
  one of ``good``/``off_target``/``bad``/``inconclusive``/``content``, see
  :data:`~qcodes_stmtip.conditioning.experiment.VERDICTS`; written as its own row once judged).
``action_index`` → ``action_kind``, ``action_amplitude`` (V), ``action_width`` (s),
  ``action_depth`` (m), ``action_x``/``action_y`` (m, the site), ``action_area``,
  ``action_time`` (s since the epoch), ``action_elapsed`` (s), ``action_state_before``,
  ``action_reason``, ``action_tag`` (the structured :class:`~qcodes_stmtip.conditioning.policy.ActionTag`;
  absent from runs recorded before it existed), ``action_status`` (``"done"`` or ``"refused: …"``),
  ``action_lines`` (lines of the frame the action was decided on: the line count at which its
  scan was stopped early, else the frame's lines; absent from older runs) — written
  *before* the action is sent — and ``action_state_after``, written as its own row once
  the next frame is classified.

With watched scans (``early_abort``), the monitor's scan-watch parameters depend on
``frame_index`` too (``tip_decided_line``, ``tip_partial_verdict``, ``tip_lines_acquired``,
``tip_scan_stopped``, and the per-check series against ``tip_window_line``, see
:mod:`qcodes_stmtip.monitor.results`); a stopped frame is stored with its NaN lines.

Every row is flushed to the database when written, so a crash loses nothing recorded.
Run metadata: ``conditioning_config`` (JSON: surface, policy, limits, target, bundle)
at the start, ``conditioning_outcome`` (JSON) at a clean end.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from qcodes.parameters import ManualParameter, Parameter
from qcodes.validators import Ints, Numbers, Strings

from qcodes_stmtip.conditioning.policy import Action, legacy_tag
from qcodes_stmtip.taxonomy import UNCLASSIFIED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from qcodes.dataset import DataSaver, Measurement

    from qcodes_stmtip.classify.protocol import TipClassifier
    from qcodes_stmtip.classify.tip_belief import BeliefStep

__all__ = ["CONFIG_KEY", "OUTCOME_KEY", "RESUMED_KEY", "ActionRecord", "ConditioningRun",
           "FrameRecord", "RunRecorder", "load_conditioning_run", "load_frame_images"]

CONFIG_KEY = "conditioning_config"
OUTCOME_KEY = "conditioning_outcome"
RESUMED_KEY = "conditioning_resumed_from"


@dataclass(frozen=True)
class FrameRecord:
    """One stored frame and its classification."""

    index: int
    state: str
    quality: str
    confidence: float
    area: int
    centre_x_m: float
    centre_y_m: float
    elapsed_s: float
    after_action: int
    true_state: str = ""
    decided_line: int | None = None  # watched scans: lines when its state was decided
    verdict: str = ""  # watched scans: "bad" / "tip_change" / "" (see tip_partial_verdict)
    stopped: bool = False  # its scan was stopped early on the verdict
    frame_verdict: str = ""  # the loop's verdict (experiment.VERDICTS; "" in older runs)
    reason: str = ""  # tip_reason: why the tip quality is not good
    p_bad: float = math.nan  # tip_p_bad: the frame's calibrated P(bad) (NaN under the vote rule)
    belief_bad: float = math.nan  # frame_belief_bad: running P(bad tip) after this frame
    rule: str = ""  # frame_rule: what the loop did with the frame and why


@dataclass(frozen=True)
class ActionRecord:
    """One stored action (``state_after`` is ``""`` until the next frame was classified)."""

    index: int
    action: Action
    area: int
    time: float
    elapsed_s: float
    state_before: str
    status: str
    state_after: str = ""
    lines: int | None = None  # lines of the frame it was decided on (None: older runs)

    @property
    def refused(self) -> bool:
        """True for an action the envelope refused (nothing was sent)."""
        return self.status.startswith("refused")


@dataclass
class ConditioningRun:
    """An experiment read back from the database (one run, or a resumed chain of runs)."""

    run_ids: list[int]
    guid: str
    config: dict[str, Any]
    outcome: dict[str, Any] | None
    frames: list[FrameRecord] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    image_name: str = ""

    @property
    def run_id(self) -> int:
        """The last run of the chain."""
        return self.run_ids[-1]

    @property
    def finished(self) -> bool:
        """Whether the experiment ended cleanly (an outcome was stored)."""
        return self.outcome is not None


def _num(name: str, label: str, unit: str = "") -> Parameter:
    return Parameter(name, label=label, unit=unit, set_cmd=None, get_cmd=None, vals=Numbers())


def _text(name: str, label: str) -> Parameter:
    return Parameter(name, label=label, set_cmd=None, get_cmd=None, vals=Strings())


class RunRecorder:
    """Registers the layout (module doc) with a ``Measurement`` and writes rows, flushed at once.

    ``image`` is the frame parameter (``stm.scan_image``); ``records`` the driver's
    per-frame record parameters (``stm.frame_parameters``), read right after each frame;
    ``monitor`` registers its own tip-state parameters; ``with_truth`` adds
    ``frame_true_state``.
    """

    def __init__(self, image: Parameter, monitor: TipClassifier, *, with_truth: bool = False,
                 records: Sequence[Parameter] = (), partial: bool = False) -> None:
        self.image = image
        self.monitor = monitor
        self.with_truth = with_truth
        self.partial = partial
        self.records = tuple(records)
        self.frame_index = ManualParameter("frame_index", label="Frame index",
                                           vals=Ints(min_value=0))
        self.action_index = ManualParameter("action_index", label="Action index",
                                            vals=Ints(min_value=0))
        self.frame_params = {
            "area": _num("frame_area", "Area index"),
            "centre_x": _num("frame_centre_x", "Frame centre x", "m"),
            "centre_y": _num("frame_centre_y", "Frame centre y", "m"),
            "elapsed": _num("frame_elapsed", "Time since start", "s"),
            "after_action": _num("frame_after_action", "Preceding action index"),
        }
        if with_truth:
            self.frame_params["true_state"] = _text("frame_true_state", "True tip state (simulator)")
        self.action_params = {
            "kind": _text("action_kind", "Action"),
            "amplitude": _num("action_amplitude", "Pulse amplitude", "V"),
            "width": _num("action_width", "Pulse width", "s"),
            "depth": _num("action_depth", "Indentation depth", "m"),
            "x": _num("action_x", "Action site x", "m"),
            "y": _num("action_y", "Action site y", "m"),
            "area": _num("action_area", "Area index"),
            "time": _num("action_time", "Action time", "s"),
            "elapsed": _num("action_elapsed", "Time since start", "s"),
            "state_before": _text("action_state_before", "Tip state before"),
            "reason": _text("action_reason", "Why"),
            "tag": _text("action_tag", "Action tag"),
            "status": _text("action_status", "Status"),
            "lines": _num("action_lines", "Lines of the deciding frame"),
        }
        self.state_after = _text("action_state_after", "Tip state after")
        self.verdict = _text("frame_verdict", "Conditioning verdict")
        self.belief = _num("frame_belief_bad", "Running P(bad tip) since the last tip action")
        self.rule = _text("frame_rule", "Rule that fired")
        self.saver: DataSaver | None = None

    def register(self, meas: Measurement) -> None:
        """Register every parameter of the layout with ``meas``."""
        meas.register_parameter(self.frame_index)
        meas.register_parameter(self.action_index)
        meas.register_parameter(self.image, setpoints=(self.frame_index,))
        if self.partial:  # the scan-watch parameters (TipStateMonitor, the oracle)
            self.monitor.register(meas, self.frame_index, partial=True)  # type: ignore[call-arg]
        else:
            self.monitor.register(meas, self.frame_index)
        for p in (*self.records, *self.frame_params.values(), self.verdict, self.belief, self.rule):
            meas.register_parameter(p, setpoints=(self.frame_index,))
        for p in (*self.action_params.values(), self.state_after):
            meas.register_parameter(p, setpoints=(self.action_index,))

    def _saver(self) -> DataSaver:
        """The run's datasaver; ``RuntimeError`` outside a run."""
        if self.saver is None:
            raise RuntimeError("RunRecorder used outside a run")
        return self.saver

    def _flush(self) -> None:
        self._saver().flush_data_to_database()

    def write_frame(self, index: int, image: np.ndarray, setpoints: list[tuple[Parameter, Any]], *,
                    area: int, centre: tuple[float, float], elapsed_s: float, after_action: int,
                    true_state: str | None = None) -> None:
        """Store frame ``index`` with its position (the monitor adds the tip state)."""
        self._saver().add_result((self.frame_index, index), (self.image, image), *setpoints)
        values = [(self.frame_params["area"], area), (self.frame_params["centre_x"], centre[0]),
                  (self.frame_params["centre_y"], centre[1]),
                  (self.frame_params["elapsed"], elapsed_s),
                  (self.frame_params["after_action"], after_action),
                  *((p, p()) for p in self.records)]
        if self.with_truth:
            values.append((self.frame_params["true_state"], true_state or ""))
        self.saver.add_result((self.frame_index, index), *values)
        self._flush()

    def write_action(self, index: int, action: Action, *, site: tuple[float, float] | None,
                     area: int, elapsed_s: float, state_before: str, status: str,
                     lines: int | None = None) -> None:
        """Store action ``index`` (call before sending it); ``lines``: of the deciding frame."""
        saver = self._saver()
        p = self.action_params
        x, y = site if site is not None else (math.nan, math.nan)
        saver.add_result(
            (self.action_index, index), (p["kind"], action.kind),
            (p["amplitude"], float(action.amplitude_V)), (p["width"], float(action.width_s)),
            (p["depth"], float(action.depth_m)), (p["x"], float(x)), (p["y"], float(y)),
            (p["area"], area), (p["time"], time.time()), (p["elapsed"], float(elapsed_s)),
            (p["state_before"], state_before), (p["reason"], action.reason), (p["tag"], action.tag),
            (p["status"], status), (p["lines"], math.nan if lines is None else float(lines)))
        self._flush()

    def write_state_after(self, index: int, state: str) -> None:
        """Store the tip state seen on the first frame after action ``index``."""
        self._saver().add_result((self.action_index, index), (self.state_after, state))
        self._flush()

    def write_verdict(self, index: int, verdict: str, step: BeliefStep | None = None, rule: str = "") -> None:
        """Store the loop's verdict on frame ``index`` (its own row, once judged), with the
        running P(bad tip) after it (NaN without a calibrated classifier) and the rule that fired."""
        belief = math.nan if step is None else float(step.belief)
        self._saver().add_result((self.frame_index, index), (self.verdict, verdict),
                                 (self.belief, belief), (self.rule, rule))
        self._flush()

    def flush_monitor(self) -> None:
        """Write the monitor's arrived results, then flush."""
        self.monitor.flush(self._saver())
        self._flush()


# ---- reading back ---------------------------------------------------------------------------
def _column(data: dict, name: str) -> dict[int, Any]:
    """``index → value`` of dependent parameter ``name`` (empty if absent)."""
    tree = data.get(name)
    if not tree:
        return {}
    keys = [k for k in tree if k != name]
    idx = np.ravel(tree[keys[0]])
    values = np.ravel(tree[name])
    return {int(i): (v.item() if hasattr(v, "item") else v) for i, v in zip(idx, values, strict=True)}


def _int_or_none(value: Any) -> int | None:
    """An integer count stored as a float (None when absent or NaN)."""
    if value is None:
        return None
    value = float(value)
    return int(value) if math.isfinite(value) else None


def _load_one(run_id: int) -> tuple[Any, dict, dict | None, list[FrameRecord], list[ActionRecord], str,
                                   dict[int, str]]:
    from qcodes.dataset import load_by_run_spec

    try:
        ds = load_by_run_spec(captured_run_id=run_id)
    except NameError:  # QCoDeS's "No run matching the supplied information found."
        raise ValueError(f"run {run_id}: no such run in this database") from None
    meta = ds.metadata
    if CONFIG_KEY not in meta:
        raise ValueError(f"run {run_id} is not a conditioning experiment (no {CONFIG_KEY!r} metadata)")
    config = json.loads(meta[CONFIG_KEY])
    outcome = json.loads(meta[OUTCOME_KEY]) if OUTCOME_KEY in meta else None
    names = [n for n in ("tip_state", "tip_quality", "frame_area", "frame_centre_x", "frame_centre_y",
                         "frame_elapsed", "frame_after_action", "frame_true_state", "action_kind",
                         "action_amplitude", "action_width", "action_depth", "action_x", "action_y",
                         "action_area", "action_time", "action_elapsed", "action_state_before",
                         "action_reason", "action_tag", "action_status", "action_state_after",
                         "action_lines", "tip_decided_line", "tip_partial_verdict", "tip_scan_stopped",
                         "frame_verdict", "tip_reason", "frame_belief_bad", "frame_rule", "tip_p_bad")
             if n in ds.paramspecs]
    probs = [n for n in ds.paramspecs if n.startswith("tip_p_")]
    data = ds.get_parameter_data(*names, *probs) if names else {}
    cols = {n: _column(data, n) for n in (*names, *probs)}
    frames = []
    for i in sorted(cols.get("frame_area", {})):
        state = str(cols.get("tip_state", {}).get(i, UNCLASSIFIED))
        conf = cols.get(f"tip_p_{state}", {}).get(i, math.nan)
        frames.append(FrameRecord(
            i, state, str(cols.get("tip_quality", {}).get(i, UNCLASSIFIED)), float(conf),
            int(cols["frame_area"][i]), float(cols["frame_centre_x"][i]),
            float(cols["frame_centre_y"][i]), float(cols["frame_elapsed"][i]),
            int(cols["frame_after_action"][i]), str(cols.get("frame_true_state", {}).get(i, "")),
            _int_or_none(cols.get("tip_decided_line", {}).get(i)),
            str(cols.get("tip_partial_verdict", {}).get(i, "")),
            bool(cols.get("tip_scan_stopped", {}).get(i, 0.0) == 1.0),
            str(cols.get("frame_verdict", {}).get(i, "")), str(cols.get("tip_reason", {}).get(i, "")),
            float(cols.get("tip_p_bad", {}).get(i, math.nan)), float(cols.get("frame_belief_bad", {}).get(i, math.nan)),
            str(cols.get("frame_rule", {}).get(i, ""))))
    actions = []
    for i in sorted(cols.get("action_kind", {})):
        x, y = float(cols["action_x"][i]), float(cols["action_y"][i])
        kind = str(cols["action_kind"][i])
        reason = str(cols["action_reason"][i])
        tags = cols.get("action_tag")
        tag = str(tags.get(i, "")) if tags is not None else legacy_tag(kind, reason)
        kwargs: dict[str, Any] = {"reason": reason, "tag": tag}
        if kind in ("pulse", "indent"):
            kwargs.update(amplitude_V=float(cols["action_amplitude"][i]),
                          width_s=float(cols["action_width"][i]),
                          depth_m=float(cols["action_depth"][i]))
        if math.isfinite(x) and math.isfinite(y):
            kwargs.update(x_m=x, y_m=y)
        actions.append(ActionRecord(
            i, Action(kind, **kwargs), int(cols["action_area"][i]), float(cols["action_time"][i]),
            float(cols["action_elapsed"][i]), str(cols["action_state_before"][i]),
            str(cols["action_status"][i]), str(cols.get("action_state_after", {}).get(i, "")),
            _int_or_none(cols.get("action_lines", {}).get(i))))
    image_name = next((n for n in ds.paramspecs if n.endswith("scan_image")), "")
    after = {i: str(v) for i, v in cols.get("action_state_after", {}).items()}
    return ds, config, outcome, frames, actions, image_name, after


def load_conditioning_run(run_id: int) -> ConditioningRun:
    """Read experiment run ``run_id`` (and the runs it resumed) from the current database.

    Raises ``ValueError`` if the run is not a conditioning experiment.
    """
    if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 1:
        raise ValueError(f"run_id must be a positive integer, got {run_id!r}")
    chain: list[int] = []
    current: int | None = run_id
    parts = []
    while current is not None:
        if current in chain:
            raise ValueError(f"run {run_id}: the {RESUMED_KEY} chain loops at run {current}")
        chain.append(current)
        part = _load_one(current)
        parts.append(part)
        ds = part[0]
        previous = ds.metadata.get(RESUMED_KEY)
        current = int(json.loads(previous)["run_id"]) if previous else None
    parts.reverse()
    chain.reverse()
    last = parts[-1]
    run = ConditioningRun(chain, last[0].guid, last[1], last[2], image_name=last[5])
    after: dict[int, str] = {}
    for _ds, _c, _o, frames, actions, _n, part_after in parts:
        run.frames.extend(frames)
        run.actions.extend(actions)
        after.update(part_after)  # a resumed run completes the last action of the one before
    run.frames.sort(key=lambda f: f.index)
    run.actions = [replace(a, state_after=after.get(a.index, a.state_after))
                   for a in sorted(run.actions, key=lambda a: a.index)]
    return run


def load_frame_images(run: ConditioningRun) -> dict[int, np.ndarray]:
    """``frame_index → (lines, pixels)`` image of every frame of ``run`` (all its runs)."""
    from qcodes.dataset import load_by_run_spec

    out: dict[int, np.ndarray] = {}
    for run_id in run.run_ids:
        ds = load_by_run_spec(captured_run_id=run_id)
        name = next((n for n in ds.paramspecs if n.endswith("scan_image")), None)
        if name is None:
            continue
        tree = ds.get_parameter_data(name)[name]
        images = np.asarray(tree[name])
        index = np.asarray(tree["frame_index"])
        # (frames, lines, pixels): the frame index repeats over every pixel
        for k in range(images.shape[0]):
            out[int(np.ravel(index[k])[0])] = np.asarray(images[k], dtype=np.float64)
    return out
