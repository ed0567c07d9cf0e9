"""Labelled frame sets: the real H:Si(100) vote sheet, the simulated-dataset sheet, and session splits.

Two ``labels.csv`` layouts are read:

* **votes** (``../shared/data/hsi100``): ``session, Name, No. Responses`` and mean
  votes ``Asymmetries, Individual Atoms, Dimers, Rows, Tip Change, Bad/Blurry``.
  Class scores: ``dimers_asymmetries = max(Asymmetries, Dimers)``,
  ``individual_atoms``, ``rows``, ``generic_defect = Bad/Blurry``; the label is
  the unique maximum if ≥ 0.5, else the frame is *ambiguous* (label −1). Tip
  change = ``Tip Change ≥ 0.5``. Images live in ``DIR/images``.
* **simulated** (``stmtip sim dataset``): ``session, Name, surface, label,
  tip_change, ...``; frames are read from ``DIR/frames/<stem>.npy`` when present
  (heights in metres), else ``DIR/images/<Name>``, else ``DIR/<Name>``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VOTE_COLUMNS = ("Asymmetries", "Individual Atoms", "Dimers", "Rows", "Tip Change", "Bad/Blurry")


def class_names(surface: str) -> tuple[str, ...]:
    """The class names of ``surface`` (from :mod:`qcodes_stmtip.taxonomy`)."""
    from qcodes_stmtip.taxonomy import CLASSES

    if surface not in CLASSES:
        raise ValueError(f"surface must be one of {sorted(CLASSES)}, got {surface!r}")
    return tuple(CLASSES[surface])


@dataclass
class LabeledFrames:
    """A labelled frame set: one entry per frame, ``labels`` index ``classes`` (−1 = ambiguous)."""

    surface: str
    classes: tuple[str, ...]
    paths: list[Path]
    sessions: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int, −1 = no single class
    tip_change: np.ndarray | None  # (N,) bool; None when the sheet has no tip-change column
    source: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray) -> LabeledFrames:
        """The frames at ``index`` (integer or boolean array)."""
        idx = np.arange(len(self))[index]
        return LabeledFrames(
            self.surface,
            self.classes,
            [self.paths[i] for i in idx],
            self.sessions[idx],
            self.labels[idx],
            None if self.tip_change is None else self.tip_change[idx],
            self.source,
            dict(self.extra),
        )

    def summary(self) -> dict[str, object]:
        """Counts per class, ambiguous and tip-change frames, sessions (JSON-ready)."""
        counts = {c: int(np.sum(self.labels == i)) for i, c in enumerate(self.classes)}
        out: dict[str, object] = {
            "source": self.source,
            "surface": self.surface,
            "frames": len(self),
            "sessions": len(set(self.sessions.tolist())),
            "class_counts": counts,
            "ambiguous": int(np.sum(self.labels < 0)),
        }
        if self.tip_change is not None:
            out["tip_changes"] = int(np.sum(self.tip_change))
        return out


def _read_rows(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _float(row: dict[str, str], key: str, where: str) -> float:
    try:
        return float(row[key])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{where}: column {key!r} must be a number, got {row.get(key)!r}") from exc


def vote_label(scores: np.ndarray, minimum: float = 0.5) -> int:
    """Index of the unique maximum of ``scores`` if it is ≥ ``minimum``, else −1."""
    best = float(np.max(scores))
    if best < minimum or int(np.sum(scores == best)) != 1:
        return -1
    return int(np.argmax(scores))


def read_votes(data_dir: Path, rows: list[dict[str, str]], csv_path: Path) -> LabeledFrames:
    """Build the H:Si(100) four-class set from the vote sheet rows (see module doc)."""
    classes = class_names("hsi100")
    paths, sessions, labels, tips = [], [], [], []
    for n, row in enumerate(rows, start=2):
        where = f"{csv_path}:{n}"
        v = {k: _float(row, k, where) for k in VOTE_COLUMNS}
        by_class = {
            "dimers_asymmetries": max(v["Asymmetries"], v["Dimers"]),
            "individual_atoms": v["Individual Atoms"],
            "rows": v["Rows"],
            "generic_defect": v["Bad/Blurry"],
        }
        scores = np.array([by_class[c] for c in classes])
        paths.append(data_dir / "images" / row["Name"])
        sessions.append(row["session"])
        labels.append(vote_label(scores))
        tips.append(v["Tip Change"] >= 0.5)
    return LabeledFrames(
        "hsi100", classes, paths, np.array(sessions), np.array(labels, dtype=int),
        np.array(tips, dtype=bool), source=str(data_dir),
    )


def _frame_path(data_dir: Path, name: str) -> Path:
    stem = Path(name).stem
    for candidate in (
        data_dir / "frames" / f"{stem}.npy",
        data_dir / "images" / name,
        data_dir / name,
    ):
        if candidate.is_file():
            return candidate
    return data_dir / "images" / name


def read_simulated(
    data_dir: Path, rows: list[dict[str, str]], csv_path: Path, surface: str | None
) -> LabeledFrames:
    """Build a set from the simulated-dataset sheet rows (see module doc)."""
    surfaces = {row.get("surface", "") for row in rows}
    if surface is None:
        if len(surfaces) != 1:
            raise ValueError(f"{csv_path}: several surfaces {sorted(surfaces)}; pass surface=")
        surface = surfaces.pop()
    classes = class_names(surface)
    paths, sessions, labels, tips = [], [], [], []
    for n, row in enumerate(rows, start=2):
        if row.get("surface", surface) != surface:
            continue
        label = row["label"]
        if label not in classes:
            raise ValueError(f"{csv_path}:{n}: label {label!r} is not a {surface} class {classes}")
        tip = row.get("tip_change", "0").strip().lower() in ("1", "true", "yes")
        paths.append(_frame_path(data_dir, row["Name"]))
        sessions.append(row["session"])
        labels.append(classes.index(label))
        tips.append(tip)
    if not paths:
        raise ValueError(f"{csv_path}: no frames of surface {surface!r}")
    return LabeledFrames(
        surface, classes, paths, np.array(sessions), np.array(labels, dtype=int),
        np.array(tips, dtype=bool), source=str(data_dir),
    )


def load_labels(data_dir: str | Path, surface: str | None = None) -> LabeledFrames:
    """Read ``DIR/labels.csv`` in either layout; ``surface`` checks (votes) or selects (simulated)."""
    data_dir = Path(data_dir)
    csv_path = data_dir / "labels.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"no labels.csv in data directory {data_dir}")
    fields, rows = _read_rows(csv_path)
    for required in ("session", "Name"):
        if required not in fields:
            raise ValueError(f"{csv_path}: missing column {required!r}")
    if all(c in fields for c in VOTE_COLUMNS):
        if surface not in (None, "hsi100"):
            raise ValueError(f"{csv_path} is an H:Si(100) vote sheet, not surface {surface!r}")
        return read_votes(data_dir, rows, csv_path)
    if "label" in fields:
        return read_simulated(data_dir, rows, csv_path, surface)
    raise ValueError(f"{csv_path}: neither the vote layout {VOTE_COLUMNS} nor a 'label' column")


def session_split(
    sessions: np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split frame indexes into (train, validation) by whole sessions.

    Sessions are shuffled with ``seed`` and moved to validation until it holds at
    least ``val_fraction`` of the frames; no session appears in both parts.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    sessions = np.asarray(sessions)
    unique = np.unique(sessions)
    if unique.size < 2:
        raise ValueError("session_split needs frames from at least two sessions")
    order = np.random.default_rng(seed).permutation(unique)
    target = val_fraction * sessions.size
    val_sessions: list[str] = []
    count = 0
    for s in order[:-1]:  # keep at least one session for training
        if count >= target:
            break
        val_sessions.append(s)
        count += int(np.sum(sessions == s))
    is_val = np.isin(sessions, val_sessions)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
