"""Scan-frame geometry: size, pixel grid, centre and rotation of an STM frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScanGeometry:
    """One scan frame, in Nanonis conventions.

    ``width``/``height`` are in metres along the frame's fast (x) and slow (y) axes;
    ``pixels`` per line and ``lines`` per frame; ``centre_x``/``centre_y`` in metres in
    sample (piezo) coordinates; ``angle_deg`` is the frame rotation, clockwise, in degrees.
    """

    width: float
    height: float
    pixels: int
    lines: int
    centre_x: float = 0.0
    centre_y: float = 0.0
    angle_deg: float = 0.0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.floating | np.integer) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ScanGeometry.{name} must be a positive finite length in metres, got {value!r}")
        for name in ("pixels", "lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
                raise ValueError(f"ScanGeometry.{name} must be an integer >= 2, got {value!r}")
        for name in ("centre_x", "centre_y", "angle_deg"):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.floating | np.integer) or not math.isfinite(value):
                raise ValueError(f"ScanGeometry.{name} must be a finite number, got {value!r}")

    @property
    def pixel_size_x(self) -> float:
        """Distance between neighbouring pixels along a line, in metres."""
        return self.width / self.pixels

    @property
    def pixel_size_y(self) -> float:
        """Distance between neighbouring lines, in metres."""
        return self.height / self.lines

    def x_setpoints(self) -> np.ndarray:
        """Pixel-centre x positions along a line, frame-relative, in metres (−w/2…+w/2 + centre_x)."""
        dx = self.pixel_size_x
        return self.centre_x + (np.arange(self.pixels) + 0.5) * dx - self.width / 2

    def y_setpoints(self) -> np.ndarray:
        """Line-centre y positions, row 0 at the bottom, in metres (−h/2…+h/2 + centre_y)."""
        dy = self.pixel_size_y
        return self.centre_y + (np.arange(self.lines) + 0.5) * dy - self.height / 2

    def to_sample(self, x_frame: np.ndarray, y_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map frame-relative offsets from the centre (metres) to sample coordinates (metres).

        The frame is rotated clockwise by ``angle_deg`` about its centre.
        """
        a = math.radians(self.angle_deg)
        c, s = math.cos(a), math.sin(a)
        xs = self.centre_x + c * x_frame + s * y_frame
        ys = self.centre_y - s * x_frame + c * y_frame
        return xs, ys
