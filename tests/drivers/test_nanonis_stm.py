"""NanonisSTM against a recording fake controller: bytes sent, envelope, frames, faults."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qcodes.instrument import Instrument

from qcodes_stmtip.drivers.nanonis_stm import FrameShapeError, NanonisSTM
from qcodes_stmtip.nanonis.protocol import (
    NanonisConnectionError,
    NanonisError,
    NanonisProtocolError,
    NanonisTimeoutError,
)
from qcodes_stmtip.safety import SafetyEnvelope, SafetyViolation

from .conftest import FakeNanonis, truth_frame


@pytest.fixture(autouse=True)
def _close_all_instruments():
    yield
    Instrument.close_all()


def test_parameters_round_trip_through_the_wire(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis) -> None:
    fake_stm.bias(-1.5)
    assert fake_nanonis.requests[-1] == ("Bias.Set", (-1.5,))
    assert fake_stm.bias() == pytest.approx(-1.5)
    fake_stm.setpoint_current(50e-12)
    assert fake_stm.setpoint_current() == pytest.approx(50e-12, rel=1e-6)
    assert fake_stm.current() == pytest.approx(50.5e-12, rel=1e-6)
    fake_stm.feedback(False)
    assert fake_nanonis.requests[-1] == ("ZCtrl.OnOffSet", (0,))
    assert fake_stm.feedback() is False
    fake_stm.z_position(10e-9)
    assert fake_stm.z_position() == pytest.approx(10e-9, rel=1e-6)
    fake_stm.pixels(32)
    fake_stm.lines(24)
    assert fake_nanonis.state["buffer"] == ((0, 14), 32, 24)  # channels kept
    with pytest.raises(ValueError, match="16"):
        fake_stm.pixels(24)  # Nanonis lines hold a multiple of 16 pixels
    fake_stm.scan_speed(50e-9)
    speed = fake_nanonis.state["speed"]
    assert speed[0] == pytest.approx(50e-9) and speed[1] == pytest.approx(50e-9)
    assert speed[4] == 1  # keep the speed constant
    assert fake_stm.get_idn()["model"] == "Nanonis Fake"


def test_z_position_refuses_while_feedback_is_on(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis) -> None:
    with pytest.raises(RuntimeError, match="feedback is on"):
        fake_stm.z_position(5e-9)
    assert "ZCtrl.ZPosSet" not in fake_nanonis.commands()


def test_frame_fields_are_set_as_a_whole_frame(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis) -> None:
    fake_stm.scan_width(40e-9)
    cx, cy, w, h, a = fake_nanonis.state["frame"]
    assert (cx, cy, h, a) == (0.0, 0.0, pytest.approx(20e-9), 0.0)
    assert w == pytest.approx(40e-9)
    fake_stm.set_frame(1e-6, -2e-6, 30e-9, 10e-9, 15.0)
    assert fake_nanonis.requests[-1][0] == "Scan.FrameSet"
    assert fake_stm.scan_angle() == pytest.approx(15.0)
    assert fake_stm.scan_centre_y() == pytest.approx(-2e-6)


@pytest.mark.parametrize(
    "action",
    [
        lambda stm: stm.bias(10.5),
        lambda stm: stm.bias(-math.inf),
        lambda stm: stm.setpoint_current(1e-6),
        lambda stm: stm.z_position(5e-6),
        lambda stm: stm.scan_width(5e-6),
        lambda stm: stm.scan_centre_x(4.999e-6),  # frame would stick out of the area
        lambda stm: stm.set_frame(0.0, 0.0, 2e-6, 1e-7),
        lambda stm: stm.set_frame(4.9e-6, 0.0, 0.5e-6, 0.5e-6, 30.0),
        lambda stm: stm.bias_pulse(amplitude_V=12.0, width_s=0.01),
        lambda stm: stm.bias_pulse(amplitude_V=3.0, width_s=2.0),
        lambda stm: stm.tip_shaper(3e-9),
        lambda stm: stm.tip_shaper(-1e-9),
        lambda stm: stm.tip_shaper(1e-9, bias_V=20.0),
        lambda stm: stm.move_tip(6e-6, 0.0),
        lambda stm: stm.coarse_move("Z-", 1000),
    ],
)
def test_out_of_envelope_sends_no_state_change(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis, action) -> None:
    fake_stm.refresh_geometry()  # populate the frame caches (reads)
    before = list(fake_nanonis.requests)
    with pytest.raises(SafetyViolation):
        action(fake_stm)
    sent = fake_nanonis.requests[len(before):]
    assert not [name for name, _ in sent if not name.endswith("Get")], sent
    assert sent == [], f"nothing may be sent for an out-of-envelope request, got {sent}"


def test_relative_pulse_is_checked_against_the_resulting_voltage(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    fake_stm.bias(8.0)
    with pytest.raises(SafetyViolation, match="pulse amplitude"):
        fake_stm.bias_pulse(amplitude_V=3.0, width_s=0.01, relative=True)
    assert "Bias.Pulse" not in fake_nanonis.commands()
    fake_stm.bias_pulse(amplitude_V=-3.0, width_s=0.02, relative=True, hold_z=True)
    name, (wait, width, volts, z_hold, absolute) = fake_nanonis.requests[-1]
    assert name == "Bias.Pulse"
    assert (wait, z_hold, absolute) == (1, 1, 1)
    assert width == pytest.approx(0.02) and volts == pytest.approx(-3.0)


def test_safety_from_a_dict_tightens_the_validators(fake_nanonis: FakeNanonis) -> None:
    stm = NanonisSTM("stm_tight", port=fake_nanonis.port, safety={"max_bias_V": 2.0})
    fake_nanonis.requests.clear()  # the connection's reads
    try:
        assert stm.safety == SafetyEnvelope(max_bias_V=2.0)
        stm.bias(1.9)
        with pytest.raises(SafetyViolation, match="2.0"):
            stm.bias(2.1)
        assert fake_nanonis.commands() == ["Bias.Set"]
    finally:
        stm.close()


def test_tip_shaper_writes_depth_then_starts(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis) -> None:
    fake_stm.tip_shaper(1.5e-9, bias_V=-2.0, lift_time_s=0.2)
    names = fake_nanonis.commands()
    assert names == ["TipShaper.PropsGet", "TipShaper.PropsSet", "TipShaper.Start"]
    props = fake_nanonis.requests[1][1]
    assert props[1] == 1 and props[2] == pytest.approx(-2.0)  # change bias to -2 V
    assert props[3] == pytest.approx(-1.5e-9)  # tip lift: into the sample
    assert props[4] == pytest.approx(0.2)
    assert props[7] == pytest.approx(1.5e-9)  # lifted back by the depth


def test_tip_shaper_refuses_controller_settings_outside_the_envelope(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    state = list(fake_nanonis.state["shaper"])
    state[5] = 12.0  # bias during the lift, configured on the controller
    fake_nanonis.state["shaper"] = tuple(state)
    with pytest.raises(SafetyViolation, match="bias"):
        fake_stm.tip_shaper(1e-9)
    assert fake_nanonis.commands() == ["TipShaper.PropsGet"]


def test_actions_send_the_expected_commands(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis) -> None:
    fake_stm.move_tip(1e-6, -1e-6)
    assert fake_nanonis.requests[-1] == ("FolMe.XYPosSet", (1e-6, -1e-6, 1))
    assert fake_stm.tip_position() == pytest.approx((1e-6, -1e-6))
    fake_stm.coarse_move("Z+", 3)
    assert fake_nanonis.requests[-1] == ("Motor.StartMove", (4, 3, 0, 1))
    fake_stm.withdraw(timeout_s=2.0)
    assert fake_nanonis.requests[-1] == ("ZCtrl.Withdraw", (1, 2000))
    assert fake_stm.feedback() is False
    fake_stm.coarse_move("Z-", 1)  # an approach step: only withdrawn, one at a time
    assert fake_nanonis.requests[-1] == ("Motor.StartMove", (5, 1, 0, 1))
    fake_stm.auto_approach(True)
    assert fake_nanonis.requests[-1] == ("AutoApproach.OnOffSet", (1,))
    fake_stm.start_scan("down")
    assert fake_nanonis.requests[-1] == ("Scan.Action", (0, 0))
    fake_stm.stop_scan()
    assert fake_nanonis.requests[-1][0:2] == ("Scan.Action", (1, 1))
    assert fake_stm.wait_end_of_scan(1.0) is True
    with pytest.raises(ValueError, match="direction"):
        fake_stm.coarse_move("W", 1)


@pytest.mark.parametrize("row_order", ["bottom_first", "acquisition_order"])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_scan_image_is_bottom_row_first_whatever_the_direction(
    fake_nanonis: FakeNanonis, direction: str, row_order: str
) -> None:
    fake_nanonis.state["acquisition_order"] = row_order == "acquisition_order"
    fake_stm = NanonisSTM("stm_fake", port=fake_nanonis.port, row_order=row_order)
    fake_nanonis.requests.clear()  # the connection's reads
    fake_stm.scan_direction(direction)
    image = fake_stm.scan_image()
    assert fake_nanonis.commands()[:2] == ["Scan.Action", "Scan.WaitEndOfScan"]
    assert fake_nanonis.requests[0][1] == (0, int(direction == "up"))
    assert image.dtype == np.float64 and image.shape == (12, 16)
    np.testing.assert_array_equal(image, truth_frame(12, 16).astype(np.float64))
    y, x = fake_stm.scan_y(), fake_stm.scan_x()
    assert x.shape == (16,) and y.shape == (12,)
    assert x[0] == pytest.approx(-10e-9 + 20e-9 / 32) and y[-1] == pytest.approx(10e-9 - 20e-9 / 24)
    fake_stm.data_direction("backward")
    grabbed = fake_stm.last_frame()
    assert "Scan.Action" not in fake_nanonis.commands()[2:]
    np.testing.assert_allclose(grabbed - image, 1e-9, rtol=1e-5)


def test_last_frame_keeps_nan_rows_of_an_unfinished_scan(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    fake_nanonis.state["last_up"] = False
    fake_nanonis.state["nan_from_line"] = 5  # acquired 5 lines from the top
    frame = fake_stm.last_frame()
    assert np.isnan(frame[:7]).all()
    np.testing.assert_array_equal(frame[7:], truth_frame(12, 16)[7:])


def test_wrong_frame_shape_raises_naming_both_shapes(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis) -> None:
    fake_nanonis.state["grab_shape"] = (16, 12)
    with pytest.raises(FrameShapeError, match=r"\(16, 12\).*\(12, 16\)") as info:
        fake_stm.last_frame()
    assert info.value.expected == (12, 16)
    assert info.value.data is not None and info.value.data.shape == (16, 12)  # nothing lost
    assert np.isfinite(info.value.data).all()


def test_scan_image_registers_in_a_measurement_with_setpoints(fake_stm: NanonisSTM, tmp_path) -> None:
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )

    initialise_or_create_database_at(tmp_path / "t.db")
    exp = load_or_create_experiment("driver", sample_name="fake")
    meas = Measurement(exp=exp)
    meas.register_parameter(fake_stm.scan_image)
    with meas.run() as saver:
        saver.add_result((fake_stm.scan_image, fake_stm.scan_image()))
    xr = saver.dataset.to_xarray_dataset()
    image = xr["stm_fake_scan_image"]
    assert image.dims == ("stm_fake_scan_line", "stm_fake_scan_pixel")
    np.testing.assert_allclose(image.values, truth_frame(12, 16), rtol=1e-6)


@pytest.mark.parametrize(
    "fault, error",
    [
        ("drop", NanonisConnectionError),
        ("malformed", NanonisProtocolError),
        ("error", NanonisError),
        ("stall", NanonisTimeoutError),
    ],
)
def test_faults_raise_clearly_and_the_next_call_reconnects(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis, fault: str, error: type[Exception]
) -> None:
    assert fake_stm.bias() == pytest.approx(1.0)
    fake_nanonis.faults["Scan.FrameDataGrab"] = fault
    with pytest.raises(error) as info:
        fake_stm.last_frame()
    message = str(info.value)
    assert "stm_fake_last_frame" in message  # QCoDeS names the parameter
    assert {"drop": "FrameDataGrab", "malformed": "header", "error": "simulated controller error",
            "stall": "FrameDataGrab"}[fault] in message
    # the next call works (on a fresh connection where the old stream is unusable)
    frame = fake_stm.last_frame()
    np.testing.assert_array_equal(frame, truth_frame(12, 16))
    assert fake_stm.bias() == pytest.approx(1.0)


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="port"):
        NanonisSTM("bad_port", port=70000)
    with pytest.raises(ValueError, match="safety"):
        NanonisSTM("bad_safety", safety=3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bias_V"):
        NanonisSTM("bad_env", safety={"max_bias_V": -1})
    with pytest.raises(ValueError, match="row_order"):
        NanonisSTM("bad_rows", row_order="top_first")


def test_snapshot_reads_settings_but_never_scans(fake_stm: NanonisSTM, fake_nanonis: FakeNanonis) -> None:
    snap = fake_stm.snapshot(update=True)
    assert not {"Scan.Action", "Scan.FrameDataGrab"} & set(fake_nanonis.commands())
    assert snap["parameters"]["bias"]["value"] == pytest.approx(1.0)
    assert "value" not in snap["parameters"]["scan_image"]
    assert snap["metadata"]["safety_envelope"]["max_bias_V"] == 10.0


def test_scan_image_raises_when_the_scan_does_not_end_in_time(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    fake_nanonis.state["wait_timed_out"] = 1
    fake_stm.scan_timeout(2.5)
    assert fake_stm.wait_end_of_scan(0.1) is False
    with pytest.raises(TimeoutError, match=r"did not end within 2.5 s"):
        fake_stm.scan_image()
    assert ("Scan.WaitEndOfScan", (2500,)) in fake_nanonis.requests
    assert "Scan.FrameDataGrab" not in fake_nanonis.commands()
    with pytest.raises(ValueError, match="timeout_s"):
        fake_stm.wait_end_of_scan(-1.0)


def _sent(fake: FakeNanonis, command: str) -> list[tuple]:
    return [args for name, args in fake.requests if name == command]


def test_coarse_steps_towards_the_sample_are_an_approach(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    for steps in (10, 1):  # inside max_motor_steps, but the tip is tunnelling
        with pytest.raises(SafetyViolation, match="towards the sample"):
            fake_stm.coarse_move("Z-", steps)
    fake_stm.withdraw()
    with pytest.raises(SafetyViolation, match="towards the sample"):
        fake_stm.coarse_move("Z-", 2)  # more than max_approach_steps at once
    fake_stm.coarse_move("Z-", 1)
    with pytest.raises(SafetyViolation, match="not withdrawn"):
        fake_stm.coarse_move("Z-", 1)  # the step used the withdrawal up
    fake_stm.withdraw()
    with pytest.raises(SafetyViolation, match="not withdrawn"):
        fake_stm.coarse_move("Z-", 1)  # no surface check (feedback on) since the last step
    fake_stm.feedback(True)
    fake_stm.withdraw()
    fake_stm.coarse_move("Z-", 1)
    assert _sent(fake_nanonis, "Motor.StartMove") == [(5, 1, 0, 1), (5, 1, 0, 1)]
    fake_stm.coarse_move("Z+", 50)  # away from the sample: always allowed
    assert _sent(fake_nanonis, "Motor.StartMove")[-1] == (4, 50, 0, 1)


def test_approach_step_is_refused_when_the_controller_reports_feedback_on(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    fake_stm.withdraw()
    fake_nanonis.state["fb"] = 1  # switched on behind the driver's back (e.g. the GUI)
    with pytest.raises(SafetyViolation, match="feedback on"):
        fake_stm.coarse_move("Z-", 1)
    assert _sent(fake_nanonis, "Motor.StartMove") == []


def test_feedback_off_z_moves_are_bounded_by_the_tunnelling_position(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    fake_nanonis.state["z"] = 5e-9  # tunnelling here, feedback on
    fake_stm.feedback(False)  # records the tunnelling Z
    for z in (-150e-9, 2.9e-9):
        with pytest.raises(SafetyViolation, match="below the tunnelling position"):
            fake_stm.z_position(z)
        with pytest.raises(SafetyViolation, match="below the tunnelling position"):
            fake_stm.z_position.set_raw(z)
    fake_stm.z_position(3.5e-9)
    fake_stm.z_position(100e-9)
    fake_stm.z_position(3.1e-9)
    assert _sent(fake_nanonis, "ZCtrl.ZPosSet") == [(pytest.approx(3.5e-9),), (pytest.approx(100e-9),),
                                                     (pytest.approx(3.1e-9),)]


def test_feedback_off_z_moves_cannot_ratchet_down_without_a_known_tunnelling_z(
    fake_nanonis: FakeNanonis
) -> None:
    fake_nanonis.state.update(fb=0, z=10e-9)  # feedback already off when the driver starts
    stm = NanonisSTM("stm_ratchet", port=fake_nanonis.port, timeout=0.5)
    try:
        stm.z_position(8.5e-9)  # 1.5 nm below the Z found at the first move
        with pytest.raises(SafetyViolation, match="below the tunnelling position"):
            stm.z_position(7e-9)  # 3 nm below it, though only 1.5 nm below the present Z
        stm.feedback(True)
        fake_nanonis.state["z"] = 20e-9
        stm.feedback(False)
        stm.z_position(18.5e-9)  # a new tunnelling position
    finally:
        stm.close()


def test_set_raw_cannot_bypass_the_envelope(fake_nanonis: FakeNanonis) -> None:
    stm = NanonisSTM("stm_raw", port=fake_nanonis.port, timeout=0.5, safety={"max_bias_V": 2.0})
    try:
        stm.refresh_geometry()
        before = len(fake_nanonis.requests)
        for param, value in ((stm.bias, 5.0), (stm.setpoint_current, 1e-6),
                             (stm.scan_width, 5e-6), (stm.scan_centre_x, 6e-6),
                             (stm.z_position, 5e-6), (stm.bias, math.nan)):
            with pytest.raises(SafetyViolation):
                param.set_raw(value)
        sent = [name for name, _ in fake_nanonis.requests[before:] if not name.endswith("Get")]
        assert sent == []
        assert fake_nanonis.state["bias"] == 1.0
    finally:
        stm.close()


class _Shifty(float):
    """A number whose value changes after its first conversion: ``first``, then ``then``."""

    def __new__(cls, first: float, then: float) -> _Shifty:
        self = super().__new__(cls, first)
        self.first, self.then, self.calls = first, then, 0
        return self

    def __float__(self) -> float:
        self.calls += 1
        return self.first if self.calls == 1 else self.then


def test_a_value_that_changes_after_the_check_is_sent_as_checked(fake_nanonis: FakeNanonis) -> None:
    stm = NanonisSTM("stm_shifty", port=fake_nanonis.port, timeout=0.5,
                     safety={"max_bias_V": 4.0, "max_pulse_amplitude_V": 4.0})
    try:
        stm.bias_pulse(amplitude_V=_Shifty(3.0, 9.0), width_s=0.01)
        (pulse,) = _sent(fake_nanonis, "Bias.Pulse")
        assert pulse[2] == pytest.approx(3.0)  # the checked float, not a second conversion
        stm.tip_shaper(_Shifty(1e-9, 9e-9))
        (props,) = _sent(fake_nanonis, "TipShaper.PropsSet")
        assert props[3] == pytest.approx(-1e-9)  # the checked depth
        stm.move_tip(_Shifty(1e-6, 9e-6), 0.0)
        assert _sent(fake_nanonis, "FolMe.XYPosSet")[0][0] == pytest.approx(1e-6)
        with pytest.raises(SafetyViolation):
            stm.bias(_Shifty(3.0, 9.0))  # the validator saw 3.0, the setter's own check 9.0
        assert _sent(fake_nanonis, "Bias.Set") == []
    finally:
        stm.close()


def test_bias_pulse_takes_the_same_keyword_only_arguments_everywhere(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    """Issue 17: the driver, the client and the simulator took positional floats in swapped
    orders on this safety-relevant call; now all three take ``amplitude_V=``, ``width_s=`` only."""
    import inspect

    from qcodes_stmtip.nanonis.client import NanonisClient
    from qcodes_stmtip.sim.microscope import SimulatedMicroscope

    for func in (NanonisSTM.bias_pulse, NanonisClient.bias_pulse, SimulatedMicroscope.bias_pulse):
        params = inspect.signature(func).parameters
        assert params["amplitude_V"].kind is inspect.Parameter.KEYWORD_ONLY, func
        assert params["width_s"].kind is inspect.Parameter.KEYWORD_ONLY, func
        assert [n for n, p in params.items() if p.kind is not inspect.Parameter.KEYWORD_ONLY] == ["self"]
    before = len(fake_nanonis.requests)
    with pytest.raises(TypeError):
        fake_stm.bias_pulse(3.0, 0.01)  # type: ignore[misc]
    with pytest.raises(TypeError):
        fake_stm.client.bias_pulse(0.01, 3.0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        SimulatedMicroscope().bias_pulse(0.01, 3.0)  # type: ignore[misc]
    assert fake_nanonis.requests[before:] == []  # nothing sent
    fake_stm.bias_pulse(width_s=0.02, amplitude_V=2.5)
    name, (_, width, volts, _, _) = fake_nanonis.requests[-1]
    assert name == "Bias.Pulse" and width == pytest.approx(0.02) and volts == pytest.approx(2.5)


def test_construction_connects_and_prints_the_connect_message(
    fake_nanonis: FakeNanonis, capsys
) -> None:
    stm = NanonisSTM("stm_eager", port=fake_nanonis.port)
    try:
        assert fake_nanonis.commands() == ["Scan.FrameGet", "Scan.BufferGet", "Util.VersionGet"]
        assert "Connected to: SPECS Nanonis" in capsys.readouterr().out
        assert stm.scan_width.cache.valid and stm.pixels.cache.get() == 16  # geometry read
    finally:
        stm.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_construction_with_nothing_listening_fails_at_once_with_one_clear_error() -> None:
    port = _free_port()
    with pytest.raises(NanonisConnectionError,
                       match=rf"no Nanonis controller answers at 127.0.0.1:{port}.*connect_on_init"):
        NanonisSTM("stm_dead", port=port, timeout=0.5)
    assert "stm_dead" not in Instrument._all_instruments  # the name is free again
    stm = NanonisSTM("stm_dead", port=port, connect_on_init=False)  # lazy: nothing sent
    try:
        assert not stm.client.connected
        with pytest.raises(NanonisConnectionError):
            stm.bias()
    finally:
        stm.close()


def test_station_load_instrument_with_nothing_listening_raises_one_error(tmp_path) -> None:
    from qcodes.station import Station

    port = _free_port()
    config = tmp_path / "stm.station.yaml"
    config.write_text(
        "instruments:\n"
        "  stm:\n"
        "    type: qcodes_stmtip.drivers.nanonis_stm.NanonisSTM\n"
        f"    init:\n      address: 127.0.0.1\n      port: {port}\n      timeout: 0.5\n"
    )
    station = Station(config_file=str(config))
    with pytest.raises(NanonisConnectionError, match=f"127.0.0.1:{port}"):
        station.load_instrument("stm")
    assert "stm" not in station.components


def test_frame_record_before_the_first_frame_raises_and_then_follows_each_grab(
    fake_stm: NanonisSTM, fake_nanonis: FakeNanonis
) -> None:
    from qcodes_stmtip.drivers.nanonis_stm import frame_index_parameter

    with pytest.raises(RuntimeError, match="no frame acquired yet"):
        fake_stm.frame_bias()
    fake_stm.bias(0.7)
    fake_stm.last_frame()
    record = {p.short_name: p() for p in fake_stm.frame_parameters}
    assert record["frame_bias"] == pytest.approx(0.7) and record["frame_width"] == pytest.approx(20e-9)
    assert record["frame_direction"] == "up" and record["frame_timestamp"] > 0
    assert fake_stm.frame_setpoint_current.unit == "A" and fake_stm.frame_centre_x.unit == "m"
    assert list(fake_stm.scan_line()) == list(range(12)) and list(fake_stm.scan_pixel()) == list(range(16))
    frame_index = frame_index_parameter()
    frame_index(np.int64(3))
    for bad in (1.0, -1, True):
        with pytest.raises((TypeError, ValueError)):
            frame_index(bad)
