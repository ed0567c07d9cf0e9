"""The paper's non-CNN baselines: a random-forest classifier (5,000 trees) and weighted random guessing."""

from __future__ import annotations

import numpy as np

from qcodes_stmtip.classify.preprocess import resize


def forest_features(images: np.ndarray, size: int = 32) -> np.ndarray:
    """Flattened pixel features for the forest: (N, s, s, 1) images resized to ``size``² → (N, size²)."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim != 4:
        raise ValueError(f"images must have shape (N, s, s, 1), got {batch.shape}")
    return np.stack([resize(img[:, :, 0], size).ravel() for img in batch])


class RandomForestBaseline:
    """scikit-learn random forest on resized pixel values, balanced class weights.

    ``n_estimators`` defaults to the paper's 5,000 trees; ``feature_size`` is the
    side the images are shrunk to before flattening (pixels).
    """

    def __init__(self, n_estimators: int = 5000, feature_size: int = 32, seed: int = 0, n_jobs: int = 1):
        from sklearn.ensemble import RandomForestClassifier

        if n_estimators < 1:
            raise ValueError(f"n_estimators must be ≥ 1, got {n_estimators}")
        self.feature_size = feature_size
        self.forest = RandomForestClassifier(
            n_estimators=n_estimators, class_weight="balanced", random_state=seed, n_jobs=n_jobs
        )
        self.n_classes = 0

    def fit(self, images: np.ndarray, labels: np.ndarray, n_classes: int) -> RandomForestBaseline:
        self.n_classes = n_classes
        self.forest.fit(forest_features(images, self.feature_size), np.asarray(labels, dtype=int))
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, n_classes) class probabilities (classes unseen in training get 0)."""
        raw = self.forest.predict_proba(forest_features(images, self.feature_size))
        out = np.zeros((raw.shape[0], self.n_classes))
        out[:, self.forest.classes_] = raw
        return out


class WeightedRandomGuess:
    """Guess a class at random with the training frequencies; outputs one-hot "probabilities"."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.priors: np.ndarray | None = None

    def fit(self, labels: np.ndarray, n_classes: int) -> WeightedRandomGuess:
        counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
        if counts.sum() == 0:
            raise ValueError("labels is empty: cannot estimate class frequencies")
        self.priors = counts / counts.sum()
        return self

    def predict_proba(self, n: int) -> np.ndarray:
        """(n, n_classes) one-hot guesses drawn with the training class frequencies."""
        if self.priors is None:
            raise RuntimeError("WeightedRandomGuess.fit() must be called first")
        guesses = self.rng.choice(self.priors.size, size=n, p=self.priors)
        return np.eye(self.priors.size)[guesses]
