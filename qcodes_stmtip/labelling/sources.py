"""Frames to label: every readable frame file under a folder, or the frames of QCoDeS runs.

Each frame gets a stable name (``Name`` in ``labels.csv``, also the file name
of its copy in ``images/``) that is the same for every labeller who opens the
same source, so their votes merge: the file's path relative to the folder with
``/`` as ``__`` and the suffix replaced by ``.npy`` (the original suffix is kept
when two files would collide), or ``<db>_run<id>_<k>.npy`` for the k-th frame
of a QCoDeS run. Files are read only when a frame is asked for; a run's
frames are read when the run is listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: A MATRIX session stamp in a file name, e.g. ``2014Dec15-145157`` (the H:Si(100) data's sessions).
_SESSION_STAMP = re.compile(r"(?<![0-9])(\d{4}[A-Z][a-z]{2}\d{2}-\d{6})(?![0-9])")

#: Parameter names (suffixes) recognised as frames in a QCoDeS dataset.
FRAME_PARAMETERS: tuple[str, ...] = ("scan_image", "last_frame")


@dataclass
class FrameRef:
    """One frame to label: its stable ``name``, ``session``, a ``source`` description and a loader.

    ``load()`` returns the (lines, pixels) float64 array, row 0 the bottom line,
    in the source's units (metres for Z; NaN for lines never acquired).
    """

    name: str
    session: str
    source: str
    loader: Callable[[], np.ndarray] = field(repr=False)
    info: dict[str, object] = field(default_factory=dict)

    def load(self) -> np.ndarray:
        """Read the frame (see class docstring)."""
        data = np.asarray(self.loader(), dtype=np.float64)
        if data.ndim != 2:
            raise ValueError(f"{self.source}: frame must be 2-D (lines, pixels), got {data.shape}")
        return data


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "frame"


def folder_frames(folder: str | Path, *, exclude: Sequence[str | Path] = (),
                  channel: str | None = None, direction: str = "forward") -> list[FrameRef]:
    """All frame files under ``folder`` (recursively, sorted, hidden entries skipped: the listing of
    :func:`qcodes_stmtip.io.sources.folder_files`), read with ``qcodes_stmtip.io.read_frame``.

    ``exclude`` lists folders to leave out (e.g. the labels output folder).
    ``session`` is the MATRIX session stamp in the file name when there is one
    (``…_2014Dec15-145157_…``, as in the H:Si(100) data), else the file's
    sub-folder relative to ``folder`` (the folder's own name for files at the top). Raises FileNotFoundError / ValueError when
    ``folder`` is missing or holds no frame file.
    """
    from qcodes_stmtip.io.frame import check_direction
    from qcodes_stmtip.io.sources import folder_files

    check_direction(direction)
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {root} does not exist or is not a directory")
    root = root.resolve()
    skip = [Path(p).resolve() for p in exclude]
    files = [p for p in folder_files(root, exclude=skip)  # the listing every command shares
             if not any(p.is_relative_to(s) for s in skip)]
    if not files:
        raise ValueError(f"folder {root} holds no frame file (.sxm, .gwy, *_mtrx, .dat, .sm4, "
                         ".png, .npy)")
    stems = [_safe("__".join(p.relative_to(root).with_suffix("").parts)) for p in files]
    taken: dict[str, int] = {}
    for s in stems:
        taken[s] = taken.get(s, 0) + 1
    refs = []
    for path, stem in zip(files, stems, strict=True):
        if taken[stem] > 1:
            stem = f"{stem}_{_safe(path.suffix.lstrip('.'))}"
        stamp = _SESSION_STAMP.search(path.name)
        rel_parent = path.parent.relative_to(root)
        if stamp:
            session = stamp.group(1)
        else:
            session = "__".join(rel_parent.parts) if rel_parent.parts else root.name
        refs.append(FrameRef(f"{stem}.npy", session, str(path),
                             _file_loader(path, channel, direction)))
    return refs


def _file_loader(path: Path, channel: str | None, direction: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from qcodes_stmtip.io.read import read_frame

        return read_frame(path, channel=channel, direction=direction).data

    return load


def _frames_of_parameter(data: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    """Split one parameter's ``get_parameter_data`` arrays into (lines, pixels) frames."""
    values = np.asarray(data[name], dtype=np.float64)
    if values.ndim == 3:
        return list(values)
    if values.ndim == 2:
        return [values]
    setpoints = [k for k in data if k != name]
    if values.ndim == 1 and len(setpoints) == 2:
        # Unrolled numeric storage: one row per pixel; rebuild the grid from the setpoints.
        ys = np.asarray(data[setpoints[0]], dtype=np.float64).ravel()
        xs = np.asarray(data[setpoints[1]], dtype=np.float64).ravel()
        uy, iy = np.unique(ys, return_inverse=True)
        ux, ix = np.unique(xs, return_inverse=True)
        if uy.size * ux.size == values.size:
            grid = np.full((uy.size, ux.size), np.nan)
            grid[iy, ix] = values
            return [grid]
    raise ValueError(f"parameter {name!r} does not hold 2-D frames (array shape {values.shape})")


def dataset_frames(db: str | Path, run_ids: Sequence[int], *,
                   parameter: str | None = None) -> list[FrameRef]:
    """The frames stored in QCoDeS runs ``run_ids`` of database ``db``.

    ``parameter``: the full name of the frame parameter; default: the one whose
    name ends in ``scan_image`` or ``last_frame``. ``session`` is the file-name-safe
    ``<experiment>:<sample>`` of the run. Side effect: opens the database (read
    only through ``load_by_run_spec``). Raises FileNotFoundError / ValueError
    naming the database and run.
    """
    db_path = Path(db)
    if not db_path.is_file():
        raise FileNotFoundError(f"QCoDeS database {db_path} does not exist")
    if not run_ids:
        raise ValueError("run_ids must name at least one run")
    from qcodes.dataset import load_by_run_spec
    from qcodes.dataset.sqlite.database import connect

    conn = connect(str(db_path))
    refs: list[FrameRef] = []
    try:
        for run_id in run_ids:
            try:
                ds = load_by_run_spec(captured_run_id=int(run_id), conn=conn)
            except (ValueError, NameError, RuntimeError) as exc:
                raise ValueError(f"{db_path}: cannot load run {run_id} ({exc})") from exc
            names = [p.name for p in ds.get_parameters() if p.depends_on]
            if parameter is not None:
                if parameter not in names:
                    raise ValueError(f"{db_path} run {run_id}: no parameter {parameter!r}; "
                                     f"dependent parameters: {names}")
                chosen = parameter
            else:
                found = [n for n in names if n.endswith(FRAME_PARAMETERS)]
                if len(found) != 1:
                    raise ValueError(
                        f"{db_path} run {run_id}: expected one frame parameter ending in "
                        f"{FRAME_PARAMETERS}, found {found} among {names}; pass parameter="
                    )
                chosen = found[0]
            frames = _frames_of_parameter(ds.get_parameter_data(chosen)[chosen], chosen)
            session = _safe(f"{ds.exp_name}:{ds.sample_name}")
            stem = _safe(db_path.stem)
            for k, frame in enumerate(frames):
                refs.append(FrameRef(
                    f"{stem}_run{int(run_id)}_{k}.npy", session,
                    f"{db_path}#run{int(run_id)}/{chosen}[{k}]",
                    (lambda f=frame: f),
                    {"run_id": int(run_id), "parameter": chosen},
                ))
    finally:
        conn.close()
    return refs
