"""Random-forest baseline and weighted random guessing."""

import numpy as np
import pytest

from qcodes_stmtip.classify.baselines import (
    RandomForestBaseline,
    WeightedRandomGuess,
    forest_features,
)
from qcodes_stmtip.classify.metrics import score


def _stripes(n, rng):
    y = rng.integers(0, 2, n)
    xx = np.arange(32)
    imgs = np.empty((n, 32, 32, 1), np.float32)
    for i, label in enumerate(y):
        period = 4 if label else 11
        line = np.sin(2 * np.pi * xx / period + rng.uniform(0, 6))
        imgs[i, :, :, 0] = (line[None, :] if label else line[:, None]) + 0.3 * rng.normal(size=(32, 32))
    return imgs, y


def test_forest_learns_separable_textures():
    rng = np.random.default_rng(0)
    x, y = _stripes(80, rng)
    xt, yt = _stripes(40, rng)
    rfc = RandomForestBaseline(n_estimators=50, feature_size=16).fit(x, y, n_classes=3)
    p = rfc.predict_proba(xt)
    assert p.shape == (40, 3) and np.all(p[:, 2] == 0)
    assert score(yt, p[:, :2], ("a", "b")).mean_auroc > 0.9
    assert forest_features(x[:2], 8).shape == (2, 64)
    with pytest.raises(ValueError, match="n_estimators"):
        RandomForestBaseline(n_estimators=0)


def test_weighted_random_guess_follows_priors():
    g = WeightedRandomGuess(seed=1).fit(np.array([0] * 70 + [1] * 20 + [2] * 10), 3)
    p = g.predict_proba(20000)
    np.testing.assert_allclose(p.mean(axis=0), [0.7, 0.2, 0.1], atol=0.015)
    y = np.random.default_rng(2).choice(3, 20000, p=[0.7, 0.2, 0.1])
    assert abs(score(y, p, ("a", "b", "c")).mean_auroc - 0.5) < 0.02
    with pytest.raises(RuntimeError, match="fit"):
        WeightedRandomGuess().predict_proba(3)
