"""The fused one-call ensemble agrees with Keras ``predict`` per member."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
from qcodes_stmtip.classify.bundle import load_bundle  # noqa: E402
from qcodes_stmtip.classify.inference.fused import FusedEnsemble  # noqa: E402


def test_fused_matches_per_member_predict_to_1e_5(tiny_bundle) -> None:
    ens = load_bundle(tiny_bundle)
    fused = FusedEnsemble(ens)
    x = np.random.default_rng(5).uniform(-1, 1, (6, 32, 32, 1)).astype(np.float32)
    ref = ens.predict(x)
    got = fused.predict(x)
    assert got.member_probabilities.shape == (3, 6, 4)
    np.testing.assert_allclose(got.member_probabilities, ref.member_probabilities, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.tip_change_probability, ref.tip_change_probability, rtol=0,
                               atol=1e-5)
    np.testing.assert_array_equal(got.votes, ref.votes)
    np.testing.assert_array_equal(got.decision, ref.decision)
    # the members really differ, so the split of the concatenated output is checked
    assert np.abs(ref.member_probabilities[0] - ref.member_probabilities[1]).max() > 1e-3
    # one frame at a time gives the same numbers as the batch
    one = fused(x[2:3])
    np.testing.assert_allclose(one.member_probabilities[:, 0], ref.member_probabilities[:, 2],
                               atol=1e-5)
    assert fused.device == "CPU" or fused.device.startswith("GPU")


def test_fused_refuses_wrong_input_shape(tiny_bundle) -> None:
    fused = FusedEnsemble(load_bundle(tiny_bundle))
    with pytest.raises(ValueError, match=r"batch must have shape \(N, 32, 32, 1\)"):
        fused(np.zeros((1, 64, 64, 1), np.float32))


def test_fused_applies_the_bundles_test_time_views(tiny_bundle) -> None:
    """An ensemble with ``tta`` gets the same view averages inside the fused graph."""
    ens = load_bundle(tiny_bundle)
    ens.tta, ens.tip_change_vertical_flip = True, True
    fused = FusedEnsemble(ens)
    assert fused.path.endswith("with test-time symmetry views")
    x = np.random.default_rng(6).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    ref, got = ens.predict(x), fused.predict(x)
    np.testing.assert_allclose(got.member_probabilities, ref.member_probabilities, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.tip_change_probability, ref.tip_change_probability, rtol=0, atol=1e-5)
    ens.tta = False
    plain = ens.predict(x)
    assert np.abs(plain.member_probabilities - ref.member_probabilities).max() > 1e-4
