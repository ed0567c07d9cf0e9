"""Which files a command reads: files, folders (recursive, by extension) and globs, each once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.cli import main
from qcodes_stmtip.io.sources import find_frame_files, folder_files, is_frame_file


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for rel in ("x.npy", "a/y.PNG", "a/b/z.sxm", "a/b/s--1_1.Z_mtrx", "a/b/s_0001.mtrx",
                "a/notes.txt", ".hidden/h.npy", "a/.dot.npy"):
        (root / rel).write_bytes(b"x")


def test_is_frame_file() -> None:
    assert all(is_frame_file(n) for n in ("f.sxm", "f.GWY", "f.dat", "f.sm4", "f.png", "f.npy", "f.Z_mtrx"))
    assert not any(is_frame_file(n) for n in ("f.mtrx", "f.txt", "f", "f.npz"))


def test_folder_is_recursive_by_extension_and_skips_hidden(tmp_path: Path) -> None:
    _tree(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in folder_files(tmp_path)]
    assert names == ["a/b/s--1_1.Z_mtrx", "a/b/z.sxm", "a/y.PNG", "x.npy"]
    assert [p.name for p in folder_files(tmp_path, exclude=[tmp_path / "a"])] == ["x.npy"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder_files(tmp_path / "nope")


def test_files_folders_and_globs_in_order_each_once(tmp_path: Path) -> None:
    _tree(tmp_path)
    got = find_frame_files([tmp_path / "x.npy", tmp_path / "a", f"{tmp_path}/**/*.npy",
                            tmp_path / "missing.npy", tmp_path / "a" / "notes.txt"])
    rel = [p.relative_to(tmp_path).as_posix() for p in got]
    # explicit files are kept even when missing or of an unknown type: reading reports them
    assert rel == ["x.npy", "a/b/s--1_1.Z_mtrx", "a/b/z.sxm", "a/y.PNG", "missing.npy", "a/notes.txt"]
    assert [p.name for p in find_frame_files([f"{tmp_path}/a/*"])] == ["s--1_1.Z_mtrx", "z.sxm", "y.PNG"]
    with pytest.raises(ValueError, match="matches no frame file"):
        find_frame_files([f"{tmp_path}/*.gwy"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no frame file"):
        find_frame_files([tmp_path / "empty"])


def test_info_reads_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "f.npy", np.zeros((4, 3)))
    (tmp_path / "sub" / "g.npy").write_bytes(b"")
    assert main(["info", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "4 lines × 3 pixels" in captured.out
    assert "g.npy: not a readable .npy array" in captured.err and "Traceback" not in captured.err
