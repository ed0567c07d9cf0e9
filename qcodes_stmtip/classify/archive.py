"""Classify an archive of frame files: one row per file, written as chunks complete, resumable,
in one process or on a Dask cluster.

The unit of work is a *chunk* of file paths (:func:`classify_chunk`): each file is read with
:func:`qcodes_stmtip.io.read_frame` (the reading path of ``stmtip info`` and ``label``),
checked, preprocessed and classified; a file that cannot be classified becomes a row with a
``reason`` (:data:`REASONS`) and a one-line ``detail``, and the chunk goes on. The same
function runs in this process or on Dask workers (``workers=`` / ``scheduler=``), where the
files are read; the model bundle is loaded once per process and its id (the SHA-256 of its
manifest, which lists every model file's SHA-256, checked on load) is checked there.

Output (:func:`open_sink`): ``.csv`` rows appended and fsynced per chunk; ``.parquet`` a folder
of part files (one per chunk, each written under a temporary name and renamed), readable as one
table by pandas, pyarrow or Dask. ``resume=True`` reads the output first and skips every file
already in it, so a run killed at any moment and resumed has each file exactly once. Each row
records the bundle id and the reader's version.

Dask, distributed and pyarrow are imported only when a cluster or Parquet is used (the
``archive`` extra).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from qcodes_stmtip.taxonomy import UNCERTAIN, UNCLASSIFIED

#: Why a file has no classification, the ``reason`` column (empty for classified files).
REASONS: tuple[str, ...] = ("unreadable", "no such channel", "constant channel", "too few lines")
#: Files per chunk by default: ~1 s of work at ~15 ms a frame, a few MB of images in memory.
DEFAULT_CHUNK_SIZE = 64
#: The Parquet output's part files (inside the ``.parquet`` folder).
PART_PREFIX = "part-"


class ArchiveError(ValueError):
    """The run cannot start or go on (output mismatch, a chunk lost on the cluster…)."""


@dataclass(frozen=True)
class ArchiveJob:
    """What every chunk needs: the bundle (path on every worker and its id), reading options.

    ``lines``: classify the first N acquired lines with the bundle's partial-frame model
    (``None``: the whole frame). ``classes``/``tip_change``: the bundle's outputs (columns).
    """

    bundle: str
    bundle_id: str
    classes: tuple[str, ...]
    tip_change: bool
    channel: str | None = None
    direction: str = "forward"
    lines: int | None = None
    surface: str | None = None

    def bundle_path(self) -> str:
        """Where this process finds the bundle: the shipped default of ``surface`` (each worker's
        own install), else ``bundle`` (a path every worker must see)."""
        if self.surface is not None:
            from qcodes_stmtip.classify.bundle import default_bundle_path

            return str(default_bundle_path(self.surface))
        return self.bundle

    @property
    def fields(self) -> list[str]:
        """The output columns, in order."""
        return ["file", *self.classes, *(["tip_change"] if self.tip_change else []), "decision",
                "good_bad", "reason", "detail", "channel", "reader", "bundle"]


def bundle_id(path: str | Path) -> str:
    """``<folder name>-<first 16 hex of the manifest's SHA-256>``: the bundle's content id (the
    manifest lists the SHA-256 of every model file, which :func:`load_bundle` checks)."""
    from qcodes_stmtip.classify.bundle import MANIFEST

    root = Path(path)
    digest = hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()
    return f"{root.resolve().name}-{digest[:16]}"


def make_job(model: str | Path | None = None, surface: str | None = None, *, channel: str | None = None,
             direction: str = "forward", lines: int | None = None) -> ArchiveJob:
    """The job for bundle ``model`` (else ``surface``'s shipped default): reads its manifest only."""
    from qcodes_stmtip.classify.bundle import default_bundle_path, read_manifest
    from qcodes_stmtip.io.frame import check_direction

    check_direction(direction)
    if lines is not None and lines < 8:
        raise ValueError(f"--lines {lines}: a partial frame needs at least 8 lines")
    if (model is None) == (surface is None):
        raise ValueError("give exactly one of model= (a bundle folder) and surface=")
    path = Path(model) if model is not None else default_bundle_path(surface)
    if not path.is_dir():
        raise FileNotFoundError(f"--model {path}: model bundle directory not found")
    manifest = read_manifest(path)
    section = manifest
    if lines is not None and manifest.get("partial"):
        section = manifest["partial"]
    return ArchiveJob(str(path.resolve()), bundle_id(path), tuple(section.get("classes") or manifest["classes"]),
                      bool(section.get("tip_change")), channel, direction, lines,
                      surface if model is None else None)


# --- one chunk (runs in this process or on a worker) -------------------------------------------

_MODELS: dict[tuple[str, str, int | None], Any] = {}
_MODELS_LOCK = threading.Lock()
#: Most bundles one process keeps loaded.
_MAX_MODELS = 4


def _model(job: ArchiveJob):
    """The job's ensemble (or partial model), loaded once per process (whatever ``--lines``); the
    bundle id is checked here, in the process that loads it."""
    path = job.bundle_path()
    key = (path, job.bundle_id, job.lines is not None)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from qcodes_stmtip.classify.bundle import BundleError, load_bundle

            found = bundle_id(path)
            if found != job.bundle_id:
                raise BundleError(f"{path}: this process finds bundle {found}, the run uses "
                                  f"{job.bundle_id} (a different bundle at the same path)")
            model = load_bundle(path)
            if job.lines is not None:
                from qcodes_stmtip.classify.partial import load_partial

                model = load_partial(path, ensemble=model)
            while len(_MODELS) >= _MAX_MODELS:  # bounded: the oldest bundle goes first
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[key] = model
    return model


@cache
def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


#: Third-party packages a reader parses with (their version goes in the ``reader`` column).
_READER_PACKAGES = {"matrix": "access2thematrix", "rhk-sm4": "spym"}


def reader_version(fmt: str | None) -> str:
    """``<format> qcodes-stmtip <version>[ <parser package> <version>]`` (format ``?`` when unread)."""
    text = f"{fmt or '?'} qcodes-stmtip {_version('qcodes-stmtip')}"
    package = _READER_PACKAGES.get(fmt or "")
    return f"{text} {package} {_version(package)}" if package else text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] if text else type(exc).__name__


def _read(path: str, job: ArchiveJob, size: int, partial) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Read and prepare one file: ``(image, row)``, image ``None`` with ``reason`` set on failure."""
    from qcodes_stmtip import io as stm_io
    from qcodes_stmtip.classify.preprocess import FrameTooShortError, preprocess_frame
    from qcodes_stmtip.extras import MissingExtraError
    from qcodes_stmtip.io.frame import FrameReadError, NoSuchChannelError

    row: dict[str, Any] = {"file": path, "reason": "", "detail": "", "channel": "",
                           "reader": reader_version(None), "bundle": job.bundle_id}
    try:
        frame = stm_io.read_frame(path, channel=job.channel, direction=job.direction)
    except NoSuchChannelError as exc:
        return None, {**row, "reason": "no such channel", "detail": exc.problem}
    except FrameReadError as exc:
        return None, {**row, "reason": "unreadable", "detail": exc.problem}
    except (MissingExtraError, OSError) as exc:  # install missing / file vanished since listing
        return None, {**row, "reason": "unreadable", "detail": _one_line(exc)}
    row.update(channel=f"{frame.channel} {frame.direction}",
               reader=reader_version(frame.metadata.get("format")))
    finite = frame.data[np.isfinite(frame.data)]
    if finite.size and float(finite.max()) == float(finite.min()):
        return None, {**row, "reason": "constant channel",
                      "detail": f"every value of {frame.channel} {frame.direction} is "
                                f"{float(finite[0]):g} {frame.unit}".rstrip()}
    try:
        if partial is not None:
            image = partial.view(frame, job.lines)[..., 0]
        else:
            image = preprocess_frame(frame.data, size)
    except FrameTooShortError as exc:
        return None, {**row, "reason": "too few lines", "detail": _one_line(exc)}
    except (ValueError, ArithmeticError, MemoryError) as exc:  # nothing past one file stops the run
        return None, {**row, "reason": "unreadable", "detail": f"{type(exc).__name__}: {_one_line(exc)}"}
    return image, row


def classify_chunk(paths: Sequence[str], job: ArchiveJob) -> list[dict[str, Any]]:
    """Read, check and classify ``paths``; one row per path, in order (see :attr:`ArchiveJob.fields`).

    Probabilities are floats (``None`` for a file with a ``reason``). Side effect: loads the
    bundle into this process's cache on first use. Raises only for the bundle (missing, id
    mismatch, corrupt), never for a file.
    """
    model = _model(job)
    partial = model if job.lines is not None else None
    ensemble = partial.ensemble if partial is not None else model
    size = int(ensemble.manifest["preprocessing"]["image_size"]) if partial is None else 0
    rows, images, where = [], [], []
    for path in paths:
        image, row = _read(str(path), job, size, partial)
        if image is not None:
            where.append(len(rows))
            images.append(image)
        for c in job.classes:
            row[c] = None
        if job.tip_change:
            row["tip_change"] = None
        row["decision"] = row["good_bad"] = UNCLASSIFIED
        rows.append(row)
    if images:
        pred = ensemble.predict(np.stack(images)[..., None])
        verdict = ensemble.good_bad(pred)  # the ensemble's own good/bad rule
        for i, r in enumerate(where):
            row = rows[r]
            row.update({c: float(pred.mean[i, k]) for k, c in enumerate(job.classes)})
            if job.tip_change:
                tc = pred.tip_change_probability
                row["tip_change"] = None if tc is None else float(tc[i])
            d = int(pred.decision[i])
            row["decision"] = ensemble.classes[d] if d >= 0 else UNCERTAIN
            row["good_bad"] = str(verdict[i])
    return rows


# --- output -------------------------------------------------------------------------------------

class _Sink:
    """Where rows go; ``done`` holds the files already there (absolute paths) and their counts."""

    def __init__(self, path: Path, fields: list[str], job: ArchiveJob) -> None:
        self.path, self.fields, self.job = path, fields, job
        self.done: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.rows_before = 0

    def _seen(self, row: dict[str, Any], where: str) -> None:
        if row.get("bundle") and row["bundle"] != self.job.bundle_id:
            raise ArchiveError(f"{where}: rows were written with bundle {row['bundle']}, this run uses "
                               f"{self.job.bundle_id}; write to a new output")
        self.done.add(os.path.abspath(row["file"]))
        self.count(row)
        self.rows_before += 1

    def count(self, row: dict[str, Any]) -> None:
        self.counts[str(row["good_bad"])] += 1
        if row.get("reason"):
            self.reasons[str(row["reason"])] += 1

    def write(self, rows: list[dict[str, Any]]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


class CsvSink(_Sink):
    """Rows appended to a CSV file, flushed and fsynced after every chunk."""

    def open(self, resume: bool) -> None:
        """Create the file (with its header), or read it for ``resume``; cuts a torn last line."""
        if resume and self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb+") as fh:  # a kill mid-write leaves a line without "\n"
                data_end = fh.seek(0, os.SEEK_END)
                tail = b""
                pos = data_end
                while pos > 0 and b"\n" not in tail:
                    step = min(65536, pos)
                    pos -= step
                    fh.seek(pos)
                    tail = fh.read(step) + tail
                keep = pos + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
                if keep < data_end:
                    fh.truncate(keep)
            if keep == 0:
                self._create()
                return
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames != self.fields:
                    raise ArchiveError(f"{self.path}: its columns {reader.fieldnames} are not this run's "
                                       f"{self.fields}; write to a new output")
                for k, row in enumerate(reader, start=2):
                    self._seen(row, f"{self.path}:{k}")
        else:
            self._create()

    def _create(self) -> None:
        with open(self.path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(self.fields)
            fh.flush()
            os.fsync(fh.fileno())

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` and fsync (a chunk is on disk when this returns)."""
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerows([[_format(r.get(f)) for f in self.fields] for r in rows])
            fh.flush()
            os.fsync(fh.fileno())
        for r in rows:
            self.count(r)


class ParquetSink(_Sink):
    """A folder of Parquet part files, one per chunk, each renamed into place once complete."""

    def _schema(self):
        import pyarrow as pa

        floats = set(self.job.classes) | {"tip_change"}
        return pa.schema([(f, pa.float64() if f in floats else pa.string()) for f in self.fields])

    def open(self, resume: bool) -> None:
        """Create the folder, or read its parts for ``resume`` (temporary leftovers removed)."""
        from qcodes_stmtip.extras import require

        pq = self._pq = require("pyarrow.parquet", "archive", "Parquet output")
        if self.path.exists() and not self.path.is_dir():
            raise ArchiveError(f"{self.path}: exists and is not a folder of Parquet parts")
        self.path.mkdir(parents=True, exist_ok=True)
        for leftover in self.path.glob(f".{PART_PREFIX}*.tmp"):
            leftover.unlink()  # a part being written when a run was killed: its files are redone
        if not resume:
            return
        for part in sorted(self.path.glob(f"{PART_PREFIX}*.parquet")):
            table = pq.read_table(part, columns=["file", "good_bad", "reason", "bundle"])
            if set(pq.read_schema(part).names) != set(self.fields):
                raise ArchiveError(f"{part}: its columns are not this run's {self.fields}; write to a "
                                   "new output")
            for row in table.to_pylist():
                self._seen(row, str(part))

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as one part file (temporary name, fsync, rename)."""
        import pyarrow as pa

        table = pa.Table.from_pylist([{f: r.get(f) for f in self.fields} for r in rows], schema=self._schema())
        name = f"{PART_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = self.path / f".{name}.tmp"
        self._pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / name)
        for r in rows:
            self.count(r)


class MemorySink(_Sink):
    """Rows kept in memory (the Python API without an output file)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rows: list[dict[str, Any]] = []

    def open(self, resume: bool) -> None:
        """Nothing to open."""

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Keep ``rows``."""
        self.rows.extend(rows)
        for r in rows:
            self.count(r)


def check_output(output: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """``output`` as a Path once its extension and folder are right and it may be written:
    an existing output needs ``resume`` or ``overwrite`` (nothing is changed here)."""
    path = Path(output)
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"--output {path}: extension must be .csv or .parquet")
    if path.exists() and not (resume or overwrite):
        raise ArchiveError(f"--output {path} exists: pass --resume to continue it or --overwrite to "
                           "replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--output {path}: folder {path.parent} does not exist")
    return path


def open_sink(output: str | Path | None, job: ArchiveJob, *, resume: bool = False,
              overwrite: bool = False) -> _Sink:
    """The sink for ``output`` by extension (``.csv``, ``.parquet``; ``None``: memory), opened.

    An existing output is refused unless ``resume`` (continue it) or ``overwrite`` (start anew).
    """
    if output is None:
        sink: _Sink = MemorySink(Path(), job.fields, job)
        sink.open(False)
        return sink
    path = check_output(output, resume=resume, overwrite=overwrite)
    suffix = path.suffix.lower()
    if path.exists() and not resume:
        if path.is_dir():
            for part in path.glob(f"{PART_PREFIX}*.parquet"):
                part.unlink()
        else:
            path.unlink()
    sink = (CsvSink if suffix == ".csv" else ParquetSink)(path, job.fields, job)
    sink.open(resume)
    return sink


def read_output(output: str | Path, job: ArchiveJob | None = None):
    """The rows of a CSV or Parquet output as a pandas DataFrame (probabilities float64)."""
    import pandas as pd

    path = Path(output)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    floats = {c: "float64" for c in (job.classes if job else ())}
    if job is not None and job.tip_change:
        floats["tip_change"] = "float64"
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    dtypes = {c: floats.get(c, "string") for c in header} if job is not None else {
        c: "string" for c in ("file", "decision", "good_bad", "reason", "detail", "channel", "reader", "bundle")}
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False,
                       na_values={c: [""] for c in floats})


# --- engines --------------------------------------------------------------------------------------

def _chunks(paths: Sequence[str], size: int) -> Iterator[list[str]]:
    it = iter(paths)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass
class Cluster:
    """A Dask client for the run, and whether this run started it (and must close it)."""

    client: Any
    owned: list[Any] = field(default_factory=list)

    @property
    def dashboard(self) -> str | None:
        """The dashboard's address, when the scheduler serves one."""
        try:
            services = self.client.scheduler_info().get("services", {})
        except Exception:  # noqa: BLE001 - a link is a nicety
            return None
        return self.client.dashboard_link if "dashboard" in services else None

    def close(self) -> None:
        """Close what this run started (never the user's own cluster)."""
        for thing in reversed(self.owned):
            with contextlib.suppress(Exception):
                thing.close()


def connect(workers: int | None = None, scheduler: str | None = None, *,
            processes: bool = True, threads_per_worker: int = 1) -> Cluster:
    """A Dask client: a local cluster of ``workers`` processes (``processes=False``: threads in
    this process), or the scheduler at ``scheduler`` (an address or a scheduler file)."""
    from qcodes_stmtip.extras import require

    distributed = require("distributed", "archive", "--workers/--scheduler (a Dask cluster)")
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    if scheduler is not None:
        if workers is not None:
            raise ValueError("give --workers (a local cluster) or --scheduler (an existing one), not both")
        if "://" not in scheduler and not Path(scheduler).is_file() and (
                os.sep in scheduler or scheduler.endswith(".json")):
            raise FileNotFoundError(f"--scheduler {scheduler}: no such scheduler file")
        try:
            if Path(scheduler).is_file():
                client = Client(scheduler_file=scheduler, timeout="30s")
            else:
                client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise ConnectionError(f"--scheduler {scheduler}: no Dask scheduler answers ({_one_line(exc)})") from exc
        return Cluster(client, [client])
    if workers is None or workers < 1:
        raise ValueError(f"--workers {workers}: at least 1")
    import logging

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    return Cluster(client, [cluster, client])


def _run_local(chunks: Iterable[list[str]], job: ArchiveJob, done: Callable[[list[dict]], None]) -> None:
    for chunk in chunks:
        done(classify_chunk(chunk, job))


def _run_dask(client: Any, chunks: Iterable[list[str]], job: ArchiveJob,
              done: Callable[[list[dict]], None], in_flight: int | None = None) -> None:
    """Submit chunks with at most ``in_flight`` running or queued (default: 2 per worker thread),
    handing each chunk's rows to ``done`` as it completes."""
    from distributed import as_completed

    if in_flight is None:
        in_flight = max(2, 2 * sum(client.nthreads().values()))
    it = iter(chunks)

    def submit(chunk: list[str]):
        return client.submit(classify_chunk, chunk, job, pure=False)

    pending = as_completed([submit(c) for c in islice(it, in_flight)])
    for future in pending:
        try:
            rows = future.result()
        except Exception as exc:
            raise ArchiveError(f"a chunk failed on the cluster ({type(exc).__name__}: {_one_line(exc)}); the "
                               "rows written so far are kept, rerun with --resume") from exc
        future.release()
        done(rows)
        nxt = next(it, None)
        if nxt is not None:
            pending.add(submit(nxt))


@dataclass
class ArchiveResult:
    """What a run did: rows in the output (``total``), rows it added (``new``), counts per
    verdict and per failure reason over the whole output, the rows as a DataFrame."""

    total: int
    new: int
    skipped: int
    verdicts: dict[str, int]
    reasons: dict[str, int]
    seconds: float
    frame: Any = None

    def summary(self) -> str:
        """Two lines: the counts per verdict and per failure reason."""
        order = ["good", "bad", UNCERTAIN, UNCLASSIFIED]
        verdicts = ", ".join(f"{k} {self.verdicts[k]}" for k in [*order, *sorted(set(self.verdicts) - set(order))]
                             if self.verdicts.get(k))
        reasons = ", ".join(f"{k} {self.reasons[k]}" for k in REASONS if self.reasons.get(k)) or "none"
        rate = self.new / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.total} rows ({self.new} new at {rate:.1f} files/s, {self.skipped} already done): "
                f"{verdicts or 'none'}\nnot classified: {reasons}")


def classify_files(sources: Iterable[str | Path], output: str | Path | None = None, *,
                   model: str | Path | None = None, surface: str | None = None,
                   channel: str | None = None, direction: str = "forward", lines: int | None = None,
                   workers: int | None = None, scheduler: str | None = None, client: Any = None,
                   processes: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE, resume: bool = False,
                   overwrite: bool = False, progress: bool = False, as_frame: bool = True,
                   log: Callable[[str], None] | None = None) -> ArchiveResult:
    """Classify every frame file of ``sources`` (files, folders, globs) with a bundle.

    Engine: this process by default; ``workers=N`` a local Dask cluster (``processes=False``:
    worker threads in this process); ``scheduler=`` an existing cluster's address or scheduler
    file; ``client=`` a Dask client of the caller's. Rows go to ``output`` (``.csv``/``.parquet``)
    as chunks of ``chunk_size`` files complete; ``resume`` skips files already there. Returns an
    :class:`ArchiveResult` whose ``frame`` (``as_frame``) is a pandas DataFrame of every row of
    the output, in the order of ``sources``. ``log``: where the dashboard link goes (stderr).
    """
    from tqdm.auto import tqdm

    from qcodes_stmtip.io.sources import find_frame_files

    if chunk_size < 1:
        raise ValueError(f"--chunk-size {chunk_size}: at least 1")
    job = make_job(model, surface, channel=channel, direction=direction, lines=lines)
    files = [str(p) for p in find_frame_files(sources, exclude=[output] if output else ())]
    if not files:
        raise ValueError("no frame file given")
    if output is not None:
        check_output(output, resume=resume, overwrite=overwrite)  # before a cluster starts
    log = log or (lambda text: print(text, file=sys.stderr))
    cluster = None
    if client is not None:
        cluster = Cluster(client)
    elif workers is not None or scheduler is not None:
        cluster = connect(workers, scheduler, processes=processes)
    start = time.perf_counter()
    new = 0
    try:
        sink = open_sink(output, job, resume=resume, overwrite=overwrite)  # once the cluster answers
        todo = [f for f in files if os.path.abspath(f) not in sink.done]
        if cluster is not None and cluster.dashboard and progress:
            log(f"dask dashboard: {cluster.dashboard}")
        with tqdm(total=len(todo), unit="file", desc="classify", disable=not progress, dynamic_ncols=True,
                  file=sys.stderr) as bar:
            def done(rows: list[dict[str, Any]]) -> None:
                nonlocal new
                sink.write(rows)
                new += len(rows)
                bar.update(len(rows))

            chunks = _chunks(todo, chunk_size)
            if cluster is None:
                _run_local(chunks, job, done)
            else:
                _run_dask(cluster.client, chunks, job, done)
    finally:
        if cluster is not None:
            cluster.close()
    result = ArchiveResult(sink.rows_before + new, new, len(files) - len(todo), dict(sink.counts),
                           dict(sink.reasons), time.perf_counter() - start)
    if as_frame:
        import pandas as pd

        if output is None:
            frame = pd.DataFrame(sink.rows, columns=job.fields)
            for c in [*job.classes, *(["tip_change"] if job.tip_change else [])]:
                frame[c] = frame[c].astype("float64")
        else:
            frame = read_output(output, job)
        rank = {os.path.abspath(f): i for i, f in enumerate(files)}
        key = frame["file"].map(lambda f: rank.get(os.path.abspath(f), len(rank)))
        result.frame = frame.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)
    return result
