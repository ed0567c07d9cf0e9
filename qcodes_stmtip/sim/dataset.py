"""Labelled simulated data sets laid out like the real ``hsi100`` set.

``DIR/images/<name>.png`` (8-bit, line-flattened and min–max scaled like the real PNGs),
``DIR/frames/<name>.npy`` (raw float32 trace heights in metres, row 0 = bottom line) and
``DIR/labels.csv`` with columns :data:`CSV_COLUMNS`. One ``session`` per simulated sample
area, so validation can split by session. Deterministic for a seed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcodes_stmtip.sim.degrade import apply_degradation, export_shape, resample, sample_degradation
from qcodes_stmtip.sim.frames import SimScan, render_scan, sample_grid
from qcodes_stmtip.sim.geometry import ScanGeometry
from qcodes_stmtip.sim.realism import InstrumentNoise
from qcodes_stmtip.sim.surfaces import get_surface
from qcodes_stmtip.sim.tips import sample_tip
from qcodes_stmtip.taxonomy import CLASSES, TIP_CHANGE, check_label, check_surface

CSV_COLUMNS: tuple[str, ...] = ("session", "Name", "surface", "label", "tip_change", "width_m",
                                "height_m", "pixels", "lines", "angle_deg", "seed")

#: Surfaces whose data sets are domain-randomised (:mod:`qcodes_stmtip.sim.degrade`) by default.
DEGRADED_SURFACES: tuple[str, ...] = ("hsi100",)

#: Class frequencies of "natural" data (H:Si from the real dev split; metals roughly even).
NATURAL_WEIGHTS: dict[str, tuple[float, ...]] = {
    "hsi100": (0.41, 0.065, 0.155, 0.37),
    "au111": (0.2, 0.15, 0.15, 0.2, 0.15, 0.15),
    "cu111": (0.2, 0.15, 0.15, 0.2, 0.15, 0.15),
}

#: Scan-size ranges (nm, log-uniform) per class. H:Si(100): the same range for every good class,
#: so that the dimer-row period (0.768 nm) spans ~11–45 px of a 128 px frame (median ~22 px; after the
#: 128² resize the real dimer and row frames' strongest lattice peak is at ~25 px, the atom frames' at ~14 px);
#: bad frames wider.
SIZE_RANGE_NM: dict[str, dict[str, tuple[float, float]]] = {
    "hsi100": {"individual_atoms": (2.2, 9.0), "dimers_asymmetries": (2.2, 9.0),
               "rows": (2.2, 9.0), "generic_defect": (2.2, 30.0)},
    "au111": {"individual_atoms": (4.0, 12.0)},
    "cu111": {"individual_atoms": (4.0, 12.0)},
}
_METAL_SIZE = (12.0, 45.0)


@dataclass
class Example:
    """One labelled simulated frame."""

    scan: SimScan
    sample_seed: int
    session: str


def class_weights(surface: str, balance: str = "uniform",
                  weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Sampling probability per class of ``surface`` (``uniform``, ``natural`` or explicit ``weights``)."""
    check_surface(surface)
    classes = CLASSES[surface]
    if weights is not None:
        for k, v in weights.items():
            check_label(surface, k, "weights")
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"weights[{k!r}] must be a non-negative number, got {v!r}")
        w = np.array([float(weights.get(c, 0.0)) for c in classes])
    elif balance == "uniform":
        w = np.ones(len(classes))
    elif balance == "natural":
        w = np.array(NATURAL_WEIGHTS[surface])
    else:
        raise ValueError(f"balance={balance!r} must be 'uniform' or 'natural'")
    if w.sum() <= 0:
        raise ValueError("weights must give at least one class a positive weight")
    return w / w.sum()


def _geometry(surface: str, label: str, rng: np.random.Generator, pixels: int, lines: int,
              centre_nm: tuple[float, float] | None = None) -> ScanGeometry:
    lo, hi = SIZE_RANGE_NM.get(surface, {}).get(label, _METAL_SIZE)
    size = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    height = size * lines / pixels
    if centre_nm is None:
        centre_nm = tuple(rng.uniform(-3000, 3000, 2))
    u = rng.random()
    if surface == "hsi100" and u < 0.5:  # operators scan H:Si(100) diagonally to the dimer rows
        angle = 45.0 + 90.0 * int(rng.integers(4)) + rng.normal(0, 4)
    elif u < 0.8:
        angle = 90.0 * int(rng.integers(4)) + rng.normal(0, 4)
    else:
        angle = rng.uniform(0, 360)
    angle = float(angle % 360)
    return ScanGeometry(size * 1e-9, height * 1e-9, pixels, lines,
                        centre_nm[0] * 1e-9, centre_nm[1] * 1e-9, angle)


def _place_metal(surface: str, label: str, rng: np.random.Generator, sample_seed: int,
                 pixels: int, lines: int) -> ScanGeometry | None:
    """A frame geometry whose content fits the content class (None if this sample cannot)."""
    surf = get_surface(surface, sample_seed)
    for _ in range(12):
        geo = _geometry(surface, label, rng, pixels, lines)
        if label == "step_edge":
            sx, sy = surf.nearest_step(geo.centre_x * 1e9, geo.centre_y * 1e9)
            shift = rng.uniform(-0.3, 0.3) * geo.width * 1e9
            nx, ny = surf.steps.normal
            geo = ScanGeometry(geo.width, geo.height, pixels, lines, (sx + shift * nx) * 1e-9,
                               (sy + shift * ny) * 1e-9, geo.angle_deg)
        content = surf.content(sample_grid(geo, InstrumentNoise(), True, 0.1, 0.0))
        if label == "step_edge" and content.steps > 0:
            return geo
        if label == "impurity" and content.steps == 0 and content.impurities > 0:
            return geo
        if label not in ("step_edge", "impurity") and content.steps == 0 and content.impurities == 0:
            return geo
    return None


def generate_example(surface: str, label: str, rng: np.random.Generator, *, pixels: int = 128,
                     lines: int | None = None, sample_seed: int | None = None,
                     tip_change_p: float = 0.15) -> Example:
    """Render one frame whose ground-truth class is ``label``.

    For H:Si(100) one (80 %) or two apex changes are added with probability ``tip_change_p``
    (the binary tip-change label; the four-class label stays that of the apex imaging most lines).
    """
    check_label(surface, label)
    lines = pixels if lines is None else lines
    for _ in range(50):
        seed = int(rng.integers(0, 2**31)) if sample_seed is None else int(sample_seed)
        if surface == "hsi100" or label not in ("individual_atoms", "step_edge", "impurity", "double_tip"):
            geo = _geometry(surface, label, rng, pixels, lines)
        elif label == "double_tip":  # ghosts show best on adsorbates: prefer an area with some
            geo = _place_metal(surface, "impurity", rng, seed, pixels, lines) or _geometry(
                surface, label, rng, pixels, lines)
        else:
            geo = _place_metal(surface, label, rng, seed, pixels, lines)
            if geo is None:
                if sample_seed is not None:
                    break
                continue
        tip = sample_tip(surface, label, rng)
        changes = []
        if surface == "hsi100" and rng.random() < tip_change_p:
            margin = max(1, lines // 6)
            n = 1 if rng.random() < 0.8 or lines - 2 * margin < 2 else 2
            at = sorted(int(v) for v in rng.choice(np.arange(margin, lines - margin), n, replace=False))
            bounds = [0, *at, lines]
            seg_tips = [sample_tip(surface, str(rng.choice(CLASSES[surface])), rng) for _ in range(n + 1)]
            seg_tips[int(np.argmax(np.diff(bounds)))] = tip  # the labelled apex images most lines
            for k in range(1, n + 1):  # each change also moves the apex height
                seg_tips[k].apex_z_m = seg_tips[k - 1].apex_z_m + rng.choice([-1, 1]) * rng.uniform(0.05e-9, 0.3e-9)
            tip = seg_tips[0]
            changes = list(zip(at, seg_tips[1:], strict=True))
        scan = render_scan(surface, tip, geo, rng, sample_seed=seed, scan_up=bool(rng.random() < 0.5),
                           seconds_per_line=float(rng.uniform(0.05, 0.4)), tip_changes=changes,
                           t0=float(rng.exponential(60.0)))
        if scan.label == label:
            return Example(scan, seed, f"{surface}-{seed}")
    raise ValueError(f"could not simulate a frame of class {label!r} on {surface!r}"
                     + (f" with sample_seed={sample_seed}" if sample_seed is not None else ""))


def _write_frame(surface: str, k: int, seed: int, p: np.ndarray, sample_seed: int, pixels: int,
                 tip_change_p: float, out: Path, degrade: bool = False) -> list:
    """Simulate frame ``k`` of a data set, write its PNG and .npy, return its CSV row."""
    from PIL import Image

    from qcodes_stmtip.sim.export import to_uint8

    classes = CLASSES[surface]
    frame_rng = np.random.default_rng([seed, k])
    label = str(classes[frame_rng.choice(len(classes), p=p)])
    try:
        ex = generate_example(surface, label, frame_rng, pixels=pixels, sample_seed=sample_seed,
                              tip_change_p=tip_change_p)
    except ValueError:  # this sample area cannot show the class: use a fresh one
        ex = generate_example(surface, label, frame_rng, pixels=pixels, tip_change_p=tip_change_p)
    name = f"{surface}_{seed}_{k:06d}"
    scan = ex.scan
    forward = scan.forward
    g = scan.geometry
    lines, pixels = g.lines, g.pixels
    if degrade:  # its own stream: the rendered frame is the same with and without
        d_rng = np.random.default_rng([seed, k, 13])
        forward = apply_degradation(forward, sample_degradation(surface, scan.label, d_rng), d_rng)
        keep, (lines, pixels) = export_shape(g.lines, d_rng)
        if keep < g.lines and scan.tip_change_lines:  # a strip could miss the change: keep it whole
            keep, (lines, pixels) = g.lines, (300, 300)
        acquired = forward[:keep] if scan.scan_up else forward[g.lines - keep:]  # a strip: the first lines
        forward = resample(acquired, (lines, pixels))
    Image.fromarray(to_uint8(forward)).save(out / "images" / f"{name}.png")
    np.save(out / "frames" / f"{name}.npy", forward.astype(np.float32))
    tc = int(bool(scan.tip_change_lines)) if surface == "hsi100" else int(scan.label == TIP_CHANGE)
    height = g.height * (keep / g.lines if degrade else 1.0)
    return [ex.session, f"{name}.png", surface, scan.label, tc, f"{g.width:.6e}", f"{height:.6e}",
            pixels, lines, f"{g.angle_deg:.3f}", ex.sample_seed]


def generate_dataset(surface: str, count: int, out: str | Path, *, seed: int = 0,
                     balance: str = "uniform", weights: Mapping[str, float] | None = None,
                     pixels: int = 128, sessions: int | None = None, progress: bool = True,
                     tip_change_p: float = 0.15, jobs: int = 1, degrade: bool | None = None) -> Path:
    """Write ``count`` labelled frames of ``surface`` to ``out``; returns the labels.csv path.

    Frames are spread over ``sessions`` simulated sample areas (default ≈ count / 10).
    ``jobs`` > 1 renders in that many worker processes (same files, same order, same bytes).
    ``degrade`` domain-randomises the frames (:mod:`qcodes_stmtip.sim.degrade`; default: for the
    surfaces in :data:`DEGRADED_SURFACES`).
    Side effects: creates ``out/images``, ``out/frames`` and ``out/labels.csv``.
    """
    from tqdm import tqdm

    check_surface(surface)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if isinstance(pixels, bool) or not isinstance(pixels, int) or not 16 <= pixels <= 1024:
        raise ValueError(f"pixels must be an integer in 16..1024, got {pixels!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    p = class_weights(surface, balance, weights)
    n_sessions = max(1, count // 10) if sessions is None else int(sessions)
    if n_sessions < 1:
        raise ValueError(f"sessions must be >= 1, got {sessions!r}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    session_seeds = np.random.default_rng(seed).integers(0, 2**31, n_sessions)
    if degrade is None:
        degrade = surface in DEGRADED_SURFACES
    args = [(surface, k, seed, p, int(session_seeds[k % n_sessions]), pixels, tip_change_p, out, bool(degrade))
            for k in range(count)]
    bar = tqdm(total=count, desc=f"simulating {surface}", disable=not progress)
    if jobs == 1:
        rows = []
        for a in args:
            rows.append(_write_frame(*a))
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold BLAS/FFT threads
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = []
            for row in pool.map(_write_frame, *zip(*args, strict=True), chunksize=8):
                rows.append(row)
                bar.update()
    bar.close()
    path = out / "labels.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    return path
