import numpy as np
import pytest

from qcodes_stmtip.sim.tips import TipState, sample_tip
from qcodes_stmtip.taxonomy import CLASSES


@pytest.mark.parametrize("surface", list(CLASSES))
def test_every_class_has_a_tip(surface):
    rng = np.random.default_rng(1)
    for label in CLASSES[surface]:
        tip = sample_tip(surface, label, rng)
        assert isinstance(tip, TipState) and tip.label == label


def test_hsi_tip_sharpness_orders_the_classes():
    rng = np.random.default_rng(2)
    radius = {c: np.median([sample_tip("hsi100", c, rng).apex_radius_m for _ in range(200)])
              for c in ("individual_atoms", "dimers_asymmetries", "rows")}
    assert radius["individual_atoms"] < radius["dimers_asymmetries"] < radius["rows"]


def test_double_tip_has_a_second_apex_nanometres_away():
    rng = np.random.default_rng(3)
    for _ in range(20):
        tip = sample_tip("au111", "double_tip", rng)
        assert tip.is_double and 0.7e-9 <= np.hypot(*tip.double_offset_m) <= 3.5e-9


def test_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="surface"):
        sample_tip("si111", "rows", rng)
    with pytest.raises(ValueError, match="label"):
        sample_tip("au111", "rows", rng)
    with pytest.raises(ValueError, match="apex_radius_m"):
        TipState("rows", apex_radius_m=-1e-10)
    with pytest.raises(ValueError, match="double_ratio"):
        TipState("rows", double_ratio=2.0)
