"""The simulator's ground truth read as a classifier would report a frame: :func:`frame_truth`.

One place that knows how :class:`~qcodes_stmtip.sim.microscope.GroundTruth` maps to a
frame's tip state, so callers (the oracle classifier of tests and benchmarks) do not
read its fields themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qcodes_stmtip.sim.microscope import GroundTruth

__all__ = ["FrameTruth", "frame_truth"]


@dataclass(frozen=True)
class FrameTruth:
    """What the current (or last) frame truly showed.

    ``state``: its class (the label of the apex that imaged most of its lines; before the
    first frame, the present tip's label); ``tip_changed``: the apex changed during it.
    """

    state: str
    tip_changed: bool


def frame_truth(truth: GroundTruth) -> FrameTruth:
    """The :class:`FrameTruth` of a :meth:`SimulatedMicroscope.ground_truth` reading."""
    return FrameTruth(truth.frame_label or truth.tip_label, bool(truth.tip_change_lines))
