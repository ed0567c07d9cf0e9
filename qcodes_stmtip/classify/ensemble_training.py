"""Train a whole surface ensemble (members + optional binary tip-change network) and score it.

Used by ``stmtip train`` / ``stmtip evaluate`` and the Table I benchmark. The
validation split is by session (:func:`~qcodes_stmtip.classify.labels.session_split`);
ambiguous frames (label −1) are left out of the multi-class task but used by the
tip-change network. Keras is imported only when a network member is trained or scored,
so the feature-member recipe runs on the base install.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.dataset_images import ImageSet
from qcodes_stmtip.classify.decision import (
    DEFAULT_RISK,
    BadTipDecision,
    Risk,
    bad_class_evidence,
    fit_decision,
    truth_bad,
)
from qcodes_stmtip.classify.ensemble import Ensemble, EnsemblePrediction, Member, majority_vote
from qcodes_stmtip.classify.feature_model import FEATURE_KINDS, FeatureModel
from qcodes_stmtip.classify.labels import session_split
from qcodes_stmtip.classify.metrics import (
    balanced_accuracy_weights,
    binary_scores,
    calibration_warnings,
    confident_precision,
    good_bad_scores,
    score,
    thresholds_for_precision,
    tip_change_threshold,
)
from qcodes_stmtip.classify.train_config import TrainConfig
from qcodes_stmtip.taxonomy import CONTENT_CLASSES, GOOD_CLASSES

#: The paper's H:Si(100) ensemble: two SqueezeNets and one batch-normalised VGG with
#: adam, sgd and rmsprop at learning rates 1e-3, 1e-4, 1e-4.
PAPER_MEMBERS = "squeezenet:adam:1e-3,squeezenet:sgd:1e-4,vgg_bn:rmsprop:1e-4"
#: The paper's members with the sgd / rmsprop learning rates raised (sgd with Nesterov momentum)
#: so that short CPU trainings converge.
PAPER_MEMBERS_FAST = "squeezenet:adam:1e-3,squeezenet:sgd:1e-2,vgg_bn:rmsprop:1e-3"
#: Three adam SqueezeNets (seeds differ): the best CNN vote measured on real H:Si(100) session folds.
CNN_MEMBERS = "squeezenet:adam:1e-3,squeezenet:adam:1e-3,squeezenet:adam:1e-3"
#: Gradient-boosted trees and logistic regression on frame features
#: (:mod:`~qcodes_stmtip.classify.feature_model`): the best measured on the session folds of
#: ``benchmarks/cv_hsi100.py`` (benchmarks/RESULTS.md), the default of ``stmtip train``; the
#: tip-change model is then the first member's kind.
BEST_MEMBERS = "hgb,logreg"
#: Named member lists ``stmtip train --members`` accepts besides explicit specs.
MEMBER_PRESETS = {"best": BEST_MEMBERS, "cnn": CNN_MEMBERS, "paper": PAPER_MEMBERS,
                  "paper-fast": PAPER_MEMBERS_FAST}


@dataclass(frozen=True)
class MemberSpec:
    """``architecture:optimizer:learning_rate`` of one member."""

    architecture: str
    optimizer: str = "adam"
    learning_rate: float = 1e-3

    @classmethod
    def parse(cls, text: str) -> MemberSpec:
        parts = text.strip().split(":")
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise ValueError(f"member spec must be 'architecture[:optimizer[:lr]]', got {text!r}")
        try:
            lr = float(parts[2]) if len(parts) == 3 else 1e-3
        except ValueError as exc:
            raise ValueError(f"member spec {text!r}: learning rate is not a number") from exc
        return cls(parts[0], parts[1] if len(parts) > 1 else "adam", lr)


def parse_members(text: str) -> list[MemberSpec]:
    """Parse a comma-separated list of member specs, or a name of :data:`MEMBER_PRESETS`."""
    text = MEMBER_PRESETS.get(text.strip(), text)
    specs = [MemberSpec.parse(t) for t in text.split(",") if t.strip()]
    if not specs:
        raise ValueError("members: at least one member spec is needed")
    return specs


def split_by_session(data: ImageSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indexes into ``data`` split by whole sessions."""
    return session_split(data.frames.sessions, val_fraction, seed)


def train_ensemble(
    data: ImageSet,
    base: TrainConfig,
    members: list[MemberSpec],
    *,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    tip_change: bool | None = None,
    target_precision: float | None = None,
    progress: bool = True,
    pretrain: ImageSet | None = None,
    pretrain_epochs: int = 8,
    tta: bool = False,
    tip_change_epochs: int | None = None,
    tip_change_patience: int | None = None,
    tip_change_precision: float = 0.5,
    balanced_decisions: bool = True,
    refit: bool = True,
    keep_validation_outputs: bool = False,
    decision_rule: str = "calibrated",
    decision_risk: Risk = DEFAULT_RISK,
) -> tuple[Ensemble, dict]:
    """Train the members (and the tip-change network) and return the ensemble and a report.

    ``base`` gives the shared settings (width, epochs, batch size, …); each member
    overrides architecture, optimizer and learning rate and gets seed ``base.seed + i``.
    ``tip_change`` defaults to True when the data has tip-change labels and the
    tip-change state is not itself one of the classes. ``target_precision`` sets
    per-class thresholds on the validation set (else 0.5). ``pretrain`` (labelled frames of
    the same classes, e.g. simulated) is trained on for ``pretrain_epochs`` epochs before
    each member's own training (not the tip-change network's). ``tta`` makes the ensemble
    average every network over the symmetry views (validation scores and thresholds
    included); the tip-change network's views include vertical flips when
    ``base.restricted_vertical_flip`` (it was trained with them). ``tip_change_epochs`` /
    ``tip_change_patience`` override ``base`` for the tip-change network.

    Members whose architecture is a feature kind (:data:`~qcodes_stmtip.classify.feature_model.FEATURE_KINDS`)
    are scikit-learn models on frame features (seconds to train); the tip-change model has the
    first member's kind. Calibration on the validation sessions: the per-class thresholds
    (``target_precision``) and the tip-change threshold (the lowest reaching
    ``tip_change_precision``, see :func:`~qcodes_stmtip.classify.metrics.tip_change_threshold`).
    The good/bad decision (:mod:`~qcodes_stmtip.classify.decision`) is fitted on the labelled
    validation frames too: one calibrated P(bad) from the bad-class and tip-change evidence, and
    the operating points for ``decision_risk``; ``decision_rule="vote"`` keeps it in the bundle
    but decides by the paper's vote. ``balanced_decisions`` weights the vote by class weights (normalised to mean 1;
    :func:`~qcodes_stmtip.classify.ensemble.majority_vote`): 1 / training class frequency, then
    tuned on the validation sessions for the highest balanced accuracy
    (:func:`~qcodes_stmtip.classify.metrics.balanced_accuracy_weights`); False is the paper's
    plain vote. With
    ``refit`` the feature members (seconds to train) are fitted once more on training and
    validation frames together after every threshold has been set from their validation
    outputs (CNN members keep the weights early stopping chose).
    The report's ``warnings`` lists every threshold that rests on too little validation
    evidence (:func:`~qcodes_stmtip.classify.metrics.calibration_warnings`); ``stmtip train``
    prints them. With ``keep_validation_outputs`` the report also holds the validation arrays
    every calibration was fitted on (``validation_outputs``: indexes into ``data``, the members'
    probabilities before any refit, the tip-change probabilities), so that benchmarks can compare
    decision rules without retraining.
    """
    frames = data.frames
    classes = frames.classes
    tr, va = split_by_session(data, val_fraction, split_seed)
    lab_tr = tr[frames.labels[tr] >= 0]
    lab_va = va[frames.labels[va] >= 0]
    if lab_tr.size == 0 or lab_va.size == 0:
        raise ValueError("the session split left no labelled frames for training or validation")
    restricted = np.zeros(len(frames), bool)
    if "tip_change" in classes:
        restricted = frames.labels == classes.index("tip_change")
    pre = None
    if pretrain is not None:
        if tuple(pretrain.frames.classes) != tuple(classes):
            raise ValueError(f"pretrain classes {pretrain.frames.classes} differ from {tuple(classes)}")
        keep = pretrain.frames.labels >= 0
        if not keep.any():
            raise ValueError("the pretrain data holds no labelled frames")
        pre = (pretrain.images[keep], pretrain.frames.labels[keep])
    x_tr, y_tr = data.images[lab_tr], frames.labels[lab_tr]
    x_va, y_va = data.images[lab_va], frames.labels[lab_va]
    size = int(data.images.shape[1])
    features = _FeatureCache(data.images, progress)
    trained, report_members = [], []
    for i, spec in enumerate(members):
        if spec.architecture in FEATURE_KINDS:
            name = f"{spec.architecture}_{i}"
            model, info = _train_feature_member(spec.architecture, features, lab_tr, y_tr, len(classes),
                                                size, base.seed + i, name)
            probs = model.predict_features(features[lab_va])
        else:
            from qcodes_stmtip.classify.training import predict_probabilities, train_classifier

            cfg = replace(base, architecture=spec.architecture, optimizer=spec.optimizer,
                          learning_rate=spec.learning_rate, seed=base.seed + i)
            name = f"{spec.architecture}_{spec.optimizer}_{i}"
            result = train_classifier(x_tr, y_tr, x_va, y_va, len(classes), cfg,
                                      restricted=restricted[lab_tr], progress=progress, name=name,
                                      pretrain=pre, pretrain_epochs=pretrain_epochs if pre else 0)
            model = result.model
            probs = predict_probabilities(model, x_va, tta=tta)
            info = result.summary()
        info["validation"] = score(y_va, probs, classes).as_dict()
        trained.append((Member(name, spec.architecture, model, info), probs))
        report_members.append({"name": name, **info})
    member_probs = np.stack([p for _, p in trained])
    class_weights = None
    if balanced_decisions:
        class_weights = vote_class_weights(y_tr, y_va, member_probs.mean(axis=0))
    vote = majority_vote(member_probs, class_weights=class_weights)
    thresholds = np.full(len(classes), 0.5)
    if target_precision is not None:
        thresholds = thresholds_for_precision(y_va, vote.mean, target_precision)
    ens_scores = score(y_va, vote.mean, classes, predictions=vote.vote_class)
    tc_member, tc_scores = None, None
    y_tc_va = p_tc_va = None
    if tip_change is None:
        tip_change = frames.tip_change is not None and "tip_change" not in classes and bool(
            frames.tip_change.any())
    if tip_change:
        if frames.tip_change is None:
            raise ValueError("tip_change=True but the labels have no tip-change column")
        y_tc = frames.tip_change.astype(int)
        kind = members[0].architecture
        if kind in FEATURE_KINDS:
            model, info = _train_feature_member(kind, features, tr, y_tc[tr], 2, size,
                                                base.seed + len(members), "tip_change")
            p_tc = model.predict_features(features[va])[:, 1]
        else:
            from qcodes_stmtip.classify.training import predict_probabilities, train_classifier

            cfg = replace(base, architecture=kind, optimizer=members[0].optimizer,
                          learning_rate=members[0].learning_rate, restricted_augment=True,
                          seed=base.seed + len(members),
                          epochs=base.epochs if tip_change_epochs is None else tip_change_epochs,
                          patience=base.patience if tip_change_patience is None else tip_change_patience)
            result = train_classifier(data.images[tr], y_tc[tr], data.images[va], y_tc[va], 2, cfg,
                                      progress=progress, name="tip_change")
            model, info = result.model, result.summary()
            p_tc = predict_probabilities(model, data.images[va], tta=tta, restricted=True,
                                         vertical_flip=base.restricted_vertical_flip)[:, 1]
        threshold, rule = 0.5, "default (validation has one tip-change class only)"
        if y_tc[va].any() and not y_tc[va].all():
            threshold, rule = tip_change_threshold(y_tc[va].astype(bool), p_tc, tip_change_precision)
        y_tc_va, p_tc_va = y_tc[va], p_tc
        tc_scores = {**binary_scores(y_tc[va].astype(bool), p_tc, threshold),
                     "threshold": threshold, "threshold_rule": rule}
        info = {**info, "validation": tc_scores}
        tc_member = Member("tip_change", kind, model, info)
    decision, decision_problem = None, None
    try:
        decision = fit_surface_decision(
            frames.surface, classes, vote.mean, y_va,
            None if frames.tip_change is None else frames.tip_change[lab_va],
            None if p_tc_va is None else p_tc_va[frames.labels[va] >= 0],
            decision_risk, sessions=len(set(frames.sessions[va].tolist())))
    except ValueError as exc:  # e.g. validation sessions without a bad (or a good) frame
        decision_problem = f"no calibrated good/bad decision ({exc}): verdicts use the paper's vote rule"
    if refit:
        _refit_feature_members(trained, tc_member, features, np.concatenate([lab_tr, lab_va]),
                               np.concatenate([tr, va]), frames, size)
    ensemble = Ensemble(frames.surface, classes, [m for m, _ in trained], thresholds=thresholds,
                        tip_change=tc_member, tta=tta, class_weights=class_weights,
                        tip_change_threshold=tc_scores["threshold"] if tc_scores else 0.5,
                        tip_change_vertical_flip=bool(tip_change and base.restricted_vertical_flip),
                        decision=decision, decision_rule=decision_rule)
    validation_sessions = sorted(set(frames.sessions[va].tolist()))
    warnings_ = calibration_warnings(
        y_va, classes, len(validation_sessions), class_thresholds_calibrated=target_precision is not None,
        tip_change_labels=y_tc_va, tip_change_probability=p_tc_va,
        tip_change_threshold=tc_scores["threshold"] if tc_scores else None)
    if decision_problem:
        warnings_.append(decision_problem)
    report = {
        "validation_sessions": validation_sessions,
        "warnings": warnings_,
        "train_frames": int(lab_tr.size),
        "validation_frames": int(lab_va.size),
        "members": report_members,
        "ensemble": ens_scores.as_dict(),
        "tip_change": tc_scores,
        "thresholds": dict(zip(classes, thresholds.tolist(), strict=True)),
        "class_weights": None if class_weights is None else class_weights.tolist(),
        "decision": None if decision is None else {**decision.as_dict(), "rule": decision_rule},
    }
    if keep_validation_outputs:
        report["validation_outputs"] = {"labelled_index": lab_va, "member_probabilities": member_probs,
                                        "index": va, "tip_change_probability": p_tc_va}
    return ensemble, report


def vote_class_weights(y_train: np.ndarray, y_val: np.ndarray, val_mean: np.ndarray) -> np.ndarray:
    """The recipe's vote weights: 1 / training class frequency (normalised to mean 1), then tuned on
    the validation outputs ``val_mean`` (N, K) for the highest balanced accuracy."""
    counts = np.bincount(y_train, minlength=val_mean.shape[1]).astype(float)
    inverse = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 1.0)
    return balanced_accuracy_weights(y_val, val_mean, start=inverse / inverse.mean())


def fit_surface_decision(surface: str, classes, val_mean: np.ndarray, y_val: np.ndarray,
                         tip_change_labels: np.ndarray | None, tip_change_probability: np.ndarray | None,
                         risk: Risk = DEFAULT_RISK, sessions: int | None = None) -> BadTipDecision:
    """The recipe's good/bad decision (:func:`~qcodes_stmtip.classify.decision.fit_decision`) on the
    labelled validation frames: their ensemble-mean probabilities ``val_mean``, labels ``y_val``,
    tip-change labels and probabilities (None without), with the surface's good and content classes."""
    good = frozenset(GOOD_CLASSES.get(surface, frozenset()))
    content = frozenset(CONTENT_CLASSES.get(surface, frozenset())) - good
    return fit_decision(bad_class_evidence(val_mean, classes, good, content), tip_change_probability,
                        truth_bad(y_val, classes, good, tip_change_labels, content), risk, sessions=sessions)


class _FeatureCache:
    """Frame features of ``images``, computed on first use (only feature members need them)."""

    def __init__(self, images: np.ndarray, progress: bool):
        self.images, self.progress, self._f = images, progress, None

    def __getitem__(self, index) -> np.ndarray:
        if self._f is None:
            from qcodes_stmtip.classify.features import frame_features

            if self.progress:
                print(f"computing frame features of {len(self.images)} frames", flush=True)
            self._f = frame_features(self.images)
        return self._f[index]


def _refit_feature_members(trained: list, tip: Member | None, features: _FeatureCache, labelled: np.ndarray,
                           every: np.ndarray, frames, size: int) -> None:
    """Refit feature members (in place) on ``labelled`` (four-class) / ``every`` (tip change) frames."""
    for member, _ in trained:
        if isinstance(member.model, FeatureModel):
            member.model, info = _train_feature_member(
                member.architecture, features, labelled, frames.labels[labelled], member.model.n_outputs, size,
                member.info["seed"], member.name)
            member.info.update(refit_frames=info["train_frames"], refit_seconds=info["seconds"])
    if tip is not None and isinstance(tip.model, FeatureModel):
        tip.model, info = _train_feature_member(tip.architecture, features, every,
                                                frames.tip_change[every].astype(int), 2, size,
                                                tip.info["seed"], "tip_change")
        tip.info.update(refit_frames=info["train_frames"], refit_seconds=info["seconds"])


def _train_feature_member(kind: str, features: _FeatureCache, index: np.ndarray, labels: np.ndarray,
                          n_outputs: int, size: int, seed: int, name: str) -> tuple[FeatureModel, dict]:
    import time

    from qcodes_stmtip.classify.features import feature_names

    t0 = time.perf_counter()
    model = FeatureModel.train(kind, features[index], labels, n_outputs, size, seed=seed, name=name)
    return model, {"architecture": kind, "kind": "sklearn", "features": len(feature_names(size)),
                   "seed": seed, "train_frames": int(len(index)),
                   "seconds": round(time.perf_counter() - t0, 2)}


def evaluate_ensemble(ensemble: Ensemble, data: ImageSet, plots_dir: str | Path | None = None) -> dict:
    """Table I rows (each member and the ensemble) on the labelled frames of ``data``, the
    ensemble's good/bad collapse, its confident calls and the tip-change network's scores.

    Writes ROC, PR and confusion-matrix PNGs of the ensemble to ``plots_dir`` when given.
    """
    frames = data.frames
    if tuple(frames.classes) != ensemble.classes:
        raise ValueError(f"data classes {frames.classes} differ from the model's {ensemble.classes}")
    pred: EnsemblePrediction = ensemble.predict(data.images)
    lab = frames.labels >= 0
    if not lab.any():
        raise ValueError("the data holds no labelled (unambiguous) frames to score")
    y = frames.labels[lab]
    rows = {}
    for m, probs in zip(ensemble.members, pred.member_probabilities, strict=True):
        rows[m.name] = score(y, probs[lab], ensemble.classes).as_dict()
    rows["ensemble"] = score(y, pred.mean[lab], ensemble.classes, predictions=pred.vote_class[lab]).as_dict()
    out: dict = {"table": rows, "n_labelled": int(lab.sum()), "n_frames": len(frames),
                 "good_bad": good_bad_scores(y, pred.mean[lab], pred.vote_class[lab], ensemble.classes,
                                             ensemble.good_classes),
                 "confident": confident_precision(y, pred.mean[lab], np.asarray(ensemble.thresholds),
                                                  pred.vote_class[lab])}
    if pred.tip_change_probability is not None and frames.tip_change is not None:
        out["tip_change"] = binary_scores(frames.tip_change, pred.tip_change_probability,
                                          ensemble.tip_change_threshold)
    if plots_dir is not None:
        from qcodes_stmtip.classify.plots import plot_confusion, plot_pr, plot_roc

        d = Path(plots_dir)
        d.mkdir(parents=True, exist_ok=True)
        out["plots"] = [
            str(plot_roc(y, pred.mean[lab], ensemble.classes, d / "roc.png", "Ensemble ROC")),
            str(plot_pr(y, pred.mean[lab], ensemble.classes, d / "pr.png", "Ensemble precision-recall")),
            str(plot_confusion(y, pred.vote_class[lab], ensemble.classes, d / "confusion.png")),
        ]
    return out


def format_table(rows: dict[str, dict], classes: tuple[str, ...] | None = None) -> str:
    """Plain-text Table I: model, mean AUROC, balanced accuracy, mean precision, mean average
    precision (area under PR) and the per-class AUROC."""
    names = list(rows)
    classes = classes or tuple(next(iter(rows.values()))["classes"])
    head = (f"{'model':<28} {'AUROC':>6} {'BalAcc':>6} {'Prec':>6} {'AP':>6}  "
            + " ".join(f"{c[:10]:>10}" for c in classes))
    lines = [head, "-" * len(head)]
    for n in names:
        r = rows[n]
        per = " ".join(f"{r['auroc'].get(c, float('nan')):>10.3f}" for c in classes)
        lines.append(f"{n:<28} {r['mean_auroc']:>6.3f} {r['balanced_accuracy']:>6.3f} {r['mean_precision']:>6.3f} "
                     f"{r.get('average_precision', float('nan')):>6.3f}  {per}")
    return "\n".join(lines)
