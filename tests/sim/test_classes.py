import pytest

from qcodes_stmtip.sim.classes import CLASSES, GOOD_CLASSES, SURFACES, check_label, check_surface


def test_class_scheme_matches_the_paper():
    assert SURFACES == ("hsi100", "au111", "cu111")
    assert CLASSES["hsi100"] == ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
    assert CLASSES["au111"] == CLASSES["cu111"] == (
        "individual_atoms", "double_tip", "tip_change", "step_edge", "impurity", "corruption")
    assert GOOD_CLASSES["hsi100"] == {"dimers_asymmetries", "individual_atoms", "rows"}
    assert GOOD_CLASSES["au111"] == GOOD_CLASSES["cu111"] == {"individual_atoms"}


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="surface"):
        check_surface("graphite")
    with pytest.raises(ValueError, match="label"):
        check_label("hsi100", "double_tip")
