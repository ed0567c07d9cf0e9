import pytest

from qcodes_stmtip.taxonomy import CLASSES, GOOD_CLASSES, SURFACES, check_label, check_surface


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


def test_frame_states_and_content_classes():
    from qcodes_stmtip.taxonomy import (
        CONTENT_CLASSES,
        UNCERTAIN,
        UNCLASSIFIED,
        FrameState,
        Quality,
    )

    assert FrameState.UNCERTAIN == UNCERTAIN == "uncertain"
    assert FrameState.UNCLASSIFIED == UNCLASSIFIED == "unclassified"
    assert type(UNCERTAIN) is str and type(UNCLASSIFIED) is str  # plain text for datasets
    assert {str(q) for q in Quality} == {"good", "bad", "uncertain", "unclassified"}
    assert set(CONTENT_CLASSES) == set(SURFACES)
    for surface in SURFACES:
        assert CONTENT_CLASSES[surface] <= set(CLASSES[surface])
        assert not CONTENT_CLASSES[surface] & GOOD_CLASSES[surface]
        assert not set(FrameState) & set(CLASSES[surface])  # never a class name


def test_one_source_for_the_vocabulary_and_the_metadata_key():
    from qcodes_stmtip import taxonomy
    from qcodes_stmtip.conditioning import experiment, oracle
    from qcodes_stmtip.monitor import monitor, results
    from qcodes_stmtip.sim import classes

    assert classes.CLASSES is taxonomy.CLASSES and classes.GOOD_CLASSES is taxonomy.GOOD_CLASSES
    assert experiment.CONTENT_CLASSES is taxonomy.CONTENT_CLASSES
    assert oracle.ORACLE_KEY == monitor.METADATA_KEY == results.METADATA_KEY == taxonomy.METADATA_KEY
    assert results.UNCLASSIFIED == taxonomy.UNCLASSIFIED and results.UNCERTAIN_STATE == taxonomy.UNCERTAIN
