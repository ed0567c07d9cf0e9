"""Fused ensemble inference: all members (and the tip-change network) in one graph call.

:class:`FusedEnsemble` wraps an :class:`~qcodes_stmtip.classify.ensemble.Ensemble` and
runs every member plus the optional tip-change network as **one** ``tf.function``
(``jit_compile=False``, fixed input signature ``(None, s, s, 1)`` so it is traced
once): the members' softmax outputs are concatenated inside the graph and split again
in numpy. Each network enters the graph in its folded inference form
(:func:`~qcodes_stmtip.classify.inference.folded.fold_model`: batch norm folded into the
convolutions, weights as constants, the one weight-heavy late convolution as a GEMM)
after the folded form has been checked against the Keras model on a probe batch
(:data:`FOLD_TOLERANCE`); a network that cannot be folded, or disagrees, enters as the
Keras call and the reason is logged and listed in :attr:`FusedEnsemble.path`. An
ensemble with test-time views (``Ensemble.tta``) gets them inside the same graph: the
views are stacked along the batch axis and each network's outputs averaged over them.

Latency, and the alternatives tried (ONNX Runtime, XLA), are in ``benchmarks/RESULTS.md``.

The device is TensorFlow's choice: the first GPU when TensorFlow sees one, the CPU
otherwise; :attr:`FusedEnsemble.device` reports it for the run metadata. Importing this
module does not import TensorFlow; constructing a :class:`FusedEnsemble` does.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from qcodes_stmtip.classify.ensemble import Ensemble, EnsemblePrediction

__all__ = ["FOLD_TOLERANCE", "FusedEnsemble", "FusedOutput", "INFERENCE_PATH"]

log = logging.getLogger(__name__)

#: Name of the inference path recorded in the run metadata (every network folded).
INFERENCE_PATH = "tensorflow-fused-tf.function"
#: Largest absolute difference of any output allowed between a folded network and its Keras model.
FOLD_TOLERANCE = 1e-5


@dataclass
class FusedOutput:
    """Raw outputs for N frames: ``member_probabilities`` (M, N, K) float64 and
    ``tip_change_probability`` (N,) float64, or None without a tip-change network."""

    member_probabilities: np.ndarray
    tip_change_probability: np.ndarray | None


class FusedEnsemble:
    """One-call inference for an :class:`Ensemble` (see module doc).

    Args:
        ensemble: the loaded ensemble (e.g. from :func:`~qcodes_stmtip.classify.bundle.load_bundle`).

    Calling it on a preprocessed ``(N, s, s, 1)`` float32 batch returns a
    :class:`FusedOutput`; :meth:`predict` also applies the ensemble's majority vote and
    thresholds. Thread-safe (one call at a time).
    """

    def __init__(self, ensemble: Ensemble) -> None:
        import importlib

        importlib.import_module("qcodes_stmtip.classify.keras_backend")  # backend + log level first
        import tensorflow as tf

        self.ensemble = ensemble
        models = [m.model for m in ensemble.members]
        tip = ensemble.tip_change.model if ensemble.tip_change is not None else None
        shape = tuple(models[0].input_shape[1:])
        for m in [*models, *([tip] if tip is not None else [])]:
            if tuple(m.input_shape[1:]) != shape:
                raise ValueError(f"ensemble members disagree on the input shape: "
                                 f"{tuple(m.input_shape[1:])} vs {shape}")
        self.input_shape: tuple[int, ...] = shape
        self.n_members = len(models)
        self.n_classes = len(ensemble.classes)
        gpus = tf.config.list_physical_devices("GPU")
        self.device: str = f"GPU:0 ({gpus[0].name})" if gpus else "CPU"
        networks = [*models, *([tip] if tip is not None else [])]
        probe = np.random.default_rng(0).uniform(-1, 1, (2, *shape)).astype(np.float32)
        calls, unfolded = [], []
        for net in networks:
            call, why = _folded_or_keras(net, probe)
            calls.append(call)
            if why:
                unfolded.append(f"{net.name}: {why}")
        self.unfolded: tuple[str, ...] = tuple(unfolded)

        member_views, tip_views = _view_functions(tf, ensemble)

        def fused(x):
            n = tf.shape(x)[0]
            xs = (member_views(x),) * len(models) + ((tip_views(x),) if tip is not None else ())
            outs = []
            for call, xv in zip(calls, xs, strict=True):
                out = call(xv)
                # views were stacked along the batch: (V*N, K) -> mean over V
                outs.append(tf.reduce_mean(tf.reshape(out, (-1, n, out.shape[-1])), axis=0))
            return tf.concat(outs, axis=1)

        self._fn = tf.function(
            fused, jit_compile=False,
            input_signature=[tf.TensorSpec((None, *shape), tf.float32)],
        )
        self._has_tip = tip is not None
        self._lock = threading.Lock()
        self.path = INFERENCE_PATH if not unfolded else (
            f"{INFERENCE_PATH} (Keras layers for {len(unfolded)} of {len(networks)} networks)")
        if ensemble.tta:
            self.path += " with test-time symmetry views"

    def __call__(self, batch: np.ndarray) -> FusedOutput:
        """Run every network on ``batch`` (N, s, s, 1) in one graph call."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"batch must have shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {x.shape}")
        with self._lock:
            out = np.asarray(self._fn(x), dtype=np.float64)
        m, k = self.n_members, self.n_classes
        probs = out[:, : m * k].reshape(len(x), m, k).transpose(1, 0, 2)
        tip = out[:, m * k + 1] if self._has_tip else None
        return FusedOutput(np.ascontiguousarray(probs), tip)

    def predict(self, batch: np.ndarray) -> EnsemblePrediction:
        """Like :meth:`Ensemble.predict` (majority vote, thresholds) through the fused graph."""
        raw = self(batch)
        pred = self.ensemble.vote(raw.member_probabilities)
        pred.tip_change_probability = raw.tip_change_probability
        return pred

    def warm_up(self) -> None:
        """Trace the graph once (zeros input) so the first real frame is not slow."""
        self(np.zeros((1, *self.input_shape), dtype=np.float32))


def _view_functions(tf, ensemble: Ensemble):
    """Graph versions of :meth:`Ensemble.member_views` / :meth:`Ensemble.tip_change_views`:
    ``x`` (N, s, s, 1) -> the views stacked along the batch axis (V*N, s, s, 1)."""
    if not ensemble.tta:
        return (lambda x: x), (lambda x: x)

    def members(x):
        # the 8 symmetries of the square: {identity, transpose} x {-, flip y, flip x, both}
        # (pure reversals and a transpose: no shape assertions in the graph, unlike tf.image.rot90)
        views = []
        for t in (x, tf.transpose(x, [0, 2, 1, 3])):
            views += [t, tf.reverse(t, axis=[1]), tf.reverse(t, axis=[2]), tf.reverse(t, axis=[1, 2])]
        return tf.concat(views, axis=0)

    def tip_change(x):
        views = [x, tf.reverse(x, axis=[2])]
        if ensemble.tip_change_vertical_flip:
            views += [tf.reverse(x, axis=[1]), tf.reverse(x, axis=[1, 2])]
        return tf.concat(views, axis=0)

    return members, tip_change


def _folded_or_keras(model, probe: np.ndarray):
    """``(call, reason)``: the folded form of ``model`` if it matches Keras on ``probe``, else the
    Keras call and why (logged)."""
    from qcodes_stmtip.classify.inference.folded import UnsupportedModel, fold_model

    def keras_call(x):
        return model(x, training=False)

    try:
        folded = fold_model(model)
        diff = float(np.max(np.abs(np.asarray(folded(probe)) - np.asarray(keras_call(probe)))))
    except UnsupportedModel as exc:
        reason = str(exc)
    else:
        if diff <= FOLD_TOLERANCE:
            return folded, ""
        reason = f"folded graph differs from Keras by {diff:.2e} (> {FOLD_TOLERANCE:g})"
    log.warning("network %r runs as Keras layers, not folded: %s", model.name, reason)
    return keras_call, reason
