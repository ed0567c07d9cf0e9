"""Inference-only TensorFlow graphs of the chain-shaped classifier networks, batch norm folded away.

:func:`fold_model` turns a trained Keras model whose layers form a single chain (all of
:mod:`qcodes_stmtip.classify.architectures`: Conv2D, BatchNormalization, Activation,
MaxPooling2D, GlobalAveragePooling2D, Flatten, Dropout, Dense) into a plain function of
TensorFlow ops with the weights as constants:

* every batch normalisation that follows a convolution is folded into that convolution's
  kernel and bias (``k' = k·γ/√(σ²+ε)``, ``b' = (b−μ)·γ/√(σ²+ε)+β``, computed in float64),
  so a SqueezeNet-like layer is one ``conv2d + bias_add + elu`` — three ops TensorFlow's
  oneDNN remapper fuses — instead of a convolution plus four element-wise passes;
* a convolution whose kernel holds ≥ :data:`MATMUL_KERNEL_ELEMENTS` weights (the 512→1024
  layer of the paper-size SqueezeNet: 4.7 M weights, 4×4 output pixels) runs as patches ×
  matrix: at batch 1 that layer only streams weights, and one GEMM over the 16 patches was
  2× faster than ``conv2d`` here (1.7 ms against 3.5 ms, ``benchmarks/monitor.py`` machine);
* dropout is dropped (inference).

Anything else raises :class:`UnsupportedModel`; the caller keeps the Keras call for such a
model. The folded function is checked against the Keras model by the caller
(:class:`~qcodes_stmtip.classify.inference.fused.FusedEnsemble`) before it is used.
Importing this module does not import TensorFlow; calling :func:`fold_model` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MATMUL_KERNEL_ELEMENTS", "FoldedNetwork", "UnsupportedModel", "fold_model"]

#: Kernels with at least this many weights run as patches × matrix (see module doc).
MATMUL_KERNEL_ELEMENTS = 2_000_000

_ACTIVATIONS = ("linear", "relu", "elu", "softmax", "sigmoid")


class UnsupportedModel(ValueError):
    """The model is not a chain of the supported layer types (the message names the layer)."""


class FoldedNetwork:
    """The folded inference function of one network: ``net(x) -> y`` (TensorFlow tensors).

    ``ops`` names each step in order (e.g. ``"conv2d 3x3 8->16 /2"``, ``"elu"``), so what
    was folded can be read off.
    """

    def __init__(self, name: str, steps: list[tuple[str, Callable[[Any], Any]]]) -> None:
        self.name = name
        self.ops: tuple[str, ...] = tuple(op for op, _ in steps)
        self._steps = [fn for _, fn in steps]

    def __call__(self, x: Any) -> Any:
        for step in self._steps:
            x = step(x)
        return x

    def __repr__(self) -> str:
        return f"FoldedNetwork({self.name!r}, {len(self.ops)} ops)"


def _chain(model: Any) -> list[Any]:
    """The model's layers after the input, checked to form one chain (output of one → next)."""
    from qcodes_stmtip.classify.keras_backend import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        raise UnsupportedModel(f"model {model.name!r} has no layers")
    previous = model.inputs[0]
    for layer in layers:
        nodes = getattr(layer, "_inbound_nodes", [])
        if len(nodes) != 1 or len(nodes[0].input_tensors) != 1 or nodes[0].input_tensors[0] is not previous:
            raise UnsupportedModel(f"model {model.name!r}: layer {layer.name!r} does not continue a "
                                   f"single chain of layers")
        previous = layer.output
    if len(model.outputs) != 1 or model.outputs[0] is not previous:
        raise UnsupportedModel(f"model {model.name!r}: the last layer is not the model output")
    return layers


def _activation_name(layer: Any) -> str:
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", str(fn))
    if name not in _ACTIVATIONS:
        raise UnsupportedModel(f"layer {layer.name!r}: activation {name!r} is not supported")
    return name


def _apply_activation(x: Any, name: str) -> Any:
    import tensorflow as tf

    if name == "linear":
        return x
    if name == "softmax":
        return tf.nn.softmax(x, axis=-1)
    return getattr(tf.nn, name)(x)


def fold_model(model: Any) -> FoldedNetwork:
    """An inference function ``f(x) -> y`` of TensorFlow ops equal to ``model(x, training=False)``.

    Raises :class:`UnsupportedModel` for layers or topologies outside the supported set.
    """
    from qcodes_stmtip.classify.keras_backend import keras
    from qcodes_stmtip.tensorflow_logging import import_quietly

    tf = import_quietly("tensorflow")
    L = keras.layers
    layers = _chain(model)
    steps: list[tuple[str, Callable[[Any], Any]]] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, L.Conv2D) and type(layer) is L.Conv2D:
            if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) \
                    or layer.groups != 1:
                raise UnsupportedModel(f"layer {layer.name!r}: only channels-last, undilated, "
                                       f"ungrouped convolutions are supported")
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float64)
            bias = (np.asarray(layer.bias.numpy(), dtype=np.float64) if layer.use_bias
                    else np.zeros(kernel.shape[-1]))
            act = _activation_name(layer)
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if act == "linear" and isinstance(nxt, L.BatchNormalization) and nxt.axis in (-1, 3):
                scale, shift = _bn_affine(nxt, kernel.shape[-1])
                kernel, bias = kernel * scale, bias * scale + shift
                i += 1
            steps.append(_conv_step(kernel, bias, tuple(layer.strides), layer.padding.upper()))
            if act != "linear":
                steps.append((act, lambda x, a=act: _apply_activation(x, a)))
        elif isinstance(layer, L.BatchNormalization):
            if layer.axis not in (-1, len(layer.input.shape) - 1):
                raise UnsupportedModel(f"layer {layer.name!r}: batch norm over axis {layer.axis}")
            scale, shift = (tf.constant(v.astype(np.float32))
                            for v in _bn_affine(layer, layer.input.shape[-1]))
            steps.append(("batch_norm", lambda x, s=scale, b=shift: x * s + b))
        elif isinstance(layer, L.Activation):
            act = _activation_name(layer)
            steps.append((act, lambda x, a=act: _apply_activation(x, a)))
        elif isinstance(layer, L.Dense) and type(layer) is L.Dense:
            w = tf.constant(np.asarray(layer.kernel.numpy(), dtype=np.float32))
            b = tf.constant(np.asarray(layer.bias.numpy(), dtype=np.float32) if layer.use_bias
                            else np.zeros(w.shape[-1], np.float32))
            steps.append((f"dense {w.shape[0]}->{w.shape[1]}",
                          lambda x, w=w, b=b: tf.nn.bias_add(tf.matmul(x, w), b)))
            act = _activation_name(layer)
            if act != "linear":
                steps.append((act, lambda x, a=act: _apply_activation(x, a)))
        elif isinstance(layer, L.MaxPooling2D):
            if layer.data_format != "channels_last":
                raise UnsupportedModel(f"layer {layer.name!r}: channels-first pooling")
            pool, stride, pad = tuple(layer.pool_size), tuple(layer.strides), layer.padding.upper()
            steps.append(("max_pool", lambda x, p=pool, s=stride, pd=pad: tf.nn.max_pool2d(x, p, s, pd)))
        elif isinstance(layer, L.GlobalAveragePooling2D):
            if layer.data_format != "channels_last" or layer.keepdims:
                raise UnsupportedModel(f"layer {layer.name!r}: only channels-last, keepdims=False")
            steps.append(("global_average_pool", lambda x: tf.reduce_mean(x, axis=[1, 2])))
        elif isinstance(layer, L.Flatten):
            steps.append(("flatten", lambda x: tf.reshape(x, (tf.shape(x)[0], -1))))
        elif isinstance(layer, L.Dropout):
            pass  # identity at inference
        else:
            raise UnsupportedModel(f"layer {layer.name!r} ({type(layer).__name__}) is not supported "
                                   f"by the folded inference graph")
        i += 1

    return FoldedNetwork(model.name, steps)


def _bn_affine(layer: Any, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` of an inference-mode batch normalisation, float64, length ``channels``."""
    ones, zeros = np.ones(channels), np.zeros(channels)
    gamma = np.asarray(layer.gamma.numpy(), np.float64) if layer.scale else ones
    beta = np.asarray(layer.beta.numpy(), np.float64) if layer.center else zeros
    mean = np.asarray(layer.moving_mean.numpy(), np.float64)
    var = np.asarray(layer.moving_variance.numpy(), np.float64)
    scale = gamma / np.sqrt(var + layer.epsilon)
    return scale, beta - mean * scale


def _conv_step(kernel: np.ndarray, bias: np.ndarray, strides: tuple[int, int],
               padding: str) -> tuple[str, Callable[[Any], Any]]:
    """``(description, fn)`` of convolution + bias, as ``conv2d`` or as patches × matrix.

    The weights are created with ``tf.constant`` *inside* the traced function, so they are
    ``Const`` nodes of the graph (not captured inputs); measured ~1 ms less per paper-size
    frame here (``benchmarks/monitor.py``), presumably oneDNN's cache of reordered constant filters.
    """
    import tensorflow as tf

    kh, kw, cin, cout = kernel.shape
    b32 = bias.astype(np.float32)
    what = f"{kh}x{kw} {cin}->{cout} /{strides[0]}"
    if kernel.size >= MATMUL_KERNEL_ELEMENTS:
        w32 = kernel.reshape(kh * kw * cin, cout).astype(np.float32)

        def gemm(x: Any) -> Any:
            patches = tf.image.extract_patches(x, [1, kh, kw, 1], [1, *strides, 1], [1, 1, 1, 1],
                                               padding)
            shape = tf.shape(patches)
            y = tf.matmul(tf.reshape(patches, (-1, kh * kw * cin)), tf.constant(w32))
            return tf.nn.bias_add(tf.reshape(y, (shape[0], shape[1], shape[2], cout)), tf.constant(b32))
        return f"patches x matrix {what}", gemm
    k32 = kernel.astype(np.float32)
    return f"conv2d {what}", lambda x: tf.nn.bias_add(tf.nn.conv2d(x, tf.constant(k32), strides, padding),
                                                      tf.constant(b32))
