"""Training loop of the paper: reciprocal-frequency class weights, softmax (or sigmoid) + binary
cross-entropy, per-epoch learning-rate decay, early stopping on a session-split validation set,
on-the-fly augmentation, tqdm progress and reproducible seeds. Importing this module imports Keras.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from qcodes_stmtip.classify.architectures import build_model
from qcodes_stmtip.classify.augment import AugmentConfig, augment_batch, dihedral_views
from qcodes_stmtip.classify.ensemble import mean_over_views
from qcodes_stmtip.classify.keras_backend import keras
from qcodes_stmtip.classify.train_config import OPTIMIZERS, TrainConfig  # noqa: F401 - re-exported


@dataclass
class TrainResult:
    """A trained model with its history (per-epoch losses) and wall time in seconds."""

    model: keras.Model
    config: TrainConfig
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    pretrain_frames: int = 0
    pretrain_epochs: int = 0

    def summary(self) -> dict[str, object]:
        return {
            **asdict(self.config),
            "pretrain_frames": self.pretrain_frames,
            "pretrain_epochs": self.pretrain_epochs,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 2),
            "parameters": int(self.model.count_params()),
        }


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Reciprocal-frequency weights ``N / (K · n_k)`` (0 for absent classes)."""
    y = np.asarray(labels, dtype=int)
    if y.size == 0 or np.any((y < 0) | (y >= n_classes)):
        raise ValueError(f"labels must be a non-empty array of ints in 0…{n_classes - 1}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, y.size / (n_classes * counts), 0.0)
    return w


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled, augmented ``(x, one-hot y, sample weight)`` batches, reshuffled every epoch."""

    def __init__(self, x, labels, n_classes, weights, batch_size, rng, *, augment, restricted, steps,
                 augment_config: AugmentConfig | None = None):
        super().__init__()
        self.x, self.labels = x, np.asarray(labels, dtype=int)
        self.onehot = np.eye(n_classes, dtype=np.float32)[self.labels]
        self.sw = weights[self.labels].astype(np.float32)
        self.batch_size, self.rng = batch_size, rng
        self.augment, self.restricted = augment, restricted
        self.augment_config = augment_config or AugmentConfig()
        self.steps = steps or int(np.ceil(len(x) / batch_size))
        self._order = self._new_order()

    def _new_order(self) -> np.ndarray:
        reps = int(np.ceil(self.steps * self.batch_size / len(self.x)))
        return np.concatenate([self.rng.permutation(len(self.x)) for _ in range(reps)])

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i):
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        if idx.size == 0:
            idx = self._order[: self.batch_size]
        xb = self.x[idx]
        if self.augment:
            xb = augment_batch(xb, self.rng, self.restricted[idx], self.augment_config)
        return xb, self.onehot[idx], self.sw[idx]

    def on_epoch_end(self) -> None:
        self._order = self._new_order()


class TqdmProgress(keras.callbacks.Callback):
    """One tqdm bar over all training steps, showing the latest losses."""

    def __init__(self, total_steps: int, desc: str, disable: bool = False):
        super().__init__()
        self.bar = tqdm(total=total_steps, desc=desc, unit="batch", disable=disable, leave=False)
        self.last: dict[str, float] = {}

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", **self.last, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_loss" in logs:
            self.last = {"val_loss": f"{float(logs['val_loss']):.4f}"}

    def on_train_end(self, logs=None):
        self.bar.close()


def _optimizer(name: str, learning_rate: float):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.RMSprop(learning_rate)


def train_classifier(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    *,
    restricted: np.ndarray | None = None,
    progress: bool = True,
    name: str | None = None,
    pretrain: tuple[np.ndarray, np.ndarray] | None = None,
    pretrain_epochs: int = 0,
) -> TrainResult:
    """Build and train ``config.architecture`` on (N, s, s, 1) images with integer labels.

    ``restricted`` marks training images that only get horizontal flips + noise
    (default: all when ``config.restricted_augment``, else none). With ``pretrain``
    ``(x, y)`` (e.g. simulated frames of the same classes) the network first trains
    ``pretrain_epochs`` epochs on those (augmented, class-weighted, no early stopping),
    then the optimizer is reset and training proceeds on ``x_train`` as usual; the
    pre-training time is included in ``seconds``. Returns the model with the best
    validation-loss weights restored.
    """
    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    y_train = np.asarray(y_train, dtype=int)
    y_val = np.asarray(y_val, dtype=int)
    if x_train.ndim != 4 or x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"x_train/x_val must be (N, s, s, 1) alike, got {x_train.shape}, {x_val.shape}")
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError("x and y must have the same length for training and validation")
    if len(x_val) == 0:
        raise ValueError("the validation set is empty")
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    weights = class_weights(y_train, n_classes)
    if restricted is None:
        restricted = np.full(len(x_train), config.restricted_augment)
    model = build_model(config.architecture, n_classes, width=config.width, head=config.head,
                        size=x_train.shape[1])
    if name:
        model.name = name
    t0 = time.perf_counter()
    pre_frames = 0
    if pretrain is not None and pretrain_epochs > 0:
        x_pre = np.asarray(pretrain[0], dtype=np.float32)
        y_pre = np.asarray(pretrain[1], dtype=int)
        if x_pre.shape[1:] != x_train.shape[1:] or len(x_pre) != len(y_pre) or len(y_pre) == 0:
            raise ValueError(f"pretrain images must be (N, {', '.join(map(str, x_train.shape[1:]))}) with "
                             f"one label each, got {x_pre.shape} and {y_pre.shape}")
        model.compile(optimizer=_optimizer(config.optimizer, config.learning_rate),
                      loss=keras.losses.BinaryCrossentropy())
        pre = AugmentedBatches(x_pre, y_pre, n_classes, class_weights(y_pre, n_classes), config.batch_size,
                               rng, augment=config.augment,
                               restricted=np.full(len(x_pre), config.restricted_augment),
                               steps=None)
        pre_frames = len(y_pre)
        model.fit(pre, epochs=pretrain_epochs, verbose=0, shuffle=False,
                  callbacks=[TqdmProgress(pretrain_epochs * len(pre), f"{name or config.architecture} "
                                          "pre-training", disable=not progress)])
    model.compile(optimizer=_optimizer(config.optimizer, config.learning_rate),
                  loss=keras.losses.BinaryCrossentropy())
    batches = AugmentedBatches(x_train, y_train, n_classes, weights, config.batch_size, rng,
                               augment=config.augment, restricted=np.asarray(restricted, bool),
                               steps=config.steps_per_epoch,
                               augment_config=AugmentConfig(
                                   restricted_vertical_flip=config.restricted_vertical_flip))
    val_onehot = np.eye(n_classes, dtype=np.float32)[y_val]
    val_sw = np.where(weights[y_val] > 0, weights[y_val], 1.0).astype(np.float32)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                            restore_best_weights=True)
    lr0, decay = config.learning_rate, config.lr_decay
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda epoch: lr0 * decay**epoch),
        stopper,
        TqdmProgress(config.epochs * len(batches), name or config.architecture, disable=not progress),
    ]
    hist = model.fit(batches, validation_data=(x_val, val_onehot, val_sw), epochs=config.epochs,
                     callbacks=callbacks, verbose=0, shuffle=False)
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_losses = history.get("val_loss", [])
    return TrainResult(
        model=model, config=config, history=history, epochs_run=len(val_losses),
        best_epoch=int(np.argmin(val_losses)) + 1 if val_losses else 0, seconds=seconds,
        pretrain_frames=pre_frames, pretrain_epochs=pretrain_epochs if pre_frames else 0,
    )


def predict_probabilities(model: keras.Model, x: np.ndarray, batch_size: int = 64, *,
                          tta: bool = False, restricted: bool = False,
                          vertical_flip: bool = False) -> np.ndarray:
    """Model outputs for (N, s, s, 1) images, float64 (N, K), in inference mode.

    ``tta`` averages the outputs over the symmetry views of :func:`dihedral_views`
    (8 views; 2 with ``restricted`` for the tip-change network, 4 with ``vertical_flip``
    too): as many times the inference cost.
    """
    x = np.asarray(x, dtype=np.float32)
    def views(batch: np.ndarray) -> list[np.ndarray]:
        return dihedral_views(batch, restricted=restricted, vertical_flip=vertical_flip) if tta else [batch]

    return mean_over_views(model, x, views, batch_size)
