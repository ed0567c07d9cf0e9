"""Tip-state monitor: classify every frame of a QCoDeS measurement and store the result with it.

:class:`TipStateMonitor` (worker thread + bounded queue, writes on the acquisition
thread), :class:`TipStateResult` (one frame's classification); watching a scan in progress
and stopping it early: :meth:`TipStateMonitor.watch_scan` → :class:`ScanWatcher`
(:mod:`qcodes_stmtip.monitor.scanwatch`). The fused one-call
ensemble it runs lives in :mod:`qcodes_stmtip.classify.inference`. Importing this package
does not import TensorFlow.
"""

from qcodes_stmtip.monitor.monitor import METADATA_KEY, MonitorError, TipStateMonitor, states_of
from qcodes_stmtip.monitor.results import (
    UNCERTAIN_STATE,
    UNCLASSIFIED,
    ScanRecord,
    TipStateResult,
    WindowCheck,
)
from qcodes_stmtip.monitor.scanwatch import PartialRule, ScanWatcher

__all__ = ["METADATA_KEY", "MonitorError", "PartialRule", "ScanRecord", "ScanWatcher", "TipStateMonitor",
           "TipStateResult", "UNCERTAIN_STATE", "UNCLASSIFIED", "WindowCheck", "states_of"]
