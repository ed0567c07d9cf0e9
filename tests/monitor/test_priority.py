"""Inference threads yield the CPU to acquisition: per-thread nice values (Linux)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from qcodes_stmtip.monitor import priority

pytestmark = pytest.mark.skipif(not priority.supported(),
                                reason="per-thread priorities need Linux (/proc/self/task)")


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def _parked_thread():
    release = threading.Event()
    t = threading.Thread(target=release.wait, daemon=True)
    t.start()
    return t, release


def test_lower_priority_changes_only_the_given_threads():
    base = _nice(0)
    a, release_a = _parked_thread()
    b, release_b = _parked_thread()
    try:
        assert a.native_id in priority.thread_ids()
        changed = priority.lower_priority([a.native_id, b.native_id], 3, keep={b.native_id})
        assert changed == [a.native_id]
        assert _nice(a.native_id) == min(19, base + 3)
        assert _nice(b.native_id) == base and _nice(threading.get_native_id()) == base
        # never lowered back, and a second call changes nothing
        assert priority.lower_priority([a.native_id], 1) == []
        assert _nice(a.native_id) == min(19, base + 3)
    finally:
        release_a.set()
        release_b.set()
    with pytest.raises(ValueError, match="increment"):
        priority.lower_priority([a.native_id], 20)


def test_monitor_lowers_its_worker_and_tensorflow_threads(tiny_bundle):
    from qcodes_stmtip.monitor import TipStateMonitor

    base = _nice(0)
    monitor = TipStateMonitor(tiny_bundle, expected_shape=(32, 32))
    try:
        monitor.submit(0, np.random.default_rng(0).normal(size=(32, 32)))
        monitor.finish()
        assert _nice(monitor._worker.native_id) == min(19, base + 10)
        tf_threads = priority.tensorflow_thread_ids()
        assert tf_threads, "TensorFlow named no tf_* threads"
        assert all(_nice(t) >= min(19, base + 10) for t in tf_threads)
        assert _nice(threading.get_native_id()) == base  # the acquisition thread keeps its priority
        assert monitor.metadata()["inference_nice"] == 10
    finally:
        monitor.close()
    plain = TipStateMonitor(tiny_bundle, nice=None)
    try:
        plain.submit(0, np.random.default_rng(1).normal(size=(32, 32)))
        plain.finish()
        assert _nice(plain._worker.native_id) == base
        assert plain.metadata()["inference_nice"] is None
    finally:
        plain.close()
    with pytest.raises(ValueError, match="nice"):
        TipStateMonitor(tiny_bundle, nice=25)
