"""The folded inference graph equals the Keras model; unsupported models are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
from qcodes_stmtip.classify.architectures import build_model  # noqa: E402
from qcodes_stmtip.classify.ensemble import Ensemble, Member  # noqa: E402
from qcodes_stmtip.classify.inference import folded  # noqa: E402
from qcodes_stmtip.classify.inference.fused import FusedEnsemble  # noqa: E402
from qcodes_stmtip.classify.keras_backend import keras  # noqa: E402

SIZE = 32


def _perturbed(model, seed: int):
    """Random non-trivial weights, batch-norm statistics included (variances kept positive)."""
    rng = np.random.default_rng(seed)
    weights = []
    for var, w in zip(model.weights, model.get_weights(), strict=True):
        if "variance" in var.path:
            weights.append(rng.uniform(0.3, 3.0, w.shape).astype(w.dtype))
        else:
            weights.append(w + rng.normal(0, 0.05, w.shape).astype(w.dtype))
    model.set_weights(weights)
    return model


def _probe(n: int = 4) -> np.ndarray:
    return np.random.default_rng(7).uniform(-1, 1, (n, SIZE, SIZE, 1)).astype(np.float32)


@pytest.mark.parametrize("architecture", ["squeezenet", "vgg_bn", "vgg", "rw"])
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_folded_equals_keras(architecture: str, head: str) -> None:
    model = _perturbed(build_model(architecture, 4, width=0.25, head=head, size=SIZE), 1)
    x = _probe()
    ref = np.asarray(model(x, training=False))
    got = np.asarray(folded.fold_model(model)(x))
    assert got.shape == ref.shape == (4, 4)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.ptp(ref, axis=0).max() > 1e-4  # the frames give different outputs


def test_gemm_convolutions_equal_keras(monkeypatch) -> None:
    """Every convolution as patches × matrix (strides 1 and 2, 'same' padding)."""
    monkeypatch.setattr(folded, "MATMUL_KERNEL_ELEMENTS", 1)
    model = _perturbed(build_model("squeezenet", 4, width=0.25, size=SIZE), 2)
    x = _probe()
    np.testing.assert_allclose(np.asarray(folded.fold_model(model)(x)),
                               np.asarray(model(x, training=False)), rtol=0, atol=1e-5)


def test_batch_norm_is_folded_into_the_convolution() -> None:
    """The folded SqueezeNet is conv + ELU per layer, then pooling and the head: no batch norm."""
    model = _perturbed(build_model("squeezenet", 4, width=0.25, size=SIZE), 3)
    ops = folded.fold_model(model).ops
    assert len(ops) == 10 * 2 + 3
    assert ops[0] == "conv2d 3x3 1->8 /1" and ops[1] == "elu"
    assert ops[2] == "conv2d 3x3 8->8 /2"
    assert ops[-3:] == ("global_average_pool", "dense 256->4", "softmax")
    assert not any("batch_norm" in op for op in ops)


def _residual_model():
    inp = keras.Input((SIZE, SIZE, 1))
    a = keras.layers.Conv2D(4, 3, padding="same")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same")(a)
    out = keras.layers.Dense(4, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b])))
    return keras.Model(inp, out, name="residual")


def _layer_norm_model():
    inp = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.LayerNormalization(name="odd_norm")(x)
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out, name="layer_norm")


def test_unsupported_models_are_refused_by_name() -> None:
    with pytest.raises(folded.UnsupportedModel, match="single chain"):
        folded.fold_model(_residual_model())
    with pytest.raises(folded.UnsupportedModel, match="odd_norm.*LayerNormalization"):
        folded.fold_model(_layer_norm_model())


def test_fused_ensemble_keeps_keras_layers_for_an_unfoldable_member() -> None:
    members = [Member("sq", "squeezenet", _perturbed(build_model("squeezenet", 4, width=0.25,
                                                                 size=SIZE), 4)),
               Member("odd", "custom", _perturbed(_layer_norm_model(), 5))]
    ens = Ensemble("hsi100", ("a", "b", "c", "d"), members)
    fused = FusedEnsemble(ens)
    assert len(fused.unfolded) == 1 and fused.unfolded[0].startswith("layer_norm:")
    assert "Keras layers for 1 of 2 networks" in fused.path
    x = _probe()
    np.testing.assert_allclose(fused(x).member_probabilities, ens.predict(x).member_probabilities,
                               rtol=0, atol=1e-5)


def test_fully_folded_ensemble_reports_the_plain_path(tiny_bundle) -> None:
    from qcodes_stmtip.classify.bundle import load_bundle

    fused = FusedEnsemble(load_bundle(tiny_bundle))
    assert fused.unfolded == ()
    assert fused.path == "tensorflow-fused-tf.function"
