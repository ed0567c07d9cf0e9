"""Decision and combination rules compared on saved session-fold outputs, without retraining.

Reads the ``--predictions`` file of ``benchmarks/cv_hsi100.py`` (every fold's validation outputs,
before any refit, and its test outputs, per member) and, per fold, re-applies the recipe's
calibration with the functions :func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`
calls (``vote_class_weights``; ``fit_surface_decision``, the calibrated good/bad decision for the
default risk) to:

* ``features``: the feature members only (today's default recipe, ``hgb,logreg``);
* ``mean``: every member, plain mean (the recipe's rule for a mixed member list);
* ``half``: the feature members' mean and the network members' mean, half each;
* ``weighted``: the network members' share chosen on the validation sessions (log-loss, grid 0–1);
* ``network``: the network members only.

Printed per rule, mean ± std over folds: four-class AUROC and balanced accuracy, good/bad AUROC,
tip-change AUROC, and the four verdict figures of issue 23 (coverage, accuracy on decided frames,
bad tips called good and good tips called bad, both as shares of all frames), truth: bad when
the label is a bad class or the voters saw a tip change.

    .venv/bin/python benchmarks/cv_hsi100.py --protocol session --members hgb,logreg,squeezenet \\
        --steps-per-epoch 190 --epochs 12 --no-baseline --predictions /tmp/cv_mix.npz
    .venv/bin/python benchmarks/decision_rules.py /tmp/cv_mix.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.decision import DEFAULT_RISK, Risk, bad_class_evidence, truth_bad
from qcodes_stmtip.classify.ensemble import majority_vote
from qcodes_stmtip.classify.ensemble_training import fit_surface_decision, vote_class_weights
from qcodes_stmtip.classify.metrics import binary_scores, good_bad_scores, score, verdict_figures
from qcodes_stmtip.taxonomy import CLASSES, GOOD_CLASSES

RULES = ("features", "mean", "half", "weighted", "network")
ROWS = (("four-class AUROC", "auroc"), ("four-class balanced accuracy", "balanced_accuracy"),
        ("good/bad AUROC", "good_bad_auroc"), ("tip change AUROC", "tip_change_auroc"),
        ("verdicts: coverage", "coverage"), ("verdicts: accuracy on decided", "accuracy_decided"),
        ("verdicts: bad tips called good", "bad_called_good"),
        ("verdicts: good tips called bad", "good_called_bad"))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1))))


def combine(rule: str, probs: np.ndarray, network: np.ndarray, y_val: np.ndarray | None = None,
            val_probs: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(M', N, K) member probabilities under ``rule`` (weights folded in as repeated means) and the
    networks' share; ``weighted`` picks the share on the validation outputs."""
    feat, net = probs[~network], probs[network]
    if rule == "features" or not network.any():
        return feat, 0.0
    if rule == "network" or not (~network).any():
        return net, 1.0
    if rule == "mean":
        return probs, float(network.mean())
    share = 0.5
    if rule == "weighted":
        vf, vn = val_probs[~network].mean(0), val_probs[network].mean(0)
        grid = np.linspace(0, 1, 21)
        share = float(grid[int(np.argmin([_log_loss(y_val, (1 - w) * vf + w * vn) for w in grid]))])
    mixed = (1 - share) * feat.mean(0) + share * net.mean(0)
    return mixed[None], share


def fold_scores(z: dict, fold: int, rule: str, risk: Risk) -> dict:
    classes = CLASSES["hsi100"]
    good = GOOD_CLASSES["hsi100"]
    labels, tip = z["labels"], z["tip_change"].astype(bool)
    names = [str(n) for n in z[f"session_{fold}_member_names"]]
    network = np.array([not (n.startswith("hgb") or n.startswith("logreg") or n.startswith("mlp"))
                        for n in names])
    test = z["session_fold"] == fold
    val_lab, val_idx = z[f"session_{fold}_val_labelled"], z[f"session_{fold}_val_index"]
    val_members = z[f"session_{fold}_val_members"].astype(np.float64)
    test_members = z[f"session_{fold}_test_members"].astype(np.float64)
    y_va = labels[val_lab]
    v_probs, share = combine(rule, val_members, network, y_va, val_members)
    t_probs, _ = combine(rule, test_members, network, y_va, val_members)
    if rule == "weighted":  # the same share on test as chosen on validation
        t_probs = ((1 - share) * test_members[~network].mean(0) + share * test_members[network].mean(0))[None]
    y_tr = labels[np.setdiff1d(np.flatnonzero(~test), val_idx)]
    weights = vote_class_weights(y_tr[y_tr >= 0], y_va, v_probs.mean(0))
    val_vote = majority_vote(v_probs, class_weights=weights)
    tc_val = z[f"session_{fold}_val_tip_change"]
    tc_lab = tc_val[np.isin(val_idx, val_lab)] if tc_val.size else None
    decision = fit_surface_decision("hsi100", classes, val_vote.mean, y_va, tip[val_lab], tc_lab, risk)
    vote = majority_vote(t_probs, class_weights=weights)
    p_tc = z["session_tip_change"][test]
    p_bad = decision.probability(bad_class_evidence(vote.mean, classes, good), p_tc)
    figures = verdict_figures(decision.verdicts(p_bad), truth_bad(labels[test], classes, good, tip[test]))
    y, lab = labels[test], labels[test] >= 0
    four = score(y[lab], vote.mean[lab], classes, predictions=vote.vote_class[lab]).as_dict()
    gb = good_bad_scores(y[lab], vote.mean[lab], vote.vote_class[lab], classes, good)
    return {"auroc": four["mean_auroc"], "balanced_accuracy": four["balanced_accuracy"],
            "good_bad_auroc": gb["auroc"], "tip_change_auroc": binary_scores(tip[test], p_tc)["auroc"],
            "network_share": share, **figures}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", type=Path)
    p.add_argument("--rules", default=",".join(RULES))
    p.add_argument("--bad-called-good", type=float, default=DEFAULT_RISK.bad_called_good)
    p.add_argument("--good-called-bad", type=float, default=DEFAULT_RISK.good_called_bad)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    z = dict(np.load(args.predictions, allow_pickle=False))
    folds = sorted({int(k.split("_")[1]) for k in z if k.startswith("session_") and k.endswith("_member_names")})
    risk = Risk(args.bad_called_good, args.good_called_bad)
    print(f"{args.predictions}: {len(folds)} session folds; risk: bad tips called good <= "
          f"{risk.bad_called_good:g}, good tips called bad <= {risk.good_called_bad:g} (of validation frames)")
    out = {}
    for rule in args.rules.split(","):
        rows = [fold_scores(z, f, rule, risk) for f in folds]
        out[rule] = rows
        print(f"\n{rule}" + (f" (network share per fold: {', '.join(f'{r['network_share']:.2f}' for r in rows)})"
                             if rule == "weighted" else ""))
        for label, key in ROWS:
            v = np.array([r[key] for r in rows], dtype=float)
            print(f"  {label:<34} {np.nanmean(v):.3f} ± {np.nanstd(v):.3f}  ({np.nanmin(v):.3f} – {np.nanmax(v):.3f})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
