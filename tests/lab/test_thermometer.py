"""Thermometer frame metadata from the QCoDeS Lakeshore 336 driver on pyvisa-sim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qcodes.instrument import Instrument
from qcodes.instrument_drivers.Lakeshore import LakeshoreModel336

from qcodes_stmtip.lab.thermometer import ThermometerError, frame_metadata, read_temperature_K


@pytest.fixture(autouse=True)
def _close_instruments() -> Iterator[None]:
    yield
    Instrument.close_all()


def test_frame_metadata_reads_the_sensor_in_kelvin() -> None:
    # QCoDeS's own simulation file; it reports 100 K on every input
    lakeshore = LakeshoreModel336("ls336", "GPIB::2::INSTR", pyvisa_sim_file="lakeshore_model336.yaml")
    meta = frame_metadata(lakeshore, "B")
    assert meta == {"temperature_K": pytest.approx(100.0), "temperature_sensor": "ls336_B"}
    assert read_temperature_K(lakeshore) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="channel 'E'.*available: \\['A', 'B', 'C', 'D'\\]"):
        frame_metadata(lakeshore, "E")


def _lakeshore_yaml(path: Path, kelvin: str, status: int) -> Path:
    """A one-input Lakeshore 336 simulation with a chosen reading and sensor status."""
    path.write_text(
        f"""spec: "1.0"
devices:
  ls:
    eom:
      GPIB INSTR:
        q: "\\r\\n"
        r: "\\r\\n"
    error: ERROR
    dialogues:
      - q: "*IDN?"
        r: "LSCI,MODEL336,LSA1234,2.9"
      - q: "KRDG? A"
        r: "{kelvin}"
      - q: "RDGST? A"
        r: "{status}"
resources:
  GPIB::3::INSTR:
    device: ls
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("kelvin", "status", "message"),
    [("+4.321", 16, "Temp Underrange"), ("+0.000", 0, "not a valid temperature"),
     ("+4.321", 1, "Invalid Reading")],
)
def test_unusable_readings_raise(tmp_path: Path, kelvin: str, status: int, message: str) -> None:
    sim = _lakeshore_yaml(tmp_path / "ls.yaml", kelvin, status)
    lakeshore = LakeshoreModel336("ls_bad", "GPIB::3::INSTR", visalib=f"{sim}@sim")
    with pytest.raises(ThermometerError, match=message):
        frame_metadata(lakeshore, "A")


def test_a_good_reading_from_a_custom_simulation(tmp_path: Path) -> None:
    sim = _lakeshore_yaml(tmp_path / "ls.yaml", "+4.321", 0)
    lakeshore = LakeshoreModel336("ls_lt", "GPIB::3::INSTR", visalib=f"{sim}@sim")
    assert frame_metadata(lakeshore, "A")["temperature_K"] == pytest.approx(4.321)
