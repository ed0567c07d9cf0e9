"""Ensemble members that are scikit-learn classifiers on :mod:`~qcodes_stmtip.classify.features`.

A :class:`FeatureModel` has the part of the Keras model interface an
:class:`~qcodes_stmtip.classify.ensemble.Ensemble` uses (``predict``, ``input_shape``,
``output_shape``, ``name``), so feature members and CNN members vote side by side on the
same preprocessed batch. Kinds (:data:`FEATURE_KINDS`):

* ``hgb``: histogram gradient-boosted trees, balanced class weights, shallow regularised trees;
* ``logreg``: multinomial logistic regression on standardised features, balanced.

Stored in bundles with skops (no pickle): loading refuses any type outside
:data:`TRUSTED_TYPES`. Importing this module imports neither scikit-learn nor Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.features import frame_features

#: Member kinds ``stmtip train --members`` accepts besides the CNN architectures.
FEATURE_KINDS: tuple[str, ...] = ("hgb", "logreg")
#: Types a skops member file may hold beyond skops' own defaults (checked before loading).
TRUSTED_TYPES: frozenset[str] = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})
#: File suffix of a stored feature member.
SUFFIX = ".skops"


def make_estimator(kind: str, seed: int = 0):
    """A fresh, unfitted scikit-learn classifier of ``kind`` (see module doc)."""
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.03, max_leaf_nodes=15, min_samples_leaf=40,
            l2_regularization=1.0, class_weight="balanced", random_state=seed)
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # Standardised features: as good on the session folds as a quantile transform, and
        # ~0.1 ms per frame instead of ~29 (benchmarks/RESULTS.md).
        return make_pipeline(StandardScaler(),
                             LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000))
    raise ValueError(f"unknown feature-model kind {kind!r} (known: {', '.join(FEATURE_KINDS)})")


class FeatureModel:
    """A scikit-learn classifier on frame features, usable as an ensemble member model.

    ``estimator`` is fitted on :func:`~qcodes_stmtip.classify.features.frame_features`
    of (N, s, s, 1) images; :meth:`predict` returns (N, ``n_outputs``) probabilities with
    column k for integer label k (0 for a label absent from training).
    """

    #: Feature members see each frame once: the features keep the scan-line direction,
    #: so the symmetry views of test-time augmentation would change their meaning.
    symmetry_views = False

    def __init__(self, kind: str, estimator, n_outputs: int, image_size: int, name: str | None = None):
        if kind not in FEATURE_KINDS:
            raise ValueError(f"unknown feature-model kind {kind!r} (known: {', '.join(FEATURE_KINDS)})")
        self.kind = kind
        self.estimator = estimator
        self.n_outputs = int(n_outputs)
        self.image_size = int(image_size)
        self.name = name or kind

    @property
    def input_shape(self) -> tuple[None, int, int, int]:
        return (None, self.image_size, self.image_size, 1)

    @property
    def output_shape(self) -> tuple[None, int]:
        return (None, self.n_outputs)

    @classmethod
    def train(cls, kind: str, features: np.ndarray, labels: np.ndarray, n_outputs: int, image_size: int,
              seed: int = 0, name: str | None = None) -> FeatureModel:
        """Fit a new ``kind`` model on precomputed ``features`` (N, F) and integer ``labels`` (N,)."""
        y = np.asarray(labels, dtype=int)
        if y.size == 0 or np.unique(y).size < 2:
            raise ValueError(f"a {kind} member needs at least two classes in its training labels")
        estimator = make_estimator(kind, seed)
        estimator.fit(np.asarray(features, dtype=np.float64), y)
        return cls(kind, estimator, n_outputs, image_size, name)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """(N, n_outputs) float64 probabilities from precomputed features."""
        f = np.asarray(features, dtype=np.float64)
        out = np.zeros((f.shape[0], self.n_outputs))
        if f.shape[0]:
            out[:, np.asarray(self.estimator.classes_, dtype=int)] = self.estimator.predict_proba(f)
        return out

    def predict(self, x: np.ndarray, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """(N, n_outputs) probabilities of a preprocessed (N, s, s, 1) batch (Keras-like call)."""
        del batch_size, verbose
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != (self.image_size, self.image_size, 1):
            raise ValueError(f"{self.name}: batch must have shape (N, {self.image_size}, {self.image_size}, 1), "
                             f"got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, self.n_outputs))
        return self.predict_features(frame_features(x))

    def save(self, file: str | Path) -> None:
        """Write the fitted estimator to ``file`` with skops (no pickle), the archive deflated
        (about a third of the stored size; it loads the same way)."""
        import zipfile

        import skops.io as sio

        sio.dump(self.estimator, Path(file), compression=zipfile.ZIP_DEFLATED, compresslevel=9)

    @classmethod
    def load(cls, file: str | Path, kind: str, n_outputs: int, image_size: int, name: str | None = None
             ) -> FeatureModel:
        """Load a skops file, refusing types outside :data:`TRUSTED_TYPES` (``ValueError``)."""
        import skops.io as sio

        untrusted = set(sio.get_untrusted_types(file=Path(file)))
        foreign = sorted(untrusted - TRUSTED_TYPES)
        if foreign:
            raise ValueError(f"holds types that are not trusted: {', '.join(foreign)}")
        estimator = sio.load(Path(file), trusted=sorted(untrusted))
        if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
            raise ValueError(f"holds a {type(estimator).__name__}, not a fitted classifier")
        from qcodes_stmtip.classify.features import feature_names

        expected = len(feature_names(image_size))
        if getattr(estimator, "n_features_in_", expected) != expected:
            raise ValueError(f"it was fitted on {estimator.n_features_in_} features; this version of "
                             f"qcodes_stmtip computes {expected} (retrain the bundle)")
        classes = np.asarray(estimator.classes_)
        if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0 \
                or classes.max() >= n_outputs:
            raise ValueError(f"its classes {classes.tolist()} are not integer labels 0..{n_outputs - 1}")
        check_fitted_arrays(estimator, expected, len(classes))
        return cls(kind, estimator, n_outputs, image_size, name)


#: Arrays of a fitted estimator that hold one value per feature.
_PER_FEATURE = ("mean_", "scale_", "var_")
#: Most objects :func:`check_fitted_arrays` visits in one estimator.
_MAX_VISITS = 1 << 20


def check_fitted_arrays(estimator, n_features: int, n_classes: int) -> None:
    """Refuse a fitted estimator whose arrays do not fit ``n_features`` and ``n_classes``, or hold
    non-finite numbers (``ValueError`` naming the attribute).

    Walks the estimator's attributes (pipelines, trees, bin mappers): every floating-point
    array must be finite; ``n_features_in_`` must be ``n_features``; ``coef_`` must be
    (``n_classes`` or 1, ``n_features``) and ``intercept_`` match it; per-feature scaler
    arrays (``mean_``, ``scale_``, ``var_``) must have ``n_features`` values; tree nodes must
    split on features below ``n_features``; a gradient-boosting model must have one tree per
    class and iteration (one for two classes).
    """
    rows = 1 if n_classes == 2 else n_classes
    seen: set[int] = set()
    stack: list[tuple[object, str]] = [(estimator, "estimator")]
    while stack:
        obj, path = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if len(seen) > _MAX_VISITS:
            raise ValueError(f"{path}: more than {_MAX_VISITS} objects in one member")
        if isinstance(obj, np.ndarray):
            _check_array(obj, path, n_features)
        elif isinstance(obj, list | tuple):
            stack.extend((x, f"{path}[{i}]") for i, x in enumerate(obj))
        elif isinstance(obj, dict):
            stack.extend((x, f"{path}[{k!r}]") for k, x in obj.items())
        elif type(obj).__module__.startswith("sklearn") and hasattr(obj, "__dict__"):
            attrs = vars(obj)
            if "n_features_in_" in attrs and attrs["n_features_in_"] != n_features:
                raise ValueError(f"{path}.n_features_in_ is {attrs['n_features_in_']}, expected {n_features}")
            coef = attrs.get("coef_")
            if isinstance(coef, np.ndarray) and coef.shape not in ((rows, n_features), (n_classes, n_features)):
                raise ValueError(f"{path}.coef_ has shape {coef.shape}, expected ({rows}, {n_features}) "
                                 f"for {n_classes} classes and {n_features} features")
            intercept = attrs.get("intercept_")
            if isinstance(coef, np.ndarray) and isinstance(intercept, np.ndarray) \
                    and intercept.shape != coef.shape[:1]:
                raise ValueError(f"{path}.intercept_ has shape {intercept.shape}, expected {coef.shape[:1]}")
            for name in _PER_FEATURE:
                value = attrs.get(name)
                if isinstance(value, np.ndarray) and value.shape != (n_features,):
                    raise ValueError(f"{path}.{name} has shape {value.shape}, expected ({n_features},)")
            predictors = attrs.get("_predictors")
            if isinstance(predictors, list) and any(
                    not isinstance(p, list) or len(p) != rows for p in predictors):
                raise ValueError(f"{path}._predictors: expected {rows} tree(s) per iteration "
                                 f"for {n_classes} classes")
            stack.extend((x, f"{path}.{k}") for k, x in attrs.items())


def _check_array(array: np.ndarray, path: str, n_features: int) -> None:
    if array.dtype.names:  # tree nodes: finite values and thresholds, known features
        for field in array.dtype.names:
            values = array[field]
            if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
                raise ValueError(f"{path}['{field}'] holds non-finite values (NaN or inf)")
        if "feature_idx" in array.dtype.names and array.size \
                and int(np.max(array["feature_idx"])) >= n_features:
            raise ValueError(f"{path}['feature_idx'] splits on feature {int(np.max(array['feature_idx']))} "
                             f"of {n_features}")
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{path} holds non-finite values (NaN or inf)")
    elif array.dtype == object:
        raise ValueError(f"{path} is an object array")
