"""Gwyddion ``.gwy`` files, through the maintained ``gwyfile`` package.

``gwyfile`` (pure Python, numpy only, release 0.3.0 in 2026) parses the
serialised ``GwyContainer``; this module only maps one ``GwyDataField`` onto
an :class:`STMFrame`. Gwyddion stores values in base SI units, row 0 at the
*top* of the image and ``(xoff, yoff)`` as the top-left corner, with its y axis
pointing down; the reader flips the rows so row 0 is the bottom line and
reports the centre as ``(xoff + xreal/2, yoff + yreal/2)`` in Gwyddion's own
coordinates. When the lateral unit is not metres (unitless synthetic data) the
extent is reported as unknown (``None``) and the raw values go to ``metadata``.

A ``.gwy`` file does not say whether a field is a trace or a retrace; a field
whose title contains "backward" or "retrace" is taken as backward, any other
as forward. Bias, setpoint and scan direction are not part of the format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qcodes_stmtip.io.frame import FrameReadError, STMFrame, check_direction


def _unit(field: Any, key: str) -> str:
    unit = field.get(key)
    if unit is None:
        return ""
    return str(unit.get("unitstr", "") or "")


def _field_direction(title: str) -> str:
    lower = title.lower()
    return "backward" if ("backward" in lower or "retrace" in lower) else "forward"


def _load_fields(path: Path) -> dict[str, Any]:
    import gwyfile
    import gwyfile.util

    try:
        container = gwyfile.load(str(path))
        fields = gwyfile.util.get_datafields(container)
    except Exception as exc:  # gwyfile raises bare ValueError/struct errors on bad input
        raise FrameReadError(
            path, f"not a readable Gwyddion file ({type(exc).__name__}: {exc})"
        ) from exc
    if not fields:
        raise FrameReadError(path, "the Gwyddion file holds no data field (image channel)")
    return dict(fields)


def list_channels(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Return ``[(field title, (direction,)), …]`` of a ``.gwy`` file."""
    path = Path(path)
    return [(title, (_field_direction(title),)) for title in _load_fields(path)]


def read_gwy(path: str | Path, channel: str | None = None, direction: str = "forward") -> STMFrame:
    """Read one data field of a Gwyddion file (``channel`` = its title).

    With ``channel=None`` the first field of the requested direction is taken.
    Raises :class:`FrameReadError` for unreadable files and unknown channels.
    """
    path = Path(path)
    check_direction(direction)
    fields = _load_fields(path)
    titles = list(fields)
    if channel is None:
        matching = [t for t in titles if _field_direction(t) == direction]
        if not matching:
            raise FrameReadError(path, f"no {direction} data field; available: {', '.join(titles)}")
        title = matching[0]
    else:
        lookup = {t.lower(): t for t in titles}
        if channel in fields:
            title = channel
        elif channel.lower() in lookup:
            title = lookup[channel.lower()]
        else:
            raise FrameReadError(path, f"no channel {channel!r}; available: {', '.join(titles)}")
        if _field_direction(title) != direction:
            raise FrameReadError(
                path, f"channel {title!r} is a {_field_direction(title)} field, not {direction}"
            )
    field = fields[title]
    xres, yres = int(field["xres"]), int(field["yres"])
    data = np.asarray(field.data, dtype=np.float64)
    if data.shape != (yres, xres):
        raise FrameReadError(
            path, f"field {title!r}: data shape {data.shape} != (yres, xres) = {(yres, xres)}"
        )
    xreal, yreal = float(field["xreal"]), float(field["yreal"])
    xoff, yoff = float(field.get("xoff", 0.0) or 0.0), float(field.get("yoff", 0.0) or 0.0)
    xy_unit, z_unit = _unit(field, "si_unit_xy"), _unit(field, "si_unit_z")
    metric = xy_unit == "m"
    return STMFrame(
        data=np.ascontiguousarray(data[::-1]),
        unit=z_unit,
        width_m=xreal if metric else None,
        height_m=yreal if metric else None,
        centre_x_m=xoff + xreal / 2 if metric else None,
        centre_y_m=yoff + yreal / 2 if metric else None,
        scan_up=None,
        channel=title,
        direction=direction,  # type: ignore[arg-type]
        source=str(path),
        metadata={
            "format": "gwyddion",
            "channels": titles,
            "xy_unit": xy_unit,
            "xreal": xreal,
            "yreal": yreal,
            "xoff": xoff,
            "yoff": yoff,
        },
    )
