"""Hyper-parameters of one network (:class:`TrainConfig`), without Keras.

Kept apart from :mod:`qcodes_stmtip.classify.training` (which imports Keras) so that the
feature-member recipe of ``stmtip train`` / ``stmtip evaluate`` runs on the base install.
"""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass
class TrainConfig:
    """Hyper-parameters of one network. ``lr_decay`` multiplies the learning rate every epoch;
    ``patience`` epochs without validation-loss improvement stop training (best weights kept);
    ``steps_per_epoch`` (None = one pass over the training set) repeats augmented data;
    ``restricted_augment`` limits every sample to horizontal flips + noise (tip-change network);
    ``restricted_vertical_flip`` adds vertical flips for those samples (not the paper's rule,
    see :class:`~qcodes_stmtip.classify.augment.AugmentConfig`)."""

    architecture: str
    width: float = 1.0
    head: str = "softmax"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_decay: float = 0.95
    epochs: int = 30
    batch_size: int = 128
    patience: int = 5
    augment: bool = True
    restricted_augment: bool = False
    restricted_vertical_flip: bool = False
    steps_per_epoch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
