"""The tip-state vocabulary shared by every part: surfaces, classes and frame states.

One source for the simulator, the classifier, the monitor, labelling and conditioning;
hardware-side code imports it from here, never from :mod:`qcodes_stmtip.sim`.
The class names and their order follow Gordon et al. (RSI 90, 103704, 2019): four
H:Si(100) classes plus a separate binary tip-change network, and six classes for
Au(111) and Cu(111).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CLASSES",
    "CONTENT_CLASSES",
    "GOOD_CLASSES",
    "METADATA_KEY",
    "SURFACES",
    "SURFACE_STATE_ONSET_V",
    "TIP_CHANGE",
    "UNCERTAIN",
    "UNCLASSIFIED",
    "FrameState",
    "Quality",
    "check_label",
    "check_surface",
]

#: Surfaces the package knows (the simulator renders all of them), by their short names.
SURFACES: tuple[str, ...] = ("hsi100", "au111", "cu111")
#: Onset of the Shockley surface state (V, sample bias) of the surfaces that have one: the
#: step in dI/dV that a sharp, clean tip shows (the spectroscopic tip check, the simulator).
SURFACE_STATE_ONSET_V: dict[str, float] = {"au111": -0.50, "cu111": -0.44}

_METAL_CLASSES: tuple[str, ...] = (
    "individual_atoms",
    "double_tip",
    "tip_change",
    "step_edge",
    "impurity",
    "corruption",
)

#: Class names per surface, in the order a classifier's outputs use.
CLASSES: dict[str, tuple[str, ...]] = {
    "hsi100": ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect"),
    "au111": _METAL_CLASSES,
    "cu111": _METAL_CLASSES,
}

#: Classes that mean "the tip is good enough, keep scanning".
GOOD_CLASSES: dict[str, frozenset[str]] = {
    "hsi100": frozenset({"dimers_asymmetries", "individual_atoms", "rows"}),
    "au111": frozenset({"individual_atoms"}),
    "cu111": frozenset({"individual_atoms"}),
}

#: Classes that show the sample rather than the tip (relocate, do not condition).
CONTENT_CLASSES: dict[str, frozenset[str]] = {
    "hsi100": frozenset(),
    "au111": frozenset({"step_edge", "impurity"}),
    "cu111": frozenset({"step_edge", "impurity"}),
}

#: Name of the separate binary tip-change label on H:Si(100).
TIP_CHANGE: str = "tip_change"


class FrameState(StrEnum):
    """A frame's tip state when it is not a class name (compares equal to its text)."""

    #: The majority class is below its confidence threshold.
    UNCERTAIN = "uncertain"
    #: The frame could not be classified at all.
    UNCLASSIFIED = "unclassified"


class Quality(StrEnum):
    """A frame's tip quality, as stored in ``tip_quality`` (compares equal to its text)."""

    GOOD = "good"
    BAD = "bad"
    UNCERTAIN = "uncertain"
    UNCLASSIFIED = "unclassified"


#: Plain-text forms of the two non-class states (what datasets and CSV files hold).
UNCERTAIN: str = FrameState.UNCERTAIN.value
UNCLASSIFIED: str = FrameState.UNCLASSIFIED.value

#: Run-metadata key under which a tip-state classifier (the monitor, or the simulator's
#: oracle standing in for it) describes itself in a QCoDeS dataset.
METADATA_KEY: str = "tip_monitor"


def check_surface(surface: str, argument: str = "surface") -> str:
    """Return ``surface`` if it is known, else raise ``ValueError`` naming ``argument``."""
    if surface not in SURFACES:
        raise ValueError(f"{argument}={surface!r} is not a known surface; expected one of {SURFACES}")
    return surface


def check_label(surface: str, label: str, argument: str = "label") -> str:
    """Return ``label`` if it is a class of ``surface``, else raise ``ValueError``."""
    check_surface(surface)
    if label not in CLASSES[surface]:
        raise ValueError(
            f"{argument}={label!r} is not a class of surface {surface!r}; "
            f"expected one of {CLASSES[surface]}"
        )
    return label
