"""Deprecated location of the tip-state vocabulary: re-exports :mod:`qcodes_stmtip.taxonomy`.

Kept so that existing scripts keep working; new code imports :mod:`qcodes_stmtip.taxonomy`.
"""

from __future__ import annotations

from qcodes_stmtip.taxonomy import (
    CLASSES,
    GOOD_CLASSES,
    SURFACES,
    TIP_CHANGE,
    check_label,
    check_surface,
)

__all__ = ["CLASSES", "GOOD_CLASSES", "SURFACES", "TIP_CHANGE", "check_label", "check_surface"]
