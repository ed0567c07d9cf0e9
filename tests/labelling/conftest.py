"""Shared fixtures: a tiny real classifier bundle (Keras) for the model-guess tests."""

import numpy as np
import pytest

BUNDLE_IMAGE_SIZE = 32


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """``(ensemble, path)``: a one-member H:Si(100) ensemble with a tip-change network, saved.

    Random (perturbed) weights; thresholds 0 so that every frame gets a decision.
    """
    pytest.importorskip("keras")
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble import Ensemble, Member
    from qcodes_stmtip.taxonomy import CLASSES

    def perturbed(n_out, seed):
        model = build_model("squeezenet", n_out, width=0.125, size=BUNDLE_IMAGE_SIZE)
        r = np.random.default_rng(seed)
        model.set_weights([w + r.normal(0, 0.05, w.shape).astype(w.dtype)
                           for w in model.get_weights()])
        return model

    ens = Ensemble("hsi100", CLASSES["hsi100"], [Member("m0", "squeezenet", perturbed(4, 0))],
                   thresholds=[0.0] * 4, tip_change=Member("tc", "squeezenet", perturbed(2, 1)))
    path = save_bundle(ens, tmp_path_factory.mktemp("bundle") / "bundle",
                       image_size=BUNDLE_IMAGE_SIZE)
    return ens, path
