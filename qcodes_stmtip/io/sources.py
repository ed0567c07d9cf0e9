"""Which files a command reads: explicit files, folders (recursive, by known extension) and globs.

Every command that reads frame files (``stmtip classify``, ``info``, ``label``) lists them
here, so a folder or a pattern means the same thing everywhere. Only names are looked at;
the files are opened later by :func:`~qcodes_stmtip.io.read.read_frame`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Characters that make a command-line argument a glob pattern.
_GLOB_CHARS = frozenset("*?[")


def is_frame_file(path: str | Path) -> bool:
    """True if ``path``'s name has a frame-file extension (``.sxm``, ``.gwy``, ``*_mtrx``, ``.dat``,
    ``.sm4``, ``.png``, ``.npy``); a MATRIX parameter file (``.mtrx``) is not a frame."""
    suffix = Path(path).suffix.lower()
    return suffix in (".sxm", ".gwy", ".dat", ".sm4", ".png", ".npy") or (
        suffix.endswith("_mtrx") and suffix != ".mtrx"
    )


def folder_files(folder: str | Path, exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Every frame file under ``folder``, recursively, sorted by path (hidden entries skipped).

    ``exclude``: folders to leave out (e.g. an output folder inside the input). Symbolic links
    to folders are not followed (no cycles). Raises FileNotFoundError when ``folder`` is not a
    directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {root} does not exist or is not a directory")
    skip = [os.path.abspath(p) for p in exclude]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = os.path.abspath(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.join(here, d) not in skip)
        found.extend(Path(dirpath) / f for f in filenames
                     if not f.startswith(".") and is_frame_file(f))
    return sorted(found)


def find_frame_files(sources: Iterable[str | Path], exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Expand command-line ``sources`` into frame files, in the order given, each once.

    A folder gives its frame files (:func:`folder_files`); an argument with ``*``, ``?`` or
    ``[`` that is not an existing path is a glob (``**`` recursive), its folders expanded and its
    other matches kept when they have a frame-file extension; anything else is kept as given,
    even when missing or of an unknown type, so that reading it reports the problem for that
    file alone. Raises ValueError naming the argument when a folder holds no frame file or a
    pattern matches none.
    """
    out: dict[str, Path] = {}

    def add(paths: Iterable[Path]) -> None:
        for p in paths:
            out.setdefault(os.path.abspath(p), p)

    for source in sources:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            files = folder_files(path, exclude)
            if not files:
                raise ValueError(f"folder {path} holds no frame file (.sxm, .gwy, *_mtrx, .dat, "
                                 ".sm4, .png, .npy)")
            add(files)
        elif not path.exists() and _GLOB_CHARS & set(text):
            files = []
            for match in sorted(glob.glob(text, recursive=True)):
                m = Path(match)
                if m.is_dir():
                    files.extend(folder_files(m, exclude))
                elif is_frame_file(m):
                    files.append(m)
            if not files:
                raise ValueError(f"pattern {text!r} matches no frame file")
            add(files)
        else:
            add([path])
    return list(out.values())
