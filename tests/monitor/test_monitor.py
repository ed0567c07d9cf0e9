"""TipStateMonitor: dataset storage and round trips, queue policies, failure isolation, callbacks."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

pytest.importorskip("keras")
from qcodes.dataset import (  # noqa: E402
    Measurement,
    initialise_or_create_database_at,
    load_by_run_spec,
    load_from_netcdf,
    load_or_create_experiment,
)
from qcodes.parameters import ManualParameter, Parameter, ParameterWithSetpoints  # noqa: E402
from qcodes.validators import Arrays  # noqa: E402

from qcodes_stmtip.classify.bundle import load_bundle  # noqa: E402
from qcodes_stmtip.classify.preprocess import preprocess_batch  # noqa: E402
from qcodes_stmtip.monitor import (  # noqa: E402
    METADATA_KEY,
    UNCLASSIFIED,
    MonitorError,
    TipStateMonitor,
    states_of,
)

CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")


@pytest.fixture
def db(tmp_path):
    initialise_or_create_database_at(tmp_path / "monitor.db")
    return load_or_create_experiment("monitor_test", sample_name="synthetic")


@pytest.fixture(scope="module")
def monitor(tiny_bundle):
    with TipStateMonitor(tiny_bundle, queue_size=4) as mon:
        yield mon


def _frames(n: int, shape=(24, 40), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [1e-10 * rng.normal(size=shape).cumsum(axis=1) for _ in range(n)]


def _reference(bundle, frames):
    """Ensemble prediction of the frames through the plain Keras path."""
    ens = load_bundle(bundle)
    return ens, ens.predict(preprocess_batch(frames, 32))


def test_measurement_stores_states_and_round_trips_xarray_and_netcdf(tiny_bundle, monitor, db, tmp_path):
    frames = _frames(5)
    bad = frames[2].copy()
    bad[3:] = np.nan  # only 3 finite lines: cannot be classified
    frames[2] = bad
    frame_index = ManualParameter("frame_index", initial_value=0)
    ys = Parameter("y", get_cmd=lambda: np.arange(24.0), vals=Arrays(shape=(24,)), unit="m")
    xs = Parameter("x", get_cmd=lambda: np.arange(40.0), vals=Arrays(shape=(40,)), unit="m")
    image = ParameterWithSetpoints("image", setpoints=(ys, xs), vals=Arrays(shape=(24, 40)),
                                   get_cmd=None, set_cmd=None)
    meas = Measurement(exp=db, name="monitor")
    meas.register_parameter(frame_index)
    meas.register_parameter(image, setpoints=(frame_index,))
    monitor.register(meas, frame_index)
    stamps = [1.7e9 + 10.0 * i for i in range(5)]
    with meas.run() as saver:
        for i, f in enumerate(frames):
            saver.add_result((frame_index, i), (image, f))
            monitor.submit(i, f, saver, timestamp=stamps[i])
        results = monitor.finish(saver)
    assert [r.frame_index for r in results] == list(range(5))

    ens, ref = _reference(tiny_bundle, [f for i, f in enumerate(frames) if i != 2])
    good = [r for r in results if r.frame_index != 2]
    for n, r in enumerate(good):
        assert r.state == CLASSES[int(ref.decision[n])]  # thresholds 0: never uncertain
        np.testing.assert_allclose([r.probabilities[c] for c in CLASSES], ref.mean[n], atol=1e-5)
        assert r.votes == tuple(CLASSES[k] for k in ref.member_probabilities[:, n].argmax(axis=1))
        assert r.tip_change_probability == pytest.approx(ref.tip_change_probability[n], abs=1e-5)
        expect_good = r.state in ("dimers_asymmetries", "individual_atoms", "rows") \
            and r.tip_change_probability < 0.5
        assert r.quality == ("good" if expect_good else "bad")
        assert (r.reason == "") == expect_good, r.reason  # every verdict but good says why
        assert ("tip change flagged" in r.reason) == (r.tip_change_probability >= 0.5)
    assert results[2].state == UNCLASSIFIED and results[2].quality == UNCLASSIFIED
    assert "FrameTooShortError" in results[2].reason and "3 finite lines" in results[2].reason
    assert all(math.isnan(v) for v in results[2].probabilities.values())

    ds = load_by_run_spec(captured_run_id=saver.run_id)
    assert states_of(ds) == {r.frame_index: r.state for r in results}
    meta = json.loads(ds.metadata[METADATA_KEY])
    assert meta["bundle"]["classes"] == list(CLASSES)
    assert meta["bundle"]["thresholds"] == dict.fromkeys(CLASSES, 0.0)
    assert meta["bundle"]["package_version"] and meta["model_id"].startswith("hsi100-")
    assert meta["inference_path"] == "tensorflow-fused-tf.function" and meta["device"] == "CPU"

    xr = ds.to_xarray_dataset()
    assert list(xr["tip_state"].values) == [r.state for r in results]
    assert list(xr["tip_vote_1"].values) == [r.votes[1] for r in results]
    np.testing.assert_allclose(xr["frame_timestamp"].values, stamps)
    np.testing.assert_allclose(xr["tip_p_rows"].values, [r.probabilities["rows"] for r in results])
    assert xr["tip_reason"].values[2] == results[2].reason
    assert xr["tip_vote_0"].attrs["long_name"] == "Vote of sq_a"
    assert xr["image"].dims == ("frame_index", "y", "x") and xr["image"].shape == (5, 24, 40)
    np.testing.assert_array_equal(xr["image"].values[4], frames[4])
    assert json.loads(xr.attrs[METADATA_KEY]) == meta

    ds.export("netcdf", path=str(tmp_path))
    back = load_from_netcdf(ds.export_info.export_paths["nc"])
    bx = back.to_xarray_dataset()
    assert list(bx["tip_state"].values) == list(xr["tip_state"].values)
    np.testing.assert_allclose(bx["tip_change_probability"].values,
                               xr["tip_change_probability"].values, equal_nan=True)
    assert json.loads(back.metadata[METADATA_KEY]) == meta


def _slow(monitor, seconds: float, fail_first: bool = False):
    """Make the monitor's inference slower (and optionally make its first call raise)."""
    real = monitor._infer
    calls = {"n": 0}

    def slow(x):
        calls["n"] += 1
        time.sleep(seconds)
        if fail_first and calls["n"] == 1:
            raise RuntimeError("injected model failure")
        return real(x)

    monitor._infer = slow
    return calls


def test_full_queue_unclassified_policy_never_blocks_and_loses_nothing(tiny_bundle) -> None:
    started, gate = threading.Event(), threading.Event()
    with TipStateMonitor(tiny_bundle, queue_size=1, on_full="unclassified", max_batch=1) as mon:
        real = mon._infer

        def held(x):
            started.set()
            gate.wait(10)
            return real(x)

        mon._infer = held
        frames = _frames(6)
        mon.submit(0, frames[0])
        assert started.wait(10)  # the worker holds frame 0
        submitter = threading.Thread(
            target=lambda: [mon.submit(i, frames[i]) for i in range(1, 6)])  # 1 fills, 2..5 overflow
        submitter.start()
        submitter.join(30)
        # ordering, not a clock: every submit returned while the model was still held
        assert not submitter.is_alive() and not gate.is_set()
        gate.set()
        results = mon.finish(timeout=30)
    assert [r.frame_index for r in results] == list(range(6))
    full = [r.frame_index for r in results if r.reason == "monitor queue full (1 frames waiting)"]
    assert full == [2, 3, 4, 5]
    assert all(results[i].state == UNCLASSIFIED for i in full)
    assert results[0].classified and results[1].classified


def test_a_batch_whose_early_frame_fails_preprocessing_maps_each_result_to_its_frame(
        tiny_bundle) -> None:
    """Frames 1–4 wait while the model holds frame 0, so they are classified as one batch.

    Frame 1 fails preprocessing: the batch the model sees has 3 rows for 4 slots, and each
    result must still be that frame's own (as when classified alone), never a neighbour's.
    """
    started, gate = threading.Event(), threading.Event()
    frames = _frames(5, seed=7)
    frames[1] = np.zeros((24, 39))  # wrong shape: refused in preprocessing
    sizes: list[int] = []
    with TipStateMonitor(tiny_bundle, queue_size=8, max_batch=4,
                         expected_shape=(24, 40)) as mon:
        real = mon._infer

        def held(x):
            sizes.append(len(x))
            started.set()
            gate.wait(30)
            return real(x)

        mon._infer = held
        mon.submit(0, frames[0])
        assert started.wait(30)  # the worker holds frame 0; 1..4 queue behind it
        for i in range(1, 5):
            mon.submit(i, frames[i])
        gate.set()
        results = mon.finish(timeout=60)
    assert sizes == [1, 3]  # frame 0 alone, then frames 1-4 in one batch without frame 1
    assert [r.frame_index for r in results] == list(range(5))
    assert results[1].state == UNCLASSIFIED and "expected (24, 40)" in results[1].reason
    good = [0, 2, 3, 4]
    ens, ref = _reference(tiny_bundle, [frames[i] for i in good])
    assert len({round(float(t), 6) for t in ref.tip_change_probability}) == 4  # frames differ
    for n, i in enumerate(good):
        r = results[i]
        assert r.classified and (r.reason == "") == (r.quality == "good"), r.reason
        assert r.state == CLASSES[int(ref.decision[n])]
        np.testing.assert_allclose([r.probabilities[c] for c in CLASSES], ref.mean[n], atol=1e-5)
        assert r.votes == tuple(CLASSES[k] for k in ref.member_probabilities[:, n].argmax(axis=1))
        assert r.tip_change_probability == pytest.approx(ref.tip_change_probability[n], abs=1e-5)
        flagged = ref.tip_change_probability[n] >= ens.tip_change_threshold
        expect_good = r.state in ("dimers_asymmetries", "individual_atoms", "rows") and not flagged
        assert r.quality == ("good" if expect_good else "bad")


def test_full_queue_block_policy_applies_back_pressure(tiny_bundle) -> None:
    with TipStateMonitor(tiny_bundle, queue_size=1, on_full="block", max_batch=1) as mon:
        _slow(mon, 0.2)
        t0 = time.perf_counter()
        for i, f in enumerate(_frames(4)):
            mon.submit(i, f)
        assert time.perf_counter() - t0 > 0.15  # submit waited for a free slot
        results = mon.finish(timeout=30)
    assert len(results) == 4 and all(r.classified for r in results)


def test_model_error_and_bad_frames_are_unclassified_and_monitor_goes_on(tiny_bundle) -> None:
    seen: list[tuple[int, str]] = []
    with TipStateMonitor(tiny_bundle, max_batch=1, expected_shape=(24, 40)) as mon:
        calls = _slow(mon, 0.0, fail_first=True)

        @mon.on_state
        def record(index, result):
            seen.append((index, result.state))
            if index == 1:
                raise RuntimeError("a broken callback must not stop the monitor")

        frames = _frames(3)
        mon.submit(0, frames[0])
        mon.result(0)  # the failing model call is this frame's alone
        mon.submit(1, frames[1])
        mon.submit(2, np.zeros((24, 39)))  # wrong shape
        mon.submit(3, np.full((24, 40), np.nan))  # all NaN
        mon.submit(4, [[1.0, 2.0], [3.0]])  # ragged: not an array
        mon.submit(5, np.zeros((2, 3, 4)))  # not 2-D
        mon.submit(6, frames[2])
        results = {r.frame_index: r for r in mon.finish(timeout=30)}
    assert calls["n"] >= 3
    assert results[0].state == UNCLASSIFIED and "injected model failure" in results[0].reason
    assert results[0].reason.startswith("model: RuntimeError")
    assert results[1].classified and results[6].classified
    assert "expected (24, 40)" in results[2].reason
    assert "0 finite lines" in results[3].reason
    assert "not an array" in results[4].reason
    assert "2-D" in results[5].reason
    assert [i for i, _ in seen] == list(range(7))  # every result reported once, in order
    assert seen[2][1] == UNCLASSIFIED


def test_bad_arguments_raise_clearly(tiny_bundle, monitor) -> None:
    with pytest.raises(ValueError, match="queue_size"):
        TipStateMonitor(tiny_bundle, queue_size=0)
    with pytest.raises(ValueError, match="on_full"):
        TipStateMonitor(tiny_bundle, on_full="drop")
    with pytest.raises(ValueError, match="expected_shape"):
        TipStateMonitor(tiny_bundle, expected_shape=(0, 4))
    with pytest.raises(ValueError, match="frame_index must be a non-negative integer"):
        monitor.submit(-1, np.zeros((16, 16)))
    monitor.submit(7, _frames(1)[0])
    with pytest.raises(ValueError, match="frame_index 7 was already submitted"):
        monitor.submit(7, _frames(1)[0])
    with pytest.raises(ValueError, match="frame_index 8 was not submitted"):
        monitor.result(8)
    with pytest.raises(ValueError, match="timestamp"):
        monitor.submit(9, _frames(1)[0], timestamp=math.inf)
    assert [r.frame_index for r in monitor.finish()] == [7]
    with pytest.raises(TypeError, match="callable"):
        monitor.on_state(42)


def test_closed_monitor_refuses_frames(tiny_bundle) -> None:
    mon = TipStateMonitor(tiny_bundle)
    mon.close()
    with pytest.raises(MonitorError, match="closed"):
        mon.submit(0, np.zeros((16, 16)))


def test_finish_times_out_when_the_worker_is_stuck(tiny_bundle) -> None:
    gate = threading.Event()
    with TipStateMonitor(tiny_bundle) as mon:
        real = mon._infer
        mon._infer = lambda x: (gate.wait(5), real(x))[1]
        mon.submit(0, _frames(1)[0])
        with pytest.raises(MonitorError, match="1 frame\\(s\\) still unclassified"):
            mon.finish(timeout=0.3)
        gate.set()
        assert mon.finish(timeout=10)[0].classified


def test_dond_stores_the_state_of_every_frame(tiny_bundle, db) -> None:
    from qcodes.dataset import LinSweep, dond

    frames = _frames(3, shape=(16, 32), seed=3)
    frame_index = ManualParameter("frame_index", initial_value=0)
    ys = Parameter("y", get_cmd=lambda: np.arange(16.0), vals=Arrays(shape=(16,)), unit="m")
    xs = Parameter("x", get_cmd=lambda: np.arange(32.0), vals=Arrays(shape=(32,)), unit="m")
    image = ParameterWithSetpoints("image", setpoints=(ys, xs), vals=Arrays(shape=(16, 32)),
                                   get_cmd=lambda: frames[int(frame_index())])
    with TipStateMonitor(tiny_bundle) as mon:
        watched = mon.watch(image, frame_index)
        ds, *_ = dond(LinSweep(frame_index, 0, 2, 3), watched, *mon.parameters,
                      exp=db, do_plot=False, show_progress=False)
        results = mon.finish(dataset=ds)
    ds = load_by_run_spec(captured_run_id=ds.captured_run_id)
    assert states_of(ds) == {r.frame_index: r.state for r in results}
    _, ref = _reference(tiny_bundle, frames)
    assert [r.state for r in results] == [CLASSES[d] for d in ref.decision]
    xr = ds.to_xarray_dataset()
    np.testing.assert_array_equal(xr["image"].values[1], frames[1])
    assert json.loads(ds.metadata[METADATA_KEY])["bundle"]["surface"] == "hsi100"


def test_import_and_driver_creation_do_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, time; t = time.perf_counter()\n"
        "import qcodes_stmtip, qcodes_stmtip.monitor\n"
        "from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM\n"
        "stm = NanonisSTM('stm_tf_free', port=6501, connect_on_init=False); stm.close()\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_overflowing_and_complex_frames_are_refused_with_a_reason_and_still_stored(
    tiny_bundle, monitor, db
) -> None:
    """Issue 15: such frames were stored as 'uncertain' with NaN probabilities and no reason."""
    f32max = float(np.finfo(np.float32).max)
    rng = np.random.default_rng(3)
    good = _frames(1)[0]
    frames = {
        0: good,
        1: 1e288 * (1.0 + rng.random((24, 40))),  # finite, overflows float32
        2: rng.uniform(-f32max, f32max, (24, 40)),  # uniform ±float32 max
        3: good + 1j * good,  # complex: the imaginary part would be lost
        4: np.full((24, 40), 1e288) + np.arange(40.0),  # huge offset, flat after flattening
    }
    frame_index = ManualParameter("frame_index", initial_value=0)
    ys = Parameter("y", get_cmd=lambda: np.arange(24.0), vals=Arrays(shape=(24,)))
    xs = Parameter("x", get_cmd=lambda: np.arange(40.0), vals=Arrays(shape=(40,)))
    image = ParameterWithSetpoints("image", setpoints=(ys, xs), vals=Arrays(shape=(24, 40)),
                                   get_cmd=None, set_cmd=None)
    meas = Measurement(exp=db, name="hostile frames")
    meas.register_parameter(frame_index)
    meas.register_parameter(image, setpoints=(frame_index,))
    monitor.register(meas, frame_index)
    with meas.run() as saver:
        for i, f in frames.items():
            saver.add_result((frame_index, i), (image, np.real(f)))
            monitor.submit(i, f, saver)
        results = {r.frame_index: r for r in monitor.finish(saver)}
    assert results[0].classified and (results[0].reason == "") == results[0].good
    assert all(math.isfinite(p) for p in results[0].probabilities.values())
    for i in (1, 2, 4):
        r = results[i]
        assert r.state == UNCLASSIFIED and r.quality == UNCLASSIFIED, (i, r)
        assert "float32" in r.reason and "\n" not in r.reason, r.reason
    assert results[3].state == UNCLASSIFIED and "complex" in results[3].reason
    stored = saver.dataset.get_parameter_data("image", "tip_reason")
    assert stored["image"]["image"].shape[0] == len(frames)  # every frame itself is saved
    reasons = dict(zip(np.ravel(stored["tip_reason"]["frame_index"]),
                       np.ravel(stored["tip_reason"]["tip_reason"]), strict=True))
    assert all(reasons[i] for i in (1, 2, 3, 4))
    assert reasons[0] == results[0].reason  # "" when frame 0 is good, else why not


def test_feature_member_bundle_runs_without_tensorflow(tmp_path) -> None:
    """The shipped hsi100 bundle (feature members) classifies frames into the dataset through
    ``Ensemble.predict`` and never imports TensorFlow or Keras."""
    import subprocess
    import sys

    code = f"""
import json, sys
import numpy as np
from qcodes import Measurement, initialise_or_create_database_at, load_or_create_experiment
from qcodes.parameters import ManualParameter, Parameter, ParameterWithSetpoints
from qcodes.validators import Arrays
from qcodes_stmtip.classify.bundle import default_bundle_path
from qcodes_stmtip.monitor import METADATA_KEY, TipStateMonitor, states_of
initialise_or_create_database_at({str(tmp_path / "f.db")!r})
exp = load_or_create_experiment("feature_bundle", sample_name="synthetic")
fi = ManualParameter("frame_index", initial_value=0)
ys = Parameter("y", get_cmd=lambda: np.arange(64.0), vals=Arrays(shape=(64,)), unit="m")
xs = Parameter("x", get_cmd=lambda: np.arange(64.0), vals=Arrays(shape=(64,)), unit="m")
image = ParameterWithSetpoints("image", setpoints=(ys, xs), vals=Arrays(shape=(64, 64)), get_cmd=None, set_cmd=None)
meas = Measurement(exp=exp, name="monitor")
meas.register_parameter(fi)
meas.register_parameter(image, setpoints=(fi,))
rng = np.random.default_rng(0)
with TipStateMonitor(default_bundle_path("hsi100"), surface="hsi100") as mon:
    mon.register(meas, fi)
    with meas.run() as saver:
        for i in range(3):
            f = 1e-10 * rng.normal(size=(64, 64)).cumsum(axis=1)
            saver.add_result((fi, i), (image, f))
            mon.submit(i, f, saver)
        results = mon.finish(saver)
from qcodes import load_by_run_spec
ds = load_by_run_spec(captured_run_id=saver.run_id)
meta = json.loads(ds.metadata[METADATA_KEY])
print(json.dumps({{"states": list(states_of(ds).values()), "path": meta["inference_path"],
                   "p": [sum(r.probabilities.values()) for r in results],
                   "heavy": [m for m in ("tensorflow", "keras") if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    assert got["path"] == "ensemble-predict (feature members)"
    assert len(got["states"]) == 3 and all(s in (*CLASSES, "uncertain") for s in got["states"])
    assert got["p"] == pytest.approx([1.0] * 3)
