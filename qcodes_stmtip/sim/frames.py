"""Render a simulated constant-current STM frame (trace and retrace) of a surface through a tip.

Pipeline (nm internally, metres out): pixel → sample positions (frame rotation, thermal
drift and piezo creep in acquisition time) → ideal topography seen through the apex
(:mod:`surfaces`; a second apex combines as the constant-current solution of
``I ∝ e^{2κh₁} + r·e^{2κh₂}``, κ = 10 nm⁻¹) → sample tilt, apex height and z drift →
z-feedback response along the scan direction (trace and retrace ring on opposite sides
of steps; the retrace carries a hysteresis shift) → line offsets, 1/f and white noise
in acquisition order → apex-instability glitches. Tip changes swap the apex from the
given acquisition line on. The retrace uses the trace's sample positions (in-line
drift is below a pixel at realistic speeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.physics import KAPPA_PER_NM  # nm⁻¹, re-exported
from qcodes_stmtip.sim.realism import (
    InstrumentNoise,
    feedback,
    flicker,
    fractional_shift,
    glitches,
    sample_instrument,
    sample_tilt,
)
from qcodes_stmtip.sim.surfaces import Blur, FrameContent, SampleGrid, Surface, get_surface
from qcodes_stmtip.sim.tips import TipState, sample_tip
from qcodes_stmtip.taxonomy import CLASSES, check_surface

#: Half of the simulated z range in nm (saturated lines sit at ± this).
Z_RANGE_NM: float = 50.0


@dataclass
class SimScan:
    """One simulated frame: heights in metres, rows as in :class:`ScanGeometry` (row 0 = bottom)."""

    forward: np.ndarray
    backward: np.ndarray
    label: str
    tip_change_lines: tuple[int, ...]
    geometry: ScanGeometry
    scan_up: bool
    tip: TipState | None = None
    final_tip: TipState | None = None
    content: FrameContent | None = None
    sample_seed: int = 0
    instrument: InstrumentNoise | None = field(default=None, repr=False)


def sample_grid(geometry: ScanGeometry, instrument: InstrumentNoise, scan_up: bool,
                seconds_per_line: float, t0: float) -> SampleGrid:
    """Sample positions (nm) of every pixel of the frame, drift included."""
    g = geometry
    lines, pixels = g.lines, g.pixels
    a = math.radians(g.angle_deg)
    ex = np.array([math.cos(a), -math.sin(a)])  # frame x axis in sample coordinates (clockwise)
    ey = np.array([math.sin(a), math.cos(a)])
    dx, dy = g.pixel_size_x * 1e9, g.pixel_size_y * 1e9
    x_rel = ((np.arange(pixels) + 0.5) * dx - g.width * 1e9 / 2)
    y_rel = ((np.arange(lines) + 0.5) * dy - g.height * 1e9 / 2)
    centre = np.array([g.centre_x, g.centre_y]) * 1e9
    acq = np.arange(lines) if scan_up else np.arange(lines)[::-1]
    t_line = t0 + acq * 2.0 * seconds_per_line
    origin = centre + x_rel[0] * ex + np.outer(y_rel, ey) + instrument.drift(t_line)
    total = 2.0 * seconds_per_line * lines
    v = (instrument.drift(np.array(t0 + total)) - instrument.drift(np.array(t0))) / total
    col_step = dx * ex + v * seconds_per_line / pixels
    return SampleGrid(origin, col_step, dy * ey, pixels)


def _topography(surf: Surface, tip: TipState, grid: SampleGrid) -> np.ndarray:
    blur = Blur(tip.apex_radius_m * 1e9, tip.elongation, tip.elongation_angle_deg, tip.buckling)
    h = surf.height(grid, blur)
    if tip.is_double:
        ox, oy = (v * 1e9 for v in tip.double_offset_m)
        h2 = surf.height(grid.shifted(ox, oy), blur) + tip.double_dz_m * 1e9
        k2 = 2 * KAPPA_PER_NM
        h = np.logaddexp(k2 * h, k2 * h2 + math.log(tip.double_ratio)) / k2
    return h - tip.apex_z_m * 1e9


def _check_tip(surface: str, tip: object, argument: str) -> TipState:
    if not isinstance(tip, TipState):
        raise ValueError(f"{argument} must be a TipState, got {type(tip).__name__}")
    if tip.label not in CLASSES[surface]:
        raise ValueError(f"{argument}.label={tip.label!r} is not a class of surface {surface!r}; "
                         f"expected one of {CLASSES[surface]}")
    return tip


def _auto_changes(surface: str, lines: int, rng: np.random.Generator) -> list[tuple[int, TipState]]:
    lo = max(1, lines // 8)
    candidates = np.arange(lo, max(lo + 1, lines - lines // 8))
    n = 1 if rng.random() < 0.7 or len(candidates) < 2 else 2
    at = np.sort(rng.choice(candidates, n, replace=False))
    out = []
    for line in at:
        new = sample_tip(surface, str(rng.choice(["individual_atoms", "double_tip", "individual_atoms"])), rng)
        new.apex_z_m += rng.choice([-1, 1]) * rng.uniform(0.05e-9, 0.4e-9)
        new.apex_radius_m *= rng.uniform(0.7, 3.0)
        out.append((int(line), new))
    return out


def frame_label(surface: str, tips: Sequence[TipState], seg_lengths: Sequence[int],
                changes: bool, content: FrameContent) -> str:
    """Ground-truth class of a frame from its tips (per acquisition segment) and content."""
    if surface == "hsi100":
        return tips[int(np.argmax(seg_lengths))].label
    if changes:
        return "tip_change"
    label = tips[0].label
    if label in ("double_tip", "corruption"):
        return label
    if content.steps > 0:
        return "step_edge"
    if content.impurities > 0:
        return "impurity"
    return "individual_atoms"


_BLAS: list = []


def _single_threaded_blas():
    """Context limiting BLAS to one thread: frames are small, and threads only contend."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def render_scan(
    surface: str,
    tip: TipState,
    geometry: ScanGeometry,
    rng: np.random.Generator,
    *,
    sample_seed: int = 0,
    scan_up: bool = True,
    seconds_per_line: float = 0.1,
    tip_changes: Sequence[tuple[int, TipState]] = (),
    t0: float = 0.0,
    instrument: InstrumentNoise | None = None,
) -> SimScan:
    """Simulate one frame of ``surface`` imaged by ``tip`` over ``geometry``.

    ``rng`` drives everything that varies from scan to scan (noise, drift, glitches);
    the sample itself depends only on ``sample_seed``. ``tip_changes`` are
    ``(acquisition_line, new_tip)`` pairs (line index in acquisition order, 1 … lines−1);
    a metal tip labelled ``tip_change`` with no changes given gets random ones.
    ``seconds_per_line`` is the time of one trace (a line takes trace + retrace);
    ``t0`` is the time in s since the frame was last moved (sets piezo creep).
    ``instrument`` fixes drift/noise/feedback (default: drawn from ``rng``).
    Returns a :class:`SimScan` (heights in metres). Raises ``ValueError`` on bad input.
    """
    check_surface(surface)
    _check_tip(surface, tip, "tip")
    if not isinstance(geometry, ScanGeometry):
        raise ValueError(f"geometry must be a ScanGeometry, got {type(geometry).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    if not (math.isfinite(seconds_per_line) and seconds_per_line > 0):
        raise ValueError(f"seconds_per_line must be positive, got {seconds_per_line!r}")
    if not math.isfinite(t0) or t0 < 0:
        raise ValueError(f"t0 must be a non-negative time in s, got {t0!r}")
    lines = geometry.lines
    changes = sorted(tip_changes, key=lambda c: c[0])
    previous = 0
    for k, (line, new) in enumerate(changes):
        if isinstance(line, bool) or not isinstance(line, int | np.integer) or not previous < line < lines:
            raise ValueError(f"tip_changes[{k}] line {line!r} must be an integer in 1..{lines - 1}, increasing")
        _check_tip(surface, new, f"tip_changes[{k}] tip")
        previous = line
    surf = get_surface(surface, sample_seed)
    inst = instrument if instrument is not None else sample_instrument(
        rng, low_temperature=surface != "hsi100")
    if surface != "hsi100" and tip.label == "tip_change" and not changes:
        changes = _auto_changes(surface, lines, rng)

    with _single_threaded_blas():
        return _render(surface, surf, tip, geometry, rng, inst, sample_seed, scan_up,
                       seconds_per_line, changes, t0)


def _render(surface: str, surf: Surface, tip: TipState, geometry: ScanGeometry,
            rng: np.random.Generator, inst: InstrumentNoise, sample_seed: int, scan_up: bool,
            seconds_per_line: float, changes: list, t0: float) -> SimScan:
    lines, pixels = geometry.lines, geometry.pixels
    grid = sample_grid(geometry, inst, scan_up, seconds_per_line, t0)
    acq_rows = np.arange(lines) if scan_up else np.arange(lines)[::-1]  # image row of acquisition line k
    bounds = [0] + [c[0] for c in changes] + [lines]
    tips = [tip] + [c[1] for c in changes]
    h = np.empty((lines, pixels))  # acquisition order; what the retrace sees
    lost: dict[int, np.ndarray] = {}  # line -> the outgoing apex's view of the line where it changes
    seg_lengths = []
    for k, seg_tip in enumerate(tips):
        a, b = bounds[k], bounds[k + 1]
        last = min(b + 1, lines)
        image_rows = acq_rows[a:last]
        order = np.argsort(image_rows)  # grids run bottom to top
        whole = last - a == lines
        sub = grid if whole else SampleGrid(grid.row_origin[image_rows[order]], grid.col_step,
                                            grid.row_step, pixels)
        topo = np.empty((last - a, pixels))
        topo[order] = _topography(surf, seg_tip, sub)
        h[a:b] = topo[: b - a]
        if last > b:
            lost[b] = topo[-1]
        seg_lengths.append(b - a)
    # the apex changes during the trace of its line, at a random pixel
    cuts = {line: int(rng.integers(1, pixels)) for line in lost}
    h_fwd = h.copy()
    for line, row in lost.items():
        h_fwd[line, : cuts[line]] = row[: cuts[line]]
    x, y = grid.xy
    tx, ty = sample_tilt(sample_seed)
    tilt = (tx * x + ty * y)[acq_rows]
    h += tilt
    h_fwd += tilt

    t_px = t0 + (np.arange(lines)[:, None] * 2 + (np.arange(pixels)[None, :] + 0.5) / pixels) * seconds_per_line
    zdrift = inst.z_drift_nm_s * t_px
    noise = flicker(rng, lines * 2 * pixels, inst.flicker_noise_nm, inst.white_noise_nm).reshape(lines, 2, pixels)
    offsets = np.cumsum(rng.normal(0, inst.line_offset_nm, lines)) * 0.5 + rng.normal(0, inst.line_offset_nm, lines)
    fwd = h_fwd + zdrift + noise[:, 0] + offsets[:, None]
    bwd = (fractional_shift(h, inst.retrace_shift_px) + zdrift + inst.z_drift_nm_s * seconds_per_line
           + noise[:, 1, ::-1] + offsets[:, None])
    for line, cut in cuts.items():  # the change itself is a brief glitch
        width = int(rng.integers(1, max(2, pixels // 32)))
        fwd[line, cut:cut + width] += rng.normal(0, 0.05)
    for seg_tip, a, b in zip(tips, bounds[:-1], bounds[1:], strict=True):
        if seg_tip.instability > 0 or seg_tip.contamination > 0:
            f, r = fwd[a:b], bwd[a:b]
            glitches(rng, f, r, seg_tip.instability, seg_tip.contamination, Z_RANGE_NM)
    omega = inst.feedback_omega(seconds_per_line / pixels)
    fwd = feedback(fwd, omega, inst.feedback_damping)
    bwd = feedback(bwd, omega, inst.feedback_damping, reverse=True)
    fwd, bwd = fwd[acq_rows], bwd[acq_rows]

    content = surf.content(grid)
    label = frame_label(surface, tips, seg_lengths, bool(changes), content)
    return SimScan(
        forward=fwd * 1e-9,
        backward=bwd * 1e-9,
        label=label,
        tip_change_lines=tuple(int(c[0]) for c in changes),
        geometry=geometry,
        scan_up=scan_up,
        tip=tip,
        final_tip=tips[-1],
        content=content,
        sample_seed=int(sample_seed),
        instrument=inst,
    )
