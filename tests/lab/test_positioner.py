"""CoarsePositioner: ANC300 console bytes, envelope and tip interlock, fresh area on the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pymeasure.adapters import ProtocolAdapter
from qcodes.instrument import Instrument

from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.lab.area_similarity import area_similarity
from qcodes_stmtip.lab.positioner import CoarsePositioner, PositionerInterlockError
from qcodes_stmtip.safety import SafetyViolation
from qcodes_stmtip.sim.controller import SimulatedNanonisServer, serve_simulator
from qcodes_stmtip.sim.microscope import STEP_XY

#: What ANC300Controller exchanges when it opens: password, its echo, the grant, echo off.
LOGIN = [
    ("123456", "123456"),
    (None, "Authorization success"),
    ("echo off", "> echo off"),
    (None, "OK"),
]


def _move_bytes(axis_id: int, command: str, steps: int) -> list[tuple[str | None, str | None]]:
    """The console dialogue of PyMeasure's blocking ``Axis.move``: stp mode, steps, wait, ground."""
    return [
        (f"setm {axis_id} stp", "OK"),
        (f"{command} {axis_id} {steps}", "OK"),
        (f"getf {axis_id}", "frequency = 2000 Hz"),
        (None, "OK"),
        (f"stepw {axis_id}", "OK"),
        (f"setm {axis_id} gnd", "OK"),
    ]


@pytest.fixture(autouse=True)
def _close_instruments() -> Iterator[None]:
    yield
    Instrument.close_all()


@pytest.fixture
def server() -> Iterator[SimulatedNanonisServer]:
    with serve_simulator(surface="hsi100", seed=5, time_acceleration=1000.0,
                          initial_tip="individual_atoms") as srv:
        yield srv


@pytest.fixture
def stm(server: SimulatedNanonisServer) -> Iterator[NanonisSTM]:
    instrument = NanonisSTM("stm", address="127.0.0.1", port=server.port,
                            safety={"max_motor_steps": 50})
    try:
        yield instrument
    finally:
        instrument.close()


def _protocol_positioner(pairs, name: str = "pos", **kwargs) -> tuple[CoarsePositioner, ProtocolAdapter]:
    adapter = ProtocolAdapter(LOGIN + list(pairs))
    positioner = CoarsePositioner(name, adapter, query_delay=0.0, **kwargs)
    return positioner, adapter


def test_parameters_speak_the_anc300_console() -> None:
    positioner, adapter = _protocol_positioner([
        ("setf 2 500.000", "OK"),
        ("getf 2", "frequency = 500 Hz"), (None, "OK"),
        ("setv 1 42.500", "OK"),
        ("getc 3", "capacitance = 1012.5 nF"), (None, "OK"),
        ("getm 1", "mode = gnd"), (None, "OK"),
    ])
    positioner.y_frequency(500)
    assert positioner.y_frequency() == 500
    positioner.x_voltage(42.5)
    assert positioner.z_capacitance() == pytest.approx(1.0125e-6)  # nF -> F
    assert positioner.x_mode() == "gnd"
    assert adapter._index == len(adapter.comm_pairs)
    with pytest.raises(ValueError):
        positioner.x_voltage(151.0)  # beyond the ANC300's 150 V: refused, nothing sent
    with pytest.raises(ValueError):
        positioner.x_mode("fast")
    assert adapter._index == len(adapter.comm_pairs)


def test_fresh_area_move_withdraws_then_steps(stm: NanonisSTM, server: SimulatedNanonisServer) -> None:
    positioner, adapter = _protocol_positioner(_move_bytes(2, "stepd", 30), stm=stm)
    assert stm.feedback() is True
    record = positioner.move_to_fresh_area("Y-", 30, approach=False)
    assert adapter._index == len(adapter.comm_pairs)  # every byte of the move, in order
    assert record.direction == "Y-" and record.steps == 30 and record.axis == "y"
    assert stm.feedback() is False  # withdrawn and left withdrawn (approach=False)
    # without simulate_motion_on_stm the simulated stage did not move
    assert server.microscope.coarse_y == 0.0


def test_envelope_refuses_too_many_steps_before_anything_moves(
    stm: NanonisSTM, server: SimulatedNanonisServer
) -> None:
    # own envelope 40 steps, the STM's 50: both apply
    positioner, adapter = _protocol_positioner([], stm=stm, safety={"max_motor_steps": 40})
    served = server.requests_served
    for steps in (41, 60, -1, 2.5):
        with pytest.raises(SafetyViolation):
            positioner.move_to_fresh_area("X+", steps)
    assert adapter._index == len(LOGIN)  # no console byte after the login
    assert server.requests_served == served  # not even a withdraw
    loose, _ = _protocol_positioner([], "loose", stm=stm, safety={"max_motor_steps": 500})
    with pytest.raises(SafetyViolation, match="motor steps"):
        loose.move_to_fresh_area("X+", 51)  # the STM's envelope still applies


def test_refuses_when_feedback_stays_on_after_withdraw(
    stm: NanonisSTM, server: SimulatedNanonisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    positioner, adapter = _protocol_positioner([], stm=stm)
    monkeypatch.setattr(stm, "withdraw", lambda **kwargs: None)  # a controller that ignores it
    with pytest.raises(PositionerInterlockError, match="feedback ON"):
        positioner.move_to_fresh_area("X+", 10)
    assert adapter._index == len(LOGIN)
    assert stm.feedback() is True


def test_without_an_stm_the_move_needs_explicit_confirmation() -> None:
    positioner, adapter = _protocol_positioner(_move_bytes(1, "stepu", 5))
    with pytest.raises(PositionerInterlockError, match="confirm_tip_withdrawn"):
        positioner.move_to_fresh_area("X+", 5)
    with pytest.raises(ValueError, match="approach"):
        positioner.move_to_fresh_area("X+", 5, confirm_tip_withdrawn=True)
    assert adapter._index == len(LOGIN)
    positioner.move_to_fresh_area("X+", 5, approach=False, confirm_tip_withdrawn=True)
    assert adapter._index == len(adapter.comm_pairs)


def test_bad_arguments_name_themselves(stm: NanonisSTM) -> None:
    positioner, _ = _protocol_positioner([], stm=stm)
    with pytest.raises(ValueError, match="direction"):
        positioner.move_to_fresh_area("Z-", 5)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        positioner.move_to_fresh_area("X+", 0)
    with pytest.raises(ValueError, match="approach_timeout_s"):
        positioner.move_to_fresh_area("X+", 5, approach_timeout_s=0)
    with pytest.raises(ValueError, match="direction_axes"):
        CoarsePositioner("pos2", ProtocolAdapter(LOGIN), direction_axes={"X": "q"})
    with pytest.raises(ValueError, match="stm must be"):
        CoarsePositioner("pos3", ProtocolAdapter(LOGIN), stm=3.0)


def test_simulated_motion_is_refused_on_real_hardware(stm: NanonisSTM) -> None:
    with pytest.raises(ValueError, match="pyvisa-sim"):
        CoarsePositioner("pos_real", ProtocolAdapter(LOGIN), stm=stm, query_delay=0.0,
                         simulate_motion_on_stm=True)
    assert "pos_real" not in Instrument._all_instruments


def test_fresh_area_changes_what_the_simulated_stm_images() -> None:
    # Au(111) on the simulated low-temperature instrument: little drift, so the same area
    # images reproducibly; a 500 nm frame holds several steps and defect clusters.
    server = serve_simulator(surface="au111", seed=2, time_acceleration=1000.0,
                             initial_tip="individual_atoms")
    try:
        stm = NanonisSTM("stm_au", port=server.port, safety={"max_motor_steps": 50})
        positioner = CoarsePositioner(
            "pos_sim", "ASRL1::INSTR", pyvisa_sim_file="attocube_anc300.sim.yaml", stm="stm_au",
            simulate_motion_on_stm=True, query_delay=0.0,
        )
        stm.pixels(64)
        stm.lines(64)
        stm.set_frame(0.0, 0.0, 500e-9, 500e-9)

        def settled_frame() -> np.ndarray:
            stm.scan_image()  # the first frame after a move carries piezo creep
            return stm.scan_image()

        here = settled_frame()
        again = stm.scan_image()
        assert area_similarity(here, again) > 0.8  # the same area imaged twice

        record = positioner.move_to_fresh_area("X+", 20)
        assert record.approached and stm.feedback() is True
        assert server.microscope.coarse_x == pytest.approx(20 * STEP_XY)
        assert server.microscope.ground_truth().tip_label == "individual_atoms"  # same tip
        there = settled_frame()
        assert np.isfinite(there).all()
        assert abs(area_similarity(again, there)) < 0.3  # a different area, same tip

        positioner.move_to_fresh_area("X-", 20)  # back to where it started
        back = settled_frame()
        assert area_similarity(again, back) > 0.8
        assert [m.direction for m in positioner.moves] == ["X+", "X-"]
    finally:
        Instrument.close_all()
        server.stop()


def test_retract_steps_z_away_with_the_tip_withdrawn(
    stm: NanonisSTM, server: SimulatedNanonisServer
) -> None:
    from qcodes_stmtip.sim.microscope import STEP_Z

    positioner = CoarsePositioner(
        "pos_tcp", "TCPIP::localhost::7230::SOCKET", pyvisa_sim_file="attocube_anc300.sim.yaml",
        stm=stm, simulate_motion_on_stm=True, query_delay=0.0,
    )
    assert positioner.get_idn()["serial"] == "ANC300B-C-1514-3006076"
    with pytest.raises(SafetyViolation):
        positioner.retract(51)
    assert server.microscope.coarse_gap == 0.0
    record = positioner.retract(10)
    assert record.direction == "Z+" and record.axis == "z" and not record.approached
    assert stm.feedback() is False
    assert server.microscope.coarse_gap == pytest.approx(10 * STEP_Z)
    assert positioner.z_mode() == "gnd"  # PyMeasure's move grounds the axis afterwards
    positioner.stop()


def test_a_running_scan_is_stopped_before_the_move(
    stm: NanonisSTM, server: SimulatedNanonisServer
) -> None:
    positioner, adapter = _protocol_positioner(_move_bytes(1, "stepu", 3), stm=stm)
    server.microscope.time_acceleration = 20.0  # slow enough to be mid-scan
    stm.pixels(16)
    stm.lines(64)
    stm.start_scan("up")
    assert stm.scan_running()
    positioner.move_to_fresh_area("X+", 3, approach=False)
    assert not stm.scan_running() and stm.feedback() is False
    assert adapter._index == len(adapter.comm_pairs)
