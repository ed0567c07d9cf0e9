"""Tip states: the physical apex parameters that produce each class of image.

A :class:`TipState` is what the renderer in :mod:`qcodes_stmtip.sim.frames` images the
surface with: a Gaussian apex of radius ``apex_radius_m`` (lateral resolution; sharp
≈ 30–60 pm resolves H atoms, ≈ 200 pm only shows dimer rows, ≥ 400 pm is blurry), an
elongation of that apex (``elongation`` ≥ 1 along ``elongation_angle_deg``), an optional
second apex (``double_offset_m`` from the main apex, relative current weight
``double_ratio`` and recess ``double_dz_m``; a short offset of 0.2–0.5 nm images as
asymmetric features, a long one of 1–4 nm as duplicated "ghost" features), the apex
height ``apex_z_m`` (a tip change moves it, giving a height step between lines),
``instability`` (rate of scan glitches: stripes, jumps, lost feedback),
``contamination`` (mobile adsorbate on the apex: noise spikes and streaks) and, on
H:Si(100), ``buckling`` (0–1: how strongly the apex's field freezes the flip-flopping Si
dimers into a zig-zag, the "asymmetries" of the paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qcodes_stmtip.taxonomy import check_label


@dataclass
class TipState:
    """The imaging state of an STM apex (SI units; angles in degrees).

    ``label`` is the class this tip gives on a plain area of the surface
    (a name from :data:`qcodes_stmtip.taxonomy.CLASSES`).
    """

    label: str
    apex_radius_m: float = 50e-12
    elongation: float = 1.0
    elongation_angle_deg: float = 0.0
    double_offset_m: tuple[float, float] = (0.0, 0.0)
    double_ratio: float = 0.0
    double_dz_m: float = 0.0
    apex_z_m: float = 0.0
    instability: float = 0.0
    contamination: float = 0.0
    buckling: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.label, str):
            raise ValueError(f"TipState.label must be a class name string, got {self.label!r}")
        if not (math.isfinite(self.apex_radius_m) and self.apex_radius_m > 0):
            raise ValueError(f"TipState.apex_radius_m must be positive, got {self.apex_radius_m!r}")
        if not (math.isfinite(self.elongation) and self.elongation >= 1.0):
            raise ValueError(f"TipState.elongation must be >= 1, got {self.elongation!r}")
        if not (0.0 <= self.double_ratio <= 1.0):
            raise ValueError(f"TipState.double_ratio must be in [0, 1], got {self.double_ratio!r}")
        if not (0.0 <= self.instability <= 1.0):
            raise ValueError(f"TipState.instability must be in [0, 1], got {self.instability!r}")
        if not (0.0 <= self.contamination <= 1.0):
            raise ValueError(f"TipState.contamination must be in [0, 1], got {self.contamination!r}")
        if not (0.0 <= self.buckling <= 1.0):
            raise ValueError(f"TipState.buckling must be in [0, 1], got {self.buckling!r}")
        self.double_offset_m = (float(self.double_offset_m[0]), float(self.double_offset_m[1]))

    @property
    def is_double(self) -> bool:
        """True when a second apex contributes to the current."""
        return self.double_ratio > 0.0 and math.hypot(*self.double_offset_m) > 0.0


def _offset(rng: np.random.Generator, low_m: float, high_m: float) -> tuple[float, float]:
    r = rng.uniform(low_m, high_m)
    phi = rng.uniform(0.0, 2.0 * math.pi)
    return (r * math.cos(phi), r * math.sin(phi))


def _good_metal(rng: np.random.Generator, label: str) -> TipState:
    return TipState(
        label=label,
        apex_radius_m=rng.uniform(25e-12, 55e-12),
        elongation=rng.uniform(1.0, 1.15),
        elongation_angle_deg=rng.uniform(0, 180),
        apex_z_m=rng.normal(0, 0.1e-9),
        instability=rng.uniform(0.0, 0.003),
    )


def sample_tip(surface: str, label: str, rng: np.random.Generator) -> TipState:
    """Draw a random apex whose images belong to class ``label`` on ``surface``.

    For Au(111)/Cu(111) the sample-content labels ``step_edge`` and ``impurity`` and the
    frame label ``tip_change`` return a good tip carrying that label: the image content
    (or a tip change during the frame) is what makes the class.
    Raises ``ValueError`` for an unknown surface or label.
    """
    check_label(surface, label)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    z = rng.normal(0, 0.1e-9)
    if surface == "hsi100":
        if label == "individual_atoms":  # atomically sharp apexes are also the least stable
            return TipState(label, apex_radius_m=rng.uniform(25e-12, 55e-12),
                            elongation=rng.uniform(1.0, 1.2),
                            elongation_angle_deg=rng.uniform(0, 180), apex_z_m=z,
                            instability=rng.uniform(0, 0.01), contamination=rng.uniform(0, 0.3))
        if label == "dimers_asymmetries":
            u = rng.random()
            if u < 0.4:  # slightly blunt: dimers resolved, atoms not
                return TipState(label, apex_radius_m=rng.uniform(60e-12, 95e-12),
                                elongation=rng.uniform(1.0, 1.3),
                                elongation_angle_deg=rng.uniform(0, 180), apex_z_m=z,
                                instability=rng.uniform(0, 0.003), buckling=rng.uniform(0, 0.3))
            if u < 0.7:  # the apex freezes the dimers' buckling into a zig-zag
                return TipState(label, apex_radius_m=rng.uniform(45e-12, 85e-12),
                                elongation=rng.uniform(1.0, 1.3),
                                elongation_angle_deg=rng.uniform(0, 180), apex_z_m=z,
                                instability=rng.uniform(0, 0.003), buckling=rng.uniform(0.5, 1.0))
            # asymmetric apex: a weaker second apex a few ångström away
            return TipState(label, apex_radius_m=rng.uniform(45e-12, 95e-12),
                            elongation=rng.uniform(1.0, 1.6),
                            elongation_angle_deg=rng.uniform(0, 180),
                            double_offset_m=_offset(rng, 0.18e-9, 0.45e-9),
                            double_ratio=rng.uniform(0.3, 0.8),
                            double_dz_m=-rng.uniform(0.0, 0.03e-9), apex_z_m=z,
                            instability=rng.uniform(0, 0.003))
        if label == "rows":
            return TipState(label, apex_radius_m=rng.uniform(140e-12, 230e-12),
                            elongation=rng.uniform(1.0, 1.4),
                            elongation_angle_deg=rng.uniform(0, 180), apex_z_m=z,
                            instability=rng.uniform(0, 0.005))
        # generic_defect: blurry, multiple apexes, contaminated or unstable
        kind = rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])
        tip = TipState(label, apex_radius_m=rng.uniform(120e-12, 300e-12),
                       elongation=rng.uniform(1.0, 2.0),
                       elongation_angle_deg=rng.uniform(0, 180), apex_z_m=z,
                       instability=rng.uniform(0, 0.05),
                       contamination=rng.uniform(0, 0.2))
        if kind == 0:
            tip.apex_radius_m = rng.uniform(350e-12, 1.2e-9)
        elif kind == 1:
            tip.double_offset_m = _offset(rng, 0.8e-9, 4e-9)
            tip.double_ratio = rng.uniform(0.4, 1.0)
            tip.double_dz_m = -rng.uniform(0, 0.05e-9)
        elif kind == 2:
            tip.contamination = rng.uniform(0.4, 1.0)
        else:
            tip.instability = rng.uniform(0.3, 1.0)
        return tip
    # au111 / cu111
    if label == "double_tip":
        tip = _good_metal(rng, label)
        tip.apex_radius_m = rng.uniform(30e-12, 120e-12)
        tip.double_offset_m = _offset(rng, 0.7e-9, 3.5e-9)
        tip.double_ratio = rng.uniform(0.5, 1.0)
        tip.double_dz_m = -rng.uniform(0, 0.04e-9)
        return tip
    if label == "corruption":
        tip = _good_metal(rng, label)
        tip.apex_radius_m = rng.uniform(30e-12, 150e-12)
        tip.instability = rng.uniform(0.4, 1.0)
        tip.contamination = rng.uniform(0.0, 0.6)
        return tip
    return _good_metal(rng, label)
