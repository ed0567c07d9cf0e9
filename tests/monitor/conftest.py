"""Model bundles for the monitor tests: a tiny random one and a small trained one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

HSI_CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
#: Network input side of the tiny bundle, pixels.
TINY_SIZE = 32
#: Network input side of the trained bundle, pixels.
TRAINED_SIZE = 64
#: Scan size of the frames the trained bundle learns and the end-to-end test acquires, m.
TRAINED_FRAME_M = 5e-9


def _perturb(model, seed: int):
    """Random non-trivial weights, including batch-norm statistics."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """Two SqueezeNet-like members + a tip-change network with random weights, 32² input."""
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member

    members = [
        Member("sq_a", "squeezenet", _perturb(build_model("squeezenet", 4, width=0.125, size=TINY_SIZE), 0)),
        Member("vgg_b", "vgg_bn", _perturb(build_model("vgg_bn", 4, width=0.125, size=TINY_SIZE), 1)),
        Member("sq_c", "squeezenet", _perturb(build_model("squeezenet", 4, width=0.125, size=TINY_SIZE), 2)),
    ]
    tip = Member("tip_change", "squeezenet",
                 _perturb(build_model("squeezenet", 2, width=0.125, size=TINY_SIZE), 3))
    ens = Ensemble("hsi100", HSI_CLASSES, members, thresholds=[0.0] * 4, tip_change=tip,
                   tip_change_threshold=0.5)
    return save_bundle(ens, tmp_path_factory.mktemp("tiny") / "bundle", image_size=TINY_SIZE)


def render_frames(labels: list[str], seed: int, pixels: int = 64) -> list[np.ndarray]:
    """Simulated H:Si(100) frames (heights, m) of the given tip classes, fresh sample areas."""
    from qcodes_stmtip.sim.frames import render_scan
    from qcodes_stmtip.sim.geometry import ScanGeometry
    from qcodes_stmtip.sim.tips import sample_tip

    rng = np.random.default_rng(seed)
    out = []
    for k, label in enumerate(labels):
        cx, cy = rng.uniform(-3e-6, 3e-6, 2)
        geo = ScanGeometry(TRAINED_FRAME_M, TRAINED_FRAME_M, pixels, pixels, cx, cy, 0.0)
        scan = render_scan("hsi100", sample_tip("hsi100", label, rng), geo, rng,
                           sample_seed=int(rng.integers(10_000)), scan_up=k % 4 < 2)
        out.append(scan.forward)
    return out


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> Path:
    """One small RW-style member trained for seconds on ``individual_atoms`` vs ``generic_defect``."""
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.classify.preprocess import preprocess_batch
    from qcodes_stmtip.classify.training import TrainConfig, train_classifier

    labels = ["individual_atoms", "generic_defect"] * 60
    x = preprocess_batch(render_frames(labels, seed=0), TRAINED_SIZE)
    y = np.array([HSI_CLASSES.index(lab) for lab in labels])
    config = TrainConfig("rw", width=0.25, epochs=20, batch_size=16, patience=20, augment=False,
                         learning_rate=2e-3, seed=0)
    res = train_classifier(x[:96], y[:96], x[96:], y[96:], 4, config, progress=False)
    ens = Ensemble("hsi100", HSI_CLASSES, [Member("rw", "rw", res.model, res.summary())],
                   thresholds=[0.5] * 4)
    return save_bundle(ens, tmp_path_factory.mktemp("trained") / "bundle", image_size=TRAINED_SIZE,
                       training_data={"frames": len(labels), "source": "qcodes_stmtip.sim render_scan"})
