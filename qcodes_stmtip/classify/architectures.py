"""The paper's network architectures as plain Keras 3 functional models (backend-agnostic).

All take a (size, size, 1) input in −1…1 and end in a ``Dense`` head with
``softmax`` (the paper's choice, trained with binary cross-entropy) or
``sigmoid`` (multi-label option). ``width`` multiplies every filter / unit
count (minimum 4) so compact members can be trained on a CPU; ``width=1`` is
the paper size. Importing this module imports Keras.

* ``rw`` — Rashidi–Wolkow style CNN (ACS Nano 12, 5185, 2018): two blocks of
  two 3×3 ReLU convolutions (32, 64) with 2×2 max-pooling and dropout, then a
  256-unit dense layer with dropout.
* ``vgg`` / ``vgg_bn`` — VGG-like: four blocks of two 3×3 convolutions
  (32, 64, 128, 256) + 2×2 max-pooling, ReLU, optional batch normalisation
  after every convolution, then a 256-unit dense layer with dropout.
* ``squeezenet`` — the paper's "SqueezeNet-like" network: ten back-to-back 3×3
  convolutions, filters 32, 32, 64, 64, 128, 128, 256, 256, 512, 1024, strides
  alternating 1 and 2, each followed by batch normalisation and ELU; then global
  average pooling and the dense head.
"""

from __future__ import annotations

from collections.abc import Callable

from qcodes_stmtip.classify.keras_backend import keras
from qcodes_stmtip.classify.preprocess import IMAGE_SIZE

layers = keras.layers

#: Filters of the ten SqueezeNet-like convolutions at width 1.
SQUEEZENET_FILTERS: tuple[int, ...] = (32, 32, 64, 64, 128, 128, 256, 256, 512, 1024)
#: Strides of the ten SqueezeNet-like convolutions.
SQUEEZENET_STRIDES: tuple[int, ...] = (1, 2) * 5
#: Filters of the four VGG-like blocks at width 1.
VGG_FILTERS: tuple[int, ...] = (32, 64, 128, 256)
HEADS = ("softmax", "sigmoid")
#: Batch-norm moving-average momentum: 0.9 (Keras default 0.99) so the inference statistics keep up
#: with the weights in short CPU trainings of a few hundred steps.
BN_MOMENTUM = 0.9


def _scaled(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def _check(n_outputs: int, width: float, head: str, size: int) -> None:
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be ≥ 1, got {n_outputs}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if size < 32:
        raise ValueError(f"size must be ≥ 32 pixels, got {size}")


def build_rw(
    n_outputs: int, *, width: float = 1.0, head: str = "softmax", size: int = IMAGE_SIZE
) -> keras.Model:
    """Rashidi–Wolkow style CNN (see module doc)."""
    _check(n_outputs, width, head, size)
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for block, filters in enumerate((32, 64), start=1):
        for j in (1, 2):
            x = layers.Conv2D(_scaled(filters, width), 3, padding="same", activation="relu",
                              name=f"block{block}_conv{j}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        x = layers.Dropout(0.25, name=f"block{block}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_scaled(256, width), activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="fc_dropout")(x)
    outputs = layers.Dense(n_outputs, activation=head, name="predictions")(x)
    return keras.Model(inputs, outputs, name="rw")


def build_vgg(
    n_outputs: int,
    *,
    width: float = 1.0,
    head: str = "softmax",
    batch_norm: bool = False,
    size: int = IMAGE_SIZE,
) -> keras.Model:
    """VGG-like network, optionally with batch normalisation (see module doc)."""
    _check(n_outputs, width, head, size)
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for block, filters in enumerate(VGG_FILTERS, start=1):
        for j in (1, 2):
            x = layers.Conv2D(_scaled(filters, width), 3, padding="same",
                              use_bias=not batch_norm, name=f"block{block}_conv{j}")(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{j}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{j}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_scaled(256, width), activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="fc_dropout")(x)
    outputs = layers.Dense(n_outputs, activation=head, name="predictions")(x)
    return keras.Model(inputs, outputs, name="vgg_bn" if batch_norm else "vgg")


def build_squeezenet(
    n_outputs: int, *, width: float = 1.0, head: str = "softmax", size: int = IMAGE_SIZE
) -> keras.Model:
    """The paper's SqueezeNet-like network (see module doc)."""
    _check(n_outputs, width, head, size)
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for i, (filters, stride) in enumerate(zip(SQUEEZENET_FILTERS, SQUEEZENET_STRIDES, strict=True), 1):
        x = layers.Conv2D(_scaled(filters, width), 3, strides=stride, padding="same",
                          use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.Activation("elu", name=f"elu{i}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(n_outputs, activation=head, name="predictions")(x)
    return keras.Model(inputs, outputs, name="squeezenet")


#: Builders by architecture name.
ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "rw": build_rw,
    "vgg": lambda n, **kw: build_vgg(n, batch_norm=False, **kw),
    "vgg_bn": lambda n, **kw: build_vgg(n, batch_norm=True, **kw),
    "squeezenet": build_squeezenet,
}


def build_model(
    architecture: str, n_outputs: int, *, width: float = 1.0, head: str = "softmax",
    size: int = IMAGE_SIZE,
) -> keras.Model:
    """Build the named architecture (``rw``, ``vgg``, ``vgg_bn`` or ``squeezenet``)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    return ARCHITECTURES[architecture](n_outputs, width=width, head=head, size=size)
