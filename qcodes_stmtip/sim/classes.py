"""Surfaces and tip-state class names shared by the simulator, classifier and conditioning.

The class names and their order follow Gordon et al. (RSI 90, 103704, 2019): four
H:Si(100) classes plus a separate binary tip-change network, and six classes for
Au(111) and Cu(111).
"""

from __future__ import annotations

#: Surfaces the simulator renders, by their short names.
SURFACES: tuple[str, ...] = ("hsi100", "au111", "cu111")

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

#: Name of the separate binary tip-change label on H:Si(100).
TIP_CHANGE: str = "tip_change"


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
