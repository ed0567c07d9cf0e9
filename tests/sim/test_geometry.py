import math

import numpy as np
import pytest

from qcodes_stmtip.sim.geometry import ScanGeometry


def test_setpoints_are_pixel_centres_around_the_centre():
    g = ScanGeometry(10e-9, 5e-9, 10, 5, centre_x=1e-6, centre_y=-2e-6)
    x, y = g.x_setpoints(), g.y_setpoints()
    assert x.shape == (10,) and y.shape == (5,)
    assert np.allclose(np.diff(x), 1e-9) and np.allclose(np.diff(y), 1e-9)
    assert math.isclose(x.mean(), 1e-6) and math.isclose(y.mean(), -2e-6)
    assert math.isclose(x[0], 1e-6 - 5e-9 + 0.5e-9)


def test_rotation_is_clockwise():
    g = ScanGeometry(10e-9, 10e-9, 8, 8, angle_deg=90.0)
    xs, ys = g.to_sample(np.array(1.0), np.array(0.0))
    # frame +x rotated 90 degrees clockwise points to sample -y
    assert abs(xs) < 1e-12 and math.isclose(ys, -1.0)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"width": 0.0}, "width"),
    ({"height": -1e-9}, "height"),
    ({"pixels": -64}, "pixels"),
    ({"lines": 1}, "lines"),
    ({"pixels": 64.5}, "pixels"),
    ({"angle_deg": float("nan")}, "angle_deg"),
])
def test_bad_geometry_names_the_field(kwargs, name):
    base = {"width": 10e-9, "height": 10e-9, "pixels": 64, "lines": 64}
    base.update(kwargs)
    with pytest.raises(ValueError, match=name):
        ScanGeometry(**base)
