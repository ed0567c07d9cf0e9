"""The area planner: fresh areas on a grid inside the bounds, action sites around the frame."""

from __future__ import annotations

import math

import pytest

from qcodes_stmtip.conditioning.areas import AreaPlanner


def test_area_planner_grid_and_sites() -> None:
    planner = AreaPlanner((0.0, 0.0), 20e-9, (-1e-6, 1e-6), (-0.5e-6, 0.5e-6), spacing_m=300e-9)
    assert planner.centre(0) == (0.0, 0.0)
    # every area fits, the nearest come first, all distinct and a spacing apart
    dists = [math.hypot(*c) for c in planner.centres]
    assert dists == sorted(dists)
    assert len(planner) == 7 * 3  # x: -900..900 nm (7), y: -300..300 nm (3)
    assert planner.reach_m == pytest.approx(35e-9)
    for c in planner.centres:
        assert planner.fits(c)
    sites = planner.sites(4)
    cx, cy = planner.centre(4)
    ring0 = sites[:12]
    for x, y in ring0:  # the inner ring lies 5 nm outside the 20 nm frame
        assert max(abs(x - cx), abs(y - cy)) == pytest.approx(15e-9)
    assert len(sites) == 12 + 20 + 28 and len(set(sites)) == len(sites)  # rings at 15, 25, 35 nm
    gaps = [math.hypot(a[0] - b[0], a[1] - b[1]) for i, a in enumerate(sites) for b in sites[i + 1:]]
    assert min(gaps) >= 10e-9 * (1 - 1e-9)
    # a small frame still has room for more indentations than one area allows
    small = AreaPlanner((0.0, 0.0), 8e-9, (-1e-6, 1e-6), (-1e-6, 1e-6))
    assert len(small.sites(0)) >= 6 + 4
    with pytest.raises(IndexError, match="only 21"):
        planner.centre(21)
    with pytest.raises(ValueError, match="spacing_m"):
        AreaPlanner((0.0, 0.0), 20e-9, (-1e-6, 1e-6), (-1e-6, 1e-6), spacing_m=60e-9)
    with pytest.raises(ValueError, match="rings"):
        AreaPlanner((0.0, 0.0), 20e-9, (-1e-6, 1e-6), (-1e-6, 1e-6), rings=0)
    with pytest.raises(ValueError, match="start"):
        AreaPlanner((0.99e-6, 0.0), 20e-9, (-1e-6, 1e-6), (-1e-6, 1e-6))
