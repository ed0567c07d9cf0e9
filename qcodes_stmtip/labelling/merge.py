"""Merge every labeller's votes into the mean-vote ``labels.csv`` that ``stmtip train`` reads.

For each frame, ``No. Responses`` is the number of labellers whose decision in
effect is a vote (skips are no response) and each category's column is the
fraction of them who ticked it (0–1), like the paper's data.

Layouts written (both are read by :func:`qcodes_stmtip.classify.labels.load_labels`):

* ``hsi100``: the paper's vote sheet ``session, Name, No. Responses,
  Asymmetries, Individual Atoms, Dimers, Rows, Tip Change, Bad/Blurry`` (plus
  ``surface``). ``dimers_asymmetries`` is one category here, so its mean vote
  fills both ``Asymmetries`` and ``Dimers`` (the reader takes their maximum);
  ``generic_defect`` fills ``Bad/Blurry``.
* ``au111`` / ``cu111``: ``session, Name, surface, label, tip_change,
  No. Responses`` and one mean-vote column per class in Title Case
  (``Individual Atoms`` … ``Corruption``). ``label`` is the class whose mean
  vote is the unique maximum and ≥ 0.5, ``tip_change`` is 1 when the
  ``Tip Change`` mean vote is ≥ 0.5. Frames with no such label cannot be written
  in this layout (the reader wants a class name); they go to ``ambiguous.csv``
  with the same columns and an empty ``label``.

Frames are stored beside the sheet as ``images/<Name>`` (``.npy``, see
:mod:`.server`), which is where the reader looks.
"""

from __future__ import annotations

import csv
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcodes_stmtip.classify.labels import VOTE_COLUMNS, vote_label
from qcodes_stmtip.labelling.votes import (
    LogReading,
    VoteEvent,
    categories,
    check_labeller,
    load_log,
)
from qcodes_stmtip.taxonomy import CLASSES, check_surface

LABELS_FILE = "labels.csv"
AMBIGUOUS_FILE = "ambiguous.csv"

#: Paper vote column → the H:Si(100) category whose mean vote fills it.
HSI100_COLUMN_SOURCE: dict[str, str] = {
    "Asymmetries": "dimers_asymmetries",
    "Individual Atoms": "individual_atoms",
    "Dimers": "dimers_asymmetries",
    "Rows": "rows",
    "Tip Change": "tip_change",
    "Bad/Blurry": "generic_defect",
}

_write_lock = threading.Lock()


def column_title(category: str) -> str:
    """The Title Case column name of a category (``"double_tip"`` → ``"Double Tip"``)."""
    return category.replace("_", " ").title()


@dataclass(frozen=True)
class FrameVotes:
    """Merged votes on one frame: mean vote per category (0–1) over ``responses`` labellers."""

    name: str
    session: str
    source: str
    responses: int
    mean: dict[str, float]
    labellers: tuple[str, ...]


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_votes` wrote."""

    labels_path: Path
    ambiguous_path: Path | None
    frames: tuple[FrameVotes, ...]
    labelled: int  # rows in labels.csv
    ambiguous: int  # rows in ambiguous.csv (metals only)
    labellers: tuple[str, ...]
    #: Damaged log lines that were skipped, ``"<file>:<line>: <why>"`` (every other vote merged).
    problems: tuple[str, ...] = ()


_log_cache: dict[tuple[Path, str | None], tuple[tuple[int, int], LogReading]] = {}
_cache_lock = threading.Lock()


def read_all_logs(out_dir: str | Path, known: dict[str, list[VoteEvent]] | None = None, *,
                  surface: str | None = None,
                  problems: list[str] | None = None) -> dict[str, list[VoteEvent]]:
    """Every labeller's votes and skips in effect, by labeller name (from ``votes/*.csv``).

    ``known`` gives labellers whose events are already in memory (a running
    session's own store); other logs are re-read only when their size or
    modification time changed since the last call. Logs are read leniently
    (:func:`~qcodes_stmtip.labelling.votes.load_log`, checking categories against
    ``surface`` when given): damaged lines are skipped and appended to ``problems``.
    """
    votes_dir = Path(out_dir) / "votes"
    logs: dict[str, list[VoteEvent]] = {}
    if not votes_dir.is_dir():
        return logs
    known = known or {}
    for path in sorted(votes_dir.glob("*.csv")):
        try:
            name = check_labeller(path.stem)
        except ValueError:
            if problems is not None:
                problems.append(f"{path}: not a labeller's log (not a labeller name); ignored")
            continue
        if name in known:
            logs[name] = known[name]
            continue
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        resolved = (path.resolve(), surface)
        with _cache_lock:
            cached = _log_cache.get(resolved)
        if cached is not None and cached[0] == key:
            reading = cached[1]
        else:
            reading = load_log(path, surface)
            with _cache_lock:
                _log_cache[resolved] = (key, reading)
        if surface is not None:
            reading.check_surface(surface)
        if problems is not None:
            problems.extend(reading.problems)
        logs[name] = reading.events
    return logs


def mean_votes(logs: dict[str, list[VoteEvent]], surface: str) -> tuple[FrameVotes, ...]:
    """Per-frame mean votes of ``logs`` (labeller → events), frames sorted by name.

    Only frames with at least one vote are returned. Raises ValueError if a vote
    names a category that ``surface`` does not have.
    """
    cats = categories(surface)
    index = {c: i for i, c in enumerate(cats)}
    counts: dict[str, list[int]] = {}
    voters: dict[str, list[str]] = {}
    info: dict[str, tuple[str, str]] = {}
    for labeller, events in sorted(logs.items()):
        latest = {event.frame: event for event in events}  # the last decision on a frame wins
        for frame, event in latest.items():
            if event.action != "vote":
                continue
            per = counts.get(frame)
            if per is None:
                per = counts[frame] = [0] * len(cats)
                voters[frame] = []
            try:
                for c in event.classes:
                    per[index[c]] += 1
            except KeyError:
                unknown = [c for c in event.classes if c not in index]
                raise ValueError(
                    f"votes/{labeller}.csv: frame {frame!r} has categories {unknown} that surface "
                    f"{surface!r} does not have {cats}"
                ) from None
            voters[frame].append(labeller)
            info[frame] = (event.session, event.source)
    out = []
    for frame in sorted(counts):
        n = len(voters[frame])
        out.append(FrameVotes(frame, info[frame][0], info[frame][1], n,
                              {c: counts[frame][i] / n for i, c in enumerate(cats)},
                              tuple(voters[frame])))
    return tuple(out)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _write_atomic(path: Path, header: list[str], rows: list[list[str]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def merge_votes(out_dir: str | Path, surface: str, *,
                known: dict[str, list[VoteEvent]] | None = None) -> MergeResult:
    """Merge ``<out_dir>/votes/*.csv`` into ``<out_dir>/labels.csv`` (and ``ambiguous.csv``).

    ``known``: labellers whose events are already in memory (see
    :func:`read_all_logs`). A damaged log never stops the merge: its damaged lines are
    skipped and listed in :attr:`MergeResult.problems`. Side effect: rewrites those files
    atomically. See the module docstring for the layouts.
    """
    check_surface(surface)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    logs = read_all_logs(out, known, surface=surface, problems=problems)
    frames = mean_votes(logs, surface)
    labels_path = out / LABELS_FILE
    with _write_lock:
        if surface == "hsi100":
            header = ["session", "Name", "No. Responses", *VOTE_COLUMNS, "surface"]
            rows = [
                [f.session, f.name, str(f.responses),
                 *(_fmt(f.mean[HSI100_COLUMN_SOURCE[col]]) for col in VOTE_COLUMNS), surface]
                for f in frames
            ]
            _write_atomic(labels_path, header, rows)
            return MergeResult(labels_path, None, frames, len(rows), 0, tuple(sorted(logs)),
                               tuple(problems))
        classes = CLASSES[surface]
        header = ["session", "Name", "surface", "label", "tip_change", "No. Responses",
                  *(column_title(c) for c in classes)]
        good, ambiguous = [], []
        for f in frames:
            scores = np.array([f.mean[c] for c in classes])
            index = vote_label(scores)
            row = [f.session, f.name, surface, classes[index] if index >= 0 else "",
                   "1" if f.mean["tip_change"] >= 0.5 else "0", str(f.responses),
                   *(_fmt(f.mean[c]) for c in classes)]
            (good if index >= 0 else ambiguous).append(row)
        _write_atomic(labels_path, header, good)
        ambiguous_path = out / AMBIGUOUS_FILE
        _write_atomic(ambiguous_path, header, ambiguous)
        return MergeResult(labels_path, ambiguous_path, frames, len(good), len(ambiguous),
                           tuple(sorted(logs)), tuple(problems))
