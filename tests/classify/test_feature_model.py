"""Feature members: Keras-like predict on image batches, all classes in order, safe storage."""

import numpy as np
import pytest

from qcodes_stmtip.classify.feature_model import FEATURE_KINDS, FeatureModel, make_estimator
from qcodes_stmtip.classify.features import frame_features

SIZE = 32


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (120, SIZE, SIZE, 1)).astype(np.float32)
    x[::3] *= 0.2  # class 0: low contrast, separable by the height spread
    y = np.where(np.arange(120) % 3 == 0, 0, 2)  # class 1 and 3 never seen in training
    return x, y


@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_predict_gives_every_class_in_label_order(data, kind):
    x, y = data
    model = FeatureModel.train(kind, frame_features(x), y, 4, SIZE, seed=0)
    p = model.predict(x)
    assert p.shape == (120, 4) and model.output_shape == (None, 4) and model.input_shape == (None, SIZE, SIZE, 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(p[:, [1, 3]] == 0)  # unseen labels get probability 0
    assert np.mean(p.argmax(axis=1) == y) > 0.9
    assert model.predict(x[:0]).shape == (0, 4)


def test_refuses_bad_input_and_kinds(data, tmp_path):
    x, y = data
    with pytest.raises(ValueError, match="unknown feature-model kind 'svm'"):
        make_estimator("svm")
    with pytest.raises(ValueError, match="at least two classes"):
        FeatureModel.train("hgb", frame_features(x), np.zeros(120, int), 4, SIZE)
    model = FeatureModel.train("logreg", frame_features(x), y, 4, SIZE)
    with pytest.raises(ValueError, match=r"batch must have shape \(N, 32, 32, 1\)"):
        model.predict(np.zeros((2, 16, 16, 1)))
    model.save(tmp_path / "m.skops")
    with pytest.raises(ValueError, match=r"classes \[0, 2\] are not integer labels 0\.\.1"):
        FeatureModel.load(tmp_path / "m.skops", "logreg", 2, SIZE)
    again = FeatureModel.load(tmp_path / "m.skops", "logreg", 4, SIZE)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_a_model_fitted_on_another_feature_set_is_refused(data, tmp_path):
    x, y = data
    f = frame_features(x)
    FeatureModel.train("logreg", f[:, :-3], y, 4, SIZE).save(tmp_path / "old.skops")
    with pytest.raises(ValueError, match=r"fitted on \d+ features; this version of qcodes_stmtip computes \d+"):
        FeatureModel.load(tmp_path / "old.skops", "logreg", 4, SIZE)
