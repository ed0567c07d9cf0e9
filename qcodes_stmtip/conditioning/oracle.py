"""An *oracle* stand-in for the tip-state monitor: the simulator's ground truth as the classifier.

For tests and the fast benchmark only — a real microscope has no ground truth; the
shipped experiment and demo classify with
:class:`~qcodes_stmtip.monitor.TipStateMonitor`. :class:`GroundTruthClassifier` offers
the interface the experiment drives, :class:`~qcodes_stmtip.classify.protocol.TipClassifier`,
and stores the same parameters (:class:`~qcodes_stmtip.monitor.results.ResultParameters`),
so a run classified by the oracle has the monitor's dataset layout. It labels each frame
with the simulator's frame label (probability 1), a frame with tip-change lines as a tip
change (both read through :func:`qcodes_stmtip.sim.truth.frame_truth`), and with
probability ``error_rate`` a uniformly random wrong class instead.

It watches scans too (:class:`~qcodes_stmtip.monitor.scanwatch.ScanWatchMixin`): a partial
frame of ``n`` acquired lines is labelled at once from the truth of those lines — the
class of the apex the frame started with, or a tip change when the apex changed before
line ``n`` (the class of the apex that imaged most of those lines on H:Si(100), with the
tip-change probability 1; ``tip_change`` on Au/Cu(111)); sample content (a step edge)
counts once the frame shows no tip change. Partial checks are never deliberately wrong:
the oracle is the bound of what judging a partial frame can save.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from qcodes_stmtip.monitor.results import ResultParameters, ScanRecord, TipStateResult, WindowCheck
from qcodes_stmtip.monitor.scanwatch import WATCH_METADATA_KEY, PartialRule, ScanWatchMixin
from qcodes_stmtip.sim.truth import frame_truth
from qcodes_stmtip.taxonomy import CLASSES, GOOD_CLASSES, METADATA_KEY, check_surface

if TYPE_CHECKING:
    from qcodes.dataset import DataSaver, Measurement
    from qcodes.parameters import Parameter

    from qcodes_stmtip.sim.microscope import GroundTruth

__all__ = ["ORACLE_KEY", "GroundTruthClassifier"]

#: Run-metadata key marking a run classified by the oracle: the monitor's key
#: (:data:`qcodes_stmtip.taxonomy.METADATA_KEY`), so both layouts read alike.
ORACLE_KEY = METADATA_KEY


class GroundTruthClassifier(ScanWatchMixin):
    """Classify frames by the simulator's ground truth (see module doc).

    Args:
        surface: the simulated surface.
        truth: returns the simulator's :class:`~qcodes_stmtip.sim.microscope.GroundTruth`
            (``server.microscope.ground_truth``); called once per submitted frame, right
            after it was acquired.
        error_rate: probability of a deliberately wrong label, in [0, 1).
        seed: seeds the errors.
    """

    def __init__(self, surface: str, truth: Callable[[], GroundTruth], *, error_rate: float = 0.0,
                 seed: int = 0) -> None:
        check_surface(surface)
        if not callable(truth):
            raise ValueError(f"truth must be callable (e.g. microscope.ground_truth), got {truth!r}")
        if not (isinstance(error_rate, int | float) and 0 <= error_rate < 1):
            raise ValueError(f"error_rate must be in [0, 1), got {error_rate!r}")
        self.surface = surface
        self.truth = truth
        self.error_rate = float(error_rate)
        self.rng = np.random.default_rng(seed)
        self.classes: tuple[str, ...] = CLASSES[surface]
        self.member_names = ("oracle",)
        self.params = ResultParameters(self.classes, self.member_names, self._value)
        self.frame_index: Parameter | None = None
        self.results: dict[int, TipStateResult] = {}
        self._ready: list[TipStateResult] = []
        self._latest: int | None = None
        self._meta_written: set[str] = set()
        self._checks: list[WindowCheck] = []
        self._init_scan_watch(PartialRule.for_surface(surface))

    @property
    def parameters(self) -> list[Parameter]:
        return self.params.all

    def register(self, meas: Measurement, frame_index: Parameter, *,
                 partial: bool = False) -> list[Parameter]:
        """Register the monitor's result parameters against ``frame_index`` (with
        ``partial``, those of watched scans too)."""
        registered = self.params.register(meas, frame_index)
        self.frame_index = frame_index
        if partial:
            registered += self.register_partial(meas, frame_index)
        return registered

    def submit(self, frame_index: int, frame: np.ndarray, datasaver: DataSaver | None = None, *,
               timestamp: float | None = None) -> None:
        """Label ``frame`` from the ground truth now; write it when ``datasaver`` is given."""
        if frame_index in self.results:
            raise ValueError(f"frame_index {frame_index} was already submitted in this run")
        ts = time.time() if timestamp is None else float(timestamp)
        stopped = self._stopped_result(int(frame_index), ts)
        if stopped is not None:  # stopped early: the decisive partial check is its label
            self._keep(stopped, datasaver)
            return
        seen = frame_truth(self.truth())
        label, changed = seen.state, seen.tip_changed
        if self.surface != "hsi100" and changed:
            label = "tip_change"
        if self.error_rate and self.rng.random() < self.error_rate:
            others = [c for c in self.classes if c != label]
            label = str(self.rng.choice(others))
        probs = {c: float(c == label) for c in self.classes}
        tip_change = float(changed) if self.surface == "hsi100" else math.nan
        good = label in GOOD_CLASSES[self.surface] and not (self.surface == "hsi100" and changed)
        result = TipStateResult(int(frame_index), label, "good" if good else "bad", probs, (label,),
                                tip_change, ts, latency_s=0.0)
        self._keep(result, datasaver)

    def _keep(self, result: TipStateResult, datasaver: DataSaver | None) -> None:
        self.results[result.frame_index] = result
        self._ready.append(result)
        self._latest = result.frame_index
        if datasaver is not None:
            self.flush(datasaver)

    def result(self, frame_index: int, timeout: float | None = None) -> TipStateResult:
        """The result of ``frame_index`` (available at once)."""
        if frame_index not in self.results:
            raise ValueError(f"frame_index {frame_index} was not submitted in this run")
        return self.results[frame_index]

    def flush(self, datasaver: DataSaver | None = None) -> list[TipStateResult]:
        """Write the results not yet written."""
        written, self._ready = self._ready, []
        if datasaver is not None:
            if self.frame_index is None:
                raise ValueError("call register(meas, frame_index) before writing to a datasaver")
            if datasaver.dataset.guid not in self._meta_written:
                datasaver.dataset.add_metadata(ORACLE_KEY, json.dumps(self.metadata()))
                self._meta_written.add(datasaver.dataset.guid)
            for r in written:
                datasaver.add_result((self.frame_index, r.frame_index), *self.params.values(r))
                self._write_scan_rows(datasaver, r.frame_index)
        return written

    def finish(self, datasaver: DataSaver | None = None, **_: Any) -> list[TipStateResult]:
        """Write what is left; return this run's results and start a fresh run."""
        self.flush(datasaver)
        target = datasaver.dataset if datasaver is not None else _.get("dataset")
        if target is not None and self.scans:
            target.add_metadata(WATCH_METADATA_KEY, json.dumps(self._scan_watch_metadata(),
                                                               allow_nan=True))
        results = [self.results[i] for i in sorted(self.results)]
        self.results, self._latest = {}, None
        self._reset_scans()
        return results

    def close(self) -> None:
        """Nothing to stop."""

    def metadata(self) -> dict[str, object]:
        """Run metadata: marks the classification as the simulator's ground truth."""
        return {"bundle": None, "inference_path": "oracle: simulator ground truth",
                "error_rate": self.error_rate, "classes": list(self.classes),
                "partial_rule": self.partial_rule.as_dict()}

    # ---- watched scans (ScanWatchMixin) ----------------------------------------------------
    def _post_partial_job(self, record: ScanRecord, frame: np.ndarray, lines: int,
                          timestamp: float) -> None:
        truth = self.truth()
        start = getattr(truth, "frame_start_label", None) or truth.tip_label
        changes = [c for c in (truth.tip_change_lines or ()) if c < lines]
        if changes:
            first = changes[0]
            label = start if first >= lines - first else truth.tip_label
            if self.surface != "hsi100":
                label = "tip_change"
        elif truth.tip_change_lines:  # a change later in the frame: these lines show the start apex
            label = start
        else:
            label = truth.frame_label or start
        probs = {c: float(c == label) for c in self.classes}
        tip_change = float(bool(changes)) if self.surface == "hsi100" else math.nan
        good = label in GOOD_CLASSES[self.surface] and not changes
        result = TipStateResult(record.frame_index, label, "good" if good else "bad", probs, (label,),
                                tip_change, timestamp, latency_s=0.0)
        self._checks.append(self.partial_rule.check(result, lines, 0.0))

    def _collect_partial(self, timeout: float = 0.0) -> list[WindowCheck]:
        got, self._checks = self._checks, []
        return got

    def _cancel_partial(self, frame_index: int) -> int:
        return 0

    def _value(self, name: str) -> object:
        if self._latest is None:
            raise ValueError("no frame has been submitted yet")
        return self.params.value_of(name, self.results[self._latest])
