"""TipStateMonitor without TensorFlow: each result maps to its own frame, and what is written is committed.

Fast (scikit-learn feature members fitted in milliseconds), so that the mutation runs
(``make mutants``, tools/mutants.py) can run them for every mutant of the monitor's result
mapping, collection and durable writes.
"""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pytest
from qcodes.dataset import Measurement, initialise_or_create_database_at, load_or_create_experiment
from qcodes.parameters import ManualParameter, Parameter, ParameterWithSetpoints
from qcodes.validators import Arrays

from qcodes_stmtip.classify.ensemble import Ensemble, Member
from qcodes_stmtip.classify.feature_model import FeatureModel
from qcodes_stmtip.classify.features import frame_features
from qcodes_stmtip.classify.preprocess import preprocess_batch
from qcodes_stmtip.monitor import UNCLASSIFIED, MonitorError, TipStateMonitor
from qcodes_stmtip.monitor.results import UNCERTAIN_STATE

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
GOOD = frozenset(CLASSES[:3])
SIZE = 32
SHAPE = (24, 40)


def _frames(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [1e-10 * rng.normal(size=SHAPE).cumsum(axis=1) * rng.uniform(0.2, 5)
            for _ in range(n)]


def _member(name: str, outputs: int, seed: int) -> Member:
    """A logistic-regression feature member fitted on random labels (distinct per seed)."""
    rng = np.random.default_rng(seed)
    x = frame_features(preprocess_batch(_frames(40, seed + 100), SIZE))
    y = np.arange(40) % outputs
    rng.shuffle(y)
    return Member(name, "logreg", FeatureModel.train("logreg", x, y, outputs, SIZE, name=name))


#: Frames of the tests; TEST_FRAMES[1] is refused in preprocessing where a test says so.
TEST_FRAMES = _frames(6, seed=7)


def _ensemble(thresholds=(0.0,) * 4) -> Ensemble:
    members = [_member(f"m{k}", 4, k) for k in range(3)]
    tip = _member("tip", 2, 9)
    # flag about half of the test frames: the threshold is their median tip-change probability
    p = tip.model.predict(preprocess_batch(TEST_FRAMES, SIZE))[:, 1]
    return Ensemble("hsi100", CLASSES, members, thresholds=list(thresholds), tip_change=tip,
                    tip_change_threshold=float(np.median(p)), good_classes=GOOD)


#: Built once at import (fitting takes seconds): mutation runs fork after collection and reuse it.
ENSEMBLE = _ensemble()
UNSURE = _ensemble(thresholds=(0.99,) * 4)


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    return ENSEMBLE


def _hold(mon: TipStateMonitor) -> tuple[threading.Event, threading.Event, list[int]]:
    """Hold the monitor's model on its next call until ``gate`` is set; record batch sizes."""
    started, gate = threading.Event(), threading.Event()
    sizes: list[int] = []
    real = mon._infer

    def held(x):
        sizes.append(len(x))
        started.set()
        assert gate.wait(30)
        return real(x)

    mon._infer = held
    return started, gate, sizes


def _batched(mon: TipStateMonitor, frames: list) -> tuple[list, list[int]]:
    """Frame 0 alone, then frames 1.. as one batch (they queue while the model holds frame 0)."""
    started, gate, sizes = _hold(mon)
    mon.submit(0, frames[0])
    assert started.wait(30)
    for i in range(1, len(frames)):
        mon.submit(i, frames[i])
    gate.set()
    return mon.finish(timeout=60), sizes


def _expect(ens: Ensemble, result, frame: np.ndarray) -> None:
    """``result`` is ``frame``'s own classification (the ensemble on that frame alone)."""
    ref = ens.predict(preprocess_batch([frame], SIZE))
    d = int(ref.decision[0])
    flagged = bool(ref.tip_change_probability[0] >= ens.tip_change_threshold)
    assert result.classified and result.state == (UNCERTAIN_STATE if d < 0 else CLASSES[d])
    np.testing.assert_allclose([result.probabilities[c] for c in CLASSES], ref.mean[0], rtol=1e-9)
    assert result.votes == tuple(CLASSES[k] for k in ref.member_probabilities[:, 0].argmax(axis=1))
    assert result.tip_change_probability == pytest.approx(ref.tip_change_probability[0], rel=1e-9)
    expect = "uncertain" if d < 0 and not flagged else (
        "good" if d >= 0 and CLASSES[d] in GOOD and not flagged else "bad")
    assert result.quality == expect


def test_a_batch_whose_early_frame_fails_preprocessing_maps_each_result_to_its_frame(
        ensemble) -> None:
    frames = list(TEST_FRAMES[:5])
    frames[1] = np.zeros((24, 39))  # wrong shape: refused before the model
    with TipStateMonitor(ensemble, queue_size=8, max_batch=4, expected_shape=SHAPE,
                         nice=None) as mon:
        results, sizes = _batched(mon, frames)
    assert sizes == [1, 3]  # frame 0, then frames 1-4 as one batch without frame 1
    assert [r.frame_index for r in results] == list(range(5))
    assert results[1].state == UNCLASSIFIED and results[1].quality == UNCLASSIFIED
    assert results[1].reason.startswith("preprocessing: ValueError: frame shape (24, 39)")
    assert all(math.isnan(p) for p in results[1].probabilities.values())
    for i in (0, 2, 3, 4):
        _expect(ensemble, results[i], frames[i])
    qualities = {results[i].quality for i in (0, 2, 3, 4)}
    assert "bad" in qualities and len({results[i].state for i in (0, 2, 3, 4)}) > 1  # they differ


def test_the_last_frames_of_a_batch_failing_keep_the_others_in_place(ensemble) -> None:
    frames = list(TEST_FRAMES[:5])
    frames[3] = np.full(SHAPE, np.nan)  # no finite line
    frames[4] = np.zeros((2, 3, 4))  # not 2-D
    with TipStateMonitor(ensemble, queue_size=8, max_batch=4, nice=None) as mon:
        results, sizes = _batched(mon, frames)
    assert sizes == [1, 2]
    for i in (0, 1, 2):
        _expect(ensemble, results[i], frames[i])
    assert "0 finite lines" in results[3].reason and "2-D" in results[4].reason
    assert [r.frame_index for r in results] == list(range(5))


def test_uncertain_frames_and_flagged_tip_changes_in_one_batch(ensemble) -> None:
    """Thresholds above every mean probability: each frame is uncertain, or bad when flagged."""
    ens = UNSURE
    frames = list(TEST_FRAMES)
    with TipStateMonitor(ens, queue_size=8, max_batch=8, nice=None) as mon:
        results, _ = _batched(mon, frames)
    flags = [r.tip_change_probability >= ens.tip_change_threshold for r in results]
    assert any(flags) and not all(flags)
    for r, f, flag in zip(results, frames, flags, strict=True):
        assert r.state == UNCERTAIN_STATE
        assert r.quality == ("bad" if flag else "uncertain")
        _expect(ens, r, f)


def test_non_finite_model_output_is_that_frames_alone(ensemble) -> None:
    frames = list(TEST_FRAMES[:4])
    with TipStateMonitor(ensemble, queue_size=8, max_batch=4, nice=None) as mon:
        started, gate, _ = _hold(mon)
        held = mon._infer

        def poisoned(x):
            probs, tip = held(x)
            if len(x) == 3:  # the batch of frames 1-3: frame 2's row
                probs = probs.copy()
                probs[1, 1, 0] = np.nan
            return probs, tip

        mon._infer = poisoned
        mon.submit(0, frames[0])
        assert started.wait(30)
        for i in (1, 2, 3):
            mon.submit(i, frames[i])
        gate.set()
        results = mon.finish(timeout=60)
    assert results[2].state == UNCLASSIFIED
    assert results[2].reason == "model: non-finite class probabilities"
    for i in (0, 1, 3):
        _expect(ensemble, results[i], frames[i])


def test_a_model_error_marks_only_that_batch_and_keeps_preprocessing_reasons(ensemble) -> None:
    frames = list(TEST_FRAMES[:4])
    frames[2] = np.zeros((24, 39))
    with TipStateMonitor(ensemble, queue_size=8, max_batch=4, expected_shape=SHAPE,
                         nice=None) as mon:
        started, gate, sizes = _hold(mon)
        held = mon._infer

        def broken(x):
            out = held(x)
            if len(x) == 2:
                raise RuntimeError("injected")
            return out

        mon._infer = broken
        mon.submit(0, frames[0])
        assert started.wait(30)
        for i in (1, 2, 3):
            mon.submit(i, frames[i])
        gate.set()
        results = mon.finish(timeout=60)
        mon.submit(0, frames[0])  # a new run: the monitor goes on, indexes start again
        again = mon.finish(timeout=60)
    assert sizes == [1, 2, 1]
    _expect(ensemble, results[0], frames[0])
    for i in (1, 3):
        assert results[i].state == UNCLASSIFIED
        assert results[i].reason == "model: RuntimeError: injected"
    assert results[2].reason.startswith("preprocessing: ValueError")
    assert [r.frame_index for r in again] == [0]
    _expect(ensemble, again[0], frames[0])


def test_results_callbacks_and_errors_of_result_and_finish(ensemble) -> None:
    seen: list[int] = []
    with TipStateMonitor(ensemble, queue_size=8, max_batch=2, nice=None) as mon:
        mon.on_state(lambda i, r: seen.append((i, r.frame_index)))
        for i, f in enumerate(TEST_FRAMES[:3]):
            mon.submit(i, f)
        r1 = mon.result(1, timeout=60)
        assert r1.frame_index == 1 and mon.result(1) is r1
        with pytest.raises(ValueError, match="frame_index 7 was not submitted"):
            mon.result(7)
        results = mon.finish(timeout=60)
        assert [r.frame_index for r in results] == [0, 1, 2] and results[1] is r1
        with pytest.raises(ValueError, match="was not submitted"):
            mon.result(1)  # finish started a fresh run
        started, gate, _ = _hold(mon)
        mon.submit(5, TEST_FRAMES[3])
        assert started.wait(30)
        with pytest.raises(MonitorError, match="1 frame\\(s\\) still unclassified after 0.2 s"):
            mon.finish(timeout=0.2)
        with pytest.raises(MonitorError, match="no result for frame 5 after 0.2 s"):
            mon.result(5, timeout=0.2)
        gate.set()
        assert [r.frame_index for r in mon.finish(timeout=60)] == [5]
    assert sorted(seen) == [(0, 0), (1, 1), (2, 2), (5, 5)] and len(seen) == 4


def _rows(db_file, run_id: int) -> int:
    """Result rows of ``run_id`` committed to the database file (read by a separate connection)."""
    with sqlite3.connect(db_file) as con:
        table = con.execute("SELECT result_table_name FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
        return con.execute(f'SELECT COUNT(*) FROM "{table}" WHERE tip_state IS NOT NULL').fetchone()[0]


@pytest.mark.parametrize("durable", [True, False])
def test_flush_commits_written_results_when_durable(ensemble, tmp_path, durable: bool) -> None:
    db_file = tmp_path / "durable.db"
    initialise_or_create_database_at(db_file)
    exp = load_or_create_experiment("durability", sample_name="synthetic")
    frame_index = ManualParameter("frame_index", initial_value=0)
    ys = Parameter("y", get_cmd=lambda: np.arange(24.0), vals=Arrays(shape=(24,)))
    xs = Parameter("x", get_cmd=lambda: np.arange(40.0), vals=Arrays(shape=(40,)))
    image = ParameterWithSetpoints("image", setpoints=(ys, xs), vals=Arrays(shape=SHAPE),
                                   get_cmd=None, set_cmd=None)
    meas = Measurement(exp=exp, name="durable")
    meas.write_period = 1e6  # only the monitor's own commits reach the file before the run ends
    meas.register_parameter(frame_index)
    meas.register_parameter(image, setpoints=(frame_index,))
    with TipStateMonitor(ensemble, queue_size=8, nice=None, durable=durable) as mon:
        mon.register(meas, frame_index)
        with meas.run() as saver:
            for i, f in enumerate(TEST_FRAMES[:3]):
                saver.add_result((frame_index, i), (image, f))
                mon.submit(i, f)
            for i in range(3):
                mon.result(i, timeout=60)
            written = mon.flush(saver)
            assert [r.frame_index for r in written] == [0, 1, 2]
            assert mon.flush(saver) == []  # each result is written once
            assert _rows(db_file, saver.run_id) == (3 if durable else 0)
            assert mon.written == (0, 1, 2)
            mon.finish(saver)
        assert _rows(db_file, saver.run_id) == 3


def test_one_flush_collects_every_result_that_has_arrived(ensemble) -> None:
    """flush never waits, and takes every result waiting, not just the first."""
    with TipStateMonitor(ensemble, queue_size=8, max_batch=4, nice=None) as mon:
        started, gate, _ = _hold(mon)
        mon.submit(0, TEST_FRAMES[0])
        assert started.wait(30)
        for i in (1, 2, 3):
            mon.submit(i, TEST_FRAMES[i])
        assert mon.flush() == [] and mon.results == {}  # nothing has arrived yet
        gate.set()
        for _ in range(3000):  # until the worker has queued all four results (ordering, no clock)
            if mon._out.qsize() == 4:
                break
            threading.Event().wait(0.01)
        assert mon._out.qsize() == 4
        mon.flush()
        assert sorted(mon.results) == [0, 1, 2, 3]
        assert [r.frame_index for r in mon.finish(timeout=60)] == [0, 1, 2, 3]
