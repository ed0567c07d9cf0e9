"""PulseGenerator: the SCPI bytes of one pulse, the shared pulse envelope, errors, pyvisa-sim."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymeasure.adapters import ProtocolAdapter
from qcodes.instrument import Instrument

from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
from qcodes_stmtip.lab.pulse_generator import PulseGenerator, PulseGeneratorError
from qcodes_stmtip.safety import SafetyViolation
from qcodes_stmtip.sim.controller import SimulatedNanonisServer, serve_simulator


def _configure_bytes(high_first: bool, level: str, width: str, period: str) -> list[tuple[str, None]]:
    levels = [(f"VOLT:HIGH {level}", None), ("VOLT:LOW 0.000000", None)]
    if not high_first:
        levels = [(f"VOLT:LOW {level}", None), ("VOLT:HIGH 0.000000", None)]
    return [
        ("OUTP:LOAD INF", None),
        ("FUNC PULS", None),
        *levels,
        ("FUNC:PULS:TRAN:BOTH 8.400000e-09", None),
        (f"FUNC:PULS:PER {period}", None),
        (f"FUNC:PULS:WIDT {width}", None),
        ("BURS:MODE TRIG", None),
        ("BURS:NCYC 1", None),
        ("BURS:STAT 1", None),
        ("TRIG:SOUR BUS", None),
    ]


def _fire_bytes(esr_after_config: str = "+0", esr_after_fire: str = "+0") -> list[tuple]:
    return [
        ("OUTP 1", None),
        ("*ESR?", esr_after_config),
        ("*TRG;*WAI", None),
        ("*OPC?", "1"),
        ("*ESR?", esr_after_fire),
    ]


@pytest.fixture(autouse=True)
def _close_instruments() -> Iterator[None]:
    yield
    Instrument.close_all()


def _generator(pairs, name: str = "pulser", **kwargs) -> tuple[PulseGenerator, ProtocolAdapter]:
    adapter = ProtocolAdapter(list(pairs), connection_attributes={"timeout": 2000})
    return PulseGenerator(name, adapter, **kwargs), adapter


def test_a_positive_pulse_is_one_bus_triggered_burst() -> None:
    pairs = _configure_bytes(True, "2.500000", "1.000000e-03", "1.000000e-02") + _fire_bytes()
    generator, adapter = _generator(pairs)
    generator.pulse(2.5, 1e-3)
    assert adapter._index == len(pairs)  # every byte, in this order
    assert adapter.connection.timeout == 2000  # the VISA timeout is restored


def test_a_negative_short_pulse_sets_the_low_level_first() -> None:
    # period = max(10 w, w + 1 us) = 1.05 us for a 50 ns pulse
    pairs = _configure_bytes(False, "-1.200000", "5.000000e-08", "1.050000e-06") + _fire_bytes()
    generator, adapter = _generator(pairs)
    generator.pulse(-1.2, 50e-9)
    assert adapter._index == len(pairs)


def test_out_of_envelope_pulses_send_nothing() -> None:
    generator, adapter = _generator([], safety={"max_pulse_amplitude_V": 4.0,
                                                "max_pulse_width_s": 0.01})
    for amplitude, width in ((4.5, 1e-3), (-4.01, 1e-3), (2.0, 0.02), (2.0, 0.0), (float("nan"), 1e-3)):
        with pytest.raises(SafetyViolation):
            generator.pulse(amplitude, width)
    with pytest.raises(SafetyViolation):
        generator.voltage_high(4.5)
    with pytest.raises(SafetyViolation):
        generator.pulse_width(0.5)
    with pytest.raises(ValueError, match="amplitude_V"):
        generator.pulse(1e-4, 1e-3)  # below the generator's resolution
    with pytest.raises(ValueError, match="width_s"):
        generator.pulse(1.0, 1e-9)
    assert adapter._index == 0


def test_the_level_swing_is_bounded_too() -> None:
    generator, adapter = _generator([("VOLT:LOW -3.000000", None)],
                                    safety={"max_pulse_amplitude_V": 4.0})
    generator.voltage_low(-3.0)
    with pytest.raises(SafetyViolation, match="pulse amplitude"):
        generator.voltage_high(3.0)  # each level is fine; the 6 V swing is not
    assert adapter._index == 1


def test_a_generator_error_is_raised_not_ignored() -> None:
    pairs = _configure_bytes(True, "1.000000", "1.000000e-03", "1.000000e-02") + _fire_bytes()[:2]
    pairs[-1] = ("*ESR?", "+32")  # command error while configuring
    generator, adapter = _generator(pairs)
    with pytest.raises(PulseGeneratorError, match="ESR"):
        generator.pulse(1.0, 1e-3)
    assert adapter._index == len(pairs)  # never triggered


@pytest.fixture
def server() -> Iterator[SimulatedNanonisServer]:
    srv = serve_simulator(surface="au111", seed=2, time_acceleration=1000.0,
                          initial_tip="individual_atoms")
    try:
        yield srv
    finally:
        srv.stop()


def test_the_stms_envelope_bounds_the_generator(server: SimulatedNanonisServer) -> None:
    stm = NanonisSTM("stm_env", port=server.port, safety={"max_pulse_amplitude_V": 2.0})
    generator, adapter = _generator([], stm="stm_env")
    with pytest.raises(SafetyViolation):
        generator.pulse(3.0, 1e-3)  # inside the default 10 V, outside the STM's 2 V
    assert adapter._index == 0
    assert generator.metadata["stm"] == "stm_env"
    stm.close()


def test_simulated_generator_replays_the_pulse_on_the_simulator(
    server: SimulatedNanonisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[float, float]] = []
    original = server.microscope.bias_pulse

    def recording_pulse(*, amplitude_V: float, width_s: float, **kwargs):
        seen.append((width_s, amplitude_V))
        return original(amplitude_V=amplitude_V, width_s=width_s, **kwargs)

    monkeypatch.setattr(server.microscope, "bias_pulse", recording_pulse)
    stm = NanonisSTM("stm_sim", port=server.port)
    generator = PulseGenerator("pulser_sim", "GPIB::10::INSTR", pyvisa_sim_file="agilent_33500.sim.yaml",
                               stm=stm, simulate_pulse_on_stm=True)
    generator.pulse(3.0, 2e-3)
    assert seen == [(pytest.approx(2e-3), pytest.approx(3.0))]  # the simulated tip saw it
    assert generator.voltage_high() == pytest.approx(3.0)
    assert generator.voltage_low() == pytest.approx(0.0)
    assert generator.pulse_width() == pytest.approx(2e-3)
    assert generator.shape() == "PULS" and generator.trigger_source() == "BUS"
    assert generator.output() is True and generator.burst_state() is True
    with pytest.raises(ValueError, match="pyvisa-sim"):
        PulseGenerator("pulser_real", ProtocolAdapter([]), stm=stm, simulate_pulse_on_stm=True)
