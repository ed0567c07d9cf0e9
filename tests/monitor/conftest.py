"""A small trained model bundle for the monitor tests (the tiny random one is ``tests/conftest.py``'s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

HSI_CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
#: Network input side of the trained bundle, pixels.
TRAINED_SIZE = 64
#: Scan size of the frames the trained bundle learns and the end-to-end test acquires, m.
TRAINED_FRAME_M = 5e-9


def is_clean(sample_seed: int, geometry) -> bool:
    """True when the frame shows no step, adsorbate cluster, dangling bond or missing dimer.

    Reads the simulator's sample model (test-only knowledge): such sample features make
    even a sharp apex's frame look like ``generic_defect``.
    """
    from qcodes_stmtip.sim.frames import sample_grid
    from qcodes_stmtip.sim.realism import InstrumentNoise
    from qcodes_stmtip.sim.sample_hash import cell_points
    from qcodes_stmtip.sim.surfaces import get_surface

    surface = get_surface("hsi100", sample_seed)
    grid = sample_grid(geometry, InstrumentNoise(), True, 0.1, 0.0)
    content = surface.content(grid)
    if content.steps or content.clusters:
        return False
    dens = np.array([surface.db_density, surface.md_density, surface.dopant_density])
    _, extra = cell_points(sample_seed, 11, grid.bounds(1.0), 4.0, float(dens.sum()), fields=3)
    kind = np.searchsorted(np.cumsum(dens) / dens.sum(), extra[:, 0], side="right")
    return not np.any(kind < 2)


def clean_centres(sample_seed: int, n: int, pixels: int = 64) -> list[tuple[float, float]]:
    """``n`` frame centres (m) inside ±1.5 µm whose frames are clean (see :func:`is_clean`)."""
    from qcodes_stmtip.sim.geometry import ScanGeometry

    out = []
    for k in range(9 * 15):
        cx, cy = -1.4e-6 + 0.35e-6 * (k % 9), 1.4e-6 - 0.2e-6 * (k // 9)
        geo = ScanGeometry(TRAINED_FRAME_M, TRAINED_FRAME_M, pixels, pixels, cx, cy, 0.0)
        if is_clean(sample_seed, geo):
            out.append((cx, cy))
            if len(out) == n:
                return out
    raise AssertionError(f"fewer than {n} clean frames on sample {sample_seed}")


def render_frames(labels: list[str], seed: int, pixels: int = 64) -> list[np.ndarray]:
    """Clean simulated H:Si(100) frames (heights, m) of the given tip classes, fresh areas."""
    from qcodes_stmtip.sim.frames import render_scan
    from qcodes_stmtip.sim.geometry import ScanGeometry
    from qcodes_stmtip.sim.tips import sample_tip

    rng = np.random.default_rng(seed)
    out = []
    for k, label in enumerate(labels):
        while True:
            cx, cy = rng.uniform(-3e-6, 3e-6, 2)
            sample_seed = int(rng.integers(10_000))
            geo = ScanGeometry(TRAINED_FRAME_M, TRAINED_FRAME_M, pixels, pixels, cx, cy, 0.0)
            if is_clean(sample_seed, geo):
                break
        scan = render_scan("hsi100", sample_tip("hsi100", label, rng), geo, rng,
                           sample_seed=sample_seed, scan_up=k % 4 < 2)
        out.append(scan.forward)
    return out


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> Path:
    """One small RW-style member trained for seconds on ``individual_atoms`` vs ``generic_defect``."""
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.classify.preprocess import preprocess_batch
    from qcodes_stmtip.classify.training import TrainConfig, train_classifier

    labels = ["individual_atoms", "generic_defect"] * 120
    x = preprocess_batch(render_frames(labels, seed=0), TRAINED_SIZE)
    y = np.array([HSI_CLASSES.index(lab) for lab in labels])
    config = TrainConfig("rw", width=0.25, epochs=20, batch_size=16, patience=20, augment=False,
                         learning_rate=2e-3, seed=0)
    res = train_classifier(x[:200], y[:200], x[200:], y[200:], 4, config, progress=False)
    ens = Ensemble("hsi100", HSI_CLASSES, [Member("rw", "rw", res.model, res.summary())],
                   thresholds=[0.5] * 4)
    return save_bundle(ens, tmp_path_factory.mktemp("trained") / "bundle", image_size=TRAINED_SIZE,
                       training_data={"frames": len(labels), "source": "qcodes_stmtip.sim render_scan"})
