"""The one frame type every reader returns: :class:`STMFrame`.

Row convention (shared with the simulator): ``data[0]`` is the *bottom* line of
the frame (y = centre_y − height/2) and ``data[:, 0]`` the left column (x
increasing with column). Readers flip the stored arrays as their format
requires, so ``scan_up`` only says in which order the rows were *acquired*
("up" = bottom line first). Lines that were never acquired (unfinished scans)
are NaN rows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from qcodes_stmtip.extras import MissingExtraError

#: The two scan directions along a line a reader can return.
DIRECTIONS: tuple[str, str] = ("forward", "backward")

Direction = Literal["forward", "backward"]


class FrameReadError(ValueError):
    """A file could not be read as a frame; the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # one line
        super().__init__(f"{self.path}: {self.problem}")


class NoSuchChannelError(FrameReadError):
    """The file was read but holds no channel (or direction) of the name asked for."""


#: Longest exception text a wrapped reader error repeats.
_MAX_PROBLEM_CHARS = 300


def guard_reader[**P, R](reader: Callable[P, R]) -> Callable[P, R]:
    """Make every error of ``reader(path, …)`` a one-line :class:`FrameReadError` naming the file.

    A :class:`FrameReadError` passes unchanged, and so does a
    :class:`~qcodes_stmtip.extras.MissingExtraError` (the install, not the file, is at
    fault); any other exception (a third-party
    parser's ``ValueError``/``AttributeError``/``struct.error``, an invalid
    :class:`STMFrame` field, ``MemoryError``, ``RecursionError``…) is re-raised as a
    :class:`FrameReadError` chained to it. ``KeyboardInterrupt``/``SystemExit`` pass.
    """

    @functools.wraps(reader)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return reader(*args, **kwargs)
        except (FrameReadError, MissingExtraError):
            raise
        except Exception as exc:
            path = args[0] if args else kwargs.get("path", "<unknown file>")
            text = " ".join(str(exc).split())
            if len(text) > _MAX_PROBLEM_CHARS:
                text = text[:_MAX_PROBLEM_CHARS] + "…"
            raise FrameReadError(
                path, f"unreadable file ({type(exc).__name__}: {text})" if text
                else f"unreadable file ({type(exc).__name__})"
            ) from exc

    return guarded


def check_direction(direction: str) -> Direction:
    """Return ``direction`` if it is ``"forward"`` or ``"backward"``, else raise ValueError."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    return direction  # type: ignore[return-value]


def _optional_positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(
            f"{name} must be a positive finite number of metres or None, got {value!r}"
        )
    return value


def _optional_finite(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite or None, got {value!r}")
    return value


@dataclass(frozen=True)
class STMFrame:
    """One channel of one scan, in SI units.

    Attributes:
        data: ``(lines, pixels)`` float64 array; metres for Z, amperes for current
            (see ``unit``); row 0 is the bottom line; NaN rows were not acquired.
        unit: SI unit of ``data`` (``"m"``, ``"A"``, ``"V"``, ``""`` for grey levels…).
        width_m, height_m: physical extent along x and y in metres; ``None`` when the
            file does not record it (PNG, NPY, raw arrays).
        centre_x_m, centre_y_m: frame centre in metres; ``None`` when unknown.
        angle_deg: frame rotation in degrees, clockwise (Nanonis convention).
        scan_up: True if the bottom line was acquired first, False if the top
            line was, None when the file does not say.
        channel: channel name as the file calls it (``"Z"``, ``"Current"``…).
        direction: ``"forward"`` (trace) or ``"backward"`` (retrace), already
            mirrored so that column index increases with x.
        bias_V: sample bias in volts, if recorded.
        setpoint_A: current setpoint in amperes, if recorded.
        source: path of the file read (empty for in-memory frames).
        metadata: format-specific extras (raw header values, z-controller state…).
    """

    data: np.ndarray
    unit: str = "m"
    width_m: float | None = None
    height_m: float | None = None
    centre_x_m: float | None = None
    centre_y_m: float | None = None
    angle_deg: float = 0.0
    scan_up: bool | None = None
    channel: str = "Z"
    direction: Direction = "forward"
    bias_V: float | None = None
    setpoint_A: float | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
            raise ValueError(
                f"data must be a non-empty 2-D (lines, pixels) array, got shape {data.shape}"
            )
        if np.isinf(data).any():
            raise ValueError("data must not contain infinities (use NaN for missing points)")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "width_m", _optional_positive("width_m", self.width_m))
        object.__setattr__(self, "height_m", _optional_positive("height_m", self.height_m))
        object.__setattr__(self, "centre_x_m", _optional_finite("centre_x_m", self.centre_x_m))
        object.__setattr__(self, "centre_y_m", _optional_finite("centre_y_m", self.centre_y_m))
        angle = _optional_finite("angle_deg", self.angle_deg)
        object.__setattr__(self, "angle_deg", 0.0 if angle is None else angle)
        object.__setattr__(self, "bias_V", _optional_finite("bias_V", self.bias_V))
        object.__setattr__(self, "setpoint_A", _optional_finite("setpoint_A", self.setpoint_A))
        check_direction(self.direction)
        if self.scan_up is not None and not isinstance(self.scan_up, bool | np.bool_):
            raise ValueError(f"scan_up must be True, False or None, got {self.scan_up!r}")

    @property
    def lines(self) -> int:
        """Number of lines (rows)."""
        return int(self.data.shape[0])

    @property
    def pixels(self) -> int:
        """Number of pixels per line (columns)."""
        return int(self.data.shape[1])

    @property
    def has_extent(self) -> bool:
        """True if the physical width and height are known."""
        return self.width_m is not None and self.height_m is not None

    @property
    def pixel_size_m(self) -> tuple[float, float] | None:
        """``(dx, dy)`` pixel pitch in metres, or None when the extent is unknown."""
        if self.width_m is None or self.height_m is None:
            return None
        return self.width_m / self.pixels, self.height_m / self.lines

    @property
    def acquired_rows(self) -> np.ndarray:
        """Boolean mask over rows: True where the whole line was acquired (no NaN in it)."""
        return ~np.isnan(self.data).any(axis=1)

    @property
    def is_complete(self) -> bool:
        """True if every line was fully acquired (no NaN anywhere in ``data``)."""
        return bool(self.acquired_rows.all())

    def acquired(self) -> STMFrame:
        """Return a frame cropped to the block of fully acquired rows (``self`` if complete).

        Rows with NaN (never reached, or half-scanned when the scan stopped) are
        cut from both ends; NaN rows between acquired ones stay. The height and
        centre follow the rows kept (the centre moves along the frame's own y
        axis, rotated by ``angle_deg`` clockwise), so the pixel size is
        preserved. Raises ValueError if no line was fully acquired.
        """
        mask = self.acquired_rows
        if mask.all():
            return self
        if not mask.any():
            raise ValueError(
                f"{self.source or 'frame'}: no line was fully acquired (every row has NaN)"
            )
        rows = np.flatnonzero(mask)
        first, last = int(rows[0]), int(rows[-1]) + 1
        data = self.data[first:last]
        height, centre_x, centre_y = self.height_m, self.centre_x_m, self.centre_y_m
        if self.height_m is not None:
            dy = self.height_m / self.lines
            height = dy * data.shape[0]
            if self.centre_x_m is not None and self.centre_y_m is not None:
                shift = dy * (0.5 * (first + last) - 0.5 * self.lines)
                angle = math.radians(self.angle_deg)
                # The frame's +y axis, rotated clockwise by angle_deg, is (sin a, cos a).
                centre_x = self.centre_x_m + shift * math.sin(angle)
                centre_y = self.centre_y_m + shift * math.cos(angle)
        return replace(self, data=data, height_m=height, centre_x_m=centre_x, centre_y_m=centre_y)
