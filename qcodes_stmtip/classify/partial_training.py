"""Partial-frame training data and models, through the one recipe
(:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`).

Every frame of a labelled set is cut into its first N acquired lines for several N
(:data:`~qcodes_stmtip.classify.partial.TRAINED_LINES`; ``None`` = every line) and, for
training, into :data:`WINDOWS` further windows of N lines spread over the frame (more
examples of what N lines of that tip look like: on session folds they raised the N = 32
AUROC; ``benchmarks/RESULTS.md``). Each cut becomes one view
(:func:`~qcodes_stmtip.classify.partial.partial_view`) carrying the frame's labels: its
four-class label, and its tip-change flag (a window is labelled a tip change when the frame
has one). All views of a frame share its session, so ``train_ensemble``'s session split
keeps them on one side. Used by ``stmtip train-partial`` and
``benchmarks/partial_frames.py``. Importing this module imports neither Keras nor
scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.dataset_images import ImageSet
from qcodes_stmtip.classify.labels import LabeledFrames
from qcodes_stmtip.classify.partial import DEFAULT_DESIGN, TRAINED_LINES, partial_view
from qcodes_stmtip.classify.preprocess import IMAGE_SIZE, FrameTooShortError

#: Further windows of N lines per frame and N the training views add to the first N lines.
WINDOWS: int = 2


def window_starts(available: int, n_lines: int | None, count: int = WINDOWS) -> list[int]:
    """Start lines (in acquisition order) of up to ``count`` windows of ``n_lines`` lines spread
    evenly over a frame of ``available`` acquired lines, none overlapping the first ``n_lines``
    (none for ``n_lines=None`` or a frame shorter than twice ``n_lines``)."""
    if n_lines is None or count <= 0:
        return []
    slots = available // n_lines
    if slots < 2:
        return []
    picks = np.unique(np.round(np.linspace(0, slots - 1, count + 1)).astype(int))
    return [int(k * n_lines) for k in picks if k > 0]


@dataclass
class PartialViews:
    """Views of every readable frame at each line count, and further training windows.

    ``views[n]``: (F, size, size, 1) float32 views of the F frames of ``frames`` cut to their
    first ``n`` acquired lines (``None``: every line); ``windows`` (W, size, size, 1): windows of
    ``window_lines[w]`` lines from acquired line ``window_start[w]`` of frame ``window_frame[w]``;
    ``lines_available`` (F,) how many acquired lines each frame has; ``skipped``: (path, reason)
    of frames too short for any view.
    """

    frames: LabeledFrames
    views: dict[int | None, np.ndarray]
    lines_available: np.ndarray
    skipped: list[tuple[str, str]]
    design: str = DEFAULT_DESIGN
    windows: np.ndarray | None = None
    window_frame: np.ndarray | None = None
    window_lines: np.ndarray | None = None
    window_start: np.ndarray | None = None

    def image_set(self, index: np.ndarray | None = None, lines: Sequence[int | None] | None = None,
                  windows: bool = False) -> ImageSet:
        """One :class:`ImageSet` of the views at ``lines`` (default all) of the frames at ``index``
        (default all), frames repeated once per line count (labels and sessions with them); with
        ``windows`` the further windows of those frames and line counts too."""
        idx = np.arange(len(self.frames)) if index is None else np.arange(len(self.frames))[index]
        lines = list(self.views) if lines is None else list(lines)
        parts = [self.views[n][idx] for n in lines]
        owners = [np.tile(idx, len(lines))]
        if windows and self.windows is not None and len(self.windows):
            wanted = [n for n in lines if n is not None]
            sel = np.isin(self.window_frame, idx) & np.isin(self.window_lines, wanted)
            parts.append(self.windows[sel])
            owners.append(self.window_frame[sel])
        return ImageSet(np.concatenate(parts), self.frames.subset(np.concatenate(owners)), [])


def frame_views(frames: LabeledFrames, lines: Sequence[int | None] = TRAINED_LINES, *, size: int = IMAGE_SIZE,
                design: str = DEFAULT_DESIGN, windows: int = WINDOWS, progress: bool = True) -> PartialViews:
    """Read every frame of ``frames`` once and cut it into its first ``n`` lines for each ``n`` of
    ``lines``, and into ``windows`` further windows of ``n`` lines (:func:`window_starts`).
    Frame files without direction metadata (PNG) are read from the top, as
    :func:`~qcodes_stmtip.classify.partial.first_lines` does; a frame with fewer than ``n`` lines
    gives its every line. Frames with fewer than 8 acquired lines are skipped."""
    from tqdm.auto import tqdm

    from qcodes_stmtip.classify.frame_files import read_frame_array
    from qcodes_stmtip.classify.partial import acquired_lines

    lines = list(dict.fromkeys(lines))
    per_line: dict[int | None, list[np.ndarray]] = {n: [] for n in lines}
    keep, available, skipped = [], [], []
    extra, w_frame, w_lines, w_start = [], [], [], []
    for i, path in enumerate(tqdm(frames.paths, desc="partial views", unit="frame", disable=not progress,
                                  leave=False)):
        frame = read_frame_array(path)
        try:
            cut = [partial_view(frame, n, size, design=design) for n in lines]
        except FrameTooShortError as exc:
            skipped.append((str(path), str(exc)))
            continue
        for n, v in zip(lines, cut, strict=True):
            per_line[n].append(v)
        have = acquired_lines(frame)
        for n in lines:
            for start in window_starts(have, n, windows):
                extra.append(partial_view(frame, n, size, design=design, start=start))
                w_frame.append(len(keep))
                w_lines.append(n)
                w_start.append(start)
        keep.append(i)
        available.append(have)
    views = {n: (np.stack(v) if v else np.zeros((0, size, size, 1), np.float32)).astype(np.float32)
             for n, v in per_line.items()}
    more = np.stack(extra).astype(np.float32) if extra else np.zeros((0, size, size, 1), np.float32)
    return PartialViews(frames.subset(np.array(keep, dtype=int)), views, np.array(available, dtype=int),
                        skipped, design, more, np.array(w_frame, dtype=int), np.array(w_lines, dtype=int),
                        np.array(w_start, dtype=int))


def train_partial_bundle(data_dir: str | Path, bundle: str | Path, *, surface: str = "hsi100",
                         lines: Sequence[int | None] = TRAINED_LINES, design: str = DEFAULT_DESIGN,
                         windows: int = WINDOWS, members: str = "best", seed: int = 0, val_fraction: float = 0.2,
                         target_precision: float = 0.9, tip_change_precision: float = 0.5,
                         min_lines: int | None = None, progress: bool = True) -> dict:
    """Train the partial-frame ensemble on ``data_dir`` and add (or replace) the ``partial``
    section of the existing bundle ``bundle`` (its full-frame members stay as they are).

    The ensemble is trained by :func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`
    with ``stmtip train``'s defaults (``members``, the session split, per-class thresholds at
    ``target_precision``, the tip-change threshold at ``tip_change_precision``, refit). Returns
    the training report.
    """
    from qcodes_stmtip.classify.bundle import read_manifest
    from qcodes_stmtip.classify.ensemble_training import parse_members, train_ensemble
    from qcodes_stmtip.classify.labels import load_labels
    from qcodes_stmtip.classify.partial import MIN_LINES, save_partial
    from qcodes_stmtip.classify.train_config import TrainConfig

    size = int(read_manifest(bundle)["preprocessing"].get("image_size", IMAGE_SIZE))
    specs = parse_members(members)
    frames = load_labels(Path(data_dir), surface)
    pv = frame_views(frames, lines, size=size, design=design, windows=windows, progress=progress)
    data = pv.image_set(windows=True)
    base = TrainConfig(specs[0].architecture, seed=seed)
    ensemble, report = train_ensemble(data, base, specs, val_fraction=val_fraction, split_seed=seed,
                                      target_precision=target_precision, tip_change_precision=tip_change_precision,
                                      progress=progress)
    summary = {**pv.frames.summary(), "views": int(len(data.images)), "skipped_frames": len(pv.skipped),
               "lines": [n if n is not None else "full" for n in lines], "design": design,
               "windows_per_line_count": windows,
               "members": members, "validation_sessions": report["validation_sessions"],
               "window_labels": "the frame's labels for each of its views (first N lines and windows)"}
    save_partial(ensemble, bundle, min_lines=MIN_LINES if min_lines is None else min_lines, design=design,
                 lines=lines, training_data=summary, metrics={"validation": report})
    return report
