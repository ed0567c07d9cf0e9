"""A tiny random model bundle for the inference tests (as ``tests/monitor/conftest.py`` builds it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

HSI_CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")
#: Network input side of the tiny bundle, pixels.
TINY_SIZE = 32


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
