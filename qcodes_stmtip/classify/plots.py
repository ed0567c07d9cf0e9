"""ROC, precision–recall and confusion-matrix figures (PNG) with scikit-learn's displays.

Uses matplotlib's non-interactive Agg canvas; every function writes one file and
returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_roc(y_true: np.ndarray, probabilities: np.ndarray, classes, path: str | Path, title: str = "") -> Path:
    """One-vs-rest ROC curve per class (AUROC in the legend) to ``path``."""
    from sklearn.metrics import RocCurveDisplay

    fig, ax = _figure()
    for k, name in enumerate(classes):
        positive = np.asarray(y_true) == k
        if positive.any() and not positive.all():
            RocCurveDisplay.from_predictions(positive, probabilities[:, k], name=name, ax=ax)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="guessing")
    ax.set_title(title or "ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
    return Path(path)


def plot_pr(y_true: np.ndarray, probabilities: np.ndarray, classes, path: str | Path, title: str = "") -> Path:
    """One-vs-rest precision–recall curve per class to ``path``."""
    from sklearn.metrics import PrecisionRecallDisplay

    fig, ax = _figure()
    for k, name in enumerate(classes):
        positive = np.asarray(y_true) == k
        if positive.any() and not positive.all():
            PrecisionRecallDisplay.from_predictions(positive, probabilities[:, k], name=name, ax=ax)
    ax.set_title(title or "Precision–recall")
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(path)
    return Path(path)


def plot_confusion(y_true: np.ndarray, predictions: np.ndarray, classes, path: str | Path, title: str = "") -> Path:
    """Confusion matrix (true rows, predicted columns) to ``path``."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = _figure()
    ConfusionMatrixDisplay.from_predictions(
        y_true, predictions, labels=list(range(len(classes))), display_labels=list(classes),
        ax=ax, colorbar=False, xticks_rotation=45,
    )
    ax.set_title(title or "Confusion matrix")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
