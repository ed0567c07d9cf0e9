"""Scienta Omicron MATRIX images (``*.Z_mtrx``, ``*.I_mtrx``…), through ``access2thematrix``.

``access2thematrix`` (0.4.4, pure Python + numpy, works on numpy 2) is the
maintained reader for these files; this module maps its ``Im`` object onto an
:class:`STMFrame`. A MATRIX image file holds one channel (named by its
extension: ``Z`` in ``x--1_1.Z_mtrx``) and needs the session's parameter file
``<prefix>_0001.mtrx`` in the same folder (``<prefix>`` = the name up to the
last ``--``); without it the reader raises :class:`FrameReadError` naming the
missing file.

The package returns up to four traces (forward/up, backward/up, forward/down,
backward/down) with row 0 at the bottom, already x-mirrored for backward
traces. ``direction="forward"`` takes forward/up when present, else
forward/down. For an unfinished frame the package returns only the acquired
lines; they are padded back to the full line count with NaN rows (at the top
for an "up" trace, at the bottom for a "down" one) and the full frame's
extent and centre are reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qcodes_stmtip.io.frame import (
    FrameReadError,
    NoSuchChannelError,
    STMFrame,
    check_direction,
    guard_reader,
)

SUFFIX_TAIL = "_mtrx"


def parameter_file(path: str | Path) -> Path:
    """Return the ``.mtrx`` parameter file that must sit beside a MATRIX image file."""
    path = Path(path)
    name = path.name
    if "--" not in name:
        raise FrameReadError(
            path, "MATRIX image file names have the form '<prefix>--<run>_<cycle>.<channel>_mtrx'"
        )
    return path.with_name(name[: name.rindex("--")] + "_0001.mtrx")


def channel_of(path: str | Path) -> str:
    """Return the channel name encoded in a MATRIX image file's extension (``Z``, ``I``…)."""
    suffix = Path(path).suffix
    if not suffix.endswith(SUFFIX_TAIL) or len(suffix) <= len(SUFFIX_TAIL) + 1:
        raise FrameReadError(path, f"not a MATRIX image file (suffix {suffix!r})")
    return suffix[1 : -len(SUFFIX_TAIL)]


@guard_reader
def list_channels(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """Return ``[(channel, stored directions)]`` of a MATRIX image file (one channel per file)."""
    mtrx, traces = _open(Path(path))
    directions = tuple(d for d in ("forward", "backward") if any(t.startswith(d) for t in traces))
    return [(channel_of(path), directions)]


def _open(path: Path):  # -> (MtrxData, list[str])
    import access2thematrix

    if not path.is_file():
        raise FrameReadError(path, "no such file")
    param = parameter_file(path)
    if not param.is_file():
        raise FrameReadError(
            path, f"missing MATRIX parameter file {param.name!r} beside the image file"
        )
    mtrx = access2thematrix.MtrxData()
    traces, message = mtrx.open(str(path))
    if not traces:
        raise FrameReadError(path, f"access2thematrix could not read it: {message}")
    return mtrx, list(traces.values())


def _param(mtrx, key: str) -> float | None:
    value = mtrx.param.get(key)
    if not value:
        return None
    try:
        return float(value[0])
    except (TypeError, ValueError):
        return None


@guard_reader
def read_matrix(
    path: str | Path, channel: str | None = None, direction: str = "forward"
) -> STMFrame:
    """Read the forward or backward trace of a MATRIX image file."""
    path = Path(path)
    check_direction(direction)
    name = channel_of(path)
    if channel is not None and channel.lower() != name.lower():
        raise NoSuchChannelError(
            path, f"no channel {channel!r}; a MATRIX file holds one channel, here: {name}"
        )
    mtrx, traces = _open(path)
    candidates = [t for t in (f"{direction}/up", f"{direction}/down") if t in traces]
    if not candidates:
        raise NoSuchChannelError(path, f"no {direction} trace; available: {', '.join(traces)}")
    trace = candidates[0]
    image, message = mtrx.select_image(trace)
    data = np.asarray(image.data, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise FrameReadError(path, f"trace {trace!r} holds no data ({message})")
    scan_up = trace.endswith("/up")
    (x_offset, _), (y_offset, full_height), (_, _, full_lines, _), _ = mtrx.axis
    width = float(image.width)
    if data.shape[0] < int(full_lines):
        pad = np.full((int(full_lines) - data.shape[0], data.shape[1]), np.nan)
        data = np.vstack([data, pad] if scan_up else [pad, data])
        centre_x, centre_y, height = float(x_offset), float(y_offset), float(full_height)
    else:
        centre_x, centre_y, height = (
            float(image.x_offset),
            float(image.y_offset),
            float(image.height),
        )
    unit = image.channel_name_and_unit[1] if len(image.channel_name_and_unit) > 1 else ""
    return STMFrame(
        data=np.ascontiguousarray(data),
        unit=unit,
        width_m=width,
        height_m=height,
        centre_x_m=centre_x,
        centre_y_m=centre_y,
        angle_deg=float(getattr(image, "angle", 0.0) or 0.0),
        scan_up=scan_up,
        channel=name,
        direction=direction,  # type: ignore[arg-type]
        bias_V=_param(mtrx, "EEPA::GapVoltageControl.Voltage"),
        setpoint_A=_param(mtrx, "EEPA::Regulator.Setpoint_1"),
        source=str(path),
        metadata={
            "format": "matrix",
            "trace": trace,
            "traces": traces,
            "parameter_file": str(parameter_file(path)),
        },
    )
