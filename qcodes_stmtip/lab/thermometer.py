"""Sample temperature for each frame's metadata, from a QCoDeS Lakeshore temperature controller.

The thermometer is the QCoDeS driver itself (e.g.
:class:`qcodes.instrument_drivers.Lakeshore.LakeshoreModel336`, simulated with QCoDeS's own
``lakeshore_model336.yaml``); :func:`frame_metadata` reads one sensor channel and returns
the dict that the monitor and conditioning loops store with each frame.
"""

from __future__ import annotations

import math
from typing import Any

from qcodes.instrument import InstrumentModule

__all__ = ["ThermometerError", "frame_metadata", "read_temperature_K"]


class ThermometerError(RuntimeError):
    """The temperature controller reported an unusable reading (sensor status not OK, ≤ 0 K)."""


def _channel(thermometer: Any, channel: str) -> Any:
    submodules = getattr(thermometer, "submodules", {})
    sensor = submodules.get(channel)
    if not (isinstance(sensor, InstrumentModule) and hasattr(sensor, "temperature")):
        available = sorted(
            name
            for name, sub in submodules.items()
            if isinstance(sub, InstrumentModule) and hasattr(sub, "temperature")
        )
        raise ValueError(
            f"channel {channel!r} is not a sensor of {getattr(thermometer, 'name', thermometer)!r}; "
            f"available: {available}"
        )
    return sensor


def read_temperature_K(thermometer: Any, channel: str = "A") -> float:
    """Read sensor ``channel`` of a Lakeshore-style controller in kelvin (two queries).

    The sensor status (``RDGST?``) must be ``"OK"`` and the reading (``KRDG?``) finite
    and positive; otherwise :class:`ThermometerError` names the sensor and the problem.
    """
    sensor = _channel(thermometer, channel)
    status = sensor.sensor_status() if hasattr(sensor, "sensor_status") else "OK"
    if status != "OK":
        raise ThermometerError(f"{sensor.full_name}: sensor status is {status!r}, not 'OK'")
    value = float(sensor.temperature())
    if not (math.isfinite(value) and value > 0):
        raise ThermometerError(f"{sensor.full_name}: temperature reading {value!r} K is not a valid temperature")
    return value


def frame_metadata(thermometer: Any, channel: str = "A") -> dict[str, Any]:
    """``{"temperature_K": T, "temperature_sensor": "<instrument>_<channel>"}`` for a frame's metadata."""
    value = read_temperature_K(thermometer, channel)
    return {"temperature_K": value, "temperature_sensor": _channel(thermometer, channel).full_name}
