import csv

import numpy as np
import pytest
from PIL import Image

from qcodes_stmtip.sim.dataset import CSV_COLUMNS, class_weights, generate_dataset
from qcodes_stmtip.taxonomy import CLASSES


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_dataset_layout_labels_and_determinism(tmp_path):
    a = generate_dataset("hsi100", 8, tmp_path / "a", seed=4, pixels=48, progress=False, sessions=3)
    b = generate_dataset("hsi100", 8, tmp_path / "b", seed=4, pixels=48, progress=False, sessions=3)
    rows = _read(a)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 8 and len({r["session"] for r in rows}) <= 3
    assert [r["label"] for r in rows] == [r["label"] for r in _read(b)]
    for r in rows:
        assert r["label"] in CLASSES["hsi100"]
        img = np.asarray(Image.open(tmp_path / "a" / "images" / r["Name"]))
        shape = (int(r["lines"]), int(r["pixels"]))  # H:Si(100) exports at a real frame's size
        assert img.shape == shape and img.dtype == np.uint8 and img.min() == 0 and img.max() == 255
        frame = np.load(tmp_path / "a" / "frames" / r["Name"].replace(".png", ".npy"))
        assert frame.dtype == np.float32 and frame.shape == shape
        assert np.array_equal(frame, np.load(tmp_path / "b" / "frames" / r["Name"].replace(".png", ".npy")))
        assert 2e-9 < float(r["width_m"]) < 100e-9


def test_parallel_generation_writes_the_same_data_set(tmp_path):
    a = generate_dataset("cu111", 6, tmp_path / "a", seed=2, pixels=32, progress=False)
    b = generate_dataset("cu111", 6, tmp_path / "b", seed=2, pixels=32, progress=False, jobs=2)
    assert a.read_text() == b.read_text()
    for r in _read(a):
        npy = r["Name"].replace(".png", ".npy")
        assert np.array_equal(np.load(tmp_path / "a" / "frames" / npy), np.load(tmp_path / "b" / "frames" / npy))


def test_weights_select_classes(tmp_path):
    path = generate_dataset("au111", 6, tmp_path, seed=1, pixels=32, progress=False,
                            weights={"corruption": 1.0})
    assert {r["label"] for r in _read(path)} == {"corruption"}


def test_class_weights():
    assert np.allclose(class_weights("au111"), 1 / 6)
    assert class_weights("hsi100", "natural").sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="balance"):
        class_weights("hsi100", "skewed")
    with pytest.raises(ValueError, match="weights"):
        class_weights("hsi100", weights={"double_tip": 1.0})
    with pytest.raises(ValueError, match="weights"):
        class_weights("hsi100", weights={"rows": -1.0})


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="count"):
        generate_dataset("hsi100", 0, tmp_path)
    with pytest.raises(ValueError, match="surface"):
        generate_dataset("mos2", 3, tmp_path)
    with pytest.raises(ValueError, match="pixels"):
        generate_dataset("hsi100", 3, tmp_path, pixels=-64)
    with pytest.raises(ValueError, match="jobs"):
        generate_dataset("hsi100", 3, tmp_path, jobs=0)


def test_hsi_tip_change_frames_keep_the_majority_label():
    from qcodes_stmtip.sim.dataset import generate_example

    rng = np.random.default_rng(3)
    for label in CLASSES["hsi100"]:
        ex = generate_example("hsi100", label, rng, pixels=40, tip_change_p=1.0)
        assert ex.scan.tip_change_lines and ex.scan.label == label
        assert all(0 < line < 40 for line in ex.scan.tip_change_lines)
