"""Where a conditioning experiment images and where it acts on the tip.

:class:`AreaPlanner` lays fresh sample areas on a square grid (``spacing_m`` apart,
area 0 at the starting frame centre, further areas nearest first) inside the allowed
bounds, and proposes action sites on a square ring just outside the imaging frame of
an area, ``site_spacing_m`` apart (``rings`` concentric rings, each ``site_spacing_m``
further out) — so that indentations never land in the frame that judges the tip and any
two sites keep the spacing. Metres.
"""

from __future__ import annotations

import math

__all__ = ["AreaPlanner"]


class AreaPlanner:
    """Fresh areas and action sites.

    Args:
        start: centre ``(x, y)`` of the first frame (area 0), m.
        frame_size_m: side of the (square) imaging frame, m.
        bounds_x, bounds_y: ``(low, high)`` limits every frame and site must lie in, m.
        spacing_m: distance between neighbouring area centres, m.
        site_gap_m: distance of the site ring outside the frame edge, m.
        site_spacing_m: distance between neighbouring sites (and between rings), m.
        rings: concentric site rings around the frame.
    """

    def __init__(self, start: tuple[float, float], frame_size_m: float,
                 bounds_x: tuple[float, float], bounds_y: tuple[float, float], *,
                 spacing_m: float = 300e-9, site_gap_m: float = 5e-9,
                 site_spacing_m: float = 10e-9, rings: int = 3) -> None:
        for name, value in (("frame_size_m", frame_size_m), ("spacing_m", spacing_m),
                            ("site_gap_m", site_gap_m), ("site_spacing_m", site_spacing_m)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"AreaPlanner {name} must be a positive length in m, got {value!r}")
        self.frame_size_m = float(frame_size_m)
        self.spacing_m = float(spacing_m)
        self.site_gap_m = float(site_gap_m)
        self.site_spacing_m = float(site_spacing_m)
        if isinstance(rings, bool) or not isinstance(rings, int) or rings < 1:
            raise ValueError(f"AreaPlanner rings must be an integer >= 1, got {rings!r}")
        self.rings = rings
        self.bounds_x = (float(bounds_x[0]), float(bounds_x[1]))
        self.bounds_y = (float(bounds_y[0]), float(bounds_y[1]))
        self.ring0_m = self.frame_size_m / 2 + self.site_gap_m
        self.reach_m = self.ring0_m + (rings - 1) * self.site_spacing_m
        if spacing_m < 2 * self.reach_m:
            raise ValueError(f"AreaPlanner spacing_m={spacing_m!r} must be at least the frame plus "
                             f"its site ring ({2 * self.reach_m!r} m)")
        x0, y0 = float(start[0]), float(start[1])
        if not self.fits((x0, y0)):
            raise ValueError(f"AreaPlanner start={start!r}: the frame and its action sites do not fit "
                             f"in the bounds x {self.bounds_x}, y {self.bounds_y}")
        n = int(max(self.bounds_x[1] - self.bounds_x[0], self.bounds_y[1] - self.bounds_y[0])
                // self.spacing_m) + 1
        grid = [(x0 + i * self.spacing_m, y0 + j * self.spacing_m)
                for i in range(-n, n + 1) for j in range(-n, n + 1)]
        grid = [c for c in grid if self.fits(c)]
        grid.sort(key=lambda c: (round(math.hypot(c[0] - x0, c[1] - y0), 15), c[1], c[0]))
        self.centres: list[tuple[float, float]] = grid

    def fits(self, centre: tuple[float, float]) -> bool:
        """Whether the frame at ``centre`` and its site ring lie inside the bounds."""
        x, y = centre
        r = self.reach_m
        return (self.bounds_x[0] <= x - r and x + r <= self.bounds_x[1]
                and self.bounds_y[0] <= y - r and y + r <= self.bounds_y[1])

    def __len__(self) -> int:
        return len(self.centres)

    def centre(self, area: int) -> tuple[float, float]:
        """Frame centre of area ``area`` (m); ``IndexError`` when there are no more areas."""
        if not 0 <= area < len(self.centres):
            raise IndexError(f"area {area} does not exist: only {len(self.centres)} fit in the bounds")
        return self.centres[area]

    def sites(self, area: int) -> list[tuple[float, float]]:
        """Candidate action sites around area ``area``'s frame, inner ring first, in order of use."""
        cx, cy = self.centre(area)
        out = []
        for ring in range(self.rings):
            r = self.ring0_m + ring * self.site_spacing_m
            side = 2 * r
            per_side = max(1, int(side // self.site_spacing_m + 1e-9))
            step = side / per_side
            # walk the square ring counter-clockwise from the bottom-left corner
            for k in range(4 * per_side):
                s, t = divmod(k, per_side)
                d = t * step
                x, y = [(-r + d, -r), (r, -r + d), (r - d, r), (-r, r - d)][s]
                out.append((cx + x, cy + y))
        return out
