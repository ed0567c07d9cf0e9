"""``stmtip classify`` on an archive: every format's bad files become rows with a reason, rows are
durable and resumable (also after SIGKILL), and a Dask cluster gives the single-process rows."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcodes_stmtip.classify.archive import (
    ArchiveError,
    bundle_id,
    classify_chunk,
    classify_files,
    make_job,
    read_output,
)
from qcodes_stmtip.classify.bundle import default_bundle_path
from qcodes_stmtip.cli import main

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
READERS = REPO / ".." / "shared" / "data" / "readers"
CLASSES = ("dimers_asymmetries", "individual_atoms", "rows", "generic_defect")


def _writer(module: str, name: str):
    """A file writer of the reader tests (tests/io/<module>.py)."""
    spec = importlib.util.spec_from_file_location(f"_archive_{module}", TESTS / "io" / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def _surface(rng: np.random.Generator, n: int = 48) -> np.ndarray:
    return rng.normal(size=(n, n)).cumsum(axis=1) * 1e-11


def _bad_copies(folder: Path, stem: str, ext: str, good: bytes) -> dict[str, str]:
    """Empty, garbage and truncated files of one format; name -> expected reason."""
    (folder / f"{stem}_empty{ext}").write_bytes(b"")
    (folder / f"{stem}_garbage{ext}").write_bytes(bytes(range(256)) * 3)
    out = {f"{stem}_empty{ext}": "unreadable", f"{stem}_garbage{ext}": "unreadable"}
    if good:
        (folder / f"{stem}_trunc{ext}").write_bytes(good[: len(good) * 2 // 3])
        out[f"{stem}_trunc{ext}"] = "unreadable"
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder (with a sub-folder) of good and bad files of every supported format, and each
    file's expected reason ("" for a good file)."""
    root = tmp_path_factory.mktemp("mixed")
    sub = root / "sub"
    sub.mkdir()
    rng = np.random.default_rng(7)
    want: dict[str, str] = {}
    for i in range(3):
        np.save(root / f"good{i}.npy", _surface(rng))
        want[f"good{i}.npy"] = ""
    Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)).save(sub / "good.png")
    want["sub/good.png"] = ""
    write_sxm = _writer("test_nanonis_sxm", "write_sxm")
    z, cur = _surface(rng, 32), _surface(rng, 32) * 1e-2
    write_sxm(sub / "good.sxm", {"Z": ("both", [z, z[:, ::-1]]), "Current": ("both", [cur, cur[:, ::-1]])},
              pixels=32, lines=32)
    want["sub/good.sxm"] = ""
    write_gwy = _writer("test_gwyddion", "write_gwy")
    write_gwy(sub / "good.gwy", {"Z (Forward)": _surface(rng, 32)})
    want["sub/good.gwy"] = ""
    write_createc = _writer("test_createc", "write_createc")
    write_createc(sub / "good_createc.dat", [_surface(rng, 32) * 1e10, _surface(rng, 32) * 1e10])
    want["sub/good_createc.dat"] = ""
    spiepy = _surface(rng, 32)
    (sub / "good_spiepy.dat").write_bytes(np.array(spiepy.shape, "<u4").tobytes() + spiepy.astype("<f8").tobytes())
    want["sub/good_spiepy.dat"] = ""
    for ext, stem in ((".npy", "bad"), (".png", "sub/bad"), (".sxm", "sub/bad"), (".gwy", "sub/bad"),
                      (".dat", "sub/bad_createc"), (".sm4", "sub/bad"), (".Z_mtrx", "sub/bad--1_1")):
        source = {".npy": root / "good0.npy", ".png": sub / "good.png", ".sxm": sub / "good.sxm",
                  ".gwy": sub / "good.gwy", ".dat": sub / "good_createc.dat"}.get(ext)
        good = source.read_bytes() if source is not None else b""
        for name, reason in _bad_copies(root, stem, ext, good).items():
            want[name] = reason
    # a Createc file whose compressed body stops early
    raw = (sub / "good_createc.dat").read_bytes()
    (sub / "cut_body_createc.dat").write_bytes(raw[:16384] + zlib.compress(b"\0" * 40)[:20])
    want["sub/cut_body_createc.dat"] = "unreadable"
    np.save(root / "constant.npy", np.full((40, 40), 3.0))
    want["constant.npy"] = "constant channel"
    Image.fromarray(np.full((40, 40), 9, np.uint8)).save(sub / "constant.png")
    want["sub/constant.png"] = "constant channel"
    flat = np.full((32, 32), 2e-9)
    write_sxm(sub / "constant.sxm", {"Z": ("both", [flat, flat])}, pixels=32, lines=32)
    want["sub/constant.sxm"] = "constant channel"
    np.save(root / "short.npy", _surface(rng)[:5])
    want["short.npy"] = "too few lines"
    (root / "notes.txt").write_text("not a frame file: ignored by the folder listing")
    sm4 = READERS / "sm4" / "hopg_300k_2020_08_11_16_04_06_999.sm4"
    if sm4.is_file():  # a real RHK file (read when the io extra is installed)
        shutil.copy(sm4, sub / "real.sm4")
        want["sub/real.sm4"] = None  # good with spym, "unreadable" naming the extra without it
    return root, want


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def test_mixed_folder_one_row_per_file_with_reasons(mixed, tmp_path, capsys):
    root, want = mixed
    out = tmp_path / "rows.csv"
    assert main(["classify", "--surface", "hsi100", "--output", str(out), "--quiet", str(root)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    rows = _rows(out)
    assert sorted(rows) == sorted(str(root / name) for name in want)  # notes.txt is not a frame file
    bid = bundle_id(default_bundle_path("hsi100"))
    for name, reason in want.items():
        r = rows[str(root / name)]
        assert r["bundle"] == bid and "qcodes-stmtip" in r["reader"], r
        if reason is None:
            reason = r["reason"]
            assert reason in ("", "unreadable")
        assert r["reason"] == reason, (name, r["reason"], r["detail"])
        if reason:
            assert r["detail"] and "\n" not in r["detail"] and r["good_bad"] == "unclassified"
            assert all(r[c] == "" for c in CLASSES)
        else:
            assert sum(float(r[c]) for c in CLASSES) == pytest.approx(1.0, abs=1e-6)
            assert r["good_bad"] in ("good", "bad", "uncertain") and r["detail"] == ""
    assert rows[str(root / "sub" / "good.sxm")]["reader"].startswith("nanonis-sxm qcodes-stmtip")
    assert "every value of Z forward is 2e-09 m" in rows[str(root / "sub" / "constant.sxm")]["detail"]
    summary = captured.out
    assert "constant channel 3" in summary and "too few lines 1" in summary and "unreadable" in summary
    # an existing output is never replaced silently
    assert main(["classify", "--surface", "hsi100", "--output", str(out), str(root)]) == 1
    assert "pass --resume" in capsys.readouterr().err


def test_channel_option_as_in_info(mixed, tmp_path):
    root, _ = mixed
    files = [root / "sub" / "good.sxm", root / "good0.npy", root / "sub" / "good.png"]
    result = classify_files(files, surface="hsi100", channel="Current")
    rows = result.frame.set_index("file")
    assert rows.loc[str(files[0]), "reason"] == "" and rows.loc[str(files[0]), "channel"] == "Current forward"
    assert rows.loc[str(files[1]), "reason"] == "no such channel"
    assert "available: array" in rows.loc[str(files[1]), "detail"]
    back = classify_files(files[:1], surface="hsi100", direction="backward").frame
    assert back.loc[0, "channel"] == "Z backward"
    assert result.verdicts.get("unclassified") == 2 and result.reasons == {"no such channel": 2}


def _same(a, b) -> None:
    """Two runs' rows: the same files once each, equal strings, probabilities within 1e-6."""
    a, b = a.sort_values("file").reset_index(drop=True), b.sort_values("file").reset_index(drop=True)
    assert a["file"].is_unique and list(a["file"]) == list(b["file"])
    for c in a.columns:
        if c in (*CLASSES, "tip_change"):
            np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), atol=1e-6, equal_nan=True)
        else:
            assert list(a[c].astype(str)) == list(b[c].astype(str)), c


def test_local_dask_cluster_gives_the_single_process_rows(mixed, tmp_path, capsys):
    pytest.importorskip("distributed")
    from qcodes_stmtip.classify.archive import connect

    root, _ = mixed
    single = classify_files([root], surface="hsi100", chunk_size=5).frame
    out = tmp_path / "rows.parquet"
    cluster = connect(2, processes=False)  # two workers (threads here: the suite stays fast)
    try:
        run = classify_files([root], out, surface="hsi100", chunk_size=5, client=cluster.client, progress=True)
        assert run.total == len(single) and run.new == len(single)
        err = capsys.readouterr().err
        assert "file/s" in err and f"{len(single)}/{len(single)}" in err  # tqdm: rate, count (and ETA)
        if importlib.util.find_spec("bokeh") is not None:
            assert "dask dashboard: http://" in err
        _same(single, run.frame)
        assert len(list(out.glob("part-*.parquet"))) == -(-len(single) // 5)
        _same(single, read_output(out))
        # the partial-frame path (--lines) too
        files = [*sorted(root.glob("good*.npy")), root / "short.npy"]
        _same(classify_files(files, surface="hsi100", lines=16).frame,
              classify_files(files, surface="hsi100", lines=16, chunk_size=2, client=cluster.client).frame)
    finally:
        cluster.close()
    # --workers starts (and closes) its own cluster
    assert classify_files(files[:2], surface="hsi100", workers=1, processes=False).total == 2


def test_torn_last_line_is_redone_and_other_bundles_refused(mixed, tmp_path):
    root, _ = mixed
    files = sorted(str(p) for p in root.glob("good*.npy"))
    out = tmp_path / "rows.csv"
    full = classify_files(files, out, surface="hsi100", chunk_size=1).frame
    text = out.read_text()
    last = text.splitlines()[-1]
    out.write_text(text[: -len(last) - 1] + last[:25])  # a kill while writing the last row
    again = classify_files(files, out, surface="hsi100", resume=True)
    assert (again.new, again.skipped, again.total) == (1, len(files) - 1, len(files))
    _same(full, again.frame)
    with pytest.raises(ArchiveError, match="written with bundle"):
        classify_files(files, out, model=default_bundle_path("hsi100-sim"), resume=True)
    with pytest.raises(ArchiveError, match="exists"):
        classify_files(files, out, surface="hsi100")


def test_parquet_resume_each_file_once(mixed, tmp_path):
    root, _ = mixed
    files = sorted(str(p) for p in root.rglob("*.npy"))
    out = tmp_path / "rows.parquet"
    first = classify_files(files[:3], out, surface="hsi100", chunk_size=2)
    (out / ".part-killed.parquet.tmp").write_bytes(b"half a part")
    rest = classify_files(files, out, surface="hsi100", chunk_size=2, resume=True)
    assert (first.new, rest.new, rest.skipped) == (3, len(files) - 3, 3)
    assert not list(out.glob(".*.tmp"))
    _same(classify_files(files, surface="hsi100").frame, rest.frame)


def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path):
    """A CLI run killed with SIGKILL after some chunks, then --resume'd: every file exactly once,
    the rows of the uninterrupted run."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        np.save(folder / f"f{i:02d}.npy", _surface(rng, 40))
    out = tmp_path / "rows.csv"
    cmd = [sys.executable, "-m", "qcodes_stmtip", "classify", "--surface", "hsi100", "--output", str(out),
           "--chunk-size", "1", "--quiet", str(folder)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_file() and out.read_text().count("\n") >= 4:  # header + 3 rows
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    written = out.read_text().count("\n") - 1
    assert 3 <= written < 12
    assert main(["classify", "--surface", "hsi100", "--output", str(out), "--resume", "--quiet",
                 str(folder)]) == 0
    rows = read_output(out, make_job(surface="hsi100"))
    assert len(rows) == 12 and rows["file"].is_unique
    _same(classify_files([folder], surface="hsi100").frame, rows)


def test_bundle_id_is_checked_where_the_bundle_loads(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(default_bundle_path("hsi100"), bundle)
    job = make_job(bundle)
    manifest = bundle / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"surface"', '"surface" ', 1))
    from qcodes_stmtip.classify.bundle import BundleError

    with pytest.raises(BundleError, match="a different bundle at the same path"):
        classify_chunk([str(tmp_path / "x.npy")], job)


def test_cluster_arguments_are_checked_before_anything_starts(tmp_path):
    pytest.importorskip("distributed")
    from qcodes_stmtip.classify.archive import connect

    with pytest.raises(FileNotFoundError, match="no such scheduler file"):
        connect(scheduler=str(tmp_path / "scheduler.json"))
    with pytest.raises(ValueError, match="not both"):
        connect(2, "tcp://127.0.0.1:8786")
    out = tmp_path / "rows.csv"
    out.write_text("kept\n")
    with pytest.raises(ArchiveError, match="exists"):  # refused before a cluster would start
        classify_files([tmp_path / "x.npy"], out, surface="hsi100", workers=2)
    assert out.read_text() == "kept\n"
