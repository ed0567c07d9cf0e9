"""Fixtures shared across the test tree.

``tiny_bundle``: a three-member H:Si(100) bundle with random (perturbed) weights and a
tip-change network, 32² input — exercises the inference and monitor machinery without
training. ``tests/conditioning`` and ``tests/labelling`` override it with the smaller
bundles their tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: Network input side of the tiny bundle, pixels.
TINY_SIZE = 32


def perturbed(model, seed: int):
    """``model`` with random non-trivial weights, including batch-norm statistics."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """Two SqueezeNet-like members + a VGG-BN + a tip-change network, random weights, 32² input."""
    pytest.importorskip("keras")
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.taxonomy import CLASSES

    members = [
        Member("sq_a", "squeezenet", perturbed(build_model("squeezenet", 4, width=0.125, size=TINY_SIZE), 0)),
        Member("vgg_b", "vgg_bn", perturbed(build_model("vgg_bn", 4, width=0.125, size=TINY_SIZE), 1)),
        Member("sq_c", "squeezenet", perturbed(build_model("squeezenet", 4, width=0.125, size=TINY_SIZE), 2)),
    ]
    tip = Member("tip_change", "squeezenet",
                 perturbed(build_model("squeezenet", 2, width=0.125, size=TINY_SIZE), 3))
    ens = Ensemble("hsi100", CLASSES["hsi100"], members, thresholds=[0.0] * 4, tip_change=tip,
                   tip_change_threshold=0.5)
    return save_bundle(ens, tmp_path_factory.mktemp("tiny") / "bundle", image_size=TINY_SIZE)
