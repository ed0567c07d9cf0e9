"""Gwyddion ``.gwy`` files, through a bounded parser of our own.

A ``.gwy`` file is ``GWYP`` followed by one serialised ``GwyContainer``: an object is
its NUL-terminated type name, a little-endian uint32 byte size and its components; a
component is a NUL-terminated name, a one-letter type code and the value (``b c i q d``
scalars, ``s`` a NUL-terminated string, ``o`` an object; ``C I Q D S O`` arrays of
those, each a uint32 count then the items). The parser here checks every size and
count against the bytes that are left, so each step consumes at least one byte and a
truncated or corrupt file raises :class:`FrameReadError` — it cannot loop or allocate
more than the file holds. ``gwyfile``'s own parser (release 0.3.0) loops for ever on
many truncated files (a ``find`` that returns −1 gives a zero-size component), so it
is not used for reading; the tests still write files with ``gwyfile``.

This module maps one ``GwyDataField`` onto an :class:`STMFrame`. Gwyddion stores
values in base SI units, row 0 at the *top* of the image and ``(xoff, yoff)`` as the
top-left corner, with its y axis pointing down; the reader flips the rows so row 0 is
the bottom line and reports the centre as ``(xoff + xreal/2, yoff + yreal/2)`` in
Gwyddion's own coordinates. When the lateral unit is not metres (unitless synthetic
data) the extent is reported as unknown (``None``) and the raw values go to
``metadata``.

A ``.gwy`` file does not say whether a field is a trace or a retrace; a field
whose title contains "backward" or "retrace" is taken as backward, any other
as forward. Bias, setpoint and scan direction are not part of the format.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcodes_stmtip.io.frame import (
    FrameReadError,
    NoSuchChannelError,
    STMFrame,
    check_direction,
    guard_reader,
)

#: Deepest object nesting accepted (real files nest 3–4 levels).
MAX_DEPTH = 32
_MAGIC = b"GWYP"
_SCALARS = {"b": "<B", "c": "<B", "i": "<i", "q": "<q", "d": "<d"}
_ARRAYS = {"C": np.dtype("u1"), "I": np.dtype("<i4"), "Q": np.dtype("<i8"), "D": np.dtype("<f8")}
_FIELD_KEY = re.compile(r"/(\d+)/data")


@dataclass
class GwyObject:
    """One deserialised Gwyddion object: its type name and components by name."""

    name: str
    components: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """The component ``key``, or ``default``."""
        return self.components.get(key, default)


class _Parser:
    """Bounded recursive-descent parser of one serialised object tree."""

    def __init__(self, raw: bytes, path: Path) -> None:
        self.raw = raw
        self.path = path

    def fail(self, problem: str, pos: int) -> FrameReadError:
        return FrameReadError(self.path, f"not a readable Gwyddion file (truncated or corrupt): {problem} "
                                         f"(byte {pos} of {len(self.raw)})")

    def cstring(self, pos: int, end: int, what: str) -> tuple[str, int]:
        nul = self.raw.find(b"\0", pos, end)
        if nul < 0:
            raise self.fail(f"unterminated {what}", pos)
        try:
            return self.raw[pos:nul].decode("utf-8"), nul + 1
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8", pos) from None

    def uint32(self, pos: int, end: int, what: str) -> tuple[int, int]:
        if pos + 4 > end:
            raise self.fail(f"{what} cut off", pos)
        return struct.unpack_from("<I", self.raw, pos)[0], pos + 4

    def object(self, pos: int, end: int, depth: int) -> tuple[GwyObject, int]:
        if depth > MAX_DEPTH:
            raise self.fail(f"objects nested deeper than {MAX_DEPTH}", pos)
        name, pos = self.cstring(pos, end, "object name")
        size, pos = self.uint32(pos, end, f"size of object {name!r}")
        stop = pos + size
        if stop > end:
            raise self.fail(f"object {name!r} declares {size} bytes but {end - pos} are left", pos)
        obj = GwyObject(name)
        while pos < stop:
            key, pos = self.cstring(pos, stop, f"component name in {name!r}")
            if pos >= stop:
                raise self.fail(f"component {key!r} of {name!r} has no type code", pos)
            code = chr(self.raw[pos])
            obj.components[key], pos = self.value(code, pos + 1, stop, depth, key)
        return obj, stop

    def value(self, code: str, pos: int, end: int, depth: int, key: str) -> tuple[Any, int]:
        if code in _SCALARS:
            fmt = _SCALARS[code]
            size = struct.calcsize(fmt)
            if pos + size > end:
                raise self.fail(f"value of {key!r} cut off", pos)
            value = struct.unpack_from(fmt, self.raw, pos)[0]
            if code == "b":
                value = value != 0
            elif code == "c":
                value = chr(value)  # a one-character string (gwyfile writes 1-letter titles so)
            return value, pos + size
        if code == "s":
            return self.cstring(pos, end, f"string {key!r}")
        if code == "o":
            return self.object(pos, end, depth + 1)
        if code in _ARRAYS or code in "SO":
            count, pos = self.uint32(pos, end, f"length of array {key!r}")
            if code in _ARRAYS:
                dtype = _ARRAYS[code]
                nbytes = count * dtype.itemsize
                if pos + nbytes > end:
                    raise self.fail(f"array {key!r} of {count} items needs {nbytes} bytes, "
                                    f"{end - pos} are left", pos)
                return np.frombuffer(self.raw, dtype=dtype, count=count, offset=pos), pos + nbytes
            if count > end - pos:  # every item takes at least one byte
                raise self.fail(f"array {key!r} declares {count} items in {end - pos} bytes", pos)
            items: list[Any] = []
            for _ in range(count):
                if code == "S":
                    item, pos = self.cstring(pos, end, f"string in {key!r}")
                else:
                    item, pos = self.object(pos, end, depth + 1)
                items.append(item)
            return items, pos
        raise self.fail(f"unknown type code {code!r} of component {key!r}", pos - 1)


def parse_gwy(raw: bytes, path: str | Path) -> GwyObject:
    """Parse the bytes of a ``.gwy`` file into its top-level object (bounded; see module doc).

    Raises :class:`FrameReadError` naming ``path`` for a missing magic, a truncated or
    corrupt structure, or bytes after the object.
    """
    path = Path(path)
    if not raw.startswith(_MAGIC):
        raise FrameReadError(path, "not a readable Gwyddion file (no 'GWYP' magic)")
    parser = _Parser(bytes(raw), path)
    obj, end = parser.object(len(_MAGIC), len(raw), 0)
    if end != len(raw):
        raise parser.fail(f"{len(raw) - end} bytes after the top-level object", end)
    return obj


def _unit(fld: GwyObject, key: str) -> str:
    unit = fld.get(key)
    if not isinstance(unit, GwyObject):
        return ""
    text = unit.get("unitstr", "")
    return text if isinstance(text, str) else ""


def _field_direction(title: str) -> str:
    lower = title.lower()
    return "backward" if ("backward" in lower or "retrace" in lower) else "forward"


def _load_fields(path: Path) -> dict[str, GwyObject]:
    """``{title: GwyDataField object}`` of the file, in storage order."""
    container = parse_gwy(path.read_bytes(), path)
    if container.name != "GwyContainer":
        raise FrameReadError(path, f"not a Gwyddion container (top-level object {container.name!r})")
    fields: dict[str, GwyObject] = {}
    for key, value in container.components.items():
        match = _FIELD_KEY.fullmatch(key)
        if match is None or not isinstance(value, GwyObject) or value.name != "GwyDataField":
            continue
        title = container.get(f"{key}/title")
        if isinstance(title, str):
            fields.setdefault(title, value)
    if not fields:
        raise FrameReadError(path, "the Gwyddion file holds no data field (image channel)")
    return fields


def _number(path: Path, title: str, fld: GwyObject, key: str, default: float | None = None,
            positive: bool = False) -> float:
    value = fld.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FrameReadError(path, f"field {title!r}: {key} is missing or not a number ({value!r})")
    number = float(value)
    if not math.isfinite(number) or (positive and number <= 0):
        kind = "a positive finite number" if positive else "finite"
        raise FrameReadError(path, f"field {title!r}: {key} must be {kind}, got {number!r}")
    return number


@guard_reader
def list_channels(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Return ``[(field title, (direction,)), …]`` of a ``.gwy`` file."""
    path = Path(path)
    return [(title, (_field_direction(title),)) for title in _load_fields(path)]


@guard_reader
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
            raise NoSuchChannelError(path, f"no {direction} data field; available: {', '.join(titles)}")
        title = matching[0]
    else:
        lookup = {t.lower(): t for t in titles}
        if channel in fields:
            title = channel
        elif channel.lower() in lookup:
            title = lookup[channel.lower()]
        else:
            raise NoSuchChannelError(path, f"no channel {channel!r}; available: {', '.join(titles)}")
        if _field_direction(title) != direction:
            raise FrameReadError(
                path, f"channel {title!r} is a {_field_direction(title)} field, not {direction}"
            )
    fld = fields[title]
    xres, yres = fld.get("xres"), fld.get("yres")
    if not (isinstance(xres, int) and isinstance(yres, int) and xres >= 1 and yres >= 1):
        raise FrameReadError(path, f"field {title!r}: xres/yres must be positive integers, "
                                   f"got {xres!r}, {yres!r}")
    values = fld.get("data")
    if not isinstance(values, np.ndarray) or values.dtype != np.dtype("<f8"):
        raise FrameReadError(path, f"field {title!r}: no array of doubles as 'data'")
    if values.size != xres * yres:
        raise FrameReadError(
            path, f"field {title!r}: {values.size} data values != xres × yres = {xres} × {yres}"
        )
    data = values.astype(np.float64).reshape(yres, xres)
    if np.isinf(data).any():
        raise FrameReadError(path, f"field {title!r}: data contains infinities")
    xreal = _number(path, title, fld, "xreal", positive=True)
    yreal = _number(path, title, fld, "yreal", positive=True)
    xoff = _number(path, title, fld, "xoff", 0.0)
    yoff = _number(path, title, fld, "yoff", 0.0)
    xy_unit, z_unit = _unit(fld, "si_unit_xy"), _unit(fld, "si_unit_z")
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
