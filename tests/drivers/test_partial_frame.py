"""NanonisSTM.partial_frame and line_time: reading a frame while it is scanned (issue 14)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from qcodes.instrument import Instrument

from qcodes_stmtip.drivers.nanonis_stm import FrameShapeError, NanonisSTM
from qcodes_stmtip.sim.controller import SimulatedNanonisServer, serve_simulator


@pytest.fixture
def rig() -> Iterator[tuple[SimulatedNanonisServer, NanonisSTM, list[str]]]:
    with serve_simulator(surface="hsi100", seed=3, time_acceleration=20.0,
                         initial_tip="individual_atoms") as server:
        commands: list[str] = []
        dispatch = server.dispatch

        def logged(request):
            commands.append(request.command)
            return dispatch(request)

        server.dispatch = logged  # type: ignore[method-assign]
        stm = NanonisSTM("stm_partial", port=server.port)
        try:
            yield server, stm, commands
        finally:
            stm.close()
            Instrument.close_all()


def test_line_time_is_forward_plus_backward(rig) -> None:
    server, stm, commands = rig
    server.microscope.set_speed(0, 0, 0.05, 0.05, 2, 0.5)  # backward at half the speed: 0.1 s
    commands.clear()
    assert stm.line_time() == pytest.approx(0.15)
    assert commands == ["Scan.SpeedGet"]


@pytest.mark.parametrize("direction", ["up", "down"])
def test_partial_frame_has_the_acquired_lines_and_nan_beyond_in_one_request(rig, direction) -> None:
    server, stm, commands = rig
    stm.pixels(32)
    stm.lines(32)
    stm.scan_direction(direction)
    stm.refresh_geometry()
    stm.start_scan()
    while server.microscope.ground_truth().lines_acquired < 10:
        pass
    commands.clear()
    frame = stm.partial_frame()
    assert commands == ["Scan.FrameDataGrab"]  # no geometry, bias or setpoint reads
    stm.stop_scan()
    assert frame.shape == (32, 32) and frame.dtype == np.float64
    finite = np.all(np.isfinite(frame), axis=1)
    n = int(finite.sum())
    assert 10 <= n < 32
    acquired = np.arange(n) if direction == "up" else np.arange(32 - n, 32)  # row 0 at the bottom
    assert finite[acquired].all()
    with pytest.raises(RuntimeError, match="no frame acquired yet"):
        stm.frame_timestamp()  # the frame record is left alone
    whole = stm.last_frame()  # the stopped frame, its record now set
    assert np.all(np.isfinite(whole), axis=1).sum() >= n and stm.frame_direction() == direction


def test_partial_frame_checks_the_cached_shape(rig) -> None:
    server, stm, _ = rig
    stm.refresh_geometry()
    server.microscope.set_buffer([0, 14], 48, 40)  # changed behind the driver's back
    stm.start_scan()
    with pytest.raises(FrameShapeError, match="expected"):
        stm.partial_frame()
    stm.stop_scan()
