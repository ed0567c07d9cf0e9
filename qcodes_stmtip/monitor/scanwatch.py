"""Judge the tip while a frame is still being scanned, and stop the scan early.

Two halves:

* the **classifier side**, :class:`ScanWatchMixin` (mixed into
  :class:`~qcodes_stmtip.monitor.TipStateMonitor` and the simulator's oracle): takes a
  partial frame (:meth:`~ScanWatchMixin.post_partial`, never blocks: one slot, a newer
  partial frame replaces one not yet classified), classifies it off the acquisition thread,
  judges it with a :class:`PartialRule` and hands back :class:`~.results.WindowCheck`\\ s
  (:meth:`~ScanWatchMixin.partial_checks`); it keeps a :class:`~.results.ScanRecord` per
  watched frame and writes it with the frame's result (:class:`~.results.PartialParameters`);
* the **acquisition side**, :class:`ScanWatcher`: starts a scan, reads the frame in
  progress every ``every_lines`` lines (``Scan.FrameDataGrab``: acquired lines, NaN
  beyond), posts it, and stops the scan (the driver's scan stop action) as soon as a check
  is decisive, when ``abort`` asks for it.

The decision rule (:class:`PartialRule`) comes from the bundle's calibration: a partial
frame is **confidently bad** when the ensemble's decision — majority vote held to the
bundle's per-class thresholds — is a bad class (neither good, sample content nor tip
change), and it **flags a tip change** when the tip-change probability reaches the
bundle's calibrated tip-change threshold (or, on Au/Cu(111), the decision is the
``tip_change`` class). Checks on fewer than ``min_lines`` lines decide nothing.

The monitor classifies a partial frame with the bundle's partial-frame model
(:func:`qcodes_stmtip.classify.partial.load_partial`: the first acquired lines made into
the network input by :func:`~qcodes_stmtip.classify.partial.partial_view`); a bundle
without one falls back to its full-frame ensemble on that view. The rule's thresholds
are those of whichever ensemble classifies.

Threading: everything here runs on the acquisition thread except the classification
itself; nothing waits for the classifier while a scan runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from qcodes.parameters import Parameter, ParameterWithSetpoints

from qcodes_stmtip.monitor.results import (
    PartialParameters,
    ScanRecord,
    TipStateResult,
    WindowCheck,
)
from qcodes_stmtip.monitor.validation import check_frame, check_lines
from qcodes_stmtip.taxonomy import CONTENT_CLASSES, GOOD_CLASSES, TIP_CHANGE

if TYPE_CHECKING:
    from qcodes.dataset import DataSaver, Measurement

    from qcodes_stmtip.classify.ensemble import Ensemble
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM

__all__ = ["WATCH_METADATA_KEY", "PartialRule", "ScanWatchMixin", "ScanWatcher", "acquired_lines"]

#: Metadata key of the scan-watch settings and counts in a run.
WATCH_METADATA_KEY = "tip_scan_watch"


def acquired_lines(frame: np.ndarray) -> int:
    """Lines of ``frame`` (lines, pixels) whose every pixel is finite: acquired lines."""
    arr = np.asarray(frame)
    if arr.ndim != 2 or arr.size == 0:
        return 0
    return int(np.count_nonzero(np.all(np.isfinite(arr), axis=1)))


@dataclass(frozen=True)
class PartialRule:
    """When a partial frame decides the tip state (see module doc).

    ``good_classes``/``bad_classes``: the verdict ``"good"``/``"bad"`` of a decision in
    them; ``tip_change_threshold``: a tip-change probability at or above it flags a tip
    change; ``min_lines``: fewer acquired lines decide nothing (``"open"``); ``min_p_bad``:
    a ``"bad"`` verdict also needs the summed probability of the bad classes to reach it
    (0: the per-class thresholds alone); ``source``: where the thresholds come from.
    """

    good_classes: frozenset[str]
    bad_classes: frozenset[str]
    tip_change_threshold: float = 0.5
    min_lines: int = 8
    min_p_bad: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "good_classes", frozenset(self.good_classes))
        object.__setattr__(self, "bad_classes", frozenset(self.bad_classes))
        if not (isinstance(self.tip_change_threshold, int | float)
                and 0 < self.tip_change_threshold <= 1):
            raise ValueError("PartialRule.tip_change_threshold must be in (0, 1], "
                             f"got {self.tip_change_threshold!r}")
        if isinstance(self.min_lines, bool) or not isinstance(self.min_lines, int) or self.min_lines < 1:
            raise ValueError(f"PartialRule.min_lines must be an integer >= 1, got {self.min_lines!r}")
        if not (isinstance(self.min_p_bad, int | float) and 0 <= self.min_p_bad <= 1):
            raise ValueError(f"PartialRule.min_p_bad must be in [0, 1], got {self.min_p_bad!r}")

    @classmethod
    def from_ensemble(cls, ensemble: Ensemble, **overrides: Any) -> PartialRule:
        """The rule of a bundle: its good classes, its calibrated tip-change threshold (the
        per-class thresholds act through the ensemble's decision)."""
        content = CONTENT_CLASSES.get(ensemble.surface, frozenset())
        good = frozenset(ensemble.good_classes)
        bad = frozenset(ensemble.classes) - good - content - {TIP_CHANGE}
        threshold = float(ensemble.tip_change_threshold)
        values: dict[str, Any] = {
            "good_classes": good, "bad_classes": bad,
            "tip_change_threshold": min(1.0, max(threshold, math.ulp(0.0)))
            if math.isfinite(threshold) else 0.5,
            "source": "bundle calibration: per-class thresholds, tip-change threshold"}
        values.update(overrides)
        return cls(**values)

    @classmethod
    def for_surface(cls, surface: str, **overrides: Any) -> PartialRule:
        """The rule for a classifier without calibration (the oracle): the surface's classes."""
        from qcodes_stmtip.taxonomy import CLASSES

        good = GOOD_CLASSES[surface]
        bad = frozenset(CLASSES[surface]) - good - CONTENT_CLASSES[surface] - {TIP_CHANGE}
        values: dict[str, Any] = {"good_classes": good, "bad_classes": bad,
                                  "source": f"surface {surface} classes"}
        values.update(overrides)
        return cls(**values)

    def p_good(self, result: TipStateResult) -> float:
        """Summed probability of the good classes (NaN when unclassified)."""
        return float(sum(p for c, p in result.probabilities.items() if c in self.good_classes))

    def p_bad(self, result: TipStateResult) -> float:
        """Summed probability of the bad classes (NaN when unclassified)."""
        return float(sum(p for c, p in result.probabilities.items() if c in self.bad_classes))

    def verdict(self, result: TipStateResult, lines: int) -> str:
        """``"unclassified"``, ``"open"``, ``"tip_change"``, ``"bad"`` or ``"good"``."""
        if not result.classified:
            return "unclassified"
        if lines < self.min_lines:
            return "open"
        tc = result.tip_change_probability
        if (math.isfinite(tc) and tc >= self.tip_change_threshold) or result.state == TIP_CHANGE:
            return "tip_change"
        if result.state in self.bad_classes and self.p_bad(result) >= self.min_p_bad:
            return "bad"
        if result.state in self.good_classes:
            return "good"
        return "open"

    def check(self, result: TipStateResult, lines: int, latency_s: float = math.nan) -> WindowCheck:
        """The :class:`~.results.WindowCheck` of a partial frame's ``result``."""
        return WindowCheck(result.frame_index, int(lines), self.p_good(result),
                           float(result.tip_change_probability), self.verdict(result, lines),
                           result, latency_s)

    def as_dict(self) -> dict[str, Any]:
        return {"good_classes": sorted(self.good_classes), "bad_classes": sorted(self.bad_classes),
                "tip_change_threshold": self.tip_change_threshold, "min_lines": self.min_lines,
                "min_p_bad": self.min_p_bad, "source": self.source}


class ScanWatchMixin:
    """The classifier side of watching scans (see module doc); state per run.

    A class mixing it in calls :meth:`_init_scan_watch` in its constructor and provides
    ``_post_partial_job(record, frame, lines, timestamp)`` (hand the partial frame to the
    classification without blocking), ``_collect_partial(timeout)`` (the checks that have
    arrived, waiting at most ``timeout`` s for the first) and ``_cancel_partial(frame_index)`` (forget a partial frame of
    that frame not yet classified; returns how many).
    """

    partial_rule: PartialRule
    frame_index: Parameter | None

    def _init_scan_watch(self, rule: PartialRule) -> None:
        self.partial_rule = rule
        self.partial_params = PartialParameters(self._partial_value)
        self.watch_settings: dict[str, Any] = {}
        self._partial_registered = False
        self._reset_scans()

    def _reset_scans(self) -> None:
        #: This run's watched frames by frame index.
        self.scans: dict[int, ScanRecord] = {}
        self._open_scans: set[int] = set()
        self._latest_scan: int | None = None
        self._scan_rows_written: set[int] = set()
        self.late_checks = 0  # checks that arrived after their frame's scan ended

    # ---- registration ----------------------------------------------------------------
    def register_partial(self, meas: Measurement, frame_index: Parameter) -> list[Parameter]:
        """Register the scan-watch parameters (:class:`~.results.PartialParameters`) with ``meas``."""
        registered = self.partial_params.register(meas, frame_index)
        self._partial_registered = True
        return registered

    # ---- acquisition-thread API ---------------------------------------------------------
    def begin_scan(self, record: ScanRecord) -> None:
        """A watched scan of ``record.frame_index`` starts (its checks go to ``record``)."""
        index = int(record.frame_index)
        if index in self.scans:
            raise ValueError(f"frame_index {index} was already watched in this run")
        self.scans[index] = record
        self._open_scans.add(index)
        self._latest_scan = index

    def post_partial(self, record: ScanRecord, frame: np.ndarray, lines: int,
                     timestamp: float | None = None) -> None:
        """Classify the first ``lines`` acquired lines of ``frame`` (NaN beyond); never blocks.

        A partial frame still waiting from before is replaced (counted in ``record.dropped``).
        The frame goes through the same checks as a whole frame
        (:func:`~qcodes_stmtip.monitor.validation.check_frame`: 2-D, numeric, not complex, the
        classifier's ``expected_shape``) and ``lines`` must be in 1..its line count; else
        ``ValueError`` and nothing is recorded.
        """
        if record.frame_index not in self._open_scans:
            raise ValueError(f"frame {record.frame_index} is not being watched (begin_scan first)")
        values = check_frame(frame, getattr(self, "expected_shape", None))
        n = check_lines(lines, values.shape[0])
        ts = time.time() if timestamp is None else float(timestamp)
        if not math.isfinite(ts):
            raise ValueError(f"timestamp must be finite seconds since the epoch, got {timestamp!r}")
        record.posted += 1
        self._post_partial_job(record, np.array(values, copy=True), n, ts)

    def partial_checks(self, timeout: float = 0.0) -> list[WindowCheck]:
        """The checks that have arrived since the last call (waiting at most ``timeout`` s for
        one; by default never); each is also added to its frame's record while that scan is
        being watched."""
        new = []
        for check in self._collect_partial(timeout):
            if check.frame_index in self._open_scans:
                self.scans[check.frame_index].checks.append(check)
                new.append(check)
            else:
                self.late_checks += 1
        return new

    def end_scan(self, record: ScanRecord) -> None:
        """The watched scan ended: collect what arrived, drop what is still waiting."""
        self.partial_checks()
        record.dropped += self._cancel_partial(record.frame_index)
        self._open_scans.discard(record.frame_index)

    def watch_scan(self, stm: NanonisSTM, datasaver: DataSaver | None = None, *,
                   every_lines: int = 16, abort: bool | Callable[[WindowCheck], bool] = False,
                   on_check: Callable[[WindowCheck], None] | None = None) -> ScanWatcher:
        """A :class:`ScanWatcher` of ``stm``'s scans classified by this classifier (see there)."""
        return ScanWatcher(self, stm, datasaver, every_lines=every_lines, abort=abort,  # type: ignore[arg-type]
                           on_check=on_check)

    # ---- for the classifier's submit/write ----------------------------------------------
    def _stopped_result(self, index: int, timestamp: float) -> TipStateResult | None:
        """The decisive check's result for a frame whose scan was stopped early, else None."""
        record = self.scans.get(index)
        if record is None or not record.stopped or record.decided is None:
            return None
        return replace(record.decided.result, frame_index=index, timestamp=timestamp, latency_s=0.0)

    def _write_scan_rows(self, datasaver: DataSaver, index: int) -> None:
        """Write frame ``index``'s scan-watch rows (when registered and watched)."""
        record = self.scans.get(index)
        if record is None or not self._partial_registered or self.frame_index is None:
            return
        datasaver.add_result((self.frame_index, index), *self.partial_params.values(record))
        for row in self.partial_params.window_rows(record):
            datasaver.add_result((self.frame_index, index), *row)
        self._scan_rows_written.add(index)

    def _scan_watch_metadata(self) -> dict[str, Any]:
        """Run metadata: the rule, the watch settings, counts, and the per-frame summaries of
        frames whose rows were not written (``dond``: the series live here)."""
        records = [self.scans[i] for i in sorted(self.scans)]
        return {
            "rule": self.partial_rule.as_dict(),
            "watch": dict(self.watch_settings),
            "frames": len(records),
            "stopped": sum(r.stopped for r in records),
            "checks": sum(len(r.checks) for r in records),
            "posted": sum(r.posted for r in records),
            "dropped": sum(r.dropped for r in records),
            "late_checks": self.late_checks,
            "series": {str(r.frame_index): r.summary() for r in records
                       if r.frame_index not in self._scan_rows_written},
        }

    def _partial_value(self, name: str) -> object:
        if self._latest_scan is None:
            raise ValueError("no scan has been watched yet; measure the watched image first")
        return self.partial_params.value_of(name, self.scans[self._latest_scan])

    # to be provided by the classifier
    def _post_partial_job(self, record: ScanRecord, frame: np.ndarray, lines: int,
                          timestamp: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _collect_partial(self, timeout: float = 0.0) -> list[WindowCheck]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cancel_partial(self, frame_index: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class ScanWatcher:
    """Acquire frames while a classifier judges them line by line, stopping early if asked.

    Args:
        classifier: a :class:`ScanWatchMixin` classifier (``TipStateMonitor``, the oracle).
        stm: the driver (``start_scan``, ``partial_frame``, ``wait_end_of_scan``,
            ``stop_scan``, ``last_frame``).
        datasaver: if given, :meth:`scan` also stores the frame (``stm.scan_image`` and
            ``stm.frame_parameters`` against the classifier's frame index, as registered in
            the ``Measurement``) and submits it to the classifier, which writes its result
            and the scan-watch rows.
        every_lines: classify the partial frame every this many acquired lines (the first
            check at the rule's ``min_lines``, rounded up to a multiple).
        abort: ``True``: stop the scan at the first decisive check (confidently bad or a tip
            change); a function ``check -> bool``: stop when it returns True; ``False``:
            never stop (the checks are still recorded).
        on_check: called with every check of the frame being watched (acquisition thread).
        result_poll_s: how often to look for a check's result while one is being classified.
        first_poll_s: the first wait after the start (then adapted to the measured line rate).

    Nothing here waits for the classifier: between reads of the frame the watcher sleeps in
    the controller's wait-for-end-of-scan, which returns as soon as the scan ends.
    """

    def __init__(self, classifier: ScanWatchMixin, stm: NanonisSTM,
                 datasaver: DataSaver | None = None, *, every_lines: int = 16,
                 abort: bool | Callable[[WindowCheck], bool] = False,
                 on_check: Callable[[WindowCheck], None] | None = None,
                 result_poll_s: float = 0.005, first_poll_s: float = 0.002) -> None:
        if not isinstance(classifier, ScanWatchMixin):
            raise TypeError(f"classifier must watch scans (ScanWatchMixin), got {type(classifier).__name__}")
        if isinstance(every_lines, bool) or not isinstance(every_lines, int) or every_lines < 1:
            raise ValueError(f"every_lines must be an integer >= 1, got {every_lines!r}")
        if not (isinstance(abort, bool) or callable(abort)):
            raise TypeError(f"abort must be a bool or a function check -> bool, got {abort!r}")
        if on_check is not None and not callable(on_check):
            raise TypeError(f"on_check must be callable, got {on_check!r}")
        for name, value in (("result_poll_s", result_poll_s), ("first_poll_s", first_poll_s)):
            if not (isinstance(value, int | float) and 0 < value <= 10):
                raise ValueError(f"{name} must be in (0, 10] s, got {value!r}")
        self.classifier = classifier
        self.stm = stm
        self.datasaver = datasaver
        self.every_lines = every_lines
        self.abort = abort
        self.on_check = on_check
        self.result_poll_s = float(result_poll_s)
        self.first_poll_s = float(first_poll_s)
        self.records: list[ScanRecord] = []
        classifier.watch_settings = {"every_lines": every_lines,
                                     "abort": abort if isinstance(abort, bool) else "callable"}

    @property
    def last(self) -> ScanRecord | None:
        """The record of the last watched scan."""
        return self.records[-1] if self.records else None

    @property
    def parameters(self) -> list[Parameter]:
        """The per-frame scan-watch parameters (measure them in ``dond`` after the image)."""
        return self.classifier.partial_params.per_frame

    def first_check(self) -> int:
        """Lines acquired at the first check: ``min_lines`` rounded up to ``every_lines``."""
        k = self.every_lines
        return k * max(1, -(-self.classifier.partial_rule.min_lines // k))

    def scan(self, frame_index: int, direction: str | None = None) -> np.ndarray:
        """Scan one frame while watching it; return it (float64, row 0 at the bottom; lines
        not acquired NaN when the scan was stopped early). See :attr:`last` for its record.

        With a datasaver, the frame is also stored and submitted (see class doc). Raises
        ``TimeoutError`` (after stopping the scan) when it runs past ``stm.scan_timeout``.
        """
        if isinstance(frame_index, bool) or not isinstance(frame_index, int | np.integer) \
                or frame_index < 0:
            raise ValueError(f"frame_index must be a non-negative integer, got {frame_index!r}")
        stm, cls = self.stm, self.classifier
        stm.refresh_geometry()  # partial_frame checks shapes against these caches
        total = int(stm.lines.cache.get())
        up = (direction or stm.scan_direction.get()) == "up"
        record = ScanRecord(int(frame_index), total, every_lines=self.every_lines, scan_up=up)
        timeout = float(stm.scan_timeout.get())
        nominal = max(float(stm.line_time()), 1e-6)  # s per line at real speed
        cls.begin_scan(record)
        next_check = self.first_check()
        t0 = time.perf_counter()
        stm.start_scan(direction)
        t_start = time.perf_counter()  # the line rate is measured from here
        try:
            n, rate, wait, t_grab = 0, 0.0, self.first_poll_s, t_start + self.first_poll_s
            while True:
                in_flight = record.posted - record.dropped - len(record.checks) > 0
                now = time.perf_counter()
                step = min(max(t_grab - now, 1e-4), 10.0)
                t_end = t_start + total / rate if rate > 0 else math.inf  # expected end of the scan
                if in_flight and now + step < t_end - 2 * self.result_poll_s:
                    # the scan runs on until the next read: wait for the check here, no request
                    checks = cls.partial_checks(timeout=step)
                else:
                    if in_flight:
                        step = min(step, self.result_poll_s)
                    if stm.wait_end_of_scan(timeout_s=step):
                        break
                    checks = cls.partial_checks()
                if self._decide(record, checks):
                    self._stop(record)
                    break
                now = time.perf_counter()
                if now - t0 > timeout:
                    stm.stop_scan()
                    raise TimeoutError(f"{stm.name}: the watched scan did not end within {timeout} s "
                                       "(stopped; raise scan_timeout)")
                if now < t_grab:
                    continue
                frame = stm.partial_frame()
                n = acquired_lines(frame)
                if next_check <= n < total:
                    cls.post_partial(record, frame, n)
                    next_check = (n // self.every_lines + 1) * self.every_lines
                    if self._decide(record, cls.partial_checks()):  # a classifier that answers at once
                        self._stop(record)
                        break
                rate = n / (now - t_start) if n > 0 else 0.0  # lines per wall second so far
                if rate > 0:
                    wait = (max(next_check - n, 1)) / rate
                else:
                    wait = min(2 * wait, self.every_lines * nominal)
                t_grab = now + min(max(wait, 1e-3), self.every_lines * nominal)
                if next_check >= total:
                    t_grab = math.inf  # no check left: wait for the end of the scan
            image = stm.last_frame()
        finally:
            record.wall_s = time.perf_counter() - t0
            cls.end_scan(record)
        record.lines_acquired = acquired_lines(image) if record.stopped else total
        self.records.append(record)
        if self.datasaver is not None:
            self._store(int(frame_index), image)
        return image

    def _stop(self, record: ScanRecord) -> None:
        """Stop the scan on a decisive check; return once the controller is idle."""
        self.stm.stop_scan()
        record.stopped = True
        self.stm.wait_end_of_scan(timeout_s=5.0)

    def _decide(self, record: ScanRecord, checks: list[WindowCheck]) -> bool:
        stop = False
        for check in checks:
            if check.frame_index != record.frame_index:
                continue
            if self.on_check is not None:
                self.on_check(check)
            if stop:
                continue
            if self.abort is True:
                stop = check.decisive
            elif callable(self.abort):
                stop = bool(self.abort(check))
        return stop

    def _store(self, index: int, image: np.ndarray) -> None:
        saver, stm, cls = self.datasaver, self.stm, self.classifier
        if saver is None:
            raise ValueError("ScanWatcher._store needs a datasaver (the watcher was made without one)")
        if cls.frame_index is None:
            raise ValueError("register the classifier (register(meas, frame_index, partial=True)) "
                             "before scanning into a datasaver")
        saver.add_result((cls.frame_index, index), (stm.scan_image, image),
                         *((p, p()) for p in stm.frame_parameters))
        cls.submit(index, image, saver)  # type: ignore[attr-defined]

    def parameter(self, frame_index: Parameter, name: str | None = None) -> ParameterWithSetpoints:
        """A copy of ``stm.scan_image`` whose ``get()`` is a watched scan at ``frame_index()``,
        submitted to the classifier (for ``dond``; measure :attr:`parameters` and the
        classifier's parameters after it)::

            watcher = monitor.watch_scan(stm, every_lines=16, abort=True)
            frames = watcher.parameter(frame_index)
            ds, *_ = dond(ArraySweep(frame_index, range(n)), frames, *stm.frame_parameters,
                          *monitor.parameters, *watcher.parameters)
            monitor.finish(dataset=ds)   # the per-check series go to the run metadata
        """
        image = self.stm.scan_image
        cls = self.classifier
        cls.frame_index = frame_index

        def get() -> np.ndarray:
            index = int(frame_index.get())
            frame = self.scan(index) if self.datasaver is None else self._scan_unsaved(index)
            cls.submit(index, frame)  # type: ignore[attr-defined]
            return frame

        return ParameterWithSetpoints(
            name or image.register_name, label=image.label, unit=image.unit,
            setpoints=image.setpoints, vals=image.vals, get_cmd=get, set_cmd=False)

    def _scan_unsaved(self, index: int) -> np.ndarray:
        saver, self.datasaver = self.datasaver, None
        try:
            return self.scan(index)
        finally:
            self.datasaver = saver
