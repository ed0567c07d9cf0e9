"""Build and score the default bundles shipped in ``qcodes_stmtip/classify/bundles/<surface>``.

    .venv/bin/python -m qcodes_stmtip.classify.default_bundles --surface au111 --replace
    .venv/bin/python -m qcodes_stmtip.classify.default_bundles --surface hsi100 \\
        [--count 3200 --pixels 128:0.75,64:0.25 --epochs 12 --work /tmp/sim] [--geometry demo=6:64:1.5]
    .venv/bin/python -m qcodes_stmtip.classify.default_bundles --surface hsi100 --evaluate BUNDLE

Generates a simulated training set (``qcodes_stmtip.sim.dataset``; a mix of frame
pixel counts, scan sizes 3–80 nm) and separate held-out simulated test sets (other
seeds, hence other sessions), trains an ensemble through the one recipe
(:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`, split by session),
scores the bundle on held-out simulated frames (per pixel count, and at each fixed scan
geometry given: ``--geometry NAME=SIZE_NM:PIXELS:HALF_RANGE_UM``, e.g. the ``stmtip demo``
frames as ``demo=6:64:1.5``) and writes it.

Members (:data:`DEFAULT_MEMBERS`, ``--members`` overrides): H:Si(100) two SqueezeNets + one VGG-BN +
the binary tip-change network, as the paper (thresholds 0.5); Au/Cu(111) ``stmtip train``'s
feature members ``hgb,logreg`` (no Keras), per-class thresholds at ``stmtip train``'s
validation precision 0.9. The Au/Cu(111) training set adds frames rendered at fixed scan
geometries (:data:`DEFAULT_TRAIN_GEOMETRY`, ``--train-geometry``, the ``stmtip demo`` frame for
the metals: 6 nm, 64 px, 0°): half clean, as the demo's simulated microscope scans them, half
domain-randomised (:mod:`qcodes_stmtip.sim.degrade`), as a real microscope's frames look. The
metal bundles also get their partial-frame (mid-scan) section
(:func:`~qcodes_stmtip.classify.partial_training.train_partial_bundle`, as ``stmtip
train-partial``) on ``--partial-count`` further simulated 128² frames.

Only simulated data is used: real frames are not redistributed (``--real DIR`` scores
sim→real for information only). :func:`geometry_set` renders labelled frames at one fixed
geometry (the demo trains its fallback bundle on them). Importing this module does not
import Keras.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.bundle import DEFAULT_BUNDLES, MANIFEST

#: Members per surface (architecture:optimizer:learning rate, or feature kinds). Au/Cu(111):
#: ``stmtip train``'s default, :data:`~qcodes_stmtip.classify.ensemble_training.BEST_MEMBERS`.
DEFAULT_MEMBERS: dict[str, str] = {
    "hsi100": "squeezenet:adam:1e-3,squeezenet:sgd:1e-2,vgg_bn:rmsprop:1e-3",
    "au111": "hgb,logreg",
    "cu111": "hgb,logreg",
}
#: Validation precision the per-class thresholds are calibrated for (``stmtip train``'s
#: ``--target-precision``); None: every threshold 0.5 (the H:Si(100) networks' recipe).
DEFAULT_TARGET_PRECISION: dict[str, float | None] = {"hsi100": None, "au111": 0.9, "cu111": 0.9}
#: Fixed scan geometries whose frames join the training set (``NAME=SIZE_NM:PIXELS:HALF_RANGE_UM``):
#: the ``stmtip demo`` frame of the metals (:data:`qcodes_stmtip.demo.DEMO_FRAMES`, centres within
#: :data:`qcodes_stmtip.demo.DEMO_BOUNDS`).
DEFAULT_TRAIN_GEOMETRY: dict[str, tuple[str, ...]] = {
    "hsi100": (), "au111": ("demo=6:64:1.5",), "cu111": ("demo=6:64:1.5",)}
#: Simulated 128² frames the partial-frame section is trained on (0: no partial section).
DEFAULT_PARTIAL_COUNT: dict[str, int] = {"hsi100": 0, "au111": 1200, "cu111": 1200}

#: Training frame pixel counts and their shares (frames are resized to 128 px for the networks).
DEFAULT_PIXEL_MIX: tuple[tuple[int, float], ...] = ((128, 0.75), (64, 0.25))
#: Held-out test pixel counts (64 = ``stmtip demo`` frames, 256 = larger real-like frames).
TEST_PIXELS: tuple[int, ...] = (64, 128, 256)


def parse_pixel_mix(text: str) -> tuple[tuple[int, float], ...]:
    """``"128:0.75,64:0.25"`` → ((128, 0.75), (64, 0.25)); shares are normalised to sum 1."""
    mix = []
    for part in text.split(","):
        try:
            px, share = part.split(":")
            mix.append((int(px), float(share)))
        except ValueError:
            raise ValueError(f"pixel mix entry {part!r} is not PIXELS:SHARE (in {text!r})") from None
    total = sum(s for _, s in mix)
    if not mix or total <= 0 or any(s < 0 or not 16 <= p <= 1024 for p, s in mix):
        raise ValueError(f"pixel mix {text!r} needs pixels in 16..1024 and non-negative shares")
    return tuple((p, s / total) for p, s in mix)


def _merge(sets: list):
    """Concatenate :class:`ImageSet` s of one surface."""
    from qcodes_stmtip.classify.dataset_images import ImageSet
    from qcodes_stmtip.classify.labels import LabeledFrames

    f0 = sets[0].frames
    tc = None if any(s.frames.tip_change is None for s in sets) else np.concatenate(
        [s.frames.tip_change for s in sets])
    frames = LabeledFrames(f0.surface, f0.classes, [p for s in sets for p in s.frames.paths],
                           np.concatenate([s.frames.sessions for s in sets]),
                           np.concatenate([s.frames.labels for s in sets]), tc, f0.source)
    return ImageSet(np.concatenate([s.images for s in sets]), frames,
                    [k for s in sets for k in s.skipped])


def simulated_dir(surface: str, count: int, pixels: int, seed: int, work: Path, jobs: int = 2,
                  progress: bool = False) -> Path:
    """The folder of a simulated data set (``work/<surface>_<pixels>px_<count>_s<seed>``), generated
    (:func:`qcodes_stmtip.sim.dataset.generate_dataset`) unless it already holds ``labels.csv``."""
    from qcodes_stmtip.sim.dataset import generate_dataset

    d = work / f"{surface}_{pixels}px_{count}_s{seed}"
    if not (d / "labels.csv").is_file():
        generate_dataset(surface, count, d, seed=seed, pixels=pixels, jobs=jobs, progress=progress)
    return d


def simulated_set(surface: str, count: int, pixels: int, seed: int, work: Path, jobs: int = 2,
                  progress: bool = False):
    """Simulated frames (generated into ``work/<surface>_<pixels>px_<count>_s<seed>`` unless there)."""
    from qcodes_stmtip.classify.dataset_images import load_images
    from qcodes_stmtip.classify.labels import load_labels

    d = simulated_dir(surface, count, pixels, seed, work, jobs=jobs, progress=progress)
    return load_images(load_labels(d, surface), progress=progress)


@dataclass(frozen=True)
class FrameGeometry:
    """One fixed scan geometry: square frames of side ``frame_size_m`` with ``pixels`` pixels
    (and lines), rotated by ``angle_deg`` (the controller's scan angle), centred at random inside
    ``bounds_m`` = ``((x_low, x_high), (y_low, y_high))``."""

    frame_size_m: float
    pixels: int
    bounds_m: tuple[tuple[float, float], tuple[float, float]]
    angle_deg: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.frame_size_m, int | float) and np.isfinite(self.frame_size_m)
                and self.frame_size_m > 0):
            raise ValueError(f"frame_size_m must be a positive length in m, got {self.frame_size_m!r}")
        if isinstance(self.pixels, bool) or not isinstance(self.pixels, int) or not 16 <= self.pixels <= 1024:
            raise ValueError(f"pixels must be an integer in 16..1024, got {self.pixels!r}")
        bounds = tuple(tuple(float(v) for v in b) for b in self.bounds_m)
        if len(bounds) != 2 or any(len(b) != 2 or not b[0] < b[1] for b in bounds):
            raise ValueError(f"bounds_m must be ((x_low, x_high), (y_low, y_high)), got {self.bounds_m!r}")
        object.__setattr__(self, "bounds_m", bounds)
        if isinstance(self.angle_deg, bool) or not (isinstance(self.angle_deg, int | float)
                                                    and np.isfinite(self.angle_deg)):
            raise ValueError(f"angle_deg must be a finite angle in degrees, got {self.angle_deg!r}")


def parse_geometry(text: str) -> tuple[str, FrameGeometry]:
    """``"demo=6:64:1.5"`` → ("demo", 6 nm frames of 64 px centred within ±1.5 µm)."""
    name, _, spec = text.partition("=")
    try:
        if not name.strip():
            raise ValueError("no name")
        size_nm, pixels, half_um = spec.split(":")
        half = float(half_um) / 1e6
        return name.strip(), FrameGeometry(float(size_nm) / 1e9, int(pixels), ((-half, half), (-half, half)))
    except ValueError as exc:
        raise ValueError(f"geometry {text!r} is not NAME=SIZE_NM:PIXELS:HALF_RANGE_UM ({exc})") from None


def geometry_set(surface: str, count: int, seed: int, geometry: FrameGeometry, *, image_size: int = 128,
                 tip_change_p: float = 0.0, degrade: bool = False):
    """``count`` frames of ``surface`` at one fixed ``geometry``, classes cycled, as an :class:`ImageSet`.

    Each frame lies at a fresh random centre of a random simulated sample (its session);
    areas that cannot show a class are skipped, so fewer than ``count`` may come back.
    On H:Si(100), a frame's apex changes once during it with probability ``tip_change_p``
    (the tip-change label; the class is that of the apex imaging most lines); with 0 every
    frame is clean. ``degrade``: each frame also gets the training sets' domain randomisation
    (:mod:`qcodes_stmtip.sim.degrade`, from its own random stream). Images are preprocessed to
    ``image_size`` pixels.
    """
    from qcodes_stmtip.classify.dataset_images import ImageSet
    from qcodes_stmtip.classify.labels import LabeledFrames
    from qcodes_stmtip.classify.preprocess import preprocess_batch
    from qcodes_stmtip.sim.frames import render_scan
    from qcodes_stmtip.sim.geometry import ScanGeometry
    from qcodes_stmtip.sim.tips import sample_tip
    from qcodes_stmtip.taxonomy import CLASSES

    if not 0.0 <= tip_change_p <= 1.0:
        raise ValueError(f"tip_change_p must be in [0, 1], got {tip_change_p!r}")
    classes = CLASSES[surface]
    size, pixels = geometry.frame_size_m, geometry.pixels
    low, high = np.transpose(geometry.bounds_m)
    rng = np.random.default_rng(seed)
    degrade_rng = np.random.default_rng([seed, 1])
    frames, labels, sessions, changed, names = [], [], [], [], []
    for k in range(count):
        label = classes[k % len(classes)]
        cx, cy = rng.uniform(low, high)
        scan_geometry = ScanGeometry(size, size, pixels, pixels, cx, cy, float(geometry.angle_deg))
        tip = sample_tip(surface, label, rng)
        sample_seed = int(rng.integers(1000))
        scan_up = bool(rng.random() < 0.5)
        changes = []
        if tip_change_p and surface == "hsi100" and rng.random() < tip_change_p:
            margin = max(1, pixels // 6)
            new = sample_tip(surface, str(rng.choice(classes)), rng)
            new.apex_z_m = tip.apex_z_m + rng.choice([-1, 1]) * rng.uniform(0.05e-9, 0.3e-9)
            changes = [(int(rng.integers(margin, pixels - margin)), new)]
        try:
            scan = render_scan(surface, tip, scan_geometry, rng, sample_seed=sample_seed, scan_up=scan_up,
                               tip_changes=changes)
        except ValueError:  # this sample area cannot show the class
            continue
        frame = scan.forward
        if degrade:
            from qcodes_stmtip.sim.degrade import apply_degradation, sample_degradation

            frame = apply_degradation(frame, sample_degradation(surface, scan.label, degrade_rng), degrade_rng)
        frames.append(frame)
        labels.append(classes.index(scan.label))
        sessions.append(f"{surface}-{sample_seed}")
        changed.append(bool(scan.tip_change_lines))
        names.append(Path(f"{surface}_geometry_s{seed}_{k:06d}"))
    images = preprocess_batch(frames, image_size) if frames else np.zeros((0, image_size, image_size, 1),
                                                                          np.float32)
    source = (f"qcodes_stmtip.sim render_scan: {size * 1e9:g} nm, {pixels} px frames at {geometry.angle_deg:g}°, "
              f"tip-change probability {tip_change_p:g}" + (", domain-randomised" if degrade else ""))
    return ImageSet(images, LabeledFrames(surface, classes, names, np.array(sessions, dtype=str),
                                          np.array(labels, dtype=int), np.array(changed, dtype=bool),
                                          source), [])


def score_frames(ensemble, images: np.ndarray, labels: np.ndarray,
                 tip_change: np.ndarray | None = None) -> dict:
    """Four-class, good/bad and tip-change scores of ``ensemble`` on labelled images.

    Good/bad as everywhere else (:func:`~qcodes_stmtip.classify.metrics.good_bad_scores`: AUROC
    of P(bad), balanced accuracy and precision of the ensemble's decisions mapped to good/bad),
    plus the accuracy and the share of good (bad) frames called good (bad). Tip change: AUROC,
    and the rate of flagged clean frames at the bundle threshold.
    """
    from qcodes_stmtip.classify.metrics import binary_scores, good_bad_scores, score

    lab = labels >= 0
    pred = ensemble.predict(images[lab])
    y = labels[lab]
    out: dict = {"n": int(lab.sum()),
                 "four_class": score(y, pred.mean, ensemble.classes, predictions=pred.vote_class).as_dict()}
    good_idx = [i for i, c in enumerate(ensemble.classes) if c in ensemble.good_classes]
    is_bad = ~np.isin(y, good_idx)
    called_bad = ~np.isin(pred.vote_class, good_idx)
    out["good_bad"] = {
        **good_bad_scores(y, pred.mean, pred.vote_class, ensemble.classes, ensemble.good_classes),
        "accuracy": float(np.mean(called_bad == is_bad)),
        "good_frames_called_good": float(np.mean(~called_bad[~is_bad])) if (~is_bad).any() else float("nan"),
        "bad_frames_called_bad": float(np.mean(called_bad[is_bad])) if is_bad.any() else float("nan"),
    }
    if pred.tip_change_probability is not None:
        p_tc = pred.tip_change_probability
        t = ensemble.tip_change_threshold
        tc = np.zeros(len(y), bool) if tip_change is None else np.asarray(tip_change, bool)[lab]
        out["tip_change"] = {"threshold": t, "false_positive_rate": float(np.mean(p_tc[~tc] >= t))
                             if (~tc).any() else float("nan")}
        if tc.any():
            out["tip_change"].update(binary_scores(tc, p_tc, t))
            out["tip_change"]["recall"] = float(np.mean(p_tc[tc] >= t))
    return out


def evaluate_bundle(ensemble, surface: str, work: Path, *, test_count: int = 400,
                    geometries: Mapping[str, FrameGeometry] | None = None, geometry_count: int = 200,
                    seed: int = 0, real: Path | None = None, progress: bool = False) -> dict:
    """Scores on held-out simulated sets (per pixel count, seeds ≥ seed + 10 000), on
    ``geometry_count`` clean frames at each of ``geometries`` (as ``<name>_geometry``, seeds
    ≥ seed + 20 000), and optionally on the real frames in ``real``."""
    out: dict = {}
    for i, px in enumerate(TEST_PIXELS):
        s = simulated_set(surface, test_count, px, seed + 10_000 + i, work, progress=progress)
        out[f"simulated_{px}px"] = score_frames(ensemble, s.images, s.frames.labels, s.frames.tip_change)
    for i, (name, geometry) in enumerate((geometries or {}).items()):
        g = geometry_set(surface, geometry_count, seed + 20_000 + i, geometry)
        out[f"{name}_geometry"] = score_frames(ensemble, g.images, g.frames.labels)
    if real is not None:
        from qcodes_stmtip.classify.dataset_images import load_images
        from qcodes_stmtip.classify.labels import load_labels

        r = load_images(load_labels(real, surface), progress=progress)
        out["real_sim_to_real"] = score_frames(ensemble, r.images, r.frames.labels, r.frames.tip_change)
    return out


def train_geometry_set(surface: str, count: int, seed: int, geometries: Mapping[str, FrameGeometry]):
    """``count`` training frames at each of ``geometries`` (:func:`geometry_set`, seeds ≥ ``seed`` + 50 000,
    apart from the evaluation's ≥ 20 000 and ``benchmarks/demo_bundles.py``'s 30 000): half clean, half
    domain-randomised (``degrade``), merged into one :class:`ImageSet`."""
    parts = []
    for i, geometry in enumerate(geometries.values()):
        clean = count // 2
        parts.append(geometry_set(surface, clean, seed + 50_000 + 2 * i, geometry))
        parts.append(geometry_set(surface, count - clean, seed + 50_001 + 2 * i, geometry, degrade=True))
    return _merge([p for p in parts if len(p.images)])


def build_default_bundle(
    surface: str,
    out: Path,
    *,
    count: int = 3200,
    test_count: int = 400,
    pixel_mix: tuple[tuple[int, float], ...] = DEFAULT_PIXEL_MIX,
    width: float = 0.125,
    epochs: int = 12,
    patience: int = 3,
    seed: int = 0,
    tip_change_precision: float = 0.5,
    geometries: Mapping[str, FrameGeometry] | None = None,
    members: str | None = None,
    target_precision: float | None = None,
    train_geometries: Mapping[str, FrameGeometry] | None = None,
    train_geometry_count: int = 1600,
    partial_count: int = 0,
    work: Path | None = None,
    real: Path | None = None,
    progress: bool = True,
) -> dict:
    """Generate simulated data, train, calibrate, score on held-out simulated frames, save to ``out``.

    ``members`` (default :data:`DEFAULT_MEMBERS`) are trained by
    :func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble` on ``count`` frames of the
    ``pixel_mix`` plus ``train_geometry_count`` frames at each of ``train_geometries``
    (:func:`train_geometry_set`), 20 % of the sessions held out for calibration (per-class
    thresholds at ``target_precision``, None: 0.5). With ``partial_count`` > 0 the bundle also gets
    a partial-frame section trained on that many further simulated 128² frames (seed ``seed`` + 11).
    Returns the evaluation (:func:`evaluate_bundle`; ``geometries`` are scored too) and the wall
    seconds of each step (``seconds``). Side effects: writes the bundle directory; simulated data
    goes to ``work`` (kept) or a temporary directory (deleted).
    """
    from qcodes_stmtip.classify.bundle import save_bundle
    from qcodes_stmtip.classify.ensemble_training import (
        evaluate_ensemble,
        parse_members,
        train_ensemble,
    )
    from qcodes_stmtip.classify.train_config import TrainConfig

    if count < 10 or test_count < 10:
        raise ValueError(f"count and test_count must be >= 10, got {count}, {test_count}")
    if train_geometries and train_geometry_count < 2:
        raise ValueError(f"train_geometry_count must be >= 2, got {train_geometry_count}")
    if partial_count and partial_count < 10:
        raise ValueError(f"partial_count must be 0 or >= 10, got {partial_count}")
    member_text = DEFAULT_MEMBERS[surface] if members is None else members
    specs = parse_members(member_text)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"stmtip-{surface}-") as tmp:
        root = Path(tmp) if work is None else Path(work)
        t0 = time.perf_counter()
        parts = [simulated_set(surface, max(1, round(count * share)), px, seed + i, root, progress=progress)
                 for i, (px, share) in enumerate(pixel_mix) if share > 0]
        if train_geometries:
            parts.append(train_geometry_set(surface, train_geometry_count, seed, train_geometries))
        data = _merge(parts)
        seconds["data"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        base = TrainConfig(specs[0].architecture, width=width, epochs=epochs, batch_size=32,
                           patience=patience, seed=seed)
        ensemble, report = train_ensemble(data, base, specs, val_fraction=0.2, split_seed=seed,
                                          target_precision=target_precision, progress=progress,
                                          tip_change_precision=tip_change_precision)
        seconds["training"] = round(time.perf_counter() - t0, 1)
        tests = [simulated_set(surface, test_count, px, seed + 10_000 + i, root, progress=progress)
                 for i, px in enumerate(TEST_PIXELS)]
        held_out = evaluate_ensemble(ensemble, _merge(tests))
        evaluation = evaluate_bundle(ensemble, surface, root, test_count=test_count,
                                     geometries={**(train_geometries or {}), **(geometries or {})},
                                     seed=seed, real=real, progress=progress)
        summary = {**data.frames.summary(), "source": "simulated (qcodes_stmtip.sim.dataset)",
                   "count": count, "pixel_mix": dict(pixel_mix), "scan_sizes": "3-80 nm (per class)",
                   "members": member_text, "target_precision": target_precision,
                   "validation_sessions": report["validation_sessions"], "seed": seed}
        if specs[0].architecture not in _feature_kinds():
            summary.update(width=width, epochs=epochs, patience=patience)
        if train_geometries:
            summary["train_geometries"] = {
                name: {"frame_size_m": g.frame_size_m, "pixels": g.pixels, "bounds_m": g.bounds_m,
                       "angle_deg": g.angle_deg, "frames": train_geometry_count,
                       "degraded": train_geometry_count - train_geometry_count // 2}
                for name, g in train_geometries.items()}
        sim_eval = {k: v for k, v in evaluation.items() if k != "real_sim_to_real"}
        save_bundle(ensemble, out, training_data=summary,
                    metrics={"validation": report, "held_out_simulated": held_out,
                             "held_out_by_geometry": sim_eval})
        if partial_count:
            from qcodes_stmtip.classify.partial_training import train_partial_bundle

            t0 = time.perf_counter()
            partial_dir = simulated_dir(surface, partial_count, 128, seed + 11, root, progress=progress)
            train_partial_bundle(partial_dir, out, surface=surface, seed=seed, progress=progress)
            seconds["partial"] = round(time.perf_counter() - t0, 1)
            _name_partial_source(out, f"simulated (qcodes_stmtip.sim.dataset: {partial_count} frames of "
                                      f"{surface}, 128 px, seed {seed + 11})")
    return {"held_out_simulated": held_out, **evaluation, "seconds": seconds}


def _name_partial_source(bundle: Path, source: str) -> None:
    """Name the partial section's training data by how it was made, not by its (temporary) folder."""
    path = Path(bundle) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["partial"]["training_data"]["source"] = source
    path.write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")


def _feature_kinds() -> frozenset[str]:
    from qcodes_stmtip.classify.feature_model import FEATURE_KINDS

    return frozenset(FEATURE_KINDS)


def _print_evaluation(evaluation: dict) -> None:
    for name, s in evaluation.items():
        if name in ("held_out_simulated", "seconds"):
            continue
        fc, gb = s["four_class"], s["good_bad"]
        line = (f"{name:>18} n={s['n']:4d}  AUROC {fc['mean_auroc']:.3f}  bal.acc {fc['balanced_accuracy']:.3f}"
                f"  mean prec {fc['mean_precision']:.3f} | good/bad acc {gb['accuracy']:.3f}"
                f" bal {gb['balanced_accuracy']:.3f} AUROC {gb['auroc']:.3f}")
        tc = s.get("tip_change")
        if tc:
            line += f" | tip change FPR {tc['false_positive_rate']:.3f} @ {tc['threshold']:.3f}"
            if "auroc" in tc:
                line += f" AUROC {tc['auroc']:.3f} recall {tc['recall']:.3f}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    from qcodes_stmtip.taxonomy import SURFACES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--surface", required=True, choices=SURFACES)
    p.add_argument("--out", type=Path, default=None, help=f"default: {DEFAULT_BUNDLES}/<surface>-sim for hsi100 (its plain name is the "
                   "real-data bundle), else <surface>")
    p.add_argument("--evaluate", type=Path, default=None, metavar="BUNDLE",
                   help="only score an existing bundle (no training)")
    p.add_argument("--count", type=int, default=3200)
    p.add_argument("--test-count", type=int, default=400)
    p.add_argument("--pixels", type=parse_pixel_mix, default=DEFAULT_PIXEL_MIX,
                   help="training pixel counts and shares [128:0.75,64:0.25]")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--tip-change-precision", type=float, default=0.5)
    p.add_argument("--members", default=None,
                   help="members, as stmtip train --members [hsi100: the paper's networks; au111, cu111: hgb,logreg]")
    p.add_argument("--target-precision", type=float, default=None,
                   help="validation precision of the per-class thresholds [au111, cu111: 0.9; hsi100: all 0.5]")
    p.add_argument("--train-geometry", type=parse_geometry, action="append", default=None,
                   metavar="NAME=SIZE_NM:PIXELS:HALF_RANGE_UM",
                   help="also train on frames at this fixed geometry, half clean, half domain-randomised "
                        "(repeatable) [au111, cu111: the stmtip demo frame, demo=6:64:1.5; hsi100: none]")
    p.add_argument("--train-geometry-count", type=int, default=1600, help="frames per training geometry [1600]")
    p.add_argument("--partial-count", type=int, default=None,
                   help="simulated 128² frames for the partial-frame section, 0: none [au111, cu111: 1200]")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing bundle at --out once the new one is complete")
    p.add_argument("--geometry", type=parse_geometry, action="append", default=[],
                   metavar="NAME=SIZE_NM:PIXELS:HALF_RANGE_UM",
                   help="also score clean frames at this fixed geometry (repeatable; the stmtip demo's "
                        "frames: demo=6:64:1.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="keep/reuse simulated data here")
    p.add_argument("--real", type=Path, default=None, help="also score real labelled frames (information)")
    p.add_argument("--json", type=Path, default=None, help="write the evaluation here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    if args.evaluate is not None:
        from qcodes_stmtip.classify.bundle import load_bundle

        ens = load_bundle(args.evaluate, surface=args.surface)
        with tempfile.TemporaryDirectory() as tmp:
            evaluation = evaluate_bundle(ens, args.surface, args.work or Path(tmp), test_count=args.test_count,
                                         geometries=dict(args.geometry), seed=args.seed, real=args.real,
                                         progress=not args.quiet)
        print(f"{args.evaluate}:")
    else:
        from qcodes_stmtip.classify.ensemble_training import format_table

        out = args.out or DEFAULT_BUNDLES / (f"{args.surface}-sim" if args.surface == "hsi100" else args.surface)
        if out.exists() and any(out.iterdir()) and not args.replace:
            p.error(f"--out {out}: bundle directory exists and is not empty (--replace replaces it)")
        train_geometry = args.train_geometry
        if train_geometry is None:
            train_geometry = [parse_geometry(t) for t in DEFAULT_TRAIN_GEOMETRY[args.surface]]
        target = args.target_precision
        if target is None:
            target = DEFAULT_TARGET_PRECISION[args.surface]
        partial = DEFAULT_PARTIAL_COUNT[args.surface] if args.partial_count is None else args.partial_count
        new = out.with_name(f".{out.name}.new")
        if new.exists():
            shutil.rmtree(new)
        evaluation = build_default_bundle(
            args.surface, new, count=args.count, test_count=args.test_count, pixel_mix=args.pixels,
            width=args.width, epochs=args.epochs, patience=args.patience, seed=args.seed,
            tip_change_precision=args.tip_change_precision, geometries=dict(args.geometry),
            members=args.members, target_precision=target, train_geometries=dict(train_geometry),
            train_geometry_count=args.train_geometry_count, partial_count=partial, work=args.work,
            real=args.real, progress=not args.quiet)
        if out.exists():
            shutil.rmtree(out)
        new.rename(out)
        print("wall seconds: " + ", ".join(f"{k} {v:g}" for k, v in evaluation["seconds"].items()))
        print(f"{out}: held-out simulated frames")
        print(format_table(evaluation["held_out_simulated"]["table"]))
    _print_evaluation(evaluation)
    if args.json is not None:
        args.json.write_text(json.dumps(evaluation, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
