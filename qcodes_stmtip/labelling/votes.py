"""One labeller's votes: an append-only CSV log of votes, skips and undos.

Every action is appended as one row of ``votes/<labeller>.csv`` (columns
:data:`LOG_COLUMNS`) in a single write and ``fsync``-ed at once, so nothing is lost if the
server stops. An ``undo`` row cancels the latest vote or skip not yet undone;
replaying the log gives each frame's current decision (the last one wins when
a frame was voted on twice). Several labellers never share a file, and one labeller's
file has one writer at a time: the session that holds its lock
(:mod:`~qcodes_stmtip.labelling.lock`; a second session is refused, or takes over
explicitly).

Reading is lenient (:func:`load_log`): a damaged line — cut short by a crash, edited by
hand, or an undo that does not fit — is skipped and reported with its file and line, and
every other vote is kept, so a damaged log never stops a session or a merge from starting.
:func:`replay` and ``read_log(..., strict=True)`` are the strict forms.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from qcodes_stmtip.labelling.lock import LogInUseError, LogTakenOverError, LogWriter
from qcodes_stmtip.taxonomy import CLASSES, TIP_CHANGE, check_surface

__all__ = ["ACTIONS", "LOG_COLUMNS", "LogInUseError", "LogReading", "LogTakenOverError",
           "VoteEvent", "VoteLogError", "VoteStore", "categories", "check_labeller", "decisions",
           "load_log", "parse_log", "read_log", "replay"]

log = logging.getLogger(__name__)

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



def _apply(stack: list[VoteEvent], row: dict[str, str], allowed: tuple[str, ...] | None) -> str | None:
    """Apply one log row to ``stack``; the reason it cannot be applied (nothing changed), else None."""
    action = (row.get("action") or "").strip()
    if action not in ACTIONS:
        return f"action must be one of {ACTIONS}, got {action!r}"
    frame = (row.get("frame") or "").strip()
    if action == "undo":
        if not stack:
            return "undo with no vote or skip left to undo"
        if frame and stack[-1].frame != frame:
            return f"undo names frame {frame!r} but the latest decision is on {stack[-1].frame!r}"
        stack.pop()
        return None
    if not frame:
        return "empty frame name"
    classes = tuple(c for c in (row.get("classes") or "").split(";") if c)
    if action == "skip":
        classes = ()
    elif not classes:
        return "a vote with no category"
    elif allowed is not None and (unknown := [c for c in classes if c not in allowed]):
        if all(c in _ANY_CATEGORY for c in unknown):
            return f"{_FOREIGN}frame {frame!r} has categories {unknown} that the surface does not have {allowed}"
        return f"categories {unknown} are not among {allowed}"
    stack.append(VoteEvent(action, frame, row.get("session") or "", row.get("source") or "",
                           classes, row.get("time") or ""))
    return None


#: Marks a row whose categories are another surface's (a wrong ``--surface``, not damage).
_FOREIGN = "\x00foreign:"
_ANY_CATEGORY = frozenset(c for s in CLASSES for c in categories(s))


def replay(rows: list[dict[str, str]], where: str = "votes") -> list[VoteEvent]:
    """Apply the log ``rows`` in order; return the votes and skips still in effect, oldest first.

    Strict: raises :class:`VoteLogError` for the first row that cannot be applied (an
    unknown action, an undo with nothing to undo or naming another frame). Reading a log
    file is lenient instead (:func:`load_log`).
    """
    stack: list[VoteEvent] = []
    for n, row in enumerate(rows, start=2):
        problem = _apply(stack, row, None)
        if problem is not None:
            raise VoteLogError(f"{where}:{n}: {problem}")
    return stack


#: Longest record (bytes) of a log; a longer one is reported as damaged and skipped.
MAX_RECORD_BYTES = 1 << 16
#: Most damaged lines a log reading lists one by one (all are counted and skipped).
MAX_PROBLEMS_LISTED = 50


@dataclass(frozen=True)
class LogReading:
    """A log file read leniently (see :func:`load_log`).

    ``events``: the votes and skips in effect, oldest first; ``problems``: one
    ``"<file>:<line>: <why>"`` per damaged line that was skipped (the first
    :data:`MAX_PROBLEMS_LISTED`; ``damaged`` counts them all); ``columns``: the column
    order of the file's header; ``tail``: the bytes after the last newline when they do not
    form a good row (a write cut short), else ``b""``; ``tail_ok``: the file's last line is
    good but has no newline (a hand edit).
    """

    path: Path
    events: list[VoteEvent]
    problems: tuple[str, ...] = ()
    damaged: int = 0
    rows: int = 0
    columns: tuple[str, ...] = LOG_COLUMNS
    tail: bytes = b""
    tail_ok: bool = False
    size: int = 0
    #: Rows whose categories belong to another surface (the log is another surface's; not
    #: damage: :meth:`check_surface` refuses them).
    foreign: tuple[str, ...] = ()

    def check_surface(self, surface: str) -> None:
        """``ValueError`` naming the first row whose categories are another surface's."""
        if self.foreign:
            raise ValueError(f"{self.foreign[0]} (surface {surface!r}; is this another "
                             "surface's labels folder?)")

    def summary(self) -> str:
        """One line: how many damaged lines were skipped and which (empty when none)."""
        if not self.damaged:
            return ""
        listed = "; ".join(self.problems[:3])
        more = f"; … {self.damaged - 3} more" if self.damaged > 3 else ""
        return (f"{self.path}: {self.damaged} damaged line(s) skipped, {len(self.events)} "
                f"decision(s) in effect kept — {listed}{more}")


def _records(data: bytes) -> list[tuple[int, bytes, bool]]:
    """Split ``data`` into its lines ``(line number, bytes, complete)``: one row per line (the
    writer never puts a newline inside a field); the last is incomplete when no newline ends it."""
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline ("" when the file ends with one)
    out = [(n, line, True) for n, line in enumerate(lines, start=1)]
    if tail:
        out.append((len(lines) + 1, tail, False))
    return out


def parse_log(data: bytes, where: str = "votes", surface: str | None = None,
              path: str | Path | None = None) -> LogReading:
    """Read a log's bytes leniently: every good row is applied in order, a damaged one is
    skipped and reported (see :class:`LogReading`); never raises for the content.

    Damaged: not UTF-8, not CSV, longer than :data:`MAX_RECORD_BYTES`, the wrong number
    of fields, an unknown action, a vote with no category or (``surface`` given) one
    the surface does not have, an undo with nothing to undo or naming another frame than
    the latest decision, and an incomplete last line. Every vote before and after a
    damaged line is kept.
    """
    allowed = categories(surface) if surface is not None else None
    stack: list[VoteEvent] = []
    problems: list[str] = []
    foreign: list[str] = []
    damaged = rows = 0
    columns: tuple[str, ...] | None = None
    tail, tail_ok = b"", False

    def bad(line: int, why: str) -> None:
        nonlocal damaged
        damaged += 1
        if len(problems) < MAX_PROBLEMS_LISTED:
            problems.append(f"{where}:{line}: {why}")

    for line, raw, complete in _records(data):
        if len(raw) > MAX_RECORD_BYTES:
            bad(line, f"record longer than {MAX_RECORD_BYTES} bytes")
            if not complete:
                tail = raw
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad(line, "not UTF-8 text")
            if not complete:
                tail = raw
            continue
        if line == 1:
            text = text.lstrip("\ufeff")
        if not text.strip("\r\n \t"):
            continue  # blank line
        try:
            fields = next(csv.reader([text.rstrip("\r")]))
        except (csv.Error, StopIteration) as exc:
            bad(line, f"not a CSV row ({exc})")
            if not complete:
                tail = raw
            continue
        if columns is None:
            names = tuple(f.strip() for f in fields)
            if all(c in names for c in LOG_COLUMNS) and len(set(names)) == len(names):
                columns = names
                continue
            columns = LOG_COLUMNS
            missing = [c for c in LOG_COLUMNS if c not in names]
            if not (len(fields) == len(LOG_COLUMNS) and fields[1].strip() in ACTIONS):
                bad(line, f"header is missing columns {missing}; rows are read in the order "
                          f"{LOG_COLUMNS}")
                continue
            bad(line, f"no header (missing columns {missing}); rows are read in the order "
                      f"{LOG_COLUMNS}")  # and this row too, below
        if len(fields) != len(columns):
            bad(line, f"{len(fields)} fields, expected {len(columns)} ({', '.join(columns)})")
            if not complete:
                tail = raw
            continue
        problem = _apply(stack, dict(zip(columns, fields, strict=True)), allowed)
        if problem is not None and problem.startswith(_FOREIGN) and complete:
            if len(foreign) < MAX_PROBLEMS_LISTED:
                foreign.append(f"{where}:{line}: {problem[len(_FOREIGN):]}")
            continue
        if problem is not None:
            problem = problem.removeprefix(_FOREIGN)
            bad(line, problem if complete else f"incomplete last line ({problem})")
            if not complete:
                tail = raw
            continue
        rows += 1
        if not complete:
            tail_ok = True
    return LogReading(Path(path) if path is not None else Path(where), stack, tuple(problems),
                      damaged, rows, columns or LOG_COLUMNS, tail, tail_ok, len(data),
                      tuple(foreign))


def load_log(path: str | Path, surface: str | None = None) -> LogReading:
    """Read one labeller's log file leniently (:func:`parse_log`); never refuses a damaged
    log — only a file that cannot be opened raises (``OSError``)."""
    path = Path(path)
    return parse_log(path.read_bytes(), str(path), surface, path)


def read_log(path: str | Path, surface: str | None = None, *, strict: bool = False) -> list[VoteEvent]:
    """The votes and skips in effect in one labeller's log file (see :func:`load_log`).

    Damaged lines are skipped and logged as warnings; ``strict=True`` raises
    :class:`VoteLogError` naming the first one instead.
    """
    reading = load_log(path, surface)
    if reading.damaged:
        if strict:
            more = f" (and {reading.damaged - 1} more)" if reading.damaged > 1 else ""
            raise VoteLogError(reading.problems[0] + more)
        log.warning("%s", reading.summary())
    return reading.events


def decisions(events: list[VoteEvent]) -> dict[str, VoteEvent]:
    """Each frame's decision in effect (the latest vote or skip on it), by frame name."""
    out: dict[str, VoteEvent] = {}
    for event in events:
        out.pop(event.frame, None)  # keep insertion order = order of the latest decision
        out[event.frame] = event
    return out


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _check_frame_name(frame: str) -> None:
    if not frame:
        raise ValueError("frame must be a non-empty frame name")
    if "\n" in frame or "\r" in frame:
        raise ValueError(f"frame name {frame!r} holds a line break; the log keeps one row per line")


def _encode_row(columns: tuple[str, ...], values: dict[str, str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([values.get(c, "") for c in columns])
    return buffer.getvalue().encode("utf-8")


class VoteStore:
    """The vote log of one ``labeller`` on ``surface`` in ``<out_dir>/votes/<labeller>.csv``.

    The only writer of that log while it lives (:class:`~.lock.LogWriter`): a second store
    of the same labeller, in this process or another, raises :class:`~.lock.LogInUseError`
    naming this one's port and PID, unless it is made with ``take_over=True`` — after which
    this one's writes raise :class:`~.lock.LogTakenOverError`. :meth:`close` (or the end of
    the process, however it ends) lets go of the log.

    Every row is appended in one ``write`` and ``fsync``-ed before the call returns, under
    the log's append lock. A damaged log is read up to every good line (:func:`load_log`:
    the damaged lines are skipped, listed in :attr:`reading`, and every other vote is
    kept); an incomplete last line (a write cut short by a crash) is moved to
    ``votes/<labeller>.csv.damaged-<time>`` so that new rows start on a line of their own.
    Thread-safe. Side effects: creates the folder, the log, ``<labeller>.lock``; appends
    one row per :meth:`vote`, :meth:`skip` or :meth:`undo`.
    """

    def __init__(self, out_dir: str | Path, labeller: str, surface: str, *,
                 take_over: bool = False) -> None:
        self.labeller = check_labeller(labeller)
        self.surface = check_surface(surface)
        self.categories = categories(surface)
        self.path = Path(out_dir) / "votes" / f"{labeller}.csv"
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = LogWriter(self.path, take_over=take_over)
        try:
            with self.writer.exclusive() as fd:
                self.reading = self._recover(fd)
        except BaseException:
            self.writer.close()
            raise
        self._events = list(self.reading.events)
        self._columns = self.reading.columns
        self._size = self.path.stat().st_size
        if self.reading.damaged:
            log.warning("%s", self.reading.summary())

    def _recover(self, fd: int) -> LogReading:
        """Read the log; cut an incomplete last line off into a ``.damaged-*`` file; write the
        header into an empty log. Runs under the append lock."""
        reading = load_log(self.path, self.surface)
        reading.check_surface(self.surface)
        if reading.tail and not reading.tail_ok:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            keep = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
            keep.write_bytes(reading.tail)
            os.ftruncate(fd, reading.size - len(reading.tail))
            os.fsync(fd)
            log.warning("%s: an incomplete last line (%d bytes, a write cut short) was moved to %s",
                        self.path, len(reading.tail), keep.name)
        elif reading.tail_ok:
            LogWriter.append(fd, b"\r\n")
        if os.fstat(fd).st_size == 0:
            LogWriter.append(fd, _encode_row(LOG_COLUMNS, dict(zip(LOG_COLUMNS, LOG_COLUMNS,
                                                                  strict=True))))
        return reading

    @property
    def problems(self) -> tuple[str, ...]:
        """The damaged lines found when the log was opened (skipped; see :attr:`reading`)."""
        return self.reading.problems

    def announce(self, **fields: object) -> None:
        """Record ``fields`` (the server's ``port``, ``url``) in the log's owner record, which
        a refused second session quotes."""
        self.writer.announce(**fields)

    def close(self) -> None:
        """Let go of the log (another session may then write it)."""
        self.writer.close()

    def __enter__(self) -> VoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh(self) -> None:
        """Re-read the log if it changed behind this store (a writer that takes no lock)."""
        size = self.path.stat().st_size
        if size != self._size:
            self._events = load_log(self.path, self.surface).events
            self._size = size

    def vote(self, frame: str, classes: list[str] | tuple[str, ...], *, session: str = "",
             source: str = "") -> VoteEvent:
        """Record that ``frame`` shows ``classes`` (at least one category of the surface)."""
        _check_frame_name(frame)
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
        _check_frame_name(frame)
        return self._record("skip", frame, session, source, ())

    def _append(self, fd: int, event: VoteEvent) -> None:
        row = {"time": event.time, "action": event.action, "frame": event.frame,
               "session": _one_line(event.session), "source": _one_line(event.source),
               "classes": ";".join(event.classes)}
        LogWriter.append(fd, _encode_row(self._columns, row))
        self._size = os.fstat(fd).st_size

    def _record(self, action: str, frame: str, session: str, source: str,
                classes: tuple[str, ...]) -> VoteEvent:
        event = VoteEvent(action, frame, session, source, classes, _now())
        with self._lock, self.writer.exclusive() as fd:
            self._refresh()
            self._append(fd, event)
            self._events.append(event)
        return event

    def undo(self) -> VoteEvent | None:
        """Cancel the latest vote or skip still in effect; return it, or None if there is none."""
        with self._lock, self.writer.exclusive() as fd:
            self._refresh()
            if not self._events:
                return None
            event = self._events[-1]
            self._append(fd, VoteEvent("undo", event.frame, event.session, event.source, (), _now()))
            self._events.pop()
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
