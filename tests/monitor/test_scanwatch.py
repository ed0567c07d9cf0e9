"""Watching scans in progress: partial checks, early stop, what is stored, never blocking (issue 14).

The monitor runs the shipped hsi100 bundle (feature members, no TensorFlow); where a test
needs a classifier that is right about simulated partial frames, the partial inference
is replaced by one that reads the simulator's ground truth (``TruthInference``), so the
tests check the watching, stopping and storing, not the model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from qcodes.dataset import (
    ArraySweep,
    Measurement,
    dond,
    initialise_or_create_database_at,
    load_by_run_spec,
    load_or_create_experiment,
)
from qcodes.instrument import Instrument

from qcodes_stmtip.classify.bundle import default_bundle_path
from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM, frame_index_parameter
from qcodes_stmtip.monitor import TipStateMonitor
from qcodes_stmtip.monitor.results import ScanRecord, TipStateResult, WindowCheck
from qcodes_stmtip.monitor.scanwatch import (
    WATCH_METADATA_KEY,
    PartialRule,
    ScanWatcher,
    acquired_lines,
)
from qcodes_stmtip.sim.controller import serve_simulator

HSI = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")


class TruthInference:
    """Partial inference from the simulator's truth (the lines acquired when called):
    ``individual_atoms`` or ``generic_defect`` by the frame's starting apex, P(tip change)
    0.9 once a change line has been acquired; optionally slow."""

    def __init__(self, microscope, members: int, delay_s: float = 0.0) -> None:
        self.microscope, self.members, self.delay_s = microscope, members, delay_s
        self.calls = 0
        self.busy = 0
        self.most_busy = 0

    def __call__(self, x: np.ndarray):
        self.calls += 1
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            time.sleep(self.delay_s)
            truth = self.microscope.ground_truth()
            n = truth.lines_acquired or 0
            good = truth.frame_start_label != "generic_defect"
            p = np.full(4, 0.02)
            p[HSI.index("individual_atoms" if good else "generic_defect")] = 0.94
            changed = any(line < n for line in truth.tip_change_lines or ())
            probs = np.repeat(p[None, None, :], self.members, axis=0)
            return probs, np.array([0.9 if changed else 0.01])
        finally:
            self.busy -= 1


@pytest.fixture
def db(tmp_path):
    initialise_or_create_database_at(tmp_path / "watch.db")
    return load_or_create_experiment("scan_watch", sample_name="simulated")


@pytest.fixture
def rig() -> Iterator:
    server = serve_simulator("hsi100", seed=5, time_acceleration=20.0, initial_tip="individual_atoms")
    model = server.microscope.dynamics.model
    model.spontaneous_mean_s = (1e12,) * len(model.spontaneous_mean_s)
    stm = NanonisSTM("stm_watch", port=server.port)
    stm.pixels(32)
    stm.lines(32)
    stm.set_frame(0.0, 0.0, 6e-9, 6e-9, 0.0)
    try:
        yield server, stm
    finally:
        stm.close()
        Instrument.close_all()
        server.stop()


@pytest.fixture(scope="module")
def shared_monitor() -> Iterator[TipStateMonitor]:
    with TipStateMonitor(default_bundle_path("hsi100"), surface="hsi100", nice=None) as mon:
        mon.submit(0, np.random.default_rng(0).normal(size=(32, 32)))  # warm up (first calls are slow)
        mon.finish()
        yield mon


@pytest.fixture
def monitor(shared_monitor) -> Iterator[TipStateMonitor]:
    """The module's monitor (loading the bundle takes seconds), its partial inference restored."""
    yield shared_monitor
    shared_monitor.__dict__.pop("_partial_infer", None)
    shared_monitor.finish()


def _result(state: str, p: dict[str, float], tip: float = math.nan) -> TipStateResult:
    probs = {c: p.get(c, 0.0) for c in HSI}
    return TipStateResult(0, state, "", probs, (state,), tip, 0.0)


def test_the_rule_comes_from_the_bundle_calibration(monitor) -> None:
    rule = monitor.partial_rule
    partial = monitor.partial_model.ensemble  # the bundle's partial section (or its full-frame fallback)
    assert rule.tip_change_threshold == pytest.approx(partial.tip_change_threshold)
    assert rule.bad_classes == {"generic_defect"} and "rows" in rule.good_classes
    assert rule.min_lines == monitor.partial_model.min_lines == 8 and "calibration" in rule.source
    bad = _result("generic_defect", {"generic_defect": 0.7, "rows": 0.3})
    assert rule.verdict(bad, 16) == "bad" and rule.verdict(bad, 7) == "open"
    assert rule.p_good(bad) == pytest.approx(0.3)
    changed = _result("rows", {"rows": 0.9}, tip=rule.tip_change_threshold)
    assert rule.verdict(changed, 8) == "tip_change"
    assert rule.verdict(_result("uncertain", {"rows": 0.5}), 32) == "open"  # below its threshold
    assert rule.verdict(_result("rows", {"rows": 0.9}, tip=0.0), 32) == "good"
    strict = PartialRule.from_ensemble(partial, min_p_bad=0.8)
    assert strict.verdict(bad, 16) == "open"
    metal = PartialRule.for_surface("au111")
    assert metal.bad_classes == {"double_tip", "corruption"}  # not the content classes
    tip_class = TipStateResult(0, "tip_change", "", {"tip_change": 1.0}, ("tip_change",), math.nan, 0.0)
    assert metal.verdict(tip_class, 8) == "tip_change"
    with pytest.raises(ValueError, match="min_lines"):
        PartialRule.for_surface("hsi100", min_lines=0)


def test_checks_fill_a_grid_of_slots() -> None:
    rule = PartialRule.for_surface("hsi100")
    record = ScanRecord(3, 32, every_lines=4)
    for n in (8, 13, 21):
        record.checks.append(rule.check(_result("rows", {"rows": 1.0}, 0.0), n))
    slots = record.slots()
    assert len(slots) == 7  # checks can be taken at 4, 8, …, 28 lines
    assert [None if c is None else c.lines for c in slots] == [None, 8, 13, None, 21, None, None]
    assert record.decided is None and record.decided_line == 0 and record.verdict == ""
    record.checks.append(rule.check(_result("generic_defect", {"generic_defect": 1.0}, 0.0), 24))
    assert record.decided.lines == 24 and record.decided_line == 24 and record.verdict == "bad"
    assert isinstance(record.decided, WindowCheck) and record.decided.decisive
    assert acquired_lines(np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 4.0]])) == 2


def test_posting_never_waits_and_stale_partial_frames_are_dropped(monitor, rig) -> None:
    server, _ = rig
    slow = TruthInference(server.microscope, len(monitor.member_names), delay_s=0.3)
    monitor._partial_infer = slow
    record = ScanRecord(0, 64, every_lines=1, scan_up=True)
    monitor.begin_scan(record)
    frame = np.random.default_rng(0).normal(size=(64, 64))
    longest = 0.0
    for n in range(8, 48):  # far faster than the classifier: 40 posts in ~0.1 s
        frame_n = frame.copy()
        frame_n[n:] = np.nan
        t = time.perf_counter()
        monitor.post_partial(record, frame_n, n)
        longest = max(longest, time.perf_counter() - t)
        monitor.partial_checks()
        time.sleep(0.002)
    assert longest < 0.05  # a copy and a slot swap, never a wait for the worker
    time.sleep(0.7)
    monitor.end_scan(record)
    # one partial frame at a time in the worker, one waiting: the rest replaced as stale
    assert slow.most_busy == 1 and len(record.checks) <= 3
    assert record.posted == 40 and record.dropped + len(record.checks) + monitor.late_checks == 40
    assert record.dropped >= 36


def test_a_watched_scan_stops_on_a_mid_scan_tip_change_and_stores_everything(monitor, rig, db) -> None:
    server, stm = rig
    monitor._partial_infer = TruthInference(server.microscope, len(monitor.member_names))
    frame_index = frame_index_parameter()
    meas = Measurement(exp=db)
    meas.register_parameter(frame_index)
    meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
    for record in stm.frame_parameters:
        meas.register_parameter(record, setpoints=(frame_index,))
    monitor.register(meas, frame_index, partial=True)
    seen: list[WindowCheck] = []
    with meas.run() as saver:
        watcher = monitor.watch_scan(stm, saver, every_lines=4, abort=True, on_check=seen.append)
        watcher.scan(0)  # a clean frame: checked, never stopped
        monitor.result(0)  # one worker: frame 0's whole-frame classification is not interrupted
        server.microscope.schedule_tip_change(12, "generic_defect")
        image = watcher.scan(1)
        monitor.finish(saver)
        run_id = saver.run_id
    clean, changed = watcher.records
    assert not clean.stopped and clean.lines_acquired == 32 and clean.verdict == ""
    assert clean.checks and all(c.verdict == "good" for c in clean.checks)
    assert changed.stopped and changed.verdict == "tip_change"
    # flagged within a few windows of the change (the fake reads the truth when it runs,
    # a line or two after the partial frame was read: it may flag the check at line 12)
    assert 12 <= changed.decided_line <= 24
    n = changed.lines_acquired
    assert changed.decided_line <= n < 32 and acquired_lines(image) == n
    assert server.microscope.ground_truth().tip_change_lines == (12,)
    assert not server.microscope.scan_running()
    assert {c.frame_index for c in seen} == {0, 1}

    ds = load_by_run_spec(captured_run_id=run_id)
    xds = ds.to_xarray_dataset()
    stored = xds[f"{stm.name}_scan_image"].values
    assert np.isfinite(stored[0]).all()
    finite = np.all(np.isfinite(stored[1]), axis=1)
    assert finite.sum() == n and not finite[n:].any()  # the partial frame, NaN lines kept
    assert list(xds["tip_scan_stopped"].values) == [0.0, 1.0]
    assert list(xds["tip_partial_verdict"].values) == ["", "tip_change"]
    assert xds["tip_decided_line"].values[1] == changed.decided_line
    assert list(xds["tip_lines_acquired"].values) == [32.0, float(n)]
    assert xds["tip_change_probability"].values[1] == pytest.approx(0.9)  # the decisive check's
    lines = xds["tip_window_lines"].values  # (frame, slot): the series on a grid
    assert lines.shape == (2, 7)
    assert np.nanmax(lines[1]) == changed.decided_line and np.isnan(lines[1, -1])
    verdicts = xds["tip_window_verdict"].values
    assert verdicts[1, int(changed.decided_line) // 4 - 1] == "tip_change"
    p_good = xds["tip_window_p_good"].values
    assert np.nanmin(p_good[0]) == pytest.approx(0.94 + 0.02 + 0.02)
    meta = json.loads(ds.metadata[WATCH_METADATA_KEY])
    assert meta["stopped"] == 1 and meta["watch"] == {"every_lines": 4, "abort": True}
    assert meta["series"] == {}  # rows written: no copy in the metadata
    ds.export("netcdf", path=str(db.path_to_db).rsplit("/", 1)[0])


def test_watching_does_not_slow_acquisition_even_with_a_slow_classifier(monitor, rig) -> None:
    server, stm = rig
    slow = TruthInference(server.microscope, len(monitor.member_names), delay_s=0.25)
    monitor._partial_infer = slow
    stm.scan_image()  # warm up (render caches)
    t = time.perf_counter()
    stm.scan_image()
    plain = time.perf_counter() - t
    watcher = ScanWatcher(monitor, stm, every_lines=2, abort=False)
    t = time.perf_counter()
    image = watcher.scan(0)
    watched = time.perf_counter() - t
    record = watcher.last
    assert np.isfinite(image).all() and not record.stopped
    assert record.posted >= 4 and record.dropped >= 1 and slow.most_busy == 1
    # a 32-line frame takes 0.32 s: reading the frame every 2 lines costs a few ms at most
    assert watched < plain + 0.1, (plain, watched)


def test_dond_measures_watched_scans_and_keeps_the_series_in_the_metadata(monitor, rig, db) -> None:
    server, stm = rig
    monitor._partial_infer = TruthInference(server.microscope, len(monitor.member_names))
    frame_index = frame_index_parameter()
    watcher = monitor.watch_scan(stm, every_lines=4, abort=True)
    frames = watcher.parameter(frame_index)
    server.microscope.schedule_tip_change(10, "generic_defect")
    ds, *_ = dond(ArraySweep(frame_index, [0, 1]), frames, *monitor.parameters, *watcher.parameters,
                  exp=db, do_plot=False)
    monitor.finish(dataset=ds)
    xds = ds.to_xarray_dataset()
    # frame 0: the change at line 10 flagged; frame 1 starts with the bad apex: confidently bad
    assert list(xds["tip_scan_stopped"].values) == [1.0, 1.0]
    assert list(xds["tip_partial_verdict"].values) == ["tip_change", "bad"]
    assert xds["tip_state"].values[1] == "generic_defect"
    meta = json.loads(ds.metadata[WATCH_METADATA_KEY])
    series = meta["series"]  # dond: the per-check series live in the metadata
    assert set(series) == {"0", "1"} and series["0"]["stopped"] and series["0"]["verdict"][-1] == "tip_change"
    assert len(series["1"]["lines"]) == 1 and 8 <= series["1"]["lines"][0] <= series["1"]["lines_acquired"] < 32


@pytest.mark.parametrize(("frame", "lines", "match"), [
    (np.ones((64, 64)), -5, r"lines must be in 1\.\.64"),
    (np.ones((64, 64)), 0, r"lines must be in 1\.\.64"),
    (np.ones((64, 64)), 640, r"lines must be in 1\.\.64 .*got 640"),
    (np.ones((64, 64)), 2**62, r"lines must be in 1\.\.64"),
    (np.ones((64, 64)), True, "lines must be an integer"),
    (np.ones((64, 64)), 8.0, "lines must be an integer"),
    (np.ones((64, 64)) * (1 + 1j), 16, "frame is complex"),
    (np.full((64, 64), None, dtype=object), 16, "non-numeric dtype object"),
    (np.ones(64), 16, "must be 2-D"),
    ([[1.0, 2.0], [3.0]], 1, "not an array of numbers"),
])
def test_partial_frames_are_checked_like_whole_frames(monitor, frame, lines, match) -> None:
    """Issue 26 class 4: before, these were recorded (lines), cast to real (complex) or raised a
    bare TypeError (object); now ValueError, and nothing is posted."""
    record = ScanRecord(0, 64, every_lines=16)
    monitor.begin_scan(record)
    with pytest.raises(ValueError, match=match):
        monitor.post_partial(record, frame, lines)
    assert record.posted == 0 and monitor.partial_checks(timeout=0.2) == []
    monitor.post_partial(record, np.ones((64, 64)), 16)  # a good one still goes through
    assert record.posted == 1
    for _ in range(100):  # its check arrives (and not in the next test)
        if monitor.partial_checks(timeout=0.1):
            break
    monitor.end_scan(record)
