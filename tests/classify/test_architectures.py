"""Each architecture builds with the layer structure the paper describes."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from qcodes_stmtip.classify.architectures import (  # noqa: E402
    SQUEEZENET_FILTERS,
    SQUEEZENET_STRIDES,
    build_model,
)

L = keras.layers


def _of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_squeezenet_structure():
    m = build_model("squeezenet", 4)
    convs = _of(m, L.Conv2D)
    assert len(convs) == 10
    assert [c.filters for c in convs] == list(SQUEEZENET_FILTERS)
    assert SQUEEZENET_FILTERS[0] == 32 and SQUEEZENET_FILTERS[-1] == 1024
    assert [c.strides[0] for c in convs] == list(SQUEEZENET_STRIDES) == [1, 2] * 5
    assert all(c.kernel_size == (3, 3) for c in convs)
    names = [type(layer).__name__ for layer in m.layers]
    for c in convs:  # conv → batch norm → ELU
        i = m.layers.index(c)
        assert names[i + 1] == "BatchNormalization" and m.layers[i + 1].momentum == 0.9
        assert m.layers[i + 2].activation.__name__ == "elu"
    assert m.output_shape == (None, 4) and m.input_shape == (None, 128, 128, 1)


def test_vgg_with_and_without_batch_norm():
    plain, bn = build_model("vgg", 6), build_model("vgg_bn", 6)
    assert len(_of(plain, L.Conv2D)) == len(_of(bn, L.Conv2D)) == 8
    assert not _of(plain, L.BatchNormalization)
    assert len(_of(bn, L.BatchNormalization)) == 8
    assert len(_of(plain, L.MaxPooling2D)) == 4
    assert [c.filters for c in _of(plain, L.Conv2D)] == [32, 32, 64, 64, 128, 128, 256, 256]


def test_rw_structure_and_width_multiplier():
    rw = build_model("rw", 4, width=0.5)
    assert [c.filters for c in _of(rw, L.Conv2D)] == [16, 16, 32, 32]
    assert len(_of(rw, L.Dropout)) == 3
    small = build_model("squeezenet", 4, width=0.25)
    assert [c.filters for c in _of(small, L.Conv2D)] == [8, 8, 16, 16, 32, 32, 64, 64, 128, 256]


@pytest.mark.parametrize("arch", ["rw", "vgg", "vgg_bn", "squeezenet"])
def test_heads_and_no_lambda(arch):
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 1)).astype(np.float32)
    soft = build_model(arch, 4, width=0.125, size=64)
    p = np.asarray(soft(x, training=False))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    sig = build_model(arch, 4, width=0.125, size=64, head="sigmoid")
    assert sig.layers[-1].activation.__name__ == "sigmoid"
    assert not any(type(layer).__name__ == "Lambda" for layer in soft.layers)


def test_bad_arguments():
    with pytest.raises(ValueError, match="architecture"):
        build_model("resnet", 4)
    with pytest.raises(ValueError, match="width"):
        build_model("vgg", 4, width=0)
    with pytest.raises(ValueError, match="head"):
        build_model("vgg", 4, head="relu")
    with pytest.raises(ValueError, match="n_outputs"):
        build_model("vgg", 0)
