"""The closed conditioning loop: scan → classify → stop when the tip is good, else act.

:class:`ConditioningExperiment` composes the QCoDeS driver
(:class:`~qcodes_stmtip.drivers.nanonis_stm.NanonisSTM`), a tip-state classifier
(:class:`~qcodes_stmtip.classify.protocol.TipClassifier`: the
:class:`~qcodes_stmtip.monitor.TipStateMonitor`; the oracle
:class:`~qcodes_stmtip.conditioning.oracle.GroundTruthClassifier` in tests and the fast
benchmark) and a :class:`~qcodes_stmtip.conditioning.policy.Policy`. Every frame, its
tip state and every action (parameters, time, site, state before/after) go to one
QCoDeS run (:mod:`qcodes_stmtip.conditioning.records`), flushed as written.

Each iteration: check the current/Z readings (a reading outside the limits withdraws
and stops), scan one frame, classify it, then

* **good** (``tip_quality`` good, target classes summing to ≥ ``min_confidence``): with a
  calibrated classifier (frames carry ``tip_p_bad``) the experiment ends once the running
  P(bad tip) over the frames since the last tip action
  (:class:`~qcodes_stmtip.classify.tip_belief.TipBelief`, reset by every tip action) is at most
  ``max_belief_bad`` and ``min_good_frames`` of those frames were good; under the vote rule,
  ``consecutive`` good frames in a row end it (a bad or off-target frame or any tip action
  resets the count; inconclusive and sample-content frames leave it as it is). The stop needs the evidence to be mostly decided: when more
  frames since the last tip action were inconclusive than good, the experiment ends
  ``inconclusive`` instead of ``good_tip`` and says so;
* **sample content** (``content_classes``, e.g. a step edge on Au(111)): the frame says
  nothing about the tip → move to a fresh area, tip untouched;
* **inconclusive** (quality uncertain, unclassified, a tip change during the frame): rescan, at
  most ``max_rescans`` times in a row;
* **off_target** (the classifier calls the tip good, ``tip_quality`` ``good``, but its state
  is not one of the target classes, e.g. ``rows`` when the target is dimers or atoms) and
  **bad**: ask the policy. Every tip action is checked against the
  :class:`~qcodes_stmtip.conditioning.envelope.ConditioningEnvelope` first; a refusal
  is recorded with its reason, the tip is withdrawn and the experiment stops.

``dry_run=True`` scans and classifies but sends no tip-touching or frame-moving
command: it prints (and records, status ``"dry-run"``) the action it would take.

**Early abort** (``early_abort=True``): every scan is watched while it runs
(:class:`~qcodes_stmtip.monitor.scanwatch.ScanWatcher`: the partial frame classified every
``watch_every_lines`` lines) and stopped (``Scan.Action`` stop) as soon as a partial check
is confidently bad or flags a tip change, under the classifier's calibrated
:class:`~qcodes_stmtip.monitor.scanwatch.PartialRule`. The stopped frame is judged on that
check, as any frame (bad → the policy acts; a tip change → inconclusive, rescan), and
stored with its NaN lines, its verdict (``tip_partial_verdict``, ``tip_decided_line``,
``tip_scan_stopped``, the per-check series) and the action that follows with the line
count it was decided on (``action_lines``). Every action still goes through the envelope.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from qcodes_stmtip.classify.protocol import TipClassifier
from qcodes_stmtip.classify.tip_belief import TipBelief
from qcodes_stmtip.conditioning.areas import AreaPlanner
from qcodes_stmtip.conditioning.envelope import ConditioningEnvelope, ConditioningLimits
from qcodes_stmtip.conditioning.policy import Action, Policy, PolicyContext, as_policy
from qcodes_stmtip.conditioning.records import (
    CONFIG_KEY,
    OUTCOME_KEY,
    RESUMED_KEY,
    RunRecorder,
    load_conditioning_run,
)
from qcodes_stmtip.conditioning.state import ConditioningState, done_actions
from qcodes_stmtip.monitor.scanwatch import ScanWatcher, ScanWatchMixin
from qcodes_stmtip.safety import SafetyViolation
from qcodes_stmtip.taxonomy import CONTENT_CLASSES, GOOD_CLASSES, TIP_CHANGE, check_surface

if TYPE_CHECKING:
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.monitor.results import TipStateResult

__all__ = ["OUTCOMES", "ConditioningExperiment", "ExperimentResult", "Target"]

log = logging.getLogger(__name__)

#: How an experiment can end.
OUTCOMES = ("good_tip", "inconclusive", "refused", "limit_tripped", "max_frames", "no_area_left",
            "dry_run", "error")
#: Per-frame verdicts of :meth:`Target.judge`: the one vocabulary of the console, the
#: dataset (``frame_verdict``) and the report. ``off_target``: a good tip (``tip_quality``
#: good) whose state is not a target class — never called ``bad``.
VERDICTS = ("good", "off_target", "bad", "inconclusive", "content")

#: Action kinds that touch the tip at a site (a site is required, whatever ``touches_tip`` says).
TIP_KINDS = ("pulse", "indent")


@dataclass(frozen=True)
class Target:
    """When the tip counts as good.

    ``classes``: acceptable tip states; ``min_confidence``: least summed ensemble probability
    of the target states; ``max_belief_bad``: with a calibrated classifier (frames carry a
    P(bad), :mod:`~qcodes_stmtip.classify.decision`), the experiment ends on a good frame once
    the running P(bad tip) over the frames since the last tip action
    (:class:`~qcodes_stmtip.classify.tip_belief.TipBelief`) is at or below this and at least
    ``min_good_frames`` frames since that action were good (one confidently wrong frame is not enough);
    ``consecutive``: without one (the vote rule), good frames in a row that end it;
    ``max_tip_change_probability``: a frame whose tip-change probability reaches this is
    inconclusive (1.0: off, the calibrated P(bad) already weighs tip changes);
    ``content_classes``: states that show the sample, not the tip (relocate).
    """

    classes: frozenset[str]
    min_confidence: float = 0.5
    consecutive: int = 2
    max_tip_change_probability: float = 1.0
    content_classes: frozenset[str] = frozenset()
    max_belief_bad: float = 0.03
    min_good_frames: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", frozenset(self.classes))
        object.__setattr__(self, "content_classes", frozenset(self.content_classes))
        if not self.classes:
            raise ValueError("Target.classes must name at least one acceptable tip state")
        if not (isinstance(self.min_confidence, int | float) and 0 <= self.min_confidence <= 1):
            raise ValueError(f"Target.min_confidence must be in [0, 1], got {self.min_confidence!r}")
        if isinstance(self.consecutive, bool) or not isinstance(self.consecutive, int) \
                or self.consecutive < 1:
            raise ValueError(f"Target.consecutive must be an integer >= 1, got {self.consecutive!r}")
        if not (isinstance(self.max_tip_change_probability, int | float)
                and 0 < self.max_tip_change_probability <= 1):
            raise ValueError("Target.max_tip_change_probability must be in (0, 1], "
                             f"got {self.max_tip_change_probability!r}")
        if isinstance(self.min_good_frames, bool) or not isinstance(self.min_good_frames, int) \
                or self.min_good_frames < 1:
            raise ValueError(f"Target.min_good_frames must be an integer >= 1, got {self.min_good_frames!r}")
        if isinstance(self.max_belief_bad, bool) or not (isinstance(self.max_belief_bad, int | float)
                                                         and 0 < self.max_belief_bad < 1):
            raise ValueError(f"Target.max_belief_bad must be in (0, 1), got {self.max_belief_bad!r}")
        if self.classes & self.content_classes:
            raise ValueError(f"Target.classes and content_classes overlap: "
                             f"{sorted(self.classes & self.content_classes)}")

    @classmethod
    def for_surface(cls, surface: str, **overrides: Any) -> Target:
        """The default target of ``surface`` (its good classes), with ``overrides``."""
        check_surface(surface)
        values: dict[str, Any] = {"classes": GOOD_CLASSES[surface],
                                  "content_classes": CONTENT_CLASSES[surface]}
        values.update(overrides)
        return cls(**values)

    def judge(self, result: TipStateResult) -> str:
        """One of :data:`VERDICTS` for one frame's result, from its tip quality.

        ``inconclusive``: unclassified, quality uncertain, a flagged tip change (or the
        ``tip_change`` state), or a good
        tip whose target states sum below ``min_confidence`` with no other good class ahead;
        ``content``: the sample, not the tip; ``bad``: quality bad; ``good``: quality good and
        the target states hold at least ``min_confidence``; ``off_target``: quality good, but
        the state is another good class.
        """
        from qcodes_stmtip.monitor.results import UNCERTAIN_STATE, UNCLASSIFIED

        tip_change = result.tip_change_probability
        changed = math.isfinite(tip_change) and tip_change >= self.max_tip_change_probability
        if result.state in (UNCLASSIFIED, TIP_CHANGE) or result.quality in (UNCLASSIFIED, UNCERTAIN_STATE) \
                or changed:  # a tip that changed during the frame: scan it again
            return "inconclusive"
        if result.state in self.content_classes:
            return "content"
        if result.quality != "good":
            return "bad"
        if self.on_target(result):
            return "good"
        if result.state in self.classes or result.state in (UNCERTAIN_STATE, TIP_CHANGE):
            return "inconclusive"
        return "off_target"

    def on_target(self, result: TipStateResult) -> bool:
        """True when the target states of ``result`` sum to at least ``min_confidence``."""
        return sum(p for c, p in result.probabilities.items()
                   if c in self.classes and math.isfinite(p)) >= self.min_confidence

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = sorted(self.classes)
        d["content_classes"] = sorted(self.content_classes)
        return d


@dataclass
class ExperimentResult:
    """How an experiment ended (also stored as the run's ``conditioning_outcome``)."""

    outcome: str
    reason: str
    run_id: int
    frames: int
    tip_actions: int
    moves: int
    elapsed_s: float
    time_to_good_s: float | None
    final_state: str
    run_ids: list[int] = field(default_factory=list)
    stopped_frames: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Stop(Exception):
    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class ConditioningExperiment:
    """Scan, classify and condition until the tip is good (see module doc).

    Args:
        stm: the driver; its ``safety`` envelope bounds every request.
        monitor: the classifier, a :class:`~qcodes_stmtip.classify.protocol.TipClassifier`
            (``TipStateMonitor`` or the oracle), one per experiment.
        policy: a :class:`Policy` or a function ``context -> Action``.
        surface: the sample surface.
        target: when to stop (default :meth:`Target.for_surface`).
        limits: the experiment-level limits (default :class:`ConditioningLimits`).
        frame_size_m: side of the square imaging frame (default: the controller's width).
        area_bounds: ``((x_low, x_high), (y_low, y_high))`` where frames and action sites
            may lie (default: the envelope's scan area).
        area_spacing_m: distance between fresh areas.
        max_frames: stop after this many frames (outcome ``"max_frames"``).
        max_rescans: inconclusive frames in a row before the policy is asked anyway.
        dry_run: scan and classify, but only report the actions.
        truth: optional simulator ground-truth function (stored as ``frame_true_state``).
        clock: seconds; the experiment's time base (default ``time.monotonic``; pass the
            simulator's ``sim_time`` for simulated time).
        seed: seeds the generator handed to policies.
        echo: called with one line per frame/action (default: nothing).
        early_abort: watch every scan and stop it on a confidently bad partial frame or a
            flagged tip change (module doc); the classifier must watch scans (the monitor
            and the oracle do).
        watch_every_lines: classify the partial frame every this many lines (default 8 with
            ``early_abort``); given without ``early_abort``, scans are watched and the
            checks stored, but never stopped.

    The experiment's progress lives in one :class:`~qcodes_stmtip.conditioning.state.ConditioningState`
    (``self.state``), built here and replaced as a whole by :meth:`resume_from`; the
    attributes of the same names (``area``, ``frames``, ``actions``, …) read and write it.
    """

    state: ConditioningState

    def __init__(
        self,
        stm: NanonisSTM,
        monitor: TipClassifier,
        policy: Policy | Callable[[PolicyContext], Action],
        *,
        surface: str,
        target: Target | None = None,
        limits: ConditioningLimits | None = None,
        frame_size_m: float | None = None,
        area_bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
        area_spacing_m: float = 300e-9,
        max_frames: int = 200,
        max_rescans: int = 3,
        dry_run: bool = False,
        truth: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        clock_name: str = "wall",
        seed: int = 0,
        echo: Callable[[str], None] | None = None,
        name: str = "tip_conditioning",
        early_abort: bool = False,
        watch_every_lines: int | None = None,
    ) -> None:
        check_surface(surface)
        if not isinstance(monitor, TipClassifier):
            raise TypeError(f"monitor must be a tip-state classifier (TipClassifier: register, submit, "
                            f"result, flush, finish, metadata, close, classes, parameters), "
                            f"got {type(monitor).__name__}")
        self.state = ConditioningState(frame_size_m=frame_size_m, area_bounds=area_bounds,
                                       area_spacing_m=area_spacing_m)
        self.stm = stm
        self.monitor = monitor
        self.policy = as_policy(policy)
        self.surface = surface
        self.target = target or Target.for_surface(surface)
        self.limits = limits or ConditioningLimits()
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
        if isinstance(max_rescans, bool) or not isinstance(max_rescans, int) or max_rescans < 0:
            raise ValueError(f"max_rescans must be an integer >= 0, got {max_rescans!r}")
        self.max_frames = max_frames
        self.max_rescans = max_rescans
        self.dry_run = bool(dry_run)
        self.truth = truth
        self.clock = clock
        self.clock_name = clock_name
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.echo = echo or (lambda line: None)
        self.name = name
        self.early_abort = bool(early_abort)
        if watch_every_lines is None and self.early_abort:
            watch_every_lines = 8
        if watch_every_lines is not None and (isinstance(watch_every_lines, bool)
                                              or not isinstance(watch_every_lines, int)
                                              or watch_every_lines < 1):
            raise ValueError(f"watch_every_lines must be an integer >= 1, got {watch_every_lines!r}")
        self.watch_every_lines = watch_every_lines
        self.watcher: ScanWatcher | None = None
        if watch_every_lines is not None:
            if not isinstance(monitor, ScanWatchMixin):
                raise TypeError(f"early_abort/watch_every_lines need a classifier that watches scans "
                                f"(TipStateMonitor, the oracle), got {type(monitor).__name__}")
            self.watcher = ScanWatcher(monitor, stm, every_lines=watch_every_lines,
                                       abort=self.early_abort)
            partial_model = getattr(monitor, "partial_model", None)
            if self.early_abort and getattr(partial_model, "fallback", False):
                warning = ("early abort judges partial frames with the bundle's full-frame ensemble (it has "
                           "no partial-frame model): on simulated H:Si(100) frames that flagged most clean "
                           "frames (benchmarks/RESULTS.md), so good tips get stopped and acted on; train "
                           "one with `stmtip train-partial`")
                log.warning(warning)
                self.echo(f"WARNING: {warning}")
        self.envelope = ConditioningEnvelope(stm.safety, self.limits)
        self.recorder = RunRecorder(stm.scan_image, monitor, with_truth=truth is not None,
                                    records=getattr(stm, "frame_parameters", ()),
                                    partial=self.watcher is not None)
        self._frame_lines: int | None = None  # lines the last frame's state was decided on
        self.planner: AreaPlanner | None = None  # built from the state's geometry by run()
        self.time_to_good: float | None = None  # an outcome, not state: set when the tip is good

    # ---- configuration ----------------------------------------------------------------
    def _setup_planner(self) -> None:
        stm = self.stm
        if self.frame_size_m is None:
            self.frame_size_m = float(stm.scan_width())
        if self.start_centre is None:
            self.start_centre = (float(stm.scan_centre_x()), float(stm.scan_centre_y()))
        bounds = self.area_bounds or (stm.safety.scan_area_x_m, stm.safety.scan_area_y_m)
        self.area_bounds = (tuple(bounds[0]), tuple(bounds[1]))  # type: ignore[assignment]
        self.planner = AreaPlanner(self.start_centre, self.frame_size_m, bounds[0], bounds[1],
                                   spacing_m=self.area_spacing_m,
                                   site_spacing_m=self.limits.min_site_distance_m)

    def config(self) -> dict[str, Any]:
        """What is stored as ``conditioning_config``."""
        policy_config = getattr(self.policy, "config", None)
        return {
            "surface": self.surface,
            "policy": policy_config() if callable(policy_config) else {"name": self.policy.name},
            "target": self.target.as_dict(),
            "limits": self.limits.as_dict(),
            "safety_envelope": self.stm.safety.as_dict(),
            "frame_size_m": self.frame_size_m,
            "start_centre_m": list(self.start_centre or ()),
            "area_bounds_m": [list(b) for b in self.area_bounds or ()],
            "area_spacing_m": self.area_spacing_m,
            "max_frames": self.max_frames,
            "max_rescans": self.max_rescans,
            "dry_run": self.dry_run,
            "clock": self.clock_name,
            "seed": self.seed,
            "instrument": self.stm.name,
            "classifier": _classifier_summary(self.monitor),
            "early_abort": self.early_abort,
            "watch_every_lines": self.watch_every_lines,
            "partial_rule": (self.monitor.partial_rule.as_dict()  # type: ignore[attr-defined]
                             if self.watcher is not None else None),
            "partial_model_fallback": bool(getattr(getattr(self.monitor, "partial_model", None),
                                                   "fallback", False)),
        }

    # ---- resume -----------------------------------------------------------------------
    def resume_from(self, run_id: int) -> None:
        """Restore the state of experiment run ``run_id`` (and its chain) from the database.

        The next :meth:`run` continues it in a new run linked by ``conditioning_resumed_from``:
        frame/action numbering, recorded indentation sites, per-area and total action
        counts, the present area, elapsed time and the policy's history carry over.
        """
        old = load_conditioning_run(run_id)
        cfg = old.config
        if cfg.get("surface") != self.surface:
            raise ValueError(f"run {run_id} is an experiment on {cfg.get('surface')!r}, "
                             f"not {self.surface!r}")
        self.state = ConditioningState.from_run(old)
        self.envelope = ConditioningEnvelope(self.stm.safety, self.limits)
        for a in done_actions(old):  # the budget and the indentation sites spent so far
            site = (a.action.x_m, a.action.y_m) if a.action.x_m is not None else None
            self.envelope.record(a.action, a.area, site)  # type: ignore[arg-type]
        self.echo(f"resuming run {old.run_id}: {len(old.frames)} frames, {len(old.actions)} actions, "
                  f"area {self.area}, {self.envelope.actions} tip actions spent")

    # ---- the loop -------------------------------------------------------------------------
    def run(self, experiment: Any = None) -> ExperimentResult:
        """Run the experiment into a new QCoDeS run of ``experiment`` (default: the current one).

        Side effects: scans, acts on the tip (unless ``dry_run``), writes the run.
        Returns how it ended; a hard error is re-raised after the tip was withdrawn and
        the outcome ``"error"`` stored.
        """
        from qcodes.dataset import Measurement

        self._setup_planner()
        meas = Measurement(exp=experiment, name=self.name)
        self.recorder.register(meas)
        self._t0 = self.clock()
        final_state = self.states[-1] if self.states else ""
        outcome, reason = "error", ""
        with meas.run() as saver:
            self.recorder.saver = saver
            saver.dataset.add_metadata(CONFIG_KEY, json.dumps(self.config(), allow_nan=True))
            if self.resumed_from is not None:
                saver.dataset.add_metadata(RESUMED_KEY, json.dumps(self.resumed_from))
            self.run_id = saver.run_id
            try:
                self._go_to_area(self.area, send=not self.dry_run)
                outcome, reason = self._loop()
            except _Stop as stop:
                outcome, reason = stop.outcome, stop.reason
            except BaseException as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._withdraw(reason)
                self._store_outcome(saver, outcome, reason)
                raise
            finally:
                self.monitor.finish(saver)
            if outcome in ("refused", "limit_tripped", "no_area_left"):
                self._withdraw(reason)
            final_state = self.states[-1] if self.states else ""
            result = self._store_outcome(saver, outcome, reason)
        self.echo(f"outcome: {outcome} — {reason}")
        result.final_state = final_state
        return result

    def _store_outcome(self, saver: Any, outcome: str, reason: str) -> ExperimentResult:
        run_ids = [*self.previous_run_ids, self.run_id]
        result = ExperimentResult(
            outcome=outcome, reason=reason, run_id=self.run_id, frames=self.frames,
            tip_actions=self.envelope.actions, moves=self.moves, elapsed_s=self._elapsed(),
            time_to_good_s=self.time_to_good,
            final_state=self.states[-1] if self.states else "", run_ids=run_ids,
            stopped_frames=self.stopped_frames)
        saver.dataset.add_metadata(OUTCOME_KEY, json.dumps(result.as_dict(), allow_nan=True))
        return result

    def _elapsed(self) -> float:
        return float(self.clock() - self._t0 + self.elapsed_offset)

    def _withdraw(self, reason: str) -> None:
        try:
            self.stm.withdraw()
            self.echo(f"tip withdrawn ({reason})")
        except Exception as exc:  # the connection may be what failed
            log.error("could not withdraw the tip after %s: %s", reason, exc)
            self.echo(f"WARNING: could not withdraw the tip: {exc}")

    def _check_readings(self) -> None:
        current = float(self.stm.current())
        z = float(self.stm.z_position())
        try:
            self.envelope.check_readings(current, z)
        except SafetyViolation as exc:
            self.echo(f"limit tripped: {exc}")
            raise _Stop("limit_tripped", str(exc)) from None

    def _loop(self) -> tuple[str, str]:
        streak = 0
        rescans = 0
        since_action: list[str] = []  # verdicts since the last tip action: the same tip
        belief = tip_belief_for(self.monitor)
        while True:
            self._check_readings()
            if self.frames >= self.max_frames:
                return "max_frames", f"{self.max_frames} frames scanned without a good tip"
            result = self._scan_and_classify()
            verdict = self.target.judge(result)
            since_action.append(verdict)
            step = belief.update(result.p_bad) if math.isfinite(result.p_bad) else None
            conf = result.probabilities.get(result.state, math.nan)
            finite = [p for p in result.probabilities.values() if math.isfinite(p)]
            shown = conf if math.isfinite(conf) or not finite else max(finite)
            record = self.watcher.last if self.watcher is not None else None
            stopped = (f"  (stopped at line {record.decided_line}/{record.total_lines}: "
                       f"{record.verdict})") if record is not None and record.stopped else ""
            why = f"  ({result.reason})" if verdict != "good" and result.reason else ""
            carried = f"  P(bad tip)={step.belief:.3f}" if step is not None else ""
            self.echo(f"frame {result.frame_index:3d}  area {self.area:2d}  {result.state:<20} "
                      f"p={shown:.2f}  {verdict}{carried}{why}{stopped}")
            if verdict == "good":
                streak += 1
                rescans = 0
                if step is not None:  # calibrated: the evidence of every frame since the last tip action
                    good_frames = since_action.count("good")
                    done = step.belief <= self.target.max_belief_bad and good_frames >= self.target.min_good_frames
                    rule = (f"{step.rule} ({'<=' if step.belief <= self.target.max_belief_bad else '>'} "
                            f"{self.target.max_belief_bad:g}), {good_frames} of {self.target.min_good_frames} good "
                            f"frames: {'stop, good tip' if done else 'rescan to confirm'}")
                else:
                    done = streak >= self.target.consecutive
                    rule = f"vote rule: {streak} of {self.target.consecutive} good frames in a row"
                self.recorder.write_verdict(result.frame_index, verdict, step, rule)
                if done:
                    good = since_action.count("good")
                    unsure = since_action.count("inconclusive")
                    if unsure > good:  # a safety net against a classifier outside its calibration
                        return "inconclusive", (
                            f"{good} good frames, but {unsure} of the {len(since_action)} "
                            f"frames since the last tip action were inconclusive: the classifier "
                            f"cannot confirm a good tip")
                    self.time_to_good = self._elapsed()
                    if step is not None:
                        return "good_tip", (f"P(bad tip)={step.belief:.3f} <= {self.target.max_belief_bad:g} "
                                            f"over {belief.frames} frame(s) ({result.state}, p={conf:.2f})")
                    return "good_tip", (f"{streak} consecutive good frames "
                                        f"({result.state}, p={conf:.2f})")
                self._execute(Action.rescan("confirming a good frame"), result.state)
                continue
            if verdict in ("bad", "off_target"):
                streak = 0
            if verdict == "content":
                action = Action.move(f"frame shows the sample ({result.state}), not the tip")
                rescans = 0
                rule = "content: move to a fresh area"
            elif verdict == "inconclusive" and rescans < self.max_rescans:
                rescans += 1
                action = Action.rescan(f"inconclusive frame ({result.state})")
                rule = f"inconclusive: rescan {rescans} of {self.max_rescans}"
            else:
                rescans = 0
                action = self.policy.choose(self._context(result))
                if not isinstance(action, Action):
                    raise ValueError(f"policy {self.policy.name!r} returned {action!r}, not an Action")
                rule = f"{verdict}: policy {self.policy.name} chose {action.kind}"
            self.recorder.write_verdict(result.frame_index, verdict, step,
                                        rule if step is None else f"{step.rule}; {rule}")
            self._execute(action, result.state)
            if action.touches_tip:
                streak = 0  # the apex may have changed: earlier good frames no longer count
                since_action.clear()
                belief.reset()
            if self.dry_run:
                return "dry_run", f"dry run: would {action.describe()} ({action.reason})"

    def _context(self, result: TipStateResult) -> PolicyContext:
        return PolicyContext(
            surface=self.surface, state=result.state,
            confidence=float(result.probabilities.get(result.state, math.nan)),
            states=tuple(self.states), actions=tuple(self.actions),
            state_at_last_action=self.state_at_last_action,
            actions_in_area=self.envelope.actions_in(self.area),
            max_actions_per_area=self.limits.max_actions_per_area,
            budget_left=self.envelope.budget_left, rng=self.rng)

    def _scan_and_classify(self) -> TipStateResult:
        stm = self.stm
        index = self.frames
        if self.watcher is not None:
            image = self.watcher.scan(index)
            record = self.watcher.last
            if record is None:  # pragma: no cover - scan() always appends its record
                raise RuntimeError("the scan watcher kept no record of the frame it scanned")
            self._frame_lines = record.decided_line if record.stopped else record.lines_acquired
            if record.stopped:
                self.stopped_frames += 1
        else:
            image = stm.scan_image()
            self._frame_lines = int(np.shape(image)[0])
        stamp = time.time()
        true_state = None
        if self.truth is not None:
            gt = self.truth()
            true_state = gt.frame_label or gt.tip_label
        setpoints: list = []  # QCoDeS adds scan_line/scan_pixel of the ParameterWithSetpoints
        self.recorder.write_frame(index, image, setpoints, area=self.area,
                                  centre=(float(stm.scan_centre_x.cache.get()),
                                          float(stm.scan_centre_y.cache.get())),
                                  elapsed_s=self._elapsed(), after_action=self.last_action_index,
                                  true_state=true_state)
        self.frames += 1
        self.monitor.submit(index, image, self.recorder.saver, timestamp=stamp)
        result = self.monitor.result(index)
        self.recorder.flush_monitor()
        self.states.append(result.state)
        if self.pending_after is not None:
            self.recorder.write_state_after(self.pending_after, result.state)
            self.pending_after = None
        return result

    def _site(self, action: Action) -> tuple[float, float] | None:
        if not action.touches_tip:
            return None
        if action.x_m is not None and action.y_m is not None:
            return (float(action.x_m), float(action.y_m))
        sites = self._planner().sites(self.area)
        if action.kind == "indent":
            return next((s for s in sites if self.envelope.site_is_free(s)), sites[0])
        return sites[self.envelope.actions_in(self.area) % len(sites)]

    def _execute(self, action: Action, state_before: str) -> None:
        from dataclasses import replace

        site = self._site(action)
        if site is not None:
            action = replace(action, x_m=site[0], y_m=site[1])
        index = self.action_count
        self.action_count += 1
        if action.kind == "move" and self.area + 1 >= len(self.planner or ()):
            reason = f"no fresh area left inside the bounds {self.area_bounds}"
            self.recorder.write_action(index, action, site=None, area=self.area,
                                       elapsed_s=self._elapsed(), state_before=state_before,
                                       status=f"refused: {reason}", lines=self._frame_lines)
            raise _Stop("no_area_left", reason)
        try:
            if action.kind in TIP_KINDS and site is None:  # e.g. a pulse whose touches_tip is False
                raise SafetyViolation(f"{action.kind} site", None, "a site on the sample")
            self.envelope.check_action(action, self.area, site)
        except SafetyViolation as exc:
            self.recorder.write_action(index, action, site=site, area=self.area,
                                       elapsed_s=self._elapsed(), state_before=state_before,
                                       status=f"refused: {exc}", lines=self._frame_lines)
            self.echo(f"REFUSED {action.describe()}: {exc}")
            if self.dry_run:
                raise _Stop("dry_run", f"dry run: {action.describe()} would be refused: {exc}") from None
            raise _Stop("refused", f"{action.describe()} refused: {exc}") from None
        status = "dry-run (not sent)" if self.dry_run else "done"
        self.recorder.write_action(index, action, site=site, area=self.area,
                                   elapsed_s=self._elapsed(), state_before=state_before, status=status,
                                   lines=self._frame_lines)
        where = f" at ({site[0] * 1e9:.0f}, {site[1] * 1e9:.0f}) nm" if site else ""
        if action.kind != "rescan":
            self.echo(f"{'WOULD ' if self.dry_run else ''}{action.describe()}{where}  ({action.reason})")
        if self.dry_run:
            return
        self._send(action, site)
        self.envelope.record(action, self.area, site)
        self.actions.append(action)
        self.last_action_index = index
        if action.touches_tip:
            self.state_at_last_action = state_before
        if action.kind != "rescan":
            self.pending_after = index
        self._check_readings()

    def _send(self, action: Action, site: tuple[float, float] | None) -> None:
        stm = self.stm
        if action.kind in TIP_KINDS and site is None:  # _execute refuses these first
            raise SafetyViolation(f"{action.kind} site", None, "a site on the sample")
        if action.kind == "pulse":
            stm.move_tip(*site)
            stm.bias_pulse(amplitude_V=action.amplitude_V, width_s=action.width_s)
        elif action.kind == "indent":
            stm.move_tip(*site)
            # lift at the imaging bias: the indentation alone acts on the apex
            stm.tip_shaper(action.depth_m, bias_lift_V=float(stm.bias()))
        elif action.kind == "move":
            self.area += 1
            self.moves += 1
            self._go_to_area(self.area, send=True)

    def _planner(self):  # noqa: ANN202 - the AreaPlanner
        """The area planner; ``RuntimeError`` before :meth:`_setup_planner` ran."""
        if self.planner is None:
            raise RuntimeError("the conditioning loop has no area planner yet (run() sets it up)")
        return self.planner

    def _go_to_area(self, area: int, *, send: bool) -> None:
        if self.frame_size_m is None:
            raise RuntimeError("the conditioning loop has no frame size yet (run() sets it up)")
        cx, cy = self._planner().centre(area)
        if send:  # the scan angle stays the user's (the lattice direction they chose)
            self.stm.set_frame(cx, cy, self.frame_size_m, self.frame_size_m, float(self.stm.scan_angle.get()))


def tip_belief_for(monitor: TipClassifier) -> TipBelief:
    """A :class:`~qcodes_stmtip.classify.tip_belief.TipBelief` whose base rate is the share of bad
    frames the monitor's decision was calibrated on (0.5 when it does not say)."""
    classifier = getattr(monitor, "inner", monitor)  # through a wrapper (the spectroscopic check)
    decision = getattr(getattr(classifier, "ensemble", None), "decision", None)
    validation = getattr(decision, "validation", None) or {}
    frames, bad = validation.get("frames", 0), validation.get("bad_frames", 0)
    base = bad / frames if isinstance(frames, int) and frames > 0 and 0 < bad < frames else 0.5
    return TipBelief(base_rate=base)


def _classifier_summary(monitor: TipClassifier) -> dict[str, Any]:
    meta = getattr(monitor, "metadata", None)
    if not callable(meta):
        return {"type": type(monitor).__name__}
    data = meta()
    return {"type": type(monitor).__name__, "bundle_path": data.get("bundle_path"),
            "model_id": data.get("model_id"), "inference_path": data.get("inference_path")}


def _state_view(name: str) -> property:
    """``ConditioningExperiment.<name>``: reads and writes ``self.state.<name>``."""
    def get(self: ConditioningExperiment) -> Any:
        return getattr(self.state, name)

    def set_(self: ConditioningExperiment, value: Any) -> None:
        setattr(self.state, name, value)

    return property(get, set_, doc=f"``self.state.{name}`` (see :class:`ConditioningState`).")


for _field in fields(ConditioningState):
    setattr(ConditioningExperiment, _field.name, _state_view(_field.name))
del _field
