"""TensorFlow's start-up log lines: off by default, on with ``stmtip --verbose``.

TensorFlow writes its start-up notices (the absl "All log messages before
absl::InitializeLog()" warning, the oneDNN notice, the CPU-feature notice) from C++
straight to file descriptor 2, some of them while it is imported and before its own
``TF_CPP_MIN_LOG_LEVEL`` check is in force on every build. Python's ``logging`` cannot
reach them. So the project quiets TensorFlow in two ways, both keyed on the one knob
TensorFlow documents, ``TF_CPP_MIN_LOG_LEVEL``:

* :func:`configure` sets ``TF_CPP_MIN_LOG_LEVEL`` (3 when quiet, 0 when verbose) unless
  the user set it, and the ``tensorflow``/``absl`` Python loggers to ERROR;
* :func:`import_quietly` imports a module with descriptor 2 captured, and writes back
  every captured line except TensorFlow's INFO/WARNING lines and the absl pre-init
  notice, when the level is 2 or more. Errors (``E…``/``F…`` lines) and anything else
  pass through unchanged, so nothing a user needs is lost.

Everything in the project that imports TensorFlow goes through
:func:`import_quietly` (via :mod:`qcodes_stmtip.classify.keras_backend`).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import tempfile
import threading
from types import ModuleType

#: The environment variable TensorFlow reads for its C++ log level (0 all … 3 errors only).
LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"

#: Lines TensorFlow/absl print at start-up below ERROR: absl's ``I…``/``W…`` prefix
#: (``I0000 00:00:1796… 3028 port.cc:153] …``), the pre-init notice, and the
#: continuation line of the CPU-feature notice.
_CHATTER = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow)"
)

_lock = threading.Lock()


def configure(verbose: bool = False) -> None:
    """Choose TensorFlow's log level before it is imported (only if the user has not).

    Side effects: sets ``TF_CPP_MIN_LOG_LEVEL`` in the process environment if unset, and
    the ``tensorflow``, ``absl`` and ``h5py`` Python loggers to ERROR unless ``verbose``.
    """
    os.environ.setdefault(LEVEL_VARIABLE, "0" if verbose else "3")
    if not verbose:
        for name in ("tensorflow", "absl", "h5py"):
            logging.getLogger(name).setLevel(logging.ERROR)


def quiet() -> bool:
    """Whether TensorFlow's INFO/WARNING lines are to be dropped (level 2 or more)."""
    try:
        return int(os.environ.get(LEVEL_VARIABLE, "3")) >= 2
    except ValueError:
        return True


def drop_chatter(captured: bytes) -> bytes:
    """``captured`` without TensorFlow's start-up INFO/WARNING lines (bytes in, bytes out)."""
    kept = [line for line in captured.splitlines(keepends=True) if not _CHATTER.match(line)]
    return b"".join(kept)


def import_quietly(name: str) -> ModuleType:
    """Import module ``name`` with TensorFlow's start-up lines filtered from stderr.

    Calls :func:`configure` first. A module already imported is returned at once. While
    the import runs, file descriptor 2 points at a temporary file; afterwards every
    captured line that is not start-up chatter is written back to stderr (so an error
    from the import is still seen). With ``TF_CPP_MIN_LOG_LEVEL`` below 2 nothing is
    filtered.
    """
    configure()
    loaded = sys.modules.get(name)
    if loaded is not None:  # (None there means "blocked": import_module raises ImportError)
        return loaded
    if not quiet():
        return importlib.import_module(name)
    with _lock:
        loaded = sys.modules.get(name)
        if loaded is not None:
            return loaded
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 (a detached service): nothing to filter
            return importlib.import_module(name)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                return importlib.import_module(name)
            finally:
                try:
                    sys.stderr.flush()
                except (AttributeError, ValueError, OSError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                for line in capture:  # line by line: bounded memory whatever was printed
                    if not _CHATTER.match(line):
                        _write_all(2, line)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to descriptor ``fd`` (``os.write`` may write part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
