"""CI-sized training: class weights, learning on separable data, reproducible seeds."""

import numpy as np
import pytest

pytest.importorskip("keras")
from qcodes_stmtip.classify.training import (  # noqa: E402
    TrainConfig,
    class_weights,
    predict_probabilities,
    train_classifier,
)


def test_class_weights_are_reciprocal_frequency():
    w = class_weights(np.array([0] * 6 + [1] * 3 + [2] * 1), 4)
    np.testing.assert_allclose(w, [10 / (4 * 6), 10 / (4 * 3), 10 / 4, 0.0])
    # weighted counts are equal for present classes
    np.testing.assert_allclose(w[:3] * [6, 3, 1], 2.5)
    with pytest.raises(ValueError, match="labels"):
        class_weights(np.array([0, 5]), 4)


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig("vgg", optimizer="adagrad")
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig("vgg", lr_decay=0)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig("vgg", epochs=0)


def _data(n, rng, size=32):
    y = rng.integers(0, 2, n)
    imgs = rng.normal(0, 0.2, (n, size, size, 1)).astype(np.float32)
    xx = np.arange(size)
    for i, label in enumerate(y):
        wave = np.sin(2 * np.pi * xx / 4)
        imgs[i, :, :, 0] += wave[None, :] if label else wave[:, None]  # vertical vs horizontal stripes
    return imgs, y


def _train(seed):
    rng = np.random.default_rng(0)
    x, y = _data(96, rng)
    xv, yv = _data(32, rng)
    cfg = TrainConfig("squeezenet", width=0.125, epochs=4, batch_size=16, learning_rate=3e-3,
                      augment=False, seed=seed)
    return train_classifier(x, y, xv, yv, 2, cfg, progress=False), xv, yv


def test_learns_and_is_reproducible():
    r1, xv, yv = _train(seed=5)
    assert r1.epochs_run == 4 and len(r1.history["loss"]) == 4
    assert r1.history["learning_rate"][1] == pytest.approx(r1.history["learning_rate"][0] * 0.95, rel=1e-5)
    assert r1.history["loss"][-1] < r1.history["loss"][0]
    p = predict_probabilities(r1.model, xv)
    assert np.mean(np.argmax(p, axis=1) == yv) > 0.8
    r2, _, _ = _train(seed=5)
    np.testing.assert_allclose(r2.history["loss"], r1.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(predict_probabilities(r2.model, xv), p, atol=1e-4)


def test_early_stopping_and_bad_input():
    rng = np.random.default_rng(1)
    x, y = _data(32, rng)
    xv = rng.normal(size=(16, 32, 32, 1)).astype(np.float32)
    yv = rng.integers(0, 2, 16)  # noise labels: validation loss cannot keep improving
    cfg = TrainConfig("vgg", width=0.125, epochs=30, batch_size=16, patience=1, learning_rate=1e-2)
    r = train_classifier(x, y, xv, yv, 2, cfg, progress=False)
    assert r.epochs_run < 30 and 1 <= r.best_epoch <= r.epochs_run
    with pytest.raises(ValueError, match="validation set is empty"):
        train_classifier(x, y, xv[:0], yv[:0], 2, cfg, progress=False)


def test_tta_averages_the_symmetry_views():
    """With TTA the output is the mean over the 8 views; a view-invariant input gives the plain output."""
    from qcodes_stmtip.classify.architectures import build_model
    from qcodes_stmtip.classify.augment import dihedral_views

    model = build_model("squeezenet", 3, width=0.125, size=32)
    x = np.random.default_rng(3).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    got = predict_probabilities(model, x, tta=True)
    views = [predict_probabilities(model, v) for v in dihedral_views(x)]
    np.testing.assert_allclose(got, np.mean(views, axis=0), atol=1e-6)
    assert np.abs(views[0] - views[3]).max() > 1e-6  # the views really differ for this model
    r = np.hypot(*np.mgrid[-15.5:16, -15.5:16]) / 16  # symmetric under all 8 views
    sym = np.repeat(np.cos(4 * r)[None, :, :, None], 2, axis=0).astype(np.float32)
    np.testing.assert_allclose(predict_probabilities(model, sym, tta=True),
                               predict_probabilities(model, sym), atol=1e-5)
    two = predict_probabilities(model, x, tta=True, restricted=True)
    np.testing.assert_allclose(two, (views[0] + views[1]) / 2, atol=1e-6)


def test_pretraining_on_other_frames_gives_a_head_start():
    """One epoch on the same task first: after one real epoch the loss is already lower than without."""
    rng = np.random.default_rng(2)
    x_pre, y_pre = _data(192, rng)
    x, y = _data(48, rng)
    xv, yv = _data(32, rng)
    cfg = TrainConfig("squeezenet", width=0.125, epochs=1, batch_size=16, learning_rate=3e-3,
                      augment=False, seed=3)
    cold = train_classifier(x, y, xv, yv, 2, cfg, progress=False)
    warm = train_classifier(x, y, xv, yv, 2, cfg, progress=False, pretrain=(x_pre, y_pre),
                            pretrain_epochs=3)
    assert warm.history["val_loss"][0] < cold.history["val_loss"][0]
    assert np.mean(np.argmax(predict_probabilities(warm.model, xv), axis=1) == yv) > 0.8
    with pytest.raises(ValueError, match="pretrain images"):
        train_classifier(x, y, xv, yv, 2, cfg, progress=False,
                         pretrain=(x_pre[:, :16, :16], y_pre[:, None][:, 0]), pretrain_epochs=1)
