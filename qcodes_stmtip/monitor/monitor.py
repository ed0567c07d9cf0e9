"""Classify every frame of a QCoDeS measurement and store the tip state in the same dataset.

Threading design. A QCoDeS ``DataSaver`` is not safe for concurrent ``add_result``
calls from two threads, and user callbacks may touch instruments that are not
thread-safe either. So the monitor splits the work:

* the **worker thread** only preprocesses frames and runs the fused ensemble
  (:class:`~qcodes_stmtip.classify.inference.fused.FusedEnsemble`); it takes frames from a
  bounded input queue (several at a time, as one batch, when it has fallen behind) and
  puts :class:`~qcodes_stmtip.monitor.results.TipStateResult` objects on a result queue;
* the **acquisition thread** (the user's loop) does every dataset write and every
  callback: :meth:`TipStateMonitor.submit` enqueues a frame and writes the results that
  have arrived meanwhile (non-blocking), :meth:`TipStateMonitor.flush` does only the
  latter, and :meth:`TipStateMonitor.finish` blocks until every submitted frame has its
  result written. Nothing is written after the run closes and nothing is dropped.

Durability (``durable=True``, the default): a frame's result is written to the run's
database and committed **as soon as it exists** — by the worker thread, through its own
SQLite connection and ``DataSaver`` — not when the next frame is submitted, so a crash
during a long scan keeps the previous frame's tip state (results without a database
behind the datasaver, and partial-check decisions, are written on the acquisition thread
as below). The live in-memory ``dataset.cache`` of the running measurement does not
show the rows the worker wrote; the database (``load_by_id``, ``get_parameter_data``) does.
Every write of the monitor to a datasaver
ends with ``datasaver.flush_data_to_database(block=True)``, one SQLite commit per
``submit``/``flush``/``finish`` call. So once ``submit(i, frame, datasaver)`` returns,
the frame the caller added before it is on disk, and once a result is reported
written (returned by :meth:`TipStateMonitor.flush`/:meth:`~TipStateMonitor.finish`,
listed in :attr:`TipStateMonitor.written`) it is too: a crash or ``SIGKILL`` loses
nothing that was reported. Without it the ``DataSaver`` commits only every
``write_period`` (5 s), and a killed process loses everything since.

Queue-full policy (``on_full``): ``"block"`` (default) makes ``submit`` wait for a free
slot — back-pressure that never loses a classification; ``"unclassified"`` never waits:
the frame is stored at once as ``unclassified`` with reason ``"monitor queue full"``.
Either way every submitted frame gets exactly one stored result.

Failure isolation: a frame that cannot be preprocessed (NaN/too few lines, wrong shape,
non-numeric, complex, values so large that they overflow the float32 network input) or
whose inference raises or gives non-finite probabilities gets state ``unclassified``
and a one-line reason as ``tip_reason``; the worker keeps going. The frame itself is
the caller's to store and is stored either way.

Watching scans in progress (:meth:`TipStateMonitor.watch_scan`, see
:mod:`qcodes_stmtip.monitor.scanwatch`): partial frames go to a one-slot mailbox beside the
input queue — a newer partial frame replaces one not yet classified, so partial checks
never pile up and posting never waits — and the worker classifies the waiting partial
frame before the next batch of whole frames. A frame whose scan was stopped early on a
decisive check is stored with that check's classification (not classified again).

Importing this module does not import TensorFlow; constructing a monitor does.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qcodes.parameters import Parameter, ParameterWithSetpoints

from qcodes_stmtip.extras import require
from qcodes_stmtip.monitor.results import (
    METADATA_KEY,
    UNCERTAIN_STATE,
    ResultParameters,
    ScanRecord,
    TipStateResult,
    WindowCheck,
)
from qcodes_stmtip.monitor.scanwatch import WATCH_METADATA_KEY, PartialRule, ScanWatchMixin
from qcodes_stmtip.monitor.validation import MAX_ABS_VALUE, check_frame  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from qcodes.dataset import DataSaver, Measurement
    from qcodes.dataset.data_set_protocol import DataSetProtocol

    from qcodes_stmtip.classify.ensemble import Ensemble
    from qcodes_stmtip.classify.partial import PartialEnsemble

__all__ = ["METADATA_KEY", "MonitorError", "StateCallback", "TipStateMonitor", "states_of"]

log = logging.getLogger(__name__)

#: Queue-full policies.
ON_FULL = ("block", "unclassified")

StateCallback = Callable[[int, TipStateResult], None]


class MonitorError(RuntimeError):
    """The monitor is closed, timed out waiting for results, or was used out of order."""


class _Job:
    __slots__ = ("index", "frame", "timestamp", "submitted", "sink")

    def __init__(self, index: int, frame: Any, timestamp: float, sink: _Sink | None = None) -> None:
        self.index, self.frame, self.timestamp = index, frame, timestamp
        self.submitted = time.perf_counter()
        self.sink = sink


class _Sink:
    """Where the worker writes a result the moment it exists: the run's SQLite database,
    through the worker's own connection and ``DataSaver`` (a ``DataSaver`` and its
    connection belong to the thread that made them)."""

    __slots__ = ("db", "guid")

    def __init__(self, db: str, guid: str) -> None:
        self.db, self.guid = db, guid

    @classmethod
    def of(cls, datasaver: DataSaver) -> _Sink | None:
        dataset = datasaver.dataset
        db = getattr(dataset, "path_to_db", None)
        return cls(str(db), str(dataset.guid)) if db else None


class _PartialJob:
    __slots__ = ("record", "frame", "lines", "timestamp", "submitted")

    def __init__(self, record: ScanRecord, frame: np.ndarray, lines: int, timestamp: float) -> None:
        self.record, self.frame, self.lines, self.timestamp = record, frame, lines, timestamp
        self.submitted = time.perf_counter()


_STOP = object()


class TipStateMonitor(ScanWatchMixin):
    """Classify frames off the acquisition thread and store the results in the dataset.

    Args:
        bundle: a model-bundle directory (see :mod:`qcodes_stmtip.classify.bundle`) or an
            already loaded :class:`~qcodes_stmtip.classify.ensemble.Ensemble`.
        surface: if given, the bundle must be for this surface.
        queue_size: frames that may wait for classification (≥ 1).
        on_full: ``"block"`` or ``"unclassified"`` (see module doc).
        max_batch: most frames classified in one call when the worker has fallen behind.
        fused: use the fused one-call inference (default; ensembles of Keras networks only, others
            run through :meth:`Ensemble.predict`) instead of Keras ``predict``
            per member (the naive path, kept for comparison).
        expected_shape: if given, ``(lines, pixels)`` every frame must have; any other
            shape is stored as ``unclassified``.
        nice: nice-value increment (0–19) for the worker and TensorFlow's threads, so the
            acquisition thread wins the CPU when both want it (see
            :mod:`~qcodes_stmtip.monitor.priority`; Linux); ``None`` leaves priorities alone.
        durable: commit the datasaver to the database after every write (see module doc:
            frames and results survive a crash once reported written); ``False`` leaves
            the commits to the DataSaver's ``write_period``.
        partial: the partial-frame model for the checks of watched scans, a
            :class:`~qcodes_stmtip.classify.partial.PartialEnsemble` (same surface and classes);
            ``None``: the bundle's own (:func:`~qcodes_stmtip.classify.partial.load_partial`:
            its ``partial`` section, else its full-frame ensemble on the partial view).
        inference_threads: most OpenMP threads one inference may use (scikit-learn
            members; through ``threadpoolctl``, on the worker thread only); ``None`` leaves
            the default (all cores, which on a busy machine makes OpenMP spin and slows
            every classification many times over).
        partial_rule: when a partial frame decides the state (default:
            :meth:`PartialRule.from_ensemble` of the partial model's ensemble, with its
            ``min_lines``).

    Usage with a ``Measurement`` (the frame is stored against the same index)::

        monitor = TipStateMonitor("bundles/hsi100")
        frame_index = frame_index_parameter()  # qcodes_stmtip.drivers.nanonis_stm
        meas.register_parameter(frame_index)
        meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
        for record in stm.frame_parameters:
            meas.register_parameter(record, setpoints=(frame_index,))
        monitor.register(meas, frame_index)
        with meas.run() as saver:
            for i in range(n):
                image = stm.scan_image()
                saver.add_result((frame_index, i), (stm.scan_image, image),
                                 *((p, p()) for p in stm.frame_parameters))
                monitor.submit(i, image, saver)
            monitor.finish(saver)
    """

    def __init__(
        self,
        bundle: str | Path | Ensemble,
        *,
        surface: str | None = None,
        queue_size: int = 8,
        on_full: str = "block",
        max_batch: int = 4,
        fused: bool = True,
        expected_shape: tuple[int, int] | None = None,
        nice: int | None = 10,
        durable: bool = True,
        partial: PartialEnsemble | None = None,
        partial_rule: PartialRule | None = None,
        inference_threads: int | None = 1,
    ) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        if on_full not in ON_FULL:
            raise ValueError(f"on_full must be one of {ON_FULL}, got {on_full!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if expected_shape is not None:
            expected_shape = tuple(expected_shape)  # type: ignore[assignment]
            if len(expected_shape) != 2 or any(
                    isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1
                    for n in expected_shape):
                raise ValueError(f"expected_shape must be (lines, pixels) of positive integers, "
                                 f"got {expected_shape!r}")
        if nice is not None and (isinstance(nice, bool) or not isinstance(nice, int)
                                 or not 0 <= nice <= 19):
            raise ValueError(f"nice must be an integer in 0…19 or None, got {nice!r}")
        if inference_threads is not None and (isinstance(inference_threads, bool)
                                              or not isinstance(inference_threads, int)
                                              or inference_threads < 1):
            raise ValueError(f"inference_threads must be an integer >= 1 or None, got {inference_threads!r}")
        self.inference_threads = inference_threads
        self.expected_shape = expected_shape
        self.nice = nice
        self.durable = bool(durable)
        self._acquisition_thread = threading.get_native_id()
        self._reniced: list[int] = []
        self.ensemble = self._load(bundle, surface)
        self.classes: tuple[str, ...] = self.ensemble.classes
        self.member_names: tuple[str, ...] = tuple(m.name for m in self.ensemble.members)
        self.on_full = on_full
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.fused = bool(fused)
        self._infer = self._make_inference()
        self.params = ResultParameters(self.classes, self.member_names, self._param_value)
        self.frame_index: Parameter | None = None
        self._callbacks: list[StateCallback] = []
        self._in: queue.Queue[_Job | object] = queue.Queue(maxsize=queue_size)
        self._out: queue.Queue[TipStateResult] = queue.Queue()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._wake = threading.Event()  # set when a frame or a partial frame waits for the worker
        self._partial_slot: _PartialJob | None = None
        self._partial_out: queue.Queue[WindowCheck] = queue.Queue()
        self._sink_saver: tuple[tuple[str, str], Any, Any] | None = None  # worker thread only
        self.partial_model = partial if partial is not None else self._load_partial()
        if tuple(self.partial_model.classes) != self.classes \
                or self.partial_model.surface != self.ensemble.surface:
            raise ValueError(f"the partial model ({self.partial_model.surface}, {self.partial_model.classes}) "
                             f"does not match the bundle ({self.ensemble.surface}, {self.classes})")
        self._init_scan_watch(partial_rule if partial_rule is not None else PartialRule.from_ensemble(
            self.partial_model.ensemble, min_lines=int(self.partial_model.min_lines),
            source=("partial model calibration" if not self.partial_model.fallback else
                    "bundle calibration (full-frame ensemble on the partial view)")
            + ": per-class thresholds, tip-change threshold"))
        self._reset_run()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="TipStateMonitor", daemon=True)
        self._worker.start()

    # ---- set-up ---------------------------------------------------------------------
    @staticmethod
    def _load(bundle: str | Path | Ensemble, surface: str | None) -> Ensemble:
        from qcodes_stmtip.classify.bundle import load_bundle
        from qcodes_stmtip.classify.ensemble import Ensemble

        if isinstance(bundle, Ensemble):
            if surface is not None and bundle.surface != surface:
                raise ValueError(f"bundle is an ensemble for {bundle.surface!r}, not {surface!r}")
            return bundle
        if not isinstance(bundle, str | Path):
            raise TypeError(f"bundle must be a bundle path or an Ensemble, got {type(bundle).__name__}")
        return load_bundle(bundle, surface=surface)

    def _load_partial(self) -> PartialEnsemble:
        """The bundle's partial-frame model (its full-frame ensemble when it has none)."""
        from qcodes_stmtip.classify.partial import PartialEnsemble, load_partial

        path = getattr(self.ensemble, "path", None)
        if path is not None:
            return load_partial(path, self.ensemble.surface, ensemble=self.ensemble)
        return PartialEnsemble(self.ensemble, image_size=self.image_size, fallback=True)

    def _make_inference(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]:
        if self.fused and self.ensemble.all_networks:
            from qcodes_stmtip.classify.inference.fused import FusedEnsemble
            from qcodes_stmtip.monitor import priority

            before = priority.thread_ids()
            fused = FusedEnsemble(self.ensemble)
            fused.warm_up()
            if self.nice is not None:  # threads TensorFlow started for us, and its named pools
                started = priority.thread_ids() - before
                self._reniced += priority.lower_priority(
                    started | priority.tensorflow_thread_ids(), self.nice,
                    keep={self._acquisition_thread})
            self.device, self.inference_path = fused.device, fused.path
            self.image_size = fused.input_shape[0]

            def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
                out = fused(x)
                return out.member_probabilities, out.tip_change_probability
            return run
        self.device, self.inference_path = "CPU", "ensemble-predict (feature members)"
        if any(getattr(m.model, "symmetry_views", True) for m in self.ensemble.networks):
            tf = require("tensorflow", "classify", "a monitor with CNN ensemble members")

            gpus = tf.config.list_physical_devices("GPU")
            self.device = f"GPU:0 ({gpus[0].name})" if gpus else "CPU"
            self.inference_path = "keras-predict-per-member"
        self.image_size = int(self.ensemble.members[0].model.input_shape[1])

        def naive(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            p = self.ensemble.predict(x)
            return p.member_probabilities, p.tip_change_probability
        return naive

    def _reset_run(self) -> None:
        self._stored: set[int] = set()  # written by the worker the moment they came out
        self._pending: set[int] = set()  # submitted, result not yet collected
        self._ready: dict[int, TipStateResult] = {}  # collected, not yet written
        self.results: dict[int, TipStateResult] = {}  # every collected result of this run
        self._written: set[int] = set()
        self._meta_written: set[str] = set()
        self._latest: int | None = None
        if hasattr(self, "partial_rule"):
            self._reset_scans()

    @property
    def written(self) -> tuple[int, ...]:
        """Frame indexes whose results this run has written (durable when ``durable``)."""
        return tuple(sorted(self._written))

    @property
    def parameters(self) -> list[Parameter]:
        """The per-frame result parameters (see :mod:`qcodes_stmtip.monitor.results`)."""
        return self.params.all

    def register(self, meas: Measurement, frame_index: Parameter, *,
                 partial: bool = False) -> list[Parameter]:
        """Register the result parameters with ``meas``, each depending on ``frame_index``.

        ``frame_index`` is registered too if it is not yet. ``partial=True`` also registers
        the parameters of watched scans (:class:`~qcodes_stmtip.monitor.results.PartialParameters`;
        needed to store them with :meth:`watch_scan`). Returns the parameters.
        """
        registered = self.params.register(meas, frame_index)
        self.frame_index = frame_index
        if partial:
            registered += self.register_partial(meas, frame_index)
        return registered

    def on_state(self, callback: StateCallback) -> StateCallback:
        """Call ``callback(frame_index, result)`` for every result (usable as a decorator).

        Callbacks run on the thread that collects results (the one calling ``submit``,
        ``flush``, ``finish`` or ``result``), in arrival order; an exception in a callback
        is logged and does not stop the monitor.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._callbacks.append(callback)
        return callback

    # ---- acquisition-thread API -------------------------------------------------------
    def submit(self, frame_index: int, frame: np.ndarray, datasaver: DataSaver | None = None,
               *, timestamp: float | None = None) -> None:
        """Queue ``frame`` (lines, pixels) for classification as frame ``frame_index``.

        ``timestamp`` is its acquisition time (s since the epoch; default now). With a
        ``datasaver``, results that have arrived are written (non-blocking). The frame is
        copied, so the caller may reuse its buffer. Raises ``ValueError`` for a negative
        or already-submitted index, :class:`MonitorError` when closed.
        """
        if self._closed:
            raise MonitorError("the monitor is closed")
        if isinstance(frame_index, bool) or not isinstance(frame_index, int | np.integer) \
                or frame_index < 0:
            raise ValueError(f"frame_index must be a non-negative integer, got {frame_index!r}")
        index = int(frame_index)
        ts = time.time() if timestamp is None else float(timestamp)
        if not math.isfinite(ts):
            raise ValueError(f"timestamp must be finite seconds since the epoch, got {timestamp!r}")
        with self._lock:
            if index in self._pending or index in self.results:
                raise ValueError(f"frame_index {index} was already submitted in this run")
            self._pending.add(index)
            self._latest = index
        stopped = self._stopped_result(index, ts)
        if stopped is not None:  # stopped early: the decisive partial check is its classification
            if len(stopped.votes) != len(self.member_names):
                from dataclasses import replace

                stopped = replace(stopped, votes=("",) * len(self.member_names))
            self._out.put(stopped)
            if datasaver is not None:
                self.flush(datasaver)
            return
        sink = None
        if datasaver is not None and self.durable and self.frame_index is not None:
            sink = _Sink.of(datasaver)  # the worker writes the result as soon as it exists
        try:
            job = _Job(index, np.array(frame, copy=True), ts, sink)
        except Exception as exc:  # e.g. a ragged list: still store a result
            job = _Job(index, exc, ts, sink)
        if self.on_full == "block":
            self._in.put(job)
            self._wake.set()
        else:
            try:
                self._in.put_nowait(job)
                self._wake.set()
            except queue.Full:
                self._out.put(TipStateResult.unclassified(
                    index, self.classes, len(self.member_names), ts,
                    f"monitor queue full ({self.queue_size} frames waiting)", 0.0))
        if datasaver is not None:
            self.flush(datasaver)

    def flush(self, datasaver: DataSaver | None = None) -> list[TipStateResult]:
        """Collect the results that have arrived (never waits) and write them to ``datasaver``.

        With ``durable``, everything added to ``datasaver`` so far (the caller's frames
        too) is committed to the database before this returns. Returns what was written.
        """
        self._collect(block_for=None, timeout=0.0)
        return self._write(datasaver)

    def finish(self, datasaver: DataSaver | None = None, *, dataset: DataSetProtocol | None = None,
               timeout: float | None = 120.0) -> list[TipStateResult]:
        """Wait for every submitted frame's result, write them all and the run metadata.

        Call inside the ``with meas.run() as datasaver`` block, after the last frame (or
        with ``dataset=`` after ``dond``). Raises :class:`MonitorError` if results are
        still missing after ``timeout`` seconds. Returns this run's results by frame
        index and starts a fresh run (indexes may be reused).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                missing = len(self._pending)
            if not missing:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise MonitorError(f"{missing} frame(s) still unclassified after {timeout} s")
            self._collect(block_for="any", timeout=0.5 if left is None else min(left, 0.5))
        self._collect(block_for=None, timeout=0.0)
        self._write(datasaver)
        target = datasaver.dataset if datasaver is not None else dataset
        if target is not None:
            self.write_metadata(target)
            if self.scans:
                target.add_metadata(WATCH_METADATA_KEY,
                                    json.dumps(self._scan_watch_metadata(), allow_nan=True))
        results = [self.results[i] for i in sorted(self.results)]
        self._reset_run()
        return results

    def result(self, frame_index: int, timeout: float | None = 60.0) -> TipStateResult:
        """Wait for (and return) the result of ``frame_index`` (does not write it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while frame_index not in self.results:
            with self._lock:
                known = frame_index in self._pending
            if not known:
                raise ValueError(f"frame_index {frame_index} was not submitted in this run")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise MonitorError(f"no result for frame {frame_index} after {timeout} s")
            self._collect(block_for="any", timeout=0.5 if left is None else min(left, 0.5))
        return self.results[frame_index]

    def write_metadata(self, dataset: DataSetProtocol) -> None:
        """Store the bundle manifest, inference path and device as run metadata (once per run)."""
        if dataset.guid in self._meta_written:
            return
        dataset.add_metadata(METADATA_KEY, json.dumps(self.metadata(), allow_nan=True))
        self._meta_written.add(dataset.guid)

    def metadata(self) -> dict[str, object]:
        """What :meth:`write_metadata` stores: bundle manifest and how inference ran."""
        from qcodes_stmtip import __version__

        manifest = getattr(self.ensemble, "manifest", None) or {
            "surface": self.ensemble.surface, "classes": list(self.classes),
            "thresholds": dict(zip(self.classes, map(float, self.ensemble.thresholds), strict=True)),
            "members": [{"name": m.name, "architecture": m.architecture}
                        for m in self.ensemble.members],
        }
        path = getattr(self.ensemble, "path", None)
        return {
            "bundle": manifest,
            "bundle_path": str(path) if path is not None else None,
            "model_id": _model_id(manifest),
            "inference_path": self.inference_path,
            "device": self.device,
            "image_size": self.image_size,
            "queue_size": self.queue_size,
            "inference_nice": self.nice,
            "inference_threads": self.inference_threads,
            "on_full": self.on_full,
            "parameters": [p.name for p in self.parameters],
            "partial_rule": self.partial_rule.as_dict(),
            "partial_model": {"fallback": bool(self.partial_model.fallback),
                              "design": self.partial_model.design,
                              "min_lines": int(self.partial_model.min_lines),
                              "image_size": int(self.partial_model.image_size)},
            "package_version": __version__,
        }

    def watch(self, image: ParameterWithSetpoints, frame_index: Parameter,
              name: str | None = None) -> ParameterWithSetpoints:
        """A copy of ``image`` whose ``get()`` also submits the frame (for ``dond``).

        The frame index is ``frame_index()`` at the time of the get. Measure the returned
        parameter and :attr:`parameters` in ``dond``; each of the latter waits for the
        frame's result::

            frames = monitor.watch(stm.scan_image, frame_index)
            ds, *_ = dond(ArraySweep(frame_index, range(n)), frames,
                          *stm.frame_parameters, *monitor.parameters)
            monitor.finish(dataset=ds)
        """
        if not isinstance(image, ParameterWithSetpoints):
            raise TypeError(f"image must be a ParameterWithSetpoints, got {type(image).__name__}")
        self.frame_index = frame_index

        def get() -> np.ndarray:
            frame = image.get()
            self.submit(int(frame_index.get()), frame)
            return frame

        return ParameterWithSetpoints(
            name or image.register_name, label=image.label, unit=image.unit,
            setpoints=image.setpoints, vals=image.vals, get_cmd=get, set_cmd=False)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker thread (pending frames are classified first)."""
        if self._closed:
            return
        self._closed = True
        self._in.put(_STOP)
        self._wake.set()
        self._worker.join(timeout)

    def __enter__(self) -> TipStateMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals --------------------------------------------------------------------
    def _param_value(self, name: str) -> object:
        if self._latest is None:
            raise MonitorError("no frame has been submitted yet; measure the watched image first")
        return self.params.value_of(name, self.result(self._latest))

    def _collect(self, block_for: str | None, timeout: float) -> None:
        got: list[TipStateResult] = []
        if block_for is not None:
            try:
                got.append(self._out.get(timeout=max(timeout, 1e-3)))
            except queue.Empty:
                pass
        while True:
            try:
                got.append(self._out.get_nowait())
            except queue.Empty:
                break
        for r in got:
            with self._lock:
                self._pending.discard(r.frame_index)
                self.results[r.frame_index] = r
                self._ready[r.frame_index] = r
            for cb in self._callbacks:
                try:
                    cb(r.frame_index, r)
                except Exception:
                    log.exception("tip-state callback %r failed on frame %d", cb, r.frame_index)

    def _write(self, datasaver: DataSaver | None) -> list[TipStateResult]:
        if datasaver is None:
            return []
        if self.frame_index is None:
            raise MonitorError("call register(meas, frame_index) before writing to a datasaver")
        self.write_metadata(datasaver.dataset)
        written = []
        for index in sorted(self._ready):
            r = self._ready[index]
            with self._lock:
                stored = index in self._stored  # the worker wrote it when it came out
            if not stored:
                datasaver.add_result((self.frame_index, index), *self.params.values(r))
                self._write_scan_rows(datasaver, index)
            written.append(r)
        if self.durable:  # one commit: these results and the caller's frames so far
            datasaver.flush_data_to_database(block=True)
        self._written.update(self._ready)
        self._ready.clear()
        return written

    def _work(self) -> None:
        if self.nice is not None:
            from qcodes_stmtip.monitor.priority import lower_priority

            self._reniced += lower_priority([threading.get_native_id()], self.nice,
                                            keep={self._acquisition_thread})
        limit = None
        if self.inference_threads is not None:
            from threadpoolctl import ThreadpoolController

            # OpenMP's thread count is per calling thread: this limits the worker alone
            limit = ThreadpoolController().limit(limits=self.inference_threads, user_api="openmp")
        try:
            self._serve()
        finally:
            if limit is not None:
                limit.restore_original_limits()

    def _serve(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:  # until nothing waits: the partial frame first, then a batch of frames
                worked = False
                with self._lock:
                    partial, self._partial_slot = self._partial_slot, None
                if partial is not None:
                    self._partial_out.put(self._check(partial))
                    worked = True
                jobs: list[_Job] = []
                stop = False
                while len(jobs) < self.max_batch:
                    try:
                        nxt = self._in.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    jobs.append(nxt)  # type: ignore[arg-type]
                if jobs:
                    for job, r in zip(jobs, self._classify(jobs), strict=True):
                        if job.sink is not None:
                            self._store(job.sink, r)
                        self._out.put(r)
                    worked = True
                if stop:
                    self._close_sink()
                    return
                if not worked:
                    break

    def _store(self, sink: _Sink, result: TipStateResult) -> None:
        """Write ``result`` (and its scan-watch rows) to the run's database and commit, on the
        worker thread, before anyone hears of it; on failure the acquisition thread writes it."""
        from qcodes.dataset.data_set import DataSet
        from qcodes.dataset.measurements import DataSaver
        from qcodes.dataset.sqlite.database import connect
        from qcodes.dataset.sqlite.queries import get_runid_from_guid

        index = result.frame_index
        try:
            key = (sink.db, sink.guid)
            if self._sink_saver is None or self._sink_saver[0] != key:
                self._close_sink()
                conn = connect(sink.db)
                run_id = get_runid_from_guid(conn, sink.guid)
                # no in-memory cache: the acquisition thread's dataset object owns the run's cache
                dataset = DataSet(run_id=run_id, conn=conn, in_memory_cache=False)
                saver = DataSaver(dataset=dataset, write_period=math.inf,
                                  interdeps=dataset.description.interdeps, registered_parameters=())
                self._sink_saver = (key, conn, saver)
            saver = self._sink_saver[2]
            saver.add_result((self.frame_index, index), *self.params.values(result))
            self._write_scan_rows(saver, index)
            saver.flush_data_to_database(block=True)
        except Exception:
            log.exception("could not write frame %d's result at once; it is written with the "
                          "next submit/flush/finish", index)
            self._close_sink()
            return
        with self._lock:
            self._stored.add(index)

    def _close_sink(self) -> None:
        sink, self._sink_saver = self._sink_saver, None
        if sink is not None:
            try:
                sink[1].close()
            except Exception:  # pragma: no cover - closing a broken connection
                pass

    # ---- watched scans (ScanWatchMixin) ----------------------------------------------------
    def _post_partial_job(self, record: ScanRecord, frame: np.ndarray, lines: int,
                          timestamp: float) -> None:
        if self._closed:
            raise MonitorError("the monitor is closed")
        job = _PartialJob(record, frame, lines, timestamp)
        with self._lock:
            old, self._partial_slot = self._partial_slot, job
        if old is not None:  # not classified yet: stale, replaced by the newer one
            old.record.dropped += 1
        self._wake.set()

    def _collect_partial(self, timeout: float = 0.0) -> list[WindowCheck]:
        got = []
        if timeout > 0:
            try:
                got.append(self._partial_out.get(timeout=timeout))
            except queue.Empty:
                return got
        while True:
            try:
                got.append(self._partial_out.get_nowait())
            except queue.Empty:
                return got

    def _cancel_partial(self, frame_index: int) -> int:
        with self._lock:
            job = self._partial_slot
            if job is not None and job.record.frame_index == frame_index:
                self._partial_slot = None
                return 1
        return 0

    def _partial_infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        model = self.partial_model
        if model.ensemble is self.ensemble and model.image_size == self.image_size:
            return self._infer(x)  # the bundle's own inference path (fused for networks)
        p = model.predict(x)
        return p.member_probabilities, p.tip_change_probability

    def _check(self, job: _PartialJob) -> WindowCheck:
        from qcodes_stmtip.classify.ensemble import UNCERTAIN

        index = job.record.frame_index
        ens = self.partial_model.ensemble
        try:
            x = self.partial_model.view(job.frame, scan_up=job.record.scan_up)[None]
            if not np.all(np.isfinite(x)):
                raise ValueError("preprocessing gave non-finite values")
            probs, tip = self._partial_infer(x)
            if not np.all(np.isfinite(probs)):
                raise ValueError("non-finite class probabilities")
            pred = ens.vote(probs)
            if tip is not None:
                pred.tip_change_probability = np.asarray(tip, dtype=np.float64)
            quality = ens.good_bad(pred)
            p_bad = ens.bad_probability(pred)
            reason = ens.reasons(pred)[0]
            d = int(pred.decision[0])
            firsts = np.argmax(probs, axis=2)
            result = TipStateResult(
                index, UNCERTAIN_STATE if d == UNCERTAIN else self.classes[d], str(quality[0]),
                {c: float(pred.mean[0, k]) for k, c in enumerate(self.classes)},
                tuple(self.classes[int(firsts[m, 0])] for m in range(firsts.shape[0])),
                math.nan if tip is None else float(tip[0]), job.timestamp, reason,
                time.perf_counter() - job.submitted, p_bad=float(p_bad[0]))
        except Exception as exc:
            result = TipStateResult.unclassified(
                index, self.classes, len(ens.members), job.timestamp,
                f"partial frame: {type(exc).__name__}: {exc}", time.perf_counter() - job.submitted)
        return self.partial_rule.check(result, job.lines, time.perf_counter() - job.submitted)

    def _preprocess(self, job: _Job) -> np.ndarray:
        from qcodes_stmtip.classify.preprocess import preprocess_frame

        if isinstance(job.frame, Exception):
            raise ValueError(f"frame is not an array ({job.frame})")
        values = check_frame(job.frame, self.expected_shape)  # the partial frames' checks too
        with np.errstate(over="ignore", invalid="ignore"):
            image = preprocess_frame(values, self.image_size)
        if not np.all(np.isfinite(image)):
            raise ValueError("preprocessing gave non-finite values (float32 overflow); refused")
        return image

    def _classify(self, jobs: Sequence[_Job]) -> list[TipStateResult]:
        from qcodes_stmtip.classify.ensemble import UNCERTAIN

        out: dict[int, TipStateResult] = {}
        images, ok = [], []
        n_members = len(self.member_names)
        for pos, job in enumerate(jobs):
            try:
                images.append(self._preprocess(job))
                ok.append(pos)
            except Exception as exc:
                out[pos] = TipStateResult.unclassified(
                    job.index, self.classes, n_members, job.timestamp,
                    f"preprocessing: {type(exc).__name__}: {exc}",
                    time.perf_counter() - job.submitted)
        if ok:
            try:
                probs, tip = self._infer(np.stack(images)[..., None])
                pred = self.ensemble.vote(probs)
                if tip is not None:
                    pred.tip_change_probability = np.asarray(tip, dtype=np.float64)
                quality = self.ensemble.good_bad(pred)  # the calibrated decision, or the vote rule
                p_bad = self.ensemble.bad_probability(pred)
                reasons = self.ensemble.reasons(pred)
                firsts = np.argmax(probs, axis=2)  # (M, N)
                for n, pos in enumerate(ok):
                    job = jobs[pos]
                    if not np.all(np.isfinite(probs[:, n])):
                        out[pos] = TipStateResult.unclassified(
                            job.index, self.classes, n_members, job.timestamp,
                            "model: non-finite class probabilities",
                            time.perf_counter() - job.submitted)
                        continue
                    d = int(pred.decision[n])
                    out[pos] = TipStateResult(
                        job.index,
                        UNCERTAIN_STATE if d == UNCERTAIN else self.classes[d],
                        str(quality[n]),
                        {c: float(pred.mean[n, k]) for k, c in enumerate(self.classes)},
                        tuple(self.classes[int(firsts[m, n])] for m in range(n_members)),
                        math.nan if tip is None else float(tip[n]),
                        job.timestamp, reasons[n], time.perf_counter() - job.submitted,
                        p_bad=float(p_bad[n]))
            except Exception as exc:
                log.exception("tip-state inference failed")
                for pos in ok:
                    job = jobs[pos]
                    out[pos] = TipStateResult.unclassified(
                        job.index, self.classes, n_members, job.timestamp,
                        f"model: {type(exc).__name__}: {exc}", time.perf_counter() - job.submitted)
        return [out[pos] for pos in range(len(jobs))]


def _model_id(manifest: dict) -> str:
    """A short id of the bundle: surface plus the first 12 hex digits of the member hashes."""
    import hashlib

    h = hashlib.sha256()
    for m in manifest.get("members", []):
        h.update(str(m.get("sha256", m.get("name", ""))).encode())
    return f"{manifest.get('surface', '?')}-{h.hexdigest()[:12]}"


def states_of(dataset: DataSetProtocol) -> dict[int, str]:
    """``frame_index → tip_state`` of a stored run (helper for filtering data by tip state)."""
    data = dataset.get_parameter_data("tip_state")["tip_state"]
    keys = [k for k in data if k != "tip_state"]
    if len(keys) != 1:
        raise ValueError(f"tip_state of run {dataset.run_id} depends on {keys}, expected one index")
    return {int(i): str(s) for i, s in zip(np.ravel(data[keys[0]]), np.ravel(data["tip_state"]),
                                             strict=True)}
