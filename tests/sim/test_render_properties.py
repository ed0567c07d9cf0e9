"""Property tests: any valid frame of any class renders to finite heights of the right shape."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcodes_stmtip.sim.frames import render_scan
from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.tips import sample_tip
from qcodes_stmtip.taxonomy import CLASSES

pairs = [(s, c) for s, classes in CLASSES.items() for c in classes]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pair=st.sampled_from(pairs),
    pixels=st.integers(2, 48),
    lines=st.integers(2, 48),
    width_nm=st.floats(1.0, 100.0),
    aspect=st.floats(0.2, 5.0),
    angle=st.floats(-720.0, 720.0),
    centre=st.tuples(st.floats(-5e-6, 5e-6), st.floats(-5e-6, 5e-6)),
    seed=st.integers(0, 2**32 - 1),
    scan_up=st.booleans(),
)
def test_any_frame_renders(pair, pixels, lines, width_nm, aspect, angle, centre, seed, scan_up):
    surface, label = pair
    rng = np.random.default_rng(seed)
    g = ScanGeometry(width_nm * 1e-9, width_nm * aspect * 1e-9, pixels, lines, centre[0], centre[1], angle)
    scan = render_scan(surface, sample_tip(surface, label, rng), g, rng, sample_seed=seed % 97,
                       scan_up=scan_up)
    assert scan.forward.shape == scan.backward.shape == (lines, pixels)
    assert np.all(np.isfinite(scan.forward)) and np.all(np.isfinite(scan.backward))
    assert scan.label in CLASSES[surface]
    assert all(0 < line < lines for line in scan.tip_change_lines)
