"""The whole simulated lab loads from the packaged simulated_lab.station.yaml and works together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qcodes.instrument import Instrument
from qcodes.station import Station

from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.lab.positioner import CoarsePositioner
from qcodes_stmtip.lab.pulse_generator import PulseGenerator
from qcodes_stmtip.lab.thermometer import frame_metadata
from qcodes_stmtip.safety import SafetyViolation
from qcodes_stmtip.sim.controller import SimulatedNanonisServer, serve_simulator
from qcodes_stmtip.sim.microscope import STEP_XY

REPO = Path(__file__).resolve().parents[2]
STATION = REPO / "qcodes_stmtip" / "lab" / "sim_yaml" / "simulated_lab.station.yaml"


@pytest.fixture
def server() -> Iterator[SimulatedNanonisServer]:
    with serve_simulator(surface="cu111", seed=4, time_acceleration=1000.0,
                          initial_tip="individual_atoms") as srv:
        yield srv


@pytest.fixture
def station(server: SimulatedNanonisServer) -> Iterator[Station]:
    st = Station(config_file=str(STATION))
    try:
        yield st
    finally:
        st.close_all_registered_instruments()
        Instrument.close_all()


def test_every_instrument_loads_and_works_once(station: Station, server: SimulatedNanonisServer) -> None:
    # the positioner is loaded before the STM on purpose: it finds the STM by name later
    positioner = station.load_instrument("positioner")
    stm = station.load_instrument("stm", port=server.port)
    pulser = station.load_instrument("pulser")
    thermometer = station.load_instrument("thermometer")
    assert isinstance(stm, NanonisSTM) and isinstance(positioner, CoarsePositioner)
    assert isinstance(pulser, PulseGenerator)

    # thermometer: the metadata a frame is stored with
    assert frame_metadata(thermometer)["temperature_K"] == pytest.approx(100.0)

    # positioner: YAML parameters applied, envelope = own 40 steps and the STM's 50
    assert positioner.x_frequency() == 1000 and positioner.y_voltage() == pytest.approx(30.0)
    assert positioner.get_idn()["model"] == "ANC300"
    with pytest.raises(SafetyViolation):
        positioner.move_to_fresh_area("Y+", 45)
    stm.pixels(32)
    stm.lines(32)
    before = stm.scan_image()
    record = positioner.move_to_fresh_area("Y+", 25)
    assert record.approached and stm.feedback() is True
    assert server.microscope.coarse_y == pytest.approx(25 * STEP_XY)
    after = stm.scan_image()
    assert np.isfinite(after).all() and not np.allclose(before, after)

    # pulse generator: own 5 V / 0.1 s limits and the STM's 8 V / 0.5 s
    with pytest.raises(SafetyViolation):
        pulser.pulse(6.0, 1e-3)
    with pytest.raises(SafetyViolation):
        pulser.pulse(1.0, 0.2)
    pulser.pulse(2.0, 1e-3)
    assert pulser.voltage_high() == pytest.approx(2.0) and pulser.output() is True

    snapshot = station.snapshot()
    assert {"stm", "positioner", "pulser", "thermometer"} <= set(snapshot["instruments"])
    assert snapshot["instruments"]["positioner"]["metadata"]["stm"] == "stm"
