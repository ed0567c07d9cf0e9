"""NanonisSTM against the simulated Nanonis controller: frames, envelope, station YAML, example."""

from __future__ import annotations

import runpy
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qcodes.instrument import Instrument

from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.safety import SafetyViolation
from qcodes_stmtip.sim.controller import SimulatedNanonisServer, serve_simulator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[SimulatedNanonisServer]:
    with serve_simulator(surface="hsi100", seed=3, time_acceleration=1000.0,
                          initial_tip="individual_atoms") as srv:
        yield srv


@pytest.fixture
def stm(server: SimulatedNanonisServer) -> Iterator[NanonisSTM]:
    instrument = NanonisSTM("stm_test", address="127.0.0.1", port=server.port)
    try:
        yield instrument
    finally:
        instrument.close()
        Instrument.close_all()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_up_and_down_frames_of_the_same_area_agree_row_for_row(
    stm: NanonisSTM, server: SimulatedNanonisServer
) -> None:
    stm.pixels(48)
    stm.lines(40)
    up = stm.scan_image()  # the default 20 nm frame: sample tilt and steps dominate
    assert server.microscope.ground_truth().frame_complete
    stm.scan_direction("down")
    down = stm.scan_image()
    assert up.shape == down.shape == (40, 48) and up.dtype == np.float64
    assert np.isfinite(up).all() and np.isfinite(down).all()
    # the same sample area: heights correlate when rows are aligned, not when flipped
    assert _corr(up, down) > 0.5
    assert _corr(up, down) > _corr(up, down[::-1]) + 0.3
    # heights are ångström-scale corrugation in metres
    assert 1e-12 < up.std() < 1e-9
    x, y = stm.scan_x(), stm.scan_y()
    assert x[0] == pytest.approx(-10e-9 + 10e-9 / 48) and y[-1] == pytest.approx(10e-9 - 10e-9 / 40)


def test_current_channel_is_near_the_setpoint(stm: NanonisSTM) -> None:
    stm.pixels(32)
    stm.lines(32)
    stm.channel(0)
    assert stm.scan_image.unit == "A"
    image = stm.scan_image()
    setpoint = stm.setpoint_current()
    assert np.median(image) == pytest.approx(setpoint, rel=0.3)


def test_stopped_scan_leaves_nan_lines() -> None:
    # slow time: 0.1 s wall per line and direction, so the scan is stopped a few lines in
    server = serve_simulator(surface="hsi100", seed=3, time_acceleration=1.0)
    stm = NanonisSTM("stm_slow", port=server.port)
    try:
        stm.pixels(16)
        stm.lines(64)
        stm.start_scan("up")
        assert stm.scan_running()
        time.sleep(0.7)
        stm.stop_scan()
        assert not stm.scan_running()
        frame = stm.last_frame()
    finally:
        stm.close()
        server.stop()
    assert frame.shape == (64, 16)
    nan_rows = np.isnan(frame).all(axis=1)
    assert nan_rows[-1] and nan_rows.sum() > 32
    assert not np.isnan(frame[0]).any()  # an "up" scan starts at the bottom


def test_out_of_envelope_requests_reach_nothing(stm: NanonisSTM, server: SimulatedNanonisServer) -> None:
    stm.refresh_geometry()
    served = server.requests_served
    for action in (
        lambda: stm.bias(11.0),
        lambda: stm.bias_pulse(amplitude_V=10.5, width_s=0.01),
        lambda: stm.tip_shaper(5e-9),
        lambda: stm.set_frame(4.9e-6, 0.0, 0.5e-6, 0.5e-6),
        lambda: stm.move_tip(0.0, -7e-6),
        lambda: stm.coarse_move("Z-", 500),
    ):
        with pytest.raises(SafetyViolation):
            action()
    assert server.requests_served == served
    before_bias = stm.bias()
    stm.bias_pulse(amplitude_V=3.0, width_s=0.01)
    assert stm.bias() == pytest.approx(before_bias)


def test_conditioning_actions_run_on_the_simulator(stm: NanonisSTM, server: SimulatedNanonisServer) -> None:
    stm.tip_shaper(1e-9, lift_time_s=0.05)
    stm.move_tip(1e-7, -1e-7)
    assert stm.tip_position() == pytest.approx((1e-7, -1e-7), abs=1e-12)
    stm.withdraw(timeout_s=5.0)
    assert stm.feedback() is False


def test_station_yaml_loads_the_driver_against_the_simulator(server: SimulatedNanonisServer) -> None:
    from qcodes.station import Station

    station = Station(config_file=str(REPO / "qcodes_stmtip" / "lab" / "sim_yaml" / "simulated_stm.station.yaml"))
    stm = station.load_instrument("stm", port=server.port)
    try:
        assert isinstance(stm, NanonisSTM)
        assert stm.safety.max_bias_V == 5.0 and stm.safety.max_motor_steps == 50
        assert stm.get_idn()["vendor"] == "SPECS Nanonis"
        with pytest.raises(SafetyViolation):
            stm.bias(6.0)
        stm.bias(-2.0)
        assert stm.bias() == pytest.approx(-2.0)
    finally:
        station.close_all_registered_instruments()


def test_measure_frames_example_stores_and_reads_back(tmp_path: Path, capsys) -> None:
    module = runpy.run_path(str(REPO / "examples" / "measure_frames.py"))
    db = tmp_path / "frames.db"
    assert module["main"](["--frames", "2", "--pixels", "32", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "shape (2, 32, 32)" in out and str(db) in out

    from qcodes.dataset import initialise_or_create_database_at, load_by_run_spec

    initialise_or_create_database_at(db)
    xr = load_by_run_spec(captured_run_id=1).to_xarray_dataset()
    image = xr["stm_scan_image"]
    assert image.dims == ("frame_index", "stm_scan_line", "stm_scan_pixel")
    np.testing.assert_allclose(xr["stm_frame_width"].values, [20e-9, 20e-9])  # the default --size
    assert image.attrs["units"] == "m"
    assert np.isfinite(image.values).all() and image.values.std() > 0


def test_controller_error_is_raised_and_the_next_call_works(stm: NanonisSTM) -> None:
    from qcodes_stmtip.nanonis.protocol import NanonisError

    stm.pixels(16)
    stm.lines(16)
    stm.scan_image()
    stm.channel(7)  # not in the scan buffer (0, 14)
    with pytest.raises(NanonisError, match="buffer"):
        stm.last_frame()
    stm.channel(14)
    assert np.isfinite(stm.last_frame()).all()


def test_red_team_crashes_are_refused_on_the_simulator(stm: NanonisSTM, server: SimulatedNanonisServer) -> None:
    """Issue 15: ``coarse_move("Z-", 10)`` and a feedback-off Z of −150 nm never reach the tip."""
    microscope = server.microscope
    tip = microscope.dynamics.state
    with pytest.raises(SafetyViolation, match="towards the sample"):
        stm.coarse_move("Z-", 10)  # inside max_motor_steps (100), tip tunnelling
    stm.feedback(False)
    for attempt in (lambda: stm.z_position(-150e-9), lambda: stm.z_position.set_raw(-150e-9)):
        with pytest.raises(SafetyViolation, match="below the tunnelling position"):
            attempt()
    stm.withdraw(timeout_s=5.0)
    with pytest.raises(SafetyViolation, match="towards the sample"):
        stm.coarse_move("Z-", 10)  # withdrawn, but still more than one approach step
    assert microscope.dynamics.state == tip
    assert microscope.safe_tip_events == 0


def test_a_run_with_moves_round_trips_through_xarray_and_netcdf(
    stm: NanonisSTM, tmp_path: Path
) -> None:
    """Three 32² frames at three centres: one (frame_index, line, pixel) grid, positions beside."""
    import xarray as xr
    from qcodes.dataset import (
        ArraySweep,
        dond,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )

    from qcodes_stmtip.drivers.nanonis_stm import frame_index_parameter

    initialise_or_create_database_at(tmp_path / "moves.db")
    exp = load_or_create_experiment("moves", sample_name="sim")
    stm.pixels(32)
    stm.lines(32)
    centres = [(0.0, 0.0), (40e-9, 10e-9), (-30e-9, 25e-9)]
    biases = [1.0, 1.2, -0.8]
    frame_index = frame_index_parameter()

    def move(i: int) -> None:
        stm.set_frame(*centres[i], 20e-9, 20e-9)
        stm.bias(biases[i])
        stm.scan_direction("down" if i == 1 else "up")

    # the QCoDeS idiom: each sweep point moves the frame, then the image and its record
    sweep = ArraySweep(frame_index, list(range(3)), post_actions=(lambda: move(frame_index()),))
    ds, *_ = dond(sweep, stm.scan_image, *stm.frame_parameters, exp=exp, do_plot=False)

    x = ds.to_xarray_dataset()
    image = x["stm_test_scan_image"]
    assert image.dims == ("frame_index", "stm_test_scan_line", "stm_test_scan_pixel")
    assert image.shape == (3, 32, 32) and np.isfinite(image.values).all()
    # QCoDeS stores "numeric" parameters as float64; the validator keeps the values integers
    np.testing.assert_array_equal(x["frame_index"].values, [0, 1, 2])
    assert x.sel(frame_index=1)["stm_test_frame_centre_x"].item() == pytest.approx(40e-9)
    np.testing.assert_allclose(x["stm_test_frame_centre_x"].values, [c[0] for c in centres])
    np.testing.assert_allclose(x["stm_test_frame_centre_y"].values, [c[1] for c in centres])
    np.testing.assert_allclose(x["stm_test_frame_bias"].values, biases)
    assert list(x["stm_test_frame_direction"].values) == ["up", "down", "up"]
    assert x["stm_test_frame_width"].attrs["units"] == "m"
    assert np.all(np.diff(x["stm_test_frame_timestamp"].values) > 0)
    # one line of xarray: the frames scanned with positive bias
    assert x["stm_test_scan_image"].where(x["stm_test_frame_bias"] > 0, drop=True).shape[0] == 2

    ds.export("netcdf", path=str(tmp_path))
    path = ds.export_info.export_paths["nc"]
    with xr.load_dataset(path) as back:
        np.testing.assert_array_equal(back["stm_test_scan_image"].values, image.values)
        np.testing.assert_allclose(back["stm_test_frame_centre_x"].values,
                                   [c[0] for c in centres])
        assert list(back["frame_index"].values) == [0, 1, 2]
