"""One writer per labeller's vote log: a lock the session holds, and fencing for takeovers.

Beside ``votes/<labeller>.csv`` lives ``votes/<labeller>.lock``, whose text is the **owner
record** of the session that writes the log: one JSON line with its PID, port, host, start
time and a random token (``"closed": true`` once it stopped cleanly). Two operating-system
locks, both released by the OS when a process dies — so a crash never leaves a stale lock
on a local disk:

* the **session lock**, on the ``.lock`` file, held for the session's whole life. A second
  session of the same labeller cannot take it and is refused with one line naming the
  first one's port and PID (:class:`LogInUseError`), unless it is started with
  ``take_over`` (``stmtip label --take-over``): for a session that is hung, or whose lock a
  network share still holds after its machine crashed. A takeover writes the new
  session's token into the owner record; from then on the old session's writes are
  refused (:class:`LogTakenOverError`), so there is still one writer at a time. The new
  session takes the session lock as soon as the old one lets go of it.
* the **append lock**, on the log file itself, held only while one row is checked and
  appended: under it the writer re-reads the owner record's token, so a session that was
  taken over can never append after the takeover.

The locks are :func:`fcntl.flock` on POSIX and :func:`msvcrt.locking` on Windows (one
byte far past the end of the file, so that the lock never blocks reading the text). No
third-party package: ``filelock`` truncates its lock file on every attempt to acquire it,
which would erase the owner record that the refusal quotes.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["LOCK_SUFFIX", "LogInUseError", "LogTakenOverError", "LogWriter", "describe_owner"]

#: Suffix of the owner-record / session-lock file beside a labeller's log.
LOCK_SUFFIX = ".lock"
#: Seconds a writer waits for the append lock (held by another only for one append).
APPEND_LOCK_TIMEOUT_S = 10.0
#: Longest owner record read (bytes).
_MAX_RECORD = 4096
#: Byte locked on Windows (mandatory byte-range locks): far past any text, so reads never block.
_FAR = 0x7FFF0000
_BINARY = getattr(os, "O_BINARY", 0)

if os.name == "nt":  # pragma: no cover - exercised on Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _FAR, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _FAR, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class LogInUseError(RuntimeError):
    """Another live session writes this labeller's log (one line: its port, PID, host)."""

    def __init__(self, message: str, owner: dict[str, Any]) -> None:
        super().__init__(message)
        self.owner = owner


class LogTakenOverError(RuntimeError):
    """This session's log was taken over by another session; it no longer writes."""

    def __init__(self, message: str, owner: dict[str, Any]) -> None:
        super().__init__(message)
        self.owner = owner


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe_owner(owner: dict[str, Any]) -> str:
    """``"port 8123, PID 4242 on host lab-pc, since …"`` (what is known of it)."""
    if not owner:
        return "an unknown session (its owner record is empty or unreadable)"
    port = owner.get("port")
    parts = [f"port {port}" if port else "port not yet known",
             f"PID {owner.get('pid', '?')}"]
    if owner.get("host"):
        parts[-1] += f" on host {owner['host']}"
    if owner.get("started"):
        parts.append(f"since {owner['started']}")
    return ", ".join(parts)


def _lock_wait(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the vote log's append lock was not free within {timeout:g} s")
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


def _read_record(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while len(data) < _MAX_RECORD and (chunk := os.read(fd, _MAX_RECORD - len(data))):
        data += chunk
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.ftruncate(fd, len(data))
    os.fsync(fd)


class LogWriter:
    """The right to append to one log file ``path`` (see module doc); raises
    :class:`LogInUseError` when another live session holds it and ``take_over`` is false.

    Attributes:
        owner: this session's owner record.
        previous: the record found on start when it was not closed cleanly (the session
            before crashed, or was taken over), else ``None``.
        took_over: whether this writer took the log over from a live session.
    """

    def __init__(self, path: str | Path, *, take_over: bool = False, port: int | None = None) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_suffix(LOCK_SUFFIX)
        self._lock_fd: int | None = None
        self._log_fd: int | None = None
        self._session_locked = False
        self._closed = False
        self._guard = threading.Lock()
        self.took_over = False
        self.previous: dict[str, Any] | None = None
        self.owner: dict[str, Any] = {
            "pid": os.getpid(), "port": port, "host": socket.gethostname(), "started": _now(),
            "token": secrets.token_hex(16), "log": self.path.name, "closed": False}
        try:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | _BINARY, 0o644)
            self._session_locked = _try_lock(self._lock_fd)
            self._log_fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _BINARY, 0o644)
            if not self._session_locked:
                other = self._locked(lambda: _read_record(self._lock_fd))
                if not take_over:
                    raise LogInUseError(
                        f"{self.path} is being written by another labelling session "
                        f"({describe_owner(other)}): use that session's page, stop it, or "
                        "start this one with --take-over if it is hung or crashed", other)
                self.took_over = True
                self.previous = other
            with self._append_locked():
                found = _read_record(self._lock_fd)
                if not self.took_over and found and not found.get("closed", False):
                    self.previous = found  # it ended without closing: a crash or a kill
                _write_record(self._lock_fd, self.owner)
        except BaseException:
            self._closed = True
            self._release_fds()
            raise
        if not self._session_locked:  # take the session lock once the old session lets go
            threading.Thread(target=LogWriter._claim_session_lock, args=(weakref.ref(self),),
                             name="vote-log-claim", daemon=True).start()

    # ---- locks ---------------------------------------------------------------------
    @contextmanager
    def _append_locked(self) -> Iterator[None]:
        if self._log_fd is None:
            raise LogTakenOverError(f"{self.path}: this session's writer is closed", {})
        _lock_wait(self._log_fd, APPEND_LOCK_TIMEOUT_S)
        try:
            yield
        finally:
            _unlock(self._log_fd)

    def _locked(self, fn):  # noqa: ANN001, ANN202 - small helper
        with self._append_locked():
            return fn()

    @staticmethod
    def _claim_session_lock(ref: weakref.ref[LogWriter]) -> None:
        while True:
            writer = ref()
            if writer is None:
                return
            with writer._guard:
                if writer._closed or writer._lock_fd is None:
                    return
                if _try_lock(writer._lock_fd):
                    writer._session_locked = True
                    return
            del writer  # no strong reference while sleeping: an unused writer is collected
            time.sleep(0.5)

    # ---- writing -------------------------------------------------------------------
    @contextmanager
    def exclusive(self) -> Iterator[int]:
        """Hold the append lock and check this session still owns the log; yields the log's
        file descriptor (opened for appending). :class:`LogTakenOverError` if another
        session took the log over."""
        with self._append_locked():
            current = _read_record(self._lock_fd)
            if current.get("token") != self.owner["token"]:
                raise LogTakenOverError(
                    f"{self.path} was taken over by another labelling session "
                    f"({describe_owner(current)}); this session no longer writes it: "
                    "close this page and use the other session's", current)
            fd = self._log_fd
            if fd is None:  # pragma: no cover - _append_locked checked it
                raise LogTakenOverError(f"{self.path}: this session's writer is closed", current)
            yield fd

    @staticmethod
    def append(fd: int, data: bytes) -> None:
        """Append ``data`` (whole lines) in one write and fsync; on a short write or an error
        the file is cut back to where it was, so no partial line is ever left behind."""
        before = os.lseek(fd, 0, os.SEEK_END)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, before)
            except OSError:
                pass
            raise

    def announce(self, **fields: Any) -> None:
        """Add ``fields`` (e.g. the server's ``port`` and ``url``) to the owner record."""
        with self.exclusive():
            self.owner.update(fields)
            _write_record(self._lock_fd, self.owner)

    # ---- closing -------------------------------------------------------------------
    def close(self) -> None:
        """Mark the owner record closed (when it is still this session's) and release."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
        try:
            if self._log_fd is not None and self._lock_fd is not None:
                with self._append_locked():
                    current = _read_record(self._lock_fd)
                    if current.get("token") == self.owner["token"]:
                        _write_record(self._lock_fd, {**self.owner, "closed": True,
                                                      "stopped": _now()})
        except (OSError, TimeoutError, LogTakenOverError):
            pass
        finally:
            with self._guard:
                self._release_fds()

    def _release_fds(self) -> None:
        for fd in (self._log_fd, self._lock_fd):
            if fd is not None:
                try:
                    os.close(fd)  # closing releases this descriptor's locks
                except OSError:
                    pass
        self._log_fd = self._lock_fd = None
        self._session_locked = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
