"""Judge the tip from the first N acquired lines of a frame (issue 14, classifier half).

A frame is a ``(lines, pixels)`` array with row 0 the *bottom* line (the convention of the
driver's ``scan_image``, the simulator and :class:`~qcodes_stmtip.io.frame.STMFrame`); lines
not yet acquired are NaN rows. Which lines came first depends on the slow-axis direction:

* ``scan_up=True`` ("up"): the bottom line first, so the first N lines are rows ``0 … N−1``;
* ``scan_up=False`` ("down"): the top line first, rows ``−N …``;
* ``scan_up=None``: taken from an ``STMFrame``'s ``scan_up`` when one is passed, else from
  where the NaN rows of an unfinished frame are (acquired block at the bottom → up, at the
  top → down); a complete frame without metadata (a PNG) is read from the top: its top N rows.

:func:`partial_view` turns those N lines into the (size, size, 1) input every member takes
(:data:`DESIGNS`, chosen by measurement in ``benchmarks/partial_frames.py``; the numbers are
in ``benchmarks/RESULTS.md``). Fewer than :data:`MIN_LINES` lines are refused
(``ValueError``; :class:`~qcodes_stmtip.classify.preprocess.FrameTooShortError` when the
frame itself holds too few acquired lines).

:class:`PartialEnsemble` is what the monitor calls: :func:`load_partial` reads a bundle's
optional ``partial`` section (models trained on partial views through
:func:`~qcodes_stmtip.classify.ensemble_training.train_ensemble`), and a bundle without one
gives the bundle's full-frame ensemble applied to the partial view (``fallback=True``).
:func:`save_partial` adds or replaces only that section of an existing bundle. On session folds
of the real H:Si(100) frames the partial model beats the fallback by 0.09–0.13 AUROC at
N = 8–32, but on *finished* frames the full-frame ensemble is better (0.940 vs 0.928): judge a
complete frame with :func:`~qcodes_stmtip.classify.bundle.load_bundle`'s ensemble.

Public API (for the monitor)::

    model = load_partial(bundle_path, surface="hsi100")      # PartialEnsemble
    n = acquired_lines(frame)                                 # lines acquired so far
    if n >= model.min_lines:
        pred = model.predict_frames([frame], scan_up=True)    # EnsemblePrediction, N = all acquired lines
        verdict = model.good_bad(pred)[0]                     # "good" / "bad" / "uncertain"
        flagged = model.tip_change_flags(pred)                # bool per frame, or None

Importing this module imports neither Keras nor scikit-learn; loading models does.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.bundle import PARTIAL_DESIGNS, ensemble_fields
from qcodes_stmtip.classify.ensemble import Ensemble, EnsemblePrediction
from qcodes_stmtip.classify.preprocess import (
    IMAGE_SIZE,
    MIN_PIXELS,
    FrameTooShortError,
    flatten_lines,
    resize,
    scale_symmetric,
)

#: Fewest acquired lines a partial frame is judged on.
MIN_LINES: int = 8
#: How a strip of N lines × P pixels becomes a square input:
#:
#: * ``"reflect"``: per-line flattened, then mirrored (strip, flipped strip, strip, …) along y
#:   to P × P and resized as a full frame: pixel aspect and scale kept, no seams (a line's
#:   neighbour across a fold is itself);
#: * ``"stretch"``: what :func:`~qcodes_stmtip.classify.preprocess.preprocess_frame` does with
#:   a short strip: resized to the square, stretched along y;
#: * ``"stack"``: the strip cut along x into k pieces stacked along y (k ≈ √(P/N)), so a
#:   near-square block at native resolution, then resized.
DESIGNS: tuple[str, ...] = PARTIAL_DESIGNS
#: The design used when a caller (or a bundle) names none.
DEFAULT_DESIGN: str = "reflect"
#: Line counts the shipped partial models are trained and benchmarked on (None = every line).
TRAINED_LINES: tuple[int | None, ...] = (8, 16, 32, 64, None)
#: Manifest key of the optional partial-frame section, and the bundle folder of its files.
SECTION = "partial"


def _frame_array(frame) -> tuple[np.ndarray, bool | None]:
    """(float64 2-D array, scan_up from an STMFrame-like object or None)."""
    scan_up = getattr(frame, "scan_up", None) if hasattr(frame, "data") else None
    data = frame.data if hasattr(frame, "data") else frame
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"frame must be 2-D (lines, pixels), got shape {arr.shape}")
    return arr, (None if scan_up is None else bool(scan_up))


def _scan_up(finite: np.ndarray, scan_up: bool | None) -> bool:
    """The slow-axis direction: as given, else from where the acquired rows are (see module doc)."""
    if scan_up is not None:
        return bool(scan_up)
    if finite.all() or not finite.any():
        return False  # no metadata, complete frame: its top rows
    if finite[0] and not finite[-1]:
        return True
    return False


def acquired_lines(frame) -> int:
    """Number of fully acquired (all-finite) lines of ``frame`` (array or ``STMFrame``)."""
    arr, _ = _frame_array(frame)
    return int(np.all(np.isfinite(arr), axis=1).sum())


def first_lines(frame, n_lines: int | None = None, *, scan_up: bool | None = None, start: int = 0) -> np.ndarray:
    """The first ``n_lines`` acquired lines of ``frame`` as a finite (n, pixels) float64 strip.

    ``frame``: (lines, pixels) array, row 0 the bottom line, NaN rows not acquired, or an
    ``STMFrame`` (its ``scan_up`` is used unless ``scan_up`` is given). ``n_lines=None``: every
    acquired line; more lines than were acquired: every acquired line. ``start`` skips the first
    ``start`` acquired lines (a window further down the scan: lines ``start … start + n − 1`` in
    acquisition order; a window reaching past the last acquired line is shifted back to end
    there). The strip keeps the frame's orientation (its row 0 is the lowest line taken).
    ``n_lines`` < :data:`MIN_LINES` → ``ValueError``; fewer acquired lines than
    :data:`MIN_LINES` (or pixels than :data:`~qcodes_stmtip.classify.preprocess.MIN_PIXELS`)
    → ``FrameTooShortError``.
    """
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    if n_lines is not None:
        if isinstance(n_lines, bool) or not isinstance(n_lines, int | np.integer):
            raise ValueError(f"n_lines must be an integer ≥ {MIN_LINES} or None, got {n_lines!r}")
        if n_lines < MIN_LINES:
            raise ValueError(f"n_lines={n_lines}: a partial frame needs at least {MIN_LINES} lines")
    arr, meta_up = _frame_array(frame)
    finite = np.all(np.isfinite(arr), axis=1)
    rows = np.flatnonzero(finite)
    if arr.shape[1] < MIN_PIXELS:
        raise FrameTooShortError(f"frame has {arr.shape[1]} pixels per line; at least {MIN_PIXELS} are needed")
    if rows.size < MIN_LINES:
        raise FrameTooShortError(f"frame has {rows.size} acquired lines of {arr.shape[0]}; "
                                 f"at least {MIN_LINES} are needed")
    up = _scan_up(finite, meta_up if scan_up is None else scan_up)
    order = rows if up else rows[::-1]  # acquisition order
    n = rows.size if n_lines is None else min(int(n_lines), rows.size)
    first = min(int(start), rows.size - n)
    return arr[np.sort(order[first:first + n])]


def strip_to_square(strip: np.ndarray, design: str = DEFAULT_DESIGN) -> np.ndarray:
    """A flattened (n, P) strip as a 2-D array ready for resizing (see :data:`DESIGNS`)."""
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    n, p = strip.shape
    if design == "stretch" or n >= p:
        return strip
    if design == "reflect":
        reps = math.ceil(p / n)
        tiles = [strip if i % 2 == 0 else strip[::-1] for i in range(reps)]
        return np.concatenate(tiles, axis=0)[:p]
    # stack: k pieces of width p // k stacked along y, k ≈ sqrt(p / n)
    k = max(1, int(round(math.sqrt(p / n))))
    w = p // k
    return np.concatenate([strip[:, i * w:(i + 1) * w] for i in range(k)], axis=0)


def partial_view(frame, n_lines: int | None = None, size: int = IMAGE_SIZE, *, scan_up: bool | None = None,
                 design: str = DEFAULT_DESIGN, start: int = 0) -> np.ndarray:
    """The preprocessed (size, size, 1) float32 input (−1…1) of a partial frame.

    Takes :func:`first_lines` of ``frame`` (``n_lines`` of them, default every acquired line;
    direction as there), subtracts each line's straight-line fit along x, makes the strip
    square by ``design`` (:data:`DESIGNS`), resizes to ``size`` × ``size`` and min–max scales
    to −1…1, as :func:`~qcodes_stmtip.classify.preprocess.preprocess_frame` does for a full
    frame. With every line of a square frame the result equals ``preprocess_frame``'s. ``start``
    takes a window further down the scan instead of the first lines (see :func:`first_lines`).
    """
    strip = flatten_lines(first_lines(frame, n_lines, scan_up=scan_up, start=start))
    return scale_symmetric(resize(strip_to_square(strip, design), size))[..., None]


def partial_batch(frames: Sequence, n_lines: int | None = None, size: int = IMAGE_SIZE, *,
                  scan_up: bool | None = None, design: str = DEFAULT_DESIGN) -> np.ndarray:
    """:func:`partial_view` of each frame stacked into an (N, size, size, 1) float32 batch."""
    out = np.empty((len(frames), size, size, 1), dtype=np.float32)
    for i, frame in enumerate(frames):
        out[i] = partial_view(frame, n_lines, size, scan_up=scan_up, design=design)
    return out


@dataclass
class PartialEnsemble:
    """An ensemble that judges partial frames, with the view it expects.

    ``ensemble``: the models (trained on partial views, or the bundle's full-frame ensemble
    when ``fallback``); ``min_lines``: fewest acquired lines it judges; ``design`` and
    ``image_size``: how :meth:`view` makes its input; ``manifest``: the bundle's ``partial``
    section (empty for a fallback).
    """

    ensemble: Ensemble
    min_lines: int = MIN_LINES
    design: str = DEFAULT_DESIGN
    image_size: int = IMAGE_SIZE
    fallback: bool = False
    manifest: dict = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.ensemble.classes

    @property
    def surface(self) -> str:
        return self.ensemble.surface

    @property
    def good_classes(self) -> frozenset[str]:
        return self.ensemble.good_classes

    @property
    def tip_change_threshold(self) -> float:
        return self.ensemble.tip_change_threshold

    def view(self, frame, n_lines: int | None = None, *, scan_up: bool | None = None, start: int = 0) -> np.ndarray:
        """This model's (size, size, 1) input for the first ``n_lines`` acquired lines of ``frame``
        (or the window of them from acquired line ``start``, see :func:`first_lines`)."""
        if n_lines is not None and n_lines < self.min_lines:
            raise ValueError(f"n_lines={n_lines}: this partial model judges at least {self.min_lines} lines")
        strip = first_lines(frame, n_lines, scan_up=scan_up, start=start)
        if strip.shape[0] < self.min_lines:
            raise FrameTooShortError(f"frame has {strip.shape[0]} acquired lines; this partial model needs "
                                     f"at least {self.min_lines}")
        return partial_view(strip, None, self.image_size, scan_up=True, design=self.design)

    def views(self, frames: Sequence, n_lines: int | None = None, *, scan_up: bool | None = None,
              start: int = 0) -> np.ndarray:
        """:meth:`view` of each frame as an (N, size, size, 1) batch."""
        out = np.empty((len(frames), self.image_size, self.image_size, 1), dtype=np.float32)
        for i, frame in enumerate(frames):
            out[i] = self.view(frame, n_lines, scan_up=scan_up, start=start)
        return out

    def predict(self, partial_views: np.ndarray) -> EnsemblePrediction:
        """Classify an (N, size, size, 1) batch of partial views (from :meth:`views`)."""
        return self.ensemble.predict(np.asarray(partial_views, dtype=np.float32))

    def predict_frames(self, frames: Sequence, n_lines: int | None = None, *,
                       scan_up: bool | None = None, start: int = 0) -> EnsemblePrediction:
        """Classify frames (arrays with NaN rows not yet acquired, or ``STMFrame``) from their first
        ``n_lines`` acquired lines (default every acquired line; ``start``: a window from acquired
        line ``start``). A frame with fewer than :attr:`min_lines` acquired lines raises
        ``FrameTooShortError``."""
        return self.predict(self.views(frames, n_lines, scan_up=scan_up, start=start))

    def good_bad(self, prediction: EnsemblePrediction) -> np.ndarray:
        """``"good"`` / ``"bad"`` / ``"uncertain"`` per frame (a flagged tip change is bad)."""
        return self.ensemble.good_bad(prediction)

    def tip_change_flags(self, prediction: EnsemblePrediction) -> np.ndarray | None:
        """Bool per frame: tip-change probability at or above the calibrated threshold (None without
        a tip-change model)."""
        p = prediction.tip_change_probability
        return None if p is None else np.asarray(p) >= self.tip_change_threshold


def load_partial(path: str | Path, surface: str | None = None, *, ensemble: Ensemble | None = None
                 ) -> PartialEnsemble:
    """The partial-frame model of the bundle at ``path``.

    With a ``partial`` section in the manifest: its members, tip-change model, thresholds,
    ``min_lines`` and view design (every file checked as the bundle's own: confined to the
    bundle, SHA-256, trusted types). Without one: the bundle's **full-frame ensemble** on the
    partial view (``fallback=True``; ``ensemble`` reuses one already loaded from ``path``).
    A missing, corrupt or hostile bundle raises :class:`~qcodes_stmtip.classify.bundle.BundleError`.
    """
    from qcodes_stmtip.classify.bundle import BundleError, _load_member, load_bundle, read_manifest

    root = Path(path)
    manifest = read_manifest(root)
    if surface is not None and manifest["surface"] != surface:
        raise BundleError(f"{root}: bundle is for surface {manifest['surface']!r}, not {surface!r}")
    size = int(manifest["preprocessing"].get("image_size", IMAGE_SIZE))
    section = manifest.get(SECTION)
    if not section:
        full = ensemble if ensemble is not None else load_bundle(root)
        return PartialEnsemble(full, MIN_LINES, DEFAULT_DESIGN, size, fallback=True)
    classes = tuple(manifest["classes"])
    members = [_load_member(root, e, len(classes), size, f"partial_member{i}")
               for i, e in enumerate(section["members"])]
    tip = None
    if section.get("tip_change"):
        tip = _load_member(root, section["tip_change"], 2, size, "partial_tip_change")
    inference = section.get("inference") or {}
    ens = Ensemble(
        manifest["surface"], classes, members, thresholds=[float(section["thresholds"][c]) for c in classes],
        tip_change=tip, tip_change_threshold=float((section.get("tip_change") or {}).get("threshold", 0.5)),
        good_classes=frozenset(manifest.get("good_classes", ())) or None,
        class_weights=inference.get("class_weights"), tta=bool(inference.get("tta", False)),
        tip_change_vertical_flip=bool(inference.get("tip_change_vertical_flip", False)),
    )
    ens.manifest, ens.path = manifest, root
    return PartialEnsemble(ens, int(section.get("min_lines", MIN_LINES)), section.get("design", DEFAULT_DESIGN),
                           size, fallback=False, manifest=section)


def save_partial(ensemble: Ensemble, path: str | Path, *, min_lines: int = MIN_LINES,
                 design: str = DEFAULT_DESIGN, lines: Sequence[int | None] = TRAINED_LINES,
                 training_data: dict | None = None, metrics: dict | None = None) -> Path:
    """Add (or replace) the ``partial`` section of the existing bundle at ``path``.

    Writes the members of ``ensemble`` under ``BUNDLE/partial/`` (feature members as deflated
    skops archives) and the section into ``manifest.json``; every other key of the manifest and
    every full-frame member file is left as it was (but a format-1 bundle, Keras members only,
    becomes format 2 when the section holds feature members). The bundle is re-read (:func:`load_partial`)
    before returning.
    """
    from qcodes_stmtip.classify.bundle import FORMAT_VERSION, MANIFEST, _save_member, read_manifest

    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    if int(min_lines) < MIN_LINES:
        raise ValueError(f"min_lines must be at least {MIN_LINES}, got {min_lines}")
    root = Path(path)
    manifest = read_manifest(root)
    if ensemble.surface != manifest["surface"] or tuple(ensemble.classes) != tuple(manifest["classes"]):
        raise ValueError(f"partial ensemble ({ensemble.surface}, {ensemble.classes}) does not match the bundle "
                         f"({manifest['surface']}, {tuple(manifest['classes'])})")
    size = int(manifest["preprocessing"].get("image_size", IMAGE_SIZE))
    for m in ensemble.networks:
        shape = tuple(getattr(m.model, "input_shape", (None, size, size, 1))[1:])
        if shape != (size, size, 1):
            raise ValueError(f"partial member {m.name} takes {shape} inputs; the bundle's image size is {size}")
    folder = root / SECTION
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    (folder / "members").mkdir(parents=True)
    members = [_save_member(m, root, f"{SECTION}/members/{i}_{_safe(m.name)}")
               for i, m in enumerate(ensemble.members)]
    tip = None
    if ensemble.tip_change is not None:
        tip = {**_save_member(ensemble.tip_change, root, f"{SECTION}/tip_change"),
               "threshold": ensemble.tip_change_threshold}
    if manifest["format_version"] < FORMAT_VERSION and any(
            e.get("kind", "keras") != "keras" for e in [*members, *([tip] if tip else [])]):
        # format 1 holds Keras members only; 2 reads every format-1 entry the same (kind defaults to keras)
        manifest["format_version"] = FORMAT_VERSION
    manifest[SECTION] = {
        "min_lines": int(min_lines),
        "design": design,
        "lines": [None if n is None else int(n) for n in lines],
        **ensemble_fields(ensemble, members, tip, training_data, metrics),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")
    load_partial(root)
    return root


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
