"""Simulated STM physics: surfaces, tips, instrument realism, frames and tip dynamics.

Pure numpy/scipy. Public entry points: :func:`render_scan`, :class:`ScanGeometry`,
:class:`TipState`, :func:`sample_tip`, :class:`TipDynamics`.
"""

from qcodes_stmtip.sim.dynamics import TipDynamics
from qcodes_stmtip.sim.frames import SimScan, render_scan
from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.tips import TipState, sample_tip
from qcodes_stmtip.taxonomy import CLASSES, GOOD_CLASSES, SURFACES

__all__ = [
    "CLASSES",
    "GOOD_CLASSES",
    "SURFACES",
    "ScanGeometry",
    "SimScan",
    "TipDynamics",
    "TipState",
    "render_scan",
    "sample_tip",
]
