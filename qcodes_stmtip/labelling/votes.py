"""One labeller's votes: an append-only CSV log of votes, skips and undos.

Every action is appended as one row of ``votes/<labeller>.csv`` (columns
:data:`LOG_COLUMNS`) and flushed to disk at once, so nothing is lost if the
server stops. An ``undo`` row cancels the latest vote or skip not yet undone;
replaying the log gives each frame's current decision (the last one wins when
a frame was voted on twice). Several labellers never share a file.
"""

from __future__ import annotations

import csv
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from qcodes_stmtip.taxonomy import CLASSES, TIP_CHANGE, check_surface

#: Columns of a labeller's log file, in order.
LOG_COLUMNS: tuple[str, ...] = ("time", "action", "frame", "session", "source", "classes")
#: The three kinds of log rows.
ACTIONS: tuple[str, ...] = ("vote", "skip", "undo")

_LABELLER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VoteLogError(ValueError):
    """A vote log file is malformed; the message names the file and line."""


def categories(surface: str) -> tuple[str, ...]:
    """The categories a labeller can tick on ``surface``, in key order (keys 1, 2, …).

    H:Si(100): its four classes plus the separate binary ``tip_change``; Au(111)
    and Cu(111): their six classes (``tip_change`` is one of them).
    """
    check_surface(surface)
    classes = tuple(CLASSES[surface])
    return classes if TIP_CHANGE in classes else (*classes, TIP_CHANGE)


def check_labeller(name: str) -> str:
    """Return ``name`` if it is a valid labeller name (letters, digits, ``_.-``; ≤ 64), else ValueError."""
    if not isinstance(name, str) or not _LABELLER.match(name):
        raise ValueError(
            f"labeller={name!r} must be 1-64 characters of letters, digits, '_', '.', '-' "
            "starting with a letter or digit (it names the file votes/<labeller>.csv)"
        )
    return name


@dataclass(frozen=True)
class VoteEvent:
    """One vote or skip by one labeller: ``classes`` is empty for a skip."""

    action: str
    frame: str
    session: str
    source: str
    classes: tuple[str, ...]
    time: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def replay(rows: list[dict[str, str]], where: str = "votes") -> list[VoteEvent]:
    """Apply the log ``rows`` in order; return the votes and skips still in effect, oldest first.

    Raises :class:`VoteLogError` for an unknown action or an undo with nothing to undo.
    """
    stack: list[VoteEvent] = []
    for n, row in enumerate(rows, start=2):
        action = (row.get("action") or "").strip()
        if action not in ACTIONS:
            raise VoteLogError(f"{where}:{n}: action must be one of {ACTIONS}, got {action!r}")
        frame = (row.get("frame") or "").strip()
        if action == "undo":
            if not stack:
                raise VoteLogError(f"{where}:{n}: undo with no vote or skip left to undo")
            if frame and stack[-1].frame != frame:
                raise VoteLogError(
                    f"{where}:{n}: undo names frame {frame!r} but the latest decision is on "
                    f"{stack[-1].frame!r}"
                )
            stack.pop()
            continue
        if not frame:
            raise VoteLogError(f"{where}:{n}: empty frame name")
        classes = tuple(c for c in (row.get("classes") or "").split(";") if c)
        stack.append(VoteEvent(action, frame, row.get("session") or "", row.get("source") or "",
                               classes, row.get("time") or ""))
    return stack


def read_log(path: str | Path) -> list[VoteEvent]:
    """Read and replay one labeller's log file (see :func:`replay`)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in LOG_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise VoteLogError(f"{path}: missing columns {missing}; expected {LOG_COLUMNS}")
        rows = list(reader)
    return replay(rows, str(path))


def decisions(events: list[VoteEvent]) -> dict[str, VoteEvent]:
    """Each frame's decision in effect (the latest vote or skip on it), by frame name."""
    out: dict[str, VoteEvent] = {}
    for event in events:
        out.pop(event.frame, None)  # keep insertion order = order of the latest decision
        out[event.frame] = event
    return out


class VoteStore:
    """The vote log of one ``labeller`` on ``surface`` in ``<out_dir>/votes/<labeller>.csv``.

    Thread-safe; rows appended by another store on the same file (a second
    session of the same labeller) are picked up before each action. Side
    effects: creates the folder and file, appends one row per call of
    :meth:`vote`, :meth:`skip` or :meth:`undo`.
    """

    def __init__(self, out_dir: str | Path, labeller: str, surface: str) -> None:
        self.labeller = check_labeller(labeller)
        self.surface = check_surface(surface)
        self.categories = categories(surface)
        self.path = Path(out_dir) / "votes" / f"{labeller}.csv"
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not (self.path.exists() and self.path.stat().st_size > 0):
            with open(self.path, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(LOG_COLUMNS)
        self._events = read_log(self.path)
        self._size = self.path.stat().st_size

    def _refresh(self) -> None:
        """Re-read the log if something else (a second session of this labeller) appended to it."""
        if self.path.stat().st_size != self._size:
            self._events = read_log(self.path)
            self._size = self.path.stat().st_size

    def _append(self, row: tuple[str, ...]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(row)
            fh.flush()
        self._size = self.path.stat().st_size

    def vote(self, frame: str, classes: list[str] | tuple[str, ...], *, session: str = "",
             source: str = "") -> VoteEvent:
        """Record that ``frame`` shows ``classes`` (at least one category of the surface)."""
        if not frame:
            raise ValueError("frame must be a non-empty frame name")
        chosen = tuple(dict.fromkeys(classes))
        if not chosen:
            raise ValueError(f"classes must name at least one of {self.categories} (or skip)")
        unknown = [c for c in chosen if c not in self.categories]
        if unknown:
            raise ValueError(
                f"classes {unknown} are not categories of surface {self.surface!r}: {self.categories}"
            )
        ordered = tuple(c for c in self.categories if c in chosen)
        return self._record("vote", frame, session, source, ordered)

    def skip(self, frame: str, *, session: str = "", source: str = "") -> VoteEvent:
        """Record that this labeller passes on ``frame`` (it counts as no response)."""
        if not frame:
            raise ValueError("frame must be a non-empty frame name")
        return self._record("skip", frame, session, source, ())

    def _record(self, action: str, frame: str, session: str, source: str,
                classes: tuple[str, ...]) -> VoteEvent:
        event = VoteEvent(action, frame, session, source, classes, _now())
        with self._lock:
            self._refresh()
            self._append((event.time, action, frame, session, source, ";".join(classes)))
            self._events.append(event)
        return event

    def undo(self) -> VoteEvent | None:
        """Cancel the latest vote or skip still in effect; return it, or None if there is none."""
        with self._lock:
            self._refresh()
            if not self._events:
                return None
            event = self._events.pop()
            self._append((_now(), "undo", event.frame, event.session, event.source, ""))
        return event

    @property
    def events(self) -> list[VoteEvent]:
        """Votes and skips in effect, oldest first (a copy)."""
        with self._lock:
            self._refresh()
            return list(self._events)

    def decisions(self) -> dict[str, VoteEvent]:
        """Each frame's decision in effect by frame name (see :func:`decisions`)."""
        return decisions(self.events)
