"""Issue 15, class 1: a monitored measurement killed with SIGKILL keeps every frame and result
it reported written (the README's pattern: ``Measurement`` + ``datasaver`` + monitor)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

CHILD = textwrap.dedent('''
    """A monitored measurement that never ends by itself; prints what it reports written."""
    import sys

    import numpy as np
    from qcodes.dataset import Measurement, initialise_or_create_database_at, load_or_create_experiment
    from qcodes.parameters import ManualParameter, Parameter, ParameterWithSetpoints
    from qcodes.validators import Arrays

    from qcodes_stmtip.monitor import TipStateMonitor

    db, bundle = sys.argv[1], sys.argv[2]
    initialise_or_create_database_at(db)
    exp = load_or_create_experiment("durability", sample_name="synthetic")
    frame_index = ManualParameter("frame_index", initial_value=0)
    ys = Parameter("y", get_cmd=lambda: np.arange(24.0), vals=Arrays(shape=(24,)))
    xs = Parameter("x", get_cmd=lambda: np.arange(40.0), vals=Arrays(shape=(40,)))
    image = ParameterWithSetpoints("image", setpoints=(ys, xs), vals=Arrays(shape=(24, 40)),
                                   get_cmd=None, set_cmd=None)
    rng = np.random.default_rng(0)
    with TipStateMonitor(bundle, queue_size=4, nice=None) as monitor:
        meas = Measurement(exp=exp, name="killed")
        meas.write_period = 5.0  # the default: nothing but the monitor's flushes commits sooner
        meas.register_parameter(frame_index)
        meas.register_parameter(image, setpoints=(frame_index,))
        monitor.register(meas, frame_index)
        reported = 0
        with meas.run() as saver:
            print("RUN", saver.run_id, flush=True)
            for i in range(100_000):
                frame = 1e-10 * rng.normal(size=(24, 40)).cumsum(axis=1)
                saver.add_result((frame_index, i), (image, frame))
                monitor.submit(i, frame, saver)
                print("F", i, flush=True)  # frame i reported written
                written = monitor.written
                for j in written[reported:]:
                    print("R", j, flush=True)  # result j reported written
                reported = len(written)
''')


def _read_lines(proc: subprocess.Popen, until, timeout: float) -> list[str]:
    """Lines the child printed, until ``until(lines)`` is true or ``timeout`` seconds pass."""
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while not until(lines) and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            lines += [d.decode() for d in done]
    return lines


@pytest.mark.timeout(240)
def test_sigkill_keeps_every_frame_and_result_reported_written(tiny_bundle, tmp_path: Path) -> None:
    from qcodes.dataset import initialise_or_create_database_at, load_by_id

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db = tmp_path / "killed.db"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(tiny_bundle)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        def enough(lines: list[str]) -> bool:
            frames = sum(line.startswith("F ") for line in lines)
            results = sum(line.startswith("R ") for line in lines)
            return frames >= 30 and results >= 10

        lines = _read_lines(proc, enough, timeout=180)
        assert proc.poll() is None, f"the child ended early: {lines[-5:]}"
        os.kill(proc.pid, signal.SIGKILL)  # mid-run, well inside the 5 s write_period
        proc.wait(timeout=30)
        lines += _read_lines(proc, lambda _: False, timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    run_id = int(next(line.split()[1] for line in lines if line.startswith("RUN ")))
    frames = {int(line.split()[1]) for line in lines if line.startswith("F ")}
    results = {int(line.split()[1]) for line in lines if line.startswith("R ")}
    assert len(frames) >= 30 and len(results) >= 10, lines[-5:]

    initialise_or_create_database_at(db)
    data = load_by_id(run_id).get_parameter_data("image", "tip_state")
    stored_frames = set(np.ravel(data["image"]["frame_index"]).astype(int))
    stored_results = set(np.ravel(data["tip_state"]["frame_index"]).astype(int))
    assert frames <= stored_frames, f"lost frames {sorted(frames - stored_frames)[:10]}"
    assert results <= stored_results, f"lost results {sorted(results - stored_results)[:10]}"
    assert len(data["image"]["image"]) == len(stored_frames)


LONG_SCAN_CHILD = textwrap.dedent('''
    """Frame 0 is classified, then frame 1 "scans" for minutes (a real microscope's pace)."""
    import sys
    import time

    import numpy as np
    from qcodes.dataset import Measurement, initialise_or_create_database_at, load_or_create_experiment
    from qcodes.parameters import ManualParameter, Parameter, ParameterWithSetpoints
    from qcodes.validators import Arrays

    from qcodes_stmtip.classify.bundle import default_bundle_path
    from qcodes_stmtip.monitor import TipStateMonitor

    initialise_or_create_database_at(sys.argv[1])
    exp = load_or_create_experiment("long_scan", sample_name="synthetic")
    frame_index = ManualParameter("frame_index", initial_value=0)
    ys = Parameter("y", get_cmd=lambda: np.arange(32.0), vals=Arrays(shape=(32,)))
    xs = Parameter("x", get_cmd=lambda: np.arange(32.0), vals=Arrays(shape=(32,)))
    image = ParameterWithSetpoints("image", setpoints=(ys, xs), vals=Arrays(shape=(32, 32)),
                                   get_cmd=None, set_cmd=None)
    with TipStateMonitor(default_bundle_path("hsi100"), nice=None) as monitor:
        meas = Measurement(exp=exp, name="long scan")
        meas.register_parameter(frame_index)
        meas.register_parameter(image, setpoints=(frame_index,))
        monitor.register(meas, frame_index)
        with meas.run() as saver:
            print("RUN", saver.run_id, flush=True)
            frame = 1e-10 * np.random.default_rng(0).normal(size=(32, 32)).cumsum(axis=1)
            saver.add_result((frame_index, 0), (image, frame))
            monitor.submit(0, frame, saver)
            print("STATE", monitor.result(0).state, flush=True)  # computed; nothing submitted since
            print("SCANNING 1", flush=True)
            time.sleep(120)  # frame 1 takes minutes: killed here
''')


@pytest.mark.timeout(120)
def test_sigkill_during_the_next_scan_keeps_the_previous_frames_tip_state(tmp_path: Path) -> None:
    """Issue 26 class 5: before, frame i's result was written only when frame i+1 was submitted,
    so a kill during a long scan lost it although it had been computed long before."""
    from qcodes.dataset import initialise_or_create_database_at, load_by_id

    script = tmp_path / "long_scan.py"
    script.write_text(LONG_SCAN_CHILD)
    db = tmp_path / "long_scan.db"
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        lines = _read_lines(proc, lambda got: "SCANNING 1" in got, timeout=90)
        assert "SCANNING 1" in lines, f"the child did not get to frame 1: {lines}"
        os.kill(proc.pid, signal.SIGKILL)  # mid-scan of frame 1
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    run_id = int(next(line.split()[1] for line in lines if line.startswith("RUN ")))
    state = next(line.split()[1] for line in lines if line.startswith("STATE "))
    initialise_or_create_database_at(db)
    data = load_by_id(run_id).get_parameter_data("tip_state")["tip_state"]
    assert list(np.ravel(data["frame_index"]).astype(int)) == [0]
    assert list(np.ravel(data["tip_state"])) == [state]
