"""What a measurement loop needs from a tip-state classifier: the :class:`TipClassifier` protocol.

:class:`~qcodes_stmtip.monitor.TipStateMonitor` (the ensemble, classifying off the
acquisition thread) satisfies it, and so does the simulator's ground truth posing as a
classifier (:class:`~qcodes_stmtip.conditioning.oracle.GroundTruthClassifier`, tests and
benchmarks only). :class:`~qcodes_stmtip.conditioning.experiment.ConditioningExperiment`
takes any object that does. The protocol is ``runtime_checkable``: ``isinstance(obj,
TipClassifier)`` checks that every member below is present (not their signatures).

A classifier stores one :class:`~qcodes_stmtip.monitor.results.TipStateResult` per
frame in the QCoDeS dataset through its own result parameters
(:class:`~qcodes_stmtip.monitor.results.ResultParameters`, registered against the
frame-index parameter), and describes itself in the run metadata under
:data:`qcodes_stmtip.taxonomy.METADATA_KEY`. Importing this module imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from qcodes.dataset import DataSaver, Measurement
    from qcodes.parameters import Parameter

    from qcodes_stmtip.monitor.results import TipStateResult

__all__ = ["TipClassifier"]


@runtime_checkable
class TipClassifier(Protocol):
    """A tip-state classifier a conditioning loop can drive (see module doc).

    One run at a time: ``register`` once per ``Measurement``, then per frame ``submit``
    and ``result`` (and ``flush`` to write what has arrived), ``finish`` at the end of the
    run (it starts a fresh one), ``close`` when done with the classifier.
    """

    @property
    def classes(self) -> tuple[str, ...]:
        """The tip-state classes, in the order of the probabilities."""
        ...

    @property
    def parameters(self) -> list[Parameter]:
        """The per-frame result parameters it writes (``tip_state``, ``tip_p_<class>``, …)."""
        ...

    def register(self, meas: Measurement, frame_index: Parameter) -> list[Parameter]:
        """Register the result parameters with ``meas``, each depending on ``frame_index``."""
        ...

    def submit(self, frame_index: int, frame: np.ndarray, datasaver: DataSaver | None = None, *,
               timestamp: float | None = None) -> None:
        """Classify ``frame`` (lines, pixels) as frame ``frame_index`` of this run; with a
        ``datasaver``, write the results that have arrived."""
        ...

    def result(self, frame_index: int, timeout: float | None = ...) -> TipStateResult:
        """The result of a submitted frame (waiting for it at most ``timeout`` s)."""
        ...

    def flush(self, datasaver: DataSaver | None = None) -> list[TipStateResult]:
        """Write the results that have arrived and not been written; return them."""
        ...

    def finish(self, datasaver: DataSaver | None = None) -> list[TipStateResult]:
        """Wait for every submitted frame, write every result and the run metadata; return
        this run's results by frame index and start a fresh run."""
        ...

    def metadata(self) -> dict[str, object]:
        """What it stores as run metadata: which model (bundle, ``model_id``) and how it ran
        (``inference_path``)."""
        ...

    def close(self) -> None:
        """Stop its workers, if any (pending frames are classified first)."""
        ...
