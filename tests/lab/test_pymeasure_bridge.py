"""PyMeasureInstrument: the bytes a QCoDeS get/set produces, access modes, errors, pyvisa-sim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pymeasure.adapters import ProtocolAdapter
from pymeasure.instruments import Instrument as PMInstrument
from pymeasure.instruments.validators import strict_range
from pymeasure.test import expected_protocol
from qcodes.instrument import Instrument
from qcodes.validators import Numbers

from qcodes_stmtip.lab.pymeasure_bridge import PyMeasureInstrument, resolve_sim_file

REPO = Path(__file__).resolve().parents[2]


class Supply(PMInstrument):
    """A small PyMeasure SCPI-style instrument defined the PyMeasure way."""

    voltage = PMInstrument.control(
        "VOLT?", "VOLT %g", "Output voltage (V).", validator=strict_range, values=[0, 30]
    )
    current = PMInstrument.measurement("MEAS:CURR?", "Measured current (A).")
    display = PMInstrument.setting("DISP '%s'", "Front-panel text.")

    def __init__(self, adapter, name="Supply", **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)


@pytest.fixture(autouse=True)
def _close_instruments() -> Iterator[None]:
    yield
    Instrument.close_all()


def _bridge(pairs: list[tuple[str | None, str | None]]) -> tuple[PyMeasureInstrument, ProtocolAdapter]:
    adapter = ProtocolAdapter(pairs)
    bridge = PyMeasureInstrument("supply", driver=Supply(adapter))
    bridge.add_bridged_parameter("voltage", "voltage", unit="V", vals=Numbers(0, 12))
    bridge.add_bridged_parameter("current", "current", unit="A", get_parser=lambda a: 1e-3 * a)
    bridge.add_bridged_parameter("display", "display")
    return bridge, adapter


def test_set_and_get_send_pymeasures_bytes() -> None:
    bridge, adapter = _bridge([("VOLT 3.25", None), ("VOLT?", "3.25"), ("MEAS:CURR?", "12.5")])
    bridge.voltage(3.25)
    assert bridge.voltage() == pytest.approx(3.25)
    assert bridge.current() == pytest.approx(0.0125)  # get_parser: mA -> A
    assert adapter._index == 3 and adapter._read_buffer is None


def test_access_modes_follow_the_pymeasure_property_kind() -> None:
    bridge, adapter = _bridge([("DISP 'hello'", None)])
    assert bridge.voltage.gettable and bridge.voltage.settable
    assert bridge.current.gettable and not bridge.current.settable
    assert bridge.display.settable and not bridge.display.gettable
    bridge.display("hello")
    assert adapter._index == 1
    with pytest.raises(NotImplementedError):
        bridge.current(1.0)


def test_qcodes_validator_refuses_before_any_byte_is_sent() -> None:
    bridge, adapter = _bridge([])  # any write would fail the protocol assertion
    with pytest.raises(ValueError, match="12"):
        bridge.voltage(20.0)  # PyMeasure would accept 20 V; the QCoDeS limit is 12 V
    assert adapter._index == 0 and adapter._write_buffer is None


def test_pymeasure_validator_still_applies() -> None:
    adapter = ProtocolAdapter([])
    bridge = PyMeasureInstrument("loose", driver=Supply(adapter))
    bridge.add_bridged_parameter("voltage", "voltage", unit="V")
    with pytest.raises(ValueError, match="not in range"):
        bridge.voltage(31.0)
    assert adapter._index == 0


def test_channel_properties_via_dotted_names_and_expected_protocol() -> None:
    from pymeasure.instruments.agilent import Agilent33500

    with expected_protocol(
        Agilent33500,
        [("SOUR2:FUNC:PULS:WIDT 2.000000e-03", None), ("SOUR2:FUNC:PULS:WIDT?", "+2.0E-03")],
    ) as generator:
        bridge = PyMeasureInstrument("fg", driver=generator)
        bridge.add_bridged_parameter("width_2", "ch_2.pulse_width", unit="s")
        bridge.width_2(2e-3)
        assert bridge.width_2() == pytest.approx(2e-3)
        assert "pulse width" in bridge.width_2.__doc__


def test_bad_construction_and_names_raise_clearly() -> None:
    adapter = ProtocolAdapter([])
    bridge = PyMeasureInstrument("named", driver=Supply(adapter))
    with pytest.raises(ValueError, match="no property 'volts'"):
        bridge.add_bridged_parameter("volts", "volts")
    with pytest.raises(ValueError, match="no 'ch_9'"):
        bridge.add_bridged_parameter("x", "ch_9.voltage")
    with pytest.raises(ValueError, match="dotted name"):
        bridge.add_bridged_parameter("x", "a..b")
    with pytest.raises(ValueError, match="either driver"):
        PyMeasureInstrument("both", "GPIB::1", driver=Supply(ProtocolAdapter([])),
                            pymeasure_class=Supply)
    with pytest.raises(ValueError, match="pymeasure_class and address"):
        PyMeasureInstrument("neither")
    with pytest.raises(ValueError, match="cannot be imported"):
        PyMeasureInstrument("bad", "GPIB::1", pymeasure_class="pymeasure.instruments.NoSuchThing")


def test_resolve_sim_file_forms() -> None:
    shipped = REPO / "qcodes_stmtip" / "lab" / "sim_yaml"
    assert resolve_sim_file("agilent_33500.sim.yaml") == shipped / "agilent_33500.sim.yaml"
    assert resolve_sim_file(shipped / "attocube_anc300.sim.yaml").is_file()
    # package data, as QCoDeS ships its sims: found through the package, not the checkout
    assert resolve_sim_file("qcodes_stmtip.lab.sim_yaml:attocube_anc300.sim.yaml") == \
        shipped / "attocube_anc300.sim.yaml"
    packaged = resolve_sim_file("qcodes.instrument.sims:lakeshore_model336.yaml")
    assert packaged.name == "lakeshore_model336.yaml" and packaged.is_file()
    with pytest.raises(FileNotFoundError, match="tried"):
        resolve_sim_file("no_such_device.yaml")
    with pytest.raises(FileNotFoundError, match="no Python package"):
        resolve_sim_file("no_such_package_xyz:device.yaml")


def test_builds_the_driver_on_pyvisa_sim_and_forwards_ask() -> None:
    bridge = PyMeasureInstrument(
        "fg_sim",
        "GPIB::10::INSTR",
        pymeasure_class="pymeasure.instruments.agilent.Agilent33500",
        pyvisa_sim_file="agilent_33500.sim.yaml",
        pymeasure_kwargs={"read_termination": "\n", "write_termination": "\n"},
    )
    assert bridge.simulated and bridge.metadata["simulated"] is True
    idn = bridge.get_idn()
    assert idn["vendor"] == "Agilent Technologies" and idn["model"] == "33521A"
    bridge.add_bridged_parameter("frequency", "frequency", unit="Hz")
    bridge.frequency(12345.0)
    assert bridge.frequency() == pytest.approx(12345.0)
    assert bridge.ask("FREQ?") == "+1.234500000E+04"
    snapshot = bridge.snapshot(update=True)
    assert snapshot["parameters"]["frequency"]["value"] == pytest.approx(12345.0)


def test_sim_yaml_files_are_declared_package_data() -> None:
    import tomllib

    from qcodes_stmtip.lab.pymeasure_bridge import SIM_YAML_DIR

    assert SIM_YAML_DIR == Path(__import__("qcodes_stmtip.lab", fromlist=["x"]).__file__).parent / "sim_yaml"
    names = {p.name for p in SIM_YAML_DIR.glob("*.yaml")}
    assert {"attocube_anc300.sim.yaml", "agilent_33500.sim.yaml",
            "simulated_lab.station.yaml", "simulated_stm.station.yaml"} <= names
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "lab/sim_yaml/*.yaml" in data["qcodes_stmtip"]
    assert not list((REPO / "instruments").glob("*.yaml"))  # one copy, inside the package
